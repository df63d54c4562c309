//! Reading a journal: its lines parsed (a last line cut short by a crash tolerated) and folded
//! into what the run did.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read as _;
use std::path::Path;

use indexmap::IndexMap;

use super::records::{
    EndRecord, Record, RunHeader, StepOutcome, StepRecord, ToolRecord, TurnRecord,
};
use super::{FORMAT_VERSION, JournalError, io_error};

/// What a journal says, folded over its records.
#[derive(Debug, Clone)]
pub(super) struct History {
    pub(super) header: RunHeader,
    /// Inputs and step names of the latest segment.
    pub(super) inputs: IndexMap<String, String>,
    pub(super) steps: Vec<String>,
    /// Succeeded records by step name, oldest first.
    pub(super) succeeded: HashMap<String, Vec<StepRecord>>,
    /// The last thing recorded of each step.
    pub(super) last: HashMap<String, LastSeen>,
    /// The `end` record of the latest segment, if it has one.
    pub(super) end: Option<EndRecord>,
    /// Every step execution recorded (`start` or `step`), by name.
    pub(super) recorded: HashSet<String>,
    /// USD of every recorded step, re-runs included, and of the recorded turns of agent loops
    /// that never ended: what the run has cost so far.
    pub(super) spent_usd: f64,
    /// The agent loops' transcripts, by step name (nested steps by their own names).
    pub(super) transcripts: HashMap<String, Transcript>,
    /// USD of the turns recorded since each step's last `step` record (which includes them).
    unsettled_usd: HashMap<String, f64>,
    /// The requests sent in provider batches, by step and request hash: the batch (its
    /// provider, API and id) and the request's `custom_id`. A later batch of the same request
    /// wins.
    pub(super) batched: HashMap<(String, String), (std::sync::Arc<BatchRef>, String)>,
}

/// A provider batch a journal recorded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchRef {
    /// The script's provider name.
    pub provider: String,
    /// Its API.
    pub api: String,
    /// The provider's id of the batch.
    pub batch_id: String,
    /// How many requests it holds.
    pub items: usize,
}

/// What an agent loop recorded of its latest execution with one cache key: its turns and the
/// ends (and starts) of its tool calls, so that a resumed run continues it without running a
/// recorded call again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    /// The cache key the loop ran with.
    pub key: String,
    /// Its model turns, in order.
    pub turns: Vec<TurnRecord>,
    /// Ended calls by turn and call id.
    pub results: HashMap<(u32, String), ToolRecord>,
    /// Calls that started and may have had an effect, by turn and call id.
    pub started: HashSet<(u32, String)>,
}

impl Transcript {
    /// The transcript of a loop with `key`, restarted when the key changes.
    fn for_key<'t>(
        map: &'t mut HashMap<String, Transcript>,
        step: &str,
        key: &str,
    ) -> &'t mut Self {
        let t = map.entry(step.to_string()).or_default();
        if t.key != key {
            *t = Transcript {
                key: key.to_string(),
                ..Transcript::default()
            };
        }
        t
    }
}

#[derive(Debug, Clone)]
pub(super) enum LastSeen {
    Started,
    Ended(Box<StepRecord>),
}

/// A journal read from disk.
pub(super) struct Loaded {
    pub(super) history: History,
    /// Bytes up to the end of the last complete record.
    pub(super) good_len: u64,
    /// The last record is complete but its newline is missing.
    pub(super) needs_newline: bool,
}

