//! Semantic tokens (the whole document): keywords, strings, numbers, comments, and each name
//! by what it names — agents and workflows as functions, models as types, providers and MCP
//! servers as namespaces, parameters, other names as variables, field keys as properties.

use std::collections::HashMap;

use lsp_types::{
    SemanticToken, SemanticTokenModifier, SemanticTokenType, SemanticTokens, SemanticTokensLegend,
};

use super::analysis::{Analysis, SymKind};
use super::documents::LineIndex;
use crate::fmt::comments::{CommentKind, comments};

/// The token types, in the order of the legend.
const TYPES: &[SemanticTokenType] = &[
    SemanticTokenType::KEYWORD,
    SemanticTokenType::STRING,
    SemanticTokenType::NUMBER,
    SemanticTokenType::COMMENT,
    SemanticTokenType::FUNCTION,
    SemanticTokenType::TYPE,
    SemanticTokenType::NAMESPACE,
    SemanticTokenType::PARAMETER,
    SemanticTokenType::VARIABLE,
    SemanticTokenType::PROPERTY,
];
const KEYWORD: u32 = 0;
const STRING: u32 = 1;
const NUMBER: u32 = 2;
const COMMENT: u32 = 3;
const FUNCTION: u32 = 4;
const TYPE: u32 = 5;
const NAMESPACE: u32 = 6;
const PARAMETER: u32 = 7;
const VARIABLE: u32 = 8;
const PROPERTY: u32 = 9;

/// Modifier bits: a declaration; a documentation comment.
const DECLARATION: u32 = 1;
const DOCUMENTATION: u32 = 2;

/// The legend the server announces.
pub fn legend() -> SemanticTokensLegend {
    SemanticTokensLegend {
        token_types: TYPES.to_vec(),
        token_modifiers: vec![
            SemanticTokenModifier::DECLARATION,
            SemanticTokenModifier::DOCUMENTATION,
        ],
    }
}

/// One token before encoding: bytes `start..end` (on one line), its type and modifiers.
type Raw = (usize, usize, u32, u32);

/// The tokens of `text`, the entry document of `a` (its names are classified from the
/// analysis when it is of this text).
pub fn semantic_tokens(text: &str, a: Option<&Analysis>) -> SemanticTokens {
    let mut names: HashMap<usize, (u32, u32)> = HashMap::new();
    if let Some(a) = a
        && *a.text(a.set.entry) == *text
    {
        for o in &a.index.occurrences {
            if o.span.file != a.set.entry {
                continue;
            }
            let ty = match a.index.symbols[o.sym].kind {
                SymKind::Agent | SymKind::Workflow => FUNCTION,
                SymKind::Model => TYPE,
                SymKind::Provider | SymKind::Mcp => NAMESPACE,
                SymKind::Param => PARAMETER,
                SymKind::Local => VARIABLE,
            };
            let modifiers = if o.is_def { DECLARATION } else { 0 };
            names.insert(o.span.start as usize, (ty, modifiers));
        }
    }
    let mut raw: Vec<Raw> = Vec::new();
    let found = comments(text);
    for c in &found {
        let modifiers = if c.kind == CommentKind::Doc {
            DOCUMENTATION
        } else {
            0
        };
        lines(text, c.start, c.end, COMMENT, modifiers, &mut raw);
    }
    let b = text.as_bytes();
    let mut i = 0;
    let mut next_comment = found.iter().peekable();
    while i < b.len() {
        if let Some(c) = next_comment.peek()
            && c.start <= i
        {
            i = i.max(c.end);
            next_comment.next();
            continue;
        }
        let ch = b[i];
        if ch == b'"' {
            i = string(text, i, &names, &mut raw);
        } else if ch.is_ascii_alphabetic() || ch == b'_' {
            let end = word_end(b, i);
            let word = &text[i..end];
            let after = text[end..].trim_start();
            let token = if let Some(&(ty, m)) = names.get(&i) {
                Some((ty, m))
            } else if crate::syntax::KEYWORDS.contains(&word) {
                Some((KEYWORD, 0))
            } else if after.starts_with(':') && !after.starts_with("::") {
                Some((PROPERTY, 0))
            } else {
                None
            };
            if let Some((ty, m)) = token {
                raw.push((i, end, ty, m));
            }
            i = end;
        } else if ch.is_ascii_digit()
            || (ch == b'$' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let mut end = i + 1;
            while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'.') {
                end += 1;
            }
            raw.push((i, end, NUMBER, 0));
            i = end;
        } else {
            i += 1;
        }
    }
    raw.sort_by_key(|t| t.0);
    encode(text, &raw)
}

