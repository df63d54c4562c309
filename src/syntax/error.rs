//! Syntax errors: a pest error → one `E0001` [`Diagnostic`] that names the culprit.
//!
//! pest reports the furthest position any rule was tried at, which is often misleading (inside
//! a string that was in fact complete, or before a token the grammar only matched as a
//! literal). So the error is built in three passes, most specific first:
//!
//! 1. a small lexer walks the file for problems it can name exactly: unterminated strings and
//!    comments, unclosed interpolations, unknown escapes, unbalanced `( ) [ ] { }`;
//! 2. common situations judged from the text at the error: a keyword used as a name, a bad
//!    option in `< >`, an unknown `gather` policy, a non-ASCII name;
//! 3. otherwise "expected X, found Y" from pest's parse attempts (which, unlike its positives,
//!    also know the literal tokens such as `=` or `)`).

use pest::error::{Error, ErrorVariant, InputLocation};

use super::Rule;
use crate::diag::suggest::did_you_mean;
use crate::diag::{Code, Diagnostic, FileId, Span};

/// Words that cannot be names (the grammar's `keyword` rule).
const KEYWORDS: &[&str] = &[
    "include", "provider", "model", "agent", "workflow", "parallel", "then", "gather", "after",
    "return", "true", "false", "as",
];

/// Option keywords of `< >`, with what each takes.
const OPTIONS: &[(&str, &str, &str)] = &[
    ("max", "a whole number", "max 3"),
    ("retry", "a whole number", "retry 2"),
    ("timeout", "a duration", "timeout 30s"),
    ("deadline", "a duration", "deadline 10m"),
    ("fallback", "a model name", "fallback opus"),
    ("budget", "an amount in dollars", "budget $2.00"),
];

const OPTIONS_HELP: &str = "options are a model name, `max N`, `retry N`, `timeout D` (like `30s`), `deadline D`, `fallback MODEL` and `budget $X`, separated by commas";

const POLICIES_HELP: &str =
    "policies are `all` (the default), `any`, `first N` and `min N`: `gather <min 2> name = ...`";

/// Words for grammar rules, as users know them.
fn rule_words(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::ident | Rule::path => "a name",
        Rule::callee => "an agent call like `writer(\"...\")`",
        Rule::key => "a field name",
        Rule::string | Rule::triple => "a string",
        Rule::int => "a whole number",
        Rule::decimal => "a number",
        Rule::duration => "a duration (like `30s`)",
        Rule::money => "an amount (like `$2.50`)",
        Rule::boolean => "`true` or `false`",
        Rule::value | Rule::expr => "a value",
        Rule::list => "a list `[...]`",
        Rule::record => "`{`",
        Rule::field | Rule::type_field => "a field `name: value`",
        Rule::type_expr | Rule::type_name | Rule::list_type | Rule::record_type => "a type",
        Rule::include | Rule::kw_include => "`include`",
        Rule::provider | Rule::kw_provider => "`provider`",
        Rule::model | Rule::kw_model => "`model`",
        Rule::agent | Rule::kw_agent => "`agent`",
        Rule::workflow | Rule::kw_workflow => "`workflow`",
        Rule::kw_as => "`as`",
        Rule::params | Rule::args => "`(`",
        Rule::param => "a parameter",
        Rule::named_arg => "an argument",
        Rule::return_type | Rule::type_clause => "`->`",
        Rule::options | Rule::policy => "`<`",
        Rule::opt_max | Rule::kw_max => "`max N`",
        Rule::opt_retry | Rule::kw_retry => "`retry N`",
        Rule::opt_timeout | Rule::kw_timeout => "`timeout D`",
        Rule::opt_deadline | Rule::kw_deadline => "`deadline D`",
        Rule::opt_fallback | Rule::kw_fallback => "`fallback MODEL`",
        Rule::opt_budget | Rule::kw_budget => "`budget $X`",
        Rule::opt_model => "a model name",
        Rule::policy_all | Rule::kw_all => "`all`",
        Rule::policy_any | Rule::kw_any => "`any`",
        Rule::policy_first | Rule::kw_first => "`first N`",
        Rule::policy_min | Rule::kw_min => "`min N`",
        Rule::block => "`{`",
        Rule::return_stmt | Rule::kw_return => "`return`",
        Rule::gather_stmt | Rule::kw_gather => "`gather`",
        Rule::then_stmt | Rule::kw_then => "`then`",
        Rule::parallel_stmt | Rule::kw_parallel => "`parallel`",
        Rule::step => "a step `name = agent(\"...\")`",
        Rule::call => "a call `agent(\"...\")`",
        Rule::after_clause | Rule::kw_after => "`after`",
        Rule::escape => "an escape (`\\n`, `\\t`, `\\\"`, `\\\\`, `\\{`, `\\}`)",
        Rule::interp => "an interpolation `{name}`",
        Rule::EOI => "end of file",
        _ => return None,
    })
}

