//! The DAG of a run as inline SVG: the plan's steps laid out in columns by dependency depth,
//! each region (`parallel for`, `repeat`, `if`, a workflow call) drawn as a box around its
//! steps, nodes coloured by how their executions ended, and an agent loop's tool calls on
//! its node.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::plan::{NodeId, Plan, PlanExec, PlanRegionKind};

use super::esc;

/// Node box width, height; column pitch; vertical gap; a region's label band; padding.
const NODE_W: u32 = 190;
const NODE_H: u32 = 58;
const COL_W: u32 = 260;
const V_GAP: u32 = 16;
const LABEL_H: u32 = 22;
const MARGIN: u32 = 16;

/// What the page knows of one node: how its executions ended and what to print on it. Texts
/// are plain (escaped here).
#[derive(Debug, Clone, Default)]
pub(super) struct NodeInfo {
    /// CSS status word (`succeeded`, `failed`, `reused`, `not-run`, ...).
    pub status: &'static str,
    /// Second line: agent and the model(s) that answered.
    pub detail: String,
    /// Third line, for agent loops: tool calls (`3 calls · read×2 grep`).
    pub tools: Option<String>,
    /// The id of the step's section on the page, when it ran.
    pub anchor: Option<String>,
    /// A tooltip.
    pub title: String,
}

#[derive(Debug, Clone, Copy)]
struct Rect {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
}

struct Layout<'p> {
    plan: &'p Plan,
    children: HashMap<Option<NodeId>, Vec<NodeId>>,
    start: HashMap<NodeId, u32>,
    end: HashMap<NodeId, u32>,
    visiting: Vec<NodeId>,
    rects: HashMap<NodeId, Rect>,
}

fn region_node(plan: &Plan, n: NodeId) -> Option<usize> {
    match plan.nodes.get(n)?.exec {
        PlanExec::Region { region } => Some(region),
        _ => None,
    }
}

fn visible(plan: &Plan, n: NodeId) -> bool {
    plan.nodes
        .get(n)
        .is_some_and(|node| !matches!(node.exec, PlanExec::Item))
}

impl<'p> Layout<'p> {
    fn new(plan: &'p Plan) -> Self {
        let mut children: HashMap<Option<NodeId>, Vec<NodeId>> = HashMap::new();
        for node in plan.nodes.iter().filter(|n| visible(plan, n.id)) {
            let parent = node
                .region
                .and_then(|r| plan.regions.get(r))
                .map(|r| r.node)
                .filter(|p| *p != node.id);
            children.entry(parent).or_default().push(node.id);
        }
        Layout {
            plan,
            children,
            start: HashMap::new(),
            end: HashMap::new(),
            visiting: Vec::new(),
            rects: HashMap::new(),
        }
    }

    /// The region node directly around `n`.
    fn parent(&self, n: NodeId) -> Option<NodeId> {
        let node = self.plan.nodes.get(n)?;
        node.region
            .and_then(|r| self.plan.regions.get(r))
            .map(|r| r.node)
            .filter(|p| *p != n)
    }

    fn is_ancestor(&self, a: NodeId, mut n: NodeId) -> bool {
        let mut hops = 0;
        while let Some(p) = self.parent(n) {
            if p == a {
                return true;
            }
            n = p;
            hops += 1;
            if hops > self.plan.nodes.len() {
                break;
            }
        }
        false
    }

    /// The first column of `n` (for a region: of its box).
    fn start(&mut self, n: NodeId) -> u32 {
        if let Some(s) = self.start.get(&n) {
            return *s;
        }
        if self.visiting.contains(&n) {
            return 0;
        }
        self.visiting.push(n);
        let mut s = match self.parent(n) {
            Some(p) => self.start(p),
            None => 0,
        };
        let deps = self.plan.nodes[n].deps.clone();
        for d in deps {
            if visible(self.plan, d) && !self.is_ancestor(d, n) && d != n {
                s = s.max(self.end(d) + 1);
            }
        }
        self.visiting.retain(|v| *v != n);
        self.start.insert(n, s);
        s
    }

