//! Dependency cycles (`E0301`): strongly connected components of the graph of one workflow,
//! each reported as one cycle through it.

use super::*;

impl Lowerer<'_> {
    pub(super) fn check_cycles(&mut self) {
        use petgraph::graph::DiGraph;
        // Almost every workflow has no cycle. Proving that reads the dependency lists in place;
        // the graph copy below (an edge per dependency: a million for 100 layers of 100 steps
        // that each wait for the layer before) is built only to report a cycle.
        if acyclic(&self.g.nodes) {
            return;
        }
        let mut graph: DiGraph<NodeId, Dep> = DiGraph::new();
        let idx: Vec<_> = (0..self.g.nodes.len()).map(|i| graph.add_node(i)).collect();
        for n in &self.g.nodes {
            for d in &n.deps {
                graph.add_edge(idx[n.id], idx[d.node], *d);
            }
        }
        for scc in petgraph::algo::tarjan_scc(&graph) {
            if scc.len() < 2 {
                continue;
            }
            let cycle = find_cycle(&graph, &scc);
            if cycle.is_empty() {
                continue;
            }
            let uses: Vec<&(NodeId, Dep)> = cycle
                .iter()
                .filter(|(_, d)| d.kind != DepKind::Order)
                .collect();
            if uses.len() == 1 && uses.len() < cycle.len() {
                // One use of a step that only runs later in the sequence.
                let (from, dep) = *uses[0];
                let (x, y) = (
                    self.g.nodes[from].name.clone(),
                    self.g.nodes[dep.node].name.clone(),
                );
                self.diags.push(
                    DependencyCycle::Later {
                        at: dep.span,
                        defined: self.defined_at.get(&y).copied(),
                        from: x,
                        to: y,
                        after: dep.kind == DepKind::After,
                    }
                    .into(),
                );
                continue;
            }
            // Sequence-order edges are shown at the earlier step's name, not its whole statement.
            let edge_span = |dep: &Dep| match dep.kind {
                DepKind::Order => self
                    .defined_at
                    .get(&self.g.nodes[dep.node].name)
                    .copied()
                    .unwrap_or(dep.span),
                _ => dep.span,
            };
            let edges = cycle
                .iter()
                .map(|(from, dep)| Edge {
                    at: edge_span(dep),
                    from: self.g.nodes[*from].name.clone(),
                    to: self.g.nodes[dep.node].name.clone(),
                    wait: match dep.kind {
                        DepKind::Data => Wait::Uses,
                        DepKind::After => Wait::After,
                        DepKind::Order => Wait::Sequence,
                    },
                })
                .collect();
            self.diags.push(DependencyCycle::Cycle { edges }.into());
        }
    }
}

/// Whether the dependencies of `nodes` (by index: `nodes[i].id == i`) form no cycle: an
/// iterative depth-first search with three colours, O(nodes + dependencies) time and O(nodes)
/// memory besides its stack.
fn acyclic(nodes: &[Node]) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        New,
        OnPath,
        Done,
    }
    let mut colour = vec![Colour::New; nodes.len()];
    // (node, index of the next dependency to visit)
    let mut stack: Vec<(NodeId, usize)> = Vec::new();
    for root in 0..nodes.len() {
        if colour[root] != Colour::New {
            continue;
        }
        colour[root] = Colour::OnPath;
        stack.push((root, 0));
        while let Some((n, next)) = stack.last_mut() {
            let Some(dep) = nodes[*n].deps.get(*next) else {
                colour[*n] = Colour::Done;
                stack.pop();
                continue;
            };
            *next += 1;
            match colour[dep.node] {
                Colour::OnPath => return false,
                Colour::Done => {}
                Colour::New => {
                    colour[dep.node] = Colour::OnPath;
                    stack.push((dep.node, 0));
                }
            }
        }
    }
    true
}

/// One cycle through the strongly connected component `scc`, as (node, edge to next) pairs.
fn find_cycle(
    graph: &petgraph::graph::DiGraph<NodeId, Dep>,
    scc: &[petgraph::graph::NodeIndex],
) -> Vec<(NodeId, Dep)> {
    use petgraph::visit::EdgeRef;
    use std::collections::{HashMap, VecDeque};
    let in_scc: std::collections::HashSet<_> = scc.iter().copied().collect();
    let start = *scc
        .iter()
        .min_by_key(|n| graph[**n])
        .expect("non-empty scc");
    // BFS from start's successors back to start, within the component.
    let mut parent: HashMap<petgraph::graph::NodeIndex, (petgraph::graph::NodeIndex, Dep)> =
        HashMap::new();
    let mut queue = VecDeque::from([start]);
    let mut seen = std::collections::HashSet::from([start]);
    'bfs: while let Some(u) = queue.pop_front() {
        let mut edges: Vec<_> = graph
            .edges(u)
            .filter(|e| in_scc.contains(&e.target()))
            .collect();
        // Between the same two steps, prefer a data or `after` edge to a sequence-order one.
        edges.sort_by_key(|e| (graph[e.target()], e.weight().kind == DepKind::Order));
        for e in edges {
            let v = e.target();
            if v == start {
                parent.insert(start, (u, *e.weight()));
                break 'bfs;
            }
            if seen.insert(v) {
                parent.insert(v, (u, *e.weight()));
                queue.push_back(v);
            }
        }
    }
    let mut cycle = Vec::new();
    let mut v = start;
    while let Some((u, dep)) = parent.get(&v).copied() {
        cycle.push((graph[u], dep));
        v = u;
        if v == start || cycle.len() > scc.len() {
            break;
        }
    }
    cycle.reverse();
    cycle
}
