//! One writer among several instances: a lease kept in the zone itself, as a
//! TXT record `holder=<instance> token=<hex> expires=<unix time> seq=<n>`,
//! taken, renewed and released by RFC 2136 prerequisites (an atomic
//! compare-and-swap on the primary). Every UPDATE of records also carries
//! the lease this instance last wrote as a prerequisite (the fence): the
//! primary's compare-and-swap decides, not a local clock.
//!
//! Expiry is judged by observation, not by comparing clocks: a lease whose
//! content has not changed for `lease_time` has expired (its writer renews it
//! every third of that). The `expires` field is for people.
//!
//! The `token` is drawn per process: a record is ours only when it carries
//! our token, so that two instances configured with the same `instance`
//! cannot both believe they hold it, and a restarted instance waits like any
//! other for the lease of its previous life to expire (a clean stop releases
//! it).
//!
//! Pure: the caller reads the lease RRset, passes it in with the time, and
//! does the DNS I/O the decision asks for.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::records::Rdata;

/// The parsed content of a lease record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: String,
    /// Drawn per process; absent in leases written by older versions.
    pub token: Option<String>,
    /// Unix seconds (for people: expiry is judged by observation).
    pub expires: u64,
    pub seq: u64,
}

impl LeaseRecord {
    pub fn text(&self) -> String {
        match &self.token {
            Some(token) => format!(
                "holder={} token={token} expires={} seq={}",
                self.holder, self.expires, self.seq
            ),
            None => format!(
                "holder={} expires={} seq={}",
                self.holder, self.expires, self.seq
            ),
        }
    }

    pub fn rdata(&self) -> Rdata {
        Rdata::txt(&self.text())
    }

    pub fn parse(text: &str) -> Option<Self> {
        let mut holder = None;
        let mut token = None;
        let mut expires = None;
        let mut seq = None;
        for field in text.split_whitespace() {
            match field.split_once('=')? {
                ("holder", v) => holder = Some(v.to_string()),
                ("token", v) => token = Some(v.to_string()),
                ("expires", v) => expires = v.parse().ok(),
                ("seq", v) => seq = v.parse().ok(),
                _ => {}
            }
        }
        Some(Self {
            holder: holder?,
            token,
            expires: expires?,
            seq: seq?,
        })
    }

    fn of(rdata: &Rdata) -> Option<Self> {
        rdata.txt_text().as_deref().and_then(Self::parse)
    }
}

/// The TXT RRset at the lease name, as read: lease records and any other
/// TXT records that share the name (an SPF record at `@`, say).
pub type LeaseSet = BTreeSet<Rdata>;

/// The lease records of a lease RRset (other TXT records are foreign).
pub fn leases(set: &LeaseSet) -> Vec<(Rdata, LeaseRecord)> {
    set.iter()
        .filter_map(|r| LeaseRecord::of(r).map(|l| (r.clone(), l)))
        .collect()
}

/// The TXT records at the lease name that are not leases.
pub fn foreign(set: &LeaseSet) -> LeaseSet {
    set.iter()
        .filter(|r| LeaseRecord::of(r).is_none())
        .cloned()
        .collect()
}

/// A compare-and-swap on the lease RRset: if the primary holds `expected`
/// exactly (empty: no TXT record at the name), delete `delete` and add `add`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Swap {
    pub expected: LeaseSet,
    pub delete: Vec<Rdata>,
    pub add: Option<LeaseRecord>,
}

/// What the caller should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing: another instance holds a live lease (or we just looked).
    Wait,
    Take(Swap),
    Renew(Swap),
}

/// Worth a log line (and the caller logs each kind once until it changes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A live lease names our instance with another token: two instances
    /// share one `instance` identity.
    Twin { holder: String },
    /// Other TXT records share the lease name: they are kept, and any change
    /// to them makes a swap fail once (and be retried).
    SharedName { records: usize },
    /// Several lease records at once (written by hand?): replaced once expired.
    Several { count: usize },
}

/// Watches an RRset for a whole lease time without change.
#[derive(Clone, Debug)]
struct Unchanged {
    seen: LeaseSet,
    since: Instant,
}

impl Unchanged {
    /// Records `seen` at `now`; true when it has been the same for `period`.
    fn observe(slot: &mut Option<Self>, seen: &LeaseSet, now: Instant, period: Duration) -> bool {
        match slot {
            Some(u) if &u.seen == seen => now.duration_since(u.since) >= period,
            _ => {
                *slot = Some(Self {
                    seen: seen.clone(),
                    since: now,
                });
                false
            }
        }
    }
}

