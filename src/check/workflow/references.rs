//! References resolved once every name of a workflow is known: data and `after` edges,
//! undefined names, names out of reach across the edge of a region, field accesses
//! (`E0201`, `E0210`, `E0301` for a step using itself or its own block).

use super::*;

impl Lowerer<'_> {
    pub(super) fn check_template_refs(&mut self, t: &Template) {
        for p in t.interps() {
            self.pending.push(PendingRef {
                node: usize::MAX,
                path: p.clone(),
                kind: DepKind::Data,
                from: self.path.clone(),
            });
        }
    }

    /// Resolves every reference now that every name is known: adds data and `after` edges,
    /// reports undefined names and bad field accesses, and propagates taint.
    pub(super) fn resolve_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for r in &pending {
            let Some(mut binding) = self.g.bindings.get(&r.path.root.name).copied() else {
                self.undefined(&r.path.root);
                continue;
            };
            if let Some(defs) = self.alt_defs.get(&r.path.root.name) {
                binding = Binding::Node(closest_definition(&self.g.nodes, defs, &r.from));
            }
            self.check_fields(&r.path, binding);
            let targets: Vec<NodeId> = match binding {
                Binding::Param(_) => Vec::new(),
                Binding::Node(n) => vec![n],
                Binding::Group(g) => {
                    let members = self.g.groups[g].members.clone();
                    if members.contains(&r.node) {
                        self.diags.push(
                            DependencyCycle::OwnBlock {
                                at: r.path.span,
                                step: self.g.nodes[r.node].name.clone(),
                                block: r.path.root.name.clone(),
                            }
                            .into(),
                        );
                        continue;
                    }
                    // `{block.step}` needs that step only; `{block}` needs every step.
                    match r
                        .path
                        .fields
                        .first()
                        .and_then(|f| self.g.member(g, &f.name))
                    {
                        Some(m) => vec![m],
                        None => members,
                    }
                }
            };
            // Across a region's edge, a step waits for the region (or may not see the name).
            let mut seen = Vec::new();
            for t in targets {
                if let Some(v) = self.visible_target(t, r)
                    && !seen.contains(&v)
                {
                    seen.push(v);
                }
            }
            // A region's own condition (`until`) reads its body: that is no input of it.
            if let Some(Exec::Region(rid)) = self.g.nodes.get(r.node).map(|n| &n.exec) {
                let members = &self.g.regions[*rid].members;
                seen.retain(|t| !members.contains(t));
            }
            let targets = seen;
            if r.node == usize::MAX {
                continue; // `return`: no node waits.
            }
            if r.kind == DepKind::After && matches!(binding, Binding::Param(_)) {
                self.diags.push(
                    UndefinedName::AfterParameter {
                        at: r.path.span,
                        name: r.path.root.name.clone(),
                    }
                    .into(),
                );
            }
            for t in targets {
                if t == r.node && r.kind != DepKind::Order {
                    self.diags.push(
                        DependencyCycle::OwnOutput {
                            at: r.path.span,
                            step: r.path.root.name.clone(),
                        }
                        .into(),
                    );
                    continue;
                }
                let dep = Dep {
                    node: t,
                    kind: r.kind,
                    span: r.path.span,
                };
                let node = &mut self.g.nodes[r.node];
                if !node.deps.iter().any(|d| d.node == t && d.kind == r.kind) {
                    node.deps.push(dep);
                }
            }
        }
    }

    /// What a reference to node `t` waits for: `t` itself; the region around `t` when the
    /// reference is outside it (a `repeat`'s or `if`'s exported name); nothing for a value
    /// of the previous iteration of a `repeat`, or when `t` is out of reach (reported).
    pub(super) fn visible_target(&mut self, t: NodeId, r: &PendingRef) -> Option<NodeId> {
        let tr = self.g.nodes[t].regions.clone();
        let from = &r.from;
        let mut k = 0;
        while k < tr.len()
            && k < from.len()
            && tr[k].region == from[k].region
            && tr[k].body == from[k].body
        {
            k += 1;
        }
        if k == tr.len() {
            // In reach. Inside a `repeat`, a name defined by a later statement of the body is
            // the previous iteration's value: no wait.
            let prev = (0..k)
                .rev()
                .find(|&j| matches!(self.g.regions[tr[j].region].kind, RegionKind::Repeat { .. }));
            if let Some(j) = prev
                && (tr[j].stmt > from[j].stmt || t == r.node)
                && r.kind == DepKind::Data
            {
                return None;
            }
            return Some(t);
        }
        let rid = tr[k].region;
        let name = r.path.root.name.clone();
        let region = &self.g.regions[rid];
        let inner_for = tr[k..]
            .iter()
            .find(|x| matches!(self.g.regions[x.region].kind, RegionKind::For { .. }))
            .map(|x| x.region);
        if k < from.len() && from[k].region == rid {
            self.diags.push(
                UndefinedName::InOtherBranch {
                    at: r.path.span,
                    name,
                    definition: self.g.nodes[t].span,
                }
                .into(),
            );
            return None;
        }
        if let Some(f) = inner_for {
            let list = self.g.nodes[self.g.regions[f].node].name.clone();
            let named = self.g.bindings.get(&list) == Some(&Binding::Node(self.g.regions[f].node));
            self.diags.push(
                UndefinedName::InsideFor {
                    at: r.path.span,
                    name,
                    block: self.g.regions[f].span,
                    list: named.then_some(list),
                }
                .into(),
            );
            return None;
        }
        match &region.kind {
            RegionKind::If { .. } if !region.exports.contains_key(&name) => {
                let if_at = region.span;
                self.diags.push(
                    UndefinedName::InOneBranch {
                        at: r.path.span,
                        name,
                        if_at,
                    }
                    .into(),
                );
                None
            }
            _ => Some(region.node),
        }
    }

    /// Every region waits for what its steps use from outside it (inner regions first, so
    /// an outer region gets its inner regions' inputs too).
    pub(super) fn lift_region_deps(&mut self) {
        for rid in (0..self.g.regions.len()).rev() {
            let node = self.g.regions[rid].node;
            let members: std::collections::HashSet<NodeId> =
                self.g.regions[rid].members.iter().copied().collect();
            let mut extra = Vec::new();
            for &m in &members {
                for d in &self.g.nodes[m].deps {
                    if !members.contains(&d.node) && d.node != node {
                        extra.push(*d);
                    }
                }
            }
            let deps = &mut self.g.nodes[node].deps;
            for d in extra {
                if !deps.iter().any(|x| x.node == d.node) {
                    deps.push(Dep {
                        kind: DepKind::Data,
                        ..d
                    });
                }
            }
        }
    }

    pub(super) fn undefined(&mut self, name: &Ident) {
        let names: Vec<String> = self.g.bindings.keys().cloned().collect();
        let suggestion =
            did_you_mean(&name.name, names.iter().map(String::as_str)).map(String::from);
        self.diags.push(
            UndefinedName::InWorkflow {
                at: name.span,
                name: name.name.clone(),
                workflow: self.g.name.clone(),
                suggestion,
                is_agent: self.tables.agents.contains_key(&name.name),
                names,
            }
            .into(),
        );
    }

    /// `{a.b}`: only records, json values and named blocks have fields.
    pub(super) fn check_fields(&mut self, path: &Path, binding: Binding) {
        let Some(first) = path.fields.first() else {
            return;
        };
        match binding {
            Binding::Param(i) => {
                let ty = self.g.params[i].ty.clone();
                self.check_field_path(path, ty);
            }
            Binding::Node(n) => {
                let ty = self.node_type(n);
                self.check_field_path(path, ty);
            }
            Binding::Group(g) => {
                let members: Vec<String> = self.g.groups[g]
                    .members
                    .iter()
                    .map(|&n| self.g.nodes[n].name.clone())
                    .collect();
                if !members.contains(&first.name) {
                    self.diags.push(
                        InvalidFieldAccess::NoSuchStep {
                            at: first.span,
                            block: path.root.name.clone(),
                            step: first.name.clone(),
                            suggestion: did_you_mean(
                                &first.name,
                                members.iter().map(String::as_str),
                            )
                            .map(String::from),
                            steps: members,
                        }
                        .into(),
                    );
                } else if path.fields.len() > 1 {
                    self.diags.push(
                        InvalidFieldAccess::StepOutputIsText {
                            at: path.fields[1].span,
                            block: path.root.name.clone(),
                            step: first.name.clone(),
                        }
                        .into(),
                    );
                }
            }
        }
    }

    /// Walks `path`'s fields from a value of type `ty`, reporting the first that is not there.
    pub(super) fn check_field_path(&mut self, path: &Path, mut ty: Type) {
        let mut owner = path.root.name.clone();
        for f in &path.fields {
            match ty.field(&f.name) {
                Some(Some(t)) => ty = t,
                Some(None) => {
                    let fields: Option<Vec<String>> = match &ty {
                        Type::Record(fields) => {
                            Some(fields.iter().map(|(k, _)| k.clone()).collect())
                        }
                        _ => None,
                    };
                    let suggestion = fields.as_ref().and_then(|fields| {
                        did_you_mean(&f.name, fields.iter().map(String::as_str)).map(String::from)
                    });
                    self.diags.push(
                        InvalidFieldAccess::NoSuchField {
                            at: f.span,
                            owner,
                            field: f.name.clone(),
                            ty,
                            suggestion,
                            fields,
                        }
                        .into(),
                    );
                    return;
                }
                None => {
                    let root_is_param = matches!(
                        self.g.bindings.get(&path.root.name),
                        Some(Binding::Param(_))
                    );
                    self.diags.push(
                        InvalidFieldAccess::NoFields {
                            at: f.span,
                            owner,
                            field: f.name.clone(),
                            ty,
                            root: path.root.name.clone(),
                            root_is_param,
                        }
                        .into(),
                    );
                    return;
                }
            }
            owner = format!("{owner}.{}", f.name);
        }
    }
}

/// Of several definitions of a name (one per branch), the one a use at `from` sees: the one
/// sharing the most regions and bodies with it.
pub(super) fn closest_definition(nodes: &[Node], defs: &[NodeId], from: &[InRegion]) -> NodeId {
    let shared = |n: NodeId| {
        nodes[n]
            .regions
            .iter()
            .zip(from)
            .take_while(|(a, b)| a.region == b.region && a.body == b.body)
            .count()
    };
    defs.iter()
        .copied()
        .max_by_key(|&n| (shared(n), std::cmp::Reverse(n)))
        .unwrap_or(defs[0])
}
