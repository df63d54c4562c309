//! Which [`SyntaxError`] a pest error is. pest reports the furthest position any rule was
//! tried at, which is often misleading (inside a string that was in fact complete, or before
//! a token the grammar only matched as a literal). So the error is found in three passes,
//! most specific first:
//!
//! 1. the [`super::lexer`] walks the file for problems it can name exactly: unterminated
//!    strings and comments, unclosed interpolations, unknown escapes, unbalanced brackets;
//! 2. common situations judged from the text at the error: a keyword used as a name, a
//!    misspelt keyword, a duration with a fraction, a bad option in `< >`, an unknown
//!    `gather` policy, a non-ASCII name;
//! 3. otherwise "expected X, found Y" from pest's parse attempts (which, unlike its positives,
//!    also know the literal tokens such as `=` or `)`).

use pest::error::{Error, ErrorVariant, InputLocation};

use super::Rule;
use super::error::{DURATION_UNITS, ExpectedHelp, OPTIONS, OptionFix, SyntaxError, closer};
use super::lexer::{Lexer, first_on_line, line_start};
use crate::diag::suggest::did_you_mean;

// `KEYWORDS`: the words of the grammar's `keyword` rule (see `build.rs`).
include!(concat!(env!("OUT_DIR"), "/keywords.rs"));

/// Keywords that start a statement, an item or a clause on a line of their own: what a
/// misspelt word at the start of a statement is compared with.
const LEADING_KEYWORDS: &[&str] = &[
    "include", "provider", "model", "mcp", "agent", "workflow", "parallel", "then", "gather",
    "return", "repeat", "until", "if", "else",
];

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
        Rule::opt_max_turns | Rule::kw_max_turns => "`max_turns N`",
        Rule::mcp | Rule::kw_mcp => "`mcp`",
        Rule::call_value => "a tool grant like `exec(\"...\")`",
        // Where a call may start, any value may: say that, not `agent`.
        Rule::call_name => "a value",
        Rule::wildcard => "a tool grant like `server.*`",
        Rule::opt_retry | Rule::kw_retry => "`retry N`",
        Rule::opt_timeout | Rule::kw_timeout => "`timeout D`",
        Rule::opt_deadline | Rule::kw_deadline => "`deadline D`",
        Rule::opt_fallback | Rule::kw_fallback => "`fallback MODEL`",
        Rule::opt_budget | Rule::kw_budget => "`budget $X`",
        Rule::opt_batch | Rule::kw_batch => "`batch`",
        Rule::else_fail | Rule::kw_fail => "`else fail`",
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
                // `agent(NAME)`, a tool grant.
                "`agent`",
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

/// The error a pest error in `text` is.
pub(super) fn syntax_error<'t>(text: &'t str, e: &Error<Rule>) -> SyntaxError<'t> {
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
        return p.error(text);
    }
    if let Some(d) = special_case(text, pest_pos, pos, &lex.stack) {
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
    let at = (pos, token_end(text, pos));
    // An open bracket whose closer is expected here, when the text has moved on to a new line.
    let unclosed = lex.stack.last().copied().filter(|&(open, ch)| {
        expected.contains(&format!("`{}`", closer(ch)))
            && line_start(text, open) != line_start(text, pos)
            && first_on_line(text, pos)
    });
    let open_angle = if expected.contains("`>`") {
        open_angle(text, pos)
    } else {
        None
    };
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
        return SyntaxError::MissingComma {
            at,
            field: &text[at.0..at.1],
        };
    }
    let help = if expected == "`=`" {
        ExpectedHelp::Step
    } else if expected == "`:`" || (in_record && expected.contains("`,`")) {
        ExpectedHelp::Field
    } else if expected.contains("`)`") {
        ExpectedHelp::CloseList
    } else {
        ExpectedHelp::None
    };
    SyntaxError::Expected {
        at,
        expected,
        found: describe_found(text, pos),
        unclosed,
        open_angle,
        help,
    }
}

/// The literal tokens pest tried at the error position (as pest displays them), as words:
/// white space, comments and the characters that would merely continue a name are left out.
fn token_words(tokens: impl Iterator<Item = String>) -> Vec<String> {
    tokens
        .filter_map(|t| match t.as_str() {
            " " | "\t" | "\r" | "\n" | "\r\n" | "/" | "//" | "/*" | "_" | "." | "{{" | "}}" => None,
            // Character ranges (`a..z`, `0..9`) continue a word or a number.
            r if r.chars().count() == 4 && r.get(1..3) == Some("..") => None,
            "BUILTIN_RULE" => None,
            "\"" => Some("a string".to_string()),
            t => Some(format!("`{t}`")),
        })
        .collect()
}

