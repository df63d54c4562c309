//! Redaction: the one function that takes secrets out of text, for every stage.
//!
//! Two kinds of text are secrets:
//!
//! - **Known secrets**: every value registered with [`register`] — every API key a run reads
//!   (each provider's `api_key_env`, `--endpoint-key-env`: reading one registers it, see
//!   [`crate::run::RunOptions::read_key`], and so does wrapping one in
//!   [`crate::run::provider::ApiKey`]) and the values of environment variables handed to
//!   commands whose names mark them as secrets ([`is_secret_name`]). The registry is
//!   process-wide and only grows, so no call site can forget a key another one read. Values
//!   shorter than [`MIN_SECRET_CHARS`] are not secrets (a placeholder such as `x` for a
//!   local server), nor is anything the mark itself contains.
//! - **Key-shaped text**: a prefix of a well-known key format ([`KEY_SHAPES`]) at a word
//!   start, followed by enough key characters, one of them a digit — also when no run read
//!   it (a server echoing someone else's key). The checker's E0601 finds literal keys in
//!   scripts with the same definition ([`find_key_shapes`]).
//!
//! [`redact`] replaces both with [`MARK`], known secrets in clear and in the forms JSON gives
//! them (`"` → `\"`, `\` → `\\`, control characters escaped, `/` → `\/`), so a raw HTTP body
//! or a journal line is scrubbed as well as the text it decodes to. It returns [`Redacted`],
//! which nothing else can construct; shortening ([`Redacted::shorten`]) and cutting
//! ([`Redacted::slice`]) take a [`Redacted`], so text is always redacted before it is cut —
//! the other order can leave the start of a key behind, where no full key is left to find.

use std::fmt;
use std::ops::Deref;
use std::sync::RwLock;

/// What a secret is replaced with.
pub const MARK: &str = "<redacted>";

/// Registered values shorter than this many characters are ignored: a placeholder key such
/// as `x` is no secret, and replacing every `x` would garble every message.
pub const MIN_SECRET_CHARS: usize = 8;

/// Prefixes of well-known key formats and the shortest run of key characters (`[A-Za-z0-9_-]`)
/// that follows each in a real key. Sources: Anthropic keys start `sk-ant-`, OpenAI keys `sk-`
/// (also `sk-proj-`), AWS access key ids `AKIA` + 16, GitHub tokens `ghp_`/`gho_`/
/// `github_pat_`, Slack tokens `xoxb-`/`xoxp-`.
pub const KEY_SHAPES: &[(&str, usize)] = &[
    ("sk-ant-", 16),
    ("sk-", 20),
    ("AKIA", 16),
    ("ghp_", 30),
    ("gho_", 30),
    ("github_pat_", 30),
    ("xoxb-", 20),
    ("xoxp-", 20),
];

/// Words that mark an environment variable's name as holding a secret (compared with the
/// name's `_`-separated words, upper-cased: `GITHUB_TOKEN`, `DB_PASSWORD`, `MY_API_KEY`).
const SECRET_NAME_WORDS: &[&str] = &[
    "KEY",
    "KEYS",
    "APIKEY",
    "TOKEN",
    "TOKENS",
    "SECRET",
    "SECRETS",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "CREDENTIAL",
    "CREDENTIALS",
    "AUTH",
    "PAT",
    "COOKIE",
    "PRIVATE",
];

/// The forms of every registered secret, longest first (so that a secret containing another
/// is replaced whole).
static REGISTRY: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds `secret` to the known secrets, in clear and in its JSON-escaped forms. Values shorter
/// than [`MIN_SECRET_CHARS`] characters, and values the mark contains, are ignored.
pub fn register(secret: &str) {
    if secret.chars().count() < MIN_SECRET_CHARS || MARK.contains(secret) {
        return;
    }
    let quoted = serde_json::to_string(secret).unwrap_or_default();
    let escaped = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(secret)
        .to_owned();
    let slashed = escaped.replace('/', "\\/");
    let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    for form in [secret.to_owned(), escaped, slashed] {
        if !registry.contains(&form) {
            registry.push(form);
        }
    }
    registry.sort_by_key(|f| std::cmp::Reverse(f.len()));
}

