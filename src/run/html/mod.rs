//! The HTML run report: one self-contained page (inline CSS, JS and SVG; nothing fetched) of
//! what a run did — the DAG with each step coloured by how it ended, its regions and an
//! agent loop's tool calls; a timeline of every attempt and the waits before them; per step
//! the model that answered, tokens, cost, attempts, and each attempt's system text, prompt
//! and answer (collapsible); totals against the budgets.
//!
//! The page is made from a [`RunView`]: from a run's journal ([`RunView::from_log`]; `orch
//! report RUN_ID`, and `orch run --report run.html` of a journalled run) or from a run's
//! report and attempts ([`RunView::from_report`], for `--no-journal`). With the run's
//! [`Plan`] the DAG has its dependencies and regions, and the totals its budgets; without
//! one (the script changed since the run, or is gone) the steps are drawn without edges.
//!
//! Every text that reaches the page goes through [`crate::redact::redact`] and is then
//! HTML-escaped ([`esc`]), attribute values included: a prompt holding `<script>` shows as
//! text.

mod dag;
mod timeline;
mod view;

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub use view::{RunView, StepView};

use super::journal::{AttemptRecord, TextDigest};
use super::{StepReport, StepStatus, ToolCallReport};
use crate::common::format_duration;
use crate::plan::render::usd;
use crate::plan::{NodeId, Plan};
use crate::redact::redact;

const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// `s` redacted, then escaped for HTML text and attribute values (`&`, `<`, `>`, `"`, `'`).
pub fn esc(s: &str) -> String {
    let r = redact(s);
    let mut out = String::with_capacity(r.as_str().len());
    for c in r.as_str().chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A duration for people (`850ms`, `1.2s`, `3m 5s`).
fn ms(t: u64) -> String {
    format_duration(t)
}

fn dag_cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The CSS status word of a step execution.
fn status_word(s: &StepView) -> &'static str {
    match &s.report.status {
        StepStatus::Succeeded if s.reused => "reused",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed(_) => "failed",
        StepStatus::Skipped(_) => "skipped",
        StepStatus::Cancelled => "cancelled",
        StepStatus::Interrupted => "interrupted",
    }
}

/// The id of step execution `i`'s section.
fn anchor(i: usize) -> String {
    format!("step-{i}")
}

/// Whether the execution named `exec` is one of plan node `node`: the node itself, an
/// instance of a `parallel for` (`post[2]`) or `repeat` (`draft#3`).
fn is_execution_of(exec: &str, node: &str) -> bool {
    exec.strip_prefix(node)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('[') || rest.starts_with('#'))
}

/// The page of `view`; `plan` (the run's plan, when it is known) gives the DAG its edges and
/// regions and the totals their budgets.
pub fn render(view: &RunView, plan: Option<&Plan>) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let title = format!(
        "{} · {}{}",
        view.workflow,
        view.status,
        view.run_id
            .as_ref()
            .map(|i| format!(" · run {i}"))
            .unwrap_or_default()
    );
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n<title>orch · {}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    header(&mut h, view);
    totals(&mut h, view, plan);
    let _ = write!(h, "<section id=\"dag\"><h2>DAG</h2>");
    h.push_str(&dag_svg(view, plan));
    legend(&mut h);
    h.push_str("</section>\n<section id=\"timeline\"><h2>Timeline</h2>");
    h.push_str(&timeline::render(view, &anchor));
    h.push_str("<p class=\"legend\"><span class=\"swatch attempt-ok\"></span>attempt <span class=\"swatch attempt-truncated\"></span>cut by the token limit <span class=\"swatch attempt-failed\"></span>failed attempt <span class=\"swatch wait\"></span>backoff or rate-limit wait <span class=\"swatch span\"></span>step</p></section>\n");
    steps(&mut h, view, plan);
    let _ = write!(
        h,
        "<footer>made by orch {} · self-contained: no network</footer>\n<script>\n{JS}</script>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    h
}

