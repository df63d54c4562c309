//! Lints over checked workflows and the loaded files: what is legal but probably not meant.
//!
//! They run after every workflow is lowered, so they see the whole DAG:
//! - `W0404 complexity-tier-mismatch`: a `deep` model on a `low` task, a `fast` one on a `high`;
//! - `W0507 single-branch-parallel`: a `parallel` block with one branch runs nothing in parallel;
//! - `W0801 unused-output`: a model step whose output nothing reads (it still runs and costs);
//! - `W0802 parallelizable-sequence`: consecutive model steps that do not use each other,
//!   with the `parallel { }` rewrite as the fix;
//! - `W0105 duplicate-include`: a file includes the same file twice;
//! - `E0601 literal-api-key`: something shaped like an API key anywhere in a file.
//!
//! The budget lint (`W0803`) and the context-window lint (`W0804`) need the plan's cost model
//! and live in the plan stage (`plan::budget`, `plan::window`).

use std::collections::HashSet;
use std::path::{Path as FsPath, PathBuf};

use super::error::{
    ComplexityTierMismatch, DuplicateInclude, LiteralApiKey, ParallelizableSequence,
    SingleBranchParallel, UnusedOutput,
};
use super::workflow::{DepKind, Exec, NodeId, RegionKind, WorkflowGraph};
use super::{AgentKind, Complexity, Program, Tier};
use crate::diag::{Code, Diagnostics, SourceMap, Span};
use crate::resolve::{ModuleSet, normalize};
use crate::syntax::ast;
use crate::syntax::ast::ValueKind;

/// Runs every lint of this module.
/// The workflow lints need a program without errors (a DAG with holes makes every step look
/// unused); the file-level ones always run.
pub fn lint(set: &ModuleSet, program: &Program, diags: &mut Diagnostics) {
    duplicate_includes(set, diags);
    literal_secrets(&program.sources, diags);
    if diags.has_errors() {
        return;
    }
    for wf in program.workflows.values() {
        complexity_vs_tier(program, wf, diags);
        single_branch_parallel(wf, diags);
        unused_outputs(wf, diags);
        parallelizable_sequences(&program.sources, wf, diags);
    }
}

// ------------------------------------------------------------------ W0404

fn complexity_vs_tier(program: &Program, wf: &WorkflowGraph, diags: &mut Diagnostics) {
    // A mismatch that comes from an agent's own pin is reported once, at the pin.
    let mut pins_reported: HashSet<&str> = HashSet::new();
    for n in &wf.nodes {
        let Exec::Model { model, .. } = &n.exec else {
            continue;
        };
        let (Some(agent), Some(m)) = (
            program.tables.agents.get(&n.agent),
            program.tables.models.get(model),
        ) else {
            continue;
        };
        let (Some(c), Some(tier)) = (agent.complexity, m.tier) else {
            continue;
        };
        let wanted = match (c, tier) {
            (Complexity::Low, Tier::Deep) => Tier::Fast,
            (Complexity::High, Tier::Fast) => Tier::Deep,
            _ => continue,
        };
        let pin = match &agent.kind {
            AgentKind::Model { model: Some(p), .. } if p.name == *model => Some(p.span),
            _ => None,
        };
        let from_pin = pin.is_some();
        if from_pin && !pins_reported.insert(agent.name.as_str()) {
            continue;
        }
        let better = program
            .tables
            .models
            .values()
            .find(|m| m.tier == Some(wanted))
            .map(|m| m.name.clone());
        let field = agent
            .field_spans
            .get("complexity")
            .copied()
            .unwrap_or(agent.name_span);
        diags.push(
            ComplexityTierMismatch {
                at: match (from_pin, pin) {
                    (true, Some(pin_span)) => pin_span,
                    _ => n.callee_span,
                },
                agent: n.agent.clone(),
                step: (!from_pin).then(|| n.name.clone()),
                complexity: c,
                field,
                model: model.clone(),
                tier,
                wanted,
                better,
            }
            .into(),
        );
    }
}

// ------------------------------------------------------------------ W0507

fn single_branch_parallel(wf: &WorkflowGraph, diags: &mut Diagnostics) {
    for g in wf.groups.iter().filter(|g| g.branches.len() == 1) {
        diags.push(
            SingleBranchParallel::OneBranch {
                at: g.span,
                name: g.name.clone(),
            }
            .into(),
        );
    }
}

// ------------------------------------------------------------------ W0801

