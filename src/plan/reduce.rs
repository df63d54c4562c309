//! The transitive reduction of a plan's dependencies: for each step, the dependencies not
//! implied by its others, which is what `orch plan` shows ("after a, b").
//!
//! A dependency `d` of `v` is implied when another dependency `d'` of `v` comes after `d`
//! (`d` is an ancestor of `d'`). Checking that by materialising the transitive closure costs
//! memory quadratic in the steps (gigabytes at 40,000 steps), and searching the graph from
//! `d'` back to `d` costs the length of the path, which in a long sequence is the whole
//! sequence. Here each such question is answered with the graph's dominator tree instead:
//! every path from a root to `d'` passes through each dominator of `d'`, so `d` is an ancestor
//! of `d'` exactly when it is an ancestor of `x`, the earliest dominator of `d'` that is still
//! later (deeper in levels) than `d` — found in O(log n) by binary lifting — and `x` is
//! usually `d`'s immediate successor in the program's structure, so the search left from `x`
//! back to `d` covers a step or a block, not the script. Building the tree costs
//! O((steps + edges) · log steps) time and O(steps · log steps) memory.

/// A dominator-tree parent standing for a virtual root above every step without
/// dependencies.
const ROOT: u32 = u32::MAX;

/// For each node, its dependencies minus those implied by the others, sorted. `deps[v]`
/// lists the nodes `v` waits for (indices into `deps`). A graph with a cycle (a plan of a
/// program the checker refused) has no unique reduction: its dependencies are returned as
/// they are.
pub(super) fn transitive_reduction(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let Some(order) = topological_order(deps) else {
        return deps.to_vec();
    };
    let mut dag = Dominators::new(deps, &order);
    deps.iter()
        .map(|ds| {
            if ds.len() < 2 {
                return ds.clone();
            }
            // Latest first: a dependency can only be implied by a later one, and one implied
            // by a dropped dependency is implied by whatever implied that one.
            let mut ds = ds.clone();
            ds.sort_unstable_by_key(|&d| (std::cmp::Reverse(dag.level[d]), d));
            ds.dedup();
            let mut kept: Vec<usize> = Vec::new();
            for d in ds {
                if !kept.iter().any(|&k| dag.precedes(d, k)) {
                    kept.push(d);
                }
            }
            kept.sort_unstable();
            kept
        })
        .collect()
}

/// The nodes in an order where each comes after its dependencies (Kahn's algorithm), or
/// `None` when there is a cycle.
fn topological_order(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); deps.len()];
    for (v, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(v);
        }
    }
    let mut order: Vec<usize> = (0..deps.len()).filter(|&v| waiting[v] == 0).collect();
    let mut next = 0;
    while let Some(&v) = order.get(next) {
        next += 1;
        for &t in &dependents[v] {
            waiting[t] -= 1;
            if waiting[t] == 0 {
                order.push(t);
            }
        }
    }
    (order.len() == deps.len()).then_some(order)
}

/// Levels, the dominator tree with binary lifting, and a reusable visited mark.
struct Dominators<'a> {
    deps: &'a [Vec<usize>],
    /// Longest path from a root, in edges: an ancestor always has a smaller level.
    level: Vec<u32>,
    /// Depth in the dominator tree (the virtual root is at 0).
    depth: Vec<u32>,
    /// `up[j][v]`: the 2^j-th dominator above `v`, or [`ROOT`].
    up: Vec<Vec<u32>>,
    /// The search that last visited each node, and the current one.
    seen: Vec<u32>,
    epoch: u32,
}

impl<'a> Dominators<'a> {
    fn new(deps: &'a [Vec<usize>], order: &[usize]) -> Self {
        let n = deps.len();
        let height = (usize::BITS - n.leading_zeros()).max(1) as usize;
        let mut d = Dominators {
            deps,
            level: vec![0; n],
            depth: vec![0; n],
            up: vec![vec![ROOT; n]; height],
            seen: vec![0; n],
            epoch: 0,
        };
        for &v in order {
            d.level[v] = deps[v].iter().map(|&p| d.level[p] + 1).max().unwrap_or(0);
            // The immediate dominator of a node is the nearest common dominator of its
            // dependencies (all processed already).
            let idom = deps[v]
                .iter()
                .map(|&p| p as u32)
                .reduce(|a, b| d.common(a, b))
                .unwrap_or(ROOT);
            d.depth[v] = if idom == ROOT {
                1
            } else {
                d.depth[idom as usize] + 1
            };
            d.up[0][v] = idom;
            for j in 1..height {
                let mid = d.up[j - 1][v];
                d.up[j][v] = if mid == ROOT {
                    ROOT
                } else {
                    d.up[j - 1][mid as usize]
                };
            }
        }
        d
    }

    fn depth_of(&self, v: u32) -> u32 {
        if v == ROOT { 0 } else { self.depth[v as usize] }
    }