/// `a`, `a or b`, `a, b or c`, sorted and without duplicates; statements and items are
/// summarised.
fn join_words(mut words: Vec<String>) -> String {
    words.sort();
    words.dedup();
    // Tokens that merely start something already named.
    let covers: &[(&str, &[&str])] = &[
        (
            "a value",
            &[
                "`\"\"\"`",
                "`$`",
                "`[`",
                "`false`",
                "`true`",
                "a string",
                "a name",
                "a whole number",
                "a number",
                "a list `[...]`",
                "`{`",
            ],
        ),
        ("a type", &["`agent`", "`list`", "`{`", "a name"]),
    ];
    for (word, covered) in covers {
        if words.iter().any(|w| w == word) {
            words.retain(|w| !covered.contains(&w.as_str()));
        }
    }
    let stmt = ["`gather`", "`parallel`", "`return`", "`then`"];
    if stmt.iter().all(|s| words.iter().any(|w| w == s)) {
        words.retain(|w| !stmt.contains(&w.as_str()) && !w.starts_with("a step"));
        words.retain(|w| w != "a name");
        words.retain(|w| w != "`,`" && w != "`;`");
        words.insert(0, "a statement".to_string());
    }
    let items = [
        "`agent`",
        "`include`",
        "`model`",
        "`provider`",
        "`workflow`",
    ];
    if items.iter().all(|s| words.iter().any(|w| w == s)) {
        words.retain(|w| !items.contains(&w.as_str()) && w != "`,`" && w != "`;`");
        words.insert(
            0,
            "an item (`include`, `provider`, `model`, `agent` or `workflow`)".to_string(),
        );
    }
    match words.len() {
        0 => String::new(),
        1 => words[0].clone(),
        n => format!("{} or {}", words[..n - 1].join(", "), words[n - 1]),
    }
}

/// Builds the diagnostic for a pest error in `text`.
pub(super) fn syntax_error(file: FileId, text: &str, e: &Error<Rule>) -> Diagnostic {
    let pest_pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    }
    .min(text.len());
    let attempts = e.parse_attempts();
    let pos = attempts
        .as_ref()
        .map_or(pest_pos, |a| a.max_position.max(pest_pos))
        .min(text.len());
    let at = |s: usize, e: usize| Span::new(file, s, e);
    // pest gives up before its own stack runs out (nesting far past `MAX_NESTING`).
    if let ErrorVariant::CustomError { message } = &e.variant
        && message.contains("limit reached")
    {
        return Diagnostic::new(
            Code::SyntaxError,
            at(pest_pos, (pest_pos + 1).min(text.len())),
            format!(
                "the script nests too deeply to be parsed here (more than {} levels)",
                super::MAX_NESTING
            ),
        )
        .with_label("too deep")
        .with_help(super::NESTING_HELP);
    }

    let lex = Lexer::run(text, pos);
    // Only white space and comments after the error: it is at the end of the file.
    let effective = if only_trivia(&text[pos..]) {
        text.len()
    } else {
        pos
    };
    if let Some(p) = lex.problem
        && p.detected_at() <= effective
    {
        return p.diagnostic(file, text);
    }
    if let Some(d) = special_case(file, text, pest_pos, pos, &lex.stack) {
        return d;
    }

    // "expected X, found Y".
    let mut words: Vec<String> = Vec::new();
    if let ErrorVariant::ParsingError { positives, .. } = &e.variant
        && pos == pest_pos
    {
        words.extend(
            positives
                .iter()
                .filter_map(|r| rule_words(*r))
                .map(String::from),
        );
    }
    if let Some(a) = &attempts
        && a.max_position == pos
    {
        words.extend(token_words(
            a.expected_tokens().iter().map(|t| t.to_string()),
        ));
    }
    let expected = join_words(words);
    let found = describe_found(text, pos);
    let span = at(pos, token_end(text, pos));
    let mut d = if expected.is_empty() {
        Diagnostic::new(Code::SyntaxError, span, format!("unexpected {found}"))
            .with_label("not expected here")
    } else {
        Diagnostic::new(
            Code::SyntaxError,
            span,
            format!("expected {expected}, found {found}"),
        )
        .with_label(format!("expected {expected}"))
    };
    // An open bracket whose closer is expected here, when the text has moved on to a new line.
    if let Some(&(open, ch)) = lex.stack.last()
        && expected.contains(&format!("`{}`", closer(ch)))
        && line_start(text, open) != line_start(text, pos)
        && first_on_line(text, pos)
    {
        d = d.with_secondary(at(open, open + 1), format!("this `{ch}` is not closed yet"));
    }
    if expected.contains("`>`")
        && let Some(open) = open_angle(text, pos)
    {
        d = d.with_secondary(at(open, open + 1), "these options are not closed yet");
    }
    let in_record = lex.stack.last().is_some_and(|&(open, ch)| {
        ch == '{'
            && (text[..open].trim_end().ends_with(':')
                || opener_context(text, open).is_some_and(|c| {
                    ["agent", "model", "provider"]
                        .iter()
                        .any(|k| c.starts_with(k))
                }))
    });
    // `{ model: haiku system: "..." }`: a field follows without a separator.
    let next_is_field = {
        let (s, e) = word_around(text, pos);
        s == pos && e > s && text[e..].trim_start_matches([' ', '\t']).starts_with(':')
    };
    if in_record && next_is_field && expected.contains("`,`") {
        let field = &text[pos..token_end(text, pos)];
        return Diagnostic::new(
            Code::SyntaxError,
            span,
            format!("missing `,` before field `{field}`"),
        )
        .with_label("add `,` or a line break before this field")
        .with_help(
            "fields are separated by commas or new lines: `{ model: haiku, system: \"...\" }`",
        );
    }
    if expected == "`=`" {
        d = d.with_help("a step is written `name = agent(\"prompt\")`");
    } else if expected == "`:`" || (in_record && expected.contains("`,`")) {
        d = d.with_help("fields are written `name: value`, separated by commas or new lines");
    } else if expected.contains("`)`") {
        d = d.with_help("separate the items with commas, and close the list with `)`");
    }
    d
}

