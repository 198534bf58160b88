//! SOA serials compared as RFC 1982 says: in a 32-bit circle, where a
//! serial is newer than another when it lies less than half the circle
//! ahead of it.

use std::cmp::Ordering;

/// RFC 1982 §3.2: `s1 < s2` when `(i1 < i2 and i2 - i1 < 2^31)` or
/// `(i1 > i2 and i1 - i2 > 2^31)`; equal when equal; `None` when they are
/// exactly half the circle apart (the comparison is undefined then).
pub fn compare(s1: u32, s2: u32) -> Option<Ordering> {
    const HALF: u32 = 1 << 31;
    if s1 == s2 {
        return Some(Ordering::Equal);
    }
    let ahead = s2.wrapping_sub(s1);
    match ahead.cmp(&HALF) {
        Ordering::Less => Some(Ordering::Less),
        Ordering::Greater => Some(Ordering::Greater),
        Ordering::Equal => None,
    }
}

/// Whether a server at serial `seen` serves the changes of `wanted` (it
/// serves that serial or a later one).
pub fn serves(seen: u32, wanted: u32) -> bool {
    matches!(
        compare(seen, wanted),
        Some(Ordering::Equal | Ordering::Greater)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_in_a_circle() {
        assert_eq!(compare(1, 2), Some(Ordering::Less));
        assert_eq!(compare(2, 1), Some(Ordering::Greater));
        assert_eq!(compare(7, 7), Some(Ordering::Equal));
        // Wrapping: 4294967295 + 1 = 0, which is newer.
        assert_eq!(compare(u32::MAX, 0), Some(Ordering::Less));
        assert_eq!(compare(0, u32::MAX), Some(Ordering::Greater));
        // Half the circle apart: undefined.
        assert_eq!(compare(0, 1 << 31), None);
        assert!(serves(2026113001, 2026113001));
        assert!(serves(5, u32::MAX - 3));
        assert!(!serves(u32::MAX - 3, 5));
        assert!(!serves(0, 1 << 31));
    }
}
