//! Bounds on expanding calls (docs/language.md, "Reusable patterns"; E0304).
//!
//! Calls are expanded when a workflow is lowered: the called body is copied into the caller.
//! A chain of calls is as deep as it is long, and a workflow that calls another twice, which
//! calls another twice, doubles at each level, so without bounds a short script could ask
//! for more steps, memory and stack than any machine has. Lowering stops at the first bound
//! it reaches; the workflow is then reported once (E0304) with the chain of calls that got
//! there, and its graph is left empty.
//!
//! Every workflow is lowered on its own too. So that a limit is reported once and found
//! fast, callees are lowered before their callers ([`lowering_order`]), a call of a workflow
//! that already reached a limit reaches it at once ([`Expansion::hits`]), and of the
//! workflows that reach one, only those that no other such workflow calls are reported
//! ([`reported_limits`]).

use std::collections::HashMap;

use indexmap::IndexMap;

use super::{Lowerer, Node, NodeId};
use crate::check::Tables;
use crate::check::error::{Bound, ExpansionTooLarge};
use crate::diag::{Diagnostic, Span};
use crate::syntax::ast::{self, Stmt};

/// The most calls nested in one another, counted from the workflow being lowered: 64. Real
/// patterns call one or two levels deep; the bound keeps the expansion, and the stack of the
/// functions that walk it, small.
pub const MAX_CALL_DEPTH: usize = 64;

/// The most statements nested in one another in a workflow once its calls are expanded:
/// 128. One file nests at most [`crate::syntax::MAX_NESTING`] levels; calls add theirs up.
/// Lowering recurses once per level, a few kilobytes of stack each in a debug build, so this
/// keeps it well inside the 2 MiB of a spawned thread.
pub const MAX_NESTING_DEPTH: usize = 128;

/// The most nodes of one workflow once its calls are expanded: 100,000 (steps, plus one node
/// per call, `parallel for`, `repeat`, `if` and `for` variable). A large real workflow has
/// hundreds; the benchmark's 10,000-step script is checked in tens of milliseconds.
pub const MAX_EXPANDED_STEPS: usize = 100_000;

/// The most nodes of all workflows of a program together, each with its calls expanded:
/// 400,000. Each workflow is checked on its own, so many workflows that each call a large
/// pattern would otherwise each hold a copy of it (a node takes about a kilobyte).
pub const MAX_PROGRAM_STEPS: usize = 400_000;

/// Which bound was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`MAX_CALL_DEPTH`].
    CallDepth,
    /// [`MAX_NESTING_DEPTH`].
    Nesting,
    /// [`MAX_EXPANDED_STEPS`].
    Steps,
    /// [`MAX_PROGRAM_STEPS`].
    ProgramSteps,
}

/// Where lowering a workflow stopped at a bound.
#[derive(Debug, Clone)]
pub struct LimitHit {
    /// Which bound.
    pub limit: Limit,
    /// The workflow being lowered.
    pub workflow: String,
    /// The calls from it to the place of the bound: each workflow called and its call.
    pub chain: Vec<(String, Span)>,
    /// The statement or call where the bound was passed.
    pub at: Span,
}

/// What lowering the workflows of a program shares: the limits reached so far and the
/// nodes made so far.
#[derive(Debug, Default)]
pub struct Expansion {
    /// Workflows (by table key) whose expansion reached a bound.
    pub hits: HashMap<String, LimitHit>,
    /// The number of nodes of each workflow lowered without reaching one: a call of it adds
    /// at least as many.
    pub sizes: HashMap<String, usize>,
    /// Nodes of every workflow lowered so far.
    pub steps: usize,
    /// [`MAX_PROGRAM_STEPS`] was passed: the remaining workflows are not lowered.
    pub exhausted: bool,
}

