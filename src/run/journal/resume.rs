//! Resuming: which run `--resume` picks, and for each step ready to start, whether its
//! recorded result is reused (same cache key) or it runs again, and why.

use std::path::{Path, PathBuf};

use super::super::cache_key::{self, KeyParts};
use super::super::render::Scope;
use super::super::scheduler::Scheduler;
use super::super::step_cache;
use super::super::{Event, StepReport, StepStatus};
use super::list::run_dirs;
use super::read::{LastSeen, read_header, read_journal};
use super::records::{EndStatus, StepOutcome};
use super::write::{Inner, lock_run};
use super::{Journal, JournalError};
use crate::plan::{NodeId, Ref};

/// What a resumed run does with a step that is ready to start.
#[derive(Debug, Clone)]
enum Decision {
    /// Take the recorded result.
    Reuse(Box<StepReport>),
    /// Run it again, for this reason.
    Rerun(String),
}

impl Journal {
    /// Opens run `id` of `script`'s `workflow` in `state_dir` to resume it; without an id,
    /// the most recent run of that script and workflow that did not succeed. Takes the run's
    /// lock ([`LOCK_FILE`](super::LOCK_FILE)) before reading its journal, and holds it until the run's `end`
    /// record (or until the journal is dropped): while it is held no other process can
    /// resume the run, so one process alone ever appends to (or cuts a damaged tail off) a
    /// journal.
    ///
    /// # Errors
    /// [`JournalError::Resume`] when there is no such run or it belongs to another script or
    /// workflow; [`JournalError::Busy`] when another process is running it;
    /// [`JournalError::NoRecords`] when it was stopped before its first record;
    /// [`JournalError::Corrupt`] or [`JournalError::Io`] when its journal cannot be read.
    pub fn resume(
        state_dir: &Path,
        script: &str,
        workflow: &str,
        id: Option<&str>,
    ) -> Result<Journal, JournalError> {
        let runs = run_dirs(state_dir)?;
        let (id, path) = match id {
            Some(id) => match runs.iter().find(|(r, _)| r == id) {
                Some((_, path)) => (id.to_string(), path.clone()),
                None => {
                    return Err(JournalError::Resume(format!(
                        "no run `{id}` in {}; `orch runs {script}` lists the runs of this script (pass `--state-dir DIR` if it was kept elsewhere)",
                        state_dir.join("runs").display()
                    )));
                }
            },
            None => latest_unfinished(state_dir, &runs, script, workflow)?,
        };
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let lock = lock_run(&dir, &id)?;
        // Read under the lock: no other process writes it any more.
        let loaded = read_journal(&path)?;
        let h = &loaded.history.header;
        if h.script != script {
            return Err(JournalError::Resume(format!(
                "run `{id}` is a run of {}, not of {script}; resume it with `orch run {} --resume {id}`",
                h.script, h.script
            )));
        }
        if h.workflow != workflow {
            return Err(JournalError::Resume(format!(
                "run `{id}` ran workflow `{}`, not `{workflow}`; pass `--workflow {}` to resume it",
                h.workflow, h.workflow
            )));
        }
        Ok(Journal::from_inner(Inner {
            id,
            dir,
            path,
            script: script.to_string(),
            file: None,
            good_len: loaded.good_len,
            needs_newline: loaded.needs_newline,
            history: Some(loaded.history),
            lock: Some(lock),
            syncer: None,
            syncs_at_end: 0,
            policy: Default::default(),
            steps_inline: false,
        }))
    }

