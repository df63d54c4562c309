//! Cache keys: what determines a step's result, hashed, so that a resumed run re-runs exactly
//! the steps whose result could differ.
//!
//! A model step's result is determined by where the request goes (the provider's kind and
//! base URL), the model identifier requested, the rendered system text and prompt, and the
//! sampling options (`max_tokens` after `--max-tokens`, `temperature`). A command step's by
//! its rendered argv, environment, stdin and working directory (and whether commands are
//! simulated). An approval's by its rendered question (not by who answers). Policies that only
//! decide *whether* a result comes — `retry`, `timeout`, `fallback`, budgets, concurrency —
//! are not part of the key, nor is the script's name for a model (two names for one
//! identifier are one model). A step's declared output type (`-> T`, other than `text`) is
//! part of every kind's key: it decides what answer is asked for and accepted, so changing it
//! re-runs the step.
//!
//! The key is the SHA-256 (lowercase hex) of a canonical JSON encoding of those parts.
//! [`KeyParts`] keeps each part's hash (texts are never stored in clear: a prompt may hold an
//! input the user considers private) plus what `--why-rerun` needs to say which part changed
//! and why: the step's own template text and the value of every name it interpolates.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Target;
use super::prepare::ModelClient;
use super::render::{Scope, render_with_args};
use crate::check::ProviderKind;
use crate::check::types::Type;
use crate::plan::{Plan, PlanExec, PlanNode};

/// Bumped when the encoding below changes, so that old journals re-run instead of matching
/// by accident.
const KEY_VERSION: &str = "orch-step-key-1";

/// SHA-256 of `bytes`, as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn hash_text(text: &str) -> String {
    sha256_hex(text.as_bytes())
}

/// What a step's result depends on, part by part, as stored in the journal. Text parts are
/// SHA-256 hashes (hex); names and numbers are kept in clear for messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyParts {
    /// `model`, `command` or `approval`.
    pub kind: String,
    /// Where a model request goes: the provider's kind and base URL (`openai
    /// http://127.0.0.1:8080/v1`), or `sim` for the simulator; for a command, `simulated` when
    /// commands are simulated, else absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The script's model name (for messages only: not part of the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The model identifier requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// Output-token limit, after `--max-tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Hash of the rendered system text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Hash of the rendered prompt (a command's stdin).
    pub prompt: String,
    /// Hash of a command's rendered argv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<String>,
    /// Hash of a command's rendered environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A command's working directory, as written in the script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The step's structured output type (`-> T`) as written in the language (`{ tasks:
    /// list<text> }`); absent for text output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_type: Option<String>,
    /// Hash of the step's own text in the script (prompt and argument templates): tells an
    /// edit of the step from a change of a value it interpolates. Not part of the key.
    pub source: String,
    /// Hash of the value of each name the step interpolates (`topic`, `plan`, `found.a`), in
    /// order of first use. Not part of the key.
    #[serde(default)]
    pub uses: IndexMap<String, String>,
}

/// A started step's key parts with the key they hash to, computed once when the step became
/// ready and kept until it is recorded.
#[derive(Debug, Clone)]
pub(super) struct StepKey {
    pub(super) parts: KeyParts,
    /// [`KeyParts::key`] of `parts`.
    pub(super) key: String,
}

/// The parts that determine the result, in a fixed order: what [`KeyParts::key`] hashes.
#[derive(Serialize)]
struct Determining<'a> {
    version: &'static str,
    kind: &'a str,
    provider: &'a Option<String>,
    model_id: &'a Option<String>,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    system: &'a Option<String>,
    prompt: &'a str,
    argv: &'a Option<String>,
    env: &'a Option<String>,
    cwd: &'a Option<String>,
    /// Left out when absent, so that the keys of steps without `-> T` are those of journals
    /// written before the type was part of the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    output_type: &'a Option<String>,
}

impl KeyParts {
    /// The cache key: SHA-256 (hex) of the parts that determine the result.
    pub fn key(&self) -> String {
        let d = Determining {
            version: KEY_VERSION,
            kind: &self.kind,
            provider: &self.provider,
            model_id: &self.model_id,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            system: &self.system,
            prompt: &self.prompt,
            argv: &self.argv,
            env: &self.env,
            cwd: &self.cwd,
            output_type: &self.output_type,
        };
        // Serializing plain strings and numbers cannot fail.
        sha256_hex(&serde_json::to_vec(&d).unwrap_or_default())
    }