    /// The dominator of `v` (or `v`) at `depth`, which is at most `v`'s.
    fn ancestor_at(&self, mut v: u32, depth: u32) -> u32 {
        let mut climb = self.depth_of(v) - depth;
        let mut j = 0;
        while climb > 0 && v != ROOT {
            if climb & 1 == 1 {
                v = self.up[j][v as usize];
            }
            climb >>= 1;
            j += 1;
        }
        v
    }

    /// The nearest common dominator of `a` and `b` (possibly [`ROOT`]).
    fn common(&self, a: u32, b: u32) -> u32 {
        let depth = self.depth_of(a).min(self.depth_of(b));
        let (mut a, mut b) = (self.ancestor_at(a, depth), self.ancestor_at(b, depth));
        if a == b {
            return a;
        }
        for j in (0..self.up.len()).rev() {
            let (ua, ub) = (self.up[j][a as usize], self.up[j][b as usize]);
            if ua != ub {
                (a, b) = (ua, ub);
            }
        }
        self.up[0][a as usize]
    }

    /// Whether `d` must finish before `k` starts: `d` is a proper ancestor of `k`.
    fn precedes(&mut self, d: usize, k: usize) -> bool {
        let floor = self.level[d];
        if self.level[k] <= floor {
            return false;
        }
        // The earliest dominator of `k` still later than `d`: `d` precedes `k` exactly when it
        // precedes `x` (see the module doc).
        let mut x = k as u32;
        // Most often `k`'s own dominator is already not later than `d` (a branch of a block
        // whose entry comes before `d`): then `x` is `k`, without climbing.
        let idom = self.up[0][k];
        let climb = idom != ROOT && self.level[idom as usize] > floor;
        for j in (0..self.up.len()).rev().filter(|_| climb) {
            let y = self.up[j][x as usize];
            if y != ROOT && self.level[y as usize] > floor {
                x = y;
            }
        }
        if self.up[0][x as usize] == d as u32 {
            return true;
        }
        self.search(d, x as usize)
    }

    /// Depth-first search from `x` back to `d`, through nodes later than `d` only.
    fn search(&mut self, d: usize, x: usize) -> bool {
        let floor = self.level[d];
        self.epoch += 1;
        self.seen[x] = self.epoch;
        let mut stack = vec![x];
        while let Some(y) = stack.pop() {
            for &p in &self.deps[y] {
                if p == d {
                    return true;
                }
                if self.level[p] > floor && self.seen[p] != self.epoch {
                    self.seen[p] = self.epoch;
                    stack.push(p);
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::transitive_reduction;

    /// The reduction by brute force: `d` is kept unless another dependency reaches it.
    fn brute(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let n = deps.len();
        // anc[v][u]: u is a proper ancestor of v (nodes are numbered in dependency order).
        let mut anc = vec![vec![false; n]; n];
        for v in 0..n {
            for &d in &deps[v] {
                let above = anc[d].clone();
                for (a, r) in anc[v].iter_mut().zip(above) {
                    *a |= r;
                }
                anc[v][d] = true;
            }
        }
        deps.iter()
            .map(|ds| {
                let mut kept: Vec<usize> = ds
                    .iter()
                    .copied()
                    .filter(|&d| !ds.iter().any(|&o| o != d && anc[o][d]))
                    .collect();
                kept.sort_unstable();
                kept.dedup();
                kept
            })
            .collect()
    }

    #[test]
    fn a_sequence_with_references_back_keeps_only_the_previous_step() {
        // 0 → 1 → 2 → 3, and 3 also reads 0 and 1.
        let deps = vec![vec![], vec![0], vec![1], vec![0, 1, 2]];
        assert_eq!(
            transitive_reduction(&deps),
            vec![vec![], vec![0], vec![1], vec![2]]
        );
    }

    #[test]
    fn a_gather_keeps_every_branch_and_drops_the_block_entry() {
        // 0 → {1, 2 → 3} → 4, and 4 also reads 0.
        let deps = vec![vec![], vec![0], vec![0], vec![2], vec![0, 1, 3]];
        assert_eq!(transitive_reduction(&deps)[4], vec![1, 3]);
    }

    #[test]
    fn a_cycle_is_left_as_it_is() {
        let deps = vec![vec![1], vec![0], vec![0, 1]];
        assert_eq!(transitive_reduction(&deps), deps);
    }

    #[test]
    fn random_graphs_match_the_brute_force() {
        let mut rng = fastrand::Rng::with_seed(17);
        for _ in 0..300 {
            let n = rng.usize(1..40);
            let deps: Vec<Vec<usize>> = (0..n)
                .map(|v| {
                    let k = if v == 0 {
                        0
                    } else {
                        rng.usize(0..6.min(v + 1))
                    };
                    (0..k).map(|_| rng.usize(0..v)).collect()
                })
                .collect();
            assert_eq!(transitive_reduction(&deps), brute(&deps), "{deps:?}");
        }
    }
}
