//! Tool grants: what an agent may use in its agent loop (docs/language.md, "Tools").
//!
//! A grant is written on an agent (`tools: [read, grep, exec("cargo test"), fs.*, agent(scout)]`),
//! checked by `check`, carried by the plan and obeyed by `run`: it lives below all three so that
//! none of them reaches up the pipeline for it (like [`crate::common::Policy`]).
//!
//! Every tool has a *wire name*: the name the model sees in the provider's tool list. Providers
//! restrict tool names to `^[a-zA-Z0-9_-]{1,64}$` (Anthropic Messages API, "Tool use",
//! `tools[].name`; OpenAI Chat Completions, `tools[].function.name`), so a dotted MCP tool
//! `fs.read_text_file` goes on the wire as `fs__read_text_file` and a delegation `agent(scout)` as
//! `agent__scout` (the double underscore cannot start or end a script name's part, so wire names
//! never collide with each other or with a built-in).

use serde::Serialize;

/// A built-in tool (`../shared/design/tools.md`, "Built-in tools").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Builtin {
    /// A text file's lines (offset, limit).
    Read,
    /// A directory's entries.
    List,
    /// Files matching a glob, honouring `.gitignore`.
    Glob,
    /// Regex search over files: path, line, text.
    Grep,
    /// Create or overwrite a file.
    Write,
    /// Replace an exact, unique string in a file.
    Edit,
}

impl Builtin {
    /// Every built-in except `exec` (which takes its allowlist as arguments), in the order the
    /// docs list them.
    pub const ALL: [Builtin; 6] = [
        Builtin::Read,
        Builtin::List,
        Builtin::Glob,
        Builtin::Grep,
        Builtin::Write,
        Builtin::Edit,
    ];

    /// The name as written in a script and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Read => "read",
            Builtin::List => "list",
            Builtin::Glob => "glob",
            Builtin::Grep => "grep",
            Builtin::Write => "write",
            Builtin::Edit => "edit",
        }
    }

    /// The built-in named `name`, if any.
    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Whether it only reads the workspace (the simulator calls only read-only tools; a
    /// `low`-complexity agent granted one that writes gets a lint).
    pub fn read_only(self) -> bool {
        !matches!(self, Builtin::Write | Builtin::Edit)
    }
}

/// The longest result of one tool call sent back to the model, in bytes (64 KiB): every
/// result is redacted, then cut to this (`run::tools` uses it as its default).
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// The most tool calls of one model turn that the agent loop executes. Further calls of the
/// same turn are not executed: each gets a refusal result of at most [`REFUSAL_MAX_BYTES`].
pub const MAX_CALLS_PER_TURN: usize = 8;

/// The most bytes the results of one turn's calls send back together (128 KiB): the loop cuts
/// each result to [`MAX_RESULT_BYTES`] and then, in call order, a result past this total to
/// what is left (a result left with nothing says so in at most [`REFUSAL_MAX_BYTES`]).
/// With [`MAX_CALLS_PER_TURN`] this bounds how much one turn adds to the conversation, which
/// `orch plan`'s worst case relies on (docs/language.md, "Tools").
pub const MAX_TURN_RESULT_BYTES: usize = 128 * 1024;

/// The longest refusal or omission note standing for a call's result, in bytes.
pub const REFUSAL_MAX_BYTES: usize = 64;

/// The wire name of the built-in `exec` tool.
pub const EXEC: &str = "exec";

/// One entry of an agent's `tools: [...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ToolGrant {
    /// A built-in file tool.
    Builtin {
        /// Which.
        tool: Builtin,
    },
    /// `exec("cargo test", "git diff")`: run a program whose argv starts with one of these
    /// prefixes (each written as one string, split on spaces).
    Exec {
        /// The allowed argv prefixes, each already split on spaces.
        prefixes: Vec<Vec<String>>,
    },
    /// `NAME.tool` (one tool of an MCP server) or `NAME.*` (every tool it lists).
    Mcp {
        /// The `mcp` declaration's name.
        server: String,
        /// The tool, or `None` for `*`.
        tool: Option<String>,
    },
    /// `agent(NAME)`: hand a subtask to another declared agent, run as a nested step.
    Agent {
        /// The agent's (possibly namespaced) name.
        name: String,
    },
}

