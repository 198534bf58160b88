//! The TSIG key: read from a BIND key file (as `tsig-keygen` and
//! `ddns-confgen` write it), turned into a hickory [`TSigner`].
//!
//! The secret is held only inside the signer: no `Debug`, `Display` or
//! diagnostic of this module ever shows it, not even part of it, so that a
//! log or a `check` output pasted into a ticket leaks nothing.

use std::fmt;
use std::path::Path;

use data_encoding::BASE64;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigner};

use crate::diagnostic::{Diagnostic, Severity};

/// Allowed clock difference, in seconds, between us and the primary
/// (RFC 8945 §5.2.3 recommends 300).
const FUDGE: u16 = 300;

/// Why a key cannot sign.
const ALGORITHM_HINT: &str = "hickory signs hmac-sha256/384/512 only; generate a new key with `tsig-keygen -a hmac-sha256 NAME`";

/// Why a TSIG key could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("algorithm `{0}` is not supported: {ALGORITHM_HINT}")]
    UnsupportedAlgorithm(String),
}

/// A TSIG key that hickory can sign with.
#[derive(Clone)]
pub struct TsigKey {
    /// The key's name, fully qualified; the primary knows the key by it.
    pub name: Name,
    pub algorithm: TsigAlgorithm,
    /// Owns the secret; built once so that [`TsigKey::signer`] cannot fail.
    signer: TSigner,
}

impl TsigKey {
    /// A key from its parts; fails for an algorithm hickory cannot sign with.
    pub fn new(name: Name, algorithm: TsigAlgorithm, secret: Vec<u8>) -> Result<Self, KeyError> {
        let mut name = name;
        name.set_fqdn(true);
        let signer = TSigner::new(secret, algorithm.clone(), name.clone(), FUDGE)
            .map_err(|_| KeyError::UnsupportedAlgorithm(algorithm_label(&algorithm).to_owned()))?;
        Ok(Self {
            name,
            algorithm,
            signer,
        })
    }

    /// The signer for requests (fudge 300 s).
    pub fn signer(&self) -> TSigner {
        self.signer.clone()
    }

    /// The algorithm as BIND writes it, e.g. "hmac-sha256".
    pub fn algorithm_name(&self) -> &'static str {
        algorithm_label(&self.algorithm)
    }
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm_name())
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn algorithm_label(algorithm: &TsigAlgorithm) -> &'static str {
    match algorithm {
        TsigAlgorithm::HmacMd5 => "hmac-md5",
        TsigAlgorithm::Gss => "gss-tsig",
        TsigAlgorithm::HmacSha1 => "hmac-sha1",
        TsigAlgorithm::HmacSha224 => "hmac-sha224",
        TsigAlgorithm::HmacSha256 => "hmac-sha256",
        TsigAlgorithm::HmacSha256_128 => "hmac-sha256-128",
        TsigAlgorithm::HmacSha384 => "hmac-sha384",
        TsigAlgorithm::HmacSha384_192 => "hmac-sha384-192",
        TsigAlgorithm::HmacSha512 => "hmac-sha512",
        TsigAlgorithm::HmacSha512_256 => "hmac-sha512-256",
        _ => "unknown",
    }
}

/// Reads the key file and picks the key: the one named `key_name`, or the
/// only one. Warnings (a file others can read) come with the key; on
/// failure every problem found is returned.
pub fn load_key_file(
    path: &Path,
    key_name: Option<&str>,
) -> Result<(TsigKey, Vec<Diagnostic>), Vec<Diagnostic>> {
    let report = Report::new(path);
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            return Err(vec![report.error(
                None,
                "",
                format!("cannot read the key file: {error}"),
            )]);
        }
    };
    let warning = permission_warning(path, &report);
    match parse_key_text(path, &text, key_name) {
        Ok((key, mut diagnostics)) => {
            diagnostics.extend(warning);
            Ok((key, diagnostics))
        }
        Err(mut diagnostics) => {
            diagnostics.extend(warning);
            Err(diagnostics)
        }
    }
}

