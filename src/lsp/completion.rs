//! Completion. The place of the cursor is read from the text as it is (it rarely parses while
//! being typed); the names come from the last analysis of the document whose text parsed.
//!
//! - in `{...}` of a string: the names the enclosing workflow (or agent) defines, and after
//!   `name.` the fields of that name's record type;
//! - in `include "...`: the standard library's files and `.orch` files near the document;
//! - in `< >`: the options and the models;
//! - after `model:` / `fallback:` / `provider:`: models, providers; in `tools: [...]`: the
//!   built-in tools, `exec("...")`, `agent(NAME)` for each agent, `SERVER.*` per MCP server;
//! - at the start of a line in a declaration: its fields;
//! - in a workflow: callees (agents and workflows) after `=`, else its names and keywords;
//! - at the top level: the item keywords.

use std::path::Path;

use lsp_types::{CompletionItem, CompletionItemKind};

use super::analysis::{Analysis, SymKind};
use crate::check::types::Type;
use crate::check::workflow::Binding;

/// Where the cursor is, lexically.
#[derive(Debug, PartialEq)]
enum Lex {
    /// In code.
    Code,
    /// In a string, which starts at this byte.
    Str(usize),
    /// In `{...}` of a string; the path typed so far starts at this byte.
    Interp(usize),
    /// In a comment.
    Comment,
}

/// Scans `text[..end]` for strings, interpolations and comments.
fn lex(text: &str, end: usize) -> Lex {
    let b = &text.as_bytes()[..end];
    let mut i = 0;
    let mut state = Lex::Code;
    let mut triple = false;
    while i < b.len() {
        match state {
            Lex::Code => {
                if b[i..].starts_with(b"//") {
                    match b[i..].iter().position(|&c| c == b'\n') {
                        Some(n) => i += n,
                        None => return Lex::Comment,
                    }
                } else if b[i..].starts_with(b"/*") {
                    match crate::syntax::block_comment_end(b, i) {
                        Some(e) => i = e,
                        None => return Lex::Comment,
                    }
                    continue;
                } else if b[i..].starts_with(b"\"\"\"") {
                    triple = true;
                    state = Lex::Str(i);
                    i += 3;
                    continue;
                } else if b[i] == b'"' {
                    triple = false;
                    state = Lex::Str(i);
                }
                i += 1;
            }
            Lex::Str(start) => {
                if b[i] == b'\\' {
                    i += 2;
                    continue;
                }
                if triple && b[i..].starts_with(b"\"\"\"") {
                    state = Lex::Code;
                    i += 3;
                    continue;
                }
                if !triple && (b[i] == b'"' || b[i] == b'\n') {
                    state = Lex::Code;
                } else if b[i..].starts_with(b"{{") {
                    i += 2;
                    continue;
                } else if b[i] == b'{' {
                    state = Lex::Interp(i + 1);
                }
                let _ = start;
                i += 1;
            }
            Lex::Interp(_) => {
                if b[i] == b'}' {
                    // Back in the string; its start is not needed past this point.
                    state = Lex::Str(0);
                }
                i += 1;
            }
            Lex::Comment => unreachable!("returned above"),
        }
    }
    state
}

/// The declaration the cursor is in: the last line before it that starts (at column 0) with
/// an item keyword, with the item's name.
fn enclosing_item(before: &str) -> Option<(&str, &str)> {
    for line in before.lines().rev() {
        let mut words = line.split(|c: char| !(c.is_alphanumeric() || c == '_'));
        let first = words.next().unwrap_or("");
        if matches!(
            first,
            "agent" | "workflow" | "model" | "provider" | "mcp" | "include"
        ) && line.starts_with(first)
        {
            let name = words.find(|w| !w.is_empty()).unwrap_or("");
            return Some((first, name));
        }
    }
    None
}

fn item(label: impl Into<String>, kind: CompletionItemKind, detail: &str) -> CompletionItem {
    CompletionItem {
        label: label.into(),
        kind: Some(kind),
        detail: (!detail.is_empty()).then(|| detail.to_string()),
        ..Default::default()
    }
}

fn symbols(a: &Analysis, kinds: &[SymKind], out: &mut Vec<CompletionItem>) {
    for s in &a.index.symbols {
        if kinds.contains(&s.kind) && s.scope.is_none() {
            let (kind, detail) = match s.kind {
                SymKind::Agent => (CompletionItemKind::FUNCTION, "agent"),
                SymKind::Workflow => (CompletionItemKind::FUNCTION, "workflow"),
                SymKind::Model => (CompletionItemKind::CONSTANT, "model"),
                SymKind::Provider => (CompletionItemKind::MODULE, "provider"),
                SymKind::Mcp => (CompletionItemKind::MODULE, "mcp server"),
                _ => (CompletionItemKind::VARIABLE, ""),
            };
            let mut it = item(s.key.clone(), kind, detail);
            it.documentation = s.doc.clone().map(lsp_types::Documentation::String);
            out.push(it);
        }
    }
}

