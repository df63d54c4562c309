//! Lint levels: warnings are lints, and their level can change after checking.
//!
//! Two sources, applied in one place ([`apply_levels`]), after checking and before rendering:
//!
//! - the command line, as a [`LintLevels`]: `--allow`, `--warn` and `--deny` with a code
//!   (`W0402`), a name (`block-model-overridden`) or `warnings` (every lint). A code or name
//!   beats `warnings`, so `--deny warnings --allow W0402` denies every lint but W0402.
//! - comments in the source: `// orch: allow(block-model-overridden)`, with one or more codes
//!   or names separated by commas, and any text after the `)` (a reason). Written after code,
//!   it applies to warnings whose primary location starts on its own line; written on a line
//!   of its own, to the next line that holds code. Such a comment beats the command line, the
//!   way `#[allow]` beats `-D` in rustc.
//!
//! Only lints can be re-levelled: errors stay errors. An `allow` entry that silences nothing,
//! names no diagnostic, or names an error is itself a warning, `W0901 unused-allow` (unused
//! entries only when there is no error, as an error may stop the check an entry is for).

use std::collections::BTreeMap;

use super::catalog::{self, CodeInfo};
use super::{Code, Diagnostic, Diagnostics, FileId, Severity, SourceMap, Span};

/// The level of a lint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Not reported.
    Allow,
    /// Reported as a warning (the default).
    Warn,
    /// Reported as an error: fails `orch check`, and `orch plan`/`orch run` stop.
    Deny,
}

impl Level {
    /// The command-line flag that sets it: `--allow`, `--warn`, `--deny`.
    pub fn flag(self) -> &'static str {
        match self {
            Level::Allow => "--allow",
            Level::Warn => "--warn",
            Level::Deny => "--deny",
        }
    }
}

/// Why a level could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    /// Neither a code, nor a name, nor `warnings`.
    #[error("{flag} {given}: no diagnostic has this code or name{}", hint(*.suggestion))]
    Unknown {
        /// The flag.
        flag: &'static str,
        /// What was given.
        given: String,
        /// The closest code or name.
        suggestion: Option<&'static str>,
    },
    /// An error's code or name: errors cannot be re-levelled.
    #[error(
        "{flag} {given}: {code} ({name}) is an error, not a lint; only warnings can be allowed, warned or denied"
    )]
    NotALint {
        /// The flag.
        flag: &'static str,
        /// What was given.
        given: String,
        /// The error's code.
        code: &'static str,
        /// The error's name.
        name: &'static str,
    },
    /// The same lint given two different levels.
    #[error("{what} is given two levels: {} and {}", .first.flag(), .second.flag())]
    Conflict {
        /// The lint (`W0402 (block-model-overridden)`, or `warnings`).
        what: String,
        /// The first level given.
        first: Level,
        /// The other one.
        second: Level,
    },
}

fn hint(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => "; `orch explain --list` lists them".to_string(),
    }
}

/// Levels for the lints of one run, as given on the command line. The default leaves every
/// lint at its default level (only `// orch: allow(...)` comments then change anything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintLevels {
    /// `warnings`: every lint not given by code or name.
    all: Option<Level>,
    /// By code.
    by_code: BTreeMap<Code, Level>,
}

impl LintLevels {
    /// Default levels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Levels from the three flags' values, each a code, a name or `warnings`.
    pub fn from_flags(
        allow: &[String],
        warn: &[String],
        deny: &[String],
    ) -> Result<Self, LevelError> {
        let mut levels = LintLevels::new();
        for (values, level) in [
            (allow, Level::Allow),
            (warn, Level::Warn),
            (deny, Level::Deny),
        ] {
            for v in values {
                levels.set(v, level)?;
            }
        }
        Ok(levels)
    }