impl ToolGrant {
    /// The grant as written in a script (`read`, `exec("cargo test")`, `fs.*`, `agent(scout)`).
    pub fn source(&self) -> String {
        match self {
            ToolGrant::Builtin { tool } => tool.name().to_string(),
            ToolGrant::Exec { prefixes } => {
                let args: Vec<String> = prefixes
                    .iter()
                    .map(|p| format!("\"{}\"", p.join(" ")))
                    .collect();
                format!("{EXEC}({})", args.join(", "))
            }
            ToolGrant::Mcp { server, tool } => {
                format!("{server}.{}", tool.as_deref().unwrap_or("*"))
            }
            ToolGrant::Agent { name } => format!("agent({name})"),
        }
    }

    /// Whether the grant only reads: built-in read tools; never `exec`, an agent (which may
    /// act) or an MCP tool (read-only only by its server's annotation, known at run time).
    pub fn read_only(&self) -> bool {
        matches!(self, ToolGrant::Builtin { tool } if tool.read_only())
    }
}

/// The wire name of MCP tool `tool` of server `server` (see the module docs). A server may
/// name its tools with characters providers refuse (MCP only asks for a string): each is
/// replaced with `_`, and the name is cut to 64 characters. The call itself uses the server's
/// own name.
pub fn mcp_wire_name(server: &str, tool: &str) -> String {
    wire_safe(&format!("{server}__{tool}"))
}

/// `name` as providers accept a tool name (`^[a-zA-Z0-9_-]{1,64}$`: see the module docs):
/// other characters replaced with `_`, cut to 64 characters (possibly empty).
pub fn wire_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// The wire name of a delegation to `agent` (a namespaced `ns.name` becomes `ns_name`).
pub fn agent_wire_name(agent: &str) -> String {
    format!("agent__{}", agent.replace('.', "_"))
}

/// An `mcp NAME { ... }` declaration: how to reach the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "transport", rename_all = "lowercase")]
pub enum McpServer {
    /// `command: [...]`: a program started by orch, spoken to over stdio.
    Stdio {
        /// argv (no shell).
        command: Vec<String>,
        /// Environment variables set for it (values as written; secrets by variable name only).
        env: Vec<(String, String)>,
    },
    /// `url: "..."`: a server already running, spoken to over streamable HTTP.
    Http {
        /// Its endpoint.
        url: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_print_as_written() {
        let exec = ToolGrant::Exec {
            prefixes: vec![
                vec!["cargo".into(), "test".into()],
                vec!["git".into(), "diff".into()],
            ],
        };
        assert_eq!(exec.source(), r#"exec("cargo test", "git diff")"#);
        let all = ToolGrant::Mcp {
            server: "git".into(),
            tool: None,
        };
        assert_eq!(all.source(), "git.*");
        assert_eq!(
            ToolGrant::Agent {
                name: "scout".into()
            }
            .source(),
            "agent(scout)"
        );
        assert!(
            ToolGrant::Builtin {
                tool: Builtin::Grep
            }
            .read_only()
        );
        assert!(!exec.read_only());
    }

    #[test]
    fn wire_names_fit_the_providers_pattern() {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        assert!(ok(&mcp_wire_name("fs", "read_text_file")));
        assert_eq!(mcp_wire_name("fs", "files.read/v2"), "fs__files_read_v2");
        assert!(ok(&mcp_wire_name("server", &"é".repeat(80))));
        assert!(ok(&agent_wire_name("review.editor")));
        for b in Builtin::ALL {
            assert!(ok(b.name()));
            assert_eq!(Builtin::from_name(b.name()), Some(b));
        }
    }
}
