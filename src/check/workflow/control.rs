//! Control flow: `parallel for`, `repeat ... until` and `if ... else` lowered to regions.
//!
//! A region is one node in the graph around it (its [`Exec::Region`] node) and a set of
//! bodies whose steps are nodes of the same graph, marked with the region in
//! [`Node::regions`]. References across a region's edge are resolved in
//! `Lowerer::resolve_pending` (see `visible_target`); here the regions are built and their
//! conditions type-checked.

use indexmap::IndexMap;

use super::{
    Binding, Dep, DepKind, Exec, InRegion, ListSource, Lowerer, Mode, Node, NodeId, PendingRef,
    Place, Region, RegionId, RegionKind, Scope,
};
use crate::check::error::{
    EmptyParallel, ForBodyResult, ImpossibleValue, InvalidOption, SingleBranchParallel,
    TypeMismatch,
};
use crate::check::types::Type;
use crate::diag::Span;
use crate::syntax::ast::{self, CondKind, OptKind, Path, ValueKind};

/// The agent a generic call resolves to while a pattern is checked on its own (its `agent`
/// parameters are only known at a call).
pub(super) const GENERIC_AGENT: &str = "<agent parameter>";

impl Lowerer<'_> {
    /// Adds the node standing for a new region and the region itself.
    pub(super) fn region_node(
        &mut self,
        name: String,
        kind: RegionKind,
        span: Span,
        entry: &[Dep],
        scope: &Scope,
    ) -> (NodeId, RegionId) {
        let id = self.g.nodes.len();
        let rid = self.g.regions.len();
        self.push_node(Node {
            id,
            name,
            span,
            agent: String::new(),
            callee_span: span,
            exec: Exec::Region(rid),
            prompt: None,
            args: IndexMap::new(),
            deps: entry.to_vec(),
            retry: 0,
            timeout_ms: None,
            deadline_ms: None,
            max_turns: None,
            groups: scope.groups.clone(),
            join: None,
            tainted: false,
            output_type: None,
            regions: self.path.clone(),
            batch: scope.batch,
        });
        self.g.regions.push(Region {
            id: rid,
            kind,
            node: id,
            bodies: Vec::new(),
            members: Vec::new(),
            exports: IndexMap::new(),
            span,
        });
        (id, rid)
    }

    /// Lowers one body of region `rid` as a sequence; returns its direct nodes.
    pub(super) fn region_body(
        &mut self,
        rid: RegionId,
        body: usize,
        block: &ast::Block,
        scope: &Scope,
    ) -> Vec<NodeId> {
        let first = self.g.nodes.len();
        self.path.push(InRegion {
            region: rid,
            body,
            stmt: 0,
        });
        let depth = self.path.len();
        // A `return` in the body is reported there (E0505); the statements after the region
        // still run when the body does not, so they are not unreachable.
        let returned = self.returned;
        self.block_in(block, Mode::Sequence, &[], scope, Some(depth - 1));
        self.returned = returned;
        self.path.pop();
        let direct: Vec<NodeId> = (first..self.g.nodes.len())
            .filter(|&n| self.g.nodes[n].regions.len() == depth)
            .collect();
        let r = &mut self.g.regions[rid];
        r.members.extend(first..self.g.nodes.len());
        if r.bodies.len() <= body {
            r.bodies.resize(body + 1, Vec::new());
        }
        r.bodies[body] = direct.clone();
        direct
    }

    /// A synthetic name for an unnamed region: `repeat#1`, `if#2` (numbered per word, in
    /// the order they are lowered; no script name contains `#`).
    fn region_name(&mut self, word: &'static str) -> String {
        let n = self.unnamed.entry(word).or_insert(0);
        *n += 1;
        format!("{word}#{n}")
    }

    // ------------------------------------------------------------------ parallel for

    /// `name = parallel <options> for var in LIST { body }`.
    pub(super) fn parallel_for(
        &mut self,
        p: &ast::Parallel,
        fe: &ast::ForEach,
        entry: &[Dep],
        outer: &Scope,
    ) -> NodeId {
        let mut scope = outer.clone();
        if let Some(o) = p
            .options
            .iter()
            .find(|o| matches!(o.kind, OptKind::Budget(_)))
        {
            self.diags
                .push(InvalidOption::BudgetOnFor { at: o.span }.into());
        }
        let opts: Vec<ast::Opt> = p
            .options
            .iter()
            .filter(|o| !matches!(o.kind, OptKind::Budget(_)))
            .cloned()
            .collect();
        let (max, _) = self.apply_options(&opts, &mut scope, Place::Parallel);
        let name = p
            .name
            .as_ref()
            .map_or_else(|| self.region_name("for"), |n| n.name.clone());
        let agents = self.agent_list(&fe.list);
        let list = match (&agents, &fe.list.kind) {
            (Some(a), _) => ListSource::Agents(a.iter().map(|(k, _)| k.clone()).collect()),
            (None, ValueKind::List(items)) => ListSource::Literal(
                items
                    .iter()
                    .map(crate::check::items::value_template)
                    .collect(),
            ),
            (None, ValueKind::Path(path)) => ListSource::Path(path.clone()),
            (None, _) => ListSource::Literal(Vec::new()),
        };
        let (node, rid) = self.region_node(
            name,
            RegionKind::For {
                var: None,
                list: list.clone(),
                max,
                results: Vec::new(),
                gather: None,
            },
            p.keyword,
            entry,
            &scope,
        );
        if let Some(n) = &p.name {
            self.bind(n, Binding::Node(node));
        }
        // References of the list are the region's own inputs.
        let from = self.path.clone();
        for path in list_paths(&fe.list) {
            if agents.is_none() {
                self.pending.push(PendingRef {
                    node,
                    path,
                    kind: DepKind::Data,
                    from: from.clone(),
                });
            }
        }
        if let ValueKind::List(items) = &fe.list.kind
            && items.is_empty()
        {
            self.diags
                .push(SingleBranchParallel::EmptyList { at: fe.list.span }.into());
        }
        let mut results = Vec::new();
        let mut var = None;
        match agents {
            Some(agents) => {
                // One body per agent: each is lowered with the variable standing for its agent.
                for (i, (agent, _)) in agents.iter().enumerate() {
                    self.agent_alias.insert(fe.var.name.clone(), agent.clone());
                    let direct = self.region_body(rid, i, &p.body, &scope);
                    results.extend(self.body_result(&direct, &p.body, p.keyword));
                }
                self.agent_alias.shift_remove(&fe.var.name);
            }
            None if self.list_of_agents_param(&fe.list) => {
                self.agent_alias
                    .insert(fe.var.name.clone(), GENERIC_AGENT.to_string());
                let direct = self.region_body(rid, 0, &p.body, &scope);
                results.extend(self.body_result(&direct, &p.body, p.keyword));
                self.agent_alias.shift_remove(&fe.var.name);
            }
            None => {
                // The variable is a node of the body, settled with one item per instance.
                self.path.push(InRegion {
                    region: rid,
                    body: 0,
                    stmt: 0,
                });
                let v = self.g.nodes.len();
                self.push_node(Node {
                    id: v,
                    name: fe.var.name.clone(),
                    span: fe.var.span,
                    agent: String::new(),
                    callee_span: fe.var.span,
                    exec: Exec::Item,
                    prompt: None,
                    args: IndexMap::new(),
                    deps: Vec::new(),
                    retry: 0,
                    timeout_ms: None,
                    deadline_ms: None,
                    max_turns: None,
                    groups: scope.groups.clone(),
                    join: None,
                    tainted: false,
                    output_type: None,
                    regions: self.path.clone(),
                    batch: scope.batch,
                });
                self.path.pop();
                self.bind(&fe.var, Binding::Node(v));
                // The item depends on the list (for taint and the type of the item).
                for path in list_paths(&fe.list) {
                    self.pending.push(PendingRef {
                        node: v,
                        path,
                        kind: DepKind::Data,
                        from: from.clone(),
                    });
                }
                var = Some(v);
                self.item_types.push((v, fe.list.clone()));
                let direct = self.region_body(rid, 0, &p.body, &scope);
                self.g.regions[rid].members.insert(0, v);
                self.g.regions[rid].bodies[0].insert(0, v);
                results.extend(self.body_result(&direct, &p.body, p.keyword));
            }
        }
        if let RegionKind::For {
            var: v, results: r, ..
        } = &mut self.g.regions[rid].kind
        {
            *v = var;
            *r = results.clone();
        }
        if p.body.stmts.is_empty() {
            self.diags.push(
                EmptyParallel {
                    at: p.keyword,
                    is_for: true,
                }
                .into(),
            );
        }
        node
    }

    /// The node whose output is one instance's result: the body's last step.
    fn body_result(
        &mut self,
        direct: &[NodeId],
        body: &ast::Block,
        keyword: Span,
    ) -> Option<NodeId> {
        let last = body.stmts.last()?;
        match last {
            ast::Stmt::Step(_) | ast::Stmt::Gather(_) => {
                // The last step: a call is one, other regions and the item are not.
                direct
                    .iter()
                    .rev()
                    .copied()
                    .find(|&n| match self.g.nodes[n].exec {
                        Exec::Item => false,
                        Exec::Region(r) => {
                            matches!(self.g.regions[r].kind, RegionKind::Call { .. })
                        }
                        _ => true,
                    })
            }
            ast::Stmt::Parallel(p) if p.name.is_some() => direct.last().copied(),
            other => {
                self.diags.push(
                    ForBodyResult {
                        at: other.span(),
                        keyword,
                    }
                    .into(),
                );
                None
            }
        }
    }

    /// `[a, b]` where every item names an agent (a `list<agent>` argument, expanded).
    fn agent_list(&self, v: &ast::Value) -> Option<Vec<(String, Span)>> {
        let ValueKind::List(items) = &v.kind else {
            return None;
        };
        if items.is_empty() {
            return None;
        }
        items
            .iter()
            .map(|i| match &i.kind {
                ValueKind::Path(p)
                    if p.fields.is_empty() && !self.g.bindings.contains_key(&p.root.name) =>
                {
                    self.agent_key(p).map(|k| (k, p.span))
                }
                _ => None,
            })
            .collect()
    }

    /// A path naming a `list<agent>` parameter (a pattern checked on its own).
    fn list_of_agents_param(&self, v: &ast::Value) -> bool {
        let ValueKind::Path(p) = &v.kind else {
            return false;
        };
        matches!(self.g.bindings.get(&p.root.name), Some(Binding::Param(i))
            if p.fields.is_empty() && self.g.params[*i].ty == Type::List(Box::new(Type::Agent)))
    }

    // ------------------------------------------------------------------ repeat

    /// `repeat <max N> { body } until COND`.
    pub(super) fn repeat(&mut self, r: &ast::Repeat, entry: &[Dep], outer: &Scope) -> NodeId {
        let mut scope = outer.clone();
        let mut opts = Vec::new();
        let mut max = None;
        for o in &r.options {
            match o.kind {
                OptKind::Max(n) => {
                    if n == 0 {
                        self.diags
                            .push(ImpossibleValue::ZeroRepeat { at: o.span }.into());
                    }
                    max = Some((n, o.span));
                }
                OptKind::Budget(_) => self
                    .diags
                    .push(InvalidOption::BudgetOnRepeat { at: o.span }.into()),
                _ => opts.push(o.clone()),
            }
        }
        self.apply_options(&opts, &mut scope, Place::Step);
        let max = match max {
            Some((n, _)) => n.max(1),
            None => {
                self.diags
                    .push(ImpossibleValue::UnboundedRepeat { at: r.keyword }.into());
                1
            }
        };
        let name = self.region_name("repeat");
        let (node, rid) = self.region_node(
            name,
            RegionKind::Repeat {
                max,
                until: r.until.clone(),
                else_fail: r.else_fail.is_some(),
            },
            r.keyword,
            entry,
            &scope,
        );
        self.region_body(rid, 0, &r.body, &scope);
        // Names of the body hold the last iteration's values after the loop.
        let visible = self.visible_names(rid, 0);
        self.g.regions[rid].exports = visible.into_iter().map(|(k, n)| (k, vec![n])).collect();
        // `until` is read after an iteration, inside the body.
        let mut from = self.path.clone();
        from.push(InRegion {
            region: rid,
            body: 0,
            stmt: usize::MAX,
        });
        self.cond_refs(&r.until, node, &from);
        self.cond_checks.push((r.until.clone(), "until"));
        node
    }

    // ------------------------------------------------------------------ if

    /// `if COND { then } else { otherwise }`.
    pub(super) fn if_stmt(&mut self, i: &ast::If, entry: &[Dep], scope: &Scope) -> NodeId {
        let name = self.region_name("if");
        let (node, rid) = self.region_node(
            name,
            RegionKind::If {
                cond: i.cond.clone(),
            },
            i.keyword,
            entry,
            scope,
        );
        let from = self.path.clone();
        self.cond_refs(&i.cond, node, &from);
        self.cond_checks.push((i.cond.clone(), "if"));
        self.region_body(rid, 0, &i.then, scope);
        let then_names = self.visible_names(rid, 0);
        let mut exports = IndexMap::new();
        if let Some(other) = &i.otherwise {
            self.region_body(rid, 1, other, scope);
            let else_names = self.visible_names(rid, 1);
            for (name, n) in &then_names {
                if let Some(m) = else_names.get(name) {
                    exports.insert(name.clone(), vec![*n, *m]);
                }
            }
        }
        self.g.regions[rid].exports = exports;
        node
    }

    /// Names defined at the top of body `body` of `rid`, or exported by regions there, with
    /// the node that holds each.
    fn visible_names(&self, rid: RegionId, body: usize) -> IndexMap<String, NodeId> {
        let mut out = IndexMap::new();
        for &n in &self.g.regions[rid].bodies[body] {
            let node = &self.g.nodes[n];
            match node.exec {
                Exec::Region(inner) => {
                    let r = &self.g.regions[inner];
                    if matches!(r.kind, RegionKind::For { .. } | RegionKind::Call { .. })
                        || self.g.bindings.get(&node.name) == Some(&Binding::Node(n))
                    {
                        out.insert(node.name.clone(), n);
                    }
                    for (k, nodes) in &r.exports {
                        if let Some(&first) = nodes.first() {
                            out.insert(k.clone(), first);
                        }
                    }
                }
                Exec::Item => {}
                _ => {
                    out.insert(node.name.clone(), n);
                }
            }
        }
        // Named `parallel` blocks in the body.
        let depth = self.g.nodes[self.g.regions[rid].node].regions.len();
        for g in &self.g.groups {
            let Some(name) = &g.name else { continue };
            let Some(&m) = g.members.first() else {
                continue;
            };
            let at = self.g.nodes[m].regions.get(depth);
            if at.is_some_and(|r| r.region == rid && r.body == body) {
                out.entry(name.clone()).or_insert(m);
            }
        }
        out
    }

    // ------------------------------------------------------------------ conditions

    /// Registers the references of a condition as inputs of `node`, seen from `from`.
    fn cond_refs(&mut self, c: &ast::Cond, node: NodeId, from: &[InRegion]) {
        for v in c.operands() {
            if let ValueKind::Path(p) = &v.kind {
                self.pending.push(PendingRef {
                    node,
                    path: p.clone(),
                    kind: DepKind::Data,
                    from: from.to_vec(),
                });
            }
        }
    }

    /// Type-checks every condition once all names are known: an operand alone is a `bool`;
    /// `<`, `<=`, `>`, `>=` compare numbers; `==` and `!=` compare values of one type.
    pub(super) fn check_conditions(&mut self) {
        for (c, word) in std::mem::take(&mut self.cond_checks) {
            self.check_cond(&c, word);
        }
    }

    fn check_cond(&mut self, c: &ast::Cond, word: &'static str) {
        match &c.kind {
            CondKind::Not(x) => self.check_cond(x, word),
            CondKind::And(a, b) | CondKind::Or(a, b) => {
                self.check_cond(a, word);
                self.check_cond(b, word);
            }
            CondKind::Value(v) => {
                let (ty, what) = self.operand_type(v);
                if !matches!(ty, Type::Bool | Type::Json) {
                    self.diags.push(
                        TypeMismatch::ConditionNotBool {
                            at: v.span,
                            word,
                            found: what,
                            ty,
                            operand: operand_source(v),
                        }
                        .into(),
                    );
                }
            }
            CondKind::Compare(a, op, b) => {
                let (ta, wa) = self.operand_type(a);
                let (tb, wb) = self.operand_type(b);
                if op.is_ordering() {
                    for (t, w, v) in [(&ta, &wa, a), (&tb, &wb, b)] {
                        if !matches!(t, Type::Number | Type::Json) {
                            self.diags.push(
                                TypeMismatch::OrderingNotNumber {
                                    at: v.span,
                                    op: op.symbol(),
                                    found: w.clone(),
                                }
                                .into(),
                            );
                        }
                    }
                } else if !comparable(&ta, &tb) {
                    self.diags.push(
                        TypeMismatch::UnlikeComparison {
                            at: c.span,
                            op: op.symbol(),
                            found: (wa, wb),
                            types: (ta, tb),
                        }
                        .into(),
                    );
                }
            }
        }
    }

    /// The type of a condition operand, with a phrase saying so.
    fn operand_type(&self, v: &ast::Value) -> (Type, String) {
        match &v.kind {
            ValueKind::Str(_) => (Type::Text, "this is text".into()),
            ValueKind::Int(_) | ValueKind::Decimal(_) => (Type::Number, "this is a number".into()),
            ValueKind::Bool(_) => (Type::Bool, "this is a bool".into()),
            ValueKind::Path(p) => match self.path_value_type(p) {
                Some(t) => {
                    let what = format!("`{}` is {t}", p.dotted());
                    (t, what)
                }
                None => (Type::Json, String::new()),
            },
            other => (Type::Json, format!("this is {}", other.describe())),
        }
    }

    /// The type a path evaluates to, when known (`None`: undefined or a bad field, reported
    /// elsewhere).
    pub(super) fn path_value_type(&self, p: &Path) -> Option<Type> {
        let mut ty = match self.g.bindings.get(&p.root.name)? {
            Binding::Param(i) => self.g.params[*i].ty.clone(),
            Binding::Node(n) => self.node_type(*n),
            Binding::Group(_) => {
                return Some(if p.fields.len() == 1 {
                    Type::Text
                } else {
                    Type::Json
                });
            }
        };
        for f in &p.fields {
            ty = ty.field(&f.name)??;
        }
        Some(ty)
    }

    /// The type of a node's output.
    pub(super) fn node_type(&self, n: NodeId) -> Type {
        self.g.nodes[n].output_type.clone().unwrap_or(Type::Text)
    }

    /// Gives `parallel for` items, region values and call results their types, once every
    /// name is known.
    pub(super) fn assign_region_types(&mut self) {
        // Inner regions first: an outer `for` may end with an inner one.
        for rid in (0..self.g.regions.len()).rev() {
            let node = self.g.regions[rid].node;
            let ty = match &self.g.regions[rid].kind {
                RegionKind::For { results, .. } => {
                    let item = results.first().map_or(Type::Text, |&n| self.node_type(n));
                    Some(Type::List(Box::new(item)))
                }
                RegionKind::Call { .. } => self.g.nodes[node].output_type.clone(),
                _ => None,
            };
            self.g.nodes[node].output_type = ty;
        }
        for (v, list) in std::mem::take(&mut self.item_types) {
            let ty = match &list.kind {
                ValueKind::Path(p) => match self.path_value_type(p) {
                    Some(Type::List(t)) => Some(*t),
                    Some(Type::Json) | None => Some(Type::Json),
                    Some(other) => {
                        self.diags.push(
                            TypeMismatch::ForNotList {
                                at: list.span,
                                path: p.dotted(),
                                root: p.root.name.clone(),
                                ty: other,
                            }
                            .into(),
                        );
                        Some(Type::Json)
                    }
                },
                ValueKind::List(items) => Some(literal_list_type(items)),
                _ => Some(Type::Json),
            };
            self.g.nodes[v].output_type = ty.filter(|t| *t != Type::Text);
        }
    }
}