/// The id of the run whose journal is `path` (its directory's name).
fn run_id_of(path: &Path) -> String {
    path.parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads and folds a journal.
///
/// # Errors
/// [`JournalError::NoRecords`] when the file is missing or holds no complete record;
/// [`JournalError::Corrupt`] for a line that is not a record; [`JournalError::Io`].
pub(super) fn read_journal(path: &Path) -> Result<Loaded, JournalError> {
    let Records {
        records,
        good_len,
        needs_newline,
    } = read_records(path)?;
    let history = fold(path, records)?;
    Ok(Loaded {
        history,
        good_len,
        needs_newline,
    })
}

/// The complete records of a journal as read ([`read_records`]).
pub(super) struct Records {
    /// Each record with its 1-based line number (a last line cut short by a crash left out).
    pub(super) records: Vec<(usize, Record)>,
    /// Bytes up to the end of the last complete record.
    pub(super) good_len: u64,
    /// The last record is complete but its newline is missing.
    pub(super) needs_newline: bool,
}

/// The complete records of a journal, where the last complete one ends, and whether it lacks
/// its newline.
///
/// # Errors
/// As [`read_journal`].
pub(super) fn read_records(path: &Path) -> Result<Records, JournalError> {
    let mut bytes = Vec::new();
    match File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("read", path)(e)),
    }
    let mut records = Vec::new();
    let mut good_len = 0u64;
    let mut needs_newline = false;
    let mut offset = 0usize;
    // Bytes, not text: offsets must be exact to cut a damaged tail, and a write cut in the
    // middle of a multi-byte character is just another cut line.
    let mut lines = bytes
        .split_inclusive(|b| *b == b'\n')
        .enumerate()
        .peekable();
    while let Some((i, raw)) = lines.next() {
        offset += raw.len();
        let complete = raw.ends_with(b"\n");
        let line = raw.trim_ascii();
        if line.is_empty() {
            if complete {
                good_len = offset as u64;
            }
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => {
                records.push((i + 1, r));
                good_len = offset as u64;
                needs_newline = !complete;
            }
            // A crash in the middle of a write leaves a last line without its newline.
            Err(_) if !complete && lines.peek().is_none() => {}
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!("not a journal record ({e})"),
                });
            }
        }
    }
    if records.is_empty() {
        return Err(JournalError::NoRecords {
            id: run_id_of(path),
            path: path.to_path_buf(),
        });
    }
    Ok(Records {
        records,
        good_len,
        needs_newline,
    })
}

/// Folds the records (with their 1-based line numbers) into what the run did.
pub(super) fn fold(path: &Path, records: Vec<(usize, Record)>) -> Result<History, JournalError> {
    let mut it = records.into_iter();
    let header = match it.next() {
        Some((_, Record::Run(h))) => h,
        other => {
            return Err(JournalError::Corrupt {
                path: path.to_path_buf(),
                line: other.map_or(1, |(line, _)| line),
                message: "the journal does not start with a `run` record".into(),
            });
        }
    };
    if header.version > FORMAT_VERSION {
        return Err(JournalError::Resume(format!(
            "{} was written by a newer orch ({}, journal format {}); this one reads format {FORMAT_VERSION}: resume it with that version",
            path.display(),
            header.orch_version,
            header.version
        )));
    }
    let mut h = History {
        inputs: header.inputs.clone(),
        steps: header.steps.clone(),
        header,
        succeeded: HashMap::new(),
        last: HashMap::new(),
        end: None,
        recorded: HashSet::new(),
        spent_usd: 0.0,
        transcripts: HashMap::new(),
        unsettled_usd: HashMap::new(),
        batched: HashMap::new(),
    };
    for (line, r) in it {
        match r {
            Record::Run(_) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line,
                    message: "a second `run` record: two journals were joined".into(),
                });
            }
            Record::Resume(s) => {
                h.inputs = s.inputs;
                h.steps = s.steps;
                h.end = None;
            }
            Record::Start(s) => {
                h.recorded.insert(s.name.clone());
                h.last.insert(s.name, LastSeen::Started);
            }
            Record::Step(s) => {
                h.recorded.insert(s.name.clone());
                // The step's cost includes its turns, already counted as they were recorded.
                let turns = h.unsettled_usd.remove(&s.name).unwrap_or(0.0);
                h.spent_usd += (s.cost_usd - turns).max(0.0);
                if s.status == StepOutcome::Succeeded {
                    // A loop that ended well is not continued: a new run of it starts afresh.
                    let nested = format!("{}/", s.name);
                    h.transcripts
                        .retain(|k, _| k != &s.name && !k.starts_with(&nested));
                    h.succeeded
                        .entry(s.name.clone())
                        .or_default()
                        .push((*s).clone());
                }
                h.last.insert(s.name.clone(), LastSeen::Ended(s));
            }
            Record::Turn(t) => {
                h.spent_usd += t.cost_usd;
                // A nested step's turns are settled by its top step's record.
                let top = t.step.split('/').next().unwrap_or(&t.step).to_string();
                *h.unsettled_usd.entry(top).or_default() += t.cost_usd;
                Transcript::for_key(&mut h.transcripts, &t.step, &t.key)
                    .turns
                    .push(*t);
            }
            Record::ToolStart(c) => {
                Transcript::for_key(&mut h.transcripts, &c.step, &c.key)
                    .started
                    .insert((c.turn, c.call_id));
            }
            Record::Tool(c) => {
                let id = (c.call.turn, c.call.id.clone());
                Transcript::for_key(&mut h.transcripts, &c.step, &c.key)
                    .results
                    .insert(id, *c);
            }
            // Attempts and warnings are records for people (`orch runs show`, reports); a resume needs
            // only the outcomes above.
            Record::Attempt(_) | Record::Warning(_) => {}
            Record::Batch(b) => {
                let batch = std::sync::Arc::new(BatchRef {
                    provider: b.provider,
                    api: b.api,
                    batch_id: b.batch_id,
                    items: b.items.len(),
                });
                for item in b.items {
                    h.batched
                        .insert((item.step, item.request), (batch.clone(), item.custom_id));
                }
            }
            Record::End(e) => h.end = Some(e),
        }
    }
    Ok(h)
}

