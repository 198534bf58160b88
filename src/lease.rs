//! One writer among several instances: a lease kept in the zone itself, as a
//! TXT record `holder=<instance> expires=<unix time> seq=<n>`, taken, renewed
//! and released by RFC 2136 prerequisites (an atomic compare-and-swap on the
//! primary). Every UPDATE of records also carries the holder's lease as a
//! prerequisite, so a writer that lost the lease can never write again.
//!
//! Expiry is judged by observation, not by comparing clocks: a standby takes
//! over when the lease's content has not changed for `lease_time` (the writer
//! renews it every third of that). The `expires` field is for people and for
//! the one-shot `plan --apply`.
//!
//! The decision is pure ([`Lease::decide`]); the caller does the DNS I/O.
//! A later majority vote of several observers would replace `decide`'s
//! inputs (one primary's view) without changing the fencing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::time::Instant;

/// The parsed content of a lease record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: String,
    /// Unix seconds.
    pub expires: u64,
    pub seq: u64,
}

impl LeaseRecord {
    pub fn text(&self) -> String {
        format!(
            "holder={} expires={} seq={}",
            self.holder, self.expires, self.seq
        )
    }

    pub fn parse(text: &str) -> Option<Self> {
        let mut holder = None;
        let mut expires = None;
        let mut seq = None;
        for field in text.split_whitespace() {
            match field.split_once('=')? {
                ("holder", v) => holder = Some(v.to_string()),
                ("expires", v) => expires = v.parse().ok(),
                ("seq", v) => seq = v.parse().ok(),
                _ => {}
            }
        }
        Some(Self {
            holder: holder?,
            expires: expires?,
            seq: seq?,
        })
    }

    /// Still valid by the wall clock (for one-shot readers such as `plan`).
    pub fn valid_at(&self, now: SystemTime) -> bool {
        unix(now) < self.expires
    }
}

pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What the primary holds at the lease name: the TXT strings, joined.
pub type Observed = Option<String>;

/// What the caller should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing: another instance holds a live lease.
    Wait,
    /// Write `new` if the primary still holds `expected` (None: no lease).
    Swap {
        expected: Option<String>,
        new: LeaseRecord,
    },
}

/// The lease state machine of one instance.
#[derive(Debug)]
pub struct Lease {
    instance: String,
    lease_time: Duration,
    /// Our lease text while we hold it.
    held: Option<String>,
    /// When the primary last confirmed our lease (a successful swap).
    confirmed: Option<Instant>,
    /// Another holder's lease text, and since when it has been unchanged.
    watching: Option<(String, Instant)>,
    /// Whether the lease has been read at least once (standby readiness).
    read: bool,
}

