//! Asking any of the harness's name servers (BIND primary or secondary,
//! Knot) about any of their zones: `dig +tcp` for what a test reads and
//! asserts, `nsupdate` for what it changes, and native UDP queries for
//! timing (a `dig` costs ~10 ms, too coarse to time a NOTIFY or a
//! signature).

use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::process;

/// One record of dig's answer section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigRecord {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub rdata: String,
}

impl DigRecord {
    /// For an RRSIG: the type it covers (`TLSA`, `SOA`, ...).
    pub fn covered_type(&self) -> Option<&str> {
        (self.rtype == "RRSIG")
            .then(|| self.rdata.split_whitespace().next())
            .flatten()
    }
    /// For an RRSIG: the signer's name (`example.com.`).
    pub fn signer(&self) -> Option<&str> {
        (self.rtype == "RRSIG")
            .then(|| self.rdata.split_whitespace().nth(7))
            .flatten()
    }
}

/// Parses `+noall +answer` output: `name ttl class type rdata...` lines.
pub fn parse_answer(text: &str) -> Vec<DigRecord> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .filter_map(|line| {
            let mut rest = line;
            let mut fields = Vec::with_capacity(4);
            for _ in 0..4 {
                rest = rest.trim_start();
                let end = rest.find(char::is_whitespace)?;
                fields.push(&rest[..end]);
                rest = &rest[end..];
            }
            Some(DigRecord {
                name: fields[0].to_owned(),
                ttl: fields[1].parse().ok()?,
                rtype: fields[3].to_owned(),
                rdata: rest.trim().to_owned(),
            })
        })
        .collect()
}

/// `name` in `zone` as an absolute name with the final dot: `@` (or empty)
/// is the apex, a name ending in a dot or in the zone is absolute, any other
/// is relative to the zone.
pub fn fqdn(zone: &str, name: &str) -> String {
    let zone = zone.trim_end_matches('.');
    if name.is_empty() || name == "@" {
        format!("{zone}.")
    } else if name.ends_with('.') {
        name.to_owned()
    } else if name == zone || name.ends_with(&format!(".{zone}")) {
        format!("{name}.")
    } else {
        format!("{name}.{zone}.")
    }
}

/// TLSA rdata as `3 1 1 <lowercase hex>`, whatever the spacing and case dig
/// printed it with (it splits long digests and writes them in capitals).
pub fn normalize_tlsa(rdata: &str) -> String {
    let mut words = rdata.split_whitespace();
    let head: Vec<&str> = words.by_ref().take(3).collect();
    let hex: String = words.collect::<String>().to_ascii_lowercase();
    format!("{} {hex}", head.join(" "))
}

/// The answer of a DNSSEC query (`dig +dnssec`): the records of the asked
/// type and the RRSIGs that came with them.
#[derive(Clone, Debug, Default)]
pub struct SignedAnswer {
    pub records: Vec<DigRecord>,
    pub rrsigs: Vec<DigRecord>,
}

impl SignedAnswer {
    /// Whether an RRSIG by `signer` (a zone, with or without the final dot)
    /// covers `rtype` at the answer's owner.
    pub fn is_signed_by(&self, rtype: &str, signer: &str) -> bool {
        let signer = format!("{}.", signer.trim_end_matches('.'));
        self.rrsigs.iter().any(|s| {
            s.covered_type()
                .is_some_and(|t| t.eq_ignore_ascii_case(rtype))
                && s.signer().is_some_and(|n| n.eq_ignore_ascii_case(&signer))
        })
    }
    /// The rdata of the records, sorted, as dig prints them.
    pub fn rdata(&self) -> Vec<String> {
        let mut v: Vec<String> = self.records.iter().map(|r| r.rdata.clone()).collect();
        v.sort();
        v
    }
}

/// `dig +tcp` at one server, signed with `key_file` when there is one.
#[derive(Clone, Debug)]
pub struct Dig {
    pub addr: SocketAddr,
    pub key_file: Option<PathBuf>,
}

impl Dig {
    pub fn new(addr: SocketAddr, key_file: Option<&Path>) -> Dig {
        Dig {
            addr,
            key_file: key_file.map(Path::to_owned),
        }
    }

