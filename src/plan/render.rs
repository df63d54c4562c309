//! The human-readable form of a [`Plan`] (`orch plan FILE`).

use std::fmt::Write as _;

use super::{Plan, PlanExec, PlanNode};
use crate::common::plural;

/// `1,234,567`: a count with thousands separated by commas.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// USD with enough digits to be meaningful for small amounts.
pub fn usd(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.01 {
        format!("${x:.4}")
    } else {
        format!("${x:.2}")
    }
}

fn names(plan: &Plan, ids: &[usize]) -> String {
    ids.iter()
        .map(|&i| plan.nodes[i].name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders the plan as text: a header with the totals, then each level with its steps.
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    let params = plan
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, p.ty))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = write!(out, "workflow {}({params})", plan.workflow);
    if let Some(b) = plan.budget_usd {
        let _ = write!(out, "  budget {}", usd(b));
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "  {} in {} · peak concurrency {} · critical path {}: {}",
        plural(plan.nodes.len() as u64, "step"),
        plural(plan.levels.len() as u64, "level"),
        plan.peak_concurrency,
        plural(plan.critical_path.len() as u64, "step"),
        plan.critical_path
            .iter()
            .map(|&i| plan.nodes[i].name.as_str())
            .collect::<Vec<_>>()
            .join(" → ")
    );
    if let Some(ms) = plan.critical_path_batch_wait_ms {
        let _ = writeln!(
            out,
            "  the critical path may wait up to {} for provider batches",
            hours(ms)
        );
    }
    for b in &plan.batches {
        let _ = writeln!(
            out,
            "  batch at {}:{}:{}: {} in one provider batch{}, answered within {} (the batch window), at {}% of the models' prices",
            b.location.file,
            b.location.line,
            b.location.column,
            if b.steps.is_empty() {
                "no model steps".to_string()
            } else {
                format!("the requests of {}", names(plan, &b.steps))
            },
            b.max.map_or(String::new(), |m| format!(" of at most {m}")),
            hours(b.window_ms),
            (crate::common::BATCH_PRICE_FACTOR * 100.0).round()
        );
    }
    let w = plan.worst_case;
    let _ = writeln!(
        out,
        "  worst case: {} tokens in, {} tokens out, {}{}",
        thousands(w.input_tokens),
        thousands(w.output_tokens),
        usd(w.cost_usd),
        match plan.budget_usd {
            Some(b) if w.cost_usd > b => format!(
                " (over the {} budget: the run stops before overrunning it)",
                usd(b)
            ),
            _ => String::new(),
        }
    );
    for g in &plan.groups {
        let Some(b) = g.budget_usd else { continue };
        let worst: f64 = g
            .members
            .iter()
            .map(|&m| plan.nodes[m].worst_case.cost_usd)
            .sum();
        let label = match &g.name {
            Some(n) => format!("block `{n}`"),
            None => format!("the block of {}", names(plan, &g.members)),
        };
        let _ = writeln!(
            out,
            "  {label}: budget {}, worst case {}{}",
            usd(b),
            usd(worst),
            if worst > b {
                " (over: its steps stop before overrunning it)"
            } else {
                ""
            }
        );
    }
    let reduced = reduced_deps(plan);
    let width = plan.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    for (i, level) in plan.levels.iter().enumerate() {
        let _ = writeln!(
            out,
            "\nlevel {} ({})",
            i + 1,
            if level.len() == 1 {
                "1 step".to_string()
            } else {
                format!("{} steps, together", level.len())
            }
        );
        for &id in level {
            render_node(&mut out, plan, &plan.nodes[id], &reduced[id], width);
        }
    }
    render_tools(&mut out, plan);
    if let Some(o) = &plan.output {
        let _ = writeln!(out, "\nreturns {o}");
    }
    out
}

/// For each node, its dependencies minus those implied by others (the transitive reduction):
/// what a reader needs to see ([`super::reduce`]).
fn reduced_deps(plan: &Plan) -> Vec<Vec<usize>> {
    let deps: Vec<Vec<usize>> = plan.nodes.iter().map(|n| n.deps.clone()).collect();
    super::reduce::transitive_reduction(&deps)
}

