//! Pictures of a [`Plan`]'s DAG: Graphviz DOT (`orch plan --format dot`) and a Mermaid
//! flowchart (`orch plan --format mermaid`, which GitHub renders in a ```` ```mermaid ````
//! block of Markdown).
//!
//! Both draw the same graph:
//! - a node per step, labelled with its name and what runs it: `agent · model` for a model
//!   step, `agent · command` for a command, the region's description for a region's own node
//!   (`for each item of items: 2 steps`), `item` for a `parallel for`'s variable and
//!   `approval` for `approve(...)`;
//! - the edges the text form shows, the transitive reduction of the dependencies: solid when
//!   the step interpolates the other's output, dashed for an order alone (sequence, `after`,
//!   a `gather`'s join);
//! - each region (`parallel for`, `repeat`, `if`, a workflow call) as a cluster (DOT) or a
//!   subgraph (Mermaid) holding its own node and its body, nested as the regions are; a dotted
//!   line without an arrow goes from the region's node to each body step that starts with the
//!   body (a body runs when its region starts).
//!
//! Node ids are `n{id}` (the plan's node index) and cluster ids `r{id}` (the region index), so
//! the output is stable for a given script. Text from the script is escaped for each format
//! (DOT: `\` and `"`; Mermaid: HTML entities as `#quot;`), and long labels are cut at
//! [`MAX_LABEL_CHARS`] characters with `…`.

use std::fmt::Write as _;

use super::{Plan, PlanExec, PlanNode};

/// The longest line of a label, in characters, before it is cut with `…`.
pub const MAX_LABEL_CHARS: usize = 60;

/// The kind of an edge of the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    /// The step interpolates the other's output.
    Data,
    /// An order without data.
    Order,
    /// From a region's node to a step its body starts with.
    Body,
}

/// The graph both formats draw: per region, the nodes directly in it; edges by kind.
struct Picture {
    /// Nodes at the top of the workflow (in no region), in plan order.
    top: Vec<usize>,
    /// For each region: its own node and the nodes directly in its bodies, in plan order.
    in_region: Vec<Vec<usize>>,
    /// For each region: the regions directly inside it.
    children: Vec<Vec<usize>>,
    /// Regions at the top of the workflow.
    top_regions: Vec<usize>,
    /// `(from, to, kind)`, ordered by `to` then `from`.
    edges: Vec<(usize, usize, Edge)>,
}

fn picture(plan: &Plan) -> Picture {
    let regions = plan.regions.len();
    let mut in_region = vec![Vec::new(); regions];
    let mut top = Vec::new();
    // A region's own node is drawn inside its cluster: the cluster stands for the region.
    let own_region = |n: &PlanNode| match n.exec {
        PlanExec::Region { region } => Some(region),
        _ => n.region,
    };
    for n in &plan.nodes {
        match own_region(n) {
            Some(r) => in_region[r].push(n.id),
            None => top.push(n.id),
        }
    }
    let mut children = vec![Vec::new(); regions];
    let mut top_regions = Vec::new();
    for r in &plan.regions {
        match plan.nodes[r.node].region {
            Some(parent) => children[parent].push(r.id),
            None => top_regions.push(r.id),
        }
    }
    let deps: Vec<Vec<usize>> = plan.nodes.iter().map(|n| n.deps.clone()).collect();
    let reduced = super::reduce::transitive_reduction(&deps);
    let mut edges = Vec::new();
    for n in &plan.nodes {
        for &d in &reduced[n.id] {
            let kind = if n.data_deps.contains(&d) {
                Edge::Data
            } else {
                Edge::Order
            };
            edges.push((d, n.id, kind));
        }
        // A step that starts with its body: nothing it waits for is inside the same region.
        if let Some(r) = n.region
            && !reduced[n.id].iter().any(|&d| is_inside(plan, d, r))
        {
            edges.push((plan.regions[r].node, n.id, Edge::Body));
        }
    }
    Picture {
        top,
        in_region,
        children,
        top_regions,
        edges,
    }
}

