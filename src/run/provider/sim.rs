//! A deterministic model simulator, for dry runs and tests.
//!
//! The same request always gets the same completion (across runs, machines and Rust versions:
//! the text is chosen with a fixed FNV-1a hash, not `std`'s `DefaultHasher`). Latency is a
//! `tokio::time::sleep` on tokio's paused clock, so tests see exact timings, and on a real
//! clock a sleep to the exact deadline ([`super::exact_sleep`]: tokio's timer would round up
//! to the millisecond, a 10 ms latency taking ~11.2 ms), so makespans compare cleanly with
//! their bounds. Scheduled failures exercise retry policies.
//!
//! Offered tools, the simulator calls them so that a dry run exercises an agent loop
//! ([`sim_calls`]): on the first turn, one call of each read-only tool and each delegation
//! (`agent__NAME`, whose nested step is simulated too), with plausible arguments taken from
//! the workspace and the prompt; then an answer saying what the results were. It never calls a
//! tool that may change something (`write`, `edit`, `exec`, an MCP tool not annotated
//! read-only), so a dry run never writes.

use crate::common::FastMap;
use crate::run::relay::Relay;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{
    Completion, CompletionRequest, OfferedTool, ProviderError, StopReason, ToolCall, ToolChoice,
    Turn, Usage,
};

/// How many words of the prompt the simulated answer quotes.
const QUOTED_WORDS: usize = 8;

/// The sentences a simulated answer is assembled from.
const SENTENCES: &[&str] = &[
    "The main point is clear, and the supporting details are consistent with it.",
    "A careful reading suggests three themes worth separating.",
    "The evidence points in one direction, with a few caveats noted below.",
    "Some assumptions deserve checking before anyone relies on this.",
    "In short, the proposal is sound but could be tightened.",
    "The strongest argument is also the simplest one.",
    "Two risks stand out: scope creep and unclear ownership.",
    "A smaller first step would reduce the cost of being wrong.",
    "The numbers are plausible, though the sample is small.",
    "This connects naturally to the earlier discussion.",
    "Nothing here contradicts the stated goals.",
    "A short summary follows, then open questions.",
    "The wording could be more precise in a couple of places.",
    "Overall, the direction is reasonable and the next steps are concrete.",
    "It would help to state the success criteria explicitly.",
    "The trade-off is between speed now and flexibility later.",
];

/// A simulated provider: answers every [`CompletionRequest`] after a fixed latency with text
/// derived from the request.
///
/// Clones share the failure counters (see [`Sim::with_failures`]).
#[derive(Clone)]
pub struct Sim {
    latency: Duration,
    fail_first: u32,
    /// Calls seen so far, keyed by the FNV-1a hash of the prompt.
    calls: Arc<Mutex<FastMap<u64, u32>>>,
    /// The workspace the run's tools work in: where simulated tool calls find a file to read.
    workspace: Option<PathBuf>,
    /// Whether tokio's clock is paused where this simulator runs (told on its first call).
    paused: Arc<std::sync::OnceLock<bool>>,
    /// The batches created so far ([`Sim::batch_create`]), by id, with when each ends.
    batches: Arc<Mutex<FastMap<String, std::time::Instant>>>,
    /// Tells the ends of sleeps on a real clock in batches, from the runtime of this
    /// simulator's first call (started then); it ends with the last clone.
    relay: Arc<std::sync::OnceLock<SleepRelay>>,
}

/// The relay of a simulator's sleeps ([`super::exact_sleep::sleep_until`]), closed (its task
/// ended) when the simulator and its clones are dropped.
struct SleepRelay(Relay);

impl SleepRelay {
    /// A relay whose task runs on the current runtime (none outside one: sleeps are then told
    /// from the timer thread).
    fn start() -> SleepRelay {
        let relay = Relay::default();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(relay.task());
        }
        SleepRelay(relay)
    }
}

impl Drop for SleepRelay {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Sim {
    /// A simulator that answers every call after exactly `latency` (on tokio's paused clock
    /// with `tokio::time::sleep`, on a real one to within tens of µs) and never fails.
    pub fn new(latency: Duration) -> Self {
        Sim {
            latency,
            fail_first: 0,
            calls: Arc::default(),
            workspace: None,
            paused: Arc::default(),
            batches: Arc::default(),
            relay: Arc::default(),
        }
    }

