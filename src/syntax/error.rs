//! The wording of syntax errors (`E0001`): every way a text can fail to parse is a
//! [`SyntaxError`], worded in one place, [`SyntaxError::diagnostic`]. Finding which one a
//! pest error is, is [`super::diagnose`]'s job (and [`super::lexer`]'s, for the problems a
//! lexer can name exactly).

use crate::diag::{Code, Diagnostic, FileId, Span};

use super::MAX_NESTING;

/// A byte range `start..end` of the text.
pub(super) type Range = (usize, usize);

/// Option keywords of `< >`, with what each takes and an example.
pub const OPTIONS: &[(&str, &str, &str)] = &[
    ("max", "a whole number", "max 3"),
    ("retry", "a whole number", "retry 2"),
    ("timeout", "a duration", "timeout 30s"),
    ("deadline", "a duration", "deadline 10m"),
    ("fallback", "a model name", "fallback opus"),
    ("budget", "an amount in dollars", "budget $2.00"),
    ("batch", "nothing (a `parallel` block's option)", "batch"),
];

/// The units of a duration, with their length in milliseconds (largest first).
pub(super) const DURATION_UNITS: &[(&str, u64)] =
    &[("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

const OPTIONS_HELP: &str = "options are a model name, `max N`, `retry N`, `timeout D` (like `30s`), `deadline D`, `fallback MODEL`, `budget $X` and `batch`, separated by commas";

const POLICIES_HELP: &str =
    "policies are `all` (the default), `any`, `first N` and `min N`: `gather <min 2> name = ...`";

/// The help of a script nested deeper than [`MAX_NESTING`].
const NESTING_HELP: &str = "blocks, lists, records, types and conditions may nest at most 64 \
     levels deep, and each `else if` of a chain and each `and` and `or` of a condition counts \
     as a level; flatten the script";

/// Which help an "expected X, found Y" error gets, from what was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExpectedHelp {
    /// None fits.
    None,
    /// `=` was expected: how a step is written.
    Step,
    /// `:`, or `,` in a record: how fields are written.
    Field,
    /// `)` was expected: how a list of arguments or parameters ends.
    CloseList,
}

/// How to fix an option's argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OptionFix<'t> {
    /// Write it like the example.
    Example(&'static str),
    /// A duration without its unit: the number given.
    Unit(&'t str),
    /// An amount without its `$`: the number given.
    Dollar(&'t str),
}

/// Why a text does not parse, with the pieces of the text its message names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SyntaxError<'t> {
    /// The text could make pest's parser recurse too deep (`guard`), first at `at`.
    TooDeepToParse { at: Range },
    /// The parse tree nests deeper than [`MAX_NESTING`] at `at`.
    NestedTooDeep { at: usize },
    /// pest's own view: what was expected at `at` and what is there.
    Expected {
        at: Range,
        /// Words for the expected tokens (`a name`, `` `=` ``), joined; may be empty.
        expected: String,
        /// Words for what is there (`` `x` ``, `end of line`).
        found: String,
        /// An open bracket (and its offset) that is not closed yet, on an earlier line.
        unclosed: Option<(usize, char)>,
        /// The `<` of options still open.
        open_angle: Option<usize>,
        help: ExpectedHelp,
    },
    /// `{ model: haiku system: "..." }`: a field after another without a separator.
    MissingComma { at: Range, field: &'t str },
    /// `'text'`; `inner` is the quoted text when it closes on its line without a `"`.
    SingleQuoted { at: Range, inner: Option<&'t str> },
    /// A name with letters outside ASCII.
    NonAsciiName { at: Range, word: &'t str },
    /// A keyword where a name belongs; `example` is a name to use instead.
    KeywordAsName {
        at: Range,
        word: &'t str,
        example: String,
        keywords: &'static [&'static str],
    },
    /// A word where a keyword belongs that is close to one (`paralel {`).
    UnknownKeyword {
        at: Range,
        word: &'t str,
        keyword: &'static str,
    },
    /// `1.5s`: a duration with a fraction; `whole` is the same duration in a smaller unit
    /// when there is one (`1500ms`).
    FractionalDuration {
        at: Range,
        written: &'t str,
        whole: Option<String>,
    },
    /// `first` or `min` without its number.
    PolicyWithoutNumber { at: Range, kw: &'t str },
    /// A `gather` policy that is not one; `suggestion` is the closest policy.
    UnknownPolicy {
        at: Range,
        kw: &'t str,
        suggestion: Option<&'static str>,
    },
    /// An option whose argument is missing or malformed.
    OptionArgument {
        at: Range,
        name: &'static str,
        /// What it takes (`a whole number`).
        what: &'static str,
        /// What was given, if anything.
        found: Option<&'t str>,
        fix: OptionFix<'t>,
    },
    /// A word in `< >` that is no option; `suggestion` is the closest option.
    UnknownOption {
        at: Range,
        kw: &'t str,
        suggestion: Option<&'static str>,
    },
    /// A `"` string that reaches the end of its line.
    UnterminatedString { at: Range },
    /// A `"""` string that reaches the end of the file (at `eof`).
    UnterminatedTriple { at: Range, eof: usize },
    /// A `/*` comment that reaches the end of the file (at `eof`).
    UnterminatedComment { at: Range, eof: usize },
    /// `\x` with an unknown `x`.
    BadEscape { at: Range, escape: &'t str },
    /// `{name` without its `}`.
    UnclosedInterp { at: Range, name: &'t str },
    /// `{ name }`: an interpolation with spaces around the name.
    SpacedInterp {
        at: Range,
        inner: &'t str,
        name: &'t str,
    },
    /// `{` in a string not followed by a name.
    BadInterp { at: Range },
    /// A lone `}` in a string.
    LoneBrace { at: Range },
    /// A closer with nothing open.
    Unmatched { at: Range, ch: char },
    /// A closer that does not match the innermost opener.
    Mismatched {
        at: Range,
        ch: char,
        open: Range,
        open_ch: char,
    },
    /// An opener never closed. `context` says what it opens ("workflow `main`"); `stolen_by`
    /// is a closer that, by its indentation, belongs to an outer block but closed this one.
    Unclosed {
        open: Range,
        ch: char,
        context: Option<String>,
        stolen_by: Option<(Range, char)>,
        eof: usize,
    },
}

/// The closing bracket of an opening one.
pub(super) fn closer(open: char) -> char {
    match open {
        '(' => ')',
        '[' => ']',
        _ => '}',
    }
}

impl SyntaxError<'_> {
    /// The one `E0001` diagnostic for this error, in `file`.
    pub(super) fn diagnostic(self, file: FileId) -> Diagnostic {
        let span = |(s, e): Range| Span::new(file, s, e);
        let point = |at: usize| Span::new(file, at, at);
        let error =
            |at: Range, message: String| Diagnostic::new(Code::SyntaxError, span(at), message);
        match self {
            SyntaxError::TooDeepToParse { at } => error(
                at,
                format!(
                    "the script nests too deeply to be parsed here (more than {MAX_NESTING} levels)"
                ),
            )
            .with_label("too deep")
            .with_help(NESTING_HELP),
            SyntaxError::NestedTooDeep { at } => error(
                (at, at + 1),
                format!("the script nests more than {MAX_NESTING} levels deep here"),
            )
            .with_label("too deep")
            .with_help(NESTING_HELP),
            SyntaxError::Expected {
                at,
                expected,
                found,
                unclosed,
                open_angle,
                help,
            } => {
                let mut d = if expected.is_empty() {
                    error(at, format!("unexpected {found}")).with_label("not expected here")
                } else {
                    error(at, format!("expected {expected}, found {found}"))
                        .with_label(format!("expected {expected}"))
                };
                if let Some((open, ch)) = unclosed {
                    d = d.with_secondary(
                        span((open, open + 1)),
                        format!("this `{ch}` is not closed yet"),
                    );
                }
                if let Some(open) = open_angle {
                    d = d.with_secondary(
                        span((open, open + 1)),
                        "these options are not closed yet",
                    );
                }
                match help {
                    ExpectedHelp::None => d,
                    ExpectedHelp::Step => d.with_help("a step is written `name = agent(\"prompt\")`"),
                    ExpectedHelp::Field => d.with_help(
                        "fields are written `name: value`, separated by commas or new lines",
                    ),
                    ExpectedHelp::CloseList => {
                        d.with_help("separate the items with commas, and close the list with `)`")
                    }
                }
            }
            SyntaxError::MissingComma { at, field } => {
                error(at, format!("missing `,` before field `{field}`"))
                    .with_label("add `,` or a line break before this field")
                    .with_help(
                        "fields are separated by commas or new lines: `{ model: haiku, system: \"...\" }`",
                    )
            }
            SyntaxError::SingleQuoted { at, inner } => {
                let d = error(
                    at,
                    "strings are written in double quotes, not single quotes".to_string(),
                )
                .with_label("single quotes");
                match inner {
                    Some(inner) => d.with_help(format!("write `\"{inner}\"`")),
                    None => d.with_help(
                        "write `\"...\"`, or `\"\"\"...\"\"\"` for text over several lines",
                    ),
                }
            }
            SyntaxError::NonAsciiName { at, word } => {
                error(at, format!("`{word}` is not a valid name"))
                    .with_label("only ASCII letters, digits and `_` here")
                    .with_help("names start with an ASCII letter or `_`, followed by ASCII letters, digits or `_`")
            }
            SyntaxError::KeywordAsName {
                at,
                word,
                example,
                keywords,
            } => error(at, format!("`{word}` is a keyword; it cannot be used as a name"))
                .with_label("keyword")
                .with_help(format!(
                    "choose another name (like `{example}`); the keywords are {}",
                    keywords.join(", ")
                )),
            SyntaxError::UnknownKeyword { at, word, keyword } => {
                error(at, format!("unknown keyword `{word}`"))
                    .with_label("not a keyword")
                    .with_help(format!("did you mean `{keyword}`?"))
                    .with_replacement(keyword)
            }
            SyntaxError::FractionalDuration { at, written, whole } => error(
                at,
                format!("`{written}` is not a duration: durations are whole numbers of a unit"),
            )
            .with_label("a fraction")
            .with_help(match whole {
                Some(w) => format!("write `{w}` (units are `ms`, `s`, `m` and `h`)"),
                None => "write it in a smaller unit, as a whole number (units are `ms`, `s`, `m` and `h`)".to_string(),
            }),
            SyntaxError::PolicyWithoutNumber { at, kw } => {
                error(at, format!("`{kw}` needs a number of branches: `{kw} 2`"))
                    .with_label("number missing")
                    .with_help(POLICIES_HELP)
            }
            SyntaxError::UnknownPolicy { at, kw, suggestion } => {
                error(at, format!("unknown gather policy `{kw}`"))
                    .with_label("not a policy")
                    .with_help(match suggestion {
                        Some(s) => format!("did you mean `{s}`? {POLICIES_HELP}"),
                        None => POLICIES_HELP.to_string(),
                    })
                    .with_replacement_of(suggestion)
            }
            SyntaxError::OptionArgument {
                at,
                name,
                what,
                found,
                fix,
            } => {
                let found = match found {
                    None => "nothing".to_string(),
                    Some(a) => format!("`{a}`"),
                };
                error(at, format!("`{name}` needs {what}, found {found}"))
                    .with_label(format!("expected {what} after `{name}`"))
                    .with_help(match fix {
                        OptionFix::Example(example) => format!("write `{example}`"),
                        OptionFix::Unit(n) => format!(
                            "add a unit: `{name} {n}s` (units are `ms`, `s`, `m` and `h`)"
                        ),
                        OptionFix::Dollar(n) => {
                            format!("amounts are written with a dollar sign: `budget ${n}`")
                        }
                    })
            }
            SyntaxError::UnknownOption { at, kw, suggestion } => {
                error(at, format!("unknown option `{kw}`"))
                    .with_label("not an option")
                    .with_help(match suggestion {
                        Some(x) => format!("did you mean `{x}`? {OPTIONS_HELP}"),
                        None => OPTIONS_HELP.to_string(),
                    })
                    .with_replacement_of(suggestion)
            }
            SyntaxError::UnterminatedString { at } => {
                error(at, "unterminated string".to_string())
                    .with_label("this string has no closing `\"` on its line")
                    .with_help(
                        "add the closing `\"`; for text over several lines use `\"\"\"...\"\"\"`",
                    )
            }
            SyntaxError::UnterminatedTriple { at, eof } => {
                error(at, "unterminated `\"\"\"` string".to_string())
                    .with_label("this string is never closed")
                    .with_secondary(point(eof), "the file ends here")
                    .with_help("close it with `\"\"\"`")
            }
            SyntaxError::UnterminatedComment { at, eof } => {
                error(at, "unterminated `/* */` comment".to_string())
                    .with_label("this comment is never closed")
                    .with_secondary(point(eof), "the file ends here")
                    .with_help("close it with `*/` (comments nest: each `/*` needs its own `*/`)")
            }
            SyntaxError::BadEscape { at, escape } => {
                error(at, format!("unknown escape `{escape}` in a string"))
                    .with_label("unknown escape")
                    .with_help("the escapes are `\\n`, `\\t`, `\\r`, `\\\"`, `\\\\`, `\\{`, `\\}` and `\\0`; write `\\\\` for a backslash")
            }
            SyntaxError::UnclosedInterp { at, name } => {
                error(at, format!("unclosed interpolation `{{{name}`"))
                    .with_label("this `{` has no `}`")
                    .with_help(format!(
                        "close it: `{{{name}}}`; for a literal brace write `{{{{`"
                    ))
            }
            SyntaxError::SpacedInterp { at, inner, name } => {
                error(at, format!("spaces inside the interpolation `{{{inner}}}`"))
                    .with_label("no spaces allowed here")
                    .with_help(format!(
                        "write `{{{name}}}`; for literal braces write `{{{{` and `}}}}`"
                    ))
            }
            SyntaxError::BadInterp { at } => error(
                at,
                "`{` in a string must start an interpolation `{name}`".to_string(),
            )
            .with_label("not a name after `{`")
            .with_help("write `{{` and `}}` for literal braces (e.g. JSON in a prompt); an interpolation is `{name}` or `{name.field}`"),
            SyntaxError::LoneBrace { at } => {
                error(at, "`}` in a string must be written `}}`".to_string())
                    .with_label("lone `}`")
                    .with_help("write `}}` for a literal `}` (and `{{` for a literal `{`)")
            }
            SyntaxError::Unmatched { at, ch } => {
                error(at, format!("unexpected `{ch}`: there is nothing to close"))
                    .with_label("no open bracket before this")
                    .with_help("remove it, or add the missing opening bracket above")
            }
            SyntaxError::Mismatched {
                at,
                ch,
                open,
                open_ch,
            } => error(at, format!("`{ch}` does not close `{open_ch}`"))
                .with_label(format!("expected `{}` first", closer(open_ch)))
                .with_secondary(span(open), format!("this `{open_ch}` is still open"))
                .with_help(format!("add `{}` to close `{open_ch}`", closer(open_ch))),
            SyntaxError::Unclosed {
                open,
                ch,
                context,
                stolen_by,
                eof,
            } => {
                let message = match (ch, context) {
                    ('{', Some(ctx)) => format!("{ctx} is missing its closing `}}`"),
                    (c, _) => format!("unclosed `{c}`"),
                };
                let d = error(open, message).with_label(format!("this `{ch}` is never closed"));
                match stolen_by {
                    Some((at, closer_ch)) => d
                        .with_secondary(
                            span(at),
                            format!(
                                "this `{closer_ch}` closes it, but by its indentation it belongs to an outer block"
                            ),
                        )
                        .with_help(format!("add `{}` where the block ends", closer(ch))),
                    None => d
                        .with_secondary(point(eof), "the file ends here")
                        .with_help(format!("add `{}` where it ends", closer(ch))),
                }
            }
        }
    }
}
