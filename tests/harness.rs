//! Smoke tests of the test harness itself (tests/common): real named, real
//! dovecot, the fakes, the config writer and the metrics parser. None of
//! them needs the pigeon-dns binary.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{
    Behavior, Bind, BindOpts, Cluster, ConfigBuilder, FOREIGN_RECORDS, FakeServer, Lab,
    MailProtocol, Metrics, PoolSpec, Protocol, Subnet,
};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn named_answers_soa_and_foreign_records_with_their_ttl() {
    let bind = Bind::start(BindOpts::default());
    let soa = bind.query("@", "SOA");
    assert_eq!(soa.len(), 1, "{soa:?}");
    assert!(
        soa[0].starts_with("ns.example.com. hostmaster.example.com. 1 "),
        "{soa:?}"
    );
    assert_eq!(bind.serial(), 1);
    for (name, ttl, rtype, rdata) in FOREIGN_RECORDS {
        let got = bind.query_with_ttl(name, rtype);
        assert!(
            got.contains(&(*ttl, (*rdata).to_owned())),
            "{name} {rtype}: expected ({ttl}, {rdata}), got {got:?}"
        );
    }
    assert_eq!(
        bind.query_with_ttl("imap", "A"),
        vec![(300, "198.51.100.7".to_owned())]
    );
    assert!(bind.query("nonexistent", "A").is_empty());
    assert!(bind.query("imap.example.com.", "AAAA").is_empty());
    let all = bind.zone_records();
    assert!(
        all.contains(&"www.example.com. 3600 A 198.51.100.80".to_owned()),
        "{all:?}"
    );
    assert!(
        bind.log_text().contains("loaded serial 1"),
        "{}",
        bind.log_text()
    );
}

#[test]
fn signed_nsupdate_adds_a_record_that_query_sees() {
    let bind = Bind::start(BindOpts::default());
    bind.nsupdate(
        "update add smtp.example.com 60 A 192.0.2.25\nupdate add smtp.example.com 60 A 192.0.2.26",
    );
    assert_eq!(
        bind.query_with_ttl("smtp", "A"),
        vec![(60, "192.0.2.25".to_owned()), (60, "192.0.2.26".to_owned())]
    );
    assert_eq!(bind.serial(), 2, "one UPDATE, one serial step");
    let log = bind.update_log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log[0].contains("adding an RR at 'smtp.example.com' A 192.0.2.25"),
        "{log:?}"
    );
    assert_eq!(bind.update_messages_logged(), 1, "{log:?}");
    let answer = bind.wait_for("smtp", "A", |a| a.len() == 2, WAIT);
    assert_eq!(answer, vec!["192.0.2.25", "192.0.2.26"]);
}

#[test]
fn wrong_secret_and_unknown_key_are_rejected() {
    let bind = Bind::start(BindOpts::default());
    let wrong = bind.nsupdate_with(
        &bind.wrong_secret_key_file(),
        "update add bad.example.com 60 A 192.0.2.1",
    );
    assert!(!wrong.status.success(), "a wrong secret was accepted");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("BADSIG"), "{stderr}");
    let unknown = bind.nsupdate_with(
        &bind.unknown_key_file("stranger", "hmac-sha256"),
        "update add bad.example.com 60 A 192.0.2.1",
    );
    assert!(!unknown.status.success(), "an unknown key was accepted");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("BADKEY"), "{stderr}");
    assert!(bind.query("bad", "A").is_empty());
    assert_eq!(bind.serial(), 1);
    assert!(!bind.log_lines("BADSIG").is_empty(), "{}", bind.log_text());
}

#[test]
fn hmac_sha512_keys_and_extra_keys_work() {
    let bind = Bind::start(
        BindOpts::default()
            .key_algorithm("hmac-sha512")
            .extra_key("second", "hmac-sha256"),
    );
    assert_eq!(bind.key().algorithm, "hmac-sha512");
    assert!(
        std::fs::read_to_string(bind.key_file())
            .unwrap()
            .contains("hmac-sha512")
    );
    bind.nsupdate("update add k512.example.com 60 A 192.0.2.5");
    let second = bind.nsupdate_with(
        &bind.extra_key_file("second"),
        "update add k256.example.com 60 A 192.0.2.6",
    );
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    // A file with both keys, as a `key_name` test would want.
    let both = bind.write_key_file("both.key", &[bind.key(), bind.extra_key("second")]);
    let text = std::fs::read_to_string(both).unwrap();
    assert!(
        text.contains("key \"pigeon-dns\"") && text.contains("key \"second\""),
        "{text}"
    );
    assert_eq!(bind.query("k512", "A"), vec!["192.0.2.5"]);
    assert_eq!(bind.query("k256", "A"), vec!["192.0.2.6"]);
}