    /// The simulator with the run's workspace, where its tool calls look for a file to read
    /// (`README.md`, else the first file of the directory).
    pub fn with_workspace(mut self, workspace: impl Into<PathBuf>) -> Self {
        self.workspace = Some(workspace.into());
        self
    }

    /// Makes the first `fail_first` calls *per distinct prompt* fail with
    /// [`ProviderError::Simulated`] (after the latency, like a real failed call); later calls
    /// with that prompt succeed. Calls are counted by prompt text only, whatever the model or
    /// system text, so a fallback to another model counts against the same budget.
    pub fn with_failures(mut self, fail_first: u32) -> Self {
        self.fail_first = fail_first;
        self
    }

    /// The simulated latency of each call.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// How many calls with this prompt text have completed so far (failed or not), across
    /// this simulator and its clones.
    pub fn calls_for(&self, prompt: &str) -> u32 {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.get(&fnv1a(prompt.as_bytes())).copied().unwrap_or(0)
    }

    /// Answers one request: sleeps the latency, then either fails (while the prompt's
    /// scheduled failures last) or returns the deterministic completion.
    ///
    /// The text is `"[sim {model}] "` followed by a short paragraph quoting the first eight
    /// words of the prompt and a few stock sentences picked by a hash of model, system text
    /// and prompt; it never exceeds `max_tokens` by [`estimate_tokens`]. A request for a
    /// structured output ([`CompletionRequest::output`]) is answered with a valid value of its
    /// type as compact JSON, chosen by the same hash ([`simulated_value`]), whole whatever
    /// `max_tokens` says. Usage is estimated
    /// with [`estimate_tokens`]: input = system + prompt, output = the text. The model is the
    /// requested one.
    ///
    /// # Errors
    /// [`ProviderError::Simulated`] for the first `fail_first` calls per prompt.
    pub async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        if !self.latency.is_zero() {
            // Exact on either clock: tokio's (virtual) on a paused one, the timer thread's
            // on a real one, where tokio's would round up to the next millisecond.
            if *self.paused.get_or_init(super::exact_sleep::clock_is_paused) {
                tokio::time::sleep(self.latency).await;
            } else {
                let relay = &self.relay.get_or_init(SleepRelay::start).0;
                super::exact_sleep::sleep_until(
                    std::time::Instant::now() + self.latency,
                    Some(relay),
                )
                .await;
            }
        }
        self.answer(req)
    }

