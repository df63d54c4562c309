//! Agent loops: a model step whose agent has `tools` (docs/language.md, "Tools at run time").
//!
//! The loop ([`agent_loop`]): the model is called with the tools offered and the turns so far;
//! when its answer has tool calls, they run (the calls of one turn concurrently, each bounded
//! by the agent's `tool_timeout`), their results go back, and the model is called again; an
//! answer without calls ends the loop and is the step's output. The last turn allowed by
//! `max_turns` is asked with tool choice `none`, so that the model answers with what it has;
//! a model that still calls tools then fails the step, naming the fix. Each model call has the
//! step's `retry`, `timeout` and `fallback`; the step's `deadline` bounds the whole loop; each
//! turn is counted against the budgets as it ends, and a turn whose worst case does not fit
//! stops the loop.
//!
//! The toolbox ([`toolbox`]) turns the agent's grants into tools: the built-ins, the tools of
//! MCP servers, and delegations (`agent(NAME)` → a tool `agent__NAME` that runs the agent as a
//! nested step, [`delegate`]). Calls run in [`calls`]: a malformed call or a call of a tool
//! that was not granted is refused (an error result for the model, counted), every result goes
//! through [`crate::run::tools::ToolOutput`] (redacted, then capped), and with a journal every
//! turn and every call's end is recorded before it is used, so that `--resume` continues a
//! loop from its transcript without running a recorded call again.

mod agent_loop;
mod calls;
mod delegate;
mod toolbox;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indexmap::IndexMap;
use tokio::sync::mpsc::UnboundedSender;

pub(super) use agent_loop::{Answer, LoopSpec, TurnModel, run_loop};
pub(super) use toolbox::Toolbox;

use super::Event;
use super::budget::Budgets;
use super::journal::Journal;
use super::prepare::Shared;
use crate::plan::{PlanDelegate, PlanNode};

/// How deep delegations may nest at run time: a step (depth 0) may delegate to an agent (depth
/// 1), which may delegate in turn, down to depth 3 — the checker's bound
/// ([`crate::check::tools::MAX_DELEGATION_DEPTH`]). A delegation deeper than that is refused
/// (an error result for the model), so that even a plan the checker did not see cannot recurse
/// without end.
pub const MAX_DELEGATION_DEPTH: u32 = crate::check::tools::MAX_DELEGATION_DEPTH as u32;

/// Bound on one tool call when the agent sets no `tool_timeout`: 60 s, in milliseconds.
pub const DEFAULT_TOOL_TIMEOUT_MS: u64 = 60_000;

/// What every agent loop of a run shares.
pub(super) struct AgentEnv {
    /// The workspace (canonical): file tools never reach outside it.
    pub(super) workspace: PathBuf,
    /// The run's journal, if it has one.
    pub(super) journal: Option<Journal>,
    /// The run's budgets (also the scheduler's).
    pub(super) budgets: Arc<Mutex<Budgets>>,
    /// The agents steps may delegate to, by name.
    pub(super) delegates: IndexMap<String, PlanDelegate>,
    /// The run's MCP servers, each started when first needed (`None` when the plan declares
    /// none).
    pub(super) mcp: Option<Arc<crate::run::tools::mcp::McpPool>>,
    /// The cassette tool calls are written to (`--record`) or answered from (`--replay`).
    pub(super) cassette: Option<Arc<crate::run::cassette::Cassette>>,
}

/// One agent loop in a run: which step it is, where its costs and records go.
pub(super) struct LoopCx<'a> {
    /// The step's name (a nested step's: `lead/scout#2.1`, see [`delegate`]).
    pub(super) step: String,
    /// The step of the workflow it runs for: whose budgets apply and whose report holds it.
    pub(super) top: &'a PlanNode,
    /// The top step's cache key, with a journal.
    pub(super) key: Option<String>,
    /// 0 for a step of the workflow, 1 for a step it delegated to, and so on.
    pub(super) depth: u32,
    /// The run's shared state.
    pub(super) shared: &'a Shared,
    /// Progress.
    pub(super) tx: &'a UnboundedSender<Event>,
    /// USD spent so far by the top step and every nested step under it.
    pub(super) tree_cost: Arc<Mutex<f64>>,
    /// `--max-tokens`, which nested steps obey too.
    pub(super) cap: Option<u32>,
}

