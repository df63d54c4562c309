//! Cassettes: every provider exchange of a run written to a file (`orch run --record FILE`),
//! and a later run answered from that file with no provider at all (`orch run --replay FILE`).
//!
//! A cassette is JSON Lines, one object per line, in the order things happened:
//!
//! ```text
//! {"cassette":"orch","version":1,"target":"endpoint http://127.0.0.1:8089/v1"}
//! {"model":{"name":"fast","id":"gemma-3-270m","priced":false}}
//! {"request":{"model":"gemma-3-270m","prompt":"…","max_tokens":1024,…},"answer":{"text":"…","usage":{…},"model":"…","calls":[],"stop":"end_turn"}}
//! {"request":{…},"failure":{"message":"HTTP 503 from openai: busy","retryable":true,"overloaded":true}}
//! {"command":{"argv":["date","-u"],"stdin":"","env":[]},"exit":{"stdout":"…","stderr":"","code":0}}
//! {"tool":{"name":"read","input":{"path":"src/lib.rs"}},"output":{"content":"…","is_error":false,"refused":false,"summary":"12 lines"}}
//! ```
//!
//! - A `model` line says which identifier a script model was asked by, and whether its tokens
//!   were priced (not with `--endpoint`), so a replay asks and prices the same.
//! - A `request` is the identity of one model request: everything sent that decides the
//!   answer (model identifier, system text, prompt, `max_tokens`, temperature, structured
//!   output schema, the conversation's earlier turns with their tool calls and results, the
//!   tools offered, the tool choice). The answer is the whole completion, however it arrived
//!   (streamed or not); a `failure` is an attempt that failed, replayed as the same error so
//!   retries and fallbacks take the same path.
//! - A `command` line is one run of a command step's program (argv, stdin, the variables it
//!   was given) and how it ended (stdout, the end of stderr, exit code, or the failure): on
//!   replay the program does not run.
//! - A `tool` line is one tool call of an agent loop and its result: on replay the call is
//!   answered from the cassette and nothing runs (no file is written, no command started),
//!   so a replayed agent loop sees the results the recorded one saw.
//!
//! Every line passes the one redaction function ([`crate::redact::redact`]) before it is
//! written: a cassette holds no key, nor anything shaped like one. Requests are matched by
//! their identity as written (redacted), so a request holding a secret still matches.
//!
//! Identical requests (two items with the same prompt, a retried request) are answered in
//! recorded order; once their recorded answers are used up, the last one answers again.
//! A request the cassette does not have is an error naming the closest recorded request and
//! the first difference ([`Cassette::complete`]); it is never retried.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::command::{CommandError, CommandExit, CommandOutput, CommandSpec};
use super::provider::{
    Completion, CompletionRequest, ProviderError, StopReason, ToolCall, ToolChoice, Usage,
};
use super::tools::ToolOutput;
use crate::redact::redact;

/// The format version this build writes and reads.
pub const VERSION: u64 = 1;

/// The longest excerpt of a differing text that a miss shows, in characters, either side of
/// the first difference.
const EXCERPT_CHARS: usize = 40;

/// A cassette being recorded or replayed. Shared by every step of a run (`Arc<Cassette>`).
#[derive(Debug)]
pub struct Cassette {
    path: PathBuf,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    /// Lines are appended as exchanges end.
    Record(Mutex<File>),
    /// Answers by request identity.
    Replay(Box<Mutex<Tape>>),
}

/// What a cassette holds, indexed for replay.
#[derive(Debug, Default)]
struct Tape {
    /// The target the cassette was recorded against, as [`super::Target::describe`] said it.
    target: String,
    models: HashMap<String, RecordedModel>,
    /// Answers (or failures) by request identity, in recorded order.
    completions: HashMap<String, Answers<Result<RecordedAnswer, RecordedFailure>>>,
    /// Every recorded request identity, in order: what a miss is compared with.
    requests: Vec<Value>,
    /// Tool results by call identity (tool name and input), in recorded order.
    tools: HashMap<String, Answers<RecordedOutput>>,
    /// Command runs by identity (argv, stdin, env), in recorded order.
    commands: HashMap<String, Answers<Result<RecordedExit, String>>>,
}

/// The recorded answers to one identity: used in order, the last repeated once used up.
#[derive(Debug)]
struct Answers<T> {
    queue: VecDeque<T>,
    last: T,
}