#[test]
fn a_narrow_update_policy_refuses_other_names() {
    let mut bind = Bind::start(
        BindOpts::default().update_policy("grant pigeon-dns name imap.example.com. A;"),
    );
    let refused = bind.nsupdate_with(
        &bind.key_file(),
        "update add pop.example.com 60 A 192.0.2.1",
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("REFUSED"));
    bind.nsupdate("update add imap.example.com 300 A 192.0.2.1");
    assert_eq!(bind.query("imap", "A"), vec!["192.0.2.1", "198.51.100.7"]);
    assert!(
        bind.update_log().iter().any(|l| l.contains("REFUSED")),
        "{:?}",
        bind.update_log()
    );
    // Widen it again: a restart with the new policy, same zone state.
    bind.set_update_policy("grant pigeon-dns zonesub ANY;");
    bind.nsupdate("update add pop.example.com 60 A 192.0.2.1");
    assert_eq!(bind.query("imap", "A"), vec!["192.0.2.1", "198.51.100.7"]);
}

#[test]
fn named_stops_and_comes_back_with_its_updates() {
    let mut bind = Bind::start(BindOpts::default());
    bind.nsupdate("update add pop.example.com 60 A 192.0.2.110");
    let addr = bind.addr();
    bind.stop();
    assert!(!bind.is_running());
    assert!(common::is_refused(addr), "named still listens after stop");
    bind.start_again();
    assert_eq!(bind.addr(), addr);
    assert_eq!(bind.query("pop", "A"), vec!["192.0.2.110"]);
    assert_eq!(bind.serial(), 2);
}

#[test]
fn an_mx_to_an_in_zone_host_without_address_is_refused() {
    // A fact pigeon-dns depends on: BIND refuses the whole UPDATE.
    let bind = Bind::start(BindOpts::default().record("mail1 3600 IN A 192.0.2.11"));
    let out = bind.nsupdate_with(
        &bind.key_file(),
        "update add example.com 3600 MX 10 mail9.example.com.\nupdate add other.example.com 60 A 192.0.2.9",
    );
    assert!(!out.status.success());
    assert!(
        bind.query("other", "A").is_empty(),
        "the whole UPDATE is refused"
    );
    assert!(
        bind.log_text().contains("has no address records"),
        "{}",
        bind.log_text()
    );
    bind.nsupdate("update add example.com 3600 MX 10 mail1.example.com.");
    assert_eq!(
        bind.query("@", "MX"),
        vec!["10 mail1.example.com.", "50 backup-mx.example.net."]
    );
}

#[test]
fn three_dovecot_nodes_greet_and_one_stops_and_comes_back() {
    let subnet = Subnet::new();
    let mut cluster = Cluster::start(&subnet, "example.com", 3);
    let ports = cluster.ports;
    assert_eq!(
        cluster.ips(),
        vec![subnet.node_ip(0), subnet.node_ip(1), subnet.node_ip(2)]
    );
    for node in &cluster.nodes {
        assert_eq!(node.dovecot.ports(), ports, "nodes share port numbers");
        for protocol in [
            MailProtocol::Imap,
            MailProtocol::Pop3,
            MailProtocol::Submission,
        ] {
            let greeting = common::read_greeting(node.dovecot.addr(protocol), WAIT).unwrap();
            assert!(
                greeting.starts_with(protocol.greeting_prefix()),
                "{greeting}"
            );
        }
        let smtp = common::read_greeting(node.dovecot.submission_addr(), WAIT).unwrap();
        assert!(smtp.starts_with(&format!("220 {}", node.host)), "{smtp}");
    }
    let mail2 = cluster.node_mut("mail2");
    let imap2 = mail2.dovecot.imap_addr();
    mail2.stop();
    assert!(!mail2.dovecot.is_running());
    for protocol in [
        MailProtocol::Imap,
        MailProtocol::Pop3,
        MailProtocol::Submission,
    ] {
        assert!(
            common::is_refused(mail2.dovecot.addr(protocol)),
            "{protocol:?} still open"
        );
    }
    // The others are untouched.
    common::wait_for_greeting(cluster.node("mail1").dovecot.imap_addr(), "* OK", WAIT);
    common::wait_for_greeting(cluster.node("mail3").dovecot.imap_addr(), "* OK", WAIT);
    let mail2 = cluster.node_mut("mail2");
    mail2.start_again();
    assert!(mail2.dovecot.is_running());
    assert!(
        common::read_greeting(imap2, WAIT)
            .unwrap()
            .starts_with("* OK")
    );
    assert!(
        mail2.dovecot.log_text().contains("starting up"),
        "{}",
        mail2.dovecot.log_text()
    );
}