    /// Sets the level of a lint (by code or name) or of every lint (`warnings`).
    pub fn set(&mut self, selector: &str, level: Level) -> Result<(), LevelError> {
        let selector = selector.trim();
        if selector == "warnings" {
            return match self.all {
                Some(first) if first != level => Err(LevelError::Conflict {
                    what: "`warnings`".to_string(),
                    first,
                    second: level,
                }),
                _ => {
                    self.all = Some(level);
                    Ok(())
                }
            };
        }
        let info = catalog::lookup(selector).ok_or_else(|| LevelError::Unknown {
            flag: level.flag(),
            given: selector.to_string(),
            suggestion: catalog::suggest(selector)
                .or_else(|| super::suggest::did_you_mean(selector, ["warnings"])),
        })?;
        if !info.is_lint() {
            return Err(LevelError::NotALint {
                flag: level.flag(),
                given: selector.to_string(),
                code: info.code.as_str(),
                name: info.name,
            });
        }
        match self.by_code.insert(info.code, level) {
            Some(first) if first != level => Err(LevelError::Conflict {
                what: format!("{} ({})", info.code, info.name),
                first,
                second: level,
            }),
            _ => Ok(()),
        }
    }

    /// The level given for a lint, if any: by its code, else by `warnings`.
    pub fn level_of(&self, code: Code) -> Option<Level> {
        self.by_code.get(&code).copied().or(self.all)
    }

    /// Whether nothing is set.
    pub fn is_default(&self) -> bool {
        self.all.is_none() && self.by_code.is_empty()
    }
}

// ------------------------------------------------------------------ `// orch:` comments

/// One code or name of an `allow(...)` comment.
#[derive(Debug, Clone)]
struct Entry {
    /// As written.
    text: String,
    /// Where it is written.
    span: Span,
    /// What it names.
    info: Option<&'static CodeInfo>,
    /// Whether it silenced a warning.
    used: bool,
}

/// An `// orch: ...` comment.
#[derive(Debug, Clone)]
struct Directive {
    file: FileId,
    /// The 0-based line it applies to (`None`: no line of code follows it).
    target: Option<usize>,
    /// What it says.
    kind: DirectiveKind,
}

#[derive(Debug, Clone)]
enum DirectiveKind {
    /// `allow(a, b)`.
    Allow(Vec<Entry>),
    /// `orch: word(...)` with another word than `allow`, or an `allow` without a proper list.
    Malformed { span: Span, word: String },
}

/// A `//` comment (not a `///` doc comment): where its text starts (after the slashes), where
/// it ends, its 0-based line, and whether code comes before it on that line.
struct LineComment {
    text_start: usize,
    end: usize,
    line: usize,
    trailing: bool,
}

/// Walks the text the way the lexer does (strings, `"""` strings, nested block comments), and
/// returns the line comments and, for each line, whether it holds code.
fn scan(text: &str) -> (Vec<LineComment>, Vec<bool>) {
    #[derive(PartialEq)]
    enum St {
        Code,
        Str,
        Triple,
        Block(u32),
    }
    let b = text.as_bytes();
    let at = |i: usize, s: &[u8]| b[i..].starts_with(s);
    let mut comments = Vec::new();
    let mut has_code = vec![false];
    let mut line = 0;
    let mut st = St::Code;
    let mut i = if text.starts_with('\u{feff}') { 3 } else { 0 };
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            has_code.push(false);
            if st == St::Str {
                st = St::Code; // an unterminated string; the parser reports it
            }
            i += 1;
            continue;
        }
        match st {
            St::Code => {
                if at(i, b"//") {
                    let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
                    if !at(i, b"///") {
                        comments.push(LineComment {
                            text_start: i + 2,
                            end,
                            line,
                            trailing: has_code[line],
                        });
                    }
                    i = end;
                    continue;
                }
                if at(i, b"/*") {
                    st = St::Block(1);
                    i += 2;
                    continue;
                }
                if !c.is_ascii_whitespace() {
                    has_code[line] = true;
                }
                if at(i, b"\"\"\"") {
                    st = St::Triple;
                    i += 3;
                    continue;
                }
                if c == b'"' {
                    st = St::Str;
                }
                i += 1;
            }
            St::Str | St::Triple => {
                if !c.is_ascii_whitespace() {
                    has_code[line] = true;
                }
                if c == b'\\' {
                    i += if b.get(i + 1) == Some(&b'\n') { 1 } else { 2 };
                    continue;
                }
                if st == St::Triple && at(i, b"\"\"\"") {
                    st = St::Code;
                    i += 3;
                    continue;
                }
                if st == St::Str && c == b'"' {
                    st = St::Code;
                }
                i += 1;
            }
            St::Block(depth) => {
                if at(i, b"/*") {
                    st = St::Block(depth + 1);
                    i += 2;
                } else if at(i, b"*/") {
                    st = if depth == 1 {
                        St::Code
                    } else {
                        St::Block(depth - 1)
                    };
                    i += 2;
                } else {
                    i += 1;
                }
            }
        }
    }
    (comments, has_code)
}