impl<T: Clone> Answers<T> {
    fn new(first: T) -> Self {
        Answers {
            queue: VecDeque::from([first.clone()]),
            last: first,
        }
    }

    fn push(&mut self, next: T) {
        self.queue.push_back(next.clone());
        self.last = next;
    }

    fn next(&mut self) -> T {
        self.queue.pop_front().unwrap_or_else(|| self.last.clone())
    }
}

/// How a script model was asked, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedModel {
    /// The script's model name.
    pub name: String,
    /// The identifier requested from the provider.
    pub id: String,
    /// Whether its tokens were priced at the script's prices (false with `--endpoint`).
    pub priced: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordedAnswer {
    text: String,
    usage: Usage,
    model: String,
    calls: Vec<ToolCall>,
    stop: StopReason,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordedFailure {
    message: String,
    retryable: bool,
    overloaded: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordedOutput {
    content: String,
    is_error: bool,
    refused: bool,
    summary: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordedExit {
    stdout: String,
    stderr: String,
    code: i32,
}

/// One line of a cassette, as read.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Header {
        cassette: String,
        version: u64,
        #[serde(default)]
        target: String,
    },
    Model {
        model: RecordedModel,
    },
    Answer {
        request: Value,
        answer: RecordedAnswer,
    },
    Failure {
        request: Value,
        failure: RecordedFailure,
    },
    Tool {
        tool: Value,
        output: RecordedOutput,
    },
    Exit {
        command: Value,
        exit: RecordedExit,
    },
    CommandFailure {
        command: Value,
        error: String,
    },
}

impl Cassette {
    /// A new cassette at `path` to record into (an existing file is replaced), its header
    /// naming `target` (where the run's models go, [`super::Target::describe`]).
    ///
    /// # Errors
    /// The file cannot be created or written: the message names it.
    pub fn record(path: &Path, target: &str) -> Result<Cassette, String> {
        let file = File::create(path)
            .map_err(|e| format!("--record {}: {e}; pass a writable path", path.display()))?;
        let c = Cassette {
            path: path.to_path_buf(),
            mode: Mode::Record(Mutex::new(file)),
        };
        c.append(&json!({"cassette": "orch", "version": VERSION, "target": target}))?;
        Ok(c)
    }

    /// The cassette at `path`, read for replay.
    ///
    /// # Errors
    /// The file cannot be read, is not a cassette, has a version this build does not read, or
    /// has a line that is not one of a cassette's: the message names the file and line.
    pub fn replay(path: &Path) -> Result<Cassette, String> {
        let shown = path.display();
        let file = File::open(path)
            .map_err(|e| format!("--replay {shown}: {e}; pass a file written by --record"))?;
        let mut tape = Tape::default();
        let mut saw_header = false;
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let at = format!("--replay {shown}:{}", i + 1);
            let line = line.map_err(|e| format!("{at}: {e}"))?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed: Line = serde_json::from_str(&line).map_err(|e| {
                format!(
                    "{at}: not a cassette line ({e}); cassettes are written by `orch run --record`"
                )
            })?;
            match parsed {
                Line::Header {
                    cassette,
                    version,
                    target,
                } => {
                    if cassette != "orch" || version != VERSION {
                        return Err(format!(
                            "{at}: a cassette of version {version} ({cassette}); this orch reads version {VERSION}: record it again with `orch run --record`"
                        ));
                    }
                    saw_header = true;
                    tape.target = target;
                }
                _ if !saw_header => {
                    return Err(format!(
                        "{at}: the first line is not a cassette header; cassettes are written by `orch run --record`"
                    ));
                }
                Line::Model { model } => {
                    tape.models.insert(model.name.clone(), model);
                }
                Line::Answer { request, answer } => tape.add_request(request, Ok(answer)),
                Line::Failure { request, failure } => tape.add_request(request, Err(failure)),
                Line::Tool { tool, output } => add(&mut tape.tools, &tool, output),
                Line::Exit { command, exit } => add(&mut tape.commands, &command, Ok(exit)),
                Line::CommandFailure { command, error } => {
                    add(&mut tape.commands, &command, Err(error))
                }
            }
        }
        if !saw_header {
            return Err(format!(
                "--replay {shown}: empty; cassettes are written by `orch run --record`"
            ));
        }
        Ok(Cassette {
            path: path.to_path_buf(),
            mode: Mode::Replay(Box::new(Mutex::new(tape))),
        })
    }

    /// The cassette's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it answers requests (`--replay`) rather than recording them.
    pub fn is_replay(&self) -> bool {
        matches!(self.mode, Mode::Replay(_))
    }

    /// When replaying: the target the cassette was recorded against (as
    /// [`super::Target::describe`] said it).
    pub fn recorded_target(&self) -> Option<String> {
        match &self.mode {
            Mode::Replay(t) => Some(lock(t).target.clone()),
            Mode::Record(_) => None,
        }
    }

    /// When replaying: how script model `name` was asked when recorded.
    pub fn model(&self, name: &str) -> Option<RecordedModel> {
        match &self.mode {
            Mode::Replay(t) => lock(t).models.get(name).cloned(),
            Mode::Record(_) => None,
        }
    }

    /// When recording: notes how script model `name` is asked (`id`) and whether its tokens
    /// are priced.
    ///
    /// # Errors
    /// The cassette cannot be written.
    pub fn note_model(&self, name: &str, id: &str, priced: bool) -> Result<(), String> {
        let model = RecordedModel {
            name: name.to_string(),
            id: id.to_string(),
            priced,
        };
        self.append(&json!({ "model": model }))
    }

    /// When recording: appends the exchange of `req` and its outcome.
    ///
    /// # Errors
    /// The cassette cannot be written.
    pub fn note_completion(
        &self,
        req: &CompletionRequest,
        outcome: &Result<Completion, ProviderError>,
    ) -> Result<(), String> {
        let request = identity(req);
        let line = match outcome {
            Ok(c) => json!({"request": request, "answer": RecordedAnswer {
                text: c.text.clone(),
                usage: c.usage,
                model: c.model.clone(),
                calls: c.calls.clone(),
                stop: c.stop.clone(),
            }}),
            Err(e) => json!({"request": request, "failure": RecordedFailure {
                message: e.to_string(),
                retryable: e.is_retryable(),
                overloaded: e.is_overloaded(),
            }}),
        };
        self.append(&line)
    }

    /// When replaying: the recorded answer to `req`.
    ///
    /// # Errors
    /// The recorded failure of that request ([`ProviderError::Replayed`]), or, for a request the
    /// cassette does not have, [`ProviderError::NotRecorded`] naming the closest recorded
    /// request and the first field where the two differ.
    pub fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let Mode::Replay(tape) = &self.mode else {
            return Err(ProviderError::NotRecorded(format!(
                "{} is being recorded, not replayed",
                self.path.display()
            )));
        };
        let request = redacted(&identity(req));
        let key = request.to_string();
        let mut tape = lock(tape);
        match tape.completions.get_mut(&key).map(Answers::next) {
            Some(Ok(a)) => Ok(Completion {
                text: a.text,
                usage: a.usage,
                model: a.model,
                calls: a.calls,
                stop: a.stop,
            }),
            Some(Err(f)) => Err(ProviderError::Replayed {
                message: f.message,
                retryable: f.retryable,
                overloaded: f.overloaded,
            }),
            None => Err(ProviderError::NotRecorded(miss(
                &self.path,
                &request,
                &tape.requests,
            ))),
        }
    }

    /// When recording: appends one tool call (`name` with `input`) and its output.
    ///
    /// # Errors
    /// The cassette cannot be written.
    pub fn note_tool(&self, name: &str, input: &Value, out: &ToolOutput) -> Result<(), String> {
        let output = RecordedOutput {
            content: out.content.clone(),
            is_error: out.is_error,
            refused: out.refused,
            summary: out.summary.clone(),
        };
        self.append(&json!({"tool": {"name": name, "input": input}, "output": output}))
    }

    /// When replaying: the recorded output of a call of tool `name` with `input`; `None` when
    /// the cassette has no such call.
    pub fn tool(&self, name: &str, input: &Value) -> Option<ToolOutput> {
        let Mode::Replay(tape) = &self.mode else {
            return None;
        };
        let key = redacted(&json!({"name": name, "input": input})).to_string();
        let out = lock(tape).tools.get_mut(&key).map(Answers::next)?;
        Some(ToolOutput {
            content: out.content,
            is_error: out.is_error,
            refused: out.refused,
            summary: out.summary,
        })
    }

    /// When recording: appends one run of a command step's program and how it ended.
    ///
    /// # Errors
    /// The cassette cannot be written.
    pub fn note_command(
        &self,
        spec: &CommandSpec,
        ended: &Result<CommandExit, CommandError>,
    ) -> Result<(), String> {
        let command = command_identity(spec);
        let line = match ended {
            Ok(e) => json!({"command": command, "exit": RecordedExit {
                stdout: e.output.stdout.clone(),
                stderr: e.output.stderr.clone(),
                code: e.code,
            }}),
            Err(e) => json!({"command": command, "error": e.to_string()}),
        };
        self.append(&line)
    }

    /// When replaying: how the recorded run of `spec` ended; nothing runs.
    ///
    /// # Errors
    /// The recorded failure, or a command the cassette does not have
    /// ([`CommandError::Replayed`]).
    pub fn command(&self, spec: &CommandSpec) -> Result<CommandExit, CommandError> {
        let Mode::Replay(tape) = &self.mode else {
            return Err(CommandError::Replayed(format!(
                "{} is being recorded, not replayed",
                self.path.display()
            )));
        };
        let key = redacted(&command_identity(spec)).to_string();
        match lock(tape).commands.get_mut(&key).map(Answers::next) {
            Some(Ok(e)) => Ok(CommandExit {
                output: CommandOutput {
                    stdout: e.stdout,
                    stderr: e.stderr,
                },
                code: e.code,
            }),
            Some(Err(message)) => Err(CommandError::Replayed(message)),
            None => Err(CommandError::Replayed(format!(
                "this command ({}) is not in the cassette {} with this stdin and environment; record it again with --record",
                redact(serde_json::to_string(&spec.argv).unwrap_or_default()),
                self.path.display()
            ))),
        }
    }

    /// Writes one line, redacted, at once (one `write` per line, so concurrent steps never
    /// interleave and a killed run keeps every exchange that ended).
    fn append(&self, line: &Value) -> Result<(), String> {
        let Mode::Record(file) = &self.mode else {
            return Ok(());
        };
        let mut text = redact(line.to_string()).into_string();
        text.push('\n');
        lock(file)
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write the cassette {}: {e}", self.path.display()))
    }
}

