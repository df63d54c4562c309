//! Hover: what the name under the cursor is. An agent, model or workflow shows its
//! declaration and `///` doc comment; a step shows its type and, when the program has no
//! errors, what the plan makes of it (the agent, model, tier, price, worst-case tokens and
//! cost, from the plan's cost model); a parameter or other name shows its type.

use std::fmt::Write as _;

use super::analysis::{Analysis, SymKind, Symbol};
use crate::check::types::Type;
use crate::check::workflow::Binding;
use crate::plan::render::usd;
use crate::plan::{self, PlanExec};

/// The Markdown hover text for the occurrence at byte `offset` of the entry file, with the
/// span it is about.
pub fn hover(a: &Analysis, offset: usize) -> Option<(String, crate::diag::Span)> {
    let occ = a.occurrence_at(offset)?;
    let sym = &a.index.symbols[occ.sym];
    let text = match sym.kind {
        SymKind::Agent => agent(a, sym),
        SymKind::Model => model(a, sym),
        SymKind::Workflow => {
            let body = workflow_header(a, sym);
            with_doc(format!("```orch\n{body}\n```"), sym)
        }
        SymKind::Provider | SymKind::Mcp => {
            let what = if sym.kind == SymKind::Provider {
                "provider"
            } else {
                "mcp"
            };
            with_doc(format!("```orch\n{what} {}\n```", sym.key), sym)
        }
        SymKind::Param => param(a, sym),
        SymKind::Local => local(a, sym),
    };
    Some((text, occ.span))
}

fn with_doc(mut s: String, sym: &Symbol) -> String {
    if let Some(doc) = &sym.doc {
        s.push_str("\n\n");
        s.push_str(doc);
    }
    s
}

/// The declaration up to its body's `{`.
fn header(a: &Analysis, sym: &Symbol) -> String {
    let text = a.text(sym.decl.file);
    let decl = &text[sym.decl.start as usize..sym.decl.end as usize];
    decl.split('{').next().unwrap_or(decl).trim().to_string()
}

fn workflow_header(a: &Analysis, sym: &Symbol) -> String {
    let text = a.text(sym.decl.file);
    let decl = &text[sym.decl.start as usize..sym.decl.end as usize];
    // The body is the last `{ ... }` of the item; a record type in the signature has braces
    // too, so cut at the brace that opens the first line ending in one.
    let head = decl
        .lines()
        .take_while(|l| !l.trim_end().ends_with('{'))
        .chain(decl.lines().find(|l| l.trim_end().ends_with('{')))
        .collect::<Vec<_>>()
        .join("\n");
    head.trim_end().trim_end_matches('{').trim_end().to_string()
}

fn agent(a: &Analysis, sym: &Symbol) -> String {
    let mut s = format!("```orch\n{}\n```", header(a, sym));
    if let Some(def) = a.program.tables.agents.get(&sym.key) {
        let mut facts = Vec::new();
        match &def.kind {
            crate::check::AgentKind::Model { model, .. } => {
                if let Some(m) = model {
                    facts.push(format!("model `{}`", m.name));
                }
            }
            crate::check::AgentKind::Command { .. } => facts.push("command agent".to_string()),
        }
        if let Some(c) = def.complexity {
            facts.push(format!("complexity {}", format!("{c:?}").to_lowercase()));
        }
        if let Some(r) = def.retry {
            facts.push(format!("retry {r}"));
        }
        if def.tools.is_some() {
            facts.push("runs an agent loop with tools".to_string());
        }
        if !facts.is_empty() {
            let _ = write!(s, "\n\n{}", facts.join(" · "));
        }
    }
    with_doc(s, sym)
}

fn model(a: &Analysis, sym: &Symbol) -> String {
    let mut s = format!("```orch\nmodel {}\n```", sym.key);
    if let Some(m) = a.program.tables.models.get(&sym.key) {
        let _ = write!(s, "\n\nprovider `{}`, id `{}`", m.provider, m.api_name);
        if let Some(t) = m.tier {
            let _ = write!(s, " · tier {}", format!("{t:?}").to_lowercase());
        }
        let _ = write!(
            s,
            "\n\nprice: {} in, {} out per million tokens",
            usd(m.price.input),
            usd(m.price.output)
        );
        if let Some(w) = m.context_window {
            let _ = write!(s, " · context window {w} tokens");
        }
    }
    with_doc(s, sym)
}