impl Lowerer<'_> {
    /// Stops lowering at bound `limit`, passed at `at` (the first bound only). `calls` are
    /// the calls that lead there beyond the ones being expanded: the call refused, and the
    /// chain that made its callee reach a bound.
    fn stop(&mut self, limit: Limit, at: Span, calls: Vec<(String, Span)>) {
        if self.limit.is_none() {
            let mut chain = self.call_stack[1..].to_vec();
            chain.extend(calls);
            chain.truncate(MAX_CALL_DEPTH + 1);
            self.limit = Some(LimitHit {
                limit,
                workflow: self.call_stack[0].0.clone(),
                chain,
                at,
            });
        }
    }

    /// Stops lowering at bound `limit`, passed at statement `at`.
    pub(super) fn reach(&mut self, limit: Limit, at: Span) {
        self.stop(limit, at, Vec::new());
    }

    /// Adds a node, stopping at [`MAX_EXPANDED_STEPS`] and [`MAX_PROGRAM_STEPS`].
    pub(super) fn push_node(&mut self, node: Node) -> NodeId {
        let id = self.g.nodes.len();
        let span = node.span;
        self.g.nodes.push(node);
        if id + 1 > MAX_EXPANDED_STEPS {
            self.reach(Limit::Steps, span);
        } else if self.known.steps + id + 1 > MAX_PROGRAM_STEPS {
            self.reach(Limit::ProgramSteps, span);
        }
        id
    }

    /// Before expanding a call of `key` at `span`: stops when the call is nested too deep,
    /// when `key` reached a bound already, or when its known size cannot fit; returns whether
    /// to expand it.
    pub(super) fn may_expand(&mut self, key: &str, span: Span) -> bool {
        let call = (key.to_string(), span);
        if self.call_stack.len() > MAX_CALL_DEPTH {
            // The chain ends with this call, the one too many.
            self.stop(Limit::CallDepth, span, vec![call]);
            return false;
        }
        if let Some(known) = self.known.hits.get(key) {
            // The callee's own expansion reached a bound: so does this one, through it.
            let calls: Vec<_> = std::iter::once(call)
                .chain(known.chain.iter().cloned())
                .collect();
            let at = match known.limit {
                Limit::CallDepth => {
                    // The call too many, counted from this workflow.
                    let depth = self.call_stack.len() - 1;
                    calls
                        .get(MAX_CALL_DEPTH.saturating_sub(depth))
                        .map_or(known.at, |(_, s)| *s)
                }
                _ => known.at,
            };
            self.stop(known.limit, at, calls);
            return false;
        }
        let Some(&size) = self.known.sizes.get(key) else {
            return true;
        };
        // Stop before copying a callee that cannot fit.
        let after = self.g.nodes.len() + size;
        if after > MAX_EXPANDED_STEPS {
            self.stop(Limit::Steps, span, vec![call]);
            false
        } else if self.known.steps + after > MAX_PROGRAM_STEPS {
            self.stop(Limit::ProgramSteps, span, vec![call]);
            false
        } else {
            true
        }
    }
}

impl LimitHit {
    /// The E0304 error.
    pub fn diagnostic(&self) -> Diagnostic {
        // The primary is the first call of the chain (what the reported workflow can change),
        // or where the bound was passed when no call led there; a chain too deep is shown at
        // its call too many.
        let primary = match self.limit {
            Limit::CallDepth => self.at,
            _ => self.chain.first().map_or(self.at, |(_, s)| *s),
        };
        ExpansionTooLarge {
            at: primary,
            bound: match self.limit {
                Limit::CallDepth => Bound::CallDepth(MAX_CALL_DEPTH),
                Limit::Nesting => Bound::Nesting(MAX_NESTING_DEPTH),
                Limit::Steps => Bound::Steps(MAX_EXPANDED_STEPS),
                Limit::ProgramSteps => Bound::ProgramSteps(MAX_PROGRAM_STEPS),
            },
            workflow: self.workflow.clone(),
            path: self.path(),
            has_chain: !self.chain.is_empty(),
            first_call: self.chain.first().filter(|(_, s)| *s != primary).cloned(),
            passed_at: (self.at != primary).then_some(self.at),
        }
        .into()
    }