impl LoopCx<'_> {
    fn env(&self) -> &AgentEnv {
        &self.shared.agents
    }

    /// The journal and the key, when the run has a journal.
    fn journal(&self) -> Option<(&Journal, &str)> {
        Some((self.env().journal.as_ref()?, self.key.as_deref()?))
    }

    /// The budget key under which this loop's next turn is held.
    fn turn_hold(&self) -> String {
        format!("{}#next-turn", self.step)
    }

    /// Budget hook, before turn `turn`: its worst case `worst_usd` must fit. The first turn of
    /// a workflow step was admitted when the step started.
    fn before_turn(&self, turn: u32, worst_usd: f64) -> Result<(), String> {
        if self.depth == 0 && turn == 1 {
            return Ok(());
        }
        let mut b = lock(&self.env().budgets);
        if !b.applies(self.top) {
            return Ok(());
        }
        let what = format!("turn {turn} of `{}`", self.step);
        b.try_hold(self.top, &self.turn_hold(), worst_usd, &what)
    }

    /// Budget hook, after a turn that cost `cost_usd`: the top step now holds what its tree
    /// really spent, and this loop's turn hold is released.
    fn after_turn(&self, cost_usd: f64) {
        let total = {
            let mut t = lock(&self.tree_cost);
            *t += cost_usd;
            *t
        };
        let mut b = lock(&self.env().budgets);
        if b.applies(self.top) {
            b.set_hold(self.top, &self.turn_hold(), 0.0);
            b.set_hold(self.top, &self.top.name, total);
        }
    }

    /// Releases what this loop holds for a turn that will not come.
    fn release(&self) {
        let mut b = lock(&self.env().budgets);
        if b.applies(self.top) {
            b.set_hold(self.top, &self.turn_hold(), 0.0);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The bound on one tool call of an agent with `tool_timeout_ms` (the default when `None`).
pub(super) fn tool_timeout(tool_timeout_ms: Option<u64>) -> Duration {
    Duration::from_millis(tool_timeout_ms.unwrap_or(DEFAULT_TOOL_TIMEOUT_MS))
}

/// A call in a few words, for progress lines: the tool as written in a script and its main
/// argument, shortened (`grep "login"`, `read src/main.rs`, `exec cargo test`,
/// `agent(scout) "find the login code"`). Redacted.
pub fn call_brief(tool: &str, arguments: &serde_json::Value) -> String {
    let shown = match tool.strip_prefix("agent__") {
        Some(agent) => format!("agent({agent})"),
        None => tool.replacen("__", ".", 1),
    };
    let arg = main_argument(arguments);
    let text = if arg.is_empty() {
        shown
    } else {
        format!("{shown} {arg}")
    };
    crate::redact::redact(text).into_string()
}

/// The argument that says most about a call: an argv joined, else a path, else the first
/// string, shortened to 60 characters; patterns and prompts quoted.
fn main_argument(arguments: &serde_json::Value) -> String {
    let Some(obj) = arguments.as_object() else {
        return short(&arguments.to_string());
    };
    if let Some(argv) = obj.values().find_map(|v| v.as_array()) {
        let words: Vec<&str> = argv.iter().filter_map(|w| w.as_str()).collect();
        if !words.is_empty() {
            return short(&words.join(" "));
        }
    }
    for key in ["pattern", "query", "prompt"] {
        if let Some(s) = obj.get(key).and_then(|v| v.as_str()) {
            return format!("\"{}\"", short(s));
        }
    }
    obj.values()
        .find_map(|v| v.as_str())
        .map(short)
        .unwrap_or_default()
}

fn short(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests;