fn locals(a: &Analysis, scope: &str, out: &mut Vec<CompletionItem>) {
    let mut seen = std::collections::HashSet::new();
    for s in &a.index.symbols {
        if s.scope.as_deref() == Some(scope) && seen.insert(s.key.clone()) {
            let kind = match s.kind {
                SymKind::Param => CompletionItemKind::VARIABLE,
                _ => CompletionItemKind::FIELD,
            };
            let detail = if s.kind == SymKind::Param {
                "parameter"
            } else {
                "step"
            };
            out.push(item(s.key.clone(), kind, detail));
        }
    }
}

fn keywords(words: &[&str], out: &mut Vec<CompletionItem>) {
    for w in words {
        out.push(item(*w, CompletionItemKind::KEYWORD, "keyword"));
    }
}

/// The type of `path` (`plan`, `plan.tasks`) in workflow `wf`.
fn type_of(a: &Analysis, wf: &str, path: &[&str]) -> Option<Type> {
    let wf = a.program.workflows.get(wf)?;
    let (root, fields) = path.split_first()?;
    let mut ty = match wf.bindings.get(*root)? {
        Binding::Node(n) => wf.nodes[*n].output_type.clone().unwrap_or(Type::Text),
        Binding::Param(i) => wf.params[*i].ty.clone(),
        Binding::Group(_) => return None,
    };
    for f in fields {
        ty = ty.field(f)??;
    }
    Some(ty)
}

/// Completions at byte `offset` of `text`; `analysis` is the document's last analysis whose
/// text parsed, `dir` the document's directory (for include paths).
pub fn complete(
    analysis: Option<&Analysis>,
    text: &str,
    offset: usize,
    dir: Option<&Path>,
) -> Vec<CompletionItem> {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
    let enclosing = enclosing_item(before);
    let mut out = Vec::new();
    match lex(text, offset) {
        Lex::Comment => {}
        Lex::Interp(start) => {
            let Some(a) = analysis else { return out };
            let typed = &text[start..offset];
            let parts: Vec<&str> = typed.split('.').collect();
            let scope = match enclosing {
                Some(("agent", name)) => format!("agent:{name}"),
                Some(("workflow", name)) => format!("workflow:{name}"),
                _ => return out,
            };
            if parts.len() == 1 {
                locals(a, &scope, &mut out);
            } else if let Some(wf) = scope.strip_prefix("workflow:")
                && let Some(Type::Record(fields)) = type_of(a, wf, &parts[..parts.len() - 1])
            {
                for (name, ty) in fields {
                    out.push(item(name, CompletionItemKind::FIELD, &ty.to_string()));
                }
            }
        }
        Lex::Str(_) => {
            let trimmed = line.trim_start();
            if trimmed.starts_with("include") {
                include_paths(dir, &mut out);
            }
        }
        Lex::Code => code(analysis, before, line, enclosing, &mut out),
    }
    out
}

fn include_paths(dir: Option<&Path>, out: &mut Vec<CompletionItem>) {
    for (name, _) in crate::resolve::STDLIB {
        out.push(item(*name, CompletionItemKind::FILE, "standard library"));
    }
    let Some(dir) = dir else { return };
    // `.orch` files below the document's directory, at most three levels down and 200 files.
    let mut found = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if p.is_dir() && depth < 3 {
                stack.push((p, depth + 1));
            } else if p.extension().is_some_and(|x| x == "orch")
                && let Ok(rel) = p.strip_prefix(dir)
            {
                found.push(rel.to_string_lossy().into_owned());
            }
            if found.len() >= 200 {
                break;
            }
        }
    }
    found.sort();
    for f in found {
        out.push(item(f, CompletionItemKind::FILE, "file"));
    }
}