/// Adds a recorded outcome to `map` under `identity`, after those recorded before it.
fn add<T: Clone>(map: &mut HashMap<String, Answers<T>>, identity: &Value, outcome: T) {
    let key = identity.to_string();
    match map.get_mut(&key) {
        Some(a) => a.push(outcome),
        None => {
            map.insert(key, Answers::new(outcome));
        }
    }
}

/// The identity of a command run: what decides what the program does (not its working
/// directory, which is the workspace and may be elsewhere on replay).
fn command_identity(spec: &CommandSpec) -> Value {
    json!({"argv": spec.argv, "stdin": spec.stdin, "env": spec.env})
}

impl Tape {
    fn add_request(&mut self, request: Value, outcome: Result<RecordedAnswer, RecordedFailure>) {
        let known = self.completions.len();
        add(&mut self.completions, &request, outcome);
        if self.completions.len() > known {
            // A new identity: one more request a miss is compared with.
            self.requests.push(request);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The identity of a request: every field sent that decides the answer, in a fixed order.
/// `max_output_bytes` is not sent, so it is not part of it.
pub(crate) fn identity(req: &CompletionRequest) -> Value {
    let mut id = serde_json::Map::new();
    id.insert("model".into(), json!(req.model));
    if let Some(s) = &req.system {
        id.insert("system".into(), json!(s));
    }
    id.insert("prompt".into(), json!(req.prompt));
    id.insert("max_tokens".into(), json!(req.max_tokens));
    if let Some(t) = req.temperature {
        id.insert("temperature".into(), json!(t));
    }
    if let Some(o) = &req.output {
        id.insert(
            "output".into(),
            json!({"name": o.name, "schema": o.schema, "prompted": o.prompted}),
        );
    }
    if !req.turns.is_empty() {
        id.insert("turns".into(), json!(req.turns));
    }
    if !req.tools.is_empty() {
        let specs: Vec<_> = req.tools.iter().map(|t| &t.spec).collect();
        id.insert("tools".into(), json!(specs));
        id.insert(
            "tool_choice".into(),
            json!(match req.tool_choice {
                ToolChoice::Auto => "auto",
                ToolChoice::None => "none",
            }),
        );
    }
    Value::Object(id)
}

/// `v` as it is written: redacted (and read back, so that it compares equal to a recorded
/// identity).
fn redacted(v: &Value) -> Value {
    let text = redact(v.to_string()).into_string();
    serde_json::from_str(&text).unwrap_or_else(|_| v.clone())
}

/// Why `request` is not in the cassette: the recorded request nearest to it (the one with the
/// most equal fields, the same model first) and the first field where they differ.
fn miss(path: &Path, request: &Value, recorded: &[Value]) -> String {
    let head = format!(
        "this request is not in the cassette {} (record it again with --record, or check what changed since it was recorded)",
        path.display()
    );
    let Some(nearest) = recorded.iter().max_by_key(|r| likeness(request, r)) else {
        return format!("{head}: the cassette has no model requests");
    };
    match first_difference("", request, nearest) {
        Some(d) => format!("{head}; the nearest recorded request differs at {d}"),
        None => head,
    }
}

/// How alike two identities are: same model first, then the number of equal fields.
fn likeness(a: &Value, b: &Value) -> (bool, usize) {
    let same_model = a.get("model") == b.get("model");
    let equal = match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => x.iter().filter(|(k, v)| y.get(*k) == Some(*v)).count(),
        _ => 0,
    };
    (same_model, equal)
}

/// The first place (`prompt`, `turns[2].content`) where `now` and `then` differ, with both
/// values there (texts as excerpts around the first differing character).
fn first_difference(at: &str, now: &Value, then: &Value) -> Option<String> {
    let here = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match (now, then) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => {
                        if let Some(d) = first_difference(&here(k), v, w) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("`{}`: sent now, not recorded", here(k))),
                }
            }
            b.keys()
                .find(|k| !a.contains_key(*k))
                .map(|k| format!("`{}`: recorded, not sent now", here(k)))
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                if let Some(d) = first_difference(&format!("{at}[{i}]"), v, w) {
                    return Some(d);
                }
            }
            (a.len() != b.len())
                .then(|| format!("`{at}`: {} entries now, {} recorded", a.len(), b.len()))
        }
        (Value::String(a), Value::String(b)) if a != b => {
            let (x, y) = excerpts(a, b);
            Some(format!("`{at}`: now {x:?}, recorded {y:?}"))
        }
        _ if now != then => Some(format!("`{at}`: now {now}, recorded {then}")),
        _ => None,
    }
}