fn param(a: &Analysis, sym: &Symbol) -> String {
    let scope = sym.scope.as_deref().unwrap_or("");
    let params = if let Some(k) = scope.strip_prefix("agent:") {
        a.program.tables.agents.get(k).map(|d| &d.params)
    } else {
        let k = scope.strip_prefix("workflow:").unwrap_or(scope);
        a.program.workflows.get(k).map(|w| &w.params)
    };
    let ty = params
        .and_then(|ps| ps.iter().find(|p| p.name == sym.key))
        .map(|p| p.ty.to_string());
    let owner = scope.replace(':', " `") + "`";
    match ty {
        Some(ty) => format!("```orch\n{}: {ty}\n```\n\nparameter of {owner}", sym.key),
        None => format!("```orch\n{}\n```\n\nparameter of {owner}", sym.key),
    }
}

fn local(a: &Analysis, sym: &Symbol) -> String {
    let scope = sym.scope.as_deref().unwrap_or("");
    let wf_key = scope.strip_prefix("workflow:").unwrap_or(scope);
    let Some(wf) = a.program.workflows.get(wf_key) else {
        return format!("```orch\n{}\n```", sym.key);
    };
    match wf.bindings.get(&sym.key) {
        Some(Binding::Node(n)) => {
            let node = &wf.nodes[*n];
            let ty = node
                .output_type
                .as_ref()
                .map_or_else(|| Type::Text.to_string(), Type::to_string);
            let mut s = format!(
                "```orch\n{}: {ty}\n```\n\nstep of workflow `{}`, calls `{}`",
                sym.key, wf.name, node.agent
            );
            if let Some(costs) = step_costs(a, wf_key, node.span) {
                s.push_str("\n\n");
                s.push_str(&costs);
            }
            s
        }
        Some(Binding::Group(_)) => format!(
            "```orch\n{}\n```\n\n`parallel` block of workflow `{}`: a record of its members' outputs",
            sym.key, wf.name
        ),
        Some(Binding::Param(i)) => format!(
            "```orch\n{}: {}\n```\n\nparameter of workflow `{}`",
            sym.key, wf.params[*i].ty, wf.name
        ),
        None => format!("```orch\n{}\n```\n\nin workflow `{}`", sym.key, wf.name),
    }
}

/// What the plan makes of the step at `span`: its model, tier, price, and worst-case tokens
/// and cost (over every run of it when it is inside a loop). `None` when the program has
/// errors (it cannot be planned) or the step is not a model step.
fn step_costs(a: &Analysis, wf_key: &str, span: crate::diag::Span) -> Option<String> {
    if a.diags.has_errors() {
        return None;
    }
    let wf = a.program.workflows.get(wf_key)?;
    let plan = plan::lower(&a.program, wf);
    let node = plan.nodes.iter().find(|n| n.span == span)?;
    let PlanExec::Model {
        model,
        provider,
        max_tokens,
        ..
    } = &node.exec
    else {
        return None;
    };
    let mut s = format!("agent `{}` on model `{model}` ({provider})", node.agent);
    if let Some(m) = a.program.tables.models.get(model) {
        if let Some(t) = m.tier {
            let _ = write!(s, ", tier {}", format!("{t:?}").to_lowercase());
        }
        let _ = write!(
            s,
            "\n\nprice: {} in, {} out per million tokens",
            usd(m.price.input),
            usd(m.price.output)
        );
    }
    let w = node.worst_case;
    let _ = write!(
        s,
        "\n\nworst case: {} ({} input + {} output tokens",
        usd(w.cost_usd),
        w.input_tokens,
        w.output_tokens
    );
    if node.runs > 1 {
        let _ = write!(s, " over {} runs", node.runs);
    }
    let _ = write!(s, "; at most {max_tokens} output tokens per request)");
    if node.retry > 0 {
        let _ = write!(s, " · retry {}", node.retry);
    }
    Some(s)
}
