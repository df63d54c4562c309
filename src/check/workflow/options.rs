//! Options (`< >`) of a workflow, a `parallel` block and a step: which are allowed where,
//! given twice or impossible (`E0502`, `E0503`), and how they pass into the scope of the
//! statements inside; then each step's retries, timeout and deadline from the call, the
//! agent and the blocks around it.

use super::*;

impl Lowerer<'_> {
    /// Validates options at `place` and applies them to `scope`. Returns a block's `max N` and
    /// `budget $X` (a workflow's budget goes to the graph).
    pub(super) fn apply_options(
        &mut self,
        opts: &[Opt],
        scope: &mut Scope,
        place: Place,
    ) -> (Option<u32>, Option<f64>) {
        let mut seen: Vec<(&'static str, Span)> = Vec::new();
        let mut max = None;
        let mut budget = None;
        let mut batch = None;
        for o in opts {
            let kw = o.kind.keyword();
            if let Some((_, prev)) = seen.iter().find(|(k, _)| *k == kw) {
                self.diags.push(
                    InvalidOption::Twice {
                        at: o.span,
                        keyword: kw,
                        first: *prev,
                    }
                    .into(),
                );
                continue;
            }
            seen.push((kw, o.span));
            if !place.allows(&o.kind) {
                self.diags.push(
                    InvalidOption::NotHere {
                        at: o.span,
                        keyword: kw,
                        place: place.option_place(),
                    }
                    .into(),
                );
                continue;
            }
            match &o.kind {
                OptKind::Model(m) => {
                    if self.known_model(m) {
                        scope.model = Some((m.clone(), o.span));
                        scope.model_unknown = false;
                    } else {
                        scope.model = None;
                        scope.model_unknown = true;
                    }
                }
                OptKind::Fallback(m) => {
                    if self.known_model(m) {
                        scope.fallback = Some(m.clone());
                        scope.fallback_span = Some(o.span);
                    }
                }
                OptKind::Retry(n) => {
                    scope.retry = Some(*n);
                    scope.retry_span = Some(o.span);
                }
                OptKind::Timeout(ms) => {
                    if *ms == 0 {
                        self.diags
                            .push(ImpossibleValue::ZeroTimeout { at: o.span }.into());
                    }
                    scope.timeout_ms = Some(*ms);
                    scope.timeout_span = Some(o.span);
                }
                OptKind::Deadline(ms) => {
                    if *ms == 0 {
                        self.diags
                            .push(ImpossibleValue::ZeroDeadline { at: o.span }.into());
                    }
                    scope.deadline_ms = Some(*ms);
                    scope.deadline_span = Some(o.span);
                }
                OptKind::MaxTurns(n) => {
                    if *n == 0 {
                        self.diags
                            .push(ImpossibleValue::ZeroMaxTurns { at: o.span }.into());
                    }
                    scope.max_turns = Some(*n);
                }
                OptKind::Max(n) => {
                    if *n == 0 {
                        self.diags
                            .push(ImpossibleValue::ZeroMax { at: o.span }.into());
                    } else {
                        max = Some(*n);
                    }
                }
                OptKind::Budget(usd) if place == Place::Workflow => {
                    self.g.budget = Some(*usd);
                    self.g.budget_span = Some(o.span);
                }
                OptKind::Budget(usd) => budget = Some(*usd),
                OptKind::Batch => batch = Some(o.span),
            }
        }
        if let Some(span) = batch {
            let id = self.g.batches.len();
            self.g.batches.push(BatchBlock { id, span, max });
            scope.batch = Some(id);
        }
        (max, budget)
    }

    /// Reports an unknown model name; returns whether it is known.
    pub(super) fn known_model(&mut self, m: &Ident) -> bool {
        if self.tables.models.contains_key(&m.name) {
            return true;
        }
        self.diags.push(self.tables.unknown_model(m));
        false
    }
}

/// Where options are written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Workflow,
    Parallel,
    Step,
}

impl Place {
    fn allows(self, o: &OptKind) -> bool {
        match o {
            OptKind::Model(_)
            | OptKind::Retry(_)
            | OptKind::Timeout(_)
            | OptKind::Deadline(_)
            | OptKind::Fallback(_)
            | OptKind::MaxTurns(_) => true,
            OptKind::Max(_) | OptKind::Batch => self == Place::Parallel,
            OptKind::Budget(_) => self != Place::Step,
        }
    }
    fn option_place(self) -> OptionPlace {
        match self {
            Place::Workflow => OptionPlace::Workflow,
            Place::Parallel => OptionPlace::Parallel,
            Place::Step => OptionPlace::Step,
        }
    }
}