/// The literal tokens pest tried at the error position (as pest displays them), as words:
/// white space, comments and the characters that would merely continue a name are left out.
fn token_words(tokens: impl Iterator<Item = String>) -> Vec<String> {
    tokens
        .filter_map(|t| match t.as_str() {
            " " | "\t" | "\r" | "\n" | "\r\n" | "//" | "/*" | "_" | "." | "{{" | "}}" => None,
            // Character ranges (`a..z`, `0..9`) continue a word or a number.
            r if r.chars().count() == 4 && r.get(1..3) == Some("..") => None,
            "BUILTIN_RULE" => None,
            "\"" => Some("a string".to_string()),
            t => Some(format!("`{t}`")),
        })
        .collect()
}

fn closer(open: char) -> char {
    match open {
        '(' => ')',
        '[' => ']',
        _ => '}',
    }
}

/// End of the token starting at `pos` (a word, or one character), for the error's span.
fn token_end(text: &str, pos: usize) -> usize {
    let rest = text.get(pos..).unwrap_or("");
    let word: usize = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .map(char::len_utf8)
        .sum();
    if word > 0 {
        return pos + word;
    }
    match rest.chars().next() {
        Some('\n') | Some('\r') | None => pos,
        Some(c) => pos + c.len_utf8(),
    }
}