    /// A simulated batch of `items` (`parallel <batch>`): it ends once the simulator's latency
    /// has passed (one latency for the whole batch, as a provider works through a batch at
    /// once). Returns its id, `simbatch_` and a number.
    pub fn batch_create(&self, items: &[super::batch::BatchItem<'_>]) -> String {
        let mut batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let id = format!("simbatch_{}_{}", batches.len() + 1, items.len());
        batches.insert(id.clone(), std::time::Instant::now() + self.latency);
        id
    }

    /// How simulated batch `id` is doing: `in_progress` until its latency has passed, then
    /// `ended`. A batch this simulator did not create (one a resumed run polls) has ended.
    pub fn batch_poll(&self, id: &str) -> super::batch::BatchPoll {
        let batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let ended = batches
            .get(id)
            .is_none_or(|&end| std::time::Instant::now() >= end);
        super::batch::BatchPoll {
            status: if ended { "ended" } else { "in_progress" }.to_string(),
            ended,
            results: Vec::new(),
            error: None,
        }
    }

    /// The answer to a request of a simulated batch: as [`Sim::complete`] answers it (its
    /// scheduled failures included), without the latency.
    ///
    /// # Errors
    /// [`ProviderError::Simulated`] while the prompt's scheduled failures last.
    pub fn batch_answer(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        self.answer(req)
    }

    /// [`Sim::complete`] without the latency.
    fn answer(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
        let call = {
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            let count = calls.entry(fnv1a(req.prompt.as_bytes())).or_insert(0);
            *count = count.saturating_add(1);
            *count
        };
        if call <= self.fail_first {
            return Err(ProviderError::Simulated(format!(
                "scheduled failure {call} of {} for this prompt",
                self.fail_first
            )));
        }
        let input_tokens = req.system.as_deref().map_or(0, estimate_tokens)
            + estimate_tokens(&req.prompt)
            + turns_tokens(&req.turns);
        let calls = sim_calls(req, self.workspace.as_deref());
        if !calls.is_empty() {
            let output_tokens = estimate_tokens(&serde_json::to_string(&calls).unwrap_or_default());
            return Ok(Completion {
                usage: Usage {
                    input_tokens,
                    output_tokens,
                    estimated: false,
                },
                text: String::new(),
                model: req.model.clone(),
                calls,
                stop: StopReason::ToolUse,
            });
        }
        let text = match &req.output {
            Some(format) => simulated_value(req, &format.ty).to_string(),
            None if !req.turns.is_empty() => simulated_report(req),
            None => simulated_text(req),
        };
        Ok(Completion {
            usage: Usage {
                input_tokens,
                output_tokens: estimate_tokens(&text),
                estimated: false,
            },
            text,
            model: req.model.clone(),
            ..Default::default()
        })
    }
}

impl Default for Sim {
    /// A simulator with no latency and no failures.
    fn default() -> Self {
        Sim::new(Duration::ZERO)
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("latency", &self.latency)
            .field("fail_first", &self.fail_first)
            .finish_non_exhaustive()
    }
}

/// Estimated tokens of the turns of a conversation (their JSON form).
fn turns_tokens(turns: &[Turn]) -> u64 {
    if turns.is_empty() {
        return 0;
    }
    estimate_tokens(&serde_json::to_string(turns).unwrap_or_default())
}

/// The tool calls the simulator makes for `req`: on the first turn of a loop (no turns yet,
/// tool choice `auto`, no structured output asked), one call of each read-only tool and each
/// delegation offered, in the order offered, with ids `sim_1`, `sim_2`, ...; otherwise none.
/// Arguments are filled from each tool's input schema (`sim_arguments`).
pub fn sim_calls(req: &CompletionRequest, workspace: Option<&Path>) -> Vec<ToolCall> {
    if !req.turns.is_empty()
        || req.tool_choice == ToolChoice::None
        || req.output.is_some()
        || req.tools.is_empty()
    {
        return Vec::new();
    }
    let facts = Facts::new(req, workspace);
    req.tools
        .iter()
        .filter(|t| t.read_only || t.spec.name.starts_with("agent__"))
        .enumerate()
        .map(|(i, t)| ToolCall {
            id: format!("sim_{}", i + 1),
            name: t.spec.name.clone(),
            input: sim_arguments(t, &facts),
            malformed: None,
        })
        .collect()
}

/// What the simulator's arguments are made of: a file of the workspace, a word of the prompt,
/// a glob fitting the project, the prompt's start.
struct Facts {
    file: String,
    word: String,
    glob: String,
    gist: String,
}

impl Facts {
    fn new(req: &CompletionRequest, workspace: Option<&Path>) -> Self {
        let words: Vec<&str> = req.prompt.split_whitespace().collect();
        let gist = words[..words.len().min(12)].join(" ");
        Facts {
            file: workspace
                .and_then(file_to_read)
                .unwrap_or_else(|| "README.md".into()),
            word: search_word(&req.prompt),
            glob: workspace.map_or("**/*.md", project_glob).to_string(),
            gist,
        }
    }
}

/// A file to read in `dir`: `README.md` (or another README), else the first file of the
/// directory by name, hidden files aside.
fn file_to_read(dir: &Path) -> Option<String> {
    for readme in ["README.md", "README", "readme.md", "README.txt"] {
        if dir.join(readme).is_file() {
            return Some(readme.into());
        }
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names.into_iter().next()
}

/// A glob for the sources of the project in `dir`, by its build file.
fn project_glob(dir: &Path) -> &'static str {
    const BY_MARKER: [(&str, &str); 5] = [
        ("Cargo.toml", "**/*.rs"),
        ("go.mod", "**/*.go"),
        ("pyproject.toml", "**/*.py"),
        ("setup.py", "**/*.py"),
        ("package.json", "**/*.js"),
    ];
    BY_MARKER
        .iter()
        .find(|(marker, _)| dir.join(marker).is_file())
        .map_or("**/*.md", |(_, glob)| glob)
}

/// The word of the prompt to search for: its longest identifier-like word (the first of the
/// longest), a literal for any regex engine; `TODO` for a prompt without one.
fn search_word(prompt: &str) -> String {
    let best = prompt
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.len() >= 3 && w.starts_with(|c: char| c.is_ascii_alphabetic()))
        .fold("", |best, w| if w.len() > best.len() { w } else { best });
    if best.is_empty() {
        "TODO".into()
    } else {
        best.into()
    }
}

