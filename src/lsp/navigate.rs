//! Go to definition, find references and rename, over the document and everything it
//! includes (the standard library's files too, served as read-only files: see
//! [`super::analysis::write_stdlib`]), and, for references and rename, over the files that
//! include the one the name is declared in (`peers`: the other open documents and the
//! workspace's `.orch` files, analysed by the server).

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use lsp_types::{Location, TextEdit, Uri, WorkspaceEdit};

use super::analysis::{Analysis, SymKind};
use super::diagnostics::Ranges;
use super::documents::uri_to_path;
use crate::diag::Span;

/// A declaration as any analysis can find it: its file (a canonical path for a file on
/// disk, else the URI), where its name starts in that file (byte offset), and its kind.
#[derive(Debug, PartialEq, Eq)]
struct Decl {
    file: String,
    start: u32,
    kind: SymKind,
}

/// The file key of a URI: its canonical path when it names a file on disk, so that two
/// spellings of one file (the editor's percent-encoding and ours) compare equal.
fn file_key(uri: &str) -> String {
    uri_to_path(uri)
        .and_then(|p| p.canonicalize().ok())
        .map_or_else(|| uri.to_string(), |p| p.display().to_string())
}

/// The declaration of symbol `sym` of `a`.
fn decl_of(a: &Analysis, sym: usize) -> Decl {
    let s = &a.index.symbols[sym];
    Decl {
        file: file_key(a.uri(s.def.file)),
        start: s.def.start,
        kind: s.kind,
    }
}

/// The symbol of `b` that is declaration `d`, when `b` sees that file.
fn find(b: &Analysis, d: &Decl) -> Option<usize> {
    let mut keys: HashMap<u32, String> = HashMap::new();
    b.index.symbols.iter().position(|s| {
        s.kind == d.kind
            && s.def.start == d.start
            && *keys
                .entry(s.def.file.0)
                .or_insert_with(|| file_key(b.uri(s.def.file)))
                == d.file
    })
}

/// Every analysis (`a` first, then the peers that see the declaration) with the spans of
/// symbol `sym`'s occurrences in it, declarations included when `with_decl`.
fn occurrences<'a>(
    a: &'a Analysis,
    peers: &'a [Rc<Analysis>],
    sym: usize,
    with_decl: bool,
) -> Vec<(&'a Analysis, Vec<Span>)> {
    let decl = decl_of(a, sym);
    let spans = |b: &Analysis, sym: usize| -> Vec<Span> {
        let mut v: Vec<Span> = b
            .occurrences_of(sym)
            .filter(|o| with_decl || !o.is_def)
            .map(|o| o.span)
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mut out = vec![(a, spans(a, sym))];
    for b in peers {
        if let Some(s) = find(b, &decl) {
            out.push((&**b, spans(b, s)));
        }
    }
    out
}

/// Where the name at `offset` is declared.
pub fn definition(a: &Analysis, offset: usize) -> Option<Location> {
    let occ = a.occurrence_at(offset)?;
    Ranges::new(a).location(a.index.symbols[occ.sym].def)
}

/// Every place the name at `offset` is written, in `a` and in the `peers` that include its
/// declaration's file; its declaration(s) too when `with_decl`. Each place once.
pub fn references(
    a: &Analysis,
    peers: &[Rc<Analysis>],
    offset: usize,
    with_decl: bool,
) -> Vec<Location> {
    let Some(occ) = a.occurrence_at(offset) else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (b, spans) in occurrences(a, peers, occ.sym, with_decl) {
        let ranges = Ranges::new(b);
        for loc in spans.into_iter().filter_map(|s| ranges.location(s)) {
            if seen.insert((file_key(loc.uri.as_str()), loc.range.start, loc.range.end)) {
                out.push(loc);
            }
        }
    }
    out
}

/// Why a rename cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum RenameError {
    /// Nothing renameable at the cursor.
    #[error("there is no name here to rename")]
    NoName,
    /// Not an identifier.
    #[error("`{0}` is not a name: names are a letter or `_` followed by letters, digits and `_`")]
    NotAName(String),
    /// A keyword.
    #[error("`{0}` is a keyword and cannot be a name")]
    Keyword(String),
    /// Declared or used in the embedded standard library.
    #[error(
        "`{0}` is written in the standard library (`{1}`), which is part of orch and cannot be edited"
    )]
    Stdlib(String, String),
}

/// The edits that rename the name at `offset` to `new_name` everywhere it is written: in `a`
/// and in the `peers` that include its declaration's file.
///
/// # Errors
/// [`RenameError`]: no name there, an invalid new name, or a name the standard library
/// writes.
pub fn rename(
    a: &Analysis,
    peers: &[Rc<Analysis>],
    offset: usize,
    new_name: &str,
) -> Result<WorkspaceEdit, RenameError> {
    let occ = a.occurrence_at(offset).ok_or(RenameError::NoName)?;
    let valid = new_name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && new_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(RenameError::NotAName(new_name.to_string()));
    }
    if crate::syntax::KEYWORDS.contains(&new_name) {
        return Err(RenameError::Keyword(new_name.to_string()));
    }
    let key = a.index.symbols[occ.sym].key.clone();
    // `Uri` caches its parsed parts in a cell that does not take part in its hash; the map is
    // the type `WorkspaceEdit` holds.
    #[allow(clippy::mutable_key_type)]
    let mut changes: HashMap<Uri, Vec<TextEdit>> = HashMap::new();
    // One edit per place, however many analyses see it (under the URI the first one uses).
    let mut uri_of_file: HashMap<String, Uri> = HashMap::new();
    let mut seen = HashSet::new();
    for (b, spans) in occurrences(a, peers, occ.sym, true) {
        let ranges = Ranges::new(b);
        for span in spans {
            let file = b.set.sources.get(span.file);
            if file.is_stdlib() {
                return Err(RenameError::Stdlib(key, file.name.clone()));
            }
            let Some(loc) = ranges.location(span) else {
                continue;
            };
            let fk = file_key(loc.uri.as_str());
            if !seen.insert((fk.clone(), loc.range.start, loc.range.end)) {
                continue;
            }
            let uri = uri_of_file.entry(fk).or_insert(loc.uri).clone();
            changes
                .entry(uri)
                .or_default()
                .push(TextEdit::new(loc.range, new_name.to_string()));
        }
    }
    Ok(WorkspaceEdit::new(changes))
}