fn header(h: &mut String, view: &RunView) {
    let _ = write!(
        h,
        "<header id=\"run\"><h1>{} <span class=\"badge status-{}\">{}</span></h1><dl class=\"facts\">",
        esc(&view.workflow),
        esc(&view.status),
        esc(&view.status)
    );
    let mut fact = |k: &str, v: String| {
        let _ = write!(h, "<dt>{k}</dt><dd>{v}</dd>");
    };
    if let Some(id) = &view.run_id {
        fact("run", format!("<code>{}</code>", esc(id)));
    }
    if let Some(s) = &view.script {
        fact("script", format!("<code>{}</code>", esc(s)));
    }
    if let Some(t) = &view.target {
        fact("models ran on", esc(t));
    }
    if let Some(at) = view.started_at_ms {
        let when = jiff::Timestamp::from_millisecond(at as i64)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        fact("started", esc(&when));
    }
    fact("wall time", esc(&ms(view.wall_ms)));
    if let Some(why) = &view.stopped {
        fact(
            "stopped",
            format!("<span class=\"error\">{}</span>", esc(why)),
        );
    }
    h.push_str("</dl>");
    for n in &view.notes {
        let _ = write!(h, "<p class=\"note\">{}</p>", esc(n));
    }
    let warnings: Vec<(&str, &str)> = view
        .steps
        .iter()
        .flat_map(|s| {
            s.report
                .warnings
                .iter()
                .map(|w| (s.report.name.as_str(), w.as_str()))
        })
        .chain(view.warnings.iter().map(|(a, b)| (a.as_str(), b.as_str())))
        .collect();
    if !warnings.is_empty() {
        h.push_str("<ul class=\"warnings\" id=\"warnings\">");
        for (step, w) in warnings {
            let _ = write!(h, "<li>⚠ <b>{}</b>: {}</li>", esc(step), esc(w));
        }
        h.push_str("</ul>");
    }
    h.push_str("<p class=\"controls\"><button type=\"button\" id=\"expand-all\">expand all</button> <button type=\"button\" id=\"collapse-all\">collapse all</button></p></header>\n");
}

/// A `<meter>` of `used` against `limit`, with the numbers.
fn meter(used: f64, limit: f64) -> String {
    let pct = if limit > 0.0 {
        used / limit * 100.0
    } else {
        0.0
    };
    format!(
        "<meter min=\"0\" max=\"{limit}\" low=\"{}\" high=\"{}\" optimum=\"0\" value=\"{used}\"></meter> {} of {} ({pct:.0}%)",
        limit * 0.8,
        limit * 0.95,
        esc(&usd(used)),
        esc(&usd(limit))
    )
}

fn totals(h: &mut String, view: &RunView, plan: Option<&Plan>) {
    let (ok, all) = view.counts.unwrap_or_else(|| {
        let ok = view
            .steps
            .iter()
            .filter(|s| s.report.status == StepStatus::Succeeded)
            .count();
        (ok, view.steps.len())
    });
    let attempts: u32 = view.steps.iter().map(|s| s.report.attempts).sum();
    let approx = if view.usage.estimated { "~" } else { "" };
    let _ = write!(
        h,
        "<section id=\"totals\"><h2>Totals</h2><table class=\"totals\"><tbody><tr><th>steps</th><td>{ok}/{all} succeeded</td></tr><tr><th>attempts</th><td>{attempts}</td></tr><tr><th>tokens</th><td>{approx}{} in · {approx}{} out</td></tr><tr><th>cost</th><td>{}</td></tr><tr><th>wall time</th><td>{}</td></tr>",
        view.usage.input_tokens,
        view.usage.output_tokens,
        esc(&usd(view.cost_usd)),
        esc(&ms(view.wall_ms)),
    );
    if let Some(plan) = plan {
        match plan.budget_usd {
            Some(b) => {
                let _ = write!(
                    h,
                    "<tr class=\"budget\"><th>budget of {}</th><td>{}</td></tr>",
                    esc(&plan.workflow),
                    meter(view.cost_usd, b)
                );
            }
            None => h.push_str("<tr class=\"budget\"><th>budget</th><td>none set</td></tr>"),
        }
        for g in plan.groups.iter() {
            let Some(b) = g.budget_usd else { continue };
            let spent: f64 = view
                .steps
                .iter()
                .filter(|s| {
                    g.members
                        .iter()
                        .any(|m| is_execution_of(&s.report.name, &plan.nodes[*m].name))
                })
                .map(|s| s.report.cost_usd)
                .sum();
            let _ = write!(
                h,
                "<tr class=\"budget\"><th>budget of block {}</th><td>{}</td></tr>",
                esc(g.name.as_deref().unwrap_or("(unnamed)")),
                meter(spent, b)
            );
        }
        let w = plan.worst_case;
        let _ = write!(
            h,
            "<tr><th>worst case (plan)</th><td>{} in · {} out · {}</td></tr>",
            w.input_tokens,
            w.output_tokens,
            esc(&usd(w.cost_usd))
        );
    }
    if view.usage.estimated {
        h.push_str("<tr><th></th><td class=\"note\">~ estimated: the server sent no token counts</td></tr>");
    }
    h.push_str("</tbody></table></section>\n");
}

