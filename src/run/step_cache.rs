//! The cross-run cache (`orch run --cache DIR`): a step whose cache key matches a step that
//! succeeded in any earlier run using the same directory takes that result instead of running.
//!
//! The key is the one `--resume` compares ([`super::cache_key`]): the model identifier and
//! where requests go, the rendered prompt and system text, the options that change the
//! answer; so a result is reused only for the same request to the same provider. Only steps
//! without side effects are cached ([`cacheable`]): model steps whose agent has no tools or
//! only the read-only built-ins (`read`, `list`, `glob`, `grep`). A command step, an agent loop
//! that may write, run a program, call an MCP tool or delegate, and an approval always run.
//!
//! An entry is one file, `DIR/KEY.json` (`{"orch_cache": 1, "step": StepReport}`), written to a
//! temporary file and renamed into place, so a reader never sees half an entry and two runs
//! writing the same key leave one whole entry. Entries are redacted like everything orch
//! writes. Nothing expires: remove the directory (or a file in it) to forget.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{StepReport, StepStatus};
use crate::plan::{PlanExec, PlanNode};
use crate::redact::redact;

/// The format version of entries.
const VERSION: u64 = 1;

/// A cache directory.
#[derive(Debug)]
pub struct StepCache {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    orch_cache: u64,
    step: StepReport,
}

impl StepCache {
    /// The cache in `dir`, created if missing.
    ///
    /// # Errors
    /// The directory cannot be created: the message names it.
    pub fn open(dir: &Path) -> Result<StepCache, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("--cache {}: {e}; pass a writable directory", dir.display()))?;
        Ok(StepCache {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The result cached under `key`, renamed to step `name` (the same request may come
    /// from a step of another name, or another script); `None` when there is none, or the
    /// entry cannot be read (it is then written again when the step succeeds).
    pub fn get(&self, key: &str, name: &str) -> Option<StepReport> {
        let text = std::fs::read_to_string(self.path(key)).ok()?;
        let entry: Entry = serde_json::from_str(&text).ok()?;
        (entry.orch_cache == VERSION && entry.step.status == StepStatus::Succeeded).then(|| {
            let mut step = entry.step;
            step.name = name.to_string();
            step
        })
    }

    /// Caches a step that succeeded under `key`.
    ///
    /// # Errors
    /// The entry cannot be written (the run goes on; the caller says so).
    pub fn put(&self, key: &str, step: &StepReport) -> Result<(), String> {
        let entry = Entry {
            orch_cache: VERSION,
            step: step.clone(),
        };
        let text = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
        let text = redact(text).into_string();
        let tmp = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
        let written =
            std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, self.path(key)));
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!(
                "cannot write the cache entry {}: {e}",
                self.path(key).display()
            )
        })
    }
}

/// Whether a step's result may be reused across runs: a model step whose agent has no tools or
/// only read-only built-in ones. Everything else may have a side effect the user wants to
/// happen again (or is a region, an item, an approval), so it always runs.
pub fn cacheable(node: &PlanNode) -> bool {
    match &node.exec {
        PlanExec::Model { tools, .. } => tools
            .as_ref()
            .is_none_or(|t| t.grants.iter().all(|g| g.read_only())),
        _ => false,
    }
}