fn describe_found(text: &str, pos: usize) -> String {
    let rest = text.get(pos..).unwrap_or("");
    match rest.chars().next() {
        None => "end of file".to_string(),
        Some('\n') | Some('\r') => "end of line".to_string(),
        Some(c) if c.is_alphanumeric() || c == '_' => {
            let w: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            format!("`{w}`")
        }
        Some('"') => "a string".to_string(),
        Some(c) => format!("`{c}`"),
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The word (letters, digits, `_`, any script) around `pos`: its start and end.
fn word_around(text: &str, pos: usize) -> (usize, usize) {
    let start = text[..pos]
        .char_indices()
        .rev()
        .take_while(|(_, c)| is_word_char(*c))
        .last()
        .map_or(pos, |(i, _)| i);
    let end = pos
        + text[pos..]
            .chars()
            .take_while(|c| is_word_char(*c))
            .map(char::len_utf8)
            .sum::<usize>();
    (start, end)
}

/// The word that ends right before `pos` (white space between allowed on the same line).
fn word_before(text: &str, pos: usize) -> Option<(usize, usize)> {
    let end = text[..pos].trim_end_matches([' ', '\t']).len();
    let (start, end) = word_around(text, end);
    (start < end).then_some((start, end))
}

/// `writer('text')`: a string in single quotes where a value belongs (after `(`, `:`, `,`,
/// `=`, `[` or `return`). The span covers the quoted text when it closes on its line.
fn single_quoted(file: FileId, text: &str, pos: usize) -> Option<Diagnostic> {
    if !text[pos..].starts_with('\'') {
        return None;
    }
    let before = text[..pos].trim_end_matches([' ', '\t']);
    let value_expected = before.ends_with(['(', ':', ',', '=', '['])
        || word_before(text, pos).is_some_and(|(s, e)| &text[s..e] == "return");
    if !value_expected {
        return None;
    }
    let line_end = text[pos..]
        .find(['\n', '\r'])
        .map_or(text.len(), |i| pos + i);
    let close = text[pos + 1..line_end].find('\'').map(|i| pos + 1 + i);
    let end = close.map_or(pos + 1, |c| c + 1);
    let d = Diagnostic::new(
        Code::SyntaxError,
        Span::new(file, pos, end),
        "strings are written in double quotes, not single quotes",
    )
    .with_label("single quotes");
    Some(match close {
        Some(c) if !text[pos + 1..c].contains('"') => {
            d.with_help(format!("write `\"{}\"`", &text[pos + 1..c]))
        }
        _ => d.with_help("write `\"...\"`, or `\"\"\"...\"\"\"` for text over several lines"),
    })
}

/// Situations recognised from the text at the error.
fn special_case(
    file: FileId,
    text: &str,
    pest_pos: usize,
    pos: usize,
    stack: &[(usize, char)],
) -> Option<Diagnostic> {
    let at = |s: usize, e: usize| Span::new(file, s, e);
    if let Some(d) = single_quoted(file, text, pos) {
        return Some(d);
    }
    for p in [pest_pos, pos] {
        // A name with letters outside ASCII.
        if let Some(c) = text[p..].chars().next()
            && c.is_alphanumeric()
            && !c.is_ascii()
        {
            let (s, e) = word_around(text, p);
            let word = &text[s..e];
            return Some(
                Diagnostic::new(Code::SyntaxError, at(s, e), format!("`{word}` is not a valid name"))
                    .with_label("only ASCII letters, digits and `_` here")
                    .with_help("names start with an ASCII letter or `_`, followed by ASCII letters, digits or `_`"),
            );
        }
    }
    if let Some(d) = option_error(file, text, pos) {
        return Some(d);
    }
    // A keyword where a name belongs: `then = ...` in a workflow, `agent model { ... }`.
    let in_statements = stack.last().is_some_and(|&(open, ch)| {
        ch == '{'
            && opener_context(text, open).is_some_and(|c| {
                c.starts_with("workflow")
                    || c.ends_with("`parallel` block")
                    || c.ends_with("`then` block")
            })
    });
    for p in [pest_pos, pos] {
        let (s, e) = word_around(text, p);
        let candidates = [Some((s, e)), word_before(text, p)];
        for (s, e) in candidates.into_iter().flatten() {
            let word = &text[s..e];
            if !KEYWORDS.contains(&word) {
                continue;
            }
            let after = text[e..].trim_start_matches([' ', '\t']);
            let before = text[..s].trim_end_matches([' ', '\t']);
            let step = in_statements && after.starts_with('=') && !after.starts_with("==");
            let item = ["agent", "model", "provider", "workflow"].iter().any(|k| {
                before.ends_with(k) && word_before(text, s).is_some_and(|(a, b)| &text[a..b] == *k)
            });
            if step || item {
                let example = if step {
                    format!("{word}_step")
                } else {
                    let kind = word_before(text, s).map_or("", |(a, b)| &text[a..b]);
                    format!("{word}_{kind}")
                };
                return Some(
                    Diagnostic::new(
                        Code::SyntaxError,
                        at(s, e),
                        format!("`{word}` is a keyword; it cannot be used as a name"),
                    )
                    .with_label("keyword")
                    .with_help(format!(
                        "choose another name (like `{example}`); the keywords are {}",
                        KEYWORDS.join(", ")
                    )),
                );
            }
        }
    }
    None
}

/// Errors inside `< >`: an option without its value, an unknown option, an unknown policy.
fn option_error(file: FileId, text: &str, pos: usize) -> Option<Diagnostic> {
    let at = |s: usize, e: usize| Span::new(file, s, e);
    // The `<` that opens the options around `pos`, with nothing between that closes them.
    let open = open_angle(text, pos)?;
    let is_policy = word_before(text, open).is_some_and(|(s, e)| &text[s..e] == "gather");
    // The option the error is in: from the last `<` or `,` to the next `,` or `>`.
    let seg_start = open + 1 + text[open + 1..pos].rfind(',').map_or(0, |i| i + 1);
    let seg_end = text[pos..]
        .find([',', '>', '\n', '{', '('])
        .map_or(text.len(), |i| pos + i);
    let seg = &text[seg_start..seg_end];
    let lead = seg.len() - seg.trim_start().len();
    let (s, e) = (seg_start + lead, seg_start + seg.trim_end().len());
    if s >= e {
        return None;
    }
    let seg = &text[s..e];
    let mut words = seg.split_whitespace();
    let kw = words.next().unwrap_or("");
    let arg = words.next();
    if is_policy {
        let (msg, label, help) = match kw {
            "first" | "min" => (
                format!("`{kw}` needs a number of branches: `{kw} 2`"),
                "number missing".to_string(),
                POLICIES_HELP.to_string(),
            ),
            "all" | "any" => return None,
            _ => {
                let help = match did_you_mean(kw, ["all", "any", "first", "min"]) {
                    Some(s) => format!("did you mean `{s}`? {POLICIES_HELP}"),
                    None => POLICIES_HELP.to_string(),
                };
                (
                    format!("unknown gather policy `{kw}`"),
                    "not a policy".to_string(),
                    help,
                )
            }
        };
        let kw_end = s + kw.len();
        return Some(
            Diagnostic::new(Code::SyntaxError, at(s, kw_end), msg)
                .with_label(label)
                .with_help(help),
        );
    }
    if let Some((name, what, example)) = OPTIONS.iter().find(|(n, _, _)| *n == kw) {
        if arg.is_some_and(|a| option_arg_ok(name, a)) {
            return None; // The option is fine; the error is elsewhere (a missing `,` or `>`).
        }
        let found = match arg {
            None => "nothing".to_string(),
            Some(a) => format!("`{a}`"),
        };
        let mut help = format!("write `{example}`");
        if matches!(*name, "timeout" | "deadline")
            && let Some(a) = arg
            && a.bytes().all(|b| b.is_ascii_digit())
        {
            help = format!("add a unit: `{name} {a}s` (units are `ms`, `s`, `m` and `h`)");
        }
        if *name == "budget"
            && let Some(a) = arg
            && a.parse::<f64>().is_ok()
        {
            help = format!("amounts are written with a dollar sign: `budget ${a}`");
        }
        return Some(
            Diagnostic::new(
                Code::SyntaxError,
                at(s, e),
                format!("`{name}` needs {what}, found {found}"),
            )
            .with_label(format!("expected {what} after `{name}`"))
            .with_help(help),
        );
    }
    if arg.is_some() && kw.chars().all(is_word_char) && !kw.is_empty() {
        let names = OPTIONS.iter().map(|(n, _, _)| *n);
        let help = match did_you_mean(kw, names) {
            Some(x) => format!("did you mean `{x}`? {OPTIONS_HELP}"),
            None => OPTIONS_HELP.to_string(),
        };
        let kw_end = s + kw.len();
        return Some(
            Diagnostic::new(
                Code::SyntaxError,
                at(s, kw_end),
                format!("unknown option `{kw}`"),
            )
            .with_label("not an option")
            .with_help(help),
        );
    }
    None
}

/// Whether `arg` is a well-formed argument of option `name`.
fn option_arg_ok(name: &str, arg: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match name {
        "max" | "retry" => digits(arg),
        "timeout" | "deadline" => ["ms", "s", "m", "h"]
            .iter()
            .any(|u| arg.strip_suffix(u).is_some_and(digits)),
        "budget" => arg
            .strip_prefix('$')
            .is_some_and(|a| a.split('.').all(digits) && a.split('.').count() <= 2),
        _ => arg.chars().all(is_word_char),
    }
}

/// The `<` of options or a policy that is still open at `pos`.
fn open_angle(text: &str, pos: usize) -> Option<usize> {
    let open = text[..pos].rfind('<')?;
    let before = text[..open].trim_end();
    (!text[open + 1..pos].contains(['>', '(', ')', '{', '}', '"', ';'])
        && before.ends_with(|c: char| is_word_char(c) || c == ')')
        && !before.ends_with("list"))
    .then_some(open)
}

// ------------------------------------------------------------------------- lexer

/// A problem the lexer can name exactly.
#[derive(Debug, Clone, Copy)]
enum Problem {
    /// A `"` string that reaches the end of its line.
    UnterminatedString { open: usize, line_end: usize },
    /// A `"""` string that reaches the end of the file.
    UnterminatedTriple { open: usize },
    /// A `/*` comment that reaches the end of the file.
    UnterminatedComment { open: usize },
    /// `\x` with an unknown `x`.
    BadEscape { at: usize, len: usize },
    /// `{name` without its `}`.
    UnclosedInterp { open: usize, end: usize },
    /// `{` not followed by a name.
    BadInterp { open: usize },
    /// A lone `}` in a string.
    LoneBrace { at: usize },
    /// A closer with nothing open.
    Unmatched { at: usize, ch: char },
    /// A closer that does not match the innermost opener.
    Mismatched {
        open: usize,
        open_ch: char,
        at: usize,
        ch: char,
    },
    /// Openers still open at the end of the file; `guess` is an opener that, judging by
    /// indentation, was closed by a `}` meant for an outer block.
    Unclosed {
        open: usize,
        ch: char,
        guess: Option<(usize, usize)>,
        eof: usize,
    },
}

struct Lexer {
    /// Open brackets at the position the lexer stopped at: (offset, char).
    stack: Vec<(usize, char)>,
    /// The first problem, if any.
    problem: Option<Problem>,
}

impl Lexer {
    /// Lexes `text`; the bracket stack is taken at `stop` (problems are searched further, to
    /// the end of the file).
    fn run(text: &str, stop: usize) -> Lexer {
        let b = text.as_bytes();
        let mut stack: Vec<(usize, char)> = Vec::new();
        let mut at_stop: Option<Vec<(usize, char)>> = None;
        // An opener closed by a closer with a different indentation (opener, closer).
        let mut guess: Option<(usize, usize)> = None;
        let mut i = 0;
        let problem = 'lex: loop {
            if at_stop.is_none() && i >= stop {
                at_stop = Some(stack.clone());
            }
            if i >= b.len() {
                break stack.last().map(|&(open, ch)| Problem::Unclosed {
                    open,
                    ch,
                    guess,
                    eof: b.len(),
                });
            }
            match b[i] {
                b'/' if b.get(i + 1) == Some(&b'/') => {
                    i = text[i..].find('\n').map_or(b.len(), |n| i + n);
                }
                b'/' if b.get(i + 1) == Some(&b'*') => match super::block_comment_end(b, i) {
                    Some(end) => i = end,
                    None => break 'lex Some(Problem::UnterminatedComment { open: i }),
                },
                b'"' => {
                    let triple = b[i..].starts_with(b"\"\"\"");
                    let open = i;
                    i += if triple { 3 } else { 1 };
                    // A string that is never closed is the problem, whatever it contains.
                    if triple && !text[i..].contains("\"\"\"") {
                        break Some(Problem::UnterminatedTriple { open });
                    }
                    if !triple {
                        let line_end = text[i..].find(['\n', '\r']).map_or(b.len(), |n| i + n);
                        let mut j = i;
                        let mut closed = false;
                        while j < line_end {
                            match b[j] {
                                b'\\' => j += 2,
                                b'"' => {
                                    closed = true;
                                    break;
                                }
                                _ => j += 1,
                            }
                        }
                        if !closed {
                            break Some(Problem::UnterminatedString { open, line_end });
                        }
                    }
                    loop {
                        if i >= b.len() {
                            break 'lex Some(if triple {
                                Problem::UnterminatedTriple { open }
                            } else {
                                Problem::UnterminatedString {
                                    open,
                                    line_end: b.len(),
                                }
                            });
                        }
                        match b[i] {
                            b'"' if triple => {
                                if b[i..].starts_with(b"\"\"\"") {
                                    i += 3;
                                    break;
                                }
                                i += 1;
                            }
                            b'"' => {
                                i += 1;
                                break;
                            }
                            b'\n' | b'\r' if !triple => {
                                break 'lex Some(Problem::UnterminatedString { open, line_end: i });
                            }
                            b'\\' => match b.get(i + 1) {
                                Some(b'n' | b't' | b'r' | b'"' | b'\\' | b'{' | b'}' | b'0') => {
                                    i += 2
                                }
                                Some(b'\n') | None => {
                                    break 'lex Some(Problem::BadEscape { at: i, len: 1 });
                                }
                                Some(_) => {
                                    let len =
                                        1 + text[i + 1..].chars().next().map_or(0, char::len_utf8);
                                    break 'lex Some(Problem::BadEscape { at: i, len });
                                }
                            },
                            b'{' if b.get(i + 1) == Some(&b'{') => i += 2,
                            b'}' if b.get(i + 1) == Some(&b'}') => i += 2,
                            b'}' => break 'lex Some(Problem::LoneBrace { at: i }),
                            b'{' => {
                                let open = i;
                                let mut j = i + 1;
                                let name_start = j;
                                while j < b.len()
                                    && (b[j].is_ascii_alphanumeric()
                                        || b[j] == b'_'
                                        || b[j] == b'.')
                                {
                                    j += 1;
                                }
                                let name = &text[name_start..j];
                                let valid_start = name
                                    .bytes()
                                    .next()
                                    .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_');
                                if !valid_start || name.ends_with('.') || name.contains("..") {
                                    break 'lex Some(Problem::BadInterp { open });
                                }
                                if b.get(j) != Some(&b'}') {
                                    break 'lex Some(Problem::UnclosedInterp { open, end: j });
                                }
                                i = j + 1;
                            }
                            _ => i += 1,
                        }
                    }
                }
                c @ (b'(' | b'[' | b'{') => {
                    stack.push((i, c as char));
                    i += 1;
                }
                c @ (b')' | b']' | b'}') => {
                    let ch = c as char;
                    match stack.pop() {
                        None => break Some(Problem::Unmatched { at: i, ch }),
                        Some((open, open_ch)) if closer(open_ch) != ch => {
                            break Some(Problem::Mismatched {
                                open,
                                open_ch,
                                at: i,
                                ch,
                            });
                        }
                        Some((open, _)) => {
                            if guess.is_none()
                                && first_on_line(text, i)
                                && indent_of(text, open) != indent_of(text, i)
                            {
                                guess = Some((open, i));
                            }
                        }
                    }
                    i += 1;
                }
                _ => i += text[i..].chars().next().map_or(1, char::len_utf8),
            }
        };
        Lexer {
            stack: at_stop.unwrap_or(stack),
            problem,
        }
    }
}

