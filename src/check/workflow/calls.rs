//! Calls of workflows (reusable patterns), expanded when lowering.
//!
//! `report = scatter_gather(task: "Audit {code}", reviewers: [security, perf], lead: architect)`
//! lowers the body of `scatter_gather` in place, as a [`RegionKind::Call`] region named
//! `report`: every name the pattern defines is renamed `report/NAME` (so two calls, or a call
//! and the caller, never clash), every use of a parameter is replaced by its argument (text
//! and values are spliced into templates; `agent` parameters become the agent called;
//! `list<agent>` ones a literal list of agents, which a `for` unrolls), and the pattern's
//! `return` becomes the region's value. Spans stay those of the pattern, and diagnostics
//! raised inside get a label at the call. A call that reaches a workflow already being
//! expanded is recursion, reported as a cycle (E0303).

use indexmap::IndexMap;

use super::{Binding, Dep, Lowerer, NodeId, Place, RegionKind, Scope};
use crate::check::error::{InvalidArguments, RecursiveCall, TypeMismatch};
use crate::check::items::{ParamDef, value_template};
use crate::check::types::{Type, resolve_type};
use crate::diag::suggest::did_you_mean;
use crate::diag::{Diagnostics, Span};
use crate::syntax::ast::{
    self, Block, Cond, CondKind, Ident, OptKind, Path, Stmt, Template, TemplatePart, Value,
    ValueKind,
};

/// What a parameter is replaced by inside an expanded body.
#[derive(Debug, Clone)]
enum Subst {
    /// A value written at the call (a string, a name, a number...).
    Value(Value),
    /// An agent, by table key.
    Agent(String),
}

