//! Taint: which values derive from a model, and where they may not go (docs/language.md,
//! "Command agents and taint").
//!
//! Taint is a property of values, computed over the lowered graph by following where each
//! node's value comes from — not the graph's edges, which say when a node runs (an `after`
//! or a sequence passes no value; a region waits for whatever its body reads):
//!
//! - a model step's output is tainted; an approval's never is (a person's yes or no);
//! - a command step's output is tainted when a value it reads (its prompt, its arguments) is;
//! - a `parallel for` item carries its list's taint, and the block's value (the list of each
//!   instance's result) is tainted when a result is;
//! - a call's value is tainted when its `return` reads a tainted value (without `return`,
//!   when one of the body's last steps, the ones that make its value, is);
//! - a name read after an `if` may hold any branch's definition; a name read in a `repeat`
//!   before its definition is the previous iteration's value, the same node; a named block is
//!   every member (or the one read as `{block.step}`); a field of a value is the value.
//!
//! Calls are expanded before this runs, so an argument is read where the called body reads
//! it, and any depth of calls, regions and fields is the same graph.

use super::{
    Binding, Exec, InRegion, ListSource, Lowerer, NodeId, Path, RegionId, RegionKind,
    closest_definition,
};
use crate::check::error::ModelOutputInArgv;
use crate::diag::{Diagnostic, Span};
use crate::syntax::ast;

