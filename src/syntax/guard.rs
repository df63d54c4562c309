//! The nesting guard: one pass over a text, before pest parses it, that bounds how deeply
//! pest's parser can recurse over it.
//!
//! pest's generated parser recurses once per nested construct, and its built-in guard (a
//! native stack probe and a call counter at every rule) cost a tenth of `orch check`'s time on
//! a large script. orch links pest without `std`, which leaves the probe out, and refuses
//! instead any text that could make pest recurse deeper than [`GUARD`] levels.
//!
//! Every cycle of recursion in `grammar/orch.pest` consumes one of: an opening bracket (`{`,
//! `(`, `[`, or the `<` of `list<T>`), the word `not` (`not not x`), the word `else` (an `else
//! if` chain: each `if` is nested in the one before it), or a `/*` inside a comment. So
//! pest's depth at any offset is at most the number of brackets open there, plus the `not`s
//! and `else`s that may still be open, plus the depth of comment nesting. The scan counts
//! those, erring high:
//! - a bracket closes at its closer, whatever its kind (a mismatch stops pest anyway); a `<`
//!   opens a level only after the word `list`, and closes at `>`, at the end of its line or
//!   with its enclosing bracket, so comparisons and options add nothing that lasts;
//! - the `not`s of a level are open until its line ends (a condition cannot span lines) or a
//!   block opens;
//! - the `else`s of a level are open until a block of that level closes and is followed by
//!   anything but `else` (the chain has ended);
//! - strings, including their `{name}` interpolations, nest nothing.
//!
//! The language's own bound, [`super::MAX_NESTING`], is checked on the parse tree afterwards
//! with its exact rules; this one is looser, so that a text it refuses is always far past
//! that.

use super::MAX_NESTING;

/// How many levels of nesting, as counted here, a text may reach before pest parses it. Twice
/// the language's bound: pest's frames for these levels fit a 2 MiB thread stack (a test
/// parses the deepest texts allowed on one, in a debug build).
pub(super) const GUARD: usize = 2 * MAX_NESTING;

/// One open bracket, with the `not`s and `else`s counted at its level.
struct Level {
    /// The bracket's byte (`{`, `(`, `[`, `<`); `0` for the file's top level.
    opener: u8,
    nots: usize,
    elses: usize,
}

/// The scan's state: the open levels and their sum.
struct Scan {
    levels: Vec<Level>,
    /// Σ `nots + elses` over `levels`.
    extra: usize,
    /// The last token closed a block (`}`): what comes next says whether an `else` chain goes
    /// on.
    after_block: bool,
    /// The last token was the word `list` (white space and comments between are allowed).
    after_list: bool,
}

impl Scan {
    fn depth(&self) -> usize {
        self.levels.len() - 1 + self.extra
    }

    fn top(&mut self) -> &mut Level {
        // The top level is never popped.
        let last = self.levels.len() - 1;
        &mut self.levels[last]
    }

    /// A token other than the word `else` ends the `else` chain of the level a block closed
    /// back to. Any token ends a `list` word's reach (a word sets it again after this).
    fn token(&mut self, is_else: bool) {
        self.after_list = false;
        if std::mem::take(&mut self.after_block) && !is_else {
            let top = self.top();
            let elses = std::mem::take(&mut top.elses);
            self.extra -= elses;
        }
    }

    fn end_condition(&mut self) {
        let top = self.top();
        let nots = std::mem::take(&mut top.nots);
        self.extra -= nots;
    }

    /// A line break or `;` cannot be inside `list<…>` itself (only inside a record type in
    /// it, one level further): a `<` still open there was a comparison (`list < 3`).
    fn end_list_types(&mut self) {
        while self.levels.last().is_some_and(|l| l.opener == b'<') {
            self.pop();
        }
    }

    /// Closes the innermost level, with its `not`s and `else`s; its opener, or `None` at the
    /// top level (never closed).
    fn pop(&mut self) -> Option<u8> {
        if self.levels.len() == 1 {
            return None;
        }
        let level = self.levels.pop()?;
        self.extra -= level.nots + level.elses;
        Some(level.opener)
    }

    fn open(&mut self, opener: u8) {
        if opener == b'{' {
            self.end_condition();
        }
        self.levels.push(Level {
            opener,
            nots: 0,
            elses: 0,
        });
    }

    fn close(&mut self, closer: u8) {
        while let Some(opener) = self.pop() {
            // A `<` is closed by its enclosing bracket's closer too.
            if opener != b'<' || closer == b'>' {
                break;
            }
        }
        self.after_block = closer == b'}';
    }
}

/// The offset at which `text` could make pest recurse deeper than [`GUARD`] levels, if
/// anywhere.
pub(super) fn too_deep_to_parse(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut s = Scan {
        levels: vec![Level {
            opener: 0,
            nots: 0,
            elses: 0,
        }],
        extra: 0,
        after_block: false,
        after_list: false,
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' => i += 1,
            b'\n' | b';' => {
                s.end_condition();
                s.end_list_types();
                s.after_list = false;
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = text[i..].find('\n').map_or(b.len(), |n| i + n);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                match super::comment_end_within(b, i, GUARD - s.depth()) {
                    Ok(end) => i = end.unwrap_or(b.len()),
                    Err(at) => return Some(at),
                }
            }
            b'"' => {
                s.token(false);
                i = string_end(b, i);
            }
            b'{' | b'(' | b'[' | b'<' if c != b'<' || s.after_list => {
                s.token(false);
                s.open(c);
                if s.depth() > GUARD {
                    return Some(i);
                }
                i += 1;
            }
            b'}' | b')' | b']' => {
                s.token(false);
                s.close(c);
                i += 1;
            }
            b'>' if s.levels.last().is_some_and(|l| l.opener == b'<') => {
                s.token(false);
                s.close(c);
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &b[start..i];
                s.token(word == b"else");
                s.after_list = word == b"list";
                match word {
                    b"not" => {
                        s.top().nots += 1;
                        s.extra += 1;
                    }
                    b"else" => {
                        s.top().elses += 1;
                        s.extra += 1;
                    }
                    _ => continue,
                }
                if s.depth() > GUARD {
                    return Some(start);
                }
            }
            _ => {
                s.token(false);
                i += 1;
            }
        }
    }
    None
}