/// Parses a key file's text as if read from `path` (no permission check).
/// Used by the fuzz target; `load_key_file` is this plus reading the file.
pub fn parse_key_text(
    path: &Path,
    text: &str,
    key_name: Option<&str>,
) -> Result<(TsigKey, Vec<Diagnostic>), Vec<Diagnostic>> {
    let report = Report::new(path);
    let mut diagnostics = Vec::new();
    let keys = match parse(text) {
        Ok(keys) => keys,
        Err(problem) => {
            diagnostics.push(report.error(Some(problem.line), &problem.field, problem.message));
            return Err(diagnostics);
        }
    };
    let chosen = choose(&keys, key_name, &report, &mut diagnostics)
        .and_then(|raw| build(raw, &report, &mut diagnostics));
    match chosen {
        Some(key) if !diagnostics.iter().any(|d| d.severity == Severity::Error) => {
            Ok((key, diagnostics))
        }
        _ => Err(diagnostics),
    }
}

/// Builds diagnostics located in one key file.
struct Report<'a> {
    file: &'a Path,
}

impl<'a> Report<'a> {
    fn new(file: &'a Path) -> Self {
        Self { file }
    }

    fn diagnostic(
        &self,
        severity: Severity,
        line: Option<usize>,
        field: &str,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            file: self.file.to_owned(),
            line,
            field: field.to_owned(),
            message,
        }
    }

    fn error(&self, line: Option<usize>, field: &str, message: String) -> Diagnostic {
        self.diagnostic(Severity::Error, line, field, message)
    }
}

/// A shared secret others can read is no secret; warned, never refused, so
/// that a first install still works.
#[cfg(unix)]
fn permission_warning(path: &Path, report: &Report<'_>) -> Option<Diagnostic> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| {
        report.diagnostic(
            Severity::Warning,
            None,
            "",
            "key file is readable by other users; chmod 640 (owner root, group pigeon-dns)"
                .to_owned(),
        )
    })
}

#[cfg(not(unix))]
fn permission_warning(_path: &Path, _report: &Report<'_>) -> Option<Diagnostic> {
    None
}

/// One `key "name" { ... };` statement as written.
#[derive(Debug)]
struct RawKey {
    name: String,
    line: usize,
    /// The algorithm as written, with its line.
    algorithm: Option<(String, usize)>,
    /// The base64 secret as written, with its line. Never put in a message.
    secret: Option<(String, usize)>,
}

impl RawKey {
    /// The field of a diagnostic about this key, e.g. `key "pigeon-dns".secret`.
    fn field(&self, clause: &str) -> String {
        if clause.is_empty() {
            format!("key \"{}\"", self.name)
        } else {
            format!("key \"{}\".{clause}", self.name)
        }
    }
}

/// A syntax error of the key file.
#[derive(Debug)]
struct Problem {
    line: usize,
    field: String,
    message: String,
}

fn problem(line: usize, field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        line,
        field: field.into(),
        message: message.into(),
    }
}

