//! `exec("PREFIX", ...)`: runs a program the model names by its argv — no shell, so no
//! quoting, globbing, pipes or `;` — when the argv starts with one of the grant's prefixes
//! (compared word by word: `exec("cargo test")` allows `["cargo", "test", "--lib"]`, not
//! `["cargo", "testx"]` nor `["/usr/bin/cargo", "test"]`).
//!
//! It runs with [`crate::run::command::run_program`]: the working directory is the workspace;
//! the environment is orch's without the variables that hold secrets (provider API keys);
//! stdin is empty; the call's timeout stops it and every process it started (its own process
//! group); stdout and stderr are kept bounded (their ends, where a test run's summary is) and
//! redacted. What the program does beyond its working directory is not confined: the
//! allowlist is the boundary (`exec("git diff")` allows `git diff --output=/elsewhere`).

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::json;

use super::builtin::{Failure, parse};
use super::{BoxFuture, Tool, ToolContext, ToolOutput};
use crate::grant::EXEC;
use crate::run::command::{CommandSpec, ProgramOutput, run_program};
use crate::run::provider::conversation::ToolSpec;

/// The `exec` tool of one grant.
pub struct Exec {
    prefixes: Vec<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecInput {
    argv: Vec<String>,
}

impl Exec {
    /// The tool allowing argvs that start with one of `prefixes` (each already split on
    /// spaces).
    pub fn new(prefixes: Vec<Vec<String>>) -> Self {
        Exec { prefixes }
    }

    fn allowed(&self) -> String {
        let quoted: Vec<String> = self
            .prefixes
            .iter()
            .map(|p| format!("`{}`", p.join(" ")))
            .collect();
        quoted.join(", ")
    }

    fn schema() -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "argv": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "description": "Program and arguments, one per item, e.g. [\"cargo\", \"test\"]."
                }
            },
            "required": ["argv"],
            "additionalProperties": false
        })
    }

    async fn run(&self, input: serde_json::Value, cx: &ToolContext) -> Result<ToolOutput, Failure> {
        let ExecInput { argv } = parse(EXEC, input, &Self::schema())?;
        if argv.is_empty() {
            return Err(Failure::Error(
                "`argv` is empty: give the program and its arguments".into(),
            ));
        }
        // An empty prefix would allow everything: the checker rejects `exec()`, and it is
        // ignored here too.
        if !self
            .prefixes
            .iter()
            .any(|p| !p.is_empty() && argv.starts_with(p))
        {
            return Err(Failure::Refused(format!(
                "`{}` is not allowed: argv must start with one of {}",
                argv.join(" "),
                self.allowed()
            )));
        }
        let spec = CommandSpec {
            argv: argv.clone(),
            cwd: Some(PathBuf::from(&cx.workspace)),
            // Three quarters of the result for stdout's end, the rest for stderr's.
            max_stdout_bytes: Some(u32::try_from(cx.max_result_bytes / 4 * 3).unwrap_or(u32::MAX)),
            scrub_secrets: true,
            own_process_group: true,
            ..CommandSpec::default()
        };
        let shown = argv.join(" ");
        let ran = tokio::time::timeout(cx.timeout, run_program(&spec))
            .await
            .map_err(|_| {
                Failure::Error(format!(
                    "`{shown}` did not finish within {} ms; it was stopped, with every process \
                     it started",
                    cx.timeout.as_millis()
                ))
            })?
            .map_err(|err| Failure::Error(err.to_string()))?;
        Ok(result(&ran, cx.max_result_bytes))
    }
}

/// The result text: the exit status, then stderr's end, then stdout's end.
fn result(ran: &ProgramOutput, max_bytes: usize) -> ToolOutput {
    let status = match ran.status {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    };
    let mut text = status.clone();
    let stderr = ending(&ran.stderr, max_bytes / 4);
    if !stderr.is_empty() {
        text.push_str("\n--- stderr ---\n");
        text.push_str(stderr);
    }
    if !ran.stdout.is_empty() {
        text.push_str("\n--- stdout ---\n");
        if ran.stdout_cut {
            text.push_str("[... earlier output not shown]\n");
        }
        text.push_str(&ran.stdout);
    }
    ToolOutput::new(&text, ran.status != Some(0), status, max_bytes)
}

/// The last `max` bytes of `text` (already redacted, so a cut cannot expose part of a
/// secret), starting on a character boundary.
fn ending(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

impl Tool for Exec {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: EXEC.into(),
            description: format!(
                "Run a program in the workspace directory and get its exit status and output. \
                 Give `argv` as a list (no shell: no pipes, redirections or `&&`). Allowed only \
                 when argv starts with one of: {}.",
                self.allowed()
            ),
            input_schema: Self::schema(),
        }
    }

    fn read_only(&self) -> bool {
        false
    }

    fn call<'a>(
        &'a self,
        input: serde_json::Value,
        cx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            self.run(input, cx)
                .await
                .unwrap_or_else(|failure| failure.into_output(cx.max_result_bytes))
        })
    }
}