/// Plausible arguments for `tool` from its input schema: each required property (or, when
/// none is marked required, each property named like a path or a pattern) gets a value by its
/// name and type — a path to read for a file tool, `.` for a directory, the glob or the word
/// for a pattern, the prompt's start for a delegation's prompt.
fn sim_arguments(tool: &OfferedTool, facts_of: &Facts) -> Value {
    let schema = &tool.spec.input_schema;
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return json!({});
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let wanted = |name: &str| {
        if required.is_empty() {
            name.contains("path") || name.contains("pattern")
        } else {
            required.contains(&name)
        }
    };
    let mut args = serde_json::Map::new();
    for (name, prop) in props.iter().filter(|(n, _)| wanted(n)) {
        let ty = prop.get("type").and_then(Value::as_str).unwrap_or("string");
        args.insert(name.clone(), facts_of.value(&tool.spec.name, name, ty));
    }
    Value::Object(args)
}

impl Facts {
    /// The value of property `prop` (of JSON type `ty`) of tool `tool`.
    fn value(&self, tool: &str, prop: &str, ty: &str) -> Value {
        let tool = tool.to_ascii_lowercase();
        let prop = prop.to_ascii_lowercase();
        match ty {
            "integer" | "number" if prop.contains("limit") || prop.contains("lines") => json!(40),
            "integer" | "number" => json!(1),
            "boolean" => json!(false),
            "array" => json!([]),
            "object" => json!({}),
            _ if prop == "prompt" => json!(format!(
                "Look into this and report what you find: {}",
                self.gist
            )),
            _ if prop.contains("glob") || (prop.contains("pattern") && tool.contains("glob")) => {
                json!(self.glob)
            }
            _ if prop.contains("pattern") || prop.contains("query") || prop.contains("regex") => {
                json!(self.word)
            }
            _ if prop.contains("path") || prop.contains("file") || prop.contains("dir") => {
                let reads_a_file = tool.contains("read")
                    && !["list", "dir", "search", "find"]
                        .iter()
                        .any(|w| tool.contains(w));
                if reads_a_file {
                    json!(self.file)
                } else {
                    json!(".")
                }
            }
            _ => json!(self.word),
        }
    }
}

/// The answer after tool results: what each call of the last turn returned (its tool and the
/// first line of its result), then the usual paragraph; within `max_tokens`.
fn simulated_report(req: &CompletionRequest) -> String {
    let mut calls = FastMap::default();
    let mut seen = Vec::new();
    for turn in &req.turns {
        match turn {
            Turn::Assistant { calls: cs, .. } => {
                for c in cs {
                    calls.insert(c.id.clone(), c.name.clone());
                }
            }
            Turn::Tools { results } => {
                for r in results {
                    let tool = calls.get(&r.call_id).cloned().unwrap_or_default();
                    let first = r
                        .content
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("");
                    let first: String = first.trim().chars().take(60).collect();
                    let error = if r.is_error { " (error)" } else { "" };
                    seen.push(format!("{tool}{error}: {first}"));
                }
            }
        }
    }
    let plain = simulated_text(req);
    let (opening, rest) = plain.split_once(':').unwrap_or((&plain, ""));
    let text = format!(
        "{opening}: I made {} tool call{} — {}.{rest}",
        seen.len(),
        if seen.len() == 1 { "" } else { "s" },
        seen.join("; ")
    );
    cut_to_tokens(text, u64::from(req.max_tokens))
}

/// `text` cut to `budget` estimated tokens (4 characters each).
fn cut_to_tokens(mut text: String, budget: u64) -> String {
    let max_chars = usize::try_from(budget.saturating_mul(4)).unwrap_or(usize::MAX);
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
    }
    text
}

/// An *estimate* of the number of tokens in `text`: its length in characters (Unicode scalar
/// values) divided by four, rounded up — so at least 1 for non-empty text, 0 for empty text.
/// This is a common rule of thumb for English with BPE tokenizers, not any real tokenizer's
/// count; only the simulator uses it.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// The deterministic answer text for `req`, within `req.max_tokens` estimated tokens:
/// `[sim MODEL] Regarding "PROMPT'S FIRST WORDS …": ` and two to five stock sentences, as many
/// as fit. Built in one buffer, counting its characters as it grows (the simulator runs once
/// per step: recounting the text for each sentence was a sixth of a simulated run's work).
fn simulated_text(req: &CompletionRequest) -> String {
    let mut state = request_hash(req);
    let mut text = String::with_capacity(req.model.len() + req.prompt.len().min(256) + 400);
    text.push_str("[sim ");
    text.push_str(&req.model);
    text.push_str("] Regarding ");
    push_quoted(&mut text, &req.prompt);
    text.push(':');
    let mut chars = text.chars().count();

    let budget = u64::from(req.max_tokens);
    let wanted = 2 + (next(&mut state) % 4) as usize;
    for _ in 0..wanted {
        let sentence = SENTENCES[(next(&mut state) % SENTENCES.len() as u64) as usize];
        let longer = chars + 1 + sentence.chars().count();
        if (longer as u64).div_ceil(4) > budget {
            break;
        }
        text.push(' ');
        text.push_str(sentence);
        chars = longer;
    }
    if (chars as u64).div_ceil(4) > budget {
        // Even the opening does not fit: cut it to the budget.
        let max_chars = usize::try_from(budget.saturating_mul(4)).unwrap_or(usize::MAX);
        if let Some((cut, _)) = text.char_indices().nth(max_chars) {
            text.truncate(cut);
        }
    }
    text
}

