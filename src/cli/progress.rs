//! `orch run`'s progress on stderr: one line per event (`▸ writer  sonnet`, `✓ writer  1.2s ·
//! ...`), and on a terminal a live status line of the answers streaming now (`⋯ writer ~120
//! tokens · critic ~40 tokens`), drawn by indicatif below the lines and erased before each.
//! Off a terminal there is no status line: logs get plain lines only.
//!
//! While an approval's question waits for an answer on the terminal, progress lines are held
//! back (and the status line is not drawn), so that nothing is written into the question or
//! the answer being typed; they are printed once it is answered.

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Paint;
use crate::common::format_duration;
use crate::plan::render::usd;
use crate::plan::{Plan, PlanExec};
use crate::redact::redact;
use crate::run::{ApprovalRequest, Approver, Event, StepReport, StepStatus, ToolCallReport};

/// Renders a run's events as progress lines.
pub(super) struct Progress {
    live: Arc<Live>,
    paint: Paint,
    /// The widest step name: names are padded to it.
    width: usize,
    /// `--quiet`: no progress lines (the `--why-rerun` ones and questions still show).
    quiet: bool,
    /// `--why-rerun`: a line for each step that runs again, saying why.
    why_rerun: bool,
    /// `-v`: each model call's system text and prompt as it is sent.
    verbose: bool,
    /// `--endpoint`: a step's line names the model the server says answered.
    served: bool,
    /// Approval steps: their question is their progress line, their start is not printed.
    approvals: HashSet<String>,
}