/// Excerpts of two different texts around their first differing character, with `…` where
/// they were cut.
fn excerpts(a: &str, b: &str) -> (String, String) {
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let cut = |s: &str| {
        let start = common.saturating_sub(EXCERPT_CHARS);
        let chars: Vec<char> = s.chars().collect();
        let end = (common + EXCERPT_CHARS).min(chars.len());
        let mut out = String::new();
        if start > 0 {
            out.push('…');
        }
        out.extend(&chars[start.min(end)..end]);
        if end < chars.len() {
            out.push('…');
        }
        out
    };
    (cut(a), cut(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::provider::{OfferedTool, ToolResult, ToolSpec, Turn};

    fn request(prompt: &str) -> CompletionRequest {
        CompletionRequest {
            model: "m-1".into(),
            system: Some("be brief".into()),
            prompt: prompt.into(),
            max_tokens: 100,
            ..Default::default()
        }
    }

    fn answer(text: &str) -> Completion {
        Completion {
            text: text.into(),
            usage: Usage {
                input_tokens: 3,
                output_tokens: 2,
                estimated: false,
            },
            model: "m-1-served".into(),
            calls: vec![],
            stop: StopReason::EndTurn,
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("orch-cassette-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("c.jsonl")
    }

    #[test]
    fn a_recorded_exchange_is_replayed_in_order_then_repeated() {
        let path = temp("order");
        let rec = Cassette::record(&path, "simulator").unwrap();
        rec.note_model("fast", "m-1", true).unwrap();
        rec.note_completion(&request("hi"), &Ok(answer("one")))
            .unwrap();
        rec.note_completion(&request("hi"), &Ok(answer("two")))
            .unwrap();
        let failure = ProviderError::Simulated("boom".into());
        rec.note_completion(&request("fails"), &Err(failure))
            .unwrap();
        drop(rec);

        let play = Cassette::replay(&path).unwrap();
        assert_eq!(play.recorded_target().as_deref(), Some("simulator"));
        assert_eq!(play.model("fast").unwrap().id, "m-1");
        assert_eq!(play.complete(&request("hi")).unwrap().text, "one");
        assert_eq!(play.complete(&request("hi")).unwrap(), answer("two"));
        assert_eq!(play.complete(&request("hi")).unwrap().text, "two");
        let err = play.complete(&request("fails")).unwrap_err();
        assert_eq!(err.to_string(), "simulated failure: boom");
        assert!(err.is_retryable());
    }

    #[test]
    fn a_miss_names_the_first_difference() {
        let path = temp("miss");
        let rec = Cassette::record(&path, "simulator").unwrap();
        let mut req = request("Summarize the design of the scheduler in one paragraph.");
        req.turns = vec![Turn::Tools {
            results: vec![ToolResult {
                call_id: "c1".into(),
                content: "fn main() {}".into(),
                is_error: false,
            }],
        }];
        rec.note_completion(&req, &Ok(answer("ok"))).unwrap();
        drop(rec);
        let play = Cassette::replay(&path).unwrap();
        let mut changed = req.clone();
        changed.prompt = "Summarize the design of the journal in one paragraph.".into();
        let err = play.complete(&changed).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("not in the cassette"), "{msg}");
        assert!(
            msg.contains("differs at `prompt`: now \"Summarize the design of the journal"),
            "{msg}"
        );
        assert!(!err.is_retryable());
        let mut more = req.clone();
        more.turns.push(Turn::Tools { results: vec![] });
        let msg = play.complete(&more).unwrap_err().to_string();
        assert!(msg.contains("`turns`: 2 entries now, 1 recorded"), "{msg}");
    }

    #[test]
    fn tool_calls_are_replayed_by_name_and_input() {
        let path = temp("tools");
        let rec = Cassette::record(&path, "simulator").unwrap();
        let out = ToolOutput {
            content: "3 lines".into(),
            is_error: false,
            refused: false,
            summary: "read 3 lines".into(),
        };
        rec.note_tool("read", &json!({"path": "a.txt"}), &out)
            .unwrap();
        drop(rec);
        let play = Cassette::replay(&path).unwrap();
        let got = play.tool("read", &json!({"path": "a.txt"})).unwrap();
        assert_eq!(got.content, "3 lines");
        assert!(play.tool("read", &json!({"path": "b.txt"})).is_none());
    }

    #[test]
    fn keys_never_reach_a_cassette() {
        let key = "sk-cassette-0123456789abcdefghij";
        crate::redact::register(key);
        let path = temp("keys");
        let rec = Cassette::record(&path, "simulator").unwrap();
        let req = request(&format!("use {key}"));
        rec.note_completion(&req, &Ok(answer(&format!("got {key}"))))
            .unwrap();
        let mut tool_req = request("x");
        tool_req.tools = vec![OfferedTool {
            spec: ToolSpec {
                name: "read".into(),
                description: key.into(),
                input_schema: json!({}),
            },
            read_only: true,
        }];
        rec.note_completion(&tool_req, &Ok(answer("y"))).unwrap();
        drop(rec);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(key), "{text}");
        // The request still matches: it is compared as written.
        let play = Cassette::replay(&path).unwrap();
        assert!(play.complete(&req).unwrap().text.contains("<redacted>"));
        assert_eq!(play.complete(&tool_req).unwrap().text, "y");
    }

    #[test]
    fn bad_files_say_where_and_what_to_do() {
        let path = temp("bad");
        std::fs::write(&path, "{\"cassette\":\"orch\",\"version\":1}\nnot json\n").unwrap();
        let err = Cassette::replay(&path).unwrap_err();
        assert!(err.contains("c.jsonl:2: not a cassette line"), "{err}");
        std::fs::write(&path, "{\"cassette\":\"orch\",\"version\":9}\n").unwrap();
        let err = Cassette::replay(&path).unwrap_err();
        assert!(
            err.contains("version 9") && err.contains("record it again"),
            "{err}"
        );
        std::fs::write(&path, "").unwrap();
        assert!(Cassette::replay(&path).unwrap_err().contains("empty"));
        let missing = path.with_file_name("none.jsonl");
        let err = Cassette::replay(&missing).unwrap_err();
        assert!(
            err.contains("none.jsonl") && err.contains("--record"),
            "{err}"
        );
    }
}
