//! The mark beside each managed record: a TXT record at the TLSA owner,
//! `pigeon-dns tlsa=<SHA-256 in hex> published=<unix seconds>`, written in
//! the UPDATE that adds the `3 1 1` record and deleted with it. It is how
//! the hold-out survives a restart or a change of writer (state lives in
//! the zone): the publication time of a record is nowhere else.
//!
//! The time is wall-clock (an instant means nothing to the next process);
//! [`TlsaMark::since`] brings it onto the monotonic clock the planner uses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use data_encoding::{HEXUPPER, HEXUPPER_PERMISSIVE};
use tokio::time::Instant;

use super::record::KeyDigest;

/// The first word of every mark: TXT records without it are foreign.
pub const MARK_TAG: &str = "pigeon-dns";

/// When the `3 1 1` record of a key was published at its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsaMark {
    pub digest: KeyDigest,
    /// Unix seconds.
    pub published: u64,
}

impl TlsaMark {
    /// The mark of a record that the primary shows no earlier than
    /// `not_before`, rounded up to the whole second: a mark earlier than
    /// the real publication would shorten the hold-out. A caller writing
    /// the mark in the same UPDATE as the record passes the send time plus
    /// the request timeout.
    pub fn stamped(digest: KeyDigest, not_before: SystemTime) -> Self {
        let since_epoch = not_before
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let published = since_epoch.as_secs() + u64::from(since_epoch.subsec_nanos() > 0);
        TlsaMark { digest, published }
    }

    /// The TXT text.
    pub fn text(&self) -> String {
        format!(
            "{MARK_TAG} tlsa={} published={}",
            HEXUPPER.encode(&self.digest.0),
            self.published
        )
    }

    /// The mark in a TXT text; `None` for any other TXT (foreign, or a mark
    /// missing a field). Unknown `key=value` fields are ignored, so a later
    /// version may add some.
    pub fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        if words.next()? != MARK_TAG {
            return None;
        }
        let mut digest = None;
        let mut published = None;
        for word in words {
            match word.split_once('=')? {
                ("tlsa", hex) => {
                    let data = HEXUPPER_PERMISSIVE.decode(hex.as_bytes()).ok()?;
                    digest = Some(KeyDigest::from_slice(&data)?);
                }
                ("published", secs) => published = Some(secs.parse().ok()?),
                _ => {}
            }
        }
        Some(TlsaMark {
            digest: digest?,
            published: published?,
        })
    }

    /// The publication as an instant of the monotonic clock, from one
    /// reading of both clocks (`now`, `wall_now`). A mark ahead of the wall
    /// clock (another writer's clock runs fast) lies in the future: its
    /// hold-out only lasts longer. Where the monotonic clock cannot go back
    /// that far (it can on Linux, where tokio's clock has no floor), the
    /// record counts as published now: one hold-out too many, never one
    /// too few.
    pub fn since(&self, now: Instant, wall_now: SystemTime) -> Instant {
        let wall = wall_now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if self.published >= wall {
            now + Duration::from_secs(self.published - wall)
        } else {
            now.checked_sub(Duration::from_secs(wall - self.published))
                .unwrap_or(now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> KeyDigest {
        KeyDigest([0xab; 32])
    }

    #[test]
    fn text_round_trips() {
        let mark = TlsaMark {
            digest: digest(),
            published: 1_748_736_000,
        };
        assert_eq!(
            mark.text(),
            format!("pigeon-dns tlsa={} published=1748736000", "AB".repeat(32))
        );
        assert_eq!(TlsaMark::parse(&mark.text()), Some(mark));
        let lower = format!("pigeon-dns published=5 tlsa={} by=dns1", "ab".repeat(32));
        assert_eq!(
            TlsaMark::parse(&lower),
            Some(TlsaMark {
                digest: digest(),
                published: 5
            })
        );
    }

    #[test]
    fn other_texts_are_not_marks() {
        for text in [
            "",
            "v=spf1 -all",
            "pigeon-dns",
            "pigeon-dns tlsa=AB published=5",
            "pigeon-dns published=5",
            &format!("pigeon-dns tlsa={}", "AB".repeat(32)),
            &format!("pigeon-dns tlsa={} published=soon", "AB".repeat(32)),
            &format!("pigeon-dns tlsa={} published", "AB".repeat(32)),
            &format!("holder=dns1 tlsa={} published=5", "AB".repeat(32)),
        ] {
            assert_eq!(TlsaMark::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn stamps_round_up_to_the_second() {
        let at = |secs: u64, nanos: u32| UNIX_EPOCH + Duration::new(secs, nanos);
        assert_eq!(TlsaMark::stamped(digest(), at(100, 0)).published, 100);
        assert_eq!(TlsaMark::stamped(digest(), at(100, 1)).published, 101);
        assert_eq!(
            TlsaMark::stamped(digest(), at(100, 999_999_999)).published,
            101
        );
    }

    #[test]
    fn marks_land_on_the_monotonic_clock() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mark = |published| TlsaMark {
            digest: digest(),
            published,
        };
        assert_eq!(mark(1_000_000).since(now, wall), now);
        assert_eq!(
            mark(1_000_000 - 120).since(now, wall),
            now - Duration::from_secs(120)
        );
        // Another writer's clock ran ahead: the publication is in our future.
        assert_eq!(
            mark(1_000_000 + 5).since(now, wall),
            now + Duration::from_secs(5)
        );
        // Far back: Linux's monotonic clock goes there.
        let old = mark(0).since(now, wall);
        assert!(old <= now - Duration::from_secs(900_000));
    }
}