impl Progress {
    /// Progress for a run of `plan`; the status line only when stderr is a terminal.
    pub(super) fn new(
        plan: &Plan,
        quiet: bool,
        why_rerun: bool,
        verbose: bool,
        served: bool,
        paint: Paint,
    ) -> Self {
        Progress {
            live: Arc::new(Live::new(std::io::stderr().is_terminal(), paint)),
            paint,
            width: plan.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4),
            quiet,
            why_rerun,
            verbose,
            served,
            approvals: plan
                .nodes
                .iter()
                .filter(|n| matches!(n.exec, PlanExec::Approval))
                .map(|n| n.name.clone())
                .collect(),
        }
    }

    /// Who answers approvals: `--yes`, else a person on the terminal when stdin and stderr
    /// are one, else nobody.
    pub(super) fn approver(&self, yes: bool) -> Approver {
        if yes {
            Approver::Yes
        } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            terminal_approver(self.live.clone(), self.paint, self.width)
        } else {
            Approver::NoTerminal
        }
    }

    /// Shows one event.
    pub(super) fn on_event(&self, e: &Event) {
        if let Event::Rerun { step, why } = e {
            if self.why_rerun {
                let mark = self.paint.yellow("»");
                self.live.line(format!(
                    "  {mark} {step:<w$}  runs again: {why}",
                    w = self.width
                ));
            }
            return;
        }
        if let Event::Finished(r) = e {
            // An approval that ended without an answer (a timeout, Ctrl-C) leaves its
            // question on the screen: progress resumes below it.
            self.live.abandon(&r.name);
        }
        if self.quiet {
            return;
        }
        match e {
            Event::Streaming { step, tokens } => return self.live.update(step, *tokens),
            Event::Started { step, .. }
            | Event::Retrying { step, .. }
            | Event::FallingBack { step, .. } => self.live.forget(step),
            Event::Finished(r) => self.live.forget(&r.name),
            _ => {}
        }
        if let Some(line) = self.line(e) {
            self.live.line(line);
        }
        self.live.redraw();
    }

    /// The line of an event, if it has one.
    fn line(&self, e: &Event) -> Option<String> {
        let (p, w) = (&self.paint, self.width);
        Some(match e {
            Event::Streaming { .. } | Event::Rerun { .. } => return None,
            Event::Sending(sent) if self.verbose => self.sending(sent),
            Event::Sending(_) => return None,
            Event::Attempt(a) => return self.attempt_note(a),
            Event::Started { step, .. } if self.approvals.contains(step) => return None,
            Event::Waiting {
                step,
                delay_ms,
                reason,
            } => format!(
                "  {} {step:<w$}  waiting {} for the rate limit: {reason}",
                p.dim("…"),
                format_duration(*delay_ms)
            ),
            Event::Started {
                step,
                runs_on,
                attempt,
                turn,
            } => {
                let turn = match turn {
                    Some(t) => format!(" · turn {t}"),
                    None => String::new(),
                };
                let again = match attempt {
                    1 => String::new(),
                    n => format!(" (attempt {n})"),
                };
                format!("  {} {step:<w$}  {runs_on}{turn}{again}", p.cyan("▸"))
            }
            Event::Retrying {
                step,
                error,
                delay_ms,
            } => format!(
                "  {} {step:<w$}  {error}; retrying in {}",
                p.yellow("↻"),
                format_duration(*delay_ms)
            ),
            Event::FallingBack { step, model } => {
                format!("  {} {step:<w$}  falling back to {model}", p.yellow("↪"))
            }
            Event::Finished(r) => self.finished(r),
            Event::ToolCalled { step, call } => self.tool_called(step, call),
            Event::Reused(r) => match &r.approval {
                Some(answer) => format!(
                    "  {} {:<w$}  reused from the journal: {}",
                    p.green("↺"),
                    r.name,
                    answer.describe()
                ),
                None => format!(
                    "  {} {:<w$}  reused from the journal · {}",
                    p.green("↺"),
                    r.name,
                    usd(r.cost_usd)
                ),
            },
        })
    }

    /// `-v`: what a model call sends, its texts indented under a header line
    /// (`→ writer  sonnet · turn 2 (attempt 2) sends:`).
    fn sending(&self, sent: &crate::run::Sending) -> String {
        let (p, w) = (&self.paint, self.width);
        let turn = sent
            .turn
            .map(|t| format!(" · turn {t}"))
            .unwrap_or_default();
        let again = match sent.attempt {
            1 => String::new(),
            n => format!(" (attempt {n})"),
        };
        let mut out = format!(
            "  {} {:<w$}  {}{turn}{again} sends:",
            p.dim("→"),
            sent.step,
            sent.model
        );
        let indent = |text: &str| {
            text.lines()
                .map(|l| format!("\n      {l}"))
                .collect::<String>()
        };
        if let Some(system) = &sent.system {
            out.push_str(&format!("\n    {}{}", p.dim("system:"), indent(system)));
        }
        out.push_str(&format!(
            "\n    {}{}",
            p.dim("prompt:"),
            indent(&sent.prompt)
        ));
        // Already redacted by the run; redacted again as every progress line is.
        redact(out).into_string()
    }

    /// The line of a model call that ended, when it has something to say: an answer cut off
    /// by the token limit.
    fn attempt_note(&self, a: &crate::run::journal::AttemptRecord) -> Option<String> {
        let (p, w) = (&self.paint, self.width);
        a.truncated.then(|| {
            format!(
                "  {} {:<w$}  the answer of `{}` was cut off at its token limit (stop reason `{}`)",
                p.yellow("⚠"),
                a.step,
                a.model,
                a.stop_reason.as_deref().unwrap_or("max_tokens")
            )
        })
    }

    /// The line of a tool call that ended: `scout  grep "login" → 12 matches`.
    fn tool_called(&self, step: &str, call: &ToolCallReport) -> String {
        let (p, w) = (&self.paint, self.width);
        let mark = if call.refused {
            p.red("⊘")
        } else if call.is_error {
            p.yellow("⚠")
        } else {
            p.dim("⚒")
        };
        let again = if call.reused {
            " (from the journal)"
        } else {
            ""
        };
        format!(
            "  {mark} {step:<w$}  {} → {}{again}",
            crate::run::call_brief(&call.tool, &call.arguments),
            redact(&call.summary)
        )
    }

    /// The line of a step that ended.
    fn finished(&self, r: &StepReport) -> String {
        let (p, w) = (&self.paint, self.width);
        match &r.status {
            StepStatus::Succeeded => self.succeeded(r),
            StepStatus::Failed(err) => format!("  {} {:<w$}  failed: {err}", p.red("✗"), r.name),
            StepStatus::Skipped(why) => {
                format!("  {} {:<w$}  skipped: {why}", p.dim("-"), r.name)
            }
            StepStatus::Cancelled => format!(
                "  {} {:<w$}  cancelled (gather no longer needs it)",
                p.dim("-"),
                r.name
            ),
            StepStatus::Interrupted => format!(
                "  {} {:<w$}  interrupted: {}",
                p.red("✗"),
                r.name,
                if self.approvals.contains(&r.name) {
                    "its question was not answered"
                } else {
                    "its request was dropped"
                }
            ),
        }
    }

    /// The line of a step that succeeded: an approval's answer, or time, tokens and cost.
    fn succeeded(&self, r: &StepReport) -> String {
        let (p, w) = (&self.paint, self.width);
        let dur = format_duration(
            r.finished_ms
                .unwrap_or(0)
                .saturating_sub(r.started_ms.unwrap_or(0)),
        );
        if let Some(answer) = &r.approval {
            let mark = if answer.approved {
                p.green("✓")
            } else {
                p.yellow("✓")
            };
            return format!("  {mark} {:<w$}  {} · {dur}", r.name, answer.describe());
        }
        let approx = if r.usage.estimated { "~" } else { "" };
        let served = match (&r.served_model, self.served) {
            (Some(m), true) => format!(" · served by {}", redact(m.as_str())),
            _ => String::new(),
        };
        let mark = if r.warnings.is_empty() {
            p.green("✓")
        } else {
            p.yellow("✓")
        };
        let mut line = format!(
            "  {mark} {:<w$}  {dur} · {approx}{} → {approx}{} tokens · {}{served}",
            r.name,
            r.usage.input_tokens,
            r.usage.output_tokens,
            usd(r.cost_usd)
        );
        for warning in &r.warnings {
            line.push_str(&format!(
                "\n  {} {:<w$}  {}",
                p.yellow("⚠"),
                r.name,
                redact(warning.as_str())
            ));
        }
        line
    }

    /// At the end of the run: a question the run stopped waiting for (Ctrl-C) may still be
    /// on the screen; shows what it held back.
    pub(super) fn release_all(&self) {
        self.live.release_all();
    }
}