fn code(
    analysis: Option<&Analysis>,
    before: &str,
    line: &str,
    enclosing: Option<(&str, &str)>,
    out: &mut Vec<CompletionItem>,
) {
    // The word being typed and what precedes it on the line.
    let word_start = line
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
        .map_or(0, |i| i + 1);
    let prefix = line[..word_start].trim_end();
    let in_angles = match (prefix.rfind('<'), prefix.rfind('>')) {
        (Some(open), Some(close)) => open > close,
        (Some(_), None) => true,
        _ => false,
    };
    let models = |out: &mut Vec<CompletionItem>| {
        if let Some(a) = analysis {
            symbols(a, &[SymKind::Model], out);
        }
    };
    if in_angles {
        for (name, what, example) in crate::syntax::OPTIONS {
            let mut it = item(*name, CompletionItemKind::KEYWORD, what);
            it.documentation = Some(lsp_types::Documentation::String(format!("`{example}`")));
            out.push(it);
        }
        item_list(&["max_turns"], CompletionItemKind::KEYWORD, "option", out);
        models(out);
        return;
    }
    if prefix.ends_with("model:") || prefix.ends_with("fallback:") {
        models(out);
        return;
    }
    if prefix.ends_with("provider:") {
        item_list(
            &["anthropic", "openai", "sim"],
            CompletionItemKind::MODULE,
            "built-in provider",
            out,
        );
        if let Some(a) = analysis {
            symbols(a, &[SymKind::Provider], out);
        }
        return;
    }
    if let Some(tools_at) = before.rfind("tools:")
        && !before[tools_at..].contains(']')
        && before[tools_at..].contains('[')
        && matches!(enclosing, Some(("agent", _)))
    {
        for b in crate::grant::Builtin::ALL {
            out.push(item(
                b.name(),
                CompletionItemKind::FUNCTION,
                "built-in tool",
            ));
        }
        out.push(item(
            format!("{}(\"...\")", crate::grant::EXEC),
            CompletionItemKind::FUNCTION,
            "run a program from an allowlist",
        ));
        if let Some(a) = analysis {
            for s in &a.index.symbols {
                match s.kind {
                    SymKind::Agent => out.push(item(
                        format!("agent({})", s.key),
                        CompletionItemKind::FUNCTION,
                        "delegate to an agent",
                    )),
                    SymKind::Mcp => out.push(item(
                        format!("{}.*", s.key),
                        CompletionItemKind::MODULE,
                        "every tool of the MCP server",
                    )),
                    _ => {}
                }
            }
        }
        return;
    }
    let at_line_start = prefix.is_empty();
    let top_level = line.len() == line.trim_start().len() && at_line_start;
    match enclosing {
        _ if top_level => item_list(
            &["include", "agent", "workflow", "model", "provider", "mcp"],
            CompletionItemKind::KEYWORD,
            "item",
            out,
        ),
        Some(("agent", _)) if at_line_start => {
            let fields = crate::check::items::MODEL_AGENT_FIELDS
                .iter()
                .chain(crate::check::items::COMMAND_AGENT_FIELDS)
                .copied()
                .collect::<std::collections::BTreeSet<_>>();
            for f in fields {
                out.push(item(f, CompletionItemKind::PROPERTY, "agent field"));
            }
        }
        Some(("model", _)) if at_line_start => item_list(
            crate::check::items::MODEL_FIELDS,
            CompletionItemKind::PROPERTY,
            "model field",
            out,
        ),
        Some(("provider", _)) if at_line_start => item_list(
            crate::check::items::PROVIDER_FIELDS,
            CompletionItemKind::PROPERTY,
            "provider field",
            out,
        ),
        Some(("workflow", name)) => {
            let Some(a) = analysis else { return };
            if prefix.ends_with('=') {
                symbols(a, &[SymKind::Agent, SymKind::Workflow], out);
                item_list(
                    &["parallel", "approve"],
                    CompletionItemKind::KEYWORD,
                    "keyword",
                    out,
                );
            } else {
                locals(a, &format!("workflow:{name}"), out);
                if at_line_start {
                    keywords(
                        &[
                            "parallel", "repeat", "if", "else", "return", "gather", "then", "after",
                        ],
                        out,
                    );
                    symbols(a, &[SymKind::Agent, SymKind::Workflow], out);
                }
            }
        }
        _ => {}
    }
}

fn item_list(
    names: &[&str],
    kind: CompletionItemKind,
    detail: &str,
    out: &mut Vec<CompletionItem>,
) {
    for n in names {
        out.push(item(*n, kind, detail));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes_strings_interpolations_and_comments() {
        let t = "a = x(\"hi {req";
        assert_eq!(lex(t, t.len()), Lex::Interp(t.find("req").unwrap()));
        let t = "a = x(\"hi {req} and ";
        assert!(matches!(lex(t, t.len()), Lex::Str(_)));
        let t = "a = x(\"hi\") // {";
        assert_eq!(lex(t, t.len()), Lex::Comment);
        let t = "a = x(\"\"\"\n {{ no\n";
        assert!(matches!(lex(t, t.len()), Lex::Str(_)));
        let t = "a = x(\"hi\")\n";
        assert_eq!(lex(t, t.len()), Lex::Code);
    }

    #[test]
    fn finds_the_enclosing_item() {
        assert_eq!(
            enclosing_item("agent scout {\n  mo"),
            Some(("agent", "scout"))
        );
        assert_eq!(
            enclosing_item("workflow main(x: text) {\n  a = "),
            Some(("workflow", "main"))
        );
        assert_eq!(enclosing_item("  a = b\n"), None);
    }
}