/// End of the token starting at `pos` (a word, or one character), for the error's span.
pub(super) fn token_end(text: &str, pos: usize) -> usize {
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

pub(super) fn is_word_char(c: char) -> bool {
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
fn single_quoted(text: &str, pos: usize) -> Option<SyntaxError<'_>> {
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
    let inner = close
        .map(|c| &text[pos + 1..c])
        .filter(|inner| !inner.contains('"'));
    Some(SyntaxError::SingleQuoted {
        at: (pos, end),
        inner,
    })
}

/// Situations recognised from the text at the error.
fn special_case<'t>(
    text: &'t str,
    pest_pos: usize,
    pos: usize,
    stack: &[(usize, char)],
) -> Option<SyntaxError<'t>> {
    if let Some(d) = single_quoted(text, pos) {
        return Some(d);
    }
    for p in [pest_pos, pos] {
        // A name with letters outside ASCII.
        if let Some(c) = text[p..].chars().next()
            && c.is_alphanumeric()
            && !c.is_ascii()
        {
            let (s, e) = word_around(text, p);
            return Some(SyntaxError::NonAsciiName {
                at: (s, e),
                word: &text[s..e],
            });
        }
    }
    if let Some(d) = [pest_pos, pos]
        .into_iter()
        .find_map(|p| fractional_duration(text, p))
    {
        return Some(d);
    }
    if let Some(d) = option_error(text, pos) {
        return Some(d);
    }
    keyword_as_name(text, pest_pos, pos, stack)
        .or_else(|| misspelt_keyword(text, pest_pos, pos, stack))
}

/// Where the innermost open bracket puts the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Outside every bracket: between items.
    TopLevel,
    /// In a block of statements (a workflow body, `parallel`, `then`, `repeat`, `if`, `else`).
    Statements,
    /// In the parameters of a workflow or an agent.
    Params,
    /// Anywhere else.
    Other,
}

fn place(text: &str, stack: &[(usize, char)]) -> Place {
    let Some(&(open, ch)) = stack.last() else {
        return Place::TopLevel;
    };
    let line = text[line_start(text, open)..open].trim();
    let first = line
        .split(|c: char| !is_word_char(c))
        .find(|w| !w.is_empty())
        .unwrap_or("");
    let parallel = line
        .split_whitespace()
        .any(|w| w == "parallel" || w.starts_with("parallel<"));
    match ch {
        '{' if parallel || ["workflow", "then", "repeat", "if", "else"].contains(&first) => {
            Place::Statements
        }
        '(' if ["workflow", "agent"].contains(&first) && !line.contains('=') => Place::Params,
        _ => Place::Other,
    }
}

/// The words an error at `positions` may be about, as byte ranges: at each position, the
/// word around it and the word right before it.
fn words_at(text: &str, positions: [usize; 2]) -> impl Iterator<Item = (usize, usize)> + '_ {
    positions
        .into_iter()
        .flat_map(move |p| [Some(word_around(text, p)), word_before(text, p)])
        .flatten()
}

/// A keyword where a name belongs: `then = ...` or `if = ...` in a block of statements,
/// `agent model { ... }`, `workflow until() { ... }`, a parameter `in: text`.
fn keyword_as_name<'t>(
    text: &'t str,
    pest_pos: usize,
    pos: usize,
    stack: &[(usize, char)],
) -> Option<SyntaxError<'t>> {
    let place = place(text, stack);
    for (s, e) in words_at(text, [pest_pos, pos]) {
        let word = &text[s..e];
        if !KEYWORDS.contains(&word) {
            continue;
        }
        let after = text[e..].trim_start_matches([' ', '\t']);
        let before = text[..s].trim_end_matches([' ', '\t']);
        let step = place == Place::Statements && after.starts_with('=') && !after.starts_with("==");
        let item = ["agent", "model", "provider", "workflow"].iter().any(|k| {
            before.ends_with(k) && word_before(text, s).is_some_and(|(a, b)| &text[a..b] == *k)
        });
        let param = place == Place::Params
            && before.trim_end().ends_with(['(', ','])
            && after.starts_with([':', ',', ')', '=']);
        let example = if step {
            format!("{word}_step")
        } else if item {
            let kind = word_before(text, s).map_or("", |(a, b)| &text[a..b]);
            format!("{word}_{kind}")
        } else if param {
            format!("{word}_param")
        } else {
            continue;
        };
        return Some(SyntaxError::KeywordAsName {
            at: (s, e),
            word,
            example,
            keywords: KEYWORDS,
        });
    }
    None
}

