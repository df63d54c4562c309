//! `orch run`'s progress on stderr: one line per event (`▸ writer  sonnet`, `✓ writer  1.2s ·
//! ...`), and on a terminal live lines drawn by indicatif below them: one per step in flight
//! (`⠋ writer  sonnet · turn 2 · ~120 tokens · 3 tool calls · retrying in 2s   4s`: model,
//! turn, attempt, tokens streaming in, tool calls so far, what it waits for, elapsed time),
//! then the totals (`Σ 2/5 steps done · $0.0120 spent of $1.00 budget · 1 retry · 1
//! rate-limit wait`). Off a terminal (CI logs) and with `--quiet` there are no live lines:
//! logs get the plain lines only.
//!
//! While an approval's question waits for an answer on the terminal, progress lines are held
//! back (and the live lines are erased), so that nothing is written into the question or
//! the answer being typed; they are printed once it is answered.

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Paint;
use crate::common::{format_duration, plural};
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
        let width = plan.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4);
        // The steps that run (a region's own node and a `for` item do not).
        let total = plan
            .nodes
            .iter()
            .filter(|n| !matches!(n.exec, PlanExec::Region { .. } | PlanExec::Item))
            .count();
        let terminal = std::io::stderr().is_terminal() && !quiet;
        Progress {
            live: Arc::new(Live::new(terminal, paint, width, total, plan.budget_usd)),
            paint,
            width,
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

    /// Shows that approval step `step` waits for an answer given elsewhere (a run on an
    /// engine): its question and `how`, the command that answers it. Shown also under
    /// `--quiet`: the run waits for it.
    pub(super) fn asking(&self, step: &str, question: &str, how: &str) {
        let w = self.width;
        let indent = format!("\n{}", " ".repeat(w + 6));
        let question = redact(question.trim()).replace('\n', &indent);
        self.live.line(format!(
            "  {} {step:<w$}  {}{indent}waits for an answer: {how}",
            self.paint.yellow("?"),
            self.paint.bold(&question),
        ));
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
        if let Some(line) = self.line(e) {
            self.live.line(line);
        }
        // An approval's question is its live line.
        if !matches!(e, Event::Started { step, .. } if self.approvals.contains(step)) {
            self.live.follow(e);
        }
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
            Event::Batched { step } => format!(
                "  {} {step:<w$}  in a provider batch (answered within 24h)",
                p.dim("…")
            ),
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
            Event::Cached(r) => format!("  {} {:<w$}  from the cache", p.green("↺"), r.name),
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

/// The lines and, on a terminal, the live lines on stderr, and what an approval's question
/// holds back.
struct Live {
    /// The live lines (indicatif), only on a terminal: one per step in flight, then the totals.
    multi: Option<MultiProgress>,
    paint: Paint,
    /// The widest step name: names are padded to it.
    width: usize,
    state: Mutex<LiveState>,
}

/// A step in flight, as its live line shows it.
struct Flight {
    /// Its line (elapsed time kept by indicatif from when the step started).
    bar: ProgressBar,
    /// The model (or command) of the attempt in flight.
    runs_on: String,
    /// The 1-based attempt, in an agent loop of this turn's model call.
    attempt: u32,
    /// In an agent loop: the turn.
    turn: Option<u32>,
    /// Output tokens received so far in this attempt (an estimate while streaming).
    tokens: u64,
    /// Tool calls so far.
    tools: u32,
    /// What it waits for now (`retrying in 2s`, `waiting 1s for the rate limit`).
    note: Option<String>,
}

#[derive(Default)]
struct LiveState {
    /// Steps in flight, in the order they started.
    flight: IndexMap<String, Flight>,
    /// The totals line, shown while steps are in flight.
    totals: Option<ProgressBar>,
    /// Steps of the run that ended (top-level ones: nested steps count in their parent's).
    done: usize,
    /// Steps the run has, at least: the plan's steps that run (a `for` may run more).
    total: usize,
    /// USD spent by the steps that ended.
    spent: f64,
    /// The workflow's budget, USD.
    budget: Option<f64>,
    /// Retries so far.
    retries: u32,
    /// Rate-limit waits so far.
    waits: u32,
    /// The approval step whose question is on the screen, and the ticket of that question.
    asking: Option<(String, u64)>,
    /// Tickets handed out so far.
    tickets: u64,
    /// Progress lines held back while a question is asked.
    held: Vec<String>,
}

impl Flight {
    /// A step just started, on line `bar`.
    fn new(bar: ProgressBar) -> Self {
        Flight {
            bar,
            runs_on: String::new(),
            attempt: 1,
            turn: None,
            tokens: 0,
            tools: 0,
            note: None,
        }
    }

    /// Its line's text (before the elapsed time): `writer  sonnet · turn 2 · attempt 2 · ~120
    /// tokens · 3 tool calls · retrying in 2s`, redacted.
    fn text(&self, step: &str, width: usize, paint: &Paint) -> String {
        let mut parts = vec![self.runs_on.clone()];
        if let Some(t) = self.turn {
            parts.push(format!("turn {t}"));
        }
        if self.attempt > 1 {
            parts.push(format!("attempt {}", self.attempt));
        }
        if self.tokens > 0 {
            parts.push(format!("~{} tokens", self.tokens));
        }
        if self.tools > 0 {
            parts.push(plural(u64::from(self.tools), "tool call"));
        }
        if let Some(n) = &self.note {
            parts.push(n.clone());
        }
        redact(format!("{step:<width$}  {}", paint.dim(&parts.join(" · ")))).into_string()
    }
}

impl LiveState {
    /// Updates the steps in flight and the totals for `e` (a step's [`Flight`] is added by the
    /// caller before its first `Started`). Returns the flight of a step that ended.
    fn apply(&mut self, e: &Event) -> Option<Flight> {
        match e {
            Event::Started {
                step,
                runs_on,
                attempt,
                turn,
            } => {
                if let Some(f) = self.flight.get_mut(step) {
                    f.runs_on = runs_on.clone();
                    f.attempt = *attempt;
                    f.turn = *turn;
                    f.tokens = 0;
                    f.note = None;
                }
            }
            Event::Streaming { step, tokens } => {
                if let Some(f) = self.flight.get_mut(step) {
                    f.tokens = *tokens;
                }
            }
            Event::ToolCalled { step, .. } => {
                if let Some(f) = self.flight.get_mut(step) {
                    f.tools += 1;
                }
            }
            Event::Retrying { step, delay_ms, .. } => {
                self.retries += 1;
                if let Some(f) = self.flight.get_mut(step) {
                    f.note = Some(format!("retrying in {}", format_duration(*delay_ms)));
                }
            }
            Event::Waiting { step, delay_ms, .. } => {
                self.waits += 1;
                if let Some(f) = self.flight.get_mut(step) {
                    f.note = Some(format!(
                        "waiting {} for the rate limit",
                        format_duration(*delay_ms)
                    ));
                }
            }
            Event::Batched { step } => {
                if let Some(f) = self.flight.get_mut(step) {
                    f.note = Some("in a provider batch (answered within 24h)".to_string());
                }
            }
            Event::FallingBack { step, model } => {
                if let Some(f) = self.flight.get_mut(step) {
                    f.note = Some(format!("falling back to {model}"));
                }
            }
            Event::Finished(r) | Event::Reused(r) | Event::Cached(r) => {
                // Nested steps (`lead/scout#1.1`) count in their parent's cost and total.
                if !r.name.contains('/') {
                    self.done += 1;
                    self.spent += r.cost_usd;
                }
                return self.flight.shift_remove(&r.name);
            }
            _ => {}
        }
        None
    }

    /// The totals line's text: `2/5 steps done · $0.01 spent of $1.00 budget · 1 retry · 2
    /// rate-limit waits`.
    fn totals_text(&self) -> String {
        let in_flight = self.flight.keys().filter(|s| !s.contains('/')).count();
        let total = self.total.max(self.done + in_flight);
        let mut text = format!(
            "{}/{total} steps done · {} spent",
            self.done,
            usd(self.spent)
        );
        if let Some(b) = self.budget {
            text = format!("{text} of {} budget", usd(b));
        }
        match self.retries {
            0 => {}
            1 => text = format!("{text} · 1 retry"),
            n => text = format!("{text} · {n} retries"),
        }
        if self.waits > 0 {
            text = format!(
                "{text} · {}",
                plural(u64::from(self.waits), "rate-limit wait")
            );
        }
        text
    }
}

/// How often the live lines are redrawn (their elapsed times tick): 4 times a second.
const TICK: std::time::Duration = std::time::Duration::from_millis(250);

impl Live {
    fn new(terminal: bool, paint: Paint, width: usize, total: usize, budget: Option<f64>) -> Self {
        Live {
            multi: terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            paint,
            width,
            state: Mutex::new(LiveState {
                total,
                budget,
                ..LiveState::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows one event in the live lines (a no-op off a terminal).
    fn follow(&self, e: &Event) {
        let Some(multi) = &self.multi else {
            return;
        };
        let mut state = self.lock();
        let st = &mut *state;
        if let Event::Started { step, .. } = e
            && !st.flight.contains_key(step)
        {
            let paint = self.paint;
            let totals = st
                .totals
                .get_or_insert_with(|| totals_bar(multi, paint))
                .clone();
            // Above the totals line, which stays the last.
            let bar = multi.insert_before(&totals, ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {wide_msg} {elapsed:>4}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(TICK);
            st.flight.insert(step.clone(), Flight::new(bar));
        }
        if let Some(ended) = st.apply(e) {
            ended.bar.finish_and_clear();
            multi.remove(&ended.bar);
        }
        if st.asking.is_none() {
            self.draw(multi, st);
        }
    }

    /// Sets the text of every live line, adds the totals line when steps are in flight and
    /// removes it when none are.
    fn draw(&self, multi: &MultiProgress, st: &mut LiveState) {
        for (step, f) in &st.flight {
            f.bar.set_message(f.text(step, self.width, &self.paint));
        }
        if st.flight.is_empty() {
            if let Some(t) = st.totals.take() {
                t.finish_and_clear();
                multi.remove(&t);
            }
            return;
        }
        let text = st.totals_text();
        let paint = self.paint;
        let totals = st.totals.get_or_insert_with(|| totals_bar(multi, paint));
        totals.set_message(self.paint.dim(&text));
    }

    /// Erases the live lines (while a question is asked, and at the end).
    fn erase(&self) {
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
    }

    /// Draws the live lines again after [`Live::erase`].
    fn restore(&self) {
        if let Some(multi) = &self.multi {
            multi.set_draw_target(ProgressDrawTarget::stderr());
            let mut state = self.lock();
            self.draw(multi, &mut state);
        }
    }

    /// Prints a progress line, redacted (above the live lines), or holds it back while a
    /// question is asked.
    fn line(&self, text: String) {
        let text = redact(text).into_string();
        let mut state = self.lock();
        if state.asking.is_some() {
            state.held.push(text);
            return;
        }
        match &self.multi {
            Some(multi) => {
                multi.suspend(|| eprintln!("{text}"));
            }
            None => eprintln!("{text}"),
        }
    }

    /// A question of approval step `step` is about to be asked: erases the live lines and
    /// holds progress lines back until [`Live::release`] with the ticket returned.
    fn hold(&self, step: &str) -> u64 {
        self.erase();
        let mut state = self.lock();
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
        self.restore();
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
        self.restore();
    }

    /// At the end of the run: prints whatever is still held back, and erases the live lines.
    fn release_all(&self) {
        let step = self.lock().asking.as_ref().map(|(s, _)| s.clone());
        if let Some(step) = step {
            self.abandon(&step);
        }
        let mut state = self.lock();
        for (_, f) in state.flight.drain(..) {
            f.bar.finish_and_clear();
        }
        if let Some(t) = state.totals.take() {
            t.finish_and_clear();
        }
        drop(state);
        self.erase();
    }
}

/// The totals line (`Σ 2/5 steps done · $0.0120 spent of $1.00 budget · 1 retry`), added last.
fn totals_bar(multi: &MultiProgress, paint: Paint) -> ProgressBar {
    let bar = multi.add(ProgressBar::new_spinner());
    bar.set_style(
        ProgressStyle::with_template("  {prefix} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(paint.dim("Σ"));
    bar
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::provider::Usage;

    fn started(step: &str, attempt: u32, turn: Option<u32>) -> Event {
        Event::Started {
            step: step.into(),
            runs_on: "sonnet".into(),
            attempt,
            turn,
        }
    }

    fn finished(step: &str, cost_usd: f64) -> Event {
        Event::Finished(Box::new(StepReport {
            name: step.into(),
            agent: "w".into(),
            model: Some("sonnet".into()),
            status: StepStatus::Succeeded,
            attempts: 1,
            usage: Usage::default(),
            cost_usd,
            started_ms: Some(0),
            finished_ms: Some(10),
            output: Some("ok".into()),
            value: None,
            approval: None,
            agent_loop: None,
            served_model: None,
            truncated: false,
            warnings: Vec::new(),
        }))
    }

    fn call() -> Box<ToolCallReport> {
        Box::new(ToolCallReport {
            turn: 1,
            id: "c1".into(),
            tool: "read".into(),
            arguments: serde_json::json!({"path": "a"}),
            result_bytes: 3,
            summary: "3 bytes".into(),
            time_ms: 1,
            is_error: false,
            refused: false,
            reused: false,
            delegated: None,
        })
    }

    /// Events as `follow` applies them, with hidden lines for the steps.
    fn apply(st: &mut LiveState, e: &Event) {
        if let Event::Started { step, .. } = e
            && !st.flight.contains_key(step)
        {
            st.flight
                .insert(step.clone(), Flight::new(ProgressBar::hidden()));
        }
        st.apply(e);
    }

    #[test]
    fn a_line_per_step_in_flight_with_what_it_does_now() {
        let paint = Paint { on: false };
        let mut st = LiveState {
            total: 3,
            budget: Some(1.0),
            ..LiveState::default()
        };
        apply(&mut st, &started("writer", 1, None));
        apply(&mut st, &started("lead", 1, Some(1)));
        apply(
            &mut st,
            &Event::Streaming {
                step: "writer".into(),
                tokens: 120,
            },
        );
        apply(
            &mut st,
            &Event::ToolCalled {
                step: "lead".into(),
                call: call(),
            },
        );
        apply(
            &mut st,
            &Event::ToolCalled {
                step: "lead".into(),
                call: call(),
            },
        );
        apply(&mut st, &started("lead", 1, Some(2)));
        let writer = st.flight["writer"].text("writer", 6, &paint);
        assert_eq!(writer, "writer  sonnet · ~120 tokens");
        let lead = st.flight["lead"].text("lead", 6, &paint);
        assert_eq!(lead, "lead    sonnet · turn 2 · 2 tool calls");
        apply(
            &mut st,
            &Event::Retrying {
                step: "writer".into(),
                error: "HTTP 529".into(),
                delay_ms: 2000,
            },
        );
        assert_eq!(
            st.flight["writer"].text("writer", 6, &paint),
            "writer  sonnet · ~120 tokens · retrying in 2s"
        );
        apply(&mut st, &started("writer", 2, None));
        apply(
            &mut st,
            &Event::Waiting {
                step: "writer".into(),
                delay_ms: 1500,
                reason: "limits".into(),
            },
        );
        assert_eq!(
            st.flight["writer"].text("writer", 6, &paint),
            "writer  sonnet · attempt 2 · waiting 1.5s for the rate limit"
        );
        assert_eq!(
            st.totals_text(),
            "0/3 steps done · $0.00 spent of $1.00 budget · 1 retry · 1 rate-limit wait"
        );
        apply(&mut st, &finished("writer", 0.25));
        assert!(!st.flight.contains_key("writer"));
        assert!(
            st.totals_text()
                .starts_with("1/3 steps done · $0.25 spent of $1.00 budget")
        );
    }

    #[test]
    fn nested_steps_count_in_their_parents() {
        let mut st = LiveState {
            total: 1,
            ..LiveState::default()
        };
        apply(&mut st, &started("lead", 1, Some(1)));
        apply(&mut st, &started("lead/scout#1.1", 1, Some(1)));
        assert_eq!(st.totals_text(), "0/1 steps done · $0.00 spent");
        apply(&mut st, &finished("lead/scout#1.1", 0.5));
        apply(&mut st, &finished("lead", 1.0));
        assert_eq!(st.totals_text(), "1/1 steps done · $1.00 spent");
    }
}