/// The lines and the status line on stderr, and what an approval's question holds back.
struct Live {
    /// The status line (indicatif), only on a terminal.
    bar: Option<ProgressBar>,
    paint: Paint,
    state: Mutex<LiveState>,
}

#[derive(Default)]
struct LiveState {
    /// Tokens received so far, by step, in the order they started streaming.
    tokens: IndexMap<String, u64>,
    /// Whether the status line is on the screen.
    shown: bool,
    /// The approval step whose question is on the screen, and the ticket of that question.
    asking: Option<(String, u64)>,
    /// Tickets handed out so far.
    tickets: u64,
    /// Progress lines held back while a question is asked.
    held: Vec<String>,
}

impl Live {
    fn new(terminal: bool, paint: Paint) -> Self {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            // `wide_msg` cuts the line at the terminal's width.
            bar.set_style(
                ProgressStyle::with_template("  {prefix} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(paint.dim("⋯"));
            bar.finish_and_clear();
            bar
        });
        Live {
            bar,
            paint,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `tokens` received by `step` and redraws.
    fn update(&self, step: &str, tokens: u64) {
        if self.bar.is_none() {
            return;
        }
        self.lock().tokens.insert(step.to_string(), tokens);
        self.redraw();
    }

    /// Drops a step from the status line (its attempt ended or restarted).
    fn forget(&self, step: &str) {
        self.lock().tokens.shift_remove(step);
    }

    /// Erases the status line, if one is shown.
    fn erase(&self, state: &mut LiveState) {
        if let (Some(bar), true) = (&self.bar, state.shown) {
            bar.finish_and_clear();
            state.shown = false;
        }
    }

    /// Prints a progress line, redacted (above the status line), or holds it back while a
    /// question is asked.
    fn line(&self, text: String) {
        let text = redact(text).into_string();
        let mut state = self.lock();
        if state.asking.is_some() {
            state.held.push(text);
            return;
        }
        match (&self.bar, state.shown) {
            (Some(bar), true) => bar.suspend(|| eprintln!("{text}")),
            _ => eprintln!("{text}"),
        }
    }

    /// A question of approval step `step` is about to be asked: erases the status line and
    /// holds progress lines back until [`Live::release`] with the ticket returned.
    fn hold(&self, step: &str) -> u64 {
        let mut state = self.lock();
        self.erase(&mut state);
        state.tickets += 1;
        let ticket = state.tickets;
        state.asking = Some((step.to_string(), ticket));
        ticket
    }

    /// The question of `ticket` was answered: prints the lines held back and redraws. Nothing
    /// when the run already stopped waiting for that answer ([`Live::abandon`]).
    fn release(&self, ticket: u64) {
        let held = {
            let mut state = self.lock();
            if !matches!(&state.asking, Some((_, t)) if *t == ticket) {
                return;
            }
            state.asking = None;
            std::mem::take(&mut state.held)
        };
        for l in held {
            eprintln!("{l}");
        }
        self.redraw();
    }

    /// Step `step` ended: if its question is still waiting for an answer (the run stopped
    /// waiting: a timeout, Ctrl-C), ends the question's line and prints what was held back.
    fn abandon(&self, step: &str) {
        let held = {
            let mut state = self.lock();
            if !matches!(&state.asking, Some((s, _)) if s == step) {
                return;
            }
            state.asking = None;
            std::mem::take(&mut state.held)
        };
        eprintln!();
        for l in held {
            eprintln!("{l}");
        }
        self.redraw();
    }

    /// At the end of the run: prints whatever is still held back, and erases the status line.
    fn release_all(&self) {
        let step = self.lock().asking.as_ref().map(|(s, _)| s.clone());
        if let Some(step) = step {
            self.abandon(&step);
        }
        self.erase(&mut self.lock());
    }

    /// Draws the status line for the steps streaming now (or erases it when there are none).
    fn redraw(&self) {
        let Some(bar) = &self.bar else {
            return;
        };
        let mut state = self.lock();
        if state.asking.is_some() {
            return;
        }
        if state.tokens.is_empty() {
            return self.erase(&mut state);
        }
        let text = state
            .tokens
            .iter()
            .map(|(step, n)| format!("{step} ~{n} tokens"))
            .collect::<Vec<_>>()
            .join(" · ");
        if !state.shown {
            bar.reset();
            state.shown = true;
        }
        bar.set_message(self.paint.dim(&text));
    }
}

/// Asks approval questions on the terminal, one at a time: the question and `[y/N]` on
/// stderr, the answer read from stdin (`y`/`yes` approves; `n`/`no` or just Enter declines;
/// anything else asks again). Progress lines wait until the question is answered.
fn terminal_approver(live: Arc<Live>, paint: Paint, width: usize) -> Approver {
    let one_at_a_time = Arc::new(Mutex::new(()));
    Approver::ask("on the terminal", move |req: &ApprovalRequest| {
        let _turn = one_at_a_time.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = live.hold(&req.step);
        let answer = ask_on_terminal(req, &paint, width);
        live.release(ticket);
        answer
    })
}

fn ask_on_terminal(req: &ApprovalRequest, paint: &Paint, width: usize) -> Result<bool, String> {
    // Lines of a long question line up under its first.
    let indent = format!("\n{}", " ".repeat(width + 6));
    let question = redact(req.question.trim()).replace('\n', &indent);
    let mut prompt = format!(
        "  {} {:<width$}  {} {} ",
        paint.yellow("?"),
        req.step,
        paint.bold(&question),
        paint.dim("[y/N]")
    );
    let stdin = std::io::stdin();
    loop {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => {
                eprintln!();
                return Err("the terminal's input ended before an answer".into());
            }
            Ok(_) => match line.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => return Ok(true),
                "" | "n" | "no" => return Ok(false),
                _ => {
                    prompt = format!(
                        "  {} {:<width$}  answer y or n {} ",
                        paint.yellow("?"),
                        "",
                        paint.dim("[y/N]")
                    )
                }
            },
            Err(e) => return Err(format!("cannot read the terminal: {e}")),
        }
    }
}