/// The `// orch: ...` comments of one file.
fn directives(file: FileId, text: &str) -> Vec<Directive> {
    // Every directive has `orch:` in its comment: a text without it needs no scan.
    if !text.contains("orch:") {
        return Vec::new();
    }
    let (comments, has_code) = scan(text);
    let mut out = Vec::new();
    for c in comments {
        let body = &text[c.text_start..c.end];
        let Some(after) = body.trim_start().strip_prefix("orch:") else {
            continue;
        };
        let rest = after.trim_start();
        let word_start = c.end - rest.len();
        let word_len = rest
            .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'))
            .unwrap_or(rest.len());
        let word = &rest[..word_len];
        let args = rest[word_len..].trim_start();
        if word.is_empty() || (word != "allow" && !args.starts_with('(')) {
            continue; // prose that happens to start with `orch:`
        }
        let target = if c.trailing {
            Some(c.line)
        } else {
            (c.line + 1..has_code.len()).find(|&l| has_code[l])
        };
        let word_span = Span::new(file, word_start, word_start + word_len);
        let list = args
            .strip_prefix('(')
            .and_then(|a| a.find(')').map(|close| &a[..close]));
        let kind = match list {
            Some(list) if word == "allow" && !list.trim().is_empty() => {
                let list_start = c.end - args.len() + 1;
                let mut entries = Vec::new();
                let mut offset = list_start;
                for part in list.split(',') {
                    let trimmed = part.trim();
                    let start = offset + (part.len() - part.trim_start().len());
                    if !trimmed.is_empty() {
                        entries.push(Entry {
                            text: trimmed.to_string(),
                            span: Span::new(file, start, start + trimmed.len()),
                            info: catalog::lookup(trimmed),
                            used: false,
                        });
                    }
                    offset += part.len() + 1;
                }
                DirectiveKind::Allow(entries)
            }
            _ => DirectiveKind::Malformed {
                span: word_span,
                word: word.to_string(),
            },
        };
        out.push(Directive { file, target, kind });
    }
    out
}

/// Whether an `allow` entry on `d`'s line names `d`'s code; marks the entry used.
fn allowed_in_source(directives: &mut [Directive], d: &Diagnostic, sources: &SourceMap) -> bool {
    let span = d.primary.span;
    // Finding the line scans the file up to the span: skip it in files without directives.
    if !directives.iter().any(|x| x.file == span.file) {
        return false;
    }
    let line = sources.line_col(span.file, span.start).0 - 1;
    let mut allowed = false;
    for dir in directives
        .iter_mut()
        .filter(|x| x.file == span.file && x.target == Some(line))
    {
        if let DirectiveKind::Allow(entries) = &mut dir.kind {
            for e in entries
                .iter_mut()
                .filter(|e| e.info.is_some_and(|i| i.code == d.code))
            {
                e.used = true;
                allowed = true;
            }
        }
    }
    allowed
}

/// The level a lint ends at: `None` when it is not reported.
fn level(d: &Diagnostic, levels: &LintLevels) -> Option<Severity> {
    match levels.level_of(d.code) {
        Some(Level::Allow) => None,
        Some(Level::Deny) => Some(Severity::Error),
        Some(Level::Warn) => Some(Severity::Warning),
        None => Some(d.severity),
    }
}

