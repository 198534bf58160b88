//! `[http]`: where `/metrics`, `/healthz`, `/readyz` and `/status` listen.

use std::net::SocketAddr;

use super::checker::Checker;
use super::raw::{RawHttp, Section};
use super::types::HttpConfig;

const DEFAULT_LISTEN: &str = "127.0.0.1:9854";

impl Checker<'_> {
    pub(super) fn http(&mut self, section: &Section<RawHttp>) -> Option<HttpConfig> {
        let listen = match section {
            Section::Broken => return None,
            Section::Absent => None,
            Section::Present(http) => http.get_ref().listen.as_ref(),
        };
        let Some(listen) = listen else {
            let default = DEFAULT_LISTEN.parse().ok();
            return Some(HttpConfig { listen: default });
        };
        let written = listen.get_ref().trim();
        if written.is_empty() {
            return Some(HttpConfig { listen: None });
        }
        match written.parse::<SocketAddr>() {
            Ok(addr) => Some(HttpConfig { listen: Some(addr) }),
            Err(_) => {
                let message = format!(
                    "`{written}` is not an IP address and port, e.g. \"127.0.0.1:9854\" or \"[::1]:9854\" (\"\" turns HTTP off)"
                );
                self.error(listen, "http.listen", message);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{BASE, IMAP_POOL, assert_error, config};

    #[test]
    fn http_listen_is_an_address_or_empty() {
        let text = format!("{BASE}{IMAP_POOL}[http]\nlisten = \"\"\n");
        assert_eq!(config(&text).http.listen, None);
        let text = format!("{BASE}{IMAP_POOL}[http]\nlisten = \"[::1]:9000\"\n");
        assert_eq!(config(&text).http.listen, "[::1]:9000".parse().ok());
        let text = format!("{BASE}{IMAP_POOL}[http]\nlisten = \"localhost:9854\"\n");
        assert_error(&text, Some(15), "http.listen", "not an IP address and port");
    }
}
