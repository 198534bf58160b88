//! Entry points for the fuzz targets (`fuzz/`) and `tests/fuzz_corpus.rs`: the
//! plain-text dialogues against a peer whose every byte is the fuzzer's.

use std::time::Duration;

use super::failure::Progress;
use super::lines::LineConn;
use super::{ProbeSpec, imap, pop3, smtp};
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
    runtime.block_on(async {
        let conn = LineConn::new(tokio::io::join(input, tokio::io::sink()));
        let mut progress = Progress::default();
        let spec = spec(check);
        match check {
            CheckKind::Smtp | CheckKind::Submission => {
                smtp::dialogue(conn, &spec, &mut progress).await.is_ok()
            }
            CheckKind::Pop3 => pop3::dialogue(conn, &mut progress).await.is_ok(),
            CheckKind::Imap => imap::dialogue(conn, &mut progress).await.is_ok(),
            _ => false,
        }
    })
}
