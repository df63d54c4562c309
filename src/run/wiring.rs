//! How a plan's steps wait on each other, shared by the two interpreters of a plan: the local
//! scheduler ([`super::scheduler`], one per region frame) and the deterministic interpreter of
//! the Temporal engine ([`super::remote`]).
//!
//! A step waits for a count of its dependencies. A tolerant `gather` (`any`, `first N`,
//! `min N`) does not count the steps of the block it joins: its [`JoinState`] follows their
//! branches instead, so the join can proceed before all of them end. When a step settles,
//! both interpreters count it off with [`Release::settled`].

use std::collections::{HashSet, VecDeque};

use crate::common::{FastMap, Policy};
use crate::plan::{NodeId, Plan};

/// Progress of the block a tolerant `gather` joins, kept incrementally so that each settled
/// step costs O(1) instead of a scan of the block.
#[derive(Debug, Clone)]
pub(super) struct JoinState {
    pub(super) policy: Policy,
    /// Steps of each branch not yet succeeded.
    pub(super) pending: Vec<usize>,
    /// Branches with a step that failed, was skipped or was cancelled.
    pub(super) failed: Vec<bool>,
    pub(super) succeeded_branches: u32,
    pub(super) settled_branches: u32,
}

impl JoinState {
    /// How many branches the block has.
    pub(super) fn total(&self) -> u32 {
        self.pending.len() as u32
    }
    /// How many branches must succeed for the join to proceed.
    pub(super) fn needed(&self) -> u32 {
        match self.policy {
            Policy::Any => 1,
            Policy::First(n) | Policy::Min(n) => n,
            Policy::All => self.total(),
        }
    }
}

/// The waiting structure of a plan's active steps (each vector indexed by [`NodeId`]).
pub(super) struct Wiring {
    /// The steps that count each step among their dependencies.
    pub(super) dependents: Vec<Vec<NodeId>>,
    /// How many counted dependencies each step still waits for.
    pub(super) waiting_on: Vec<usize>,
    /// Whether a step is a branch member of a tolerant join (its failure does not stop the run).
    pub(super) tolerated: Vec<bool>,
    /// Tolerant joins, with their branch counters.
    pub(super) joins: FastMap<NodeId, JoinState>,
    /// For each step: the tolerant joins it is a branch member of, with the branch index.
    pub(super) watched_by: Vec<Vec<(NodeId, usize)>>,
}

impl Wiring {
    /// The wiring of the steps of `plan` for which `active` holds; a dependency that is not
    /// active is settled already (a region's frame leaves out the steps outside it).
    pub(super) fn new(plan: &Plan, active: impl Fn(NodeId) -> bool) -> Wiring {
        let n = plan.nodes.len();
        let mut w = Wiring {
            dependents: vec![Vec::new(); n],
            waiting_on: vec![0; n],
            tolerated: vec![false; n],
            joins: FastMap::default(),
            watched_by: vec![Vec::new(); n],
        };
        for node in plan.nodes.iter().filter(|n| active(n.id)) {
            let tolerant = node.join.filter(|j| j.policy != Policy::All);
            let mut members = HashSet::new();
            if let Some(j) = tolerant {
                let group = &plan.groups[j.group];
                for (b, branch) in group.branches.iter().enumerate() {
                    for &m in branch {
                        w.tolerated[m] = true;
                        members.insert(m);
                        w.watched_by[m].push((node.id, b));
                    }
                }
                w.joins.insert(
                    node.id,
                    JoinState {
                        policy: j.policy,
                        pending: group.branches.iter().map(Vec::len).collect(),
                        failed: vec![false; group.branches.len()],
                        succeeded_branches: 0,
                        settled_branches: 0,
                    },
                );
            }
            for &d in &node.deps {
                // Dependencies on the joined block are the join's business, not a count.
                if !members.contains(&d) && active(d) {
                    w.dependents[d].push(node.id);
                    w.waiting_on[node.id] += 1;
                }
            }
        }
        w
    }
}

/// The counters of a plan's steps as a scheduler updates them when a step settles.
pub(super) struct Release<'a> {
    /// [`Wiring::dependents`].
    pub(super) dependents: &'a [Vec<NodeId>],
    /// [`Wiring::waiting_on`], counted down.
    pub(super) waiting_on: &'a mut [usize],
    /// [`Wiring::watched_by`].
    pub(super) watched_by: &'a [Vec<(NodeId, usize)>],
    /// [`Wiring::joins`], whose branch counters move.
    pub(super) joins: &'a mut FastMap<NodeId, JoinState>,
    /// Steps to look at next: each whose last counted dependency settled, and each join whose
    /// counters moved (once its own dependencies are settled).
    pub(super) candidates: &'a mut VecDeque<NodeId>,
}

impl Release<'_> {
    /// Step `id` settled (`succeeded` or not): counts it off its dependents, moves the
    /// branch counters of the tolerant joins that watch it, and queues what may now start.
    pub(super) fn settled(&mut self, id: NodeId, succeeded: bool) {
        for &d in &self.dependents[id] {
            self.waiting_on[d] -= 1;
            if self.waiting_on[d] == 0 {
                self.candidates.push_back(d);
            }
        }
        for &(join, branch) in &self.watched_by[id] {
            let Some(j) = self.joins.get_mut(&join) else {
                continue;
            };
            if j.failed[branch] {
                continue;
            }
            if succeeded {
                j.pending[branch] -= 1;
                if j.pending[branch] == 0 {
                    j.succeeded_branches += 1;
                    j.settled_branches += 1;
                }
            } else {
                j.failed[branch] = true;
                j.settled_branches += 1;
            }
            if self.waiting_on[join] == 0 {
                self.candidates.push_back(join);
            }
        }
    }
}