/// Registers `value` when `name` marks it as a secret ([`is_secret_name`]): for variables set
/// for a command, or inherited by one.
pub fn register_env(name: &str, value: &str) {
    if is_secret_name(name) {
        register(value);
    }
}

/// Whether an environment variable's name says it holds a secret: one of its words
/// (separated by `_`, `-` or `.`, any case) is `KEY`, `TOKEN`, `SECRET`, `PASSWORD`, `AUTH`
/// and the like, or it ends in `KEY` or `TOKEN` (`APIKEY`, `GHTOKEN`).
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.ends_with("KEY")
        || upper.ends_with("TOKEN")
        || upper
            .split(['_', '-', '.'])
            .any(|w| SECRET_NAME_WORDS.contains(&w))
}

/// Text with every known secret and every key-shaped token replaced by [`MARK`]. Only
/// [`redact`] (and the cutting methods, which keep it redacted) construct it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Redacted(String);

/// Whether `value` holds a registered secret ([`register`]): a key the run read, or the value
/// of a secret-named variable handed to a command. Key shapes alone do not count.
pub fn holds_registered(value: &str) -> bool {
    let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    registry.iter().any(|form| value.contains(form.as_str()))
}

/// `text` with every secret replaced by [`MARK`]: every registered secret, in clear and
/// JSON-escaped, then every key-shaped token ([`find_key_shapes`]).
pub fn redact(text: impl Into<String>) -> Redacted {
    let mut text = text.into();
    {
        let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
        for form in registry.iter() {
            if text.contains(form.as_str()) {
                text = text.replace(form.as_str(), MARK);
            }
        }
    }
    let shapes = find_key_shapes(&text);
    if !shapes.is_empty() {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in shapes {
            out.push_str(&text[at..start]);
            out.push_str(MARK);
            at = end;
        }
        out.push_str(&text[at..]);
        text = out;
    }
    Redacted(text)
}

