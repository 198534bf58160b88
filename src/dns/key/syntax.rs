//! The BIND key-file syntax: `key "NAME" { algorithm ...; secret "..."; };`
//! statements with named.conf's comments, read into [`RawKey`]s. A syntax
//! error stops the reading; no message quotes what may be the secret.

/// One `key "name" { ... };` statement as written.
#[derive(Debug)]
pub(super) struct RawKey {
    pub(super) name: String,
    pub(super) line: usize,
    /// The algorithm as written, with its line.
    pub(super) algorithm: Option<(String, usize)>,
    /// The base64 secret as written, with its line. Never put in a message.
    pub(super) secret: Option<(String, usize)>,
}

impl RawKey {
    /// The field of a diagnostic about this key, e.g. `key "pigeon-dns".secret`.
    pub(super) fn field(&self, clause: &str) -> String {
        if clause.is_empty() {
            format!("key \"{}\"", self.name)
        } else {
            format!("key \"{}\".{clause}", self.name)
        }
    }
}

/// A syntax error of the key file.
#[derive(Debug)]
pub(super) struct Problem {
    pub(super) line: usize,
    pub(super) field: String,
    pub(super) message: String,
}

fn problem(line: usize, field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        line,
        field: field.into(),
        message: message.into(),
    }
}

// ---- tokens ----

/// Whether a word may be quoted back in a message. A base64 secret is long
/// or holds `+`, `/` or `=`; keywords and algorithm names are neither, so
/// an unquoted or misplaced secret is never echoed.
pub(super) fn quotable(word: &str) -> bool {
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
pub(super) fn parse(text: &str) -> Result<Vec<RawKey>, Problem> {
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
    use crate::dns::key::test_support::{
        DDNS_CONFGEN, TSIG_KEYGEN, TWO_KEYS, assert_error, key, name,
    };

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
}