/// What a region does, in words (`for each item of items: 2 steps`).
pub(super) fn region_text(plan: &Plan, r: usize) -> String {
    use crate::plan::PlanRegionKind as K;
    let region = &plan.regions[r];
    let steps = region
        .members
        .iter()
        .filter(|&&m| !matches!(plan.nodes[m].exec, PlanExec::Item))
        .count();
    let steps = plural(steps as u64, "step");
    match &region.kind {
        K::For {
            list, max, gather, ..
        } => {
            let at_once = max
                .map(|m| format!(", at most {m} at once"))
                .unwrap_or_default();
            // A tolerant `gather` after the block decides which instances it needs.
            let policy = gather
                .filter(|p| *p != crate::common::Policy::All)
                .map(|p| format!(", gathered <{p}>"))
                .unwrap_or_default();
            format!("for each item of {list}{at_once}{policy}: {steps}")
        }
        K::Repeat {
            max,
            until,
            else_fail,
        } => {
            let or_fail = if *else_fail { " else fail" } else { "" };
            format!(
                "repeat up to {} until {until}{or_fail}: {steps}",
                plural(*max, "time")
            )
        }
        K::If { cond } => format!("if {cond}: {steps}"),
        K::Call { workflow, .. } => format!("calls workflow {workflow}: {steps}"),
    }
}

fn render_node(out: &mut String, plan: &Plan, n: &PlanNode, reduced: &[usize], width: usize) {
    let what = match &n.exec {
        PlanExec::Model {
            model,
            model_id,
            provider,
            ..
        } => {
            format!("{} on {model} [{provider}: {model_id}]", n.agent)
        }
        PlanExec::Command { argv, .. } => {
            format!(
                "{} runs {}",
                n.agent,
                serde_json::to_string(argv).unwrap_or_default()
            )
        }
        PlanExec::Region { region } => region_text(plan, *region),
        PlanExec::Item => "one item per instance".to_string(),
        PlanExec::Approval => "approval: ask a person".to_string(),
    };
    let _ = writeln!(
        out,
        "  {:<width$}  {what}   ({}:{})",
        n.name, n.location.file, n.location.line
    );
    let mut facts = Vec::new();
    if reduced.is_empty() {
        facts.push("starts at once".to_string());
    } else {
        facts.push(format!("after {}", names(plan, reduced)));
    }
    let mut uses: Vec<String> = Vec::new();
    for t in n.prompt.iter().chain(n.args.values()) {
        for i in t.interps() {
            if !uses.contains(&i.path) {
                uses.push(i.path.clone());
            }
        }
    }
    if !uses.is_empty() {
        facts.push(format!("uses {}", uses.join(", ")));
    }
    if let Some(j) = &n.join {
        let g = &plan.groups[j.group];
        facts.push(format!(
            "gathers {} <{}>",
            g.name.as_deref().unwrap_or("the block before"),
            j.policy
        ));
    }
    if let Some(&g) = n.groups.last() {
        let g = &plan.groups[g];
        let name = g
            .name
            .as_deref()
            .map(|s| format!("`{s}`"))
            .unwrap_or_else(|| "parallel block".into());
        facts.push(match g.max {
            Some(m) => format!("in {name} (max {m})"),
            None => format!("in {name}"),
        });
    }
    if let Some(r) = n.region {
        let r = &plan.regions[r];
        facts.push(format!("in `{}`", plan.nodes[r.node].name));
    }
    if n.runs > 1 {
        facts.push(format!("up to {} runs", n.runs));
    }
    if let PlanExec::Model {
        fallback: Some(f), ..
    } = &n.exec
    {
        facts.push(format!("fallback {f}"));
    }
    if n.retry > 0 {
        facts.push(format!("retry {}", n.retry));
    }
    if let Some(t) = n.timeout_ms {
        facts.push(format!("timeout {}", crate::common::format_duration(t)));
    }
    if let Some(t) = n.deadline_ms {
        facts.push(format!("deadline {}", crate::common::format_duration(t)));
    }
    if let PlanExec::Model {
        max_tokens, tools, ..
    } = &n.exec
    {
        facts.push(format!("max_tokens {max_tokens}"));
        if n.batch.is_some() {
            facts.push(format!(
                "batched (up to {}, at the batch price)",
                hours(crate::common::BATCH_WINDOW_MS)
            ));
        }
        facts.extend(tools.iter().flat_map(tools_facts));
        facts.push(format!("worst case {}", usd(n.worst_case.cost_usd)));
    }
    let _ = writeln!(out, "  {:<width$}  {}", "", facts.join(" · "));
}