impl Lowerer<'_> {
    /// The nodes whose value a reference to `path`, written at `from`, may read: none for a
    /// parameter (a workflow input) or an undefined name.
    pub(super) fn value_sources(&self, path: &Path, from: &[InRegion]) -> Vec<NodeId> {
        match self.g.bindings.get(&path.root.name) {
            None | Some(Binding::Param(_)) => Vec::new(),
            Some(Binding::Group(g)) => {
                match path.fields.first().and_then(|f| self.g.member(*g, &f.name)) {
                    Some(m) => vec![m],
                    None => self.g.groups[*g].members.clone(),
                }
            }
            Some(Binding::Node(n)) => match self.alt_defs.get(&path.root.name) {
                None => vec![*n],
                Some(defs) => self.reaching_definitions(defs, from),
            },
        }
    }

    /// Of a name's definitions in several bodies (`if` branches, a `for`'s agents), the ones
    /// a use at `from` may see: the one on its own path when there is one, else every one
    /// outside the bodies `from` is in (after the `if`, any branch may have run).
    fn reaching_definitions(&self, defs: &[NodeId], from: &[InRegion]) -> Vec<NodeId> {
        let shared = |d: NodeId| {
            self.g.nodes[d]
                .regions
                .iter()
                .zip(from)
                .take_while(|(a, b)| a.region == b.region && a.body == b.body)
                .count()
        };
        let closest = closest_definition(&self.g.nodes, defs, from);
        if shared(closest) == self.g.nodes[closest].regions.len() {
            return vec![closest];
        }
        defs.iter()
            .copied()
            .filter(|&d| {
                // Not in another body of a region `from` is in (another branch).
                let k = shared(d);
                let regions = &self.g.nodes[d].regions;
                !(k < from.len() && k < regions.len() && regions[k].region == from[k].region)
            })
            .collect()
    }

    /// The nodes whose values flow into node `id`'s value (empty for a model step, which is
    /// tainted whatever it reads, an approval, and `repeat` and `if` nodes, which have no
    /// value of their own: their names are read from the body).
    fn value_reads(&self, id: NodeId) -> Vec<NodeId> {
        let node = &self.g.nodes[id];
        match &node.exec {
            Exec::Model { .. } | Exec::Approval => Vec::new(),
            Exec::Command { .. } => {
                self.template_sources(node.prompt.iter().chain(node.args.values()), &node.regions)
            }
            Exec::Item => {
                let Some(rid) = node.regions.last().map(|r| r.region) else {
                    return Vec::new();
                };
                let region = &self.g.regions[rid];
                let from = &self.g.nodes[region.node].regions;
                match &region.kind {
                    RegionKind::For {
                        list: ListSource::Literal(items),
                        ..
                    } => self.template_sources(items, from),
                    RegionKind::For {
                        list: ListSource::Path(p),
                        ..
                    } => self.value_sources(p, from),
                    _ => Vec::new(),
                }
            }
            Exec::Region(rid) => match &self.g.regions[*rid].kind {
                RegionKind::For { results, .. } => results.clone(),
                RegionKind::Call {
                    output: Some(t), ..
                } => {
                    // `return` is read at the end of the called body.
                    let mut from = node.regions.clone();
                    from.push(InRegion {
                        region: *rid,
                        body: 0,
                        stmt: usize::MAX,
                    });
                    self.template_sources([t], &from)
                }
                RegionKind::Call { output: None, .. } => self.last_steps(*rid),
                RegionKind::Repeat { .. } | RegionKind::If { .. } => Vec::new(),
            },
        }
    }

    /// The nodes whose values the interpolations of `templates`, written at `from`, read.
    fn template_sources<'t>(
        &self,
        templates: impl IntoIterator<Item = &'t ast::Template>,
        from: &[InRegion],
    ) -> Vec<NodeId> {
        templates
            .into_iter()
            .flat_map(|t| t.interps())
            .flat_map(|p| self.value_sources(p, from))
            .collect()
    }

    /// A call without `return`: the body's steps that nothing else of the body waits for,
    /// whose outputs make the call's value (as the interpreter renders it: regions other than
    /// a `for` or a call have no value of their own).
    fn last_steps(&self, rid: RegionId) -> Vec<NodeId> {
        let Some(body) = self.g.regions[rid].bodies.first() else {
            return Vec::new();
        };
        let waited_for: std::collections::HashSet<NodeId> = body
            .iter()
            .flat_map(|&m| self.g.nodes[m].deps.iter().map(|d| d.node))
            .collect();
        body.iter()
            .copied()
            .filter(|m| !waited_for.contains(m))
            .filter(|&m| match self.g.nodes[m].exec {
                Exec::Region(r) => matches!(
                    self.g.regions[r].kind,
                    RegionKind::For { .. } | RegionKind::Call { .. }
                ),
                Exec::Item => false,
                _ => true,
            })
            .collect()
    }

    /// Marks every node whose value derives from a model, and returns for each tainted node
    /// where its taint comes from, to show the way back.
    pub(super) fn propagate_taint(&mut self) -> Vec<Option<Origin>> {
        let n = self.g.nodes.len();
        let mut readers: Vec<Vec<NodeId>> = vec![Vec::new(); n];
        let mut origin: Vec<Option<Origin>> = (0..n)
            .map(|id| {
                matches!(self.g.nodes[id].exec, Exec::Model { .. }).then_some(Origin {
                    from: None,
                    model: id,
                    hops: 0,
                })
            })
            .collect();
        let mut queue: Vec<NodeId> = (0..n).filter(|&id| origin[id].is_some()).collect();
        for id in 0..n {
            for s in self.value_reads(id) {
                readers[s].push(id);
            }
        }
        for &m in &queue {
            self.g.nodes[m].tainted = true;
        }
        // A work list over the value edges: each node is tainted (and queued) at most once.
        while let Some(s) = queue.pop() {
            let Some(o) = origin[s] else { continue };
            for &r in &readers[s] {
                if !self.g.nodes[r].tainted {
                    self.g.nodes[r].tainted = true;
                    origin[r] = Some(Origin {
                        from: Some(s),
                        model: o.model,
                        hops: o.hops + 1,
                    });
                    queue.push(r);
                }
            }
        }
        origin
    }

    /// Model output may reach a command through stdin or env, never argv.
    pub(super) fn check_argv_taint(&mut self, origin: &[Option<Origin>]) {
        let mut found = Vec::new();
        for n in &self.g.nodes {
            if !matches!(n.exec, Exec::Command { .. }) {
                continue;
            }
            let Some(agent) = self.tables.agents.get(&n.agent) else {
                continue;
            };
            for (param, arg) in &n.args {
                let Some((used_at, place)) = agent.command_use(param) else {
                    continue;
                };
                for p in arg.interps() {
                    let tainted = self
                        .value_sources(p, &n.regions)
                        .into_iter()
                        .find(|m| self.g.nodes[*m].tainted);
                    if let Some(source) = tainted {
                        found.push(ArgvUse {
                            path: p.clone(),
                            param: param.clone(),
                            agent: n.agent.clone(),
                            used_at,
                            place,
                            // An argument spliced in from a call is written at the call:
                            // show the step too.
                            step: (!n.span.contains(p.span)).then_some((n.span, n.name.clone())),
                            source,
                        });
                    }
                }
            }
        }
        for u in found {
            let d = self.argv_taint_error(&u, origin);
            self.diags.push(d);
        }
    }

    fn argv_taint_error(&self, u: &ArgvUse, origin: &[Option<Origin>]) -> Diagnostic {
        // Model output that came a long way: where it was made, and the way.
        let from_afar = origin[u.source].filter(|o| o.hops > 0).map(|o| {
            (
                self.g.nodes[o.model].span,
                self.g.nodes[o.model].name.clone(),
                self.taint_way(u.source, origin),
            )
        });
        ModelOutputInArgv {
            at: u.path.span,
            value: u.path.dotted(),
            agent: u.agent.clone(),
            param: u.param.clone(),
            used_at: u.used_at,
            place: u.place,
            step: u.step.clone(),
            origin: from_afar,
        }
        .into()
    }

    /// The values model output passes through on its way to `tainted` (the model step not
    /// included), as `` `a` → `b` ``: the last few when the way is long.
    fn taint_way(&self, tainted: NodeId, origin: &[Option<Origin>]) -> String {
        const SHOWN: usize = 4;
        let mut way = Vec::new();
        let mut at = Some(tainted);
        while let Some(n) = at
            && way.len() < SHOWN
        {
            let Some(o) = origin[n] else { break };
            if o.from.is_none() {
                break; // the model step
            }
            way.push(format!("`{}`", self.g.nodes[n].name));
            at = o.from;
        }
        if origin[tainted].is_some_and(|o| o.hops > SHOWN) {
            way.push("…".to_string());
        }
        way.reverse();
        way.join(" → ")
    }
}

/// Where a tainted node's taint comes from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Origin {
    /// The node it read it from (`None` for a model step).
    from: Option<NodeId>,
    /// The model step at the start of the way.
    model: NodeId,
    /// How many values lie between them.
    hops: usize,
}

/// A tainted value passed to a parameter of a command that is used in its argv.
struct ArgvUse {
    /// The interpolation.
    path: Path,
    /// The parameter.
    param: String,
    /// The command agent.
    agent: String,
    /// Where the parameter is used: an argv element or the `cwd`.
    used_at: Span,
    /// `"argv"` or `"cwd"`.
    place: &'static str,
    /// The step, when the interpolation is written elsewhere (at a call).
    step: Option<(Span, String)>,
    /// The tainted node it reads.
    source: NodeId,
}