/// Whether `rest` is only white space and comments.
fn only_trivia(mut rest: &str) -> bool {
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("//") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
        } else if rest.starts_with("/*") {
            match rest.find("*/") {
                Some(i) => rest = &rest[i + 2..],
                None => return false,
            }
        } else {
            return rest.is_empty();
        }
    }
}

fn line_start(text: &str, pos: usize) -> usize {
    text[..pos].rfind('\n').map_or(0, |i| i + 1)
}

fn first_on_line(text: &str, pos: usize) -> bool {
    text[line_start(text, pos)..pos].trim().is_empty()
}

fn indent_of(text: &str, pos: usize) -> usize {
    let line = &text[line_start(text, pos)..];
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

/// What a `{` opens, judged from its line: "workflow `main`", "the `parallel` block", ...
fn opener_context(text: &str, open: usize) -> Option<String> {
    let line = text[line_start(text, open)..open].trim();
    let mut words = line
        .split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty());
    let first = words.next()?;
    match first {
        "workflow" | "agent" | "model" | "provider" => {
            let name = words.next()?;
            Some(format!("{first} `{name}`"))
        }
        _ if line
            .split_whitespace()
            .any(|w| w == "parallel" || w.starts_with("parallel<")) =>
        {
            Some("the `parallel` block".to_string())
        }
        "then" => Some("the `then` block".to_string()),
        _ => None,
    }
}

