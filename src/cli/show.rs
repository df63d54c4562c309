//! `orch runs show RUN_ID [STEP]`: a journalled run's steps and every model call, with the
//! texts sent and received (as the journal keeps them: redacted, or only digested under
//! `--no-store-prompts`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use indexmap::IndexMap;

use super::ShowArgs;
use crate::common::format_duration;
use crate::plan::render::usd;
use crate::redact::redact;
use crate::run::journal::{self, AttemptRecord, Record, StepOutcome, StepRecord, TextDigest};

/// What the journal says of one step (an instance, a nested step): its model calls, its last
/// `step` record, a region's warnings, and the provider batches its requests went in.
#[derive(Default)]
struct StepView {
    attempts: Vec<AttemptRecord>,
    record: Option<StepRecord>,
    warnings: Vec<String>,
    batches: Vec<String>,
}

/// Runs `orch runs show`: exit 0, or 2 when the run cannot be found or read.
pub(super) fn show(a: &ShowArgs) -> ExitCode {
    let state = a
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".orch"));
    let dir = state.join("runs").join(&a.id);
    if a.id.is_empty() || a.id.contains(['/', '\\']) || !dir.is_dir() {
        eprintln!(
            "error: no run `{}` in {}; `orch runs` lists the runs there (pass `--state-dir DIR` for another place)",
            a.id,
            state.join("runs").display()
        );
        return ExitCode::from(2);
    }
    let records = match journal::run_records(&state, &a.id) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let text = render(&records, a.step.as_deref());
    match text {
        Ok(text) => {
            print!("{}", redact(text));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", redact(e));
            ExitCode::from(2)
        }
    }
}

/// Whether step `name` is `wanted`, one of its instances (`post[2]`, `draft#3`) or a step
/// nested under it (`lead/scout#2.1`).
fn selected(name: &str, wanted: &str) -> bool {
    name == wanted
        || name
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with(['[', '#', '/']))
}

/// The text of `orch runs show`.
///
/// # Errors
/// For people, when `step` names no recorded step (with the names that are).
fn render(records: &[Record], step: Option<&str>) -> Result<String, String> {
    let mut out = String::new();
    let mut steps: IndexMap<String, StepView> = IndexMap::new();
    for r in records {
        match r {
            Record::Run(h) => {
                let _ = writeln!(
                    out,
                    "run {} · {} (workflow {}) · {}",
                    h.run_id, h.script, h.workflow, h.target
                );
            }
            Record::Resume(h) => {
                let _ = writeln!(out, "resumed · {}", h.target);
            }
            Record::Start(s) => {
                steps.entry(s.name.clone()).or_default();
            }
            Record::Attempt(a) => steps
                .entry(a.step.clone())
                .or_default()
                .attempts
                .push((**a).clone()),
            Record::Step(s) => {
                steps.entry(s.name.clone()).or_default().record = Some((**s).clone())
            }
            Record::Batch(b) => {
                for item in &b.items {
                    steps
                        .entry(item.step.clone())
                        .or_default()
                        .batches
                        .push(format!(
                            "sent in batch `{}` of provider `{}` as `{}`",
                            b.batch_id, b.provider, item.custom_id
                        ));
                }
            }
            Record::Warning(w) => steps
                .entry(w.step.clone())
                .or_default()
                .warnings
                .push(w.message.clone()),
            Record::End(e) => {
                let why = e
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                let status = match e.status {
                    journal::EndStatus::Succeeded => "succeeded",
                    journal::EndStatus::Failed => "failed",
                    journal::EndStatus::Interrupted => "interrupted",
                };
                let _ = writeln!(out, "ended {status} · {}{why}", usd(e.cost_usd));
            }
            Record::Turn(_) | Record::ToolStart(_) | Record::Tool(_) => {}
        }
    }
    let shown: Vec<(&String, &StepView)> = steps
        .iter()
        .filter(|(name, _)| step.is_none_or(|w| selected(name, w)))
        .collect();
    if let Some(w) = step
        && shown.is_empty()
    {
        let names: Vec<&str> = steps.keys().map(String::as_str).collect();
        return Err(format!(
            "the run has no step `{w}`; its steps: {}",
            if names.is_empty() {
                "none recorded".to_string()
            } else {
                names.join(", ")
            }
        ));
    }
    for (name, view) in shown {
        out.push('\n');
        step_text(&mut out, name, view);
    }
    Ok(out)
}