/// Applies lint levels to the diagnostics of a compilation: `// orch: allow(...)` comments
/// in `sources`, then `levels`. Lints may be dropped or become errors; errors are untouched;
/// `W0901 unused-allow` warnings are added for comments that silence nothing. Call it once,
/// after checking and before rendering; the list is sorted again.
pub fn apply_levels(diags: &mut Diagnostics, sources: &SourceMap, levels: &LintLevels) {
    let had_errors = diags.has_errors();
    let mut dirs: Vec<Directive> = sources
        .files()
        .flat_map(|(id, f)| directives(id, &f.text))
        .collect();
    let mut kept = Vec::with_capacity(diags.len());
    for mut d in std::mem::take(&mut diags.items) {
        if !d.code.is_lint() {
            kept.push(d);
            continue;
        }
        if allowed_in_source(&mut dirs, &d, sources) {
            continue;
        }
        if let Some(severity) = level(&d, levels) {
            d.severity = severity;
            kept.push(d);
        }
    }
    let mut unused = Vec::new();
    for dir in &dirs {
        match &dir.kind {
            DirectiveKind::Malformed { span, word } => {
                unused.push(
                    UnusedAllow::Malformed {
                        at: *span,
                        word: word.clone(),
                    }
                    .into(),
                );
            }
            DirectiveKind::Allow(entries) => {
                for e in entries {
                    if let Some(w) = entry_problem(e, dir.target, had_errors) {
                        unused.push(w);
                    }
                }
            }
        }
    }
    // `W0901` is a lint too: an `allow(unused-allow)` comment or `--allow unused-allow` can
    // silence it (an unused `allow(unused-allow)` is not reported in turn).
    for mut w in unused {
        if allowed_in_source(&mut dirs, &w, sources) {
            continue;
        }
        if let Some(severity) = level(&w, levels) {
            w.severity = severity;
            kept.push(w);
        }
    }
    diags.items = kept;
    diags.sort();
}

/// The `W0901` for an `allow` entry that names no lint, or (when the compilation has no
/// errors) silenced nothing.
fn entry_problem(e: &Entry, target: Option<usize>, had_errors: bool) -> Option<Diagnostic> {
    let problem = match e.info {
        None => UnusedAllow::Unknown {
            at: e.span,
            text: e.text.clone(),
            suggestion: catalog::suggest(&e.text),
        },
        Some(info) if !info.is_lint() => UnusedAllow::NamesError {
            at: e.span,
            text: e.text.clone(),
            info,
        },
        Some(_) if e.used || had_errors => return None,
        Some(info) => UnusedAllow::SilencesNothing {
            at: e.span,
            text: e.text.clone(),
            info,
            line: target.map(|l| l + 1),
        },
    };
    Some(problem.into())
}

/// `W0901`, the one code of this module: an `// orch: ...` comment or an `allow` entry that
/// does nothing. Worded in one place, its `From` conversion into a [`Diagnostic`].
enum UnusedAllow {
    /// `// orch: WORD` that is no directive.
    Malformed { at: Span, word: String },
    /// `allow(TEXT)` naming no code; `suggestion` is the closest code or name.
    Unknown {
        at: Span,
        text: String,
        suggestion: Option<&'static str>,
    },
    /// `allow(TEXT)` naming an error.
    NamesError {
        at: Span,
        text: String,
        info: &'static CodeInfo,
    },
    /// `allow(TEXT)` that silenced nothing on `line` (1-based; `None`: no line follows).
    SilencesNothing {
        at: Span,
        text: String,
        info: &'static CodeInfo,
        line: Option<usize>,
    },
}

