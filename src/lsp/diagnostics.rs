//! The compiler's diagnostics as LSP diagnostics of the entry document.
//!
//! A diagnostic in the document is published at its primary span, with its code, its help
//! line appended to the message, and every secondary label as related information (labels
//! in included files too). A diagnostic inside an included file is published at the
//! `include` of the document that brought the file in, its message prefixed with the file's
//! name, and its own place as the first related information: an included file has no
//! diagnostics of its own (it may be included by several open documents).

use lsp_types::{
    DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString, Range, Uri,
};

use super::analysis::Analysis;
use super::documents::LineIndex;
use crate::diag::{Diagnostic, Severity, Span};

/// Converts spans of an analysis into LSP ranges (one line index per file, built lazily).
pub struct Ranges<'a> {
    analysis: &'a Analysis,
    lines: std::cell::RefCell<std::collections::HashMap<u32, LineIndex>>,
}

impl<'a> Ranges<'a> {
    /// For `analysis`.
    pub fn new(analysis: &'a Analysis) -> Self {
        Ranges {
            analysis,
            lines: Default::default(),
        }
    }
    /// The range of a span in its file.
    pub fn range(&self, span: Span) -> Range {
        let text = self.analysis.text(span.file);
        let mut lines = self.lines.borrow_mut();
        let idx = lines
            .entry(span.file.0)
            .or_insert_with(|| LineIndex::new(text));
        idx.range(text, span.start as usize, span.end as usize)
    }
    /// The location of a span: its file's URI and range.
    pub fn location(&self, span: Span) -> Option<Location> {
        let uri: Uri = self.analysis.uri(span.file).parse().ok()?;
        Some(Location::new(uri, self.range(span)))
    }
}

/// Every diagnostic of the analysis, placed in its entry document.
pub fn to_lsp(analysis: &Analysis) -> Vec<lsp_types::Diagnostic> {
    let ranges = Ranges::new(analysis);
    analysis
        .diags
        .iter()
        .filter_map(|d| convert(analysis, &ranges, d))
        .collect()
}

/// One diagnostic, or `None` when it is in a file the entry document does not include.
pub fn convert(
    analysis: &Analysis,
    ranges: &Ranges,
    d: &Diagnostic,
) -> Option<lsp_types::Diagnostic> {
    let entry = analysis.set.entry;
    let mut related: Vec<DiagnosticRelatedInformation> = Vec::new();
    let (at, prefix) = if d.primary.span.file == entry {
        (d.primary.span, String::new())
    } else {
        // The include of the entry file the diagnostic's file came in through.
        let chain = analysis.set.include_chain(d.primary.span.file);
        let (_, include) = chain.iter().find(|(_, s)| s.file == entry)?;
        let name = &analysis.set.sources.get(d.primary.span.file).name;
        related.push(DiagnosticRelatedInformation {
            location: ranges.location(d.primary.span)?,
            message: if d.primary.message.is_empty() {
                d.message.clone()
            } else {
                d.primary.message.clone()
            },
        });
        (*include, format!("in `{name}`: "))
    };
    for l in &d.secondary {
        if let Some(location) = ranges.location(l.span) {
            related.push(DiagnosticRelatedInformation {
                location,
                message: l.message.clone(),
            });
        }
    }
    let mut message = format!("{prefix}{}", d.message);
    if !d.primary.message.is_empty() && prefix.is_empty() {
        message.push_str(&format!(" ({})", d.primary.message));
    }
    if let Some(help) = &d.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    Some(lsp_types::Diagnostic {
        range: ranges.range(at),
        severity: Some(match d.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
            Severity::Note => DiagnosticSeverity::INFORMATION,
        }),
        code: Some(NumberOrString::String(d.code.to_string())),
        source: Some("orch".to_string()),
        message: crate::redact::mask(&message),
        related_information: (!related.is_empty()).then_some(related),
        ..Default::default()
    })
}