fn legend(h: &mut String) {
    h.push_str("<p class=\"legend\">");
    for s in [
        "succeeded",
        "reused",
        "failed",
        "interrupted",
        "skipped",
        "cancelled",
        "not-run",
    ] {
        let _ = write!(
            h,
            "<span class=\"swatch node-{s}\"></span>{} ",
            s.replace('-', " ")
        );
    }
    h.push_str("· dashed boxes: regions (parallel for, repeat, if, workflow calls) · ⚒ tool calls of an agent loop</p>");
}

/// Counts of an agent loop's calls: `5 calls · read×3 grep×2` (nested steps' calls in their
/// own steps).
fn tool_summary<'a>(calls: impl Iterator<Item = &'a ToolCallReport>) -> Option<String> {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    let mut n = 0;
    for c in calls {
        *by.entry(c.tool.as_str()).or_default() += 1;
        n += 1;
    }
    if n == 0 {
        return None;
    }
    let mut tools: Vec<(&str, usize)> = by.into_iter().collect();
    tools.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let list: Vec<String> = tools
        .iter()
        .map(|(t, k)| {
            if *k > 1 {
                format!("{t}×{k}")
            } else {
                t.to_string()
            }
        })
        .collect();
    Some(format!(
        "{n} call{} · {}",
        if n == 1 { "" } else { "s" },
        list.join(" ")
    ))
}

fn dag_svg(view: &RunView, plan: Option<&Plan>) -> String {
    let info_of = |execs: &[(usize, &StepView)], agent: &str| -> dag::NodeInfo {
        let status = if execs.is_empty() {
            "not-run"
        } else {
            let words: Vec<&str> = execs.iter().map(|(_, s)| status_word(s)).collect();
            [
                "failed",
                "interrupted",
                "cancelled",
                "skipped",
                "succeeded",
                "reused",
            ]
            .into_iter()
            .find(|w| words.contains(w))
            .unwrap_or("succeeded")
        };
        let mut models: Vec<String> = Vec::new();
        for (_, s) in execs {
            if let Some(m) = &s.report.model
                && !models.contains(m)
            {
                models.push(m.clone());
            }
        }
        let mut served = served_models(view, execs.iter().map(|(_, s)| s.report.name.as_str()));
        for (_, s) in execs {
            if let Some(m) = &s.report.served_model
                && !served.contains(m)
            {
                served.push(m.clone());
            }
        }
        let mut detail = agent.to_string();
        if !models.is_empty() {
            let _ = write!(detail, " · {}", models.join(", "));
        }
        if !served.is_empty() && served != models {
            let _ = write!(detail, " (served: {})", served.join(", "));
        }
        if execs.len() > 1 {
            let _ = write!(detail, " · ×{}", execs.len());
        }
        let tools = tool_summary(
            execs
                .iter()
                .filter_map(|(_, s)| s.report.agent_loop.as_ref())
                .flat_map(|l| l.tool_calls.iter()),
        );
        let title = execs
            .iter()
            .map(|(_, s)| {
                let mut t = format!("{}: {}", s.report.name, status_word(s));
                for w in &s.report.warnings {
                    let _ = write!(t, "\n  ⚠ {w}");
                }
                t
            })
            .collect::<Vec<_>>()
            .join("\n");
        dag::NodeInfo {
            status,
            detail,
            tools,
            anchor: execs.first().map(|(i, _)| anchor(*i)),
            title: if title.is_empty() {
                "not run".to_string()
            } else {
                title
            },
        }
    };
    match plan {
        Some(plan) => {
            let info = |n: NodeId| info_of(&node_execs(view, plan, n), &plan.nodes[n].agent);
            dag::render(plan, &info)
        }
        None => {
            let mut nodes: Vec<(String, dag::NodeInfo)> = view
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| (s.report.name.clone(), info_of(&[(i, s)], &s.report.agent)))
                .collect();
            for p in not_run(view, None) {
                nodes.push((p.to_string(), info_of(&[], "")));
            }
            dag::render_unplanned(&nodes)
        }
    }
}