impl From<UnusedAllow> for Diagnostic {
    fn from(u: UnusedAllow) -> Self {
        let warning = |at, message: String| Diagnostic::new(Code::UnusedAllow, at, message);
        match u {
            UnusedAllow::Malformed { at, word } => {
                let d = warning(at, format!("`orch: {word}` is not a directive orch knows"))
                    .with_label("not `allow(...)`");
                if word == "allow" {
                    d.with_help("list what to allow in parentheses: `// orch: allow(block-model-overridden)`")
                } else {
                    d.with_help("the only directive is `// orch: allow(NAME, ...)`")
                }
            }
            UnusedAllow::Unknown {
                at,
                text,
                suggestion,
            } => {
                let help = match suggestion {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => {
                        let lints: Vec<String> = catalog::lints()
                            .map(|c| format!("{} ({})", c.name, c.code))
                            .collect();
                        format!("lints that can be allowed: {}", lints.join(", "))
                    }
                };
                warning(at, format!("`allow({text})` names no diagnostic"))
                    .with_label("unknown code or name")
                    .with_help(help)
            }
            UnusedAllow::NamesError { at, text, info } => warning(
                at,
                format!(
                    "`allow({text})`: {} ({}) is an error, and errors cannot be allowed",
                    info.code, info.name
                ),
            )
            .with_label("an error")
            .with_help(format!(
                "fix the error instead (`orch explain {}` shows how); only warnings can be allowed",
                info.code
            )),
            UnusedAllow::SilencesNothing {
                at,
                text,
                info,
                line,
            } => {
                let message = match line {
                    Some(line) => format!(
                        "`allow({text})` silences nothing: no {} warning on line {line}",
                        info.code
                    ),
                    None => format!("`allow({text})` silences nothing: no line of code follows it"),
                };
                warning(at, message)
                    .with_label("unused")
                    .with_help(
                        "remove it; an `allow` applies to warnings starting on its own line, or, on a line of its own, on the next line of code",
                    )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(text: &str) -> Vec<(Option<usize>, Vec<String>)> {
        directives(FileId(0), text)
            .into_iter()
            .map(|d| {
                let entries = match d.kind {
                    DirectiveKind::Allow(es) => es.into_iter().map(|e| e.text).collect(),
                    DirectiveKind::Malformed { word, .. } => vec![format!("malformed {word}")],
                };
                (d.target, entries)
            })
            .collect()
    }

    #[test]
    fn directives_target_their_line_or_the_next_line_of_code() {
        let text = "a = b() // orch: allow(W0402)\n\n// orch: allow(x, block-model-overridden) -- why\n\n// other\nc = d()\n";
        assert_eq!(
            dirs(text),
            [
                (Some(0), vec!["W0402".to_string()]),
                (
                    Some(5),
                    vec!["x".to_string(), "block-model-overridden".to_string()]
                ),
            ]
        );
    }

    #[test]
    fn comment_markers_in_strings_and_doc_comments_are_not_directives() {
        let text = "x = a(\"// orch: allow(W0402)\")\n/// orch: allow(W0402)\n/* // orch: allow(W0402) */\ny = \"\"\"\n// orch: allow(W0402)\n\"\"\"\n";
        assert!(dirs(text).is_empty(), "{:?}", dirs(text));
    }

    #[test]
    fn prose_is_ignored_and_broken_directives_are_kept() {
        assert!(dirs("// orch: this runs nightly\n").is_empty());
        assert_eq!(
            dirs("// orch: alow(W0402)\nx\n// orch: allow\ny\n// orch: allow()\nz\n"),
            [
                (Some(1), vec!["malformed alow".to_string()]),
                (Some(3), vec!["malformed allow".to_string()]),
                (Some(5), vec!["malformed allow".to_string()]),
            ]
        );
    }

    #[test]
    fn entry_spans_cover_the_names() {
        let text = "// orch: allow( W0402 ,unused-allow)\nx\n";
        let d = directives(FileId(0), text);
        let DirectiveKind::Allow(es) = &d[0].kind else {
            panic!("an allow")
        };
        let spans: Vec<&str> = es
            .iter()
            .map(|e| &text[e.span.start as usize..e.span.end as usize])
            .collect();
        assert_eq!(spans, ["W0402", "unused-allow"]);
    }

    #[test]
    fn flags_resolve_codes_names_and_warnings() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let l = LintLevels::from_flags(&s(&["W0402"]), &[], &s(&["warnings"])).unwrap();
        assert_eq!(l.level_of(Code::BlockModelOverridden), Some(Level::Allow));
        assert_eq!(l.level_of(Code::UnusedAllow), Some(Level::Deny));
        let l = LintLevels::from_flags(&[], &[], &s(&["block-model-overridden"])).unwrap();
        assert_eq!(l.level_of(Code::BlockModelOverridden), Some(Level::Deny));
        assert_eq!(l.level_of(Code::UnusedAllow), None);

        let e = LintLevels::from_flags(&s(&["W0420"]), &[], &[]).unwrap_err();
        assert!(e.to_string().contains("did you mean `W0402`?"), "{e}");
        let e = LintLevels::from_flags(&s(&["warning"]), &[], &[]).unwrap_err();
        assert!(e.to_string().contains("did you mean `warnings`?"), "{e}");
        let e = LintLevels::from_flags(&[], &[], &s(&["undefined-name"])).unwrap_err();
        assert!(
            matches!(e, LevelError::NotALint { code: "E0201", .. }),
            "{e}"
        );
        let e = LintLevels::from_flags(&s(&["W0402"]), &[], &s(&["block-model-overridden"]))
            .unwrap_err();
        assert!(matches!(e, LevelError::Conflict { .. }), "{e}");
        assert!(e.to_string().contains("--allow and --deny"), "{e}");
    }
}
