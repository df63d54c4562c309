//! What the plan computes about its steps: how often each may run, levels, worst-case
//! tokens and cost, the critical path and peak concurrency (see the module doc of
//! [`super`]).

use super::estimate_tokens;
use super::ir::{ListSource, Ref, Template, TemplatePart};
use super::{
    Estimate, NodeId, PlanDelegate, PlanExec, PlanGroup, PlanNode, PlanRegion, PlanRegionKind,
};
use crate::check::Program;
use crate::check::workflow::WorkflowGraph;
use indexmap::IndexMap;

/// Sets each node's `runs` (the product of its regions' bounds) and says what is unbounded.
pub(super) fn count_runs(
    wf: &WorkflowGraph,
    regions: &[PlanRegion],
    nodes: &mut [PlanNode],
) -> Vec<String> {
    let mut notes = Vec::new();
    let factor: Vec<u64> = regions
        .iter()
        .map(|r| match &r.kind {
            PlanRegionKind::Repeat { max, .. } => u64::from(*max),
            PlanRegionKind::For {
                items: Some(n),
                list,
                ..
            } => match list.items {
                // Over agents each body runs once.
                ListSource::Agents(_) => 1,
                _ => *n as u64,
            },
            PlanRegionKind::For { list, .. } => {
                notes.push(format!(
                    "`{}` runs its body once per item of `{}`, known only at run time: the worst case counts one item",
                    wf.nodes[r.node].name,
                    list.source
                ));
                1
            }
            _ => 1,
        })
        .collect();
    for (n, g) in nodes.iter_mut().zip(&wf.nodes) {
        // Nested `repeat`s multiply: saturate rather than overflow.
        n.runs = g
            .regions
            .iter()
            .fold(1u64, |acc, r| acc.saturating_mul(factor[r.region]));
    }
    notes
}

/// The dependencies that order the plan's view (levels, critical path, peak concurrency):
/// a region's steps come after its inputs, and the region after its steps. Computed once per
/// plan and passed to [`assign_levels`], [`critical_path`] and [`peak_concurrency`].
pub(super) fn view_deps(nodes: &[PlanNode], regions: &[PlanRegion]) -> Vec<Vec<NodeId>> {
    let mut deps: Vec<Vec<NodeId>> = nodes.iter().map(|n| n.deps.clone()).collect();
    for r in regions {
        let entry = &nodes[r.node].deps;
        for body in &r.bodies {
            for &m in body {
                deps[m].extend_from_slice(entry);
            }
        }
        deps[r.node].extend_from_slice(&r.members);
    }
    // Duplicates removed once at the end: a region may have a hundred thousand members.
    for d in &mut deps {
        d.sort_unstable();
        d.dedup();
    }
    deps
}

/// Longest-path layering. The graph is acyclic (the checker refused cycles), but a plan of a
/// program with errors may still be built by tools, so cycles are cut rather than looped on.
/// Depth-first with a stack of its own: a long sequence is a chain as deep as it is long.
pub(super) fn assign_levels(nodes: &mut [PlanNode], deps: &[Vec<NodeId>]) {
    let n = nodes.len();
    let mut level = vec![0usize; n];
    let mut state = vec![0u8; n]; // 0 new, 1 visiting, 2 done
    // (node, index of the next dependency to visit)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if state[root] != 0 {
            continue;
        }
        state[root] = 1;
        stack.push((root, 0));
        while let Some(&(i, next)) = stack.last() {
            if let Some(&d) = deps[i].get(next) {
                stack.last_mut().expect("not empty").1 += 1;
                if state[d] == 0 {
                    state[d] = 1;
                    stack.push((d, 0));
                }
                continue;
            }
            // A dependency still being visited closes a cycle: it is cut there (counts 0).
            let highest = deps[i]
                .iter()
                .map(|&d| if state[d] == 2 { level[d] } else { 0 })
                .max()
                .unwrap_or(0);
            level[i] = highest + 1;
            state[i] = 2;
            stack.pop();
        }
    }
    for (node, l) in nodes.iter_mut().zip(level) {
        node.level = l;
    }
}

pub(super) fn estimate_costs(
    program: &Program,
    wf: &WorkflowGraph,
    nodes: &mut [PlanNode],
    delegates: &IndexMap<String, PlanDelegate>,
) {
    // Worst-case output of each node, for the nodes that interpolate it.
    let out_bound: Vec<u64> = nodes
        .iter()
        .map(|n| match &n.exec {
            PlanExec::Model { max_tokens, .. } => u64::from(*max_tokens),
            _ => 0,
        })
        .collect();
    for node in nodes.iter_mut() {
        node.prompt_tokens = prompt_tokens(wf, node, &out_bound);
        let once = worst_case(program, node, delegates);
        let runs = node.runs;
        node.worst_case = Estimate {
            input_tokens: once.input_tokens.saturating_mul(runs),
            output_tokens: once.output_tokens.saturating_mul(runs),
            cost_usd: once.cost_usd * runs as f64,
        };
    }
}