/// A step's value of one option: the call's (`pick` finds it among the step's options), else
/// the agent's field, else the enclosing blocks'.
fn in_force<T>(
    s: &ast::Step,
    pick: impl Fn(&OptKind) -> Option<T>,
    agent: Option<T>,
    block: Option<T>,
) -> Option<T> {
    s.options
        .iter()
        .find_map(|o| pick(&o.kind))
        .or(agent)
        .or(block)
}

/// Retries of step `s`: the call's, the agent's, the blocks', else `default`.
pub(super) fn step_scope_retry(
    s: &ast::Step,
    agent: Option<u32>,
    scope: &Scope,
    default: u32,
) -> u32 {
    let pick = |o: &OptKind| match o {
        OptKind::Retry(n) => Some(*n),
        _ => None,
    };
    in_force(s, pick, agent, scope.retry).unwrap_or(default)
}

/// The bound on one attempt of step `s`, in milliseconds.
pub(super) fn step_scope_timeout(s: &ast::Step, agent: Option<u64>, scope: &Scope) -> Option<u64> {
    let pick = |o: &OptKind| match o {
        OptKind::Timeout(n) => Some(*n),
        _ => None,
    };
    in_force(s, pick, agent, scope.timeout_ms)
}

/// The bound on the whole of step `s`, in milliseconds.
pub(super) fn step_scope_deadline(s: &ast::Step, agent: Option<u64>, scope: &Scope) -> Option<u64> {
    let pick = |o: &OptKind| match o {
        OptKind::Deadline(n) => Some(*n),
        _ => None,
    };
    in_force(s, pick, agent, scope.deadline_ms)
}

/// The turn bound of step `s`'s agent loop: the call's `<max_turns N>`, the agent's
/// `max_turns`, the blocks'. `None` when none sets it.
pub(super) fn step_scope_max_turns(
    s: &ast::Step,
    agent: Option<u32>,
    scope: &Scope,
) -> Option<u32> {
    let pick = |o: &OptKind| match o {
        OptKind::MaxTurns(n) => Some(*n),
        _ => None,
    };
    in_force(s, pick, agent, scope.max_turns)
}

impl Lowerer<'_> {
    /// Step `s`'s `max_turns` when its agent has `tools` (`None` otherwise); a `<max_turns N>`
    /// written on the call of an agent without tools is reported (`E1207`).
    pub(super) fn step_max_turns(
        &mut self,
        s: &ast::Step,
        agent: &str,
        scope: &Scope,
    ) -> Option<u32> {
        let def = self.tables.agents.get(agent);
        if def.is_some_and(|a| a.tools.is_some()) {
            let own = def.and_then(|a| a.max_turns);
            return step_scope_max_turns(s, own, scope);
        }
        for o in &s.options {
            if matches!(o.kind, OptKind::MaxTurns(_)) {
                self.diags.push(
                    crate::check::error::TurnsWithoutTools::Option {
                        at: o.span,
                        agent: agent.to_string(),
                    }
                    .into(),
                );
            }
        }
        None
    }
}

impl Lowerer<'_> {
    /// `W0509`: a model step in a `parallel <batch>` block whose `deadline` or `timeout` is
    /// shorter than the batch window ([`crate::common::BATCH_WINDOW_MS`]).
    pub(super) fn check_batch_window(&mut self, id: NodeId) {
        let node = &self.g.nodes[id];
        let Some(b) = node.batch else { return };
        if !matches!(node.exec, Exec::Model { .. }) {
            return;
        }
        let window_ms = crate::common::BATCH_WINDOW_MS;
        let bounds = [("deadline", node.deadline_ms), ("timeout", node.timeout_ms)];
        let Some((keyword, ms)) = bounds
            .into_iter()
            .find_map(|(kw, ms)| ms.filter(|&ms| ms < window_ms).map(|ms| (kw, ms)))
        else {
            return;
        };
        let warning = crate::check::error::BatchWindowBound {
            at: node.callee_span,
            step: node.name.clone(),
            keyword,
            ms,
            window_ms,
            batch: self.g.batches[b].span,
        };
        self.diags.push(warning.into());
    }
}