/// Whether step `id` is inside region `r`, at any depth (the region's own node is not).
fn is_inside(plan: &Plan, id: usize, r: usize) -> bool {
    let mut cur = plan.nodes[id].region;
    while let Some(x) = cur {
        if x == r {
            return true;
        }
        cur = plan.nodes[plan.regions[x].node].region;
    }
    false
}

/// A label's second line: what runs the step.
fn what(plan: &Plan, n: &PlanNode) -> String {
    match &n.exec {
        PlanExec::Model { model, .. } => format!("{} · {model}", n.agent),
        PlanExec::Command { .. } => format!("{} · command", n.agent),
        PlanExec::Region { region } => super::render::region_text(plan, *region),
        PlanExec::Item => "item".to_string(),
        PlanExec::Approval => "approval".to_string(),
    }
}

/// A region's cluster title: its kind and the name of its node.
fn region_title(plan: &Plan, r: usize) -> String {
    use super::PlanRegionKind as K;
    let region = &plan.regions[r];
    let kind = match region.kind {
        K::For { .. } => "parallel for",
        K::Repeat { .. } => "repeat",
        K::If { .. } => "if",
        K::Call { .. } => "call",
    };
    let name = &plan.nodes[region.node].name;
    // An unnamed region's generated name (`repeat#1`) would only repeat the kind.
    if name.contains('#') {
        kind.to_string()
    } else {
        format!("{kind} {name}")
    }
}

/// `s` cut to [`MAX_LABEL_CHARS`] characters (the last one `…`), on one line.
fn cut(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= MAX_LABEL_CHARS {
        return one_line;
    }
    let mut out: String = one_line.chars().take(MAX_LABEL_CHARS - 1).collect();
    out.push('…');
    out
}

/// A DOT double-quoted string's content: `\` and `"` escaped.
fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The DOT attributes of a node's shape, by what it runs.
fn dot_shape(n: &PlanNode) -> &'static str {
    match n.exec {
        PlanExec::Model { .. } => "shape=box, style=rounded",
        PlanExec::Command { .. } => "shape=box",
        PlanExec::Region { .. } => "shape=folder",
        PlanExec::Item => "shape=ellipse",
        PlanExec::Approval => "shape=hexagon",
    }
}

/// Renders the plan as a Graphviz digraph (`dot -Tsvg plan.dot > plan.svg`): regions as
/// `cluster_r{id}` subgraphs, nodes `n{id}` labelled with the step's name and its agent and
/// model (see the module's documentation for the whole picture).
pub fn render_dot(plan: &Plan) -> String {
    let pic = picture(plan);
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(&plan.workflow));
    let _ = writeln!(
        out,
        "  label=\"{}\";\n  labelloc=t;\n  rankdir=TB;\n  fontname=\"Helvetica\";\n  node [fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=9];",
        dot_escape(&cut(&signature(plan)))
    );
    for &id in &pic.top {
        dot_node(&mut out, plan, id, 1);
    }
    for &r in &pic.top_regions {
        dot_cluster(&mut out, plan, &pic, r, 1);
    }
    for &(from, to, kind) in &pic.edges {
        let style = match kind {
            Edge::Data => "",
            Edge::Order => " [style=dashed]",
            Edge::Body => " [style=dotted, arrowhead=none]",
        };
        let _ = writeln!(out, "  n{from} -> n{to}{style};");
    }
    out.push_str("}\n");
    out
}

fn dot_node(out: &mut String, plan: &Plan, id: usize, depth: usize) {
    let n = &plan.nodes[id];
    let label = format!(
        "{}\\n{}",
        dot_escape(&cut(&n.name)),
        dot_escape(&cut(&what(plan, n)))
    );
    let _ = writeln!(
        out,
        "{:indent$}n{id} [label=\"{label}\", {}];",
        "",
        dot_shape(n),
        indent = depth * 2
    );
}

fn dot_cluster(out: &mut String, plan: &Plan, pic: &Picture, r: usize, depth: usize) {
    let pad = " ".repeat(depth * 2);
    let _ = writeln!(out, "{pad}subgraph cluster_r{r} {{");
    let _ = writeln!(
        out,
        "{pad}  label=\"{}\";\n{pad}  style=\"rounded,dashed\";\n{pad}  color=gray40;",
        dot_escape(&cut(&region_title(plan, r)))
    );
    for &id in &pic.in_region[r] {
        dot_node(out, plan, id, depth + 1);
    }
    for &child in &pic.children[r] {
        dot_cluster(out, plan, pic, child, depth + 1);
    }
    let _ = writeln!(out, "{pad}}}");
}