/// Appends the prompt's first [`QUOTED_WORDS`] words in quotes, one space between them and
/// ` …` when more follow, or `(an empty prompt)`.
fn push_quoted(text: &mut String, prompt: &str) {
    let mut words = prompt.split_whitespace();
    let Some(first) = words.next() else {
        text.push_str("(an empty prompt)");
        return;
    };
    text.push('"');
    text.push_str(first);
    for (i, word) in words.enumerate() {
        if i + 1 == QUOTED_WORDS {
            text.push_str(" …");
            break;
        }
        text.push(' ');
        text.push_str(word);
    }
    text.push('"');
}

/// The deterministic structured answer to `req`: a value of `ty`
/// ([`crate::run::structured::sample`]) seeded by the hash of model, system text and prompt,
/// its texts stock sentences. Bools, such as a review's `approved`, come out either way
/// (about half the time each) across prompts: a review loop on the simulator sometimes takes
/// more than one round, and the same prompt always gets the same verdict. Lists have 3 items.
pub fn simulated_value(
    req: &CompletionRequest,
    ty: &crate::check::types::Type,
) -> serde_json::Value {
    let sentence = |seed: u64| {
        let mut state = seed;
        SENTENCES[(next(&mut state) % SENTENCES.len() as u64) as usize].to_owned()
    };
    crate::run::structured::sample(ty, request_hash(req), &sentence)
}

/// FNV-1a hash of model, system text and prompt, with separators so that field boundaries
/// (and an absent versus an empty system text) matter.
fn request_hash(req: &CompletionRequest) -> u64 {
    let system: (&[u8], &[u8]) = match &req.system {
        Some(system) => (&[1], system.as_bytes()),
        None => (&[0], &[]),
    };
    let parts: [&[u8]; 6] = [
        req.model.as_bytes(),
        &[0xff],
        system.0,
        system.1,
        &[0xff],
        req.prompt.as_bytes(),
    ];
    parts
        .iter()
        .fold(FNV_OFFSET, |hash, part| fnv1a_from(hash, part))
}

/// 64-bit FNV-1a (<http://www.isthe.com/chongo/tech/comp/fnv/>): tiny and stable.
fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_from(FNV_OFFSET, bytes)
}