/// The executions of plan node `n`: the node's own (`post`, `post[2]`, `draft#3`), and for a
/// region, those of every step inside it (a journal records a region's steps, not the region).
fn node_execs<'v>(view: &'v RunView, plan: &Plan, n: NodeId) -> Vec<(usize, &'v StepView)> {
    let mut nodes = vec![n];
    if let crate::plan::PlanExec::Region { region } = plan.nodes[n].exec
        && let Some(r) = plan.regions.get(region)
    {
        nodes.extend(r.members.iter().copied());
    }
    let names: Vec<String> = nodes.iter().map(|m| instance_name(plan, *m)).collect();
    view.steps
        .iter()
        .enumerate()
        .filter(|(_, s)| names.iter().any(|n| is_execution_of(&s.report.name, n)))
        .collect()
}

/// The name the executions of node `n` start with: its name, but for a step of a `parallel
/// for` over agents (one body per agent, all of the same names), the name of its body's
/// instance (`answer[2]` for the second body).
fn instance_name(plan: &Plan, n: NodeId) -> String {
    let node = &plan.nodes[n];
    if let Some(r) = node.region.and_then(|r| plan.regions.get(r))
        && matches!(r.kind, crate::plan::PlanRegionKind::For { .. })
        && r.bodies.len() > 1
        && let Some(k) = r.bodies.iter().position(|b| b.contains(&n))
    {
        return format!("{}[{}]", node.name, k + 1);
    }
    node.name.clone()
}

/// The plan's steps that never ran (not the variable of a `parallel for`); without a plan,
/// the recorded step names without an execution.
fn not_run<'v>(view: &'v RunView, plan: Option<&'v Plan>) -> Vec<&'v str> {
    match plan {
        Some(plan) => plan
            .nodes
            .iter()
            .filter(|n| !matches!(n.exec, crate::plan::PlanExec::Item))
            .filter(|n| node_execs(view, plan, n.id).is_empty())
            .map(|n| n.name.as_str())
            .collect(),
        None => view
            .planned
            .iter()
            .filter(|p| {
                !view
                    .steps
                    .iter()
                    .any(|s| is_execution_of(&s.report.name, p))
            })
            .map(String::as_str)
            .collect(),
    }
}

/// The models the providers said answered the given steps' calls, in order of first use.
fn served_models<'a>(view: &RunView, steps: impl Iterator<Item = &'a str>) -> Vec<String> {
    let steps: Vec<&str> = steps.collect();
    let mut out: Vec<String> = Vec::new();
    for a in view
        .attempts
        .iter()
        .filter(|a| steps.contains(&a.step.as_str()))
    {
        if let Some(s) = &a.served_model
            && !out.contains(s)
        {
            out.push(s.clone());
        }
    }
    out
}