/// Worst-case input of one request of a model step (0 for other steps): the literal text of
/// its system text and prompt plus every interpolated step output at its bound.
fn prompt_tokens(wf: &WorkflowGraph, node: &PlanNode, out_bound: &[u64]) -> u64 {
    let PlanExec::Model { system, .. } = &node.exec else {
        return 0;
    };
    let mut input = system.as_ref().map_or(0, literal_tokens);
    input = input.saturating_add(node.prompt.as_ref().map_or(0, literal_tokens));
    for i in node.prompt.iter().flat_map(Template::interps) {
        input = input.saturating_add(match i.target {
            Ref::Node(m) | Ref::Member(m) => out_bound[m],
            // Each branch renders under a `## name` heading: about 4 more tokens.
            Ref::Group(g) => wf.groups[g]
                .members
                .iter()
                .fold(0u64, |acc, m| acc.saturating_add(out_bound[*m] + 4)),
            Ref::Param(_) | Ref::Arg(_) | Ref::Unbound => 0,
        });
    }
    input
}

/// Worst case of one step: every attempt (and as many on the fallback) sends its
/// [`PlanNode::prompt_tokens`] and receives `max_tokens`. A step with tools does so for every
/// turn of its agent loop, with the context growing by each turn
/// ([`super::tools::loop_tokens`]), plus its delegations ([`super::tools::delegations`]).
fn worst_case(
    program: &Program,
    node: &PlanNode,
    delegates: &IndexMap<String, PlanDelegate>,
) -> Estimate {
    let PlanExec::Model {
        model,
        fallback,
        max_tokens,
        tools,
        ..
    } = &node.exec
    else {
        return Estimate::default();
    };
    let input = node.prompt_tokens;
    let (input, output) = match tools {
        Some(t) => super::tools::loop_tokens(input, u64::from(*max_tokens), t),
        None => (input, u64::from(*max_tokens)),
    };
    let attempts = u64::from(node.retry) + 1;
    let mut e = super::tools::priced(
        program,
        model,
        fallback.as_deref(),
        input.saturating_mul(attempts),
        output.saturating_mul(attempts),
    );
    if node.batch.is_some() {
        // The first attempt on the step's own model goes in a batch, at the batch price;
        // retries and the fallback are ordinary requests.
        let first = super::tools::priced(program, model, None, input, output);
        e.cost_usd -= first.cost_usd * (1.0 - crate::common::BATCH_PRICE_FACTOR);
    }
    if let Some(t) = tools {
        e += super::tools::delegations(t, delegates);
    }
    e
}

fn literal_tokens(t: &Template) -> u64 {
    t.parts()
        .iter()
        .map(|p| match p {
            TemplatePart::Text(s) => estimate_tokens(s),
            TemplatePart::Interp(_) => 0,
        })
        .sum()
}

pub(super) fn critical_path(nodes: &[PlanNode], deps: &[Vec<NodeId>]) -> Vec<NodeId> {
    // Nodes sorted by level are in topological order.
    let mut order: Vec<NodeId> = (0..nodes.len()).collect();
    order.sort_by_key(|&i| nodes[i].level);
    let mut best: Vec<(usize, f64, Option<NodeId>)> = vec![(0, 0.0, None); nodes.len()];
    for &i in &order {
        let mut b = (1, nodes[i].worst_case.cost_usd, None);
        for &d in &deps[i] {
            let cand = (
                best[d].0 + 1,
                best[d].1 + nodes[i].worst_case.cost_usd,
                Some(d),
            );
            if cand.0 > b.0 || (cand.0 == b.0 && cand.1 > b.1) {
                b = cand;
            }
        }
        best[i] = b;
    }
    let Some(mut end) = (0..nodes.len()).max_by(|&a, &b| {
        (best[a].0, best[a].1)
            .partial_cmp(&(best[b].0, best[b].1))
            .unwrap_or(std::cmp::Ordering::Equal)
    }) else {
        return Vec::new();
    };
    let mut path = vec![end];
    while let Some(p) = best[end].2 {
        path.push(p);
        end = p;
    }
    path.reverse();
    path
}

/// Unit-time list scheduling: each round starts every ready step that its blocks' `max N`
/// allow, in step order; the answer is the largest round. Steps become ready when their last
/// dependency finishes, so a round costs the steps ready in it, not every step.
pub(super) fn peak_concurrency(
    nodes: &[PlanNode],
    groups: &[PlanGroup],
    deps: &[Vec<NodeId>],
) -> usize {
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<NodeId>> = vec![Vec::new(); nodes.len()];
    for n in nodes {
        for &d in &deps[n.id] {
            dependents[d].push(n.id);
        }
    }
    let mut ready: Vec<NodeId> = (0..nodes.len()).filter(|&i| waiting[i] == 0).collect();
    let mut in_group = vec![0u32; groups.len()];
    let mut peak = 0;
    while !ready.is_empty() {
        let mut started = Vec::new();
        let mut next = Vec::new();
        for &i in &ready {
            let fits = nodes[i]
                .groups
                .iter()
                .all(|&g| groups[g].max.is_none_or(|m| in_group[g] < m));
            if fits {
                for &g in &nodes[i].groups {
                    in_group[g] += 1;
                }
                started.push(i);
            } else {
                next.push(i);
            }
        }
        if started.is_empty() {
            break;
        }
        // Regions and `for` items are not calls of their own.
        let calls = started
            .iter()
            .filter(|&&i| {
                matches!(
                    nodes[i].exec,
                    PlanExec::Model { .. } | PlanExec::Command { .. }
                )
            })
            .count();
        peak = peak.max(calls);
        for &s in &started {
            for &g in &nodes[s].groups {
                in_group[g] = 0;
            }
            for &t in &dependents[s] {
                waiting[t] -= 1;
                if waiting[t] == 0 {
                    next.push(t);
                }
            }
        }
        next.sort_unstable();
        ready = next;
    }
    peak
}