    /// Why a step whose last result had the parts `old` must run again with `self`: each part
    /// that changed, in words (`model changed sonnet → opus`, `prompt changed (upstream
    /// `plan` re-ran)`), joined with `; `. `describe_use` says why the value of an
    /// interpolated name changed (`input `topic` changed`, `upstream `plan` re-ran`).
    pub fn changes_since(&self, old: &KeyParts, describe_use: &dyn Fn(&str) -> String) -> String {
        let mut why = Vec::new();
        if self.kind != old.kind {
            why.push(format!(
                "the agent changed from a {} to a {}",
                old.kind, self.kind
            ));
        }
        if self.provider != old.provider {
            why.push(format!(
                "provider changed {} → {}",
                shown(&old.provider),
                shown(&self.provider)
            ));
        }
        if self.model_id != old.model_id {
            if self.model != old.model {
                why.push(format!(
                    "model changed {} → {}",
                    shown(&old.model),
                    shown(&self.model)
                ));
            } else {
                why.push(format!(
                    "model `{}` now requests {} (was {})",
                    shown(&self.model),
                    shown(&self.model_id),
                    shown(&old.model_id)
                ));
            }
        }
        if self.max_tokens != old.max_tokens {
            why.push(format!(
                "max_tokens changed {} → {}",
                shown(&old.max_tokens),
                shown(&self.max_tokens)
            ));
        }
        if self.temperature != old.temperature {
            why.push(format!(
                "temperature changed {} → {}",
                shown(&old.temperature),
                shown(&self.temperature)
            ));
        }
        if self.cwd != old.cwd {
            why.push(format!(
                "working directory changed {} → {}",
                shown(&old.cwd),
                shown(&self.cwd)
            ));
        }
        if self.output_type != old.output_type {
            why.push(format!(
                "output type changed {} → {}",
                shown(&old.output_type),
                shown(&self.output_type)
            ));
        }
        let mut texts = Vec::new();
        if self.prompt != old.prompt {
            texts.push(match self.kind.as_str() {
                "command" => "stdin",
                "approval" => "question",
                _ => "prompt",
            });
        }
        if self.system != old.system {
            texts.push("system text");
        }
        if self.argv != old.argv {
            texts.push("arguments");
        }
        if self.env != old.env {
            texts.push("environment");
        }
        if !texts.is_empty() {
            let mut causes = Vec::new();
            if self.source != old.source {
                causes.push("the step was edited in the script".to_string());
            }
            for (name, hash) in &self.uses {
                if old.uses.get(name).is_some_and(|h| h != hash) {
                    causes.push(describe_use(name));
                }
            }
            if causes.is_empty() {
                causes.push("the agent was edited".to_string());
            }
            why.push(format!(
                "{} changed ({})",
                texts.join(" and "),
                causes.join("; ")
            ));
        }
        if why.is_empty() {
            why.push(
                "its cache key changed (the journal was written by another orch version)".into(),
            );
        }
        why.join("; ")
    }
}

fn shown<T: std::fmt::Display>(v: &Option<T>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "none".to_string(),
    }
}

/// For each model a run uses: where its requests go and the identifier requested.
pub(super) struct Identities {
    by_model: HashMap<String, (String, String)>,
    simulate_commands: bool,
    /// [`KeyParts::source`] of each node of the plan, by node id, computed on first use: the
    /// instances of a region's body share their nodes' templates (only their names differ),
    /// so each node's text is hashed once per run, not once per instance.
    sources: Vec<std::sync::OnceLock<String>>,
}

