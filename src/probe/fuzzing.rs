//! Entry points for the fuzz targets (`fuzz/`) and `tests/fuzz_corpus.rs`: the
//! plain-text dialogues against a peer whose every byte is the fuzzer's.

use std::time::Duration;

use super::ProbeSpec;
use super::failure::Progress;
use super::mail::{self, Session};
use crate::config::{CheckKind, TlsOptions};

fn spec(check: CheckKind) -> ProbeSpec {
    ProbeSpec {
        check,
        addr: ([127, 0, 0, 1], 1).into(),
        timeout: Duration::from_secs(1),
        starttls: false,
        tls_name: "mail.example.com".into(),
        tls: TlsOptions {
            verify: true,
            name: None,
            ca_file: None,
            cert_min_days: 0,
        },
        http_host: "mail.example.com".into(),
        path: "/".into(),
        expect_body: None,
        dane: None,
        ehlo_name: "fuzz.example.com".into(),
    }
}

/// Runs the smtp, pop3 or imap dialogue against a peer that sends `input`
/// then closes (what the probe writes is discarded). Returns whether the
/// probe passed; it must never panic, whatever `input` is.
pub fn dialogue(check: CheckKind, input: &[u8]) -> bool {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return false;
    };
    let Some(dialect) = mail::dialect(check).filter(|_| !check.implicit_tls()) else {
        return false;
    };
    runtime.block_on(async {
        let session = Session::new(tokio::io::join(input, tokio::io::sink()), dialect);
        let mut progress = Progress::default();
        session.dialogue(&spec(check), &mut progress).await.is_ok()
    })
}
