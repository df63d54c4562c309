//! Go to definition, find references and rename, over the document and everything it
//! includes (the standard library's files too, served as read-only files: see
//! [`super::analysis::write_stdlib`]).

use std::collections::HashMap;

use lsp_types::{Location, TextEdit, Uri, WorkspaceEdit};

use super::analysis::Analysis;
use super::diagnostics::Ranges;

/// Where the name at `offset` is declared.
pub fn definition(a: &Analysis, offset: usize) -> Option<Location> {
    let occ = a.occurrence_at(offset)?;
    Ranges::new(a).location(a.index.symbols[occ.sym].def)
}

/// Every place the name at `offset` is written; its declaration(s) too when `with_decl`.
pub fn references(a: &Analysis, offset: usize, with_decl: bool) -> Vec<Location> {
    let Some(occ) = a.occurrence_at(offset) else {
        return Vec::new();
    };
    let ranges = Ranges::new(a);
    let mut spans: Vec<_> = a
        .occurrences_of(occ.sym)
        .filter(|o| with_decl || !o.is_def)
        .map(|o| o.span)
        .collect();
    spans.sort();
    spans.dedup();
    spans
        .into_iter()
        .filter_map(|s| ranges.location(s))
        .collect()
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

/// The edits that rename the name at `offset` to `new_name` everywhere it is written.
///
/// # Errors
/// [`RenameError`]: no name there, an invalid new name, or a name the standard library
/// writes.
pub fn rename(a: &Analysis, offset: usize, new_name: &str) -> Result<WorkspaceEdit, RenameError> {
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
    let sym = &a.index.symbols[occ.sym];
    let ranges = Ranges::new(a);
    // `Uri` caches its parsed parts in a cell that does not take part in its hash; the map is
    // the type `WorkspaceEdit` holds.
    #[allow(clippy::mutable_key_type)]
    let mut changes: HashMap<Uri, Vec<TextEdit>> = HashMap::new();
    let mut spans: Vec<_> = a.occurrences_of(occ.sym).map(|o| o.span).collect();
    spans.sort();
    spans.dedup();
    for span in spans {
        let file = a.set.sources.get(span.file);
        if file.is_stdlib() {
            return Err(RenameError::Stdlib(sym.key.clone(), file.name.clone()));
        }
        if let Some(loc) = ranges.location(span) {
            changes
                .entry(loc.uri)
                .or_default()
                .push(TextEdit::new(loc.range, new_name.to_string()));
        }
    }
    Ok(WorkspaceEdit::new(changes))
}