/// The offset after the string opening at `start` (`"…"` ends at its line's end when not
/// closed, `"""…"""` at the end of the text); a `\` escapes the byte after it.
fn string_end(b: &[u8], start: usize) -> usize {
    let triple = b[start..].starts_with(b"\"\"\"");
    let mut i = start + if triple { 3 } else { 1 };
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' if !triple => return i + 1,
            b'"' if b[i..].starts_with(b"\"\"\"") => return i + 3,
            b'\n' if !triple => return i,
            _ => i += 1,
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str) -> bool {
        too_deep_to_parse(text).is_none()
    }

    #[test]
    fn brackets_count_and_close() {
        let nested = |n: usize| format!("x = {}{}", "[".repeat(n), "]".repeat(n));
        assert!(depth_ok(&nested(GUARD)));
        assert_eq!(too_deep_to_parse(&nested(GUARD + 1)), Some(4 + GUARD));
        // Closed brackets add nothing: many in sequence are fine.
        assert!(depth_ok(&"f(a) { x } [y]\n".repeat(10 * GUARD)));
    }

    #[test]
    fn brackets_in_strings_and_comments_count_nothing() {
        let s = format!(
            "a = s(\"{}\")\n/* {} */ b = s(\"\"\"{}\"\"\")\n// {}\n",
            "(".repeat(500),
            "[".repeat(500),
            "{{".repeat(500),
            "(".repeat(500),
        );
        assert!(depth_ok(&s));
    }

    #[test]
    fn list_types_nest_and_comparisons_do_not() {
        let t = |n: usize| {
            format!(
                "agent a(x: {}text{}) {{}}",
                "list<".repeat(n),
                ">".repeat(n)
            )
        };
        assert!(depth_ok(&t(GUARD - 2)));
        assert!(too_deep_to_parse(&t(GUARD + 1)).is_some());
        let cmp = "if a < b { x = s(\"1\") }\n".repeat(10 * GUARD);
        assert!(depth_ok(&format!("workflow w {{ {cmp} }}")));
        // A `<` after a name `list` that is a comparison closes with its enclosing bracket,
        // or at the end of its line.
        let odd = "if (list < 2) { x = s(\"1\") }\n".repeat(10 * GUARD);
        assert!(depth_ok(&format!("workflow w {{ {odd} }}")));
        let odd = "if list < 2 { x = s(\"1\") }\n".repeat(10 * GUARD);
        assert!(depth_ok(&format!("workflow w {{ {odd} }}")));
        // A record type inside `list<…>` may span lines: its `<` stays open there.
        let t = |n: usize| {
            format!(
                "agent a(x: {}text{}) {{}}",
                "list<{\n a: ".repeat(n),
                "\n}>".repeat(n)
            )
        };
        assert!(depth_ok(&t(GUARD / 2 - 1)));
        assert!(too_deep_to_parse(&t(GUARD / 2)).is_some());
    }

    #[test]
    fn not_chains_count_until_the_condition_ends() {
        let nots = |n: usize| format!("workflow w {{ if {}x {{ }} }}", "not ".repeat(n));
        assert!(depth_ok(&nots(GUARD - 2)));
        assert!(too_deep_to_parse(&nots(GUARD)).is_some());
        // One `not` per line, many lines: each condition ends with its line.
        let many = "if not x { y = s(\"1\") }\n".repeat(10 * GUARD);
        assert!(depth_ok(&format!("workflow w {{ {many} }}")));
    }

    #[test]
    fn else_if_chains_count_until_the_chain_ends() {
        let chain = |n: usize| {
            format!(
                "workflow w {{ if x {{ }}{} }}",
                "\n else if x { y = s(\"1\") }".repeat(n)
            )
        };
        // The workflow's block, the `if`'s and the call's parentheses are three levels.
        assert!(depth_ok(&chain(GUARD - 3)));
        assert!(too_deep_to_parse(&chain(GUARD - 2)).is_some());
        // Many short chains in one block: each ends at the statement after it.
        let many = "if x { } else if y { } else { }\nz = s(\"1\")\n".repeat(10 * GUARD);
        assert!(depth_ok(&format!("workflow w {{ {many} }}")));
    }

    #[test]
    fn nested_comments_count_from_the_depth_around_them() {
        let c = |n: usize| format!("x = [[ {}{} ]]", "/* ".repeat(n), "*/ ".repeat(n));
        assert!(depth_ok(&c(GUARD - 2)));
        assert_eq!(too_deep_to_parse(&c(GUARD - 1)), Some(7 + 3 * (GUARD - 2)));
        // Not closed: still bounded.
        assert!(too_deep_to_parse(&"/* ".repeat(100_000)).is_some());
    }
}
