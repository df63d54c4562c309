//! The comments of a source text, with their byte offsets.
//!
//! The parser treats comments as white space, so the AST has none; the formatter collects
//! them here with a small lexer that knows just enough of the language to tell a comment from
//! text that looks like one: `"..."` strings and `"""..."""` blocks (with their escapes) are
//! skipped, `//` runs to the end of the line, `/* */` nests.

/// What kind of comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentKind {
    /// `// text` (including `////...`).
    Line,
    /// `/// text`: attached to the next item by the parser.
    Doc,
    /// `/* text */`, possibly nested and spanning lines.
    Block,
}

/// One comment of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comment {
    /// Its first byte (the `/`).
    pub start: usize,
    /// One past its last byte: the end of the line (before `\n` or `\r`) for line comments,
    /// just after `*/` for block comments.
    pub end: usize,
    /// What kind of comment it is.
    pub kind: CommentKind,
}

impl Comment {
    /// The comment as it should be printed: the source text, without the trailing white space
    /// of a line comment.
    pub fn text<'t>(&self, source: &'t str) -> &'t str {
        let s = &source[self.start..self.end];
        match self.kind {
            CommentKind::Line | CommentKind::Doc => s.trim_end(),
            CommentKind::Block => s,
        }
    }

    /// Whether a line break must follow the comment (`//` comments run to the end of the line).
    pub fn ends_line(&self) -> bool {
        self.kind != CommentKind::Block
    }
}

/// Every comment of `text`, in source order.
///
/// Meant for text that parses; on other text it still returns without panicking (an
/// unterminated string or block comment runs to the end).
pub fn comments(text: &str) -> Vec<Comment> {
    let b = text.as_bytes();
    let len = b.len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < len {
        match b[i] {
            b'"' if b[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < len {
                    if b[i] == b'\\' {
                        i += 2;
                    } else if b[i..].starts_with(b"\"\"\"") {
                        i += 3;
                        break;
                    } else {
                        i += 1;
                    }
                }
            }
            b'"' => {
                i += 1;
                while i < len {
                    match b[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        // A string stays on one line; stop at a broken one.
                        b'\n' => break,
                        _ => i += 1,
                    }
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let start = i;
                while i < len && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
                let doc = b[start..].starts_with(b"///") && !b[start..].starts_with(b"////");
                out.push(Comment {
                    start,
                    end: i,
                    kind: if doc {
                        CommentKind::Doc
                    } else {
                        CommentKind::Line
                    },
                });
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = i;
                i = crate::syntax::block_comment_end(b, start).unwrap_or(len);
                out.push(Comment {
                    start,
                    end: i,
                    kind: CommentKind::Block,
                });
            }
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<&str> {
        comments(src).iter().map(|c| c.text(src)).collect()
    }

    #[test]
    fn finds_every_kind() {
        let src = "// a\n/// b\n//// c\nx /* d /* e */ f */ y // g  \r\nz";
        assert_eq!(
            texts(src),
            ["// a", "/// b", "//// c", "/* d /* e */ f */", "// g"]
        );
        let kinds: Vec<_> = comments(src).iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                CommentKind::Line,
                CommentKind::Doc,
                CommentKind::Line,
                CommentKind::Block,
                CommentKind::Line
            ]
        );
    }

    #[test]
    fn skips_strings_and_triple_strings() {
        let src = "a(\"http://x /* no */ \\\" // no\") // yes\nb(\"\"\"\n  // no\n  \\\"\"\" /* no\n  \"\"\") /* yes */";
        assert_eq!(texts(src), ["// yes", "/* yes */"]);
    }

    #[test]
    fn empty_strings_are_not_triple_quotes() {
        let src = "a(\"\", \"\") // yes";
        assert_eq!(texts(src), ["// yes"]);
    }
}