    /// The last column of `n` (for a region: of its box).
    fn end(&mut self, n: NodeId) -> u32 {
        if let Some(e) = self.end.get(&n) {
            return *e;
        }
        let mut e = self.start(n);
        if region_node(self.plan, n).is_some() {
            for c in self.children.get(&Some(n)).cloned().unwrap_or_default() {
                e = e.max(self.end(c));
            }
        }
        self.end.insert(n, e);
        e
    }

    /// Nesting depth of regions inside `n` (0 for a step).
    fn depth(&self, n: NodeId) -> u32 {
        if region_node(self.plan, n).is_none() {
            return 0;
        }
        1 + self
            .children
            .get(&Some(n))
            .into_iter()
            .flatten()
            .map(|c| self.depth(*c))
            .max()
            .unwrap_or(0)
    }

    /// Lays out the children of `parent` from `top` down; returns the height used.
    fn block(&mut self, parent: Option<NodeId>, top: u32) -> u32 {
        let mut kids = self.children.get(&parent).cloned().unwrap_or_default();
        for k in &kids {
            self.start(*k);
            self.end(*k);
        }
        kids.sort_by_key(|k| (self.start[k], *k));
        let mut bottom: HashMap<u32, u32> = HashMap::new();
        let mut used = 0;
        for k in kids {
            let (s, e) = (self.start[&k], self.end[&k]);
            let y = (s..=e)
                .map(|c| bottom.get(&c).copied().unwrap_or(top))
                .max()
                .unwrap_or(top);
            let rect = if region_node(self.plan, k).is_some() {
                let pad = 8 * self.depth(k);
                let inner = self.block(Some(k), y + LABEL_H);
                let h = (inner.max(y + LABEL_H + NODE_H) - y) + pad;
                Rect {
                    x: MARGIN + 24 + s * COL_W - pad,
                    y,
                    w: (e - s) * COL_W + NODE_W + 2 * pad,
                    h,
                }
            } else {
                Rect {
                    x: MARGIN + 24 + s * COL_W,
                    y,
                    w: NODE_W,
                    h: NODE_H,
                }
            };
            for c in s..=e {
                bottom.insert(c, rect.y + rect.h + V_GAP);
            }
            used = used.max(rect.y + rect.h);
            self.rects.insert(k, rect);
        }
        used
    }
}