    /// Runs dig with the harness's options (`+tcp +noall +answer +comments`,
    /// 2 s, one try) and `args`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(process::tool("dig"));
        cmd.args([
            "+tcp",
            "+noall",
            "+answer",
            "+comments",
            "+time=2",
            "+tries=1",
        ]);
        if let Some(key_file) = &self.key_file {
            cmd.arg("-k").arg(key_file);
        }
        cmd.args(["-p", &self.addr.port().to_string()])
            .arg(format!("@{}", self.addr.ip()))
            .args(args);
        process::run_with_timeout(cmd, None, Duration::from_secs(15))
    }

    /// The records of `name` (in `zone`) of `rtype` with their TTLs, sorted
    /// (rdata as dig prints it). Empty for NXDOMAIN or no data; panics on
    /// any other rcode.
    pub fn query_with_ttl(&self, zone: &str, name: &str, rtype: &str) -> Vec<(u32, String)> {
        let mut records: Vec<(u32, String)> = self
            .answer(zone, name, rtype, &[])
            .into_iter()
            .filter(|r| r.rtype.eq_ignore_ascii_case(rtype))
            .map(|r| (r.ttl, r.rdata))
            .collect();
        records.sort();
        records
    }

    /// The owner names of `name`'s records of `rtype` as the server answers
    /// them (BIND: in the case the zone stores), sorted, without repeats.
    pub fn query_names(&self, zone: &str, name: &str, rtype: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .answer(zone, name, rtype, &[])
            .into_iter()
            .filter(|r| r.rtype.eq_ignore_ascii_case(rtype))
            .map(|r| r.name)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// As [`Dig::query_with_ttl`], the rdata only.
    pub fn query(&self, zone: &str, name: &str, rtype: &str) -> Vec<String> {
        self.query_with_ttl(zone, name, rtype)
            .into_iter()
            .map(|(_, rdata)| rdata)
            .collect()
    }

    /// `dig +dnssec`: the records of `rtype` at `name` and their RRSIGs.
    pub fn query_dnssec(&self, zone: &str, name: &str, rtype: &str) -> SignedAnswer {
        let mut answer = SignedAnswer::default();
        for r in self.answer(zone, name, rtype, &["+dnssec"]) {
            if r.rtype == "RRSIG" {
                answer.rrsigs.push(r);
            } else if r.rtype.eq_ignore_ascii_case(rtype) {
                answer.records.push(r);
            }
        }
        answer
    }

    /// The whole answer section; panics unless the rcode is NOERROR or
    /// NXDOMAIN.
    fn answer(&self, zone: &str, name: &str, rtype: &str, more: &[&str]) -> Vec<DigRecord> {
        let fqdn = fqdn(zone, name);
        let mut args: Vec<&str> = more.to_vec();
        args.extend([fqdn.as_str(), rtype]);
        let out = self.run(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        let status = text
            .lines()
            .find_map(|l| l.split_once("status: "))
            .and_then(|(_, rest)| rest.split(',').next())
            .unwrap_or("no answer");
        assert!(
            status == "NOERROR" || status == "NXDOMAIN",
            "dig {fqdn} {rtype} at {}: {status}\n{text}{}",
            self.addr,
            String::from_utf8_lossy(&out.stderr)
        );
        parse_answer(&text)
    }

    /// The serial of `zone`'s SOA.
    pub fn serial(&self, zone: &str) -> u32 {
        let soa = self.query(zone, "@", "SOA");
        let first = soa
            .first()
            .unwrap_or_else(|| panic!("no SOA for {zone} at {}", self.addr));
        first
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad SOA {first}"))
    }

    /// Whether the server answers `zone`'s SOA (it serves the zone).
    pub fn has_soa(&self, zone: &str) -> bool {
        let out = self.run(&[&fqdn(zone, "@"), "SOA"]);
        parse_answer(&String::from_utf8_lossy(&out.stdout))
            .iter()
            .any(|r| r.rtype == "SOA")
    }

    /// Every record of `zone` by AXFR except the SOA, as sorted
    /// `name ttl type rdata` lines.
    pub fn zone_records(&self, zone: &str) -> Vec<String> {
        let apex = fqdn(zone, "@");
        let out = self.run(&[&apex, "AXFR"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines: Vec<String> = parse_answer(&text)
            .into_iter()
            .filter(|r| r.rtype != "SOA")
            .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.rtype, r.rdata))
            .collect();
        lines.sort();
        lines.dedup();
        assert!(!lines.is_empty(), "AXFR of {apex} failed:\n{text}");
        lines
    }

    /// Polls [`Dig::query`] every 50 ms until `predicate` holds on the
    /// answer, and returns it; panics with the last answer after `timeout`.
    pub fn wait_for(
        &self,
        zone: &str,
        name: &str,
        rtype: &str,
        predicate: impl Fn(&[String]) -> bool,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.query(zone, name, rtype);
            if predicate(&answer) {
                return answer;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} {rtype} at {} did not reach the expected state within {timeout:?}; last answer: {answer:?}",
                    fqdn(zone, name),
                    self.addr
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `nsupdate -v -k KEY_FILE` (TCP) against `server` with `script`. A
/// `server` line and a `zone ZONE` line are added unless the script has
/// them, and `send` unless it ends with one. Returns the output, whatever
/// the outcome.
pub fn nsupdate(server: SocketAddr, key_file: &Path, zone: &str, script: &str) -> Output {
    let mut full = String::new();
    if !script
        .lines()
        .any(|l| l.trim_start().starts_with("server "))
    {
        let _ = writeln!(full, "server {} {}", server.ip(), server.port());
    }
    if !script.lines().any(|l| l.trim_start().starts_with("zone ")) {
        let _ = writeln!(full, "zone {zone}");
    }
    full.push_str(script.trim_end());
    full.push('\n');
    let last = script.lines().rev().find(|l| !l.trim().is_empty());
    if last.map(str::trim) != Some("send") {
        full.push_str("send\n");
    }
    let mut cmd = Command::new(process::tool("nsupdate"));
    cmd.args(["-v", "-t", "5"]).arg("-k").arg(key_file);
    process::run_with_timeout(cmd, Some(&full), Duration::from_secs(20))
}

/// Panics with nsupdate's output unless it succeeded.
pub fn assert_nsupdate_ok(out: &Output, script: &str) {
    assert!(
        out.status.success(),
        "nsupdate failed ({}): {}{}\nscript:\n{script}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `zone`'s SOA serial at `server` by one unsigned UDP query (no dig: this
/// takes well under a millisecond, so a poll loop can time propagation
/// finely). `Ok(None)`: the server answered without a SOA (not
/// authoritative, REFUSED, SERVFAIL while the zone loads).
pub fn soa_serial(server: SocketAddr, zone: &str, timeout: Duration) -> io::Result<Option<u32>> {
    let reply = udp_exchange(
        server,
        &fqdn(zone, "@"),
        RecordType::SOA,
        OpCode::Query,
        false,
        timeout,
    )?;
    if reply.metadata.response_code != ResponseCode::NoError {
        return Ok(None);
    }
    Ok(reply.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    }))
}

/// A native answer with DNSSEC records (DO bit set): what a poll loop needs
/// to see the moment a signed RRset is served.
#[derive(Clone, Debug, Default)]
pub struct NativeAnswer {
    /// The rdata of the asked type, as hickory prints it (TLSA digests in
    /// capitals: compare with [`normalize_tlsa`]).
    pub records: Vec<String>,
    /// The types the answer's RRSIGs cover.
    pub covered: Vec<RecordType>,
}

/// `name` (in `zone`) / `rtype` at `server` by one unsigned UDP query with
/// the DO bit (RFC 3225), so RRSIGs come along.
pub fn query_dnssec_native(
    server: SocketAddr,
    zone: &str,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> io::Result<NativeAnswer> {
    let reply = udp_exchange(
        server,
        &fqdn(zone, name),
        rtype,
        OpCode::Query,
        true,
        timeout,
    )?;
    let mut answer = NativeAnswer::default();
    for record in &reply.answers {
        match &record.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                answer.covered.push(sig.input().type_covered);
            }
            data if record.record_type() == rtype => answer.records.push(data.to_string()),
            _ => {}
        }
    }
    Ok(answer)
}

/// Sends `server` an unsigned NOTIFY for `zone` (RFC 1996) from 127.0.0.1
/// (or ::1), and returns the rcode of its answer. A BIND secondary takes it
/// from any port of its primary's address and checks the primary's SOA at
/// once.
pub fn send_notify(server: SocketAddr, zone: &str, timeout: Duration) -> io::Result<ResponseCode> {
    let reply = udp_exchange(
        server,
        &fqdn(zone, "@"),
        RecordType::SOA,
        OpCode::Notify,
        false,
        timeout,
    )?;
    Ok(reply.metadata.response_code)
}

/// One UDP exchange: `opcode` with the question `fqdn`/`rtype`; with
/// `dnssec`, EDNS(0) with the DO bit and a 4 KiB payload.
fn udp_exchange(
    server: SocketAddr,
    fqdn: &str,
    rtype: RecordType,
    opcode: OpCode,
    dnssec: bool,
    timeout: Duration,
) -> io::Result<Message> {
    let name = Name::from_ascii(fqdn).map_err(io::Error::other)?;
    let local: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0".parse().expect("addr")
    } else {
        "[::1]:0".parse().expect("addr")
    };
    let sock = UdpSocket::bind(local)?;
    sock.connect(server)?;
    sock.set_read_timeout(Some(timeout))?;
    let id: u16 = rand_id();
    let mut message = Message::new(id, MessageType::Query, opcode);
    message.metadata.recursion_desired = false;
    // RFC 1996 §3.7: a NOTIFY is sent with AA set.
    message.metadata.authoritative = opcode == OpCode::Notify;
    message.add_query(Query::query(name, rtype));
    if dnssec {
        let mut edns = Edns::new();
        edns.set_max_payload(4096).set_dnssec_ok(true);
        message.set_edns(edns);
    }
    sock.send(&message.to_vec().map_err(io::Error::other)?)?;
    let mut buf = [0u8; 8192];
    loop {
        let n = sock.recv(&mut buf)?;
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if reply.metadata.id == id {
            return Ok(reply);
        }
    }
}

/// Polls [`soa_serial`] every 2 ms until `server` serves `zone` at `serial`
/// or later (RFC 1982 arithmetic); returns how long that took. Panics with
/// the last serial seen after `timeout`.
pub fn wait_serial(server: SocketAddr, zone: &str, serial: u32, timeout: Duration) -> Duration {
    let start = Instant::now();
    let mut last = None;
    loop {
        if let Ok(Some(now)) = soa_serial(server, zone, Duration::from_millis(200)) {
            if serial_ge(now, serial) {
                return start.elapsed();
            }
            last = Some(now);
        }
        if start.elapsed() >= timeout {
            panic!(
                "{server} did not serve {zone} at serial {serial} within {timeout:?}; last serial seen: {last:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// When a change reached a primary and one of its secondaries, each
/// measured from the moment the change started.
#[derive(Clone, Copy, Debug)]
pub struct Propagation {
    /// The primary serves the new serial (for an nsupdate: its UPDATE was
    /// applied; nsupdate itself may still be exiting).
    pub primary: Duration,
    /// The secondary serves it.
    pub secondary: Duration,
}

impl Propagation {
    /// From the primary serving the serial to the secondary serving it:
    /// NOTIFY, the secondary's SOA query, the transfer.
    pub fn delay(&self) -> Duration {
        self.secondary.saturating_sub(self.primary)
    }
}

/// Runs `change` (e.g. an nsupdate at `primary`) on another thread and
/// polls both servers' SOA every millisecond until each serves `zone` at
/// `serial` or later. Timing from the nsupdate's return would be wrong by
/// its own exit time, which is as long as a NOTIFY and an IXFR on loopback.
pub fn propagation(
    primary: SocketAddr,
    secondary: SocketAddr,
    zone: &str,
    serial: u32,
    timeout: Duration,
    change: impl FnOnce() + Send,
) -> Propagation {
    let reached = |server: SocketAddr| {
        matches!(
            soa_serial(server, zone, Duration::from_millis(200)),
            Ok(Some(s)) if serial_ge(s, serial)
        )
    };
    std::thread::scope(|scope| {
        let start = Instant::now();
        let worker = scope.spawn(change);
        let wait = |server: SocketAddr, what: &str| loop {
            if reached(server) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "the {what} {server} did not serve {zone} at serial {serial} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        let at_primary = wait(primary, "primary");
        let at_secondary = wait(secondary, "secondary");
        if let Err(panic) = worker.join() {
            std::panic::resume_unwind(panic);
        }
        Propagation {
            primary: at_primary,
            secondary: at_secondary,
        }
    })
}

/// Runs `change` on another thread and polls `ready` every millisecond
/// from the moment it started; returns `(how long change took, how long
/// until ready)`, both from the start.
pub fn timed(
    what: &str,
    timeout: Duration,
    change: impl FnOnce() + Send,
    mut ready: impl FnMut() -> bool,
) -> (Duration, Duration) {
    std::thread::scope(|scope| {
        let start = Instant::now();
        let worker = scope.spawn(move || {
            change();
            start.elapsed()
        });
        let ready_after = loop {
            if ready() {
                break start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        match worker.join() {
            Ok(took) => (took, ready_after),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// RFC 1982: `a` is `b` or comes after it.
pub fn serial_ge(a: u32, b: u32) -> bool {
    a == b || (a.wrapping_sub(b) as i32) > 0
}

fn rand_id() -> u16 {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    RandomState::new().hash_one(Instant::now()) as u16
}