/// The lease state machine of one instance.
#[derive(Debug)]
pub struct Lease {
    instance: String,
    token: String,
    lease_time: Duration,
    /// The lease record this instance last wrote, whatever the clock says:
    /// the fence of its UPDATEs until it writes another.
    written: Option<Rdata>,
    /// When the primary last confirmed it (a successful swap).
    confirmed: Option<Instant>,
    /// Other TXT records at the lease name, as last read.
    foreign: LeaseSet,
    /// Another holder's lease RRset, and since when it has been unchanged.
    watching: Option<Unchanged>,
    /// The holder as last seen (ours or another's).
    holder: Option<String>,
    /// Whether the lease has been read at least once (standby readiness).
    read: bool,
}

impl Lease {
    pub fn new(instance: String, token: String, lease_time: Duration) -> Self {
        Self {
            instance,
            token,
            lease_time,
            written: None,
            confirmed: None,
            foreign: LeaseSet::new(),
            watching: None,
            holder: None,
            read: false,
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn lease_time(&self) -> Duration {
        self.lease_time
    }

    /// A reload may change the lease time; a held lease stays held.
    pub fn set_lease_time(&mut self, lease_time: Duration) {
        self.lease_time = lease_time;
    }

    /// Renew every third of the lease time; a standby looks as often.
    pub fn tick(&self) -> Duration {
        self.lease_time / 3
    }

    /// Whether this instance may start writing now: the primary confirmed
    /// our lease less than a lease time ago. (A writer that could not renew
    /// for a whole lease time must assume a standby took over.)
    pub fn held(&self, now: Instant) -> bool {
        self.written.is_some()
            && self
                .confirmed
                .is_some_and(|at| now.duration_since(at) < self.lease_time)
    }

    /// The lease RRset every UPDATE of records requires (RFC 2136 §2.4.2):
    /// what this instance last wrote there, beside the foreign TXT records.
    /// `None` before it ever wrote one: it must not write then.
    pub fn fence(&self) -> Option<LeaseSet> {
        let written = self.written.clone()?;
        let mut set = self.foreign.clone();
        set.insert(written);
        Some(set)
    }

    pub fn has_read(&self) -> bool {
        self.read
    }

    /// The holder as last seen (ours or another's).
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }

    fn ours(&self, rdata: &Rdata, record: &LeaseRecord) -> bool {
        self.written.as_ref() == Some(rdata)
            || (record.holder == self.instance && record.token.as_deref() == Some(&self.token))
    }

    fn next_record(&self, seq: u64, unix_now: u64) -> LeaseRecord {
        LeaseRecord {
            holder: self.instance.clone(),
            token: Some(self.token.clone()),
            expires: unix_now + self.lease_time.as_secs().max(1),
            seq,
        }
    }

    /// Decides from the lease RRset the primary holds now. `unix_now` only
    /// fills the `expires` field people read.
    pub fn decide(
        &mut self,
        observed: &LeaseSet,
        now: Instant,
        unix_now: u64,
    ) -> (Action, Vec<Notice>) {
        self.read = true;
        self.foreign = foreign(observed);
        let leases = leases(observed);
        let mut notices = Vec::new();
        if !self.foreign.is_empty() {
            notices.push(Notice::SharedName {
                records: self.foreign.len(),
            });
        }
        if leases.len() > 1 {
            notices.push(Notice::Several {
                count: leases.len(),
            });
        }
        let next_seq = leases
            .iter()
            .map(|(_, l)| l.seq)
            .max()
            .map_or(1, |s| s.wrapping_add(1));
        self.holder = match leases.as_slice() {
            [(_, l)] => Some(l.holder.clone()),
            _ => None,
        };
        match leases.as_slice() {
            [] => {
                self.watching = None;
                let swap = Swap {
                    expected: observed.clone(),
                    delete: Vec::new(),
                    add: Some(self.next_record(next_seq, unix_now)),
                };
                (Action::Take(swap), notices)
            }
            [(rdata, record)] if self.ours(rdata, record) => {
                self.watching = None;
                let swap = Swap {
                    expected: observed.clone(),
                    delete: vec![rdata.clone()],
                    add: Some(self.next_record(next_seq, unix_now)),
                };
                (Action::Renew(swap), notices)
            }
            others => {
                self.confirmed = None;
                if let [(_, l)] = others
                    && l.holder == self.instance
                {
                    notices.push(Notice::Twin {
                        holder: l.holder.clone(),
                    });
                }
                if Unchanged::observe(&mut self.watching, observed, now, self.lease_time) {
                    let swap = Swap {
                        expected: observed.clone(),
                        delete: others.iter().map(|(r, _)| r.clone()).collect(),
                        add: Some(self.next_record(next_seq, unix_now)),
                    };
                    (Action::Take(swap), notices)
                } else {
                    (Action::Wait, notices)
                }
            }
        }
    }

    /// The swap succeeded: we hold `new`.
    pub fn swapped(&mut self, new: &LeaseRecord, now: Instant) {
        self.written = Some(new.rdata());
        self.confirmed = Some(now);
        self.watching = None;
        self.holder = Some(self.instance.clone());
    }

    /// The swap's prerequisite failed: someone else wrote first.
    pub fn lost(&mut self) {
        self.confirmed = None;
    }

    /// The swap that releases our lease (on shutdown), if we hold one.
    pub fn release(&self) -> Option<Swap> {
        let written = self.written.clone()?;
        self.confirmed?;
        Some(Swap {
            expected: self.fence()?,
            delete: vec![written],
            add: None,
        })
    }

    /// Forgets the lease after releasing it.
    pub fn released(&mut self) {
        self.written = None;
        self.confirmed = None;
        self.holder = None;
    }
}

/// A one-shot writer's judgement of a lease (`plan --apply`): by watching
/// it, never by the clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// No lease: write, requiring that there still is none.
    Free,
    /// Unchanged for a whole lease time: expired; write, requiring it as seen.
    Expired,
    /// It changed while watched: a live writer holds it.
    Live { holder: String },
    /// Not known yet: look again.
    Watching,
}