/// FNV-1a's offset basis: the hash of no bytes.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over `bytes`, continuing from `hash` (so that a hash of several parts equals the
/// hash of their concatenation).
fn fnv1a_from(hash: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(hash, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

/// SplitMix64 step: spreads the hash into a stream of well-mixed choices.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The simulator's text as it was built before it counted characters as it went (the
    /// reference for `same_text_as_the_counting_reference`).
    fn reference_text(req: &CompletionRequest) -> String {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(req.model.as_bytes());
        bytes.push(0xff);
        match &req.system {
            Some(system) => {
                bytes.push(1);
                bytes.extend_from_slice(system.as_bytes());
            }
            None => bytes.push(0),
        }
        bytes.push(0xff);
        bytes.extend_from_slice(req.prompt.as_bytes());
        let mut state = fnv1a(&bytes);
        let words: Vec<&str> = req.prompt.split_whitespace().collect();
        let quoted = if words.is_empty() {
            "(an empty prompt)".to_owned()
        } else if words.len() > QUOTED_WORDS {
            format!("\"{} …\"", words[..QUOTED_WORDS].join(" "))
        } else {
            format!("\"{}\"", words.join(" "))
        };
        let mut text = format!("[sim {}] Regarding {quoted}:", req.model);
        let budget = u64::from(req.max_tokens);
        let wanted = 2 + (next(&mut state) % 4) as usize;
        for _ in 0..wanted {
            let sentence = SENTENCES[(next(&mut state) % SENTENCES.len() as u64) as usize];
            let longer = text.chars().count() + 1 + sentence.chars().count();
            if (longer as u64).div_ceil(4) > budget {
                break;
            }
            text.push(' ');
            text.push_str(sentence);
        }
        if estimate_tokens(&text) > budget {
            let max_chars = usize::try_from(budget.saturating_mul(4)).unwrap_or(usize::MAX);
            if let Some((cut, _)) = text.char_indices().nth(max_chars) {
                text.truncate(cut);
            }
        }
        text
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2_000))]
        /// The simulator's answers are part of what runs on it print (examples, snapshots):
        /// building them faster must not change a character.
        #[test]
        fn same_text_as_the_counting_reference(
            lead in "[ \n]{0,2}",
            words in proptest::collection::vec(("[a-zé…]{1,6}", "[ \t\n]{1,2}"), 0..14),
            system in proptest::option::of("[a-z ]{0,12}"),
            model in "[a-z0-9-]{0,10}",
            max_tokens in 0u32..120,
        ) {
            let req = CompletionRequest {
                model,
                system,
                prompt: words.iter().fold(lead, |p, (w, sep)| p + w + sep),
                max_tokens,
                ..request("")
            };
            proptest::prop_assert_eq!(simulated_text(&req), reference_text(&req));
        }
    }

    fn request(prompt: &str) -> CompletionRequest {
        CompletionRequest {
            model: "sim-large".into(),
            system: Some("Be helpful.".into()),
            prompt: prompt.into(),
            max_tokens: 256,
            temperature: None,
            output: None,
            max_output_bytes: crate::run::provider::DEFAULT_MAX_OUTPUT_BYTES,
            ..Default::default()
        }
    }

    #[test]
    fn fnv1a_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn estimate_tokens_rounds_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("a"), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("ééééé"), 2);
    }

    #[tokio::test]
    async fn same_request_same_completion() {
        let sim = Sim::default();
        let req = request("Summarise the quarterly report for the board in plain words");
        let a = sim.complete(&req).await.expect("ok");
        let b = Sim::new(Duration::ZERO).complete(&req).await.expect("ok");
        assert_eq!(a, b);
        // Pinned: the simulator's output must not drift between builds or Rust versions.
        assert_eq!(
            a.text,
            "[sim sim-large] Regarding \"Summarise the quarterly report for the board in …\": \
             The numbers are plausible, though the sample is small. Overall, the direction is \
             reasonable and the next steps are concrete. A smaller first step would reduce the \
             cost of being wrong."
        );
        assert_eq!(a.model, "sim-large");
        assert_eq!(
            a.usage,
            Usage {
                input_tokens: estimate_tokens("Be helpful.") + estimate_tokens(&req.prompt),
                output_tokens: estimate_tokens(&a.text),
                estimated: false,
            }
        );
    }

    #[tokio::test]
    async fn different_requests_differ() {
        let sim = Sim::default();
        let texts: std::collections::HashSet<String> = (0..20)
            .map(|i| request(&format!("question number {i}")))
            .map(|req| simulated_text(&req))
            .collect();
        // Quoting the prompt alone makes them differ; the bodies vary too.
        assert_eq!(texts.len(), 20);
        let bodies: std::collections::HashSet<String> = texts
            .iter()
            .map(|t| {
                t.split_once(':')
                    .map(|(_, b)| b.to_owned())
                    .unwrap_or_default()
            })
            .collect();
        assert!(bodies.len() > 5, "{bodies:?}");
        let mut other_model = request("question number 1");
        other_model.model = "sim-small".into();
        let a = sim.complete(&other_model).await.expect("ok");
        assert!(a.text.starts_with("[sim sim-small] "));
    }

    #[test]
    fn text_respects_max_tokens() {
        for max_tokens in [0, 1, 3, 10, 20, 40, 1000] {
            for i in 0..10 {
                let mut req = request(&format!("prompt {i} with several words in it for quoting"));
                req.max_tokens = max_tokens;
                let text = simulated_text(&req);
                assert!(
                    estimate_tokens(&text) <= u64::from(max_tokens),
                    "{max_tokens}: {text}"
                );
            }
        }
        let mut empty = request("   ");
        empty.max_tokens = 100;
        assert!(simulated_text(&empty).contains("(an empty prompt)"));
    }

    #[tokio::test(start_paused = true)]
    async fn latency_is_exact_on_paused_clock() {
        let sim = Sim::new(Duration::from_millis(1500));
        let start = tokio::time::Instant::now();
        sim.complete(&request("hello")).await.expect("ok");
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
        assert_eq!(sim.latency(), Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_then_success_per_prompt() {
        let sim = Sim::new(Duration::from_millis(10)).with_failures(2);
        let a = request("prompt A");
        let b = request("prompt B");
        let start = tokio::time::Instant::now();
        for call in 1..=2 {
            match sim.complete(&a).await {
                Err(ProviderError::Simulated(msg)) => {
                    assert!(msg.contains(&format!("{call} of 2")), "{msg}");
                }
                other => panic!("expected a simulated failure, got {other:?}"),
            }
        }
        // Failures also take the latency.
        assert_eq!(start.elapsed(), Duration::from_millis(20));
        let err = sim.complete(&b).await.expect_err("B has its own budget");
        assert!(err.is_retryable());
        // A clone shares the counters.
        let clone = sim.clone();
        let ok = clone.complete(&a).await.expect("third call succeeds");
        assert_eq!(ok, Sim::default().complete(&a).await.expect("ok"));
        assert_eq!(sim.calls_for("prompt A"), 3);
        assert_eq!(sim.calls_for("prompt B"), 1);
        assert_eq!(sim.calls_for("never"), 0);
    }

    #[tokio::test]
    async fn structured_requests_get_valid_values() {
        use crate::check::types::Type;
        use crate::run::provider::OutputFormat;
        use crate::run::structured::{conform, parse_as};
        let verdict = Type::Record(vec![
            ("approved".into(), Type::Bool),
            ("feedback".into(), Type::Text),
        ]);
        let ty = Type::Record(vec![
            ("tasks".into(), Type::List(Box::new(verdict.clone()))),
            ("count".into(), Type::Number),
            ("meta".into(), Type::Json),
        ]);
        let sim = Sim::default();
        let mut req = request("Split the launch into tasks");
        req.output = OutputFormat::new("plan", &ty);
        req.max_tokens = 1;
        let answer = sim.complete(&req).await.expect("ok");
        // Whole JSON, even past max_tokens, and a value of the type.
        let value: serde_json::Value = serde_json::from_str(&answer.text).expect("JSON");
        assert_eq!(conform(value.clone(), &ty), Ok(value.clone()));
        assert_eq!(parse_as(&answer.text, &ty), Ok(value.clone()));
        assert_eq!(value["tasks"].as_array().map(Vec::len), Some(3));
        assert!(SENTENCES.contains(&value["tasks"][0]["feedback"].as_str().unwrap()));
        assert_eq!(answer.usage.output_tokens, estimate_tokens(&answer.text));
        // Deterministic.
        assert_eq!(Sim::default().complete(&req).await.expect("ok"), answer);
        // A review's verdict goes both ways across drafts, always the same for one draft.
        let mut approved = 0;
        for i in 0..40 {
            let mut review = request(&format!("Approve, or say what to change:\ndraft {i}"));
            review.output = OutputFormat::new("verdict", &verdict);
            let a = sim.complete(&review).await.expect("ok");
            let b = sim.complete(&review).await.expect("ok");
            assert_eq!(a.text, b.text);
            let v: serde_json::Value = serde_json::from_str(&a.text).expect("JSON");
            if v["approved"] == serde_json::json!(true) {
                approved += 1;
            }
        }
        assert!((8..=32).contains(&approved), "{approved} of 40 approved");
        // Scalars and lists are bare JSON.
        let mut list = request("List things");
        list.output = OutputFormat::new("things", &Type::List(Box::new(Type::Text)));
        let v: serde_json::Value =
            serde_json::from_str(&sim.complete(&list).await.expect("ok").text).expect("JSON");
        assert_eq!(v.as_array().map(Vec::len), Some(3));
        let mut n = request("Count");
        n.output = OutputFormat::new("n", &Type::Number);
        let text = sim.complete(&n).await.expect("ok").text;
        assert!(
            text.parse::<u32>().is_ok_and(|n| (1..=10).contains(&n)),
            "{text}"
        );
    }

    fn offered(name: &str, read_only: bool, props: &[(&str, &str)]) -> OfferedTool {
        let properties: serde_json::Map<String, Value> = props
            .iter()
            .map(|(p, ty)| ((*p).to_string(), json!({ "type": ty })))
            .collect();
        let required: Vec<&str> = props.iter().map(|(p, _)| *p).collect();
        OfferedTool {
            spec: super::super::ToolSpec {
                name: name.into(),
                description: String::new(),
                input_schema: json!({"type": "object", "properties": properties, "required": required}),
            },
            read_only,
        }
    }

    #[tokio::test]
    async fn offered_tools_it_calls_the_read_only_ones_then_says_what_it_saw() {
        let ws = Path::new(env!("CARGO_MANIFEST_DIR"));
        let sim = Sim::default().with_workspace(ws);
        let mut req = request("Where is the authentication handled?");
        req.tools = vec![
            offered("read", true, &[("path", "string")]),
            offered("list", true, &[("path", "string")]),
            offered("glob", true, &[("pattern", "string")]),
            offered("grep", true, &[("pattern", "string")]),
            offered("write", false, &[("path", "string"), ("content", "string")]),
            offered("exec", false, &[("argv", "array")]),
            offered("agent__scout", false, &[("prompt", "string")]),
        ];
        let first = sim.complete(&req).await.expect("ok");
        assert_eq!(first.stop, StopReason::ToolUse);
        let called: Vec<(&str, Value)> = first
            .calls
            .iter()
            .map(|c| (c.name.as_str(), c.input.clone()))
            .collect();
        assert_eq!(
            called,
            vec![
                ("read", json!({"path": "README.md"})),
                ("list", json!({"path": "."})),
                ("glob", json!({"pattern": "**/*.rs"})),
                ("grep", json!({"pattern": "authentication"})),
                (
                    "agent__scout",
                    json!({"prompt": "Look into this and report what you find: Where is the authentication handled?"})
                ),
            ]
        );
        // Deterministic, and the ids are stable.
        assert_eq!(sim.complete(&req).await.expect("ok"), first);
        assert_eq!(first.calls[0].id, "sim_1");
        // With the results back, it answers, saying what it saw.
        req.turns = vec![
            Turn::Assistant {
                text: String::new(),
                calls: first.calls.clone(),
            },
            Turn::Tools {
                results: first
                    .calls
                    .iter()
                    .map(|c| super::super::ToolResult {
                        call_id: c.id.clone(),
                        content: format!("\n  result of {}\nmore", c.name),
                        is_error: c.name == "grep",
                    })
                    .collect(),
            },
        ];
        let answer = sim.complete(&req).await.expect("ok");
        assert!(answer.calls.is_empty());
        assert!(
            answer
                .text
                .contains("I made 5 tool calls — read: result of read; list: result of list")
                && answer.text.contains("grep (error): result of grep"),
            "{}",
            answer.text
        );
        assert!(answer.usage.input_tokens > estimate_tokens(&req.prompt));
        // Told not to call tools, or asked for a structured value, it does not.
        req.turns.clear();
        req.tool_choice = ToolChoice::None;
        assert!(sim.complete(&req).await.expect("ok").calls.is_empty());
    }

    #[test]
    fn arguments_come_from_the_workspace_and_the_prompt() {
        let dir = std::env::temp_dir().join(format!("orch-sim-ws-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.txt"), "b").unwrap();
        std::fs::write(dir.join("a.py"), "a").unwrap();
        std::fs::write(dir.join(".hidden"), "h").unwrap();
        std::fs::write(dir.join("pyproject.toml"), "").unwrap();
        assert_eq!(file_to_read(&dir).as_deref(), Some("a.py"));
        assert_eq!(project_glob(&dir), "**/*.py");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(search_word("a b c"), "TODO");
        assert_eq!(search_word("find login_flow and logout"), "login_flow");
        // Optional properties are left out; without `required`, paths and patterns are filled.
        let mut req = request("x");
        let mut loose = offered(
            "fs__search_files",
            true,
            &[("path", "string"), ("pattern", "string")],
        );
        loose.spec.input_schema["required"] = json!([]);
        loose
            .spec
            .input_schema
            .as_object_mut()
            .unwrap()
            .remove("required");
        req.tools = vec![loose];
        let calls = sim_calls(&req, None);
        assert_eq!(calls[0].input, json!({"path": ".", "pattern": "TODO"}));
    }

    #[test]
    fn debug_is_compact() {
        let sim = Sim::new(Duration::from_secs(1)).with_failures(1);
        assert_eq!(format!("{sim:?}"), "Sim { latency: 1s, fail_first: 1, .. }");
    }
}