#[test]
fn dovecot_answers_a_polite_imap_session() {
    let subnet = Subnet::new();
    let cluster = Cluster::start(&subnet, "example.com", 1);
    let mut stream = TcpStream::connect(cluster.nodes[0].dovecot.imap_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"* OK"));
    stream.write_all(b"a1 LOGOUT\r\n").unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("* BYE") && rest.contains("a1 OK"), "{rest}");
}

#[test]
fn fakes_misbehave_as_told() {
    let subnet = Subnet::new();
    let at = |host| SocketAddr::new(subnet.ip(host), 0);

    let silent = FakeServer::silent(at(21));
    let mut s = TcpStream::connect(silent.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = s.read(&mut [0u8; 16]).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err:?}"
    );
    common::wait_until("the silent fake to count the connection", WAIT, || {
        (silent.connections() == 1).then_some(())
    });

    for (protocol, expected) in [
        (Protocol::Imap, "* BYE go away"),
        (Protocol::Pop3, "-ERR no"),
        (Protocol::Smtp, "421 busy"),
    ] {
        let refusing = FakeServer::refusing(at(22), protocol);
        let mut s = TcpStream::connect(refusing.addr()).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert_eq!(text, format!("{expected}\r\n"));
    }

    let closing = FakeServer::closing(at(23));
    let mut s = TcpStream::connect(closing.addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = Vec::new();
    // EOF (or a reset): nothing is ever sent.
    let _ = s.read_to_end(&mut buf);
    assert!(buf.is_empty());

    let greeter = FakeServer::start(at(24), Behavior::GreetThenSilent(Protocol::Smtp));
    assert!(
        common::read_greeting(greeter.addr(), WAIT)
            .unwrap()
            .starts_with("220 ")
    );

    let addr = silent.addr();
    drop(silent);
    assert!(common::is_refused(addr), "a dropped fake still listens");
}

#[test]
fn fakes_share_a_port_with_dovecot_on_another_address() {
    let subnet = Subnet::new();
    let cluster = Cluster::start(&subnet, "example.com", 1);
    let port = cluster.ports.imap;
    let fake = FakeServer::refusing(SocketAddr::new(subnet.node_ip(1), port), Protocol::Imap);
    assert_eq!(
        common::read_greeting(fake.addr(), WAIT).unwrap(),
        "* BYE go away"
    );
    assert!(
        common::read_greeting(cluster.nodes[0].dovecot.imap_addr(), WAIT)
            .unwrap()
            .starts_with("* OK")
    );
}

#[test]
fn subnets_are_distinct_and_never_127_0() {
    let subnets: Vec<Subnet> = (0..20).map(|_| Subnet::new()).collect();
    let mut cidrs: Vec<String> = subnets.iter().map(Subnet::cidr).collect();
    assert!(cidrs.iter().all(|c| !c.starts_with("127.0.")), "{cidrs:?}");
    cidrs.sort();
    cidrs.dedup();
    assert_eq!(cidrs.len(), 20);
}