impl Lowerer<'_> {
    /// The table key of the agent a callee names, seen from the callee's file: `ns.name`
    /// for a namespaced include, a name of the file's own namespace, then a global name.
    pub(super) fn agent_key(&self, callee: &Path) -> Option<String> {
        self.tables
            .lookup(callee, |k| self.tables.agents.contains_key(k))
    }

    /// The table key of the workflow a callee names, if it names one (and no agent).
    pub(super) fn workflow_key(&self, callee: &Path) -> Option<String> {
        if callee.fields.is_empty() && self.agent_alias.contains_key(&callee.root.name) {
            return None;
        }
        if self.agent_key(callee).is_some() {
            return None;
        }
        self.tables
            .lookup(callee, |k| self.workflows.contains_key(k))
    }

    /// Lowers `name = workflow(args)` by expanding the workflow's body.
    pub(super) fn call(
        &mut self,
        s: &ast::Step,
        key: String,
        entry: &[Dep],
        outer: &Scope,
    ) -> NodeId {
        let wf = self.workflows[&key];
        let (node, rid) = self.region_node(
            s.name.name.clone(),
            RegionKind::Call {
                workflow: key.clone(),
                output: None,
            },
            s.span,
            entry,
            outer,
        );
        self.g.nodes[node].callee_span = s.callee.span;
        self.g.nodes[node].agent = key.clone();
        self.bind(&s.name, Binding::Node(node));
        if self.call_stack.len() == 1 {
            self.direct_calls.push(key.clone());
        }
        if let Some(pos) = self.call_stack.iter().position(|(w, _)| *w == key) {
            // Each cycle is reported once: where the workflow checked on its own is the
            // cycle's first name (every workflow of the cycle is checked on its own).
            let cycle = &self.call_stack[pos..];
            let first = cycle.iter().map(|(w, _)| w).min();
            if pos == 0 && first == Some(&self.call_stack[0].0) {
                self.recursion(pos, &key, s.callee.span);
            }
            return node;
        }
        if !self.may_expand(&key, s.callee.span) {
            return node;
        }
        for a in &s.after {
            self.pending.push(super::PendingRef {
                node,
                path: Path {
                    root: a.clone(),
                    fields: Vec::new(),
                    span: a.span,
                },
                kind: super::DepKind::After,
                from: self.path.clone(),
            });
        }
        if let Some(t) = &s.output {
            self.diags.push(
                TypeMismatch::OutputOnWorkflowCall {
                    at: t.span,
                    workflow: key.to_string(),
                }
                .into(),
            );
        }
        let subst = self.call_arguments(s, wf, &key);
        let mut scope = outer.clone();
        let opts: Vec<ast::Opt> = wf
            .options
            .iter()
            .chain(&s.options)
            .filter(|o| !matches!(o.kind, OptKind::Budget(_) | OptKind::Max(_)))
            .cloned()
            .collect();
        let before = self.diags.len();
        self.apply_options(&opts, &mut scope, Place::Step);
        let prefix = format!("{}/", s.name.name);
        let mut renamer = Renamer {
            prefix: prefix.clone(),
            subst,
            defined: Vec::new(),
            blocks: Vec::new(),
        };
        renamer.collect(&wf.body);
        let mut body = renamer.block(&wf.body);
        // The pattern's `return` is the region's value, not the caller's.
        let mut output = None;
        body.stmts.retain(|st| match st {
            Stmt::Return(r) => {
                output = Some(value_template(&r.value));
                false
            }
            _ => true,
        });
        // Inside, names resolve as in the pattern's file; agent parameters are already
        // replaced, so the caller's agent aliases do not apply.
        let saved_alias = std::mem::take(&mut self.agent_alias);
        self.call_stack.push((key.clone(), s.callee.span));
        let saved_returned = self.returned;
        self.region_body(rid, 0, &body, &scope);
        self.returned = saved_returned;
        self.call_stack.pop();
        self.agent_alias = saved_alias;
        if let Some(t) = &output {
            for p in t.interps() {
                self.pending.push(super::PendingRef {
                    node: usize::MAX,
                    path: p.clone(),
                    kind: super::DepKind::Data,
                    from: {
                        let mut f = self.path.clone();
                        f.push(super::InRegion {
                            region: rid,
                            body: 0,
                            stmt: usize::MAX,
                        });
                        f
                    },
                });
            }
        }
        let ret = wf
            .ret
            .as_ref()
            .map(|t| resolve_type(t, &mut Diagnostics::new()));
        self.g.nodes[node].output_type = ret.filter(|t| *t != Type::Text);
        if let RegionKind::Call { output: o, .. } = &mut self.g.regions[rid].kind {
            *o = output;
        }
        label_at_call(self.diags, before, s.callee.span, &key);
        node
    }

    /// Checks a call's arguments against the workflow's parameters and pairs them.
    fn call_arguments(
        &mut self,
        s: &ast::Step,
        wf: &ast::Workflow,
        key: &str,
    ) -> IndexMap<String, Subst> {
        let mut out = IndexMap::new();
        let params = super::super::items::params(&wf.params, &mut Diagnostics::new());
        for a in &s.args {
            let Some(name) = &a.name else {
                let example = params.first().map_or("name", |p| p.name.as_str());
                self.diags.push(
                    InvalidArguments::WorkflowPositional {
                        at: a.value.span,
                        workflow: key.to_string(),
                        example: example.to_string(),
                    }
                    .into(),
                );
                continue;
            };
            let Some(p) = params.iter().find(|p| p.name == name.name) else {
                let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
                self.diags.push(
                    InvalidArguments::NoSuchWorkflowParameter {
                        at: name.span,
                        workflow: key.to_string(),
                        name: name.name.clone(),
                        declared: wf.name.span,
                        suggestion: did_you_mean(&name.name, names.iter().map(String::as_str))
                            .map(String::from),
                        params: names,
                    }
                    .into(),
                );
                continue;
            };
            if out.contains_key(&p.name) {
                self.diags.push(
                    InvalidArguments::GivenTwice {
                        at: name.span,
                        name: p.name.clone(),
                        first: None,
                    }
                    .into(),
                );
                continue;
            }
            // A wrong argument (reported) is given all the same: the body gets a stand-in.
            let v = self
                .argument(&a.value, &p.ty, &p.name, p.span, key)
                .unwrap_or_else(|| stand_in(&p.ty, a.value.span));
            out.insert(p.name.clone(), v);
        }
        let missing: Vec<&str> = params
            .iter()
            .filter(|p| p.default.is_none() && !out.contains_key(&p.name))
            .map(|p| p.name.as_str())
            .collect();
        if !missing.is_empty() {
            self.diags.push(
                InvalidArguments::MissingWorkflowArguments {
                    at: s.callee.span,
                    workflow: key.to_string(),
                    declared: wf.name.span,
                    missing: missing.iter().map(|m| m.to_string()).collect(),
                }
                .into(),
            );
        }
        // Defaults fill what the call leaves out; a missing or wrong argument is a stand-in,
        // so that the body is still checked without errors that only repeat this one.
        for (p, ast_p) in params.iter().zip(&wf.params) {
            if out.contains_key(&p.name) {
                continue;
            }
            // An `agent` default names an agent seen from the pattern's file (one that does
            // not is reported once, with the pattern).
            let fill = match &ast_p.default {
                Some(d) if p.ty == Type::Agent => match &d.kind {
                    ValueKind::Path(path) => self.agent_key(path).map(Subst::Agent),
                    _ => None,
                }
                .unwrap_or_else(|| stand_in(&p.ty, d.span)),
                Some(d) => Subst::Value(d.clone()),
                None => stand_in(&p.ty, ast_p.span),
            };
            out.insert(p.name.clone(), fill);
        }
        out
    }

    /// Checks the default of `agent` parameter `p` of workflow `key` names an agent (E0212),
    /// whether or not a call leaves the parameter out.
    pub(super) fn check_agent_default(&mut self, d: &Value, p: &ParamDef, key: &str) {
        self.argument(d, &p.ty, &p.name, p.span, key);
    }

    /// One argument for a parameter of type `ty`.
    fn argument(
        &mut self,
        v: &Value,
        ty: &Type,
        param: &str,
        param_span: Span,
        key: &str,
    ) -> Option<Subst> {
        let agent_of = |l: &Self, v: &Value| match &v.kind {
            ValueKind::Path(p)
                if p.fields.is_empty() || l.tables.agents.contains_key(&p.dotted()) =>
            {
                l.agent_alias
                    .get(&p.root.name)
                    .cloned()
                    .or_else(|| l.agent_key(p))
            }
            _ => None,
        };
        match ty {
            Type::Agent => match agent_of(self, v) {
                Some(a) => Some(Subst::Agent(a)),
                None => {
                    self.not_an_agent(v, param, param_span, key, false);
                    None
                }
            },
            Type::List(inner) if **inner == Type::Agent => {
                let ValueKind::List(items) = &v.kind else {
                    self.not_an_agent(v, param, param_span, key, true);
                    return None;
                };
                let mut agents = Vec::new();
                for i in items {
                    match agent_of(self, i) {
                        Some(a) => agents.push(Value {
                            kind: ValueKind::Path(Path {
                                root: Ident {
                                    name: a,
                                    span: i.span,
                                },
                                fields: Vec::new(),
                                span: i.span,
                            }),
                            span: i.span,
                        }),
                        None => self.not_an_agent(i, param, param_span, key, false),
                    }
                }
                Some(Subst::Value(Value {
                    kind: ValueKind::List(agents),
                    span: v.span,
                }))
            }
            _ => {
                if let ValueKind::Path(p) = &v.kind
                    && p.fields.is_empty()
                    && !self.g.bindings.contains_key(&p.root.name)
                    && self.agent_key(p).is_some()
                {
                    self.diags.push(
                        TypeMismatch::AgentForValue {
                            at: v.span,
                            param: param.to_string(),
                            workflow: key.to_string(),
                            ty: ty.clone(),
                            agent: p.root.name.clone(),
                            declared: param_span,
                        }
                        .into(),
                    );
                    return None;
                }
                self.call_arg_checks.push(super::CallArgCheck {
                    value: v.clone(),
                    ty: ty.clone(),
                    param: param.to_string(),
                    workflow: key.to_string(),
                    declared: param_span,
                });
                Some(Subst::Value(v.clone()))
            }
        }
    }

    fn not_an_agent(&mut self, v: &Value, param: &str, param_span: Span, key: &str, list: bool) {
        self.diags.push(
            TypeMismatch::NotAnAgent {
                at: v.span,
                param: param.to_string(),
                workflow: key.to_string(),
                declared: param_span,
                list,
            }
            .into(),
        );
    }

    fn recursion(&mut self, pos: usize, key: &str, span: Span) {
        let chain = self.call_stack[pos..]
            .iter()
            .map(|(w, _)| w.clone())
            .chain(std::iter::once(key.to_string()))
            .collect();
        let calls = self.call_stack[pos + 1..].to_vec();
        self.diags.push(
            RecursiveCall {
                at: span,
                chain,
                calls,
            }
            .into(),
        );
    }
}