impl Problem {
    /// Where the problem becomes certain: it is reported instead of pest's error only if this
    /// is not after the place pest stopped.
    fn detected_at(self) -> usize {
        match self {
            Problem::UnterminatedString { open, .. } => open,
            Problem::UnterminatedTriple { open } | Problem::UnterminatedComment { open } => open,
            Problem::BadEscape { at, .. } | Problem::LoneBrace { at } => at,
            Problem::UnclosedInterp { open, .. } | Problem::BadInterp { open } => open,
            Problem::Unmatched { at, .. } | Problem::Mismatched { at, .. } => at,
            Problem::Unclosed { eof, .. } => eof,
        }
    }

    fn diagnostic(self, file: FileId, text: &str) -> Diagnostic {
        let at = |s: usize, e: usize| Span::new(file, s, e);
        // The end of the last token, so that "the file ends here" has a line to be shown on.
        let eof = text.trim_end().len();
        match self {
            Problem::UnterminatedString { open, line_end } => {
                Diagnostic::new(Code::SyntaxError, at(open, line_end), "unterminated string")
                    .with_label("this string has no closing `\"` on its line")
                    .with_help(
                        "add the closing `\"`; for text over several lines use `\"\"\"...\"\"\"`",
                    )
            }
            Problem::UnterminatedTriple { open } => Diagnostic::new(
                Code::SyntaxError,
                at(open, open + 3),
                "unterminated `\"\"\"` string",
            )
            .with_label("this string is never closed")
            .with_secondary(at(eof, eof), "the file ends here")
            .with_help("close it with `\"\"\"`"),
            Problem::UnterminatedComment { open } => Diagnostic::new(
                Code::SyntaxError,
                at(open, open + 2),
                "unterminated `/* */` comment",
            )
            .with_label("this comment is never closed")
            .with_secondary(at(eof, eof), "the file ends here")
            .with_help("close it with `*/` (comments nest: each `/*` needs its own `*/`)"),
            Problem::BadEscape { at: p, len } => {
                let esc = &text[p..p + len];
                Diagnostic::new(Code::SyntaxError, at(p, p + len), format!("unknown escape `{esc}` in a string"))
                    .with_label("unknown escape")
                    .with_help("the escapes are `\\n`, `\\t`, `\\r`, `\\\"`, `\\\\`, `\\{`, `\\}` and `\\0`; write `\\\\` for a backslash")
            }
            Problem::UnclosedInterp { open, end } => {
                let name = &text[open + 1..end];
                Diagnostic::new(
                    Code::SyntaxError,
                    at(open, end),
                    format!("unclosed interpolation `{{{name}`"),
                )
                .with_label("this `{` has no `}`")
                .with_help(format!(
                    "close it: `{{{name}}}`; for a literal brace write `{{{{`"
                ))
            }
            Problem::BadInterp { open } => {
                let end = token_end(text, open + 1).max(open + 1);
                // `{ name }`: a name with spaces around it.
                let inner = text[open + 1..].split('}').next().unwrap_or("");
                let name = inner.trim();
                if !name.is_empty()
                    && !inner.contains(['\n', '"'])
                    && name.chars().all(|c| is_word_char(c) || c == '.')
                {
                    let close = open + 1 + inner.len() + 1;
                    return Diagnostic::new(
                        Code::SyntaxError,
                        at(open, close),
                        format!("spaces inside the interpolation `{{{inner}}}`"),
                    )
                    .with_label("no spaces allowed here")
                    .with_help(format!(
                        "write `{{{name}}}`; for literal braces write `{{{{` and `}}}}`"
                    ));
                }
                Diagnostic::new(Code::SyntaxError, at(open, end), "`{` in a string must start an interpolation `{name}`")
                    .with_label("not a name after `{`")
                    .with_help("write `{{` and `}}` for literal braces (e.g. JSON in a prompt); an interpolation is `{name}` or `{name.field}`")
            }
            Problem::LoneBrace { at: p } => Diagnostic::new(
                Code::SyntaxError,
                at(p, p + 1),
                "`}` in a string must be written `}}`",
            )
            .with_label("lone `}`")
            .with_help("write `}}` for a literal `}` (and `{{` for a literal `{`)"),
            Problem::Unmatched { at: p, ch } => Diagnostic::new(
                Code::SyntaxError,
                at(p, p + 1),
                format!("unexpected `{ch}`: there is nothing to close"),
            )
            .with_label("no open bracket before this")
            .with_help("remove it, or add the missing opening bracket above"),
            Problem::Mismatched {
                open,
                open_ch,
                at: p,
                ch,
            } => Diagnostic::new(
                Code::SyntaxError,
                at(p, p + 1),
                format!("`{ch}` does not close `{open_ch}`"),
            )
            .with_label(format!("expected `{}` first", closer(open_ch)))
            .with_secondary(
                at(open, open + 1),
                format!("this `{open_ch}` is still open"),
            )
            .with_help(format!("add `{}` to close `{open_ch}`", closer(open_ch))),
            Problem::Unclosed {
                open, ch, guess, ..
            } => {
                let (open, ch) = match guess {
                    Some((g, _)) => (g, text[g..].chars().next().unwrap_or(ch)),
                    None => (open, ch),
                };
                let message = match (ch, opener_context(text, open)) {
                    ('{', Some(ctx)) => format!("{ctx} is missing its closing `}}`"),
                    (c, _) => format!("unclosed `{c}`"),
                };
                let d = Diagnostic::new(Code::SyntaxError, at(open, open + 1), message)
                    .with_label(format!("this `{ch}` is never closed"));
                if let Some((_, closer_at)) = guess {
                    return d
                        .with_secondary(
                        at(closer_at, closer_at + 1),
                        format!(
                            "this `{}` closes it, but by its indentation it belongs to an outer block",
                            text[closer_at..].chars().next().unwrap_or('}')
                        ),
                        )
                        .with_help(format!("add `{}` where the block ends", closer(ch)));
                }
                d.with_secondary(at(eof, eof), "the file ends here")
                    .with_help(format!("add `{}` where it ends", closer(ch)))
            }
        }
    }
}