    /// The chain of calls as `` `main` → `a` → … → `z` ``, with its middle left out when long.
    fn path(&self) -> String {
        const ENDS: usize = 4;
        let names: Vec<String> = std::iter::once(&self.workflow)
            .chain(self.chain.iter().map(|(w, _)| w))
            .map(|w| format!("`{w}`"))
            .collect();
        if names.len() <= 2 * ENDS + 1 {
            return names.join(" → ");
        }
        let mut shown = names[..ENDS].to_vec();
        shown.push("…".to_string());
        shown.extend(names[names.len() - ENDS..].iter().cloned());
        shown.join(" → ")
    }
}

/// The workflows (by table key) in an order where a workflow comes after the ones it calls,
/// as far as the calls can be told from the names alone (a callee that names a workflow and
/// no agent); ties and cycles keep source order. Depth-first with a stack of its own: a
/// chain of calls is as deep as it is long.
pub fn lowering_order(
    workflows: &IndexMap<String, &ast::Workflow>,
    tables: &Tables,
) -> Vec<String> {
    let callees: Vec<Vec<usize>> = workflows
        .values()
        .map(|wf| {
            let mut out = Vec::new();
            let mut blocks = vec![&wf.body];
            while let Some(b) = blocks.pop() {
                for st in &b.stmts {
                    match st {
                        Stmt::Step(s) => {
                            let key = tables.lookup(&s.callee, |k| workflows.contains_key(k));
                            let agent = tables.lookup(&s.callee, |k| tables.agents.contains_key(k));
                            if let (Some(k), None) = (key, agent) {
                                out.extend(workflows.get_index_of(&k));
                            }
                        }
                        Stmt::Then(b) => blocks.push(b),
                        Stmt::Parallel(p) => blocks.push(&p.body),
                        Stmt::Repeat(r) => blocks.push(&r.body),
                        Stmt::If(i) => {
                            blocks.push(&i.then);
                            blocks.extend(i.otherwise.iter());
                        }
                        Stmt::Gather(_) | Stmt::Return(_) => {}
                    }
                }
            }
            out
        })
        .collect();
    let mut order = Vec::with_capacity(workflows.len());
    let mut state = vec![0u8; workflows.len()]; // 0 new, 1 on the stack, 2 placed
    for root in 0..workflows.len() {
        if state[root] != 0 {
            continue;
        }
        state[root] = 1;
        let mut stack = vec![(root, 0usize)];
        while let Some(&(w, next)) = stack.last() {
            if let Some(&c) = callees[w].get(next) {
                stack.last_mut().expect("not empty").1 += 1;
                if state[c] == 0 {
                    state[c] = 1;
                    stack.push((c, 0));
                }
                continue;
            }
            state[w] = 2;
            order.push(w);
            stack.pop();
        }
    }
    order
        .into_iter()
        .map(|i| workflows.get_index(i).expect("an index").0.clone())
        .collect()
}