/// A word close to a keyword where a statement, an item or a clause starts: `paralel {`,
/// `x = paralel {`, `iff x == "a" {`, `} untill done`, `agnet writer { ... }`.
fn misspelt_keyword<'t>(
    text: &'t str,
    pest_pos: usize,
    pos: usize,
    stack: &[(usize, char)],
) -> Option<SyntaxError<'t>> {
    let place = place(text, stack);
    for (s, e) in words_at(text, [pest_pos, pos]) {
        let word = &text[s..e];
        let after = text[e..].trim_start_matches([' ', '\t']);
        let before = text[line_start(text, s)..s].trim();
        if e - s < 2
            || KEYWORDS.contains(&word)
            || !word.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
            || (after.starts_with('=') && !after.starts_with("=="))
            || after.starts_with('(')
        {
            continue;
        }
        let candidates: &[&'static str] = match (place, before) {
            (Place::TopLevel, "") => &["include", "provider", "model", "agent", "workflow"],
            (Place::Statements, "") => LEADING_KEYWORDS,
            (Place::Statements, "}") => &["else", "until"],
            (Place::Statements, b) if b.ends_with('=') && !b.ends_with("==") => &["parallel"],
            _ => continue,
        };
        if let Some(keyword) = did_you_mean(word, candidates.iter().copied()) {
            return Some(SyntaxError::UnknownKeyword {
                at: (s, e),
                word,
                keyword,
            });
        }
    }
    None
}

/// `1.5s`: a number with a fraction and a unit around `p`, which is no duration.
fn fractional_duration(text: &str, p: usize) -> Option<SyntaxError<'_>> {
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '.';
    let start = text[..p]
        .char_indices()
        .rev()
        .take_while(|(_, c)| is_part(*c))
        .last()
        .map_or(p, |(i, _)| i);
    let end = p + text[p..].chars().take_while(|c| is_part(*c)).count();
    let written = &text[start..end];
    let (number, unit) = written.split_at(written.find(|c: char| c.is_ascii_alphabetic())?);
    let (whole, fraction) = number.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let &(_, unit_ms) = DURATION_UNITS.iter().find(|(u, _)| *u == unit)?;
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    Some(SyntaxError::FractionalDuration {
        at: (start, end),
        written,
        whole: whole_duration(whole, fraction, unit_ms),
    })
}

/// `whole.fraction` units of `unit_ms` milliseconds written as a whole number of the largest
/// unit that has one (`1.5` seconds is `1500ms`, `2.5` minutes `150s`), if any unit has.
fn whole_duration(whole: &str, fraction: &str, unit_ms: u64) -> Option<String> {
    // Exact integer arithmetic: (whole · 10^k + fraction) · unit / 10^k, k = fraction digits.
    let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    let scaled = whole
        .parse::<u128>()
        .ok()?
        .checked_mul(scale)?
        .checked_add(fraction.parse::<u128>().ok()?)?
        .checked_mul(u128::from(unit_ms))?;
    if scaled % scale != 0 {
        return None;
    }
    let ms = scaled / scale;
    let (name, len) = DURATION_UNITS
        .iter()
        .find(|(_, len)| ms % u128::from(*len) == 0)?;
    Some(format!("{}{name}", ms / u128::from(*len)))
}

/// Errors inside `< >`: an option without its value, an unknown option, an unknown policy.
fn option_error(text: &str, pos: usize) -> Option<SyntaxError<'_>> {
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
    let kw_at = (s, s + kw.len());
    if is_policy {
        return match kw {
            "first" | "min" => Some(SyntaxError::PolicyWithoutNumber { at: kw_at, kw }),
            "all" | "any" => None,
            _ => Some(SyntaxError::UnknownPolicy {
                at: kw_at,
                kw,
                suggestion: did_you_mean(kw, ["all", "any", "first", "min"]),
            }),
        };
    }
    if let Some(&(name, what, example)) = OPTIONS.iter().find(|(n, _, _)| *n == kw) {
        if arg.is_some_and(|a| option_arg_ok(name, a)) {
            return None; // The option is fine; the error is elsewhere (a missing `,` or `>`).
        }
        let fix = match arg {
            Some(a)
                if matches!(name, "timeout" | "deadline")
                    && a.bytes().all(|b| b.is_ascii_digit()) =>
            {
                OptionFix::Unit(a)
            }
            Some(a) if name == "budget" && a.parse::<f64>().is_ok() => OptionFix::Dollar(a),
            _ => OptionFix::Example(example),
        };
        return Some(SyntaxError::OptionArgument {
            at: (s, e),
            name,
            what,
            found: arg,
            fix,
        });
    }
    if arg.is_some() && kw.chars().all(is_word_char) && !kw.is_empty() {
        return Some(SyntaxError::UnknownOption {
            at: kw_at,
            kw,
            suggestion: did_you_mean(kw, OPTIONS.iter().map(|(n, _, _)| *n)),
        });
    }
    None
}