/// A literal list's type: `list<number>` when every item is a number, and so on.
fn literal_list_type(items: &[ast::Value]) -> Type {
    let each = |v: &ast::Value| match v.kind {
        ValueKind::Int(_) | ValueKind::Decimal(_) => Type::Number,
        ValueKind::Bool(_) => Type::Bool,
        ValueKind::Str(_) => Type::Text,
        _ => Type::Json,
    };
    let mut types = items.iter().map(each);
    match types.next() {
        Some(first) if types.all(|t| t == first) => Type::List(Box::new(first)),
        Some(_) => Type::List(Box::new(Type::Json)),
        None => Type::List(Box::new(Type::Text)),
    }
}

fn comparable(a: &Type, b: &Type) -> bool {
    matches!(a, Type::Json) || matches!(b, Type::Json) || a == b
}

fn operand_source(v: &ast::Value) -> String {
    match &v.kind {
        ValueKind::Path(p) => p.dotted(),
        _ => "value".into(),
    }
}

/// The paths a `for` list reads.
fn list_paths(v: &ast::Value) -> Vec<Path> {
    match &v.kind {
        ValueKind::Path(p) => vec![p.clone()],
        ValueKind::List(items) => items.iter().flat_map(list_paths).collect(),
        ValueKind::Str(t) => t.interps().cloned().collect(),
        _ => Vec::new(),
    }
}
