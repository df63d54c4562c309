//! The first pass over a text that does not parse: a small lexer that walks the whole file
//! for problems it can name exactly — unterminated strings and comments, unclosed
//! interpolations, unknown escapes, unbalanced `( ) [ ] { }` — and knows which brackets are
//! open where pest stopped.

use super::diagnose::{is_word_char, opener_context, token_end};
use super::error::{SyntaxError, closer};

/// A problem the lexer can name exactly.
#[derive(Debug, Clone, Copy)]
pub(super) enum Problem {
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

pub(super) struct Lexer {
    /// Open brackets at the position the lexer stopped at: (offset, char).
    pub(super) stack: Vec<(usize, char)>,
    /// The first problem, if any.
    pub(super) problem: Option<Problem>,
}

impl Lexer {
    /// Lexes `text`; the bracket stack is taken at `stop` (problems are searched further, to
    /// the end of the file).
    pub(super) fn run(text: &str, stop: usize) -> Lexer {
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

impl Problem {
    /// Where the problem becomes certain: it is reported instead of pest's error only if this
    /// is not after the place pest stopped.
    pub(super) fn detected_at(self) -> usize {
        match self {
            Problem::UnterminatedString { open, .. } => open,
            Problem::UnterminatedTriple { open } | Problem::UnterminatedComment { open } => open,
            Problem::BadEscape { at, .. } | Problem::LoneBrace { at } => at,
            Problem::UnclosedInterp { open, .. } | Problem::BadInterp { open } => open,
            Problem::Unmatched { at, .. } | Problem::Mismatched { at, .. } => at,
            Problem::Unclosed { eof, .. } => eof,
        }
    }

    /// The error this problem is in `text`.
    pub(super) fn error(self, text: &str) -> SyntaxError<'_> {
        // The end of the last token, so that "the file ends here" has a line to be shown on.
        let eof = text.trim_end().len();
        match self {
            Problem::UnterminatedString { open, line_end } => SyntaxError::UnterminatedString {
                at: (open, line_end),
            },
            Problem::UnterminatedTriple { open } => SyntaxError::UnterminatedTriple {
                at: (open, open + 3),
                eof,
            },
            Problem::UnterminatedComment { open } => SyntaxError::UnterminatedComment {
                at: (open, open + 2),
                eof,
            },
            Problem::BadEscape { at, len } => SyntaxError::BadEscape {
                at: (at, at + len),
                escape: &text[at..at + len],
            },
            Problem::UnclosedInterp { open, end } => SyntaxError::UnclosedInterp {
                at: (open, end),
                name: &text[open + 1..end],
            },
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
                    return SyntaxError::SpacedInterp {
                        at: (open, close),
                        inner,
                        name,
                    };
                }
                SyntaxError::BadInterp { at: (open, end) }
            }
            Problem::LoneBrace { at } => SyntaxError::LoneBrace { at: (at, at + 1) },
            Problem::Unmatched { at, ch } => SyntaxError::Unmatched {
                at: (at, at + 1),
                ch,
            },
            Problem::Mismatched {
                open,
                open_ch,
                at,
                ch,
            } => SyntaxError::Mismatched {
                at: (at, at + 1),
                ch,
                open: (open, open + 1),
                open_ch,
            },
            Problem::Unclosed {
                open, ch, guess, ..
            } => {
                let (open, ch) = match guess {
                    Some((g, _)) => (g, text[g..].chars().next().unwrap_or(ch)),
                    None => (open, ch),
                };
                let stolen_by = guess.map(|(_, closer_at)| {
                    (
                        (closer_at, closer_at + 1),
                        text[closer_at..].chars().next().unwrap_or('}'),
                    )
                });
                SyntaxError::Unclosed {
                    open: (open, open + 1),
                    ch,
                    context: opener_context(text, open),
                    stolen_by,
                    eof,
                }
            }
        }
    }
}

pub(super) fn line_start(text: &str, pos: usize) -> usize {
    text[..pos].rfind('\n').map_or(0, |i| i + 1)
}

pub(super) fn first_on_line(text: &str, pos: usize) -> bool {
    text[line_start(text, pos)..pos].trim().is_empty()
}

fn indent_of(text: &str, pos: usize) -> usize {
    let line = &text[line_start(text, pos)..];
    line.len() - line.trim_start_matches([' ', '\t']).len()
}
