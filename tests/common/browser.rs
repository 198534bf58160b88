//! Headless Chromium driven over the DevTools protocol, to look at a page
//! as a person would: load it, read what it shows (`Runtime.evaluate`),
//! wait for it to change, take a screenshot.
//!
//! # How
//! Debian's `chromium` starts headless with `--remote-debugging-port=0` and
//! a fresh profile; it prints the browser's DevTools WebSocket URL on stderr
//! (`DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID`). One
//! WebSocket carries every command: [`Browser::new_page`] opens a tab
//! (`Target.createTarget`) and attaches to it in flat mode, so a [`Page`]'s
//! commands go over the same socket tagged with its `sessionId`. Replies are
//! matched by `id`; events are read and dropped (the driver polls the page
//! instead of subscribing: one code path, deadlines everywhere).
//!
//! # Why `tungstenite`
//! The driver needs a blocking WebSocket client and JSON, nothing more.
//! `tungstenite` without TLS features is that: 8 small crates (itself,
//! `sha1` and its `digest` family, `typenum`), compiled in a few seconds,
//! for tests only. `chromiumoxide` and `headless_chrome` wrap the whole
//! protocol in generated types (hundreds of thousands of lines; an async
//! runtime and a WebSocket stack of their own, or a browser downloader)
//! and cost minutes of build on two cores for the five commands used here.
//! (Chromium's `--remote-debugging-pipe` would need no crate at all, but
//! it talks on file descriptors 3 and 4, which `std::process` cannot hand
//! to a child without `unsafe` or a shell in between.)
//!
//! # Rules it keeps
//! Like the rest of the harness: Chromium and every process it forks (its
//! own process group) are killed on drop, its profile lives in a tempdir, a
//! missing `chromium` fails the test with the package to install, and every
//! wait polls with a deadline.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use super::process::{Guarded, tool};

/// How long Chromium may take to start (a loaded 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one DevTools command may take (a screenshot included).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a page may take to load.
const LOAD_TIMEOUT: Duration = Duration::from_secs(20);
/// How often [`Page::wait_for`] asks again.
const POLL: Duration = Duration::from_millis(50);

/// The flags that keep a headless Chromium to itself: without the
/// background-networking ones it tries to reach Google's services, which
/// are closed here.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
];

/// A headless Chromium; killed (with every process it forked) on drop.
pub struct Browser {
    cdp: Rc<RefCell<Cdp>>,
    process: Guarded,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Removed after the process is killed (fields drop in order).
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium and connects to its DevTools endpoint.
    pub fn start() -> Browser {
        let chromium = tool("chromium");
        let profile = tempfile::Builder::new()
            .prefix("pigeon-chromium-")
            .tempdir()
            .expect("tempdir for the Chromium profile");
        let mut cmd = Command::new(&chromium);
        cmd.args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut process = Guarded::spawn(cmd, true)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (url_tx, url_rx) = mpsc::channel();
        let pipe = process.take_stderr().expect("stderr is piped");
        {
            let stderr = stderr.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Some(url) = line.strip_prefix("DevTools listening on ") {
                        let _ = url_tx.send(url.trim().to_owned());
                    }
                    stderr.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        let tail = |stderr: &Arc<Mutex<Vec<String>>>| {
            stderr.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
        };
        let url = match url_rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => url,
            Err(_) => panic!(
                "chromium printed no DevTools URL within {START_TIMEOUT:?} (exited: {}); stderr:\n{}",
                process.has_exited(),
                tail(&stderr)
            ),
        };
        let cdp = Cdp::connect(&url)
            .unwrap_or_else(|e| panic!("DevTools at {url}: {e}; stderr:\n{}", tail(&stderr)));
        Browser {
            cdp: Rc::new(RefCell::new(cdp)),
            process,
            stderr,
            _profile: profile,
        }
    }

    /// Opens a new tab on `about:blank`.
    pub fn new_page(&self) -> Page {
        let mut cdp = self.cdp.borrow_mut();
        let target = cdp
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .unwrap_or_else(|e| panic!("{e}"));
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = cdp
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        Page {
            cdp: self.cdp.clone(),
            session,
        }
    }