/// What a parameter stands for when its argument is missing or wrong (already reported): any
/// agent, or empty text.
fn stand_in(ty: &Type, span: Span) -> Subst {
    match ty {
        Type::Agent => Subst::Agent(super::control::GENERIC_AGENT.into()),
        _ => Subst::Value(Value {
            kind: ValueKind::Str(Template { parts: Vec::new() }),
            span,
        }),
    }
}

/// Adds a label at the call to every diagnostic raised while expanding it.
fn label_at_call(diags: &mut Diagnostics, before: usize, call: Span, key: &str) {
    for d in diags.iter_mut().skip(before) {
        let at = d.primary.span;
        let labelled = d.secondary.iter().any(|l| l.span == call);
        if !labelled && (at.file != call.file || !(call.start..call.end).contains(&at.start)) {
            *d = d
                .clone()
                .with_secondary(call, format!("in this call of `{key}`"));
        }
    }
}

/// Rewrites a pattern's body for one call: defined names get the call's prefix, parameters
/// are replaced by arguments.
struct Renamer {
    prefix: String,
    subst: IndexMap<String, Subst>,
    /// Names the body defines.
    defined: Vec<String>,
    /// The named `parallel` blocks among them, whose members are read as `{block.step}`.
    blocks: Vec<String>,
}