/// `workflow main(request: text)`: the title of both pictures.
fn signature(plan: &Plan) -> String {
    let params = plan
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, p.ty))
        .collect::<Vec<_>>()
        .join(", ");
    format!("workflow {}({params})", plan.workflow)
}

/// Text for a Mermaid label in `"..."`: the characters Mermaid or HTML would read as syntax
/// written as Mermaid's entity codes (`#quot;`, `#lt;`, ...).
fn mermaid_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '#' => out.push_str("#35;"),
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '`' => out.push_str("#96;"),
            c => out.push(c),
        }
    }
    out
}

/// The Mermaid brackets of a node's shape, by what it runs.
fn mermaid_shape(n: &PlanNode) -> (&'static str, &'static str) {
    match n.exec {
        PlanExec::Model { .. } => ("(", ")"),
        PlanExec::Command { .. } => ("[", "]"),
        PlanExec::Region { .. } => ("[[", "]]"),
        PlanExec::Item => ("([", "])"),
        PlanExec::Approval => ("{{", "}}"),
    }
}

/// Renders the plan as a Mermaid flowchart (top to bottom), for a ```` ```mermaid ```` block
/// in Markdown: regions as `r{id}` subgraphs, nodes `n{id}` labelled with the step's name and
/// its agent and model (see the module's documentation for the whole picture).
pub fn render_mermaid(plan: &Plan) -> String {
    let pic = picture(plan);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "---\ntitle: \"{}\"\n---\nflowchart TB",
        cut(&signature(plan)).replace('"', "'")
    );
    for &id in &pic.top {
        mermaid_node(&mut out, plan, id, 1);
    }
    for &r in &pic.top_regions {
        mermaid_subgraph(&mut out, plan, &pic, r, 1);
    }
    for &(from, to, kind) in &pic.edges {
        let arrow = match kind {
            Edge::Data => "-->",
            Edge::Order => "-.->",
            Edge::Body => "-.-",
        };
        let _ = writeln!(out, "  n{from} {arrow} n{to}");
    }
    out
}

fn mermaid_node(out: &mut String, plan: &Plan, id: usize, depth: usize) {
    let n = &plan.nodes[id];
    let (open, close) = mermaid_shape(n);
    let _ = writeln!(
        out,
        "{:indent$}n{id}{open}\"{}<br/>{}\"{close}",
        "",
        mermaid_escape(&cut(&n.name)),
        mermaid_escape(&cut(&what(plan, n))),
        indent = depth * 2
    );
}

fn mermaid_subgraph(out: &mut String, plan: &Plan, pic: &Picture, r: usize, depth: usize) {
    let pad = " ".repeat(depth * 2);
    let _ = writeln!(
        out,
        "{pad}subgraph r{r}[\"{}\"]",
        mermaid_escape(&cut(&region_title(plan, r)))
    );
    for &id in &pic.in_region[r] {
        mermaid_node(out, plan, id, depth + 1);
    }
    for &child in &pic.children[r] {
        mermaid_subgraph(out, plan, pic, child, depth + 1);
    }
    let _ = writeln!(out, "{pad}end");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_cut_to_one_line() {
        assert_eq!(cut("a\nb"), "a b");
        let long = "x".repeat(MAX_LABEL_CHARS + 5);
        let c = cut(&long);
        assert_eq!(c.chars().count(), MAX_LABEL_CHARS);
        assert!(c.ends_with('…'));
    }

    #[test]
    fn escapes_keep_each_format_s_syntax() {
        assert_eq!(dot_escape(r#"say "hi" \o/"#), r#"say \"hi\" \\o/"#);
        assert_eq!(
            mermaid_escape("a \"b\" <c> & #d `e`"),
            "a #quot;b#quot; #lt;c#gt; #amp; #35;d #96;e#96;"
        );
    }
}