/// Cuts `s` to `max` characters, with `…`.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A region's label: `parallel for x in plan.tasks`, `repeat max 3 until ok`, ...
fn region_label(plan: &Plan, n: NodeId) -> String {
    let name = &plan.nodes[n].name;
    let Some(r) = region_node(plan, n).and_then(|r| plan.regions.get(r)) else {
        return name.clone();
    };
    let what = match &r.kind {
        PlanRegionKind::For { list, max, .. } => format!(
            "parallel{} for {}",
            max.map(|m| format!(" max {m}")).unwrap_or_default(),
            serde_json::to_value(list)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
        PlanRegionKind::Repeat {
            max,
            until,
            else_fail,
        } => format!(
            "repeat max {max} until {until}{}",
            if *else_fail { " else fail" } else { "" }
        ),
        PlanRegionKind::If { cond } => format!("if {cond}"),
        PlanRegionKind::Call { workflow, .. } => format!("call {workflow}"),
    };
    format!("{name} = {what}")
}

/// The SVG of the plan's DAG, `info` giving each node's status and texts.
pub(super) fn render(plan: &Plan, info: &dyn Fn(NodeId) -> NodeInfo) -> String {
    let mut l = Layout::new(plan);
    let height = l.block(None, MARGIN) + MARGIN;
    let max_col = l.end.values().copied().max().unwrap_or(0);
    let width = MARGIN * 2 + 48 + max_col * COL_W + NODE_W;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="dag-svg" class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="the workflow's steps and their dependencies">"#
    );
    svg.push_str(r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead"/></marker></defs>"#);
    // Regions first (outermost first), so that steps and edges are drawn over them.
    let mut regions: Vec<NodeId> = l
        .rects
        .keys()
        .copied()
        .filter(|n| region_node(plan, *n).is_some())
        .collect();
    regions.sort_by_key(|n| std::cmp::Reverse(l.depth(*n)));
    for n in regions {
        let r = l.rects[&n];
        let i = info(n);
        let label = region_label(plan, n);
        let _ = write!(
            svg,
            r#"<g class="region status-{}" data-node="{}"{}><title>{}</title><rect x="{}" y="{}" width="{}" height="{}" rx="8"/><text class="region-label" x="{}" y="{}">{}</text></g>"#,
            i.status,
            esc(&plan.nodes[n].name),
            anchor_attr(&i),
            esc(&format!("{label}\n{}", i.title)),
            r.x,
            r.y,
            r.w,
            r.h,
            r.x + 8,
            r.y + 15,
            esc(&cut(&label, (r.w / 7) as usize)),
        );
    }
    // Edges.
    for node in plan.nodes.iter().filter(|n| l.rects.contains_key(&n.id)) {
        let to = l.rects[&node.id];
        for d in &node.deps {
            if !l.rects.contains_key(d) || l.is_ancestor(*d, node.id) {
                continue;
            }
            // A dependency of the region around it too: one arrow, to the region.
            let mut up = l.parent(node.id);
            let mut shown = false;
            while let Some(p) = up {
                if plan.nodes[p].deps.contains(d) {
                    shown = true;
                    break;
                }
                up = l.parent(p);
            }
            if shown {
                continue;
            }
            let from = l.rects[d];
            let (x1, y1) = (from.x + from.w, from.y + NODE_H / 2);
            let (x2, y2) = (to.x, to.y + NODE_H / 2);
            let dx = (x2.saturating_sub(x1) / 2).max(20);
            let _ = write!(
                svg,
                r#"<path class="edge" d="M {x1} {y1} C {} {y1}, {} {y2}, {x2} {y2}" marker-end="url(#arrow)"/>"#,
                x1 + dx,
                x2.saturating_sub(dx),
            );
        }
    }
    // Steps.
    for node in plan.nodes.iter() {
        let Some(r) = l.rects.get(&node.id) else {
            continue;
        };
        if region_node(plan, node.id).is_some() {
            continue;
        }
        let i = info(node.id);
        node_svg(&mut svg, *r, &node.name, &i);
    }
    svg.push_str("</svg>");
    svg
}

/// The SVG of steps whose dependencies are unknown (no plan): a grid of nodes, no edges.
pub(super) fn render_unplanned(nodes: &[(String, NodeInfo)]) -> String {
    const PER_ROW: u32 = 4;
    let rows = (nodes.len() as u32).div_ceil(PER_ROW).max(1);
    let width = MARGIN * 2 + PER_ROW * COL_W;
    let height = MARGIN * 2 + rows * (NODE_H + V_GAP);
    let mut svg = format!(
        r#"<svg id="dag-svg" class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="the run's steps">"#
    );
    for (k, (name, i)) in nodes.iter().enumerate() {
        let k = k as u32;
        let r = Rect {
            x: MARGIN + (k % PER_ROW) * COL_W,
            y: MARGIN + (k / PER_ROW) * (NODE_H + V_GAP),
            w: NODE_W,
            h: NODE_H,
        };
        node_svg(&mut svg, r, name, i);
    }
    svg.push_str("</svg>");
    svg
}

fn anchor_attr(i: &NodeInfo) -> String {
    i.anchor
        .as_ref()
        .map(|a| format!(r#" data-step-ref="{}" tabindex="0""#, esc(a)))
        .unwrap_or_default()
}

fn node_svg(svg: &mut String, r: Rect, name: &str, i: &NodeInfo) {
    let chars = (NODE_W / 7) as usize;
    let _ = write!(
        svg,
        r#"<g class="node status-{}" data-node="{}"{}><title>{}</title><rect x="{}" y="{}" width="{}" height="{}" rx="6"/><text class="node-name" x="{}" y="{}">{}</text><text class="node-detail" x="{}" y="{}">{}</text>"#,
        i.status,
        esc(name),
        anchor_attr(i),
        esc(&format!("{name}\n{}", i.title)),
        r.x,
        r.y,
        r.w,
        r.h,
        r.x + 8,
        r.y + 17,
        esc(&cut(name, chars - 2)),
        r.x + 8,
        r.y + 33,
        esc(&cut(&i.detail, chars)),
    );
    if let Some(t) = &i.tools {
        let _ = write!(
            svg,
            r#"<text class="node-tools" x="{}" y="{}">⚒ {}</text>"#,
            r.x + 8,
            r.y + 49,
            esc(&cut(t, chars - 2)),
        );
    }
    svg.push_str("</g>");
}