impl Renamer {
    /// Finds every name the body defines.
    fn collect(&mut self, b: &Block) {
        for st in &b.stmts {
            match st {
                Stmt::Step(s) => self.defined.push(s.name.name.clone()),
                Stmt::Gather(g) => self.defined.push(g.step.name.name.clone()),
                Stmt::Parallel(p) => {
                    if let Some(n) = &p.name {
                        self.defined.push(n.name.clone());
                        if p.for_each.is_none() {
                            self.blocks.push(n.name.clone());
                        }
                    }
                    if let Some(fe) = &p.for_each {
                        self.defined.push(fe.var.name.clone());
                    }
                    self.collect(&p.body);
                }
                Stmt::Then(b) => self.collect(b),
                Stmt::Repeat(r) => self.collect(&r.body),
                Stmt::If(i) => {
                    self.collect(&i.then);
                    if let Some(o) = &i.otherwise {
                        self.collect(o);
                    }
                }
                Stmt::Return(_) => {}
            }
        }
    }

    fn ident(&self, i: &Ident) -> Ident {
        if self.defined.contains(&i.name) {
            Ident {
                name: format!("{}{}", self.prefix, i.name),
                span: i.span,
            }
        } else {
            i.clone()
        }
    }

    fn block(&self, b: &Block) -> Block {
        Block {
            stmts: b.stmts.iter().map(|s| self.stmt(s)).collect(),
            span: b.span,
        }
    }

    fn stmt(&self, s: &Stmt) -> Stmt {
        match s {
            Stmt::Step(st) => Stmt::Step(self.step(st)),
            Stmt::Gather(g) => Stmt::Gather(ast::Gather {
                step: self.step(&g.step),
                ..g.clone()
            }),
            Stmt::Then(b) => Stmt::Then(self.block(b)),
            Stmt::Return(r) => Stmt::Return(ast::Return {
                value: self.value(&r.value),
                span: r.span,
            }),
            Stmt::Parallel(p) => Stmt::Parallel(ast::Parallel {
                name: p.name.as_ref().map(|n| self.ident(n)),
                options: p.options.clone(),
                for_each: p.for_each.as_ref().map(|fe| ast::ForEach {
                    var: self.ident(&fe.var),
                    list: self.value(&fe.list),
                    span: fe.span,
                }),
                body: self.block(&p.body),
                keyword: p.keyword,
                span: p.span,
            }),
            Stmt::Repeat(r) => Stmt::Repeat(ast::Repeat {
                options: r.options.clone(),
                body: self.block(&r.body),
                until: self.cond(&r.until),
                else_fail: r.else_fail,
                keyword: r.keyword,
                span: r.span,
            }),
            Stmt::If(i) => Stmt::If(ast::If {
                cond: self.cond(&i.cond),
                then: self.block(&i.then),
                otherwise: i.otherwise.as_ref().map(|b| self.block(b)),
                keyword: i.keyword,
                span: i.span,
            }),
        }
    }