/// `text` with every known secret and every key-shaped token masked in place, for source
/// excerpts whose byte offsets must not move (a diagnostic's snippet and its labels): each
/// byte of a secret becomes `*`, except the well-known prefix of a key shape, which stays to
/// say what kind of key it was (`sk-ant-***...`).
pub fn mask(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    {
        let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
        for form in registry.iter() {
            for (at, _) in text.match_indices(form.as_str()) {
                bytes[at..at + form.len()].fill(b'*');
            }
        }
    }
    for (start, end) in find_key_shapes(text) {
        let prefix = KEY_SHAPES
            .iter()
            .filter(|(p, _)| text[start..end].starts_with(p))
            .map(|(p, _)| p.len())
            .max()
            .unwrap_or(0);
        bytes[start + prefix..end].fill(b'*');
    }
    // Whole characters were replaced, each byte by an ASCII `*`: still UTF-8.
    match String::from_utf8(bytes) {
        Ok(masked) => masked,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// [`redact`] of bytes read from outside (an HTTP body, a program's output), decoded as
/// UTF-8 with invalid sequences replaced by `U+FFFD`.
pub fn redact_bytes(bytes: &[u8]) -> Redacted {
    redact(String::from_utf8_lossy(bytes))
}

impl Redacted {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// At most `max` characters of the text, with `…` appended when something was cut.
    pub fn shorten(&self, max: usize) -> Redacted {
        match self.0.char_indices().nth(max) {
            Some((cut, _)) => Redacted(format!("{}…", &self.0[..cut])),
            None => self.clone(),
        }
    }

    /// The part of the text `part` picks, which must be a slice of the text it is given (a
    /// trim, a tail): a part of redacted text holds no secret the whole did not.
    pub fn slice(&self, part: impl FnOnce(&str) -> &str) -> Redacted {
        Redacted(part(&self.0).to_owned())
    }
}

impl Deref for Redacted {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Redacted> for String {
    fn from(r: Redacted) -> String {
        r.0
    }
}

/// Byte ranges of key-shaped tokens in `text`: a prefix of [`KEY_SHAPES`] at a word start
/// (not after a letter, digit, `-` or `_`), followed by at least that shape's number of key
/// characters, at least one of them a digit (which keeps prose like `task-management-...`
/// out). Ranges are in order and do not overlap.
pub fn find_key_shapes(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let is_key = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let mut out = Vec::new();
    // Where a prefix starts, found in one pass by an Aho-Corasick automaton over all of them:
    // a whole script is scanned at each check, and most of its bytes start no prefix (a
    // byte-by-byte scan was 3% of `orch check`'s instructions on a 10,000-step script). A
    // prefix starting inside an earlier match is not reported, and one inside an earlier key
    // fails the word-start test: either way a key character precedes it, so no key starts
    // there, as the scan found.
    for m in prefix_search().find_iter(bytes) {
        let i = m.start();
        if i > 0 && is_key(bytes[i - 1]) {
            continue;
        }
        let hit = KEY_SHAPES.iter().find_map(|&(prefix, min)| {
            if !bytes[i..].starts_with(prefix.as_bytes()) {
                return None;
            }
            let rest = &bytes[i + prefix.len()..];
            let len = rest.iter().take_while(|&&b| is_key(b)).count();
            let has_digit = rest[..len].iter().any(u8::is_ascii_digit);
            (len >= min && has_digit).then_some(i + prefix.len() + len)
        });
        if let Some(end) = hit {
            out.push((i, end));
        }
    }
    out
}

/// The searcher for the prefixes of [`KEY_SHAPES`] (leftmost first), built once: the
/// runtime redacts every outside text, most of them short, where building it each time would
/// cost more than the search.
fn prefix_search() -> &'static aho_corasick::AhoCorasick {
    static SEARCH: std::sync::LazyLock<aho_corasick::AhoCorasick> =
        std::sync::LazyLock::new(|| {
            aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                .build(KEY_SHAPES.iter().map(|&(prefix, _)| prefix))
                .expect("the key prefixes are a valid, small pattern set")
        });
    &SEARCH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_replaced_in_clear_and_json_escaped() {
        let secret = "reg-test-\"quoted\"/slash-1234";
        register(secret);
        let line = serde_json::json!({ "error": format!("bad key {secret}") }).to_string();
        let out = redact(line.as_str());
        assert!(!out.contains("quoted"), "{out}");
        assert!(out.contains(MARK));
        assert!(
            serde_json::from_str::<serde_json::Value>(&out).is_ok(),
            "{out}"
        );
        let php = line.replace('/', "\\/");
        assert!(!redact(php).contains("quoted"));
        assert_eq!(
            redact(format!("clear {secret} end")).as_str(),
            "clear <redacted> end"
        );
    }

    #[test]
    fn short_values_and_parts_of_the_mark_are_not_secrets() {
        register("k");
        register("redacted");
        assert_eq!(redact("lookup k redacted").as_str(), "lookup k redacted");
        assert_eq!(redact(MARK).as_str(), MARK);
    }

    #[test]
    fn a_secret_containing_another_is_replaced_whole() {
        register("nested-abcdefgh");
        register("nested-abcdefgh-and-more");
        assert_eq!(
            redact("x nested-abcdefgh-and-more y").as_str(),
            "x <redacted> y"
        );
    }

    /// The byte-by-byte scan `find_key_shapes` replaced (every byte that starts a prefix,
    /// in order): the reference its searcher must agree with.
    fn key_shapes_by_scanning(text: &str) -> Vec<(usize, usize)> {
        let bytes = text.as_bytes();
        let is_key = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if i > 0 && is_key(bytes[i - 1]) {
                i += 1;
                continue;
            }
            let hit = KEY_SHAPES.iter().find_map(|&(prefix, min)| {
                let rest = bytes[i..].strip_prefix(prefix.as_bytes())?;
                let len = rest.iter().take_while(|&&b| is_key(b)).count();
                let has_digit = rest[..len].iter().any(u8::is_ascii_digit);
                (len >= min && has_digit).then_some(i + prefix.len() + len)
            });
            match hit {
                Some(end) => {
                    out.push((i, end));
                    i = end;
                }
                None => i += 1,
            }
        }
        out
    }

    proptest::proptest! {
        /// Texts made of the prefixes' pieces, key characters and separators, so that keys,
        /// near-keys, keys inside words and keys back to back all occur.
        #[test]
        fn the_searcher_finds_what_a_scan_finds(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "sk-", "ant-", "AKIA", "ghp_", "gho_", "github_pat_", "xoxb-", "xoxp-",
                    "sk", "-", "_", "a", "Z", "7", "0123456789abcdef", " ", "\"", "é",
                ]),
                0..60,
            )
        ) {
            let text: String = pieces.concat();
            proptest::prop_assert_eq!(find_key_shapes(&text), key_shapes_by_scanning(&text));
        }
    }

    #[test]
    fn key_shapes_are_found_at_word_starts_only() {
        let key = "sk-ant-api03-AbCdEfGh1234567890xyz";
        let text = format!("x = \"{key}\" // and task-management-for-the-whole-team-2024");
        let found = find_key_shapes(&text);
        assert_eq!(found.len(), 1);
        assert_eq!(&text[found[0].0..found[0].1], key);
        assert!(find_key_shapes("risk-assessment-of-the-entire-system-v2").is_empty());
        assert!(find_key_shapes("sk-short1").is_empty());
        assert_eq!(find_key_shapes("AKIAABCDEFGH12345678").len(), 1);
        assert_eq!(
            find_key_shapes("é sk-ant-api03-AbCdEfGh1234567890xyz é").len(),
            1
        );
    }

    #[test]
    fn key_shaped_text_is_redacted_without_registration() {
        let out = redact("auth failed for ghp_abcdefghijklmnopqrstuvwxyz0123456789 today");
        assert_eq!(out.as_str(), "auth failed for <redacted> today");
    }

    #[test]
    fn shortening_happens_after_redaction() {
        let secret = "cut-test-Q7w2E9r4T6y1";
        register(secret);
        // The secret straddles the cut: redacting first leaves nothing of it.
        let text = format!("{}{secret}", "x".repeat(20));
        let short = redact(text).shorten(25);
        assert!(!short.contains("cut-test"), "{short}");
        assert_eq!(short.as_str(), format!("{}<reda…", "x".repeat(20)));
        assert_eq!(redact("héllo").shorten(2).as_str(), "hé…");
        assert_eq!(redact("héllo").shorten(5).as_str(), "héllo");
    }

    #[test]
    fn masking_keeps_every_byte_offset() {
        register("mask-test-Rt5Yu8Io2Pa");
        let text = "key = \"sk-ant-api03-AbCdEfGh1234567890xyz\" // é mask-test-Rt5Yu8Io2Pa";
        let masked = mask(text);
        assert_eq!(masked.len(), text.len());
        let stars = |n: usize| "*".repeat(n);
        assert_eq!(
            masked,
            format!(
                "key = \"sk-ant-{}\" // é {}",
                stars("api03-AbCdEfGh1234567890xyz".len()),
                stars("mask-test-Rt5Yu8Io2Pa".len())
            )
        );
        assert_eq!(mask("nothing here"), "nothing here");
    }

    #[test]
    fn secret_names() {
        for name in [
            "GITHUB_TOKEN",
            "db_password",
            "MY_API_KEY",
            "APIKEY",
            "ghtoken",
            "AWS_SECRET_ACCESS_KEY",
            "NPM_AUTH",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "PWD",
            "KEYBOARD_LAYOUT",
            "LANG",
            "MONKEY_COUNT",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
