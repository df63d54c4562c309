//! Document symbols: the items of the document, each workflow with its parameters, steps and
//! named blocks, each agent with its parameters.

use lsp_types::{DocumentSymbol, SymbolKind};

use super::analysis::{Analysis, SymKind};
use super::diagnostics::Ranges;

/// The outline of the entry document.
pub fn document_symbols(a: &Analysis) -> Vec<DocumentSymbol> {
    let ranges = Ranges::new(a);
    let entry = a.set.entry;
    let symbol = |name: String, detail: &str, kind, range, selection, children| {
        #[allow(deprecated)] // `deprecated` is a field the type requires.
        DocumentSymbol {
            name,
            detail: (!detail.is_empty()).then(|| detail.to_string()),
            kind,
            tags: None,
            deprecated: None,
            range,
            selection_range: selection,
            children,
        }
    };
    let mut out = Vec::new();
    for s in &a.index.symbols {
        if s.scope.is_some() || s.def.file != entry {
            continue;
        }
        let (kind, detail) = match s.kind {
            SymKind::Agent => (SymbolKind::FUNCTION, "agent"),
            SymKind::Workflow => (SymbolKind::FUNCTION, "workflow"),
            SymKind::Model => (SymbolKind::CONSTANT, "model"),
            SymKind::Provider => (SymbolKind::MODULE, "provider"),
            SymKind::Mcp => (SymbolKind::MODULE, "mcp"),
            SymKind::Param | SymKind::Local => continue,
        };
        let scope = match s.kind {
            SymKind::Agent => Some(format!("agent:{}", s.key)),
            SymKind::Workflow => Some(format!("workflow:{}", s.key)),
            _ => None,
        };
        let children: Vec<DocumentSymbol> = a
            .index
            .symbols
            .iter()
            .filter(|c| scope.is_some() && c.scope == scope)
            .map(|c| {
                let (kind, detail) = match c.kind {
                    SymKind::Param => (SymbolKind::VARIABLE, "parameter"),
                    _ => (SymbolKind::FIELD, "step"),
                };
                symbol(
                    c.key.clone(),
                    detail,
                    kind,
                    ranges.range(c.decl),
                    ranges.range(c.def),
                    None,
                )
            })
            .collect();
        let name = s.key.rsplit('.').next().unwrap_or(&s.key).to_string();
        out.push(symbol(
            name,
            detail,
            kind,
            ranges.range(s.decl),
            ranges.range(s.def),
            (!children.is_empty()).then_some(children),
        ));
    }
    out
}