impl Identities {
    /// Identities of the run's clients, from the plan's providers and the run's target (the
    /// same choices `prepare` makes).
    pub(super) fn new(
        plan: &Plan,
        clients: &crate::common::FastMap<String, ModelClient>,
        target: &Target,
    ) -> Self {
        let by_model = clients
            .iter()
            .map(|(model, c)| {
                let provider = match target {
                    Target::Simulate { .. } => "sim".to_string(),
                    Target::Endpoint(e) => {
                        format!("openai {}", e.base_url.trim_end_matches('/'))
                    }
                    Target::Replay(c) => {
                        format!("cassette of {}", c.recorded_target().unwrap_or_default())
                    }
                    Target::Script => match plan.providers.get(&c.provider_name) {
                        Some(p) => {
                            let url = match (p.kind, &p.base_url) {
                                (ProviderKind::Sim, _) => None,
                                (_, Some(u)) => Some(u.trim_end_matches('/').to_string()),
                                (ProviderKind::Openai, None) => {
                                    Some(super::provider::openai::DEFAULT_BASE_URL.to_string())
                                }
                                (ProviderKind::Anthropic, None) => {
                                    Some(super::provider::anthropic::DEFAULT_BASE_URL.to_string())
                                }
                            };
                            match url {
                                Some(u) => format!("{} {u}", p.kind.keyword()),
                                None => p.kind.keyword().to_string(),
                            }
                        }
                        None => c.provider_name.clone(),
                    },
                };
                (model.clone(), (provider, c.model_id.clone()))
            })
            .collect();
        Identities {
            by_model,
            sources: (0..plan.nodes.len())
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            simulate_commands: matches!(
                target,
                Target::Simulate {
                    run_commands: false,
                    ..
                }
            ),
        }
    }
}