/// The `run` record of a journal, if its first line is one.
pub(super) fn read_header(path: &Path) -> Option<RunHeader> {
    let file = File::open(path).ok()?;
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(file), &mut first).ok()?;
    match serde_json::from_str::<Record>(first.trim_end()) {
        Ok(Record::Run(h)) => Some(h),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::JOURNAL_FILE;
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(JOURNAL_FILE);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn header_line() -> String {
        serde_json::to_string(&Record::Run(RunHeader {
            version: FORMAT_VERSION,
            run_id: "r".into(),
            script: "/s.orch".into(),
            workflow: "main".into(),
            inputs: IndexMap::new(),
            plan_hash: "h".into(),
            target: "simulator".into(),
            steps: vec!["a".into()],
            at_ms: 0,
            orch_version: "0".into(),
        }))
        .unwrap()
    }

    #[test]
    fn a_cut_last_line_is_tolerated_and_a_damaged_middle_line_is_not() {
        let dir = std::env::temp_dir().join(format!("orch-journal-unit-{}", std::process::id()));
        let h = header_line();
        let p = write(&dir, &format!("{h}\n{{\"type\":\"start\",\"na"));
        let l = read_journal(&p).expect("cut last line tolerated");
        assert_eq!(l.good_len as usize, h.len() + 1);
        assert!(!l.needs_newline);

        let p = write(&dir, &format!("{h}\n{{oops}}\n{h}\n"));
        let e = read_journal(&p).err().expect("damaged");
        let msg = e.to_string();
        assert!(
            msg.contains("line 2") && msg.contains(JOURNAL_FILE),
            "{msg}"
        );
        assert!(msg.contains("delete that line"), "{msg}");

        let p = write(
            &dir,
            "{\"type\":\"end\",\"status\":\"failed\",\"cost_usd\":0,\"at_ms\":0}\n",
        );
        let msg = read_journal(&p).err().expect("no header").to_string();
        assert!(
            msg.contains("line 1") && msg.contains("`run` record"),
            "{msg}"
        );

        // Cut in the middle of a multi-byte character: still just a cut line.
        let mut bytes = format!("{h}\n{{\"type\":\"start\",\"name\":\"caf").into_bytes();
        bytes.push(0xc3);
        std::fs::write(&p, &bytes).unwrap();
        let l = read_journal(&p).expect("cut character tolerated");
        assert_eq!(l.good_len as usize, h.len() + 1);

        // A complete last record without its newline is kept.
        let p = write(&dir, &h);
        let l = read_journal(&p).expect("complete record");
        assert!(l.needs_newline);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