impl Lease {
    pub fn new(instance: String, lease_time: Duration) -> Self {
        Self {
            instance,
            lease_time,
            held: None,
            confirmed: None,
            watching: None,
            read: false,
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Renew every third of the lease time; a standby looks as often.
    pub fn tick(&self) -> Duration {
        self.lease_time / 3
    }

    /// The lease text to require in UPDATEs, while we hold it.
    pub fn held(&self) -> Option<&str> {
        // A writer that could not renew for a whole lease time must assume a
        // standby took over: it stops writing even before it learns so.
        match (self.held.as_deref(), self.confirmed) {
            (Some(text), Some(at)) if at.elapsed() < self.lease_time => Some(text),
            _ => None,
        }
    }

    pub fn has_read(&self) -> bool {
        self.read
    }

    /// The holder as last seen (ours or another's).
    pub fn holder(&self) -> Option<String> {
        self.held()
            .or(self.watching.as_ref().map(|(t, _)| t.as_str()))
            .and_then(LeaseRecord::parse)
            .map(|r| r.holder)
    }

    fn next_record(&self, previous: Option<&str>) -> LeaseRecord {
        let seq = previous
            .and_then(LeaseRecord::parse)
            .map_or(1, |r| r.seq.wrapping_add(1));
        LeaseRecord {
            holder: self.instance.clone(),
            expires: unix(SystemTime::now()) + self.lease_time.as_secs().max(1),
            seq,
        }
    }

    /// Decides from what the primary holds now.
    pub fn decide(&mut self, observed: &Observed, now: Instant) -> Action {
        self.read = true;
        let Some(text) = observed else {
            self.watching = None;
            return Action::Swap {
                expected: None,
                new: self.next_record(None),
            };
        };
        let ours = self.held.as_deref() == Some(text.as_str())
            || LeaseRecord::parse(text).is_some_and(|r| r.holder == self.instance);
        if ours {
            // Renew (or take back our own lease after a restart).
            self.watching = None;
            return Action::Swap {
                expected: Some(text.clone()),
                new: self.next_record(Some(text)),
            };
        }
        self.held = None;
        self.confirmed = None;
        match &self.watching {
            Some((seen, since)) if seen == text => {
                if now.duration_since(*since) >= self.lease_time {
                    Action::Swap {
                        expected: Some(text.clone()),
                        new: self.next_record(Some(text)),
                    }
                } else {
                    Action::Wait
                }
            }
            _ => {
                self.watching = Some((text.clone(), now));
                Action::Wait
            }
        }
    }

    /// The swap succeeded: we hold `new`.
    pub fn swapped(&mut self, new: &LeaseRecord, now: Instant) {
        self.held = Some(new.text());
        self.confirmed = Some(now);
        self.watching = None;
    }

    /// The swap's prerequisite failed: someone else wrote first.
    pub fn lost(&mut self) {
        self.held = None;
        self.confirmed = None;
    }

    /// Forgets the lease after releasing it.
    pub fn released(&mut self) {
        self.lost();
    }
}

/// The TXT rdata of a lease text.
pub fn txt(text: &str) -> RData {
    RData::TXT(TXT::new(vec![text.to_string()]))
}

/// Joins a TXT record's strings.
pub fn txt_text(data: &RData) -> Option<String> {
    match data {
        RData::TXT(txt) => Some(
            txt.txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        ),
        _ => None,
    }
}

/// The prerequisite that the lease RRset is exactly `expected` (RFC 2136
/// §2.4.2), or does not exist (§2.4.3).
pub fn prerequisite(name: &Name, expected: Option<&str>) -> Record {
    match expected {
        Some(text) => Record::from_rdata(name.clone(), 0, txt(text)),
        None => {
            let mut record = Record::update0(name.clone(), 0, RecordType::TXT);
            record.dns_class = DNSClass::NONE;
            record
        }
    }
}

/// The UPDATE that swaps the lease from `expected` to `new` (`None`:
/// release): delete the old rdata (§2.5.4), add the new (§2.5.1) with TTL 0
/// so that nobody caches it.
pub fn swap_message(
    zone: &Name,
    name: &Name,
    expected: Option<&str>,
    new: Option<&str>,
) -> Message {
    let mut message = Message::new(0, MessageType::Query, OpCode::Update);
    let mut zone_query = Query::query(zone.clone(), RecordType::SOA);
    zone_query.set_query_class(DNSClass::IN);
    message.add_query(zone_query);
    message.add_answer(prerequisite(name, expected));
    if let Some(old) = expected {
        let mut delete = Record::from_rdata(name.clone(), 0, txt(old));
        delete.dns_class = DNSClass::NONE;
        message.add_authority(delete);
    }
    if let Some(text) = new {
        message.add_authority(Record::from_rdata(name.clone(), 0, txt(text)));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const LT: Duration = Duration::from_secs(9);

    fn swap_new(action: Action) -> LeaseRecord {
        match action {
            Action::Swap { new, .. } => new,
            Action::Wait => panic!("expected a swap"),
        }
    }

    #[test]
    fn record_text_round_trips() {
        let r = LeaseRecord {
            holder: "dns1".into(),
            expires: 1_800_000_000,
            seq: 7,
        };
        assert_eq!(LeaseRecord::parse(&r.text()), Some(r));
        assert_eq!(LeaseRecord::parse("garbage"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn takes_a_free_lease_and_renews_it() {
        let mut lease = Lease::new("dns1".into(), LT);
        let now = Instant::now();
        let first = swap_new(lease.decide(&None, now));
        assert_eq!(first.seq, 1);
        lease.swapped(&first, now);
        assert_eq!(lease.held(), Some(first.text().as_str()));
        let action = lease.decide(&Some(first.text()), now);
        assert!(
            matches!(&action, Action::Swap { expected: Some(e), new } if *e == first.text() && new.seq == 2)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_waits_for_a_whole_lease_time_without_change() {
        let mut lease = Lease::new("dns2".into(), LT);
        let other = LeaseRecord {
            holder: "dns1".into(),
            expires: 0,
            seq: 4,
        }
        .text();
        let t0 = Instant::now();
        assert_eq!(lease.decide(&Some(other.clone()), t0), Action::Wait);
        assert_eq!(lease.holder().as_deref(), Some("dns1"));
        assert_eq!(
            lease.decide(&Some(other.clone()), t0 + LT / 2),
            Action::Wait
        );
        // The writer renewed: the clock starts again.
        let renewed = other.replace("seq=4", "seq=5");
        assert_eq!(
            lease.decide(&Some(renewed.clone()), t0 + LT - Duration::from_millis(1)),
            Action::Wait
        );
        assert_eq!(
            lease.decide(&Some(renewed.clone()), t0 + LT + LT / 2),
            Action::Wait
        );
        let taken = swap_new(lease.decide(&Some(renewed.clone()), t0 + 2 * LT));
        assert_eq!(taken.holder, "dns2");
        assert_eq!(taken.seq, 6);
        assert_eq!(lease.held(), None, "not held until the swap succeeds");
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_that_cannot_renew_stops_writing_after_the_lease_time() {
        let mut lease = Lease::new("dns1".into(), LT);
        let now = Instant::now();
        let first = swap_new(lease.decide(&None, now));
        lease.swapped(&first, now);
        tokio::time::advance(LT - Duration::from_millis(1)).await;
        assert!(lease.held().is_some());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(lease.held().is_none());
    }

    #[test]
    fn swap_message_has_the_prerequisite_and_both_changes() {
        let zone = Name::from_ascii("example.com.").unwrap();
        let name = Name::from_ascii("_pigeon-dns-lease.example.com.").unwrap();
        let m = swap_message(&zone, &name, Some("a"), Some("b"));
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].dns_class, DNSClass::IN);
        assert_eq!(m.authorities.len(), 2);
        assert_eq!(m.authorities[0].dns_class, DNSClass::NONE);
        let m = swap_message(&zone, &name, None, Some("b"));
        assert_eq!(m.answers[0].dns_class, DNSClass::NONE);
        assert_eq!(m.authorities.len(), 1);
    }
}