/// Picks the key to use; the names in the file are listed when that fails.
fn choose<'k>(
    keys: &'k [RawKey],
    key_name: Option<&str>,
    report: &Report<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<&'k RawKey> {
    let names = || {
        keys.iter()
            .map(|k| format!("`{}`", k.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, key) in keys.iter().enumerate() {
        if let Some(first) = keys[..i].iter().find(|k| same_name(&k.name, &key.name)) {
            let message = format!(
                "key `{}` is defined twice (first at line {})",
                key.name, first.line
            );
            diagnostics.push(report.error(Some(key.line), &key.field(""), message));
        }
    }
    match (key_name, keys) {
        (_, []) => {
            let message = "no key in this file; expected `key \"NAME\" { algorithm hmac-sha256; secret \"...\"; };`";
            diagnostics.push(report.error(None, "", message.to_owned()));
            None
        }
        (Some(wanted), _) => {
            let found = keys.iter().find(|k| same_name(&k.name, wanted));
            if found.is_none() {
                let message = format!(
                    "no key `{wanted}` (dns.key_name) in this file; it holds {}",
                    names()
                );
                diagnostics.push(report.error(None, "", message));
            }
            found
        }
        (None, [only]) => Some(only),
        (None, _) => {
            let message = format!(
                "{} keys in this file ({}): set dns.key_name to the one to use",
                keys.len(),
                names()
            );
            diagnostics.push(report.error(None, "", message));
            None
        }
    }
}

/// Key names compare as DNS names: case-insensitive, trailing dot optional.
fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// Checks the chosen key's name, algorithm and secret, reporting each problem.
fn build(raw: &RawKey, report: &Report<'_>, diagnostics: &mut Vec<Diagnostic>) -> Option<TsigKey> {
    let name = match Name::from_ascii(&raw.name) {
        Ok(name) => Some(name),
        Err(error) => {
            let message = format!("`{}` is not a valid key name: {error}", raw.name);
            diagnostics.push(report.error(Some(raw.line), &raw.field(""), message));
            None
        }
    };
    let algorithm = match &raw.algorithm {
        None => {
            diagnostics.push(report.error(
                Some(raw.line),
                &raw.field(""),
                "missing `algorithm`".to_owned(),
            ));
            None
        }
        Some((written, line)) => {
            let parsed = parse_algorithm(written);
            if parsed.is_none() {
                let shown = if quotable(written) {
                    format!(" `{written}`")
                } else {
                    String::new()
                };
                let message = format!("algorithm{shown} is not supported: {ALGORITHM_HINT}");
                diagnostics.push(report.error(Some(*line), &raw.field("algorithm"), message));
            }
            parsed
        }
    };
    let secret = match &raw.secret {
        None => {
            diagnostics.push(report.error(
                Some(raw.line),
                &raw.field(""),
                "missing `secret`".to_owned(),
            ));
            None
        }
        Some((written, line)) => {
            let decoded = decode_secret(written);
            if let Err(message) = &decoded {
                diagnostics.push(report.error(Some(*line), &raw.field("secret"), message.clone()));
            }
            decoded.ok()
        }
    };
    // Cannot fail: only algorithms TSigner supports get here.
    TsigKey::new(name?, algorithm?, secret?).ok()
}

fn parse_algorithm(written: &str) -> Option<TsigAlgorithm> {
    match written.to_ascii_lowercase().as_str() {
        "hmac-sha256" => Some(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Some(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Some(TsigAlgorithm::HmacSha512),
        _ => None,
    }
}

/// Base64, as BIND writes it; whitespace inside is ignored. The message
/// never quotes the secret.
fn decode_secret(written: &str) -> Result<Vec<u8>, String> {
    let compact: String = written.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err("the secret is empty".to_owned());
    }
    match BASE64.decode(compact.as_bytes()) {
        Ok(secret) if secret.is_empty() => Err("the secret is empty".to_owned()),
        Ok(secret) => Ok(secret),
        Err(error) => Err(format!(
            "the secret is not valid base64 (at character {}); copy it again from the tsig-keygen output",
            error.position + 1
        )),
    }
}

// ---- tokens ----

/// Whether a word may be quoted back in a message. A base64 secret is long
/// or holds `+`, `/` or `=`; keywords and algorithm names are neither, so
/// an unquoted or misplaced secret is never echoed.
fn quotable(word: &str) -> bool {
    word.len() <= 30
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Semicolon,
}

impl Token {
    /// For messages. A quoted string is never quoted back: it may be a secret.
    fn describe(&self) -> String {
        match self {
            Token::Word(word) if quotable(word) => format!("`{word}`"),
            Token::Word(_) => "a word".to_owned(),
            Token::Quoted(_) => "a quoted string".to_owned(),
            Token::Open => "`{`".to_owned(),
            Token::Close => "`}`".to_owned(),
            Token::Semicolon => "`;`".to_owned(),
        }
    }
}

/// Splits the file into tokens with their lines, dropping whitespace and
/// comments (`#`, `//` and `/* */`, as named.conf allows).
fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, Problem> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        let start = line;
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => skip_line(&mut chars, &mut line),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars, &mut line),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                skip_block_comment(&mut chars, &mut line)
                    .ok_or_else(|| problem(start, "", "unterminated `/*` comment"))?;
            }
            '{' => tokens.push((Token::Open, line)),
            '}' => tokens.push((Token::Close, line)),
            ';' => tokens.push((Token::Semicolon, line)),
            '"' => {
                let quoted = quoted_string(&mut chars, &mut line)
                    .ok_or_else(|| problem(start, "", "unterminated quoted string"))?;
                tokens.push((Token::Quoted(quoted), start));
            }
            c => {
                let mut word = String::from(c);
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || matches!(next, '{' | '}' | ';' | '"') {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                tokens.push((Token::Word(word), start));
            }
        }
    }
    Ok(tokens)
}