#[test]
fn lab_config_is_valid_toml_with_the_contract_shape() {
    let lab = Lab::start(3);
    assert_eq!(
        lab.bind.query("mail2", "A"),
        vec![lab.subnet.node_ip(1).to_string()]
    );
    let cfg = lab
        .standard_config()
        .pool(
            PoolSpec::a("webmail", "tcp")
                .port(8080)
                .nodes(&["mail1"])
                .all_down("keep"),
        )
        .ha("dns1", "3s");
    let text = cfg.to_toml();
    let value: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        value["dns"]["server"].as_str(),
        Some(lab.bind.server().as_str())
    );
    assert_eq!(value["dns"]["zone"].as_str(), Some("example.com"));
    assert_eq!(value["probe"]["interval"].as_str(), Some("200ms"));
    assert_eq!(
        value["http"]["listen"].as_str(),
        Some(lab.http_addr(0).to_string().as_str())
    );
    assert_eq!(value["ha"]["instance"].as_str(), Some("dns1"));
    let nodes = value["node"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[1]["host"].as_str(), Some("mail2.example.com"));
    let pools = value["pool"].as_array().unwrap();
    assert_eq!(pools.len(), 6);
    assert_eq!(pools[3]["type"].as_str(), Some("MX"));
    assert_eq!(pools[3]["preference"].as_integer(), Some(10));
    assert_eq!(pools[5]["all_down"].as_str(), Some("keep"));
    let path = lab.write_config(&cfg);
    assert_eq!(std::fs::read_to_string(path).unwrap(), text);
    // Key file paths with odd characters are quoted properly.
    let odd = ConfigBuilder::new(
        "127.0.0.1:53",
        "example.com",
        std::path::Path::new("/tmp/a \"b\"\\c.key"),
    );
    let v: toml::Value = toml::from_str(&odd.to_toml()).unwrap();
    assert_eq!(v["dns"]["key_file"].as_str(), Some("/tmp/a \"b\"\\c.key"));
}

#[test]
fn metrics_parser_reads_the_prometheus_text_format() {
    let text = "\
# HELP pigeon_dns_node_up Whether a target is up.
# TYPE pigeon_dns_node_up gauge
pigeon_dns_node_up{address=\"127.1.2.11\",node=\"mail1\",pool=\"imap\"} 1
pigeon_dns_node_up{address=\"127.1.2.12\",node=\"mail2\",pool=\"imap\"} 0
# TYPE pigeon_dns_probes_total counter
pigeon_dns_probes_total{pool=\"imap\",node=\"mail1\",address=\"127.1.2.11\",result=\"ok\"} 7
pigeon_dns_probes_total{pool=\"imap\",node=\"mail1\",address=\"127.1.2.11\",result=\"timeout\"} 2
pigeon_dns_lease_held 1
pigeon_dns_probe_duration_seconds_bucket{check=\"imap\",le=\"+Inf\"} 9
pigeon_dns_build_info{version=\"0.1.0 \\\"x\\\"\"} 1 1700000000000
";
    let m = Metrics::parse(text);
    assert_eq!(
        m.get("pigeon_dns_node_up{pool=\"imap\",node=\"mail1\",address=\"127.1.2.11\"}"),
        Some(1.0)
    );
    assert_eq!(
        m.get("pigeon_dns_node_up{node=\"mail2\",pool=\"imap\",address=\"127.1.2.12\"}"),
        Some(0.0)
    );
    assert_eq!(
        m.get("pigeon_dns_node_up{pool=\"imap\"}"),
        Some(1.0),
        "the samples whose labels include these, summed"
    );
    assert_eq!(m.get("pigeon_dns_node_up{pool=\"pop\"}"), None);
    assert_eq!(m.get("pigeon_dns_lease_held"), Some(1.0));
    assert_eq!(m.sum("pigeon_dns_probes_total", &[("node", "mail1")]), 9.0);
    assert_eq!(
        m.get("pigeon_dns_probe_duration_seconds_bucket{check=\"imap\",le=\"+Inf\"}"),
        Some(9.0)
    );
    assert_eq!(
        m.get("pigeon_dns_build_info{version=\"0.1.0 \\\"x\\\"\"}"),
        Some(1.0)
    );
    assert!(m.has_family("pigeon_dns_probes_total"));
    assert!(!m.has_family("pigeon_dns_lease_held"));
}

#[test]
fn missing_tools_fail_with_the_package_to_install() {
    let panic =
        std::panic::catch_unwind(|| common::process::tool("surely-not-a-tool-named-like-this"))
            .expect_err("a missing tool must panic");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("not found: apt-get install"), "{msg}");
    assert!(common::process::tool("named").is_absolute());
}