/// A `<pre>` of a text, or a note that it was not recorded.
fn text_block(class: &str, text: Option<&str>, missing: &str) -> String {
    match text {
        Some(t) => format!("<pre class=\"{class}\">{}</pre>", esc(t)),
        None => format!("<p class=\"{class} not-recorded\">{}</p>", esc(missing)),
    }
}

const NOT_RECORDED: &str = "not recorded: the run kept no prompts (`--no-store-prompts`), or its journal was written before orch recorded them";

fn steps(h: &mut String, view: &RunView, plan: Option<&Plan>) {
    h.push_str("<section id=\"steps\"><h2>Steps</h2><table class=\"steps\"><thead><tr><th>step</th><th>status</th><th>agent</th><th>model</th><th>attempts</th><th>in</th><th>out</th><th>cost</th><th>time</th></tr></thead><tbody>");
    for (i, s) in view.steps.iter().enumerate() {
        let r = &s.report;
        let approx = if r.usage.estimated { "~" } else { "" };
        let _ = write!(
            h,
            "<tr class=\"status-{st}\"><td><a href=\"#{a}\">{}</a></td><td><span class=\"badge status-{st}\">{st}</span>{warn}</td><td>{}</td><td>{}</td><td>{}</td><td>{approx}{}</td><td>{approx}{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.name),
            esc(&r.agent),
            esc(&model_text(view, r)),
            r.attempts,
            r.usage.input_tokens,
            r.usage.output_tokens,
            esc(&usd(r.cost_usd)),
            esc(&r
                .started_ms
                .zip(r.finished_ms)
                .map(|(a, b)| ms(b.saturating_sub(a)))
                .unwrap_or_default()),
            st = status_word(s),
            a = anchor(i),
            warn = if r.warnings.is_empty() {
                String::new()
            } else {
                format!(
                    " <span class=\"warn\" title=\"{}\">⚠</span>",
                    esc(&r.warnings.join("\n"))
                )
            },
        );
    }
    h.push_str("</tbody></table>");
    let not_run = not_run(view, plan);
    if !not_run.is_empty() {
        let names: Vec<String> = not_run.iter().map(|n| esc(n)).collect();
        let _ = write!(h, "<p class=\"note\">not run: {}</p>", names.join(", "));
    }
    for (i, s) in view.steps.iter().enumerate() {
        step_section(h, view, i, s);
    }
    h.push_str("</section>\n");
}

/// The model column: the script's model, and the served one when it differs.
fn model_text(view: &RunView, r: &StepReport) -> String {
    let model = r.model.clone().unwrap_or_else(|| "-".to_string());
    let mut served = served_models(view, std::iter::once(r.name.as_str()));
    if let Some(s) = &r.served_model
        && !served.contains(s)
    {
        served.push(s.clone());
    }
    if served.is_empty() || served == [model.clone()] {
        model
    } else {
        format!("{model} (served: {})", served.join(", "))
    }
}

