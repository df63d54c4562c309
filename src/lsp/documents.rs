//! The open documents, file URIs, and positions: LSP positions are a line and a column in
//! UTF-16 code units (the protocol's default encoding); the compiler's spans are byte offsets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lsp_types::{Position, Range, Uri};

/// One open document: the editor's text, which may be unsaved.
#[derive(Debug, Clone)]
pub struct Document {
    /// The text as the editor has it.
    pub text: String,
    /// The version the editor gave with it.
    pub version: i32,
}

/// Every open document, by URI (as the editor wrote it).
#[derive(Debug, Default)]
pub struct Documents {
    docs: BTreeMap<String, Document>,
}

impl Documents {
    /// Opens or replaces a document.
    pub fn set(&mut self, uri: &Uri, text: String, version: i32) {
        self.docs
            .insert(uri.as_str().to_string(), Document { text, version });
    }
    /// Closes a document.
    pub fn remove(&mut self, uri: &Uri) {
        self.docs.remove(uri.as_str());
    }
    /// The open document at `uri`.
    pub fn get(&self, uri: &str) -> Option<&Document> {
        self.docs.get(uri)
    }
    /// The URIs of every open document.
    pub fn uris(&self) -> Vec<String> {
        self.docs.keys().cloned().collect()
    }
    /// Every open document that is a file on disk, by canonical path: the overlay the
    /// resolver reads instead of the disk.
    pub fn overlay(&self) -> std::collections::HashMap<PathBuf, std::sync::Arc<str>> {
        self.docs
            .iter()
            .filter_map(|(uri, d)| {
                let path = uri_to_path(uri)?.canonicalize().ok()?;
                Some((path, std::sync::Arc::from(d.text.as_str())))
            })
            .collect()
    }
}

/// The path of a `file://` URI (percent-decoded), or `None` for another scheme.
pub fn uri_to_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    // `file:///path` (empty authority) or `file://localhost/path`.
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return None;
    }
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    let text = String::from_utf8(out).ok()?;
    Some(PathBuf::from(text))
}

/// The `file://` URI of an absolute path, percent-encoding every byte but unreserved ones
/// and `/` (RFC 3986).
pub fn path_to_uri(path: &Path) -> Uri {
    let mut s = String::from("file://");
    for &b in path.to_string_lossy().as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s.parse()
        .expect("a percent-encoded file URI is a valid URI")
}

/// Byte offsets and LSP positions of one text.
#[derive(Debug, Clone)]
pub struct LineIndex {
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl LineIndex {
    /// The index of `text`.
    pub fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    /// The position of byte `offset` (clamped to the text, moved back to a character start).
    pub fn position(&self, text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let col = text[self.starts[line]..offset].encode_utf16().count();
        Position::new(line as u32, col as u32)
    }

    /// The range of bytes `start..end`.
    pub fn range(&self, text: &str, start: usize, end: usize) -> Range {
        Range::new(self.position(text, start), self.position(text, end))
    }

    /// The byte offset of a position: a column past the end of its line is the line's end, a
    /// line past the end of the text is the text's end.
    pub fn offset(&self, text: &str, pos: Position) -> usize {
        let Some(&start) = self.starts.get(pos.line as usize) else {
            return text.len();
        };
        let end = self
            .starts
            .get(pos.line as usize + 1)
            .map_or(text.len(), |&e| e);
        let line = &text[start..end];
        let mut units = 0u32;
        for (i, c) in line.char_indices() {
            if units >= pos.character || c == '\n' {
                return start + i;
            }
            units += c.len_utf16() as u32;
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_with_escapes() {
        let p = Path::new("/tmp/a dir/é.orch");
        let uri = path_to_uri(p);
        assert_eq!(uri.as_str(), "file:///tmp/a%20dir/%C3%A9.orch");
        assert_eq!(uri_to_path(uri.as_str()).as_deref(), Some(p));
        assert_eq!(uri_to_path("untitled:Untitled-1"), None);
    }

    #[test]
    fn positions_count_utf16_units() {
        let text = "ab\n\u{1F600}x = 1\n";
        let idx = LineIndex::new(text);
        let x = text.find('x').unwrap();
        assert_eq!(idx.position(text, x), Position::new(1, 2));
        assert_eq!(idx.offset(text, Position::new(1, 2)), x);
        assert_eq!(idx.offset(text, Position::new(0, 99)), 2);
        assert_eq!(idx.offset(text, Position::new(9, 0)), text.len());
    }
}