type Chars<'t> = std::iter::Peekable<std::str::Chars<'t>>;

fn skip_line(chars: &mut Chars<'_>, line: &mut usize) {
    for c in chars.by_ref() {
        if c == '\n' {
            *line += 1;
            return;
        }
    }
}

/// `None` when the file ends inside the comment.
fn skip_block_comment(chars: &mut Chars<'_>, line: &mut usize) -> Option<()> {
    while let Some(c) = chars.next() {
        match c {
            '\n' => *line += 1,
            '*' if chars.peek() == Some(&'/') => {
                chars.next();
                return Some(());
            }
            _ => {}
        }
    }
    None
}

/// The rest of a quoted string (the opening quote is read); `\` escapes
/// the next character. `None` when the file ends inside it.
fn quoted_string(chars: &mut Chars<'_>, line: &mut usize) -> Option<String> {
    let mut value = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            '\n' => {
                *line += 1;
                value.push(c);
            }
            c => value.push(c),
        }
    }
    None
}

// ---- statements ----

/// Reads every `key` statement; stops at the first syntax error (what
/// follows it cannot be read reliably).
fn parse(text: &str) -> Result<Vec<RawKey>, Problem> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens: tokens.into_iter(),
        last_line: 1,
    };
    let mut keys = Vec::new();
    while let Some((token, line)) = parser.next() {
        match token {
            Token::Word(word) if word.eq_ignore_ascii_case("key") => keys.push(parser.key(line)?),
            other => {
                let message = format!(
                    "unexpected {}: a key file holds `key \"NAME\" {{ algorithm ...; secret \"...\"; }};` statements",
                    other.describe()
                );
                return Err(problem(line, "", message));
            }
        }
    }
    Ok(keys)
}

struct Parser {
    tokens: std::vec::IntoIter<(Token, usize)>,
    /// Line of the last token read, for "unexpected end of file".
    last_line: usize,
}

impl Parser {
    fn next(&mut self) -> Option<(Token, usize)> {
        let next = self.tokens.next();
        if let Some((_, line)) = &next {
            self.last_line = *line;
        }
        next
    }

    /// The next token, or an error naming what was expected.
    fn expect(&mut self, field: &str, what: &str) -> Result<(Token, usize), Problem> {
        let line = self.last_line;
        self.next().ok_or_else(|| {
            problem(
                line,
                field,
                format!("unexpected end of file; expected {what}"),
            )
        })
    }

    fn punctuation(&mut self, wanted: Token, field: &str, after: &str) -> Result<(), Problem> {
        let what = format!("{} after {after}", wanted.describe());
        match self.expect(field, &what)? {
            (token, _) if token == wanted => Ok(()),
            (token, line) => Err(problem(
                line,
                field,
                format!("expected {what}, found {}", token.describe()),
            )),
        }
    }