/// An agent loop's facts: its grants, turns and tool timeout.
fn tools_facts(t: &crate::plan::PlanTools) -> Vec<String> {
    let grants: Vec<String> = t.grants.iter().map(|g| g.source()).collect();
    let mut facts = vec![
        format!("tools [{}]", grants.join(", ")),
        format!("agent loop of up to {} turns", t.max_turns),
    ];
    if let Some(ms) = t.tool_timeout_ms {
        facts.push(format!(
            "tool_timeout {}",
            crate::common::format_duration(ms)
        ));
    }
    facts
}

/// The agents steps may delegate to and the MCP servers they use, after the levels.
fn render_tools(out: &mut String, plan: &Plan) {
    if !plan.delegates.is_empty() {
        let _ = writeln!(out, "\ndelegates (each delegation is a nested agent loop)");
        let width = plan.delegates.keys().map(String::len).max().unwrap_or(0);
        for d in plan.delegates.values() {
            let PlanExec::Model {
                model,
                model_id,
                provider,
                max_tokens,
                tools,
                ..
            } = &d.exec
            else {
                continue;
            };
            let _ = writeln!(
                out,
                "  {:<width$}  on {model} [{provider}: {model_id}]",
                d.agent
            );
            let mut facts = vec![format!("max_tokens {max_tokens}")];
            if d.retry > 0 {
                facts.push(format!("retry {}", d.retry));
            }
            facts.extend(tools.iter().flat_map(tools_facts));
            facts.push(format!(
                "worst case per delegation {}",
                usd(d.worst_case.cost_usd)
            ));
            let _ = writeln!(out, "  {:<width$}  {}", "", facts.join(" · "));
        }
    }
    if !plan.mcp.is_empty() {
        let _ = writeln!(out, "\nmcp servers (started when a step first needs one)");
        let width = plan.mcp.keys().map(String::len).max().unwrap_or(0);
        for (name, server) in &plan.mcp {
            let how = match server {
                crate::grant::McpServer::Stdio { command, .. } => {
                    format!(
                        "runs {}",
                        serde_json::to_string(command).unwrap_or_default()
                    )
                }
                crate::grant::McpServer::Http { url } => format!("at {url}"),
            };
            let _ = writeln!(out, "  {name:<width$}  {how}");
            for tool in plan.mcp_tools.get(name).into_iter().flatten() {
                let _ = writeln!(out, "  {:<width$}    {}{}", "", tool.name, hints(tool));
            }
        }
    }
}

/// A tool's annotations as `orch plan --mcp` shows them: ` (read-only)`, ` (destructive)`,
/// or nothing when the server gives no hint.
fn hints(tool: &super::McpToolNote) -> String {
    let mut said = Vec::new();
    match tool.read_only {
        Some(true) => said.push("read-only"),
        Some(false) => said.push("writes"),
        None => {}
    }
    if tool.destructive == Some(true) {
        said.push("destructive");
    }
    if said.is_empty() {
        String::new()
    } else {
        format!(" ({})", said.join(", "))
    }
}

/// A duration for people, whole hours as `24h` ([`crate::common::format_duration`] otherwise).
fn hours(ms: u64) -> String {
    if ms >= 3_600_000 && ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else {
        crate::common::format_duration(ms)
    }
}