/// The E0304 errors to report: of the workflows that reached a bound, those that no other
/// such workflow calls (its report shows the chain through them); in a cycle of such
/// workflows, the first lowered. `calls` are the workflows each calls directly.
pub fn reported_limits(
    hits: &IndexMap<String, LimitHit>,
    calls: &HashMap<String, Vec<String>>,
) -> Vec<Diagnostic> {
    use petgraph::graph::DiGraph;
    // A program bound is reported by whichever workflow passed it (the ones after it are
    // not lowered); the others by the workflows at the top of their chains.
    let mut out: Vec<Diagnostic> = hits
        .values()
        .filter(|h| h.limit == Limit::ProgramSteps)
        .map(LimitHit::diagnostic)
        .collect();
    let local: Vec<&LimitHit> = hits
        .values()
        .filter(|h| h.limit != Limit::ProgramSteps)
        .collect();
    let position = |w: &str| local.iter().position(|h| h.workflow == w);
    let mut graph: DiGraph<usize, ()> = DiGraph::new();
    let idx: Vec<_> = (0..local.len()).map(|i| graph.add_node(i)).collect();
    for (i, h) in local.iter().enumerate() {
        for c in calls.get(&h.workflow).into_iter().flatten() {
            if let Some(j) = position(c)
                && j != i
            {
                graph.add_edge(idx[i], idx[j], ());
            }
        }
    }
    let sccs = petgraph::algo::tarjan_scc(&graph);
    let mut component = vec![0usize; local.len()];
    for (k, scc) in sccs.iter().enumerate() {
        for n in scc {
            component[graph[*n]] = k;
        }
    }
    for (k, scc) in sccs.iter().enumerate() {
        let called_from_outside = scc.iter().any(|n| {
            graph
                .neighbors_directed(*n, petgraph::Direction::Incoming)
                .any(|m| component[graph[m]] != k)
        });
        if called_from_outside {
            continue;
        }
        if let Some(first) = scc.iter().map(|n| graph[*n]).min() {
            out.push(local[first].diagnostic());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::FileId;

    fn hit(w: &str, limit: Limit, chain: &[&str]) -> LimitHit {
        let at = Span::new(FileId(0), 0, 1);
        LimitHit {
            limit,
            workflow: w.to_string(),
            chain: chain.iter().map(|c| (c.to_string(), at)).collect(),
            at,
        }
    }

    fn reported(hits: &[LimitHit], calls: &[(&str, &[&str])]) -> Vec<String> {
        let hits: IndexMap<String, LimitHit> = hits
            .iter()
            .map(|h| (h.workflow.clone(), h.clone()))
            .collect();
        let calls = calls
            .iter()
            .map(|(w, cs)| (w.to_string(), cs.iter().map(|c| c.to_string()).collect()))
            .collect();
        let mut out: Vec<String> = reported_limits(&hits, &calls)
            .into_iter()
            .map(|d| d.message)
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_bound_is_reported_at_the_tops_of_its_chains_only() {
        // `main` and `other` call `a`, which calls `b`: all three passed the step bound.
        let hits = [
            hit("b", Limit::Steps, &[]),
            hit("a", Limit::Steps, &["b"]),
            hit("main", Limit::Steps, &["a", "b"]),
            hit("other", Limit::Steps, &["a", "b"]),
        ];
        let calls: &[(&str, &[&str])] = &[("main", &["a"]), ("other", &["a"]), ("a", &["b"])];
        assert_eq!(
            reported(&hits, calls),
            [
                "workflow `main` expands to more than 100000 steps, through `main` → `a` → `b`",
                "workflow `other` expands to more than 100000 steps, through `other` → `a` → `b`",
            ]
        );
    }

    #[test]
    fn a_cycle_of_workflows_past_a_bound_is_reported_once() {
        // `x` and `y` call each other (recursion, reported apart) and both call `deep`.
        let hits = [
            hit("deep", Limit::Nesting, &[]),
            hit("x", Limit::Nesting, &["deep"]),
            hit("y", Limit::Nesting, &["x", "deep"]),
        ];
        let calls: &[(&str, &[&str])] = &[("x", &["y", "deep"]), ("y", &["x", "deep"])];
        let out = reported(&hits, calls);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("calls of `x`"), "{out:?}");
    }

    #[test]
    fn the_program_bound_is_reported_whoever_calls_its_workflow() {
        let hits = [
            hit("big", Limit::ProgramSteps, &[]),
            hit("main", Limit::Steps, &["big"]),
        ];
        let out = reported(&hits, &[("main", &["big"])]);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].contains("400000 steps in all"), "{out:?}");
    }

    #[test]
    fn a_long_chain_is_shown_by_its_ends() {
        let names: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let h = hit("main", Limit::CallDepth, &refs);
        assert_eq!(
            h.path(),
            "`main` → `c0` → `c1` → `c2` → … → `c16` → `c17` → `c18` → `c19`"
        );
    }
}