    /// `key NAME { clause; ... };` after the `key` keyword.
    fn key(&mut self, line: usize) -> Result<RawKey, Problem> {
        let name = match self.expect("key", "the key's name")? {
            (Token::Word(name) | Token::Quoted(name), _) => name,
            (token, line) => {
                return Err(problem(
                    line,
                    "key",
                    format!("expected the key's name, found {}", token.describe()),
                ));
            }
        };
        let mut key = RawKey {
            name,
            line,
            algorithm: None,
            secret: None,
        };
        self.punctuation(Token::Open, &key.field(""), "the key's name")?;
        loop {
            match self.expect(&key.field(""), "`algorithm`, `secret` or `}`")? {
                (Token::Close, _) => break,
                (Token::Word(clause), line) => self.clause(&mut key, &clause, line)?,
                (token, line) => {
                    let message = format!(
                        "expected `algorithm`, `secret` or `}}`, found {}",
                        token.describe()
                    );
                    return Err(problem(line, key.field(""), message));
                }
            }
        }
        self.punctuation(Token::Semicolon, &key.field(""), "`}`")?;
        Ok(key)
    }

    /// One `algorithm X;` or `secret "X";`.
    fn clause(&mut self, key: &mut RawKey, clause: &str, line: usize) -> Result<(), Problem> {
        let lowered = clause.to_ascii_lowercase();
        if lowered != "algorithm" && lowered != "secret" {
            let shown = Token::Word(clause.to_owned()).describe();
            let message = format!("unknown clause {shown}; a key has `algorithm` and `secret`");
            return Err(problem(line, key.field(""), message));
        }
        let field = key.field(&lowered);
        let value = match self.expect(&field, "a value")? {
            (Token::Word(value) | Token::Quoted(value), line) => (value, line),
            // Describing a token here is safe: it is punctuation.
            (token, line) => {
                return Err(problem(
                    line,
                    field,
                    format!("expected a value, found {}", token.describe()),
                ));
            }
        };
        let slot = if lowered == "algorithm" {
            &mut key.algorithm
        } else {
            &mut key.secret
        };
        if slot.is_some() {
            return Err(problem(line, field, format!("`{lowered}` is given twice")));
        }
        *slot = Some(value);
        // A word after the value may be part of an unquoted secret: name
        // only its kind, never its text.
        match self.expect(&field, "`;`")? {
            (Token::Semicolon, _) => Ok(()),
            (_, line) => Err(problem(
                line,
                field,
                format!("expected `;` after the {lowered}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use tempfile::TempDir;

    use super::*;

    const SECRET: &str = "l0fWxlEjWyj8wOXhJHNC3Y9iTBWDsL2bTRxPNxFrDkU=";

    /// Real `tsig-keygen pigeon-dns` output.
    const TSIG_KEYGEN: &str = "key \"pigeon-dns\" {\n\talgorithm hmac-sha256;\n\tsecret \"l0fWxlEjWyj8wOXhJHNC3Y9iTBWDsL2bTRxPNxFrDkU=\";\n};\n";

    /// `ddns-confgen -z example.com` output (comments around the key).
    const DDNS_CONFGEN: &str = r#"# To activate this key, place the following in named.conf, and
# in a separate keyfile on the system or systems from which nsupdate
# will be run:
key "ddns-key.example.com" {
	algorithm hmac-sha256;
	secret "l0fWxlEjWyj8wOXhJHNC3Y9iTBWDsL2bTRxPNxFrDkU=";
};

# Then, in the "zone" definitions statements for the zones
# that this key will be used to update, place the following:
#
# update-policy {
#	grant ddns-key.example.com zonesub ANY;
# };
#
# After the keyfile has been placed, the following command will
# execute nsupdate using this key:
#
# nsupdate -k <keyfile>
"#;

    const TWO_KEYS: &str = r#"// two keys
key "one" {
    algorithm hmac-sha384;
    secret "l0fWxlEjWyj8wOXhJHNC3Y9iTBWDsL2bTRxPNxFrDkU=";
};
/* the second
   key */
key two { algorithm HMAC-SHA512; secret "l0fWxlEjWyj8wOXhJHNC3Y9iTBWDsL2bTRxPNxFrDkU="; };
"#;

    /// Writes a key file (mode 0600 unless said otherwise) and loads it.
    fn load_text(
        text: &str,
        key_name: Option<&str>,
    ) -> Result<(TsigKey, Vec<Diagnostic>), Vec<Diagnostic>> {
        load_with_mode(text, key_name, 0o600)
    }

    fn load_with_mode(
        text: &str,
        key_name: Option<&str>,
        mode: u32,
    ) -> Result<(TsigKey, Vec<Diagnostic>), Vec<Diagnostic>> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = TempDir::new().expect("tempdir");
        let path = dir.path().join("pigeon-dns.key");
        std::fs::write(&path, text).expect("write key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        load_key_file(&path, key_name)
    }

    fn key(text: &str, key_name: Option<&str>) -> TsigKey {
        match load_text(text, key_name) {
            Ok((key, warnings)) => {
                assert!(warnings.is_empty(), "{warnings:?}");
                key
            }
            Err(diagnostics) => panic!("{}", render(&diagnostics)),
        }
    }

    fn errors(text: &str, key_name: Option<&str>) -> Vec<Diagnostic> {
        match load_text(text, key_name) {
            Ok(_) => panic!("expected errors"),
            Err(diagnostics) => diagnostics,
        }
    }

    fn render(diagnostics: &[Diagnostic]) -> String {
        diagnostics.iter().map(|d| format!("{d}\n")).collect()
    }

    /// The one error, with its line, field and a part of its message.
    fn assert_error(
        text: &str,
        key_name: Option<&str>,
        line: Option<usize>,
        field: &str,
        needle: &str,
    ) {
        let diagnostics = errors(text, key_name);
        let found: Vec<&Diagnostic> = diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert_eq!(found.len(), 1, "{}", render(&diagnostics));
        assert_eq!(
            (found[0].line, found[0].field.as_str()),
            (line, field),
            "{}",
            found[0]
        );
        assert!(
            found[0].message.contains(needle),
            "`{needle}` not in: {}",
            found[0]
        );
    }

    fn name(text: &str) -> Name {
        Name::from_ascii(text).expect("name")
    }

    #[test]
    fn reads_tsig_keygen_output() {
        let key = key(TSIG_KEYGEN, None);
        assert_eq!(key.name, name("pigeon-dns."));
        assert!(key.name.is_fqdn());
        assert_eq!(key.algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(key.algorithm_name(), "hmac-sha256");
        let signer = key.signer();
        assert_eq!(
            signer.key(),
            BASE64.decode(SECRET.as_bytes()).expect("base64")
        );
        assert_eq!(signer.fudge(), 300);
        assert_eq!(signer.algorithm(), &TsigAlgorithm::HmacSha256);
        assert_eq!(signer.signer_name(), &name("pigeon-dns."));
        // key_name may be written with or without the final dot, in any case.
        assert_eq!(
            self::key(TSIG_KEYGEN, Some("Pigeon-DNS.")).name,
            name("pigeon-dns.")
        );
    }

    #[test]
    fn reads_ddns_confgen_output_with_its_comments() {
        let key = key(DDNS_CONFGEN, None);
        assert_eq!(key.name, name("ddns-key.example.com."));
    }

    #[test]
    fn reads_several_keys_with_comments_and_unquoted_names() {
        let one = key(TWO_KEYS, Some("one"));
        assert_eq!(
            (one.name.clone(), one.algorithm_name()),
            (name("one."), "hmac-sha384")
        );
        let two = key(TWO_KEYS, Some("two"));
        assert_eq!(
            (two.name.clone(), two.algorithm_name()),
            (name("two."), "hmac-sha512")
        );
        let squeezed = "key\"k\"{algorithm hmac-sha256;secret\"l0fWxlEjWyj8wOXhJHNC3Y9iTBWDsL2bTRxPNxFrDkU=\";};";
        assert_eq!(key(squeezed, None).name, name("k."));
    }

    #[test]
    fn several_keys_need_a_key_name() {
        assert_error(
            TWO_KEYS,
            None,
            None,
            "",
            "2 keys in this file (`one`, `two`): set dns.key_name",
        );
        assert_error(
            TWO_KEYS,
            Some("three"),
            None,
            "",
            "no key `three` (dns.key_name) in this file; it holds `one`, `two`",
        );
        assert_error("# empty\n", None, None, "", "no key in this file");
    }

    #[test]
    fn md5_and_sha1_are_refused_with_a_hint() {
        for algorithm in [
            "hmac-md5",
            "hmac-md5.sig-alg.reg.int",
            "HMAC-MD5.SIG-ALG.REG.INT",
            "hmac-sha1",
            "hmac-sha224",
        ] {
            let text = TSIG_KEYGEN.replace("hmac-sha256", algorithm);
            assert_error(
                &text,
                None,
                Some(2),
                "key \"pigeon-dns\".algorithm",
                "hickory signs hmac-sha256/384/512 only; generate a new key with `tsig-keygen -a hmac-sha256 NAME`",
            );
        }
        let md5 = TsigKey::new(name("k"), TsigAlgorithm::HmacMd5, vec![1, 2, 3]);
        assert!(matches!(md5, Err(KeyError::UnsupportedAlgorithm(_))));
    }

    #[test]
    fn only_the_chosen_key_must_be_usable() {
        let text = format!(
            "key old {{ algorithm hmac-md5; secret \"bm90IGEgc2VjcmV0\"; }};\n{TSIG_KEYGEN}"
        );
        assert_eq!(key(&text, Some("pigeon-dns")).name, name("pigeon-dns."));
    }

    #[test]
    fn bad_base64_is_an_error() {
        let text = TSIG_KEYGEN.replace("l0fWxlEj", "l0fW*lEj");
        assert_error(
            &text,
            None,
            Some(3),
            "key \"pigeon-dns\".secret",
            "not valid base64 (at character 5)",
        );
        let text = TSIG_KEYGEN.replace(SECRET, "");
        assert_error(&text, None, Some(3), "key \"pigeon-dns\".secret", "empty");
    }

    #[test]
    fn missing_clauses_are_errors() {
        let text = "key \"k\" {\n algorithm hmac-sha256;\n};\n";
        assert_error(text, None, Some(1), "key \"k\"", "missing `secret`");
        let text = "key \"k\" {\n secret \"bm90IGEgc2VjcmV0\";\n};\n";
        assert_error(text, None, Some(1), "key \"k\"", "missing `algorithm`");
    }

    #[test]
    fn syntax_errors_name_their_line() {
        assert_error(
            "key \"k\" {\n algorithm hmac-sha256;\n}\n",
            None,
            Some(3),
            "key \"k\"",
            "expected `;` after `}`",
        );
        assert_error(
            "key \"k\" {\n algorithm hmac-sha256\n secret \"x\";\n};\n",
            None,
            Some(3),
            "key \"k\".algorithm",
            "expected `;`",
        );
        assert_error(
            "key \"k\" {\n algo hmac-sha256;\n};\n",
            None,
            Some(2),
            "key \"k\"",
            "unknown clause `algo`",
        );
        assert_error(
            "key \"k\" {\n secret \"abc\n",
            None,
            Some(2),
            "",
            "unterminated quoted string",
        );
        assert_error(
            "/* key \"k\" {\n",
            None,
            Some(1),
            "",
            "unterminated `/*` comment",
        );
        assert_error("options { };\n", None, Some(1), "", "unexpected `options`");
        assert_error(
            "key \"k\" {\n algorithm hmac-sha256;\n algorithm hmac-sha512;\n};\n",
            None,
            Some(3),
            "key \"k\".algorithm",
            "given twice",
        );
        assert_error(
            "key \"k\" {\n",
            None,
            Some(1),
            "key \"k\"",
            "unexpected end of file",
        );
        let twice = format!("{TSIG_KEYGEN}{TSIG_KEYGEN}");
        assert_error(
            &twice,
            Some("pigeon-dns"),
            Some(5),
            "key \"pigeon-dns\"",
            "defined twice (first at line 1)",
        );
    }

    #[test]
    fn a_world_readable_file_is_warned_about_not_refused() {
        let (_, warnings) = load_with_mode(TSIG_KEYGEN, None, 0o644).expect("still loads");
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].severity, Severity::Warning);
        assert_eq!(
            warnings[0].message,
            "key file is readable by other users; chmod 640 (owner root, group pigeon-dns)"
        );
        let (_, warnings) = load_with_mode(TSIG_KEYGEN, None, 0o640).expect("loads");
        assert!(warnings.is_empty());
    }

    #[test]
    fn an_unreadable_file_is_an_error() {
        let diagnostics =
            load_key_file(Path::new("/nonexistent/pigeon-dns.key"), None).expect_err("no file");
        assert_eq!(diagnostics.len(), 1);
        assert!(diagnostics[0].message.contains("cannot read the key file"));
    }

    /// Every output this module can produce, for every kind of file, never
    /// holds the secret or a recognizable part of it.
    #[test]
    fn the_secret_never_appears_in_any_output() {
        let secret = SECRET;
        let cases = [
            TSIG_KEYGEN.to_owned(),
            TSIG_KEYGEN.replace("hmac-sha256", "hmac-md5"),
            TSIG_KEYGEN.replace("l0fWxlEj", "l0fW*lEj"),
            TSIG_KEYGEN.replace(&format!("\"{secret}\""), secret),
            TSIG_KEYGEN.replace(&format!("\"{secret}\";"), &format!("{secret} {secret};")),
            TSIG_KEYGEN.replace(
                &format!("\"{secret}\""),
                &format!("\"{secret}\" \"{secret}\""),
            ),
            TSIG_KEYGEN.replace("algorithm hmac-sha256", &format!("algorithm {secret}")),
            TSIG_KEYGEN.replace("algorithm hmac-sha256", &format!("{secret} hmac-sha256")),
            TSIG_KEYGEN.replace("};", "}"),
            TSIG_KEYGEN.replace(&format!("\"{secret}\";\n}};"), &format!("\"{secret}")),
            format!("{secret}\n"),
            format!("{TSIG_KEYGEN}{TSIG_KEYGEN}"),
        ];
        let mut outputs = Vec::new();
        for (i, text) in cases.iter().enumerate() {
            for mode in [0o600, 0o644] {
                match load_with_mode(text, None, mode) {
                    Ok((key, warnings)) => {
                        outputs.push(format!(
                            "{key:?} {key:#?} {:?} {:?}",
                            key.name, key.algorithm
                        ));
                        outputs.extend(warnings.iter().map(|d| format!("{d} {d:?}")));
                    }
                    Err(diagnostics) => {
                        assert!(!diagnostics.is_empty(), "case {i}");
                        outputs.extend(diagnostics.iter().map(|d| format!("{d} {d:?}")));
                    }
                }
            }
        }
        let fragments = [secret, &secret[..12], &secret[16..28], "l0fW"];
        for output in &outputs {
            for fragment in fragments {
                assert!(!output.contains(fragment), "secret in output: {output}");
            }
        }
        assert!(outputs.len() > cases.len());
    }
}