fn step_section(h: &mut String, view: &RunView, i: usize, s: &StepView) {
    let r = &s.report;
    let st = status_word(s);
    let _ = write!(
        h,
        "<section class=\"step status-{st}\" id=\"{}\" data-step=\"{}\"><h3><span class=\"badge status-{st}\">{st}</span> {} <span class=\"agent\">{}</span></h3><dl class=\"facts\"><dt>model</dt><dd>{}</dd><dt>attempts</dt><dd>{}</dd><dt>tokens</dt><dd>{} in · {} out</dd><dt>cost</dt><dd>{}</dd>",
        anchor(i),
        esc(&r.name),
        esc(&r.name),
        esc(&r.agent),
        esc(&model_text(view, r)),
        r.attempts,
        r.usage.input_tokens,
        r.usage.output_tokens,
        esc(&usd(r.cost_usd)),
    );
    if let (Some(a), Some(b)) = (r.started_ms, r.finished_ms) {
        let _ = write!(
            h,
            "<dt>time</dt><dd>{} (from {} to {})</dd>",
            esc(&ms(b.saturating_sub(a))),
            esc(&ms(a)),
            esc(&ms(b))
        );
    }
    h.push_str("</dl>");
    match &r.status {
        StepStatus::Failed(e) | StepStatus::Skipped(e) => {
            let _ = write!(h, "<p class=\"error\">{}</p>", esc(e));
        }
        _ => {}
    }
    if !r.warnings.is_empty() {
        h.push_str("<ul class=\"warnings\">");
        for w in &r.warnings {
            let _ = write!(h, "<li>⚠ {}</li>", esc(w));
        }
        h.push_str("</ul>");
    }
    if let Some(a) = &r.approval {
        let _ = write!(
            h,
            "<p class=\"approval\">approval: {}</p>",
            esc(&serde_json::to_string(a).unwrap_or_default())
        );
    }
    let attempts: Vec<&AttemptRecord> = view.attempts.iter().filter(|a| a.step == r.name).collect();
    if attempts.is_empty() {
        let _ = write!(
            h,
            "<details class=\"prompt\"><summary>prompt</summary>{}</details>",
            text_block("prompt", None, NOT_RECORDED)
        );
        let _ = write!(
            h,
            "<details class=\"answer\"><summary>answer (the step's output)</summary>{}</details>",
            text_block(
                "answer",
                r.output.as_deref(),
                "no output: the step did not succeed"
            )
        );
    }
    for a in attempts {
        attempt_block(h, a);
    }
    if let Some(l) = &r.agent_loop {
        agent_loop(h, view, r, l);
    }
    if !view.attempts.is_empty() && r.output.is_some() {
        let _ = write!(
            h,
            "<details class=\"output\"><summary>output</summary>{}</details>",
            text_block("output", r.output.as_deref(), "")
        );
    }
    h.push_str("</section>\n");
}

/// What the page says of a text the run did not store: its size and digest.
fn not_stored(d: &TextDigest) -> String {
    format!(
        "not recorded (`--no-store-prompts`): {} characters, SHA-256 {}",
        d.chars, d.sha256
    )
}

fn attempt_block(h: &mut String, a: &AttemptRecord) {
    let outcome = if let Some(e) = &a.error {
        format!("failed: {e}")
    } else if a.truncated {
        format!(
            "cut by the token limit ({})",
            a.stop_reason.as_deref().unwrap_or("max_tokens")
        )
    } else {
        a.stop_reason.clone().unwrap_or_else(|| "ok".to_string())
    };
    let served = a
        .served_model
        .as_ref()
        .filter(|s| **s != a.model)
        .map(|s| format!(" (served: {s})"))
        .unwrap_or_default();
    let wait = if a.wait_ms > 0 {
        format!(" · waited {} first", ms(a.wait_ms))
    } else {
        String::new()
    };
    let label = format!(
        "attempt {}{} · {}{served} on {} · {} · {} in / {} out · {}{wait} · {outcome}",
        a.attempt,
        a.turn.map(|t| format!(", turn {t}")).unwrap_or_default(),
        a.model,
        a.provider,
        ms(a.finished_ms.saturating_sub(a.started_ms)),
        a.usage.input_tokens,
        a.usage.output_tokens,
        usd(a.cost_usd),
    );
    let class = if a.error.is_some() {
        "failed"
    } else if a.truncated {
        "truncated"
    } else {
        "ok"
    };
    let _ = write!(
        h,
        "<div class=\"attempt {class}\" data-attempt=\"{}\"><p class=\"attempt-label\">{}</p>",
        a.attempt,
        esc(&label)
    );
    let mut prompt = String::new();
    if let Some(s) = &a.system {
        let _ = write!(
            prompt,
            "<h4>system</h4>{}",
            text_block("system", Some(s), "")
        );
    } else if let Some(d) = &a.system_digest {
        let _ = write!(
            prompt,
            "<h4>system</h4>{}",
            text_block("system", None, &not_stored(d))
        );
    }
    let missing = a
        .prompt_digest
        .as_ref()
        .map_or_else(|| NOT_RECORDED.to_string(), not_stored);
    prompt.push_str(&text_block("prompt", a.prompt.as_deref(), &missing));
    let _ = write!(
        h,
        "<details class=\"prompt\"><summary>prompt</summary>{prompt}</details>"
    );
    let missing = match (&a.error, &a.answer_digest) {
        (Some(_), _) => "no answer: the call failed".to_string(),
        (None, Some(d)) => not_stored(d),
        (None, None) => NOT_RECORDED.to_string(),
    };
    let _ = write!(
        h,
        "<details class=\"answer\"><summary>answer</summary>{}</details></div>",
        text_block("answer", a.answer.as_deref(), &missing)
    );
}

