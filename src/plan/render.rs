//! The human-readable form of a [`Plan`] (`orch plan FILE`).

use std::fmt::Write as _;

use super::{Plan, PlanExec, PlanNode};

fn thousands(n: u64) -> String {
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
        "  {} steps in {} levels · peak concurrency {} · critical path {} steps: {}",
        plan.nodes.len(),
        plan.levels.len(),
        plan.peak_concurrency,
        plan.critical_path.len(),
        plan.critical_path
            .iter()
            .map(|&i| plan.nodes[i].name.as_str())
            .collect::<Vec<_>>()
            .join(" → ")
    );
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
            render_node(&mut out, plan, &plan.nodes[id]);
        }
    }
    if let Some(o) = &plan.output {
        let _ = writeln!(out, "\nreturns {o}");
    }
    out
}

fn render_node(out: &mut String, plan: &Plan, n: &PlanNode) {
    let what = match &n.exec {
        PlanExec::Model {
            model,
            model_id,
            provider,
            ..
        } => format!("{} on {model} ({provider}: {model_id})", n.agent),
        PlanExec::Command { argv, .. } => format!(
            "{} runs {}",
            n.agent,
            serde_json::to_string(argv).unwrap_or_default()
        ),
    };
    let _ = writeln!(
        out,
        "  {} = {what}   [{}:{}]",
        n.name, n.location.file, n.location.line
    );
    let mut facts = Vec::new();
    if n.deps.is_empty() {
        facts.push("needs nothing".to_string());
    } else {
        facts.push(format!("after {}", names(plan, &n.deps)));
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
        facts.push(format!("timeout {}", crate::run::format_ms(t)));
    }
    if let PlanExec::Model { max_tokens, .. } = &n.exec {
        facts.push(format!("max_tokens {max_tokens}"));
        facts.push(format!("worst case {}", usd(n.worst_case.cost_usd)));
    }
    let _ = writeln!(out, "      {}", facts.join(" · "));
}