/// Steps whose output nothing reads. Only when the workflow has a `return`: without one, every
/// step that nothing depends on is part of the result. Command steps are skipped: they run for
/// their effects (tests, deploys), not only for their output.
fn unused_outputs(wf: &WorkflowGraph, diags: &mut Diagnostics) {
    let Some(ret) = &wf.output else {
        return;
    };
    let mut used = vec![false; wf.nodes.len()];
    for n in &wf.nodes {
        for d in n.deps.iter().filter(|d| d.kind != DepKind::Order) {
            used[d.node] = true;
        }
        if let Some(j) = n.join {
            for &m in &wf.groups[j.group].members {
                used[m] = true;
            }
        }
    }
    for p in ret.interps() {
        for m in wf.referenced_nodes(p) {
            used[m] = true;
        }
    }
    // Regions read their steps: a `for` collects its results, `until` reads the body, and
    // names a `repeat` or `if` exports are read through the region.
    for r in &wf.regions {
        match &r.kind {
            RegionKind::For { results, .. } => {
                for &n in results {
                    used[n] = true;
                }
            }
            RegionKind::Repeat { until, .. } => {
                for v in until.operands() {
                    if let ValueKind::Path(p) = &v.kind {
                        for m in wf.referenced_nodes(p) {
                            used[m] = true;
                        }
                    }
                }
            }
            RegionKind::If { .. } | RegionKind::Call { .. } => {}
        }
    }
    // `return x` reads `x` of whichever branch ran. An `else if` is an `if` nested in the
    // `else` branch, whose exports hold the nested `if`'s first definition only: repeat until
    // nothing changes, so a use reaches every branch of a chain however deep.
    let mut changed = true;
    while changed {
        changed = false;
        for r in &wf.regions {
            for nodes in r.exports.values() {
                if (used[r.node] || nodes.iter().any(|&n| used[n]))
                    && nodes.iter().any(|&n| !used[n])
                {
                    for &n in nodes {
                        used[n] = true;
                    }
                    changed = true;
                }
            }
        }
    }
    // A call's steps are the pattern's; the pattern is linted on its own.
    let in_call: Vec<bool> = wf
        .nodes
        .iter()
        .map(|n| {
            n.regions
                .iter()
                .any(|x| matches!(wf.regions[x.region].kind, RegionKind::Call { .. }))
        })
        .collect();
    for n in wf.nodes.iter().filter(|n| !used[n.id] && !in_call[n.id]) {
        if !matches!(n.exec, Exec::Model { .. }) {
            continue;
        }
        let name_span = Span {
            end: n.span.start + n.name.len() as u32,
            ..n.span
        };
        diags.push(
            UnusedOutput {
                at: name_span,
                step: n.name.clone(),
            }
            .into(),
        );
    }
}

// ------------------------------------------------------------------ W0802

/// Consecutive model steps of a sequence where none uses another: they could be one
/// `parallel` block. Command steps end a stretch, since their order may matter for their
/// effects even without data between them.
fn parallelizable_sequences(sources: &SourceMap, wf: &WorkflowGraph, diags: &mut Diagnostics) {
    for run in &wf.sequences {
        let mut chunk: Vec<NodeId> = Vec::new();
        for &n in run {
            let node = &wf.nodes[n];
            let is_model = matches!(node.exec, Exec::Model { .. });
            let uses_chunk = node
                .deps
                .iter()
                .any(|d| d.kind != DepKind::Order && chunk.contains(&d.node));
            if !is_model || uses_chunk {
                report_chunk(sources, wf, &chunk, diags);
                chunk.clear();
            }
            if is_model {
                chunk.push(n);
            }
        }
        report_chunk(sources, wf, &chunk, diags);
    }
}

fn report_chunk(
    sources: &SourceMap,
    wf: &WorkflowGraph,
    chunk: &[NodeId],
    diags: &mut Diagnostics,
) {
    let (Some(&first), Some(&last)) = (chunk.first(), chunk.last()) else {
        return;
    };
    if chunk.len() < 2 {
        return;
    }
    let span = wf.nodes[first].span.to(wf.nodes[last].span);
    // Only white space between the steps: the rewrite loses nothing.
    let between_blank = chunk.windows(2).all(|w| {
        let (a, b) = (wf.nodes[w[0]].span, wf.nodes[w[1]].span);
        a.file == b.file
            && a.end <= b.start
            && sources
                .snippet(Span::new(a.file, a.end as usize, b.start as usize))
                .trim()
                .is_empty()
    });
    let text = &sources.get(span.file).text;
    let line_start = text[..span.start as usize].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..span.start as usize];
    let indent = (between_blank && before.trim().is_empty()).then(|| before.to_string());
    diags.push(
        ParallelizableSequence {
            at: span,
            steps: chunk.iter().map(|&n| wf.nodes[n].name.clone()).collect(),
            sources: chunk
                .iter()
                .map(|&n| sources.snippet(wf.nodes[n].span).to_string())
                .collect(),
            indent,
        }
        .into(),
    );
}