    /// Chromium's stderr so far.
    pub fn log(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// One tab. Its commands share the browser's connection.
pub struct Page {
    cdp: Rc<RefCell<Cdp>>,
    session: String,
}

impl Page {
    /// Sends a DevTools command to this tab and returns its `result`;
    /// panics on an error reply or when none comes in time.
    pub fn call(&self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.cdp
            .borrow_mut()
            .call(Some(&self.session), method, params)
    }

    /// The viewport (and so the screenshot) size, in CSS pixels at scale 1.
    pub fn set_viewport(&self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// Turns the page's own scripts off (from the next document on);
    /// [`Page::eval`] still works, as DevTools evaluates outside the page.
    pub fn disable_javascript(&self) {
        self.call(
            "Emulation.setScriptExecutionDisabled",
            json!({"value": true}),
        );
    }

    /// Navigates to `url` and waits until that document has loaded.
    pub fn goto(&self, url: &str) {
        let reply = self.call("Page.navigate", json!({"url": url}));
        if let Some(error) = reply.get("errorText").and_then(Value::as_str) {
            panic!("cannot load {url}: {error}");
        }
        let href = Value::from(url).to_string();
        self.wait_for(
            &format!("{url} to load"),
            &format!("location.href === {href} && document.readyState === 'complete'"),
            LOAD_TIMEOUT,
        );
    }

    /// Evaluates a JavaScript expression in the page (promises awaited) and
    /// returns its value as JSON (`null` for `undefined`); panics when it
    /// throws.
    pub fn eval(&self, expression: &str) -> Value {
        self.try_eval(expression).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_eval(&self, expression: &str) -> Result<Value, String> {
        let reply = self.try_call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(exception) = reply.get("exceptionDetails") {
            let text = exception["exception"]["description"]
                .as_str()
                .or(exception["text"].as_str())
                .unwrap_or("an exception");
            return Err(format!("{expression} threw: {text}"));
        }
        Ok(reply["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// [`Page::eval`] of an expression that yields a string.
    pub fn eval_string(&self, expression: &str) -> String {
        match self.eval(expression) {
            Value::String(s) => s,
            other => panic!("{expression} gave {other}, not a string"),
        }
    }

    /// [`Page::eval`] of an expression that yields a boolean.
    pub fn eval_bool(&self, expression: &str) -> bool {
        match self.eval(expression) {
            Value::Bool(b) => b,
            other => panic!("{expression} gave {other}, not a boolean"),
        }
    }

    /// The text the page shows (`document.body.innerText`).
    pub fn text(&self) -> String {
        self.eval_string("document.body ? document.body.innerText : ''")
    }

    /// Polls `expression` (a boolean) until it is true, for at most
    /// `timeout`; returns how long that took. On timeout, panics with
    /// `what`, the last error if the evaluation failed, and the page's text.
    pub fn wait_for(&self, what: &str, expression: &str, timeout: Duration) -> Duration {
        let started = Instant::now();
        let mut last;
        loop {
            match self.try_eval(expression) {
                Ok(Value::Bool(true)) => return started.elapsed(),
                Ok(value) => last = format!("last value {value}"),
                // A document being replaced has no context for a moment.
                Err(e) => last = e,
            }
            if started.elapsed() >= timeout {
                let text = self.try_eval("document.body && document.body.innerText");
                panic!(
                    "timed out after {timeout:?} waiting for {what} ({expression}); {last}; page text:\n{}",
                    text.map(|v| v.as_str().unwrap_or_default().to_owned())
                        .unwrap_or_else(|e| e)
                );
            }
            thread::sleep(POLL);
        }
    }

    /// A PNG of the viewport, written to `path` (parent directories made).
    pub fn screenshot(&self, path: &Path) {
        let reply = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let data = reply["data"].as_str().expect("screenshot data");
        let png = data_encoding::BASE64
            .decode(data.as_bytes())
            .expect("screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// The DevTools connection: commands out, replies matched by id.
struct Cdp {
    ws: WebSocket<TcpStream>,
    next_id: u64,
}

impl Cdp {
    fn connect(url: &str) -> Result<Cdp, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("not a ws:// URL: {url}"))?;
        let host = rest.split('/').next().unwrap_or_default();
        let stream = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
        let timeouts = |stream: &TcpStream, read: Duration| {
            stream
                .set_read_timeout(Some(read))
                .and_then(|()| stream.set_write_timeout(Some(CALL_TIMEOUT)))
                .map_err(|e| e.to_string())
        };
        timeouts(&stream, CALL_TIMEOUT)?;
        let (ws, _) = tungstenite::client(url, stream).map_err(|e| format!("handshake: {e}"))?;
        // From now on reads wake up this often, so that a missing reply
        // meets its deadline.
        timeouts(ws.get_ref(), POLL)?;
        Ok(Cdp { ws, next_id: 1 })
    }

    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = session.into();
        }
        self.ws
            .send(Message::text(message.to_string()))
            .map_err(|e| format!("{method}: cannot send: {e}"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    let reply: Value = serde_json::from_str(text.as_str())
                        .map_err(|e| format!("{method}: bad JSON from DevTools: {e}"))?;
                    if reply["id"].as_u64() == Some(id) {
                        if let Some(error) = reply.get("error") {
                            return Err(format!("{method} failed: {error}"));
                        }
                        return Ok(reply["result"].clone());
                    }
                    // An event, or a reply to nothing we wait for.
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("{method}: DevTools connection: {e}")),
            }
            if Instant::now() >= deadline {
                return Err(format!("{method}: no reply within {CALL_TIMEOUT:?}"));
            }
        }
    }
}
