//! Lowering statements into the graph: names bound, blocks in sequence or in parallel, a
//! step's node with its agent, model, options and edges, `gather` joins.

use super::*;

/// A statement a `gather` right after it may join.
#[derive(Clone, Copy)]
pub(super) enum Joinable {
    /// A `parallel` block: the gather waits for its branches under the policy.
    Block(GroupId),
    /// A `parallel for`: the region runs its instances under the policy.
    For(RegionId),
}
use crate::check::error::TypeMismatch;
use crate::check::types::is_outcome;

impl Lowerer<'_> {
    pub(super) fn bind(&mut self, name: &Ident, b: Binding) {
        // The same name in another branch of an `if` (or another agent's body of a `for`
        // over agents): one more definition, chosen by where it is used.
        if let (Some(Binding::Node(prev)), Binding::Node(new)) =
            (self.g.bindings.get(&name.name).copied(), b)
            && self.in_sibling_body(prev)
        {
            let defs = self.alt_defs.entry(name.name.clone()).or_default();
            if defs.is_empty() {
                defs.push(prev);
            }
            defs.push(new);
            return;
        }
        if let Some(prev) = self.defined_at.get(&name.name) {
            self.diags.push(
                DuplicateDefinition::Name {
                    at: name.span,
                    name: name.name.clone(),
                    workflow: self.g.name.clone(),
                    first: *prev,
                    first_is_param: matches!(
                        self.g.bindings.get(&name.name),
                        Some(Binding::Param(_))
                    ),
                }
                .into(),
            );
            return;
        }
        self.defined_at.insert(name.name.clone(), name.span);
        self.g.bindings.insert(name.name.clone(), b);
    }

    /// Whether node `prev` is in another body of a region being lowered now.
    pub(super) fn in_sibling_body(&self, prev: NodeId) -> bool {
        for (x, y) in self.g.nodes[prev].regions.iter().zip(&self.path) {
            if x.region != y.region {
                return false;
            }
            if x.body != y.body {
                return true;
            }
        }
        false
    }

    /// Lowers a block; `entry` are the nodes every statement of it must wait for. Returns the
    /// nodes whose completion completes the block.
    pub(super) fn block(
        &mut self,
        block: &ast::Block,
        mode: Mode,
        entry: &[Dep],
        scope: &Scope,
    ) -> Vec<NodeId> {
        self.block_in(block, mode, entry, scope, None)
    }

    /// [`Self::block`]; `body_of` is the index in `self.path` of the region whose body this
    /// block is, whose statement counter it advances.
    pub(super) fn block_in(
        &mut self,
        block: &ast::Block,
        mode: Mode,
        entry: &[Dep],
        scope: &Scope,
        body_of: Option<usize>,
    ) -> Vec<NodeId> {
        let mut prev: Vec<Dep> = entry.to_vec();
        let mut all_exits = Vec::new();
        let mut last_parallel: Option<Joinable> = None;
        // Consecutive plain steps of this sequence (for the parallelisable-sequence lint).
        let mut run: Vec<NodeId> = Vec::new();
        for (i, stmt) in block.stmts.iter().enumerate() {
            if let Some(k) = body_of {
                self.path[k].stmt = i;
            }
            if self.returned {
                // Statements after `return` are reported once, at the first of them.
                self.diags
                    .push(MisplacedReturn::AfterReturn { at: stmt.span() }.into());
                self.returned = false;
            }
            let stmt_entry = if mode == Mode::Sequence {
                prev.clone()
            } else {
                entry.to_vec()
            };
            let (exits, group) = self.stmt(stmt, mode, &stmt_entry, scope, last_parallel);
            last_parallel = group;
            match (mode, stmt, exits.as_slice()) {
                (Mode::Sequence, Stmt::Step(_), [node]) => run.push(*node),
                _ => self.end_sequence_run(&mut run),
            }
            if let Stmt::Return(_) = stmt {
                continue;
            }
            let order_span = stmt.span();
            if mode == Mode::Sequence && !exits.is_empty() {
                prev = exits
                    .iter()
                    .map(|&n| Dep {
                        node: n,
                        kind: DepKind::Order,
                        span: order_span,
                    })
                    .collect();
            }
            all_exits.extend(exits);
        }
        self.end_sequence_run(&mut run);
        match mode {
            Mode::Sequence => prev.iter().map(|d| d.node).collect(),
            Mode::Parallel => all_exits,
        }
    }

    /// Records a finished run of consecutive steps when it has two or more.
    pub(super) fn end_sequence_run(&mut self, run: &mut Vec<NodeId>) {
        if run.len() >= 2 {
            self.g.sequences.push(std::mem::take(run));
        } else {
            run.clear();
        }
    }

    /// Lowers one statement; returns its exit nodes and, for a `parallel`, its group.
    /// Nothing once a bound on expanding calls is reached (see [`limits`]).
    pub(super) fn stmt(
        &mut self,
        stmt: &Stmt,
        mode: Mode,
        entry: &[Dep],
        scope: &Scope,
        last_parallel: Option<Joinable>,
    ) -> (Vec<NodeId>, Option<Joinable>) {
        if self.limit.is_some() {
            return (Vec::new(), None);
        }
        if self.nesting >= limits::MAX_NESTING_DEPTH {
            self.reach(limits::Limit::Nesting, stmt.span());
            return (Vec::new(), None);
        }
        self.nesting += 1;
        let out = match stmt {
            Stmt::Step(s) => match self.workflow_key(&s.callee) {
                Some(key) => (vec![self.call(s, key, entry, scope)], None),
                None => (vec![self.step(s, entry, scope, None)], None),
            },
            Stmt::Then(b) => (self.block(b, Mode::Sequence, entry, scope), None),
            Stmt::Parallel(p) if p.for_each.is_some() => {
                let fe = p.for_each.as_ref().expect("checked above");
                let node = self.parallel_for(p, fe, entry, scope);
                let joinable = match self.g.nodes[node].exec {
                    Exec::Region(rid) => Some(Joinable::For(rid)),
                    _ => None,
                };
                (vec![node], joinable)
            }
            Stmt::Parallel(p) => {
                let (exits, g) = self.parallel(p, entry, scope);
                (exits, Some(Joinable::Block(g)))
            }
            Stmt::Gather(gather) => {
                let join = match (mode, last_parallel) {
                    (Mode::Sequence, Some(Joinable::Block(group))) => Some(Join {
                        group,
                        policy: gather.policy,
                    }),
                    // The instances are the region's business: the gather step just follows
                    // it, and the region runs them under the policy.
                    (Mode::Sequence, Some(Joinable::For(rid))) => {
                        self.gather_for(gather, rid);
                        None
                    }
                    _ => {
                        self.diags.push(
                            MisplacedGather {
                                at: gather.keyword,
                                in_parallel: mode == Mode::Parallel,
                            }
                            .into(),
                        );
                        None
                    }
                };
                if let Some(j) = join {
                    self.check_policy(gather, j.group);
                }
                (vec![self.step(&gather.step, entry, scope, join)], None)
            }
            Stmt::Repeat(r) => (vec![self.repeat(r, entry, scope)], None),
            Stmt::If(i) => (vec![self.if_stmt(i, entry, scope)], None),
            Stmt::Return(r) => {
                self.returned = true;
                let t = value_template(&r.value);
                if !self.path.is_empty() && mode != Mode::Parallel {
                    self.diags
                        .push(MisplacedReturn::InRegion { at: r.span }.into());
                }
                if mode == Mode::Parallel {
                    self.diags
                        .push(MisplacedReturn::InParallel { at: r.span }.into());
                }
                self.check_template_refs(&t);
                self.g.output = Some(t);
                (Vec::new(), None)
            }
        };
        self.nesting -= 1;
        out
    }

    /// A `gather` right after `parallel for` region `rid`: its policy applies to the instances.
    /// `first N` and `min N` need N ≥ 1, and N ≤ the items of a list written in the script.
    fn gather_for(&mut self, gather: &ast::Gather, rid: RegionId) {
        let region = &mut self.g.regions[rid];
        let RegionKind::For {
            list, gather: g, ..
        } = &mut region.kind
        else {
            return;
        };
        *g = Some(gather.policy);
        let items = match list {
            ListSource::Literal(items) => Some(items.len() as u32),
            ListSource::Agents(agents) => Some(agents.len() as u32),
            ListSource::Path(_) => None,
        };
        let n = match gather.policy {
            Policy::First(n) | Policy::Min(n) => n,
            _ => return,
        };
        if n == 0 || items.is_some_and(|items| n > items) {
            let for_at = region.span;
            self.diags.push(
                ImpossibleValue::ForPolicy {
                    at: gather.policy_span,
                    policy: gather.policy,
                    items,
                    for_at,
                }
                .into(),
            );
        }
    }

    pub(super) fn check_policy(&mut self, gather: &ast::Gather, group: GroupId) {
        let branches = self.g.groups[group].branches.len() as u32;
        let n = match gather.policy {
            Policy::First(n) | Policy::Min(n) => n,
            _ => return,
        };
        if n == 0 || n > branches {
            self.diags.push(
                ImpossibleValue::Policy {
                    at: gather.policy_span,
                    policy: gather.policy,
                    branches,
                    block: self.g.groups[group].span,
                }
                .into(),
            );
        }
    }

    pub(super) fn parallel(
        &mut self,
        p: &ast::Parallel,
        entry: &[Dep],
        outer: &Scope,
    ) -> (Vec<NodeId>, GroupId) {
        let mut scope = outer.clone();
        let (max, budget) = self.apply_options(&p.options, &mut scope, Place::Parallel);
        let id = self.g.groups.len();
        self.g.groups.push(Group {
            id,
            name: p.name.as_ref().map(|n| n.name.clone()),
            span: p.keyword,
            max,
            budget,
            members: Vec::new(),
            branches: Vec::new(),
        });
        if let Some(name) = &p.name {
            self.bind(name, Binding::Group(id));
        }
        scope.groups.push(id);
        let first = self.g.nodes.len();
        let mut exits = Vec::new();
        for stmt in &p.body.stmts {
            let before = self.g.nodes.len();
            let (e, _) = self.stmt(stmt, Mode::Parallel, entry, &scope, None);
            exits.extend(e);
            self.g.groups[id]
                .branches
                .push((before..self.g.nodes.len()).collect());
        }
        self.g.groups[id].members = (first..self.g.nodes.len()).collect();
        if p.body.stmts.is_empty() {
            self.diags.push(
                EmptyParallel {
                    at: p.keyword,
                    is_for: false,
                }
                .into(),
            );
        }
        (exits, id)
    }

    pub(super) fn step(
        &mut self,
        s: &ast::Step,
        entry: &[Dep],
        scope: &Scope,
        join: Option<Join>,
    ) -> NodeId {
        let id = self.g.nodes.len();
        self.bind(&s.name, Binding::Node(id));
        if !s.options.is_empty() {
            // Checked for their diagnostics; the step's own values are read from `s` below.
            let mut step_scope = scope.clone();
            self.apply_options(&s.options, &mut step_scope, Place::Step);
        }
        let call_model = s.options.iter().find_map(|o| match &o.kind {
            OptKind::Model(m) => Some((m.clone(), o.span)),
            _ => None,
        });
        let output_type = s
            .output
            .as_ref()
            .map(|t| crate::check::types::resolve_type(t, self.diags));
        let (exec, agent_retry, agent_timeout, agent_name) = self.exec_for(s, scope, call_model);
        self.check_outcome(s, &exec, &agent_name);
        self.check_block_overrides(s, scope);
        let agent_deadline = self
            .tables
            .agents
            .get(&agent_name)
            .and_then(|a| a.deadline_ms);
        let default_retry = match exec {
            Exec::Model { .. } => DEFAULT_MODEL_RETRY,
            _ => 0,
        };
        let approval = matches!(exec, Exec::Approval);
        let (prompt, args, arg_spans) = if approval {
            self.approval_arguments(s)
        } else {
            self.arguments(s, &agent_name)
        };
        self.arg_checks
            .extend(arg_spans.into_iter().map(|(name, span)| (id, name, span)));
        let mut deps: Vec<Dep> = entry.to_vec();
        deps.retain(|d| d.node != id);
        let max_turns = self.step_max_turns(s, &agent_name, scope);
        // The names the prompt and arguments read, before they move into the node.
        let reads: Vec<Path> = prompt
            .iter()
            .chain(args.values())
            .flat_map(|t| t.interps())
            .cloned()
            .collect();
        self.push_node(Node {
            id,
            name: s.name.name.clone(),
            span: s.span,
            agent: agent_name,
            callee_span: s.callee.span,
            exec,
            prompt,
            args,
            deps,
            retry: step_scope_retry(s, agent_retry, scope, default_retry),
            timeout_ms: step_scope_timeout(s, agent_timeout, scope),
            deadline_ms: step_scope_deadline(s, agent_deadline, scope),
            max_turns,
            groups: scope.groups.clone(),
            join,
            tainted: false,
            output_type,
            regions: self.path.clone(),
            batch: scope.batch,
        });
        if approval {
            self.approval_step(id, s);
        }
        self.check_batch_window(id);
        for path in reads {
            self.pending.push(PendingRef {
                node: id,
                path,
                kind: DepKind::Data,
                from: self.path.clone(),
            });
        }
        for a in &s.after {
            let path = Path {
                root: a.clone(),
                fields: Vec::new(),
                span: a.span,
            };
            self.pending.push(PendingRef {
                node: id,
                path,
                kind: DepKind::After,
                from: self.path.clone(),
            });
        }
        id
    }

    /// `-> outcome` is how a program exited: a command step's only (an approval's `-> T` is
    /// checked with the approval; a pattern's `agent` parameter may be a command agent).
    fn check_outcome(&mut self, s: &ast::Step, exec: &Exec, agent: &str) {
        let Some(out) = s.output.as_ref().filter(|t| is_outcome(t)) else {
            return;
        };
        if matches!(exec, Exec::Model { .. }) && agent != control::GENERIC_AGENT {
            self.diags.push(
                TypeMismatch::OutcomeOfModel {
                    at: out.span,
                    step: s.name.name.clone(),
                    agent: agent.to_string(),
                }
                .into(),
            );
        }
    }

    /// The agent's execution, with the model resolved: call site `<m>`, then the agent's pin,
    /// then the innermost block's model. `approve` without an agent of that name is the
    /// built-in approval.
    pub(super) fn exec_for(
        &mut self,
        s: &ast::Step,
        scope: &Scope,
        call_model: Option<(Ident, Span)>,
    ) -> (Exec, Option<u32>, Option<u64>, String) {
        let callee = &s.callee;
        let name = callee.dotted();
        let placeholder = Exec::Command {
            argv: Vec::new(),
            env: Vec::new(),
            cwd: None,
            outcome: false,
        };
        let alias = callee
            .fields
            .is_empty()
            .then(|| self.agent_alias.get(&callee.root.name).cloned())
            .flatten();
        if alias.as_deref() == Some(control::GENERIC_AGENT)
            || callee.root.name == control::GENERIC_AGENT
        {
            // An `agent` parameter of a pattern checked on its own: the caller picks the
            // agent, and the call's expansion is checked with it.
            let generic = Exec::Model {
                model: String::new(),
                fallback: None,
                system: None,
                max_tokens: DEFAULT_MAX_TOKENS,
                temperature: None,
            };
            return (generic, None, None, control::GENERIC_AGENT.to_string());
        }
        let key = alias.or_else(|| self.agent_key(callee));
        let Some(agent) = key.as_ref().and_then(|k| self.tables.agents.get(k)) else {
            if approval::is_approve(callee) {
                return (Exec::Approval, None, None, name);
            }
            self.diags.push(self.tables.unknown_agent(callee));
            return (placeholder, None, None, name);
        };
        let exec = match &agent.kind {
            AgentKind::Command { argv, env, cwd } => {
                if let Some((m, span)) = &call_model {
                    self.diags.push(
                        ModelOnCommandAgent::Model {
                            at: *span,
                            agent: agent.name.clone(),
                            model: m.name.clone(),
                            declared: agent.name_span,
                        }
                        .into(),
                    );
                }
                if let Some(o) = s
                    .options
                    .iter()
                    .find(|o| matches!(o.kind, OptKind::Fallback(_)))
                {
                    self.diags.push(
                        ModelOnCommandAgent::Fallback {
                            at: o.span,
                            agent: agent.name.clone(),
                            declared: agent.name_span,
                        }
                        .into(),
                    );
                }
                Exec::Command {
                    argv: argv.iter().map(|(t, _)| t.clone()).collect(),
                    env: env.iter().map(|(k, t, _)| (k.clone(), t.clone())).collect(),
                    cwd: cwd.as_ref().map(|(t, _)| t.clone()),
                    outcome: s.output.as_ref().is_some_and(is_outcome),
                }
            }
            AgentKind::Model {
                model: pin,
                system,
                max_tokens,
                temperature,
                fallback,
            } => {
                let pin_known = pin
                    .as_ref()
                    .filter(|m| self.tables.models.contains_key(&m.name));
                let model = if let Some((m, _)) = &call_model {
                    Some(m.name.clone())
                } else if let Some(p) = pin_known {
                    if let Some((block_model, block_span)) = &scope.model
                        && block_model.name != p.name
                    {
                        self.diags.push(
                            BlockModelOverridden {
                                at: s.callee.span,
                                agent: agent.name.clone(),
                                pin: p.name.clone(),
                                pin_at: p.span,
                                block: block_model.name.clone(),
                                block_at: *block_span,
                            }
                            .into(),
                        );
                    }
                    Some(p.name.clone())
                } else if pin.is_some() {
                    None // The unknown pin is reported once, with the agent.
                } else {
                    scope.model.as_ref().map(|(m, _)| m.name.clone())
                };
                let model = match model {
                    Some(m) => m,
                    None => {
                        if pin.is_none() && !scope.model_unknown {
                            self.diags.push(
                                StepWithoutModel {
                                    at: s.callee.span,
                                    step: s.name.name.clone(),
                                    agent: agent.name.clone(),
                                    declared: agent.name_span,
                                }
                                .into(),
                            );
                        }
                        String::new()
                    }
                };
                let s_fallback = s.options.iter().find_map(|o| match &o.kind {
                    OptKind::Fallback(m) => Some(m.name.clone()),
                    _ => None,
                });
                let fallback = s_fallback
                    .or_else(|| {
                        fallback
                            .as_ref()
                            .filter(|m| self.tables.models.contains_key(&m.name))
                            .map(|m| m.name.clone())
                    })
                    .or_else(|| scope.fallback.as_ref().map(|m| m.name.clone()))
                    .filter(|f| *f != model);
                let model_max = self.tables.models.get(&model).and_then(|m| m.max_tokens);
                Exec::Model {
                    model,
                    fallback,
                    system: system.clone(),
                    max_tokens: max_tokens.or(model_max).unwrap_or(DEFAULT_MAX_TOKENS),
                    temperature: *temperature,
                }
            }
        };
        (exec, agent.retry, agent.timeout_ms, agent.name.clone())
    }
}