/// One step: a header line, its warnings and error, then each model call.
fn step_text(out: &mut String, name: &str, v: &StepView) {
    let mut head = format!("step {name}");
    match &v.record {
        Some(r) => {
            let status = match r.status {
                StepOutcome::Succeeded => "succeeded",
                StepOutcome::Failed => "failed",
                StepOutcome::Interrupted => "interrupted",
            };
            let _ = write!(head, " · {status} · agent {}", r.agent);
            if let Some(m) = &r.model {
                let _ = write!(head, " · {m}");
            }
            if let Some(s) = &r.served_model {
                let _ = write!(head, " (served by {s})");
            }
            let _ = write!(
                head,
                " · {} attempt{} · {} → {} tokens · {}",
                r.attempts,
                if r.attempts == 1 { "" } else { "s" },
                r.usage.input_tokens,
                r.usage.output_tokens,
                usd(r.cost_usd)
            );
        }
        None if v.attempts.is_empty() && v.warnings.is_empty() && v.batches.is_empty() => {
            head.push_str(" · started, no end recorded");
        }
        None => {}
    }
    let _ = writeln!(out, "{head}");
    for w in v
        .warnings
        .iter()
        .chain(v.record.iter().flat_map(|r| &r.warnings))
    {
        let _ = writeln!(out, "  warning: {w}");
    }
    if let Some(e) = v.record.as_ref().and_then(|r| r.error.as_ref()) {
        let _ = writeln!(out, "  error: {e}");
    }
    for b in &v.batches {
        let _ = writeln!(out, "  {b}");
    }
    for a in &v.attempts {
        attempt_text(out, a);
    }
}

/// One model call: a line of figures, then its error and texts, indented.
fn attempt_text(out: &mut String, a: &AttemptRecord) {
    let turn = a.turn.map(|t| format!("turn {t} · ")).unwrap_or_default();
    let mut line = format!(
        "  {turn}attempt {} · {} on {}",
        a.attempt, a.model, a.provider
    );
    if let Some(s) = &a.served_model {
        let _ = write!(line, " · served by {s}");
    }
    if let Some(s) = &a.stop_reason {
        let _ = write!(line, " · stop {s}");
    }
    if a.truncated {
        line.push_str(" (cut off)");
    }
    let _ = write!(
        line,
        " · {} → {} tokens · {} · {}",
        a.usage.input_tokens,
        a.usage.output_tokens,
        usd(a.cost_usd),
        format_duration(a.finished_ms.saturating_sub(a.started_ms))
    );
    if a.wait_ms > 0 {
        let _ = write!(line, " (after waiting {})", format_duration(a.wait_ms));
    }
    let _ = writeln!(out, "{line}");
    if let Some(e) = &a.error {
        let _ = writeln!(out, "    error: {e}");
    }
    text_block(out, "system", a.system.as_deref(), a.system_digest.as_ref());
    text_block(out, "prompt", a.prompt.as_deref(), a.prompt_digest.as_ref());
    text_block(out, "answer", a.answer.as_deref(), a.answer_digest.as_ref());
}

/// A text under its label, indented; or, when it was not stored, its digest.
fn text_block(out: &mut String, label: &str, text: Option<&str>, digest: Option<&TextDigest>) {
    match (text, digest) {
        (Some(t), _) => {
            let _ = writeln!(out, "    {label}:");
            for l in t.lines() {
                let _ = writeln!(out, "      {l}");
            }
        }
        (None, Some(d)) => {
            let _ = writeln!(
                out,
                "    {label}: not stored (--no-store-prompts): {} characters, sha256 {}",
                d.chars, d.sha256
            );
        }
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_selects_its_instances_and_nested_steps_only() {
        assert!(selected("post", "post"));
        assert!(selected("post[2]", "post"));
        assert!(selected("draft#3", "draft"));
        assert!(selected("lead/scout#2.1", "lead"));
        assert!(!selected("poster", "post"));
        assert!(!selected("pos", "post"));
    }
}