// ------------------------------------------------------------------ W0105

/// The same path included twice by one file. (Two files including a third is normal: it is
/// loaded once.)
fn duplicate_includes(set: &ModuleSet, diags: &mut Diagnostics) {
    for m in &set.modules {
        let mut seen: Vec<(PathBuf, Span)> = Vec::new();
        for item in &m.module.items {
            let ast::Item::Include(inc) = item else {
                continue;
            };
            let key = normalize(FsPath::new(&inc.path));
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                diags.push(
                    DuplicateInclude {
                        at: inc.span,
                        path: inc.path.clone(),
                        first: *first,
                    }
                    .into(),
                );
            } else {
                seen.push((key, inc.span));
            }
        }
    }
}

// ------------------------------------------------------------------ E0601

/// Reports text shaped like an API key anywhere in a file
/// ([`crate::redact::find_key_shapes`]: the shapes the runtime redacts). A key already reported as an `api_key` field is not repeated.
fn literal_secrets(sources: &SourceMap, diags: &mut Diagnostics) {
    let reported: HashSet<(u32, u32, u32)> = diags
        .iter()
        .filter(|d| d.code == Code::LiteralApiKey)
        .map(|d| {
            (
                d.primary.span.file.0,
                d.primary.span.start,
                d.primary.span.end,
            )
        })
        .collect();
    let mut found = Vec::new();
    for (id, file) in sources.files() {
        for (start, end) in crate::redact::find_key_shapes(&file.text) {
            let span = Span::new(id, start, end);
            let covered = reported
                .iter()
                .any(|&(f, s, e)| f == id.0 && s <= span.start && span.end <= e);
            if !covered {
                found.push(span);
            }
        }
    }
    for span in found {
        diags.push(LiteralApiKey::KeyShaped { at: span }.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_keys_normalise_dots() {
        let key = |p: &str| normalize(FsPath::new(p));
        assert_eq!(key("./lib/a.orch"), key("lib/a.orch"));
        assert_eq!(key("lib/../a.orch"), PathBuf::from("a.orch"));
        assert_eq!(key("../a.orch"), PathBuf::from("../a.orch"));
        assert_eq!(key("../../a.orch"), PathBuf::from("../../a.orch"));
    }

    fn diagnostics(src: &str) -> Vec<crate::diag::Diagnostic> {
        let opts = crate::resolve::ResolveOptions::default();
        let (_, diags) = crate::compile_source("t.orch", src, FsPath::new("."), &opts);
        diags.into_vec()
    }

    const HEAD: &str = "model m { provider: sim, name: \"m\" }\nagent a { model: m }\n";

    #[test]
    fn independent_steps_carry_their_parallel_rewrite() {
        let body = "workflow main() {\n    x = a(\"one\")\n    y = a(\n      \"two\")\n    return \"{x}{y}\"\n}\n";
        let src = format!("{HEAD}{body}");
        let d = diagnostics(&src);
        let w = d
            .iter()
            .find(|d| d.code == Code::ParallelizableSequence)
            .expect("W0802");
        let at = w.primary.span;
        let rewritten = format!(
            "{}{}{}",
            &src[..at.start as usize],
            w.replacement.as_deref().expect("a rewrite"),
            &src[at.end as usize..]
        );
        assert!(
            rewritten.contains(
                "    parallel {\n      x = a(\"one\")\n      y = a(\n        \"two\")\n    }\n    return"
            ),
            "{rewritten}"
        );
        assert!(
            diagnostics(&rewritten).is_empty(),
            "{:?}",
            diagnostics(&rewritten)
        );
        // A comment between the steps would be lost: no rewrite then.
        let commented = src.replace("    y = a(", "    // keep\n    y = a(");
        let d = diagnostics(&commented);
        let w = d.iter().find(|d| d.code == Code::ParallelizableSequence);
        assert_eq!(w.map(|w| w.replacement.is_none()), Some(true));
    }

    #[test]
    fn did_you_mean_replaces_the_primary_span() {
        let src = format!(
            "{HEAD}agent scout {{ model: m }}\nworkflow main() {{\n  x = scuot(\"hi\")\n  return x\n}}\n"
        );
        let d = diagnostics(&src);
        let e = d
            .iter()
            .find(|d| d.code == Code::UnknownAgent)
            .expect("E0202");
        assert_eq!(
            &src[e.primary.span.start as usize..e.primary.span.end as usize],
            "scuot"
        );
        assert_eq!(e.replacement.as_deref(), Some("scout"));
    }
}
