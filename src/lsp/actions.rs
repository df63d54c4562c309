//! Code actions: quick fixes for the diagnostics under the cursor.
//!
//! - every diagnostic that carries a replacement ([`crate::diag::Diagnostic::replacement`]):
//!   a "did you mean" name, or `W0802`'s steps rewritten as one `parallel` block;
//! - `E0203` (unknown model) naming a model of `std/models.orch` in a document that does not
//!   include it: add `include "std/models.orch"`.

use std::collections::HashMap;

use lsp_types::{CodeAction, CodeActionKind, CodeActionOrCommand, Position, Range, TextEdit, Uri};

use super::analysis::Analysis;
use super::diagnostics::{Ranges, convert};
use crate::diag::Code;
use crate::syntax::ast;

const STD_MODELS: &str = "std/models.orch";

/// The models `std/models.orch` declares.
fn std_models() -> Vec<String> {
    let Some((_, text)) = crate::resolve::STDLIB
        .iter()
        .find(|(n, _)| *n == STD_MODELS)
    else {
        return Vec::new();
    };
    match crate::syntax::parse(crate::diag::FileId(0), text) {
        Ok(m) => m
            .items
            .iter()
            .filter_map(|i| match i {
                ast::Item::Model(d) => Some(d.name.name.clone()),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The quick fixes for diagnostics of the entry file overlapping bytes `start..end`.
// `Uri` caches its parsed parts in a cell that does not take part in its hash; the map is the
// type `WorkspaceEdit` holds.
#[allow(clippy::mutable_key_type)]
pub fn actions(a: &Analysis, uri: &Uri, start: usize, end: usize) -> Vec<CodeActionOrCommand> {
    let ranges = Ranges::new(a);
    let entry = a.set.entry;
    let mut out = Vec::new();
    for d in a.diags.iter() {
        let span = d.primary.span;
        if span.file != entry || span.start as usize > end || (span.end as usize) < start {
            continue;
        }
        let lsp_diag = convert(a, &ranges, d);
        let edit = |edits: Vec<TextEdit>| {
            Some(lsp_types::WorkspaceEdit::new(HashMap::from([(
                uri.clone(),
                edits,
            )])))
        };
        if let Some(text) = &d.replacement {
            let title = if d.code == Code::ParallelizableSequence {
                "Run them at once in a `parallel` block".to_string()
            } else {
                format!("Replace with `{text}`")
            };
            out.push(CodeActionOrCommand::CodeAction(CodeAction {
                title,
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: lsp_diag.clone().map(|d| vec![d]),
                edit: edit(vec![TextEdit::new(ranges.range(span), text.clone())]),
                is_preferred: Some(d.code != Code::ParallelizableSequence),
                ..Default::default()
            }));
        }
        if d.code == Code::UnknownModel
            && !includes_std_models(a)
            && std_models()
                .iter()
                .any(|m| m == a.set.sources.snippet(span))
        {
            let at = include_position(a);
            out.push(CodeActionOrCommand::CodeAction(CodeAction {
                title: format!("Add `include \"{STD_MODELS}\"`"),
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: lsp_diag.map(|d| vec![d]),
                edit: edit(vec![TextEdit::new(
                    Range::new(at, at),
                    format!("include \"{STD_MODELS}\"\n"),
                )]),
                is_preferred: Some(true),
                ..Default::default()
            }));
        }
    }
    out
}

fn entry_module(a: &Analysis) -> Option<&ast::Module> {
    a.set
        .modules
        .iter()
        .map(|m| &m.module)
        .find(|m| m.file == a.set.entry)
}

fn includes_std_models(a: &Analysis) -> bool {
    entry_module(a).is_some_and(|m| {
        m.items
            .iter()
            .any(|i| matches!(i, ast::Item::Include(inc) if inc.path == STD_MODELS))
    })
}

/// Where a new include goes: the line after the last include, else the first line that is
/// not a comment.
fn include_position(a: &Analysis) -> Position {
    let ranges = Ranges::new(a);
    let last = entry_module(a).and_then(|m| {
        m.items
            .iter()
            .filter_map(|i| match i {
                ast::Item::Include(inc) => Some(inc.span),
                _ => None,
            })
            .next_back()
    });
    if let Some(span) = last {
        return Position::new(ranges.range(span).end.line + 1, 0);
    }
    let text = a.text(a.set.entry);
    let line = text
        .lines()
        .position(|l| !l.trim_start().starts_with("//"))
        .unwrap_or(0);
    Position::new(line as u32, 0)
}