fn word_end(b: &[u8], start: usize) -> usize {
    let mut end = start;
    while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
        end += 1;
    }
    end
}

/// A token over bytes `start..end`, split at line breaks.
fn lines(text: &str, start: usize, end: usize, ty: u32, m: u32, raw: &mut Vec<Raw>) {
    let mut s = start;
    for (i, _) in text[start..end].match_indices('\n') {
        let e = start + i;
        if e > s {
            raw.push((s, e, ty, m));
        }
        s = e + 1;
    }
    if end > s {
        raw.push((s, end, ty, m));
    }
}

/// The string starting at `start` (a `"` or `"""`): string pieces between its interpolations,
/// each name of an interpolation by what it names. Returns the byte after the string.
fn string(
    text: &str,
    start: usize,
    names: &HashMap<usize, (u32, u32)>,
    raw: &mut Vec<Raw>,
) -> usize {
    let b = text.as_bytes();
    let triple = b[start..].starts_with(b"\"\"\"");
    let mut i = start + if triple { 3 } else { 1 };
    let mut piece = start;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if triple && b[i..].starts_with(b"\"\"\"") {
            i += 3;
            break;
        }
        if !triple && (b[i] == b'"' || b[i] == b'\n') {
            i += usize::from(b[i] == b'"');
            break;
        }
        if b[i..].starts_with(b"{{") {
            i += 2;
            continue;
        }
        if b[i] == b'{' {
            lines(text, piece, i, STRING, 0, raw);
            let close = text[i..].find(['}', '"', '\n']).map_or(b.len(), |n| i + n);
            let mut j = i + 1;
            while j < close {
                if b[j].is_ascii_alphabetic() || b[j] == b'_' {
                    let end = word_end(b, j).min(close);
                    let (ty, m) = names.get(&j).copied().unwrap_or((PROPERTY, 0));
                    raw.push((j, end, ty, m));
                    j = end;
                } else {
                    j += 1;
                }
            }
            i = if close < b.len() && b[close] == b'}' {
                close + 1
            } else {
                close
            };
            piece = i;
            continue;
        }
        i += 1;
    }
    let end = i.min(b.len());
    lines(text, piece, end, STRING, 0, raw);
    end
}

/// The LSP's relative encoding: each token's line and start relative to the previous token,
/// lengths and columns in UTF-16 code units.
fn encode(text: &str, raw: &[Raw]) -> SemanticTokens {
    let idx = LineIndex::new(text);
    let mut data = Vec::with_capacity(raw.len());
    let (mut prev_line, mut prev_col) = (0u32, 0u32);
    let mut last_end = 0;
    for &(start, end, ty, m) in raw {
        if start < last_end || end <= start {
            continue; // Overlapping tokens are not allowed; keep the first.
        }
        last_end = end;
        let p = idx.position(text, start);
        let length = text[start..end].encode_utf16().count() as u32;
        let delta_line = p.line - prev_line;
        let delta_start = if delta_line == 0 {
            p.character - prev_col
        } else {
            p.character
        };
        data.push(SemanticToken {
            delta_line,
            delta_start,
            length,
            token_type: ty,
            token_modifiers_bitset: m,
        });
        prev_line = p.line;
        prev_col = p.character;
    }
    SemanticTokens {
        result_id: None,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_split_around_interpolations_and_lines() {
        let text = "a = b(\"x {req} y\") // c\n";
        let t = semantic_tokens(text, None);
        let kinds: Vec<u32> = t.data.iter().map(|t| t.token_type).collect();
        // "x ", req, " y", comment
        assert_eq!(kinds, vec![STRING, PROPERTY, STRING, COMMENT]);
        let total: u32 = t.data.iter().map(|t| t.delta_start).sum();
        assert_eq!(total as usize, text.find("//").unwrap());
    }
}