/// Watches the lease for a one-shot writer (which never takes it).
#[derive(Debug)]
pub struct Observer {
    lease_time: Duration,
    first: Option<Unchanged>,
}

impl Observer {
    pub fn new(lease_time: Duration) -> Self {
        Self {
            lease_time,
            first: None,
        }
    }

    /// Judges the lease RRset read at `now`.
    pub fn observe(&mut self, observed: &LeaseSet, now: Instant) -> Judgement {
        let leases = leases(observed);
        if leases.is_empty() {
            return Judgement::Free;
        }
        let changed = self.first.as_ref().is_some_and(|u| &u.seen != observed);
        if changed {
            let holder = leases
                .first()
                .map(|(_, l)| l.holder.clone())
                .unwrap_or_default();
            return Judgement::Live { holder };
        }
        if Unchanged::observe(&mut self.first, observed, now, self.lease_time) {
            Judgement::Expired
        } else {
            Judgement::Watching
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LT: Duration = Duration::from_secs(9);

    fn take(action: Action) -> Swap {
        match action {
            Action::Take(swap) => swap,
            other => panic!("expected a take, got {other:?}"),
        }
    }

    fn set(records: &[&LeaseRecord]) -> LeaseSet {
        records.iter().map(|r| r.rdata()).collect()
    }

    fn other(seq: u64) -> LeaseRecord {
        LeaseRecord {
            holder: "dns1".into(),
            token: Some("aaaa".into()),
            expires: 0,
            seq,
        }
    }

    #[test]
    fn record_text_round_trips_with_and_without_token() {
        let r = other(7);
        assert_eq!(LeaseRecord::parse(&r.text()), Some(r));
        let old = LeaseRecord::parse("holder=dns1 expires=5 seq=2").unwrap();
        assert_eq!(old.token, None);
        assert_eq!(LeaseRecord::parse("v=spf1 -all"), None);
    }

    #[test]
    fn takes_a_free_lease_renews_it_and_fences_with_what_it_wrote() {
        let mut lease = Lease::new("dns1".into(), "t1".into(), LT);
        let now = Instant::now();
        assert_eq!(lease.fence(), None, "never wrote: no fence, no write");
        let (action, notices) = lease.decide(&LeaseSet::new(), now, 100);
        assert!(notices.is_empty());
        let swap = take(action);
        assert!(swap.expected.is_empty() && swap.delete.is_empty());
        let new = swap.add.unwrap();
        assert_eq!((new.seq, new.expires), (1, 109));
        lease.swapped(&new, now);
        assert!(lease.held(now));
        assert_eq!(lease.fence(), Some(set(&[&new])));
        let (action, _) = lease.decide(&set(&[&new]), now, 101);
        let Action::Renew(swap) = action else {
            panic!("expected a renewal")
        };
        assert_eq!(swap.delete, vec![new.rdata()]);
        assert_eq!(swap.add.unwrap().seq, 2);
    }

    #[test]
    fn the_fence_outlives_the_local_clock() {
        let mut lease = Lease::new("dns1".into(), "t1".into(), LT);
        let now = Instant::now();
        let new = take(lease.decide(&LeaseSet::new(), now, 0).0).add.unwrap();
        lease.swapped(&new, now);
        assert!(lease.held(now + LT - Duration::from_millis(1)));
        assert!(!lease.held(now + LT), "locally expired: start no pass");
        assert_eq!(
            lease.fence(),
            Some(set(&[&new])),
            "but what is in flight stays fenced"
        );
    }

    #[test]
    fn a_standby_waits_for_a_whole_lease_time_without_change() {
        let mut lease = Lease::new("dns2".into(), "t2".into(), LT);
        let t0 = Instant::now();
        let seen = set(&[&other(4)]);
        assert_eq!(lease.decide(&seen, t0, 0).0, Action::Wait);
        assert_eq!(lease.holder(), Some("dns1"));
        assert_eq!(lease.decide(&seen, t0 + LT / 2, 0).0, Action::Wait);
        // The writer renewed: the clock starts again.
        let renewed = set(&[&other(5)]);
        assert_eq!(
            lease
                .decide(&renewed, t0 + LT - Duration::from_millis(1), 0)
                .0,
            Action::Wait
        );
        assert_eq!(lease.decide(&renewed, t0 + LT + LT / 2, 0).0, Action::Wait);
        let swap = take(lease.decide(&renewed, t0 + 2 * LT, 0).0);
        assert_eq!(swap.expected, renewed);
        assert_eq!(swap.delete, vec![other(5).rdata()]);
        let new = swap.add.unwrap();
        assert_eq!((new.holder.as_str(), new.seq), ("dns2", 6));
        assert!(!lease.held(t0 + 2 * LT), "not held until the swap succeeds");
    }

    #[test]
    fn a_twin_with_our_name_is_not_us() {
        let mut lease = Lease::new("dns1".into(), "mine".into(), LT);
        let t0 = Instant::now();
        let (action, notices) = lease.decide(&set(&[&other(3)]), t0, 0);
        assert_eq!(
            action,
            Action::Wait,
            "dns1 with another token is another process"
        );
        assert_eq!(
            notices,
            vec![Notice::Twin {
                holder: "dns1".into()
            }]
        );
        // The lease of our previous life (no token) is waited out too.
        let old = LeaseRecord {
            token: None,
            ..other(3)
        };
        assert_eq!(lease.decide(&set(&[&old]), t0, 0).0, Action::Wait);
    }

    #[test]
    fn foreign_txt_records_at_the_lease_name_are_kept_in_every_swap() {
        let spf = Rdata::txt("v=spf1 -all");
        let mut lease = Lease::new("dns1".into(), "t1".into(), LT);
        let now = Instant::now();
        let free = LeaseSet::from([spf.clone()]);
        let (action, notices) = lease.decide(&free, now, 0);
        assert_eq!(notices, vec![Notice::SharedName { records: 1 }]);
        let swap = take(action);
        assert_eq!(swap.expected, free, "the SPF record is part of the RRset");
        let new = swap.add.unwrap();
        lease.swapped(&new, now);
        assert_eq!(
            lease.fence(),
            Some(LeaseSet::from([spf.clone(), new.rdata()]))
        );
        let release = lease.release().unwrap();
        assert_eq!(release.delete, vec![new.rdata()]);
        assert!(release.expected.contains(&spf));
    }

    #[test]
    fn several_leases_are_replaced_once_unchanged_for_a_lease_time() {
        let mut lease = Lease::new("dns3".into(), "t3".into(), LT);
        let t0 = Instant::now();
        let two = set(&[
            &other(4),
            &LeaseRecord {
                holder: "dns2".into(),
                ..other(9)
            },
        ]);
        let (action, notices) = lease.decide(&two, t0, 0);
        assert_eq!(action, Action::Wait);
        assert!(notices.contains(&Notice::Several { count: 2 }));
        let swap = take(lease.decide(&two, t0 + LT, 0).0);
        assert_eq!(swap.delete.len(), 2);
        assert_eq!(swap.add.unwrap().seq, 10);
    }

    #[test]
    fn a_one_shot_observer_judges_by_change_not_by_clock() {
        let t0 = Instant::now();
        let mut o = Observer::new(LT);
        assert_eq!(o.observe(&LeaseSet::new(), t0), Judgement::Free);
        let seen = set(&[&other(4)]);
        assert_eq!(o.observe(&seen, t0), Judgement::Watching);
        assert_eq!(o.observe(&seen, t0 + LT / 3), Judgement::Watching);
        assert_eq!(
            o.observe(&set(&[&other(5)]), t0 + LT / 2),
            Judgement::Live {
                holder: "dns1".into()
            }
        );
        let mut o = Observer::new(LT);
        assert_eq!(o.observe(&seen, t0), Judgement::Watching);
        assert_eq!(o.observe(&seen, t0 + LT), Judgement::Expired);
    }
}