/// The key parts of `node` as it would run now: its templates rendered over `scope` (the
/// workflow's inputs and the outputs settled so far), exactly as the scheduler renders them.
pub(super) fn step_parts(
    node: &PlanNode,
    scope: &Scope,
    ids: &Identities,
    max_tokens_cap: Option<u32>,
) -> KeyParts {
    let (prompt, args) = scope.render_call(node);
    let mut uses = IndexMap::new();
    for t in node.prompt.iter().chain(node.args.values()) {
        for i in t.interps() {
            if !uses.contains_key(&i.path) {
                uses.insert(i.path.clone(), hash_text(&scope.text_ref(i)));
            }
        }
    }
    let source_of =
        || hash_text(&serde_json::to_string(&(&node.prompt, &node.args)).unwrap_or_default());
    let source = match ids.sources.get(node.id) {
        Some(cell) => cell.get_or_init(source_of).clone(),
        None => source_of(),
    };
    let output_type = super::step::structured_type(node).map(Type::to_string);
    match &node.exec {
        PlanExec::Model {
            model,
            system,
            max_tokens,
            temperature,
            ..
        } => {
            let (provider, model_id) = ids
                .by_model
                .get(model)
                .cloned()
                .map_or((None, None), |(p, m)| (Some(p), Some(m)));
            KeyParts {
                kind: "model".into(),
                provider,
                model: Some(model.clone()),
                model_id,
                max_tokens: Some(max_tokens_cap.map_or(*max_tokens, |c| c.min(*max_tokens))),
                temperature: *temperature,
                system: system
                    .as_ref()
                    .map(|t| hash_text(&render_with_args(t, &args))),
                prompt: hash_text(&prompt),
                argv: None,
                env: None,
                cwd: None,
                output_type,
                source,
                uses,
            }
        }
        // Regions and items are not journaled: their steps are.
        PlanExec::Region { .. } | PlanExec::Item => KeyParts {
            kind: "region".into(),
            provider: None,
            model: None,
            model_id: None,
            max_tokens: None,
            temperature: None,
            system: None,
            prompt: hash_text(&prompt),
            argv: None,
            env: None,
            cwd: None,
            output_type,
            source,
            uses,
        },
        PlanExec::Command { argv, env, cwd, .. } => {
            let argv: Vec<String> = argv.iter().map(|t| render_with_args(t, &args)).collect();
            let env: Vec<(&str, String)> = env
                .iter()
                .map(|(k, t)| (k.as_str(), render_with_args(t, &args)))
                .collect();
            KeyParts {
                kind: "command".into(),
                provider: ids.simulate_commands.then(|| "simulated".to_string()),
                model: None,
                model_id: None,
                max_tokens: None,
                temperature: None,
                system: None,
                prompt: hash_text(&prompt),
                argv: Some(hash_text(&serde_json::to_string(&argv).unwrap_or_default())),
                env: Some(hash_text(&serde_json::to_string(&env).unwrap_or_default())),
                cwd: cwd.as_ref().map(|t| render_with_args(t, &args)),
                output_type,
                source,
                uses,
            }
        }
        // A person's answer depends on the question only (not on who answers: a resumed
        // run reuses a decision made on the terminal even with --yes).
        PlanExec::Approval => KeyParts {
            kind: "approval".into(),
            provider: None,
            model: None,
            model_id: None,
            max_tokens: None,
            temperature: None,
            system: None,
            prompt: hash_text(&prompt),
            argv: None,
            env: None,
            cwd: None,
            output_type,
            source,
            uses,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> KeyParts {
        KeyParts {
            kind: "model".into(),
            provider: Some("anthropic https://api.anthropic.com".into()),
            model: Some("sonnet".into()),
            model_id: Some("claude-sonnet-4-5".into()),
            max_tokens: Some(200),
            temperature: None,
            system: Some(hash_text("You plan.")),
            prompt: hash_text("Plan: x"),
            argv: None,
            env: None,
            cwd: None,
            output_type: None,
            source: hash_text("Plan: {scout}"),
            uses: [("scout".to_string(), hash_text("x"))]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn sha256_matches_the_standard_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_key_covers_what_determines_the_result_and_nothing_else() {
        let a = parts();
        let mut b = a.clone();
        b.model = Some("also-sonnet".into()); // another name for the same identifier
        b.source = hash_text("edited, same rendering");
        assert_eq!(a.key(), b.key());
        for change in [
            |p: &mut KeyParts| p.model_id = Some("claude-opus-4-5".into()),
            |p: &mut KeyParts| p.provider = Some("openai http://127.0.0.1:8080/v1".into()),
            |p: &mut KeyParts| p.max_tokens = Some(201),
            |p: &mut KeyParts| p.temperature = Some(0.5),
            |p: &mut KeyParts| p.system = None,
            |p: &mut KeyParts| p.prompt = hash_text("Plan: y"),
            |p: &mut KeyParts| p.output_type = Some("list<text>".into()),
        ] {
            let mut c = a.clone();
            change(&mut c);
            assert_ne!(a.key(), c.key(), "{c:?}");
        }
        assert_eq!(a.key().len(), 64);
    }

    #[test]
    fn steps_without_an_output_type_keep_the_keys_of_older_journals() {
        let p = parts();
        // The encoding before output types were part of the key.
        let before = format!(
            r#"{{"version":"orch-step-key-1","kind":"model","provider":"anthropic https://api.anthropic.com","model_id":"claude-sonnet-4-5","max_tokens":200,"temperature":null,"system":"{}","prompt":"{}","argv":null,"env":null,"cwd":null}}"#,
            hash_text("You plan."),
            hash_text("Plan: x")
        );
        assert_eq!(p.key(), sha256_hex(before.as_bytes()));
    }

    #[test]
    fn changes_are_explained_part_by_part() {
        let old = parts();
        let mut new = old.clone();
        new.model = Some("opus".into());
        new.model_id = Some("claude-opus-4-5".into());
        let upstream = |name: &str| format!("upstream `{name}` re-ran");
        assert_eq!(
            new.changes_since(&old, &upstream),
            "model changed sonnet → opus"
        );

        let mut new = old.clone();
        new.prompt = hash_text("Plan: y");
        new.uses.insert("scout".into(), hash_text("y"));
        assert_eq!(
            new.changes_since(&old, &upstream),
            "prompt changed (upstream `scout` re-ran)"
        );

        let mut new = old.clone();
        new.prompt = hash_text("Plan carefully: x");
        new.source = hash_text("Plan carefully: {scout}");
        new.max_tokens = Some(400);
        assert_eq!(
            new.changes_since(&old, &upstream),
            "max_tokens changed 200 → 400; prompt changed (the step was edited in the script)"
        );

        let mut new = old.clone();
        new.output_type = Some("{ tasks: list<text> }".into());
        assert_eq!(
            new.changes_since(&old, &upstream),
            "output type changed none → { tasks: list<text> }"
        );

        let mut new = old.clone();
        new.system = Some(hash_text("You plan carefully."));
        assert_eq!(
            new.changes_since(&old, &upstream),
            "system text changed (the agent was edited)"
        );
    }

    #[test]
    fn parts_round_trip_through_json() {
        let p = parts();
        let json = serde_json::to_string(&p).unwrap();
        let back: KeyParts = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.key(), p.key());
    }
}