    /// On a resumed run, what to do with a step about to start whose cache key parts are
    /// `parts`: reuse a recorded result with the same key, or run again, saying why.
    /// `describe_use` says why the value of an interpolated name changed. `None` on a new run.
    fn decide(
        &self,
        name: &str,
        parts: &KeyParts,
        key: &str,
        describe_use: &dyn Fn(&str) -> String,
    ) -> Option<Decision> {
        let inner = self.lock();
        let h = inner.history.as_ref()?;
        if let Some(r) = h
            .succeeded
            .get(name)
            .and_then(|rs| rs.iter().rev().find(|r| r.cache_key == key))
        {
            return Some(Decision::Reuse(Box::new(StepReport {
                name: r.name.clone(),
                agent: r.agent.clone(),
                model: r.model.clone(),
                status: StepStatus::Succeeded,
                attempts: r.attempts,
                usage: r.usage,
                cost_usd: r.cost_usd,
                started_ms: r.started_ms,
                finished_ms: r.finished_ms,
                output: r.output.clone(),
                value: r.value.clone(),
                approval: r.approval.clone(),
                agent_loop: r.agent_loop.clone(),
                served_model: r.served_model.clone(),
                truncated: r.truncated,
                warnings: r.warnings.clone(),
            })));
        }
        let why = match h.last.get(name) {
            Some(LastSeen::Ended(r)) => match r.status {
                StepOutcome::Failed => format!(
                    "it failed last time: {}",
                    r.error.as_deref().unwrap_or("no error recorded")
                ),
                StepOutcome::Interrupted => "it was interrupted last time".to_string(),
                StepOutcome::Succeeded => parts.changes_since(&r.key, describe_use),
            },
            Some(LastSeen::Started) => {
                "it was in flight when the earlier run was killed (no result in the journal)"
                    .to_string()
            }
            None if h.steps.iter().any(|s| s == name) => {
                "it did not start last time (the run stopped before it)".to_string()
            }
            None => "it is new: the journal has no entry for it".to_string(),
        };
        let why = match h.transcripts.get(name) {
            Some(t) if t.key == key && !t.turns.is_empty() => format!(
                "{why}; its agent loop continues from the {} turn{} in the journal",
                t.turns.len(),
                if t.turns.len() == 1 { "" } else { "s" }
            ),
            _ => why,
        };
        Some(Decision::Rerun(why))
    }
}

/// The most recent run of `script`'s `workflow` that did not succeed.
fn latest_unfinished(
    state_dir: &Path,
    runs: &[(String, PathBuf)],
    script: &str,
    workflow: &str,
) -> Result<(String, PathBuf), JournalError> {
    let mut other_workflow = None;
    let mut succeeded = None;
    let mut empty = None;
    for (id, path) in runs.iter().rev() {
        // Journals of other scripts are not this command's business, even damaged ones.
        let Some(header) = read_header(path) else {
            if matches!(read_journal(path), Err(JournalError::NoRecords { .. })) {
                empty.get_or_insert(id.clone());
            }
            continue;
        };
        if header.script != script {
            continue;
        }
        if header.workflow != workflow {
            other_workflow.get_or_insert((id.clone(), header.workflow));
            continue;
        }
        let loaded = read_journal(path)?;
        if loaded.history.end.as_ref().map(|e| e.status) == Some(EndStatus::Succeeded) {
            succeeded.get_or_insert(id.clone());
            continue;
        }
        return Ok((id.clone(), path.clone()));
    }
    let mut msg = format!(
        "no unfinished run of {script} (workflow `{workflow}`) in {}; start one with `orch run {script}` (without --resume)",
        state_dir.join("runs").display()
    );
    if let Some(id) = succeeded {
        msg.push_str(&format!(
            "\n  its latest run, `{id}`, succeeded; `--resume {id}` reuses its results anyway"
        ));
    }
    if let Some((id, wf)) = other_workflow {
        msg.push_str(&format!(
            "\n  run `{id}` of this script ran workflow `{wf}`: pass `--workflow {wf}` to resume it"
        ));
    }
    if let Some(id) = empty {
        msg.push_str(&format!(
            "\n  run `{id}` has no records (it was stopped before it began): there is nothing of it to resume"
        ));
    }
    Err(JournalError::Resume(msg))
}