    fn step(&self, s: &ast::Step) -> ast::Step {
        let callee = match self.subst.get(&s.callee.root.name) {
            Some(Subst::Agent(a)) if s.callee.fields.is_empty() => Path {
                root: Ident {
                    name: a.clone(),
                    span: s.callee.root.span,
                },
                fields: Vec::new(),
                span: s.callee.span,
            },
            // A `for` variable over agents is a defined name: renamed like the others.
            _ if s.callee.fields.is_empty() => Path {
                root: self.ident(&s.callee.root),
                fields: Vec::new(),
                span: s.callee.span,
            },
            _ => s.callee.clone(),
        };
        ast::Step {
            name: self.ident(&s.name),
            callee,
            options: s.options.clone(),
            args: s
                .args
                .iter()
                .map(|a| ast::Arg {
                    name: a.name.clone(),
                    value: self.value(&a.value),
                })
                .collect(),
            after: s.after.iter().map(|a| self.ident(a)).collect(),
            output: s.output.clone(),
            span: s.span,
        }
    }

    fn cond(&self, c: &Cond) -> Cond {
        let kind = match &c.kind {
            CondKind::Value(v) => CondKind::Value(self.value(v)),
            CondKind::Compare(a, op, b) => CondKind::Compare(self.value(a), *op, self.value(b)),
            CondKind::Not(x) => CondKind::Not(Box::new(self.cond(x))),
            CondKind::And(a, b) => CondKind::And(Box::new(self.cond(a)), Box::new(self.cond(b))),
            CondKind::Or(a, b) => CondKind::Or(Box::new(self.cond(a)), Box::new(self.cond(b))),
        };
        Cond { kind, span: c.span }
    }

    fn value(&self, v: &Value) -> Value {
        let kind = match &v.kind {
            ValueKind::Str(t) => ValueKind::Str(self.template(t)),
            ValueKind::Path(p) => match self.subst.get(&p.root.name) {
                Some(Subst::Value(arg)) => return with_fields(arg, &p.fields, v.span),
                Some(Subst::Agent(a)) => ValueKind::Path(Path {
                    root: Ident {
                        name: a.clone(),
                        span: p.root.span,
                    },
                    fields: Vec::new(),
                    span: p.span,
                }),
                None => ValueKind::Path(self.path(p)),
            },
            ValueKind::List(items) => {
                ValueKind::List(items.iter().map(|i| self.value(i)).collect())
            }
            ValueKind::Record(fields) => ValueKind::Record(
                fields
                    .iter()
                    .map(|f| ast::Field {
                        key: f.key.clone(),
                        value: self.value(&f.value),
                    })
                    .collect(),
            ),
            other => other.clone(),
        };
        Value { kind, span: v.span }
    }

    fn path(&self, p: &Path) -> Path {
        let mut fields = p.fields.clone();
        // `{block.step}`: the member is renamed like the block.
        if self.blocks.contains(&p.root.name)
            && let Some(first) = fields.first_mut()
        {
            *first = self.ident(first);
        }
        Path {
            root: self.ident(&p.root),
            fields,
            span: p.span,
        }
    }

    fn template(&self, t: &Template) -> Template {
        let mut parts = Vec::new();
        for part in &t.parts {
            match part {
                TemplatePart::Text(x) => parts.push(TemplatePart::Text(x.clone())),
                TemplatePart::Interp(p) => match self.subst.get(&p.root.name) {
                    Some(Subst::Value(arg)) => {
                        let v = with_fields(arg, &p.fields, p.span);
                        parts.extend(value_template(&v).parts);
                    }
                    Some(Subst::Agent(a)) => parts.push(TemplatePart::Text(a.clone())),
                    None => parts.push(TemplatePart::Interp(self.path(p))),
                },
            }
        }
        Template { parts }
    }
}

/// An argument with the fields a use of its parameter reads: `{plan.tasks}` with `plan:
/// draft` is `{draft.tasks}`.
fn with_fields(arg: &Value, fields: &[Ident], span: Span) -> Value {
    if fields.is_empty() {
        return arg.clone();
    }
    match &arg.kind {
        ValueKind::Path(p) => {
            let mut p = p.clone();
            p.fields.extend(fields.iter().cloned());
            Value {
                kind: ValueKind::Path(p),
                span,
            }
        }
        _ => arg.clone(),
    }
}