/// Whether `arg` is a well-formed argument of option `name`.
fn option_arg_ok(name: &str, arg: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match name {
        "max" | "retry" => digits(arg),
        "timeout" | "deadline" => DURATION_UNITS
            .iter()
            .any(|(u, _)| arg.strip_suffix(u).is_some_and(digits)),
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

/// What a `{` opens, judged from its line: "workflow `main`", "the `parallel` block", ...
pub(super) fn opener_context(text: &str, open: usize) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::FileId;

    fn error_of(text: &str) -> crate::diag::Diagnostic {
        *super::super::parse(FileId(0), text).expect_err(text)
    }

    #[test]
    fn the_keyword_list_is_the_grammars() {
        // Every word of the list is refused as a name by the parser itself, and said to be a
        // keyword wherever a name is declared.
        assert!(KEYWORDS.len() >= 22, "{KEYWORDS:?}");
        for kw in KEYWORDS {
            let said = format!("`{kw}` is a keyword; it cannot be used as a name");
            for text in [
                format!("agent a {{ model: m }}\nworkflow main() {{\n  {kw} = a(\"x\")\n}}\n"),
                format!("agent {kw} {{ model: m }}\n"),
                format!("workflow {kw}() {{\n}}\n"),
                format!("workflow main({kw}: text) {{\n}}\n"),
                format!(
                    "agent a {{ model: m }}\nworkflow main() {{\n  if x {{\n    {kw} = a(\"x\")\n  }}\n}}\n"
                ),
            ] {
                let d = error_of(&text);
                assert_eq!(d.message, said, "{text}");
                assert!(
                    d.help.as_deref().is_some_and(|h| h.contains("not")),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn misspelt_keywords_get_a_suggestion_and_names_do_not() {
        for (text, word, keyword) in [
            (
                "workflow w() {\n  x = paralel {\n  }\n}\n",
                "paralel",
                "parallel",
            ),
            (
                "workflow w() {\n  paralel {\n  }\n}\n",
                "paralel",
                "parallel",
            ),
            ("workflow w() {\n  iff x {\n  }\n}\n", "iff", "if"),
            ("workflow w() {\n  retrun x\n}\n", "retrun", "return"),
            ("agnet a { model: m }\n", "agnet", "agent"),
            ("workflw w() {\n}\n", "workflw", "workflow"),
        ] {
            let d = error_of(text);
            assert_eq!(d.message, format!("unknown keyword `{word}`"), "{text}");
            assert_eq!(d.help, Some(format!("did you mean `{keyword}`?")), "{text}");
        }
        // A step missing its `=` is no misspelt keyword.
        let d = error_of("agent a { model: m }\nworkflow w() {\n  plan a(\"x\")\n}\n");
        assert_eq!(d.message, "expected `=`, found `a`");
    }

    #[test]
    fn fractional_durations_are_written_in_a_smaller_unit() {
        assert_eq!(whole_duration("1", "5", 1_000).as_deref(), Some("1500ms"));
        assert_eq!(whole_duration("2", "5", 60_000).as_deref(), Some("150s"));
        assert_eq!(whole_duration("1", "5", 3_600_000).as_deref(), Some("90m"));
        assert_eq!(whole_duration("0", "25", 1_000).as_deref(), Some("250ms"));
        assert_eq!(whole_duration("3", "5", 1), None, "half a millisecond");
        assert_eq!(
            whole_duration("1", &"9".repeat(60), 1_000),
            None,
            "too many digits"
        );
        let d = error_of("agent a { model: m, timeout: 0.5s }\n");
        assert_eq!(
            d.message,
            "`0.5s` is not a duration: durations are whole numbers of a unit"
        );
        assert_eq!(
            d.help.as_deref(),
            Some("write `500ms` (units are `ms`, `s`, `m` and `h`)")
        );
    }
}