impl Scheduler<'_> {
    /// A step is ready to start. With a journal, computes its cache key parts; on a resumed
    /// run, settles it with its recorded result when one has the same key (returns `true`),
    /// or notes why it runs again.
    pub(in crate::run) fn reuse(
        &mut self,
        id: NodeId,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) -> bool {
        let Some(ids) = self.shared.identities.as_ref() else {
            return false;
        };
        let node = &self.plan.nodes[id];
        let scope = Scope {
            plan: self.plan,
            inputs: self.inputs,
            outputs: &self.outputs,
        };
        let parts = cache_key::step_parts(node, &scope, ids, self.max_tokens_cap);
        let key = parts.key();
        let decision = self.journal.as_ref().and_then(|journal| {
            journal.decide(&node.name, &parts, &key, &|name| {
                self.describe_use(id, name)
            })
        });
        self.keys[id] = Some(std::sync::Arc::new(cache_key::StepKey {
            parts,
            key: key.clone(),
        }));
        match decision {
            None | Some(Decision::Rerun(_)) if self.take_cached(id, &key, on_event) => true,
            None => {
                self.rerun_why[id] = self.cache_miss(id);
                false
            }
            Some(Decision::Rerun(why)) => {
                self.rerun_why[id] = Some(match self.cache_miss(id) {
                    Some(miss) => format!("{why}; {miss}"),
                    None => why,
                });
                false
            }
            Some(Decision::Reuse(report)) => {
                self.reused[id] = true;
                // A reused `gather <any|first N>` no longer needs the rest of its block, as
                // when it first ran.
                self.cancel_rest_of_join(id, on_event);
                on_event(&Event::Reused(Box::new((*report).clone())));
                self.settle(id, *report);
                true
            }
        }
    }

    /// With `--cache`: settles step `id` with the result cached under `key`, if it may be
    /// cached and has one (returns `true`).
    fn take_cached(
        &mut self,
        id: NodeId,
        key: &str,
        on_event: &(dyn Fn(&Event) + Send + Sync),
    ) -> bool {
        let node = &self.plan.nodes[id];
        let Some(cache) = self
            .opts
            .cache
            .as_ref()
            .filter(|_| step_cache::cacheable(node))
        else {
            return false;
        };
        let Some(mut report) = cache.get(key, &node.name) else {
            return false;
        };
        // Nothing was spent on it in this run, and it took no time.
        let now = self.elapsed_ms();
        report.started_ms = Some(now);
        report.finished_ms = Some(now);
        report.attempts = 0;
        report.usage = Default::default();
        report.cost_usd = 0.0;
        self.reused[id] = true;
        self.cancel_rest_of_join(id, on_event);
        on_event(&Event::Cached(Box::new(report.clone())));
        // Recorded in the journal as a step that ended: a resumed run reuses it from there.
        self.record(id, &report);
        self.settle(id, report);
        true
    }

    /// With `--cache`: why step `id`, ready to run, was not taken from the cache (`None`
    /// without a cache, or for a step that is never cached: the journal's reason, if any,
    /// is enough).
    fn cache_miss(&self, id: NodeId) -> Option<String> {
        let cache = self.opts.cache.as_ref()?;
        let node = &self.plan.nodes[id];
        if !step_cache::cacheable(node) {
            return Some(
                "it is never cached: it may have side effects (a command, or tools that write, run programs, call MCP servers or delegate)".to_string(),
            );
        }
        Some(format!(
            "the cache {} has no result for its key (no earlier run sent the same request)",
            cache.dir().display()
        ))
    }

    /// Why the value of an interpolated name (`topic`, `plan`, `found.a`) of step `id`
    /// differs from the one its last record used.
    fn describe_use(&self, id: NodeId, dotted: &str) -> String {
        let node = &self.plan.nodes[id];
        let target = node
            .prompt
            .iter()
            .chain(node.args.values())
            .flat_map(|t| t.interps())
            .find(|i| i.path == dotted)
            .map_or(Ref::Unbound, |i| i.target);
        let upstream = |n: NodeId| {
            let name = &self.plan.nodes[n].name;
            if self.ran[n] {
                format!("upstream `{name}` re-ran")
            } else {
                format!("upstream `{name}`'s output changed")
            }
        };
        let root = dotted.split('.').next().unwrap_or(dotted);
        match target {
            Ref::Param(_) => format!("input `{root}` changed"),
            Ref::Node(n) | Ref::Member(n) => upstream(n),
            Ref::Group(g) => {
                let reran: Vec<String> = self.plan.groups[g]
                    .members
                    .iter()
                    .filter(|&&m| self.ran[m])
                    .map(|&m| format!("`{}`", self.plan.nodes[m].name))
                    .collect();
                if reran.is_empty() {
                    format!("block `{root}`'s output changed")
                } else {
                    format!("upstream {} re-ran", reran.join(", "))
                }
            }
            Ref::Arg(_) | Ref::Unbound => format!("`{dotted}` changed"),
        }
    }
}