fn agent_loop(h: &mut String, view: &RunView, r: &StepReport, l: &super::LoopReport) {
    let _ = write!(
        h,
        "<details class=\"tools\" open><summary>agent loop: {} turn{} · {}</summary><table class=\"tool-calls\"><thead><tr><th>turn</th><th>tool</th><th>arguments</th><th>result</th><th>time</th></tr></thead><tbody>",
        l.turns,
        if l.turns == 1 { "" } else { "s" },
        esc(&tool_summary(l.tool_calls.iter()).unwrap_or_else(|| "no tool calls".to_string()))
    );
    for c in &l.tool_calls {
        let class = if c.refused {
            "refused"
        } else if c.is_error {
            "error"
        } else {
            "ok"
        };
        let args = serde_json::to_string(&c.arguments).unwrap_or_default();
        let result = view
            .tool_results
            .get(&(r.name.clone(), c.turn, c.id.clone()))
            .map(|t| {
                format!(
                    "<details><summary>{}</summary><pre class=\"tool-result\">{}</pre></details>",
                    esc(&c.summary),
                    esc(t)
                )
            })
            .unwrap_or_else(|| esc(&c.summary));
        let _ = write!(
            h,
            "<tr class=\"call {class}\"><td>{}</td><td><code>{}</code></td><td><code class=\"args\">{}</code></td><td>{result}</td><td>{}</td></tr>",
            c.turn,
            esc(&c.tool),
            esc(&dag_cut(&args, 400)),
            esc(&ms(c.time_ms)),
        );
    }
    h.push_str("</tbody></table>");
    if let Some(turns) = view.turns.get(&r.name)
        && !turns.is_empty()
    {
        h.push_str("<ol class=\"turns\">");
        for t in turns {
            let _ = write!(
                h,
                "<li>turn {} · {}: {}</li>",
                t.turn,
                esc(&t.model),
                if t.text.is_empty() {
                    format!("{} call(s)", t.calls.len())
                } else {
                    format!("<pre class=\"turn-text\">{}</pre>", esc(&t.text))
                }
            );
        }
        h.push_str("</ol>");
    }
    h.push_str("</details>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes_and_redacts_first() {
        assert_eq!(
            esc(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        // A key is redacted before escaping, so its mark is escaped too.
        assert_eq!(
            esc("key sk-ant-api03-Zx9Qw8Er7Ty6Ui5Op4As3Df2 end"),
            "key &lt;redacted&gt; end"
        );
    }

    #[test]
    fn executions_of_a_node_are_it_and_its_instances() {
        for exec in ["post", "post[2]", "draft#3", "post[2]#1"] {
            let node = exec.split(['[', '#']).next().unwrap();
            assert!(is_execution_of(exec, node), "{exec}");
        }
        assert!(!is_execution_of("poster", "post"));
        assert!(!is_execution_of("post/scout", "post"));
        assert!(!is_execution_of("pos", "post"));
    }

    #[test]
    fn an_empty_run_still_makes_a_page() {
        let view = RunView {
            workflow: "main".into(),
            status: "failed".into(),
            stopped: Some("budget <exceeded>".into()),
            ..RunView::default()
        };
        let page = render(&view, None);
        assert!(page.contains("id=\"dag-svg\"") && page.contains("id=\"timeline-svg\""));
        assert!(page.contains("budget &lt;exceeded&gt;"));
        assert!(page.ends_with("</html>\n"));
    }
}
