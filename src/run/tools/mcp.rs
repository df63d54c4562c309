//! MCP servers' tools, through the official Rust SDK (`rmcp`): a [`McpPool`] starts each
//! server a run declares (`mcp NAME { command: [...] }` over stdio, `mcp NAME { url: ".." }`
//! over streamable HTTP) once, when it is first needed, lists its tools, and wraps each as a
//! [`Tool`] named `SERVER__TOOL` on the wire ([`crate::grant::mcp_wire_name`]).
//!
//! A stdio server is started without a shell, in the workspace, with orch's environment plus
//! the declaration's `env` (values as written; a key is never written in a script: the server
//! reads it from the environment orch runs in, by its variable's name, e.g. `GITHUB_TOKEN`) —
//! less every variable holding a key the run has read ([`crate::redact::holds_registered`]:
//! the providers' API keys, read before the first step), which no server needs. It runs in a process
//! group of its own (`npx` starts `node`, which must stop with it). Its stderr is kept apart
//! from orch's output, its end bounded ([`MCP_STDERR_KEPT_BYTES`]) and quoted, redacted, when
//! the server fails to start. [`McpPool::shutdown`] closes each connection as the MCP
//! specification's stdio shutdown says (close its stdin, wait, `SIGTERM`, then `SIGKILL`;
//! rmcp's `TokioChildProcess::graceful_shutdown`) and reaps every process of the group.
//!
//! Results: the text of a result's content blocks (text, embedded text resources; other kinds
//! are named, not inlined) goes through [`ToolOutput::new`] (redacted, then cut); `isError`
//! makes it an error result. Annotations are hints from the server (MCP specification,
//! "Tool annotations"): `readOnlyHint` decides only whether the simulator may call the tool.
//! A server's messages are read whole by rmcp, which bounds each one at 16 MiB (rmcp 3.11's
//! defaults: `async_rw::DEFAULT_MAX_LINE_LENGTH` for a stdio line, `DEFAULT_MAX_SSE_EVENT_SIZE`
//! and the JSON response limit over HTTP): a longer message is dropped, so the call it answers
//! ends at its tool timeout, and memory stays bounded.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indexmap::IndexMap;
use rmcp::model::{CallToolRequestParams, ContentBlock, ResourceContents};
use rmcp::service::{Peer, RoleClient, RunningService, ServiceExt};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde::Serialize;
use tokio::sync::OnceCell;

use super::{BoxFuture, Tool, ToolContext, ToolOutput};
use crate::diag::suggest::did_you_mean;
use crate::grant::{McpServer, ToolGrant, mcp_wire_name};
use crate::plan::{Plan, PlanExec};
use crate::redact::redact;
use crate::run::provider::conversation::ToolSpec;

/// How long a server may take to start and answer `initialize` and `tools/list`: 60 s, room
/// for `npx` to fetch a package on first use.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// How many trailing bytes of a stdio server's stderr are kept (for the error when it fails).
pub const MCP_STDERR_KEPT_BYTES: usize = 16 * 1024;

/// Why an MCP server or tool cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    /// The run declares no server of that name.
    #[error("no mcp server `{server}` is declared{}", hint(.suggestion))]
    UnknownServer {
        /// The name asked for.
        server: String,
        /// A declared name close to it.
        suggestion: Option<String>,
    },
    /// The server could not be started or did not complete the MCP handshake or tool list.
    #[error("mcp server `{server}` did not start: {message}{}", stderr_note(.stderr_tail))]
    Start {
        /// The server's name.
        server: String,
        /// What went wrong (redacted).
        message: String,
        /// The end of what a stdio server wrote to stderr (redacted), empty when nothing.
        stderr_tail: String,
    },
    /// A granted tool is not in the server's list.
    #[error(
        "mcp server `{server}` has no tool `{tool}`{}; it lists: {}",
        hint(.suggestion),
        .available.join(", ")
    )]
    UnknownTool {
        /// The server's name.
        server: String,
        /// The tool granted.
        tool: String,
        /// A listed tool close to it.
        suggestion: Option<String>,
        /// Every tool the server lists.
        available: Vec<String>,
    },
}

fn hint(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

fn stderr_note(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("\nits stderr ends with:\n{tail}")
    }
}

/// What a server says about one of its tools, for `orch plan` and checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct McpToolInfo {
    /// The server's name in the script.
    pub server: String,
    /// The tool's name as the server lists it.
    pub name: String,
    /// Its wire name (`server__name`).
    pub wire_name: String,
    /// Its description (empty when the server gives none).
    pub description: String,
    /// `readOnlyHint`, when the server gives it.
    pub read_only: Option<bool>,
    /// `destructiveHint`, when the server gives it.
    pub destructive: Option<bool>,
}

/// The MCP grants of a plan's agents — its steps' and the agents it delegates to — as
/// `(server, tool)` pairs (`None`: every tool), each once, in plan order: what
/// [`McpPool::check_grants`] checks before a run's first step and at `orch check --mcp`.
pub fn plan_grants(plan: &Plan) -> Vec<(String, Option<String>)> {
    let execs = plan
        .nodes
        .iter()
        .map(|n| &n.exec)
        .chain(plan.delegates.values().map(|d| &d.exec));
    let mut grants: Vec<(String, Option<String>)> = Vec::new();
    for exec in execs {
        let PlanExec::Model {
            tools: Some(tools), ..
        } = exec
        else {
            continue;
        };
        for grant in &tools.grants {
            if let ToolGrant::Mcp { server, tool } = grant {
                let pair = (server.clone(), tool.clone());
                if !grants.contains(&pair) {
                    grants.push(pair);
                }
            }
        }
    }
    grants
}

/// One started server.
struct Connection {
    peer: Peer<RoleClient>,
    tools: Vec<rmcp::model::Tool>,
}

/// A started server's parts that shutdown needs.
struct Running {
    service: RunningService<RoleClient, ()>,
}

/// The MCP servers of one run, each started once on first need and stopped by
/// [`McpPool::shutdown`].
pub struct McpPool {
    servers: IndexMap<String, McpServer>,
    workspace: PathBuf,
    start_timeout: Duration,
    connections: IndexMap<String, OnceCell<Result<Arc<Connection>, McpError>>>,
    running: Mutex<Vec<Running>>,
}

impl McpPool {
    /// A pool for `servers` (the plan's `mcp` declarations); stdio servers run in
    /// `workspace`. Nothing is started yet.
    pub fn new(servers: &IndexMap<String, McpServer>, workspace: &Path) -> Self {
        McpPool {
            servers: servers.clone(),
            workspace: workspace.to_path_buf(),
            start_timeout: DEFAULT_START_TIMEOUT,
            connections: servers
                .keys()
                .map(|name| (name.clone(), OnceCell::new()))
                .collect(),
            running: Mutex::new(Vec::new()),
        }
    }

    /// The same pool with another bound on starting a server.
    pub fn with_start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// The tools of `server` granted by `tool`: that one (`NAME.tool`), or every tool it lists
    /// (`NAME.*`, `None`). Starts the server if it has not been.
    ///
    /// # Errors
    /// [`McpError::UnknownServer`], [`McpError::Start`] (a failed start is remembered: the
    /// server is not started again), [`McpError::UnknownTool`].
    pub async fn tools(
        &self,
        server: &str,
        tool: Option<&str>,
    ) -> Result<Vec<Arc<dyn Tool>>, McpError> {
        let connection = self.connection(server).await?;
        let chosen = select(server, &connection.tools, tool)?;
        Ok(chosen
            .into_iter()
            .map(|t| {
                Arc::new(McpTool {
                    wire_name: mcp_wire_name(server, &t.name),
                    tool: t.clone(),
                    peer: connection.peer.clone(),
                }) as Arc<dyn Tool>
            })
            .collect())
    }

    /// What `server` says about its tools (names, descriptions, annotations). Starts it.
    ///
    /// # Errors
    /// [`McpError::UnknownServer`], [`McpError::Start`].
    pub async fn describe(&self, server: &str) -> Result<Vec<McpToolInfo>, McpError> {
        let connection = self.connection(server).await?;
        Ok(connection
            .tools
            .iter()
            .map(|t| {
                let annotations = t.annotations.as_ref();
                McpToolInfo {
                    server: server.to_string(),
                    name: t.name.to_string(),
                    wire_name: mcp_wire_name(server, &t.name),
                    description: t.description.as_deref().unwrap_or_default().to_string(),
                    read_only: annotations.and_then(|a| a.read_only_hint),
                    destructive: annotations.and_then(|a| a.destructive_hint),
                }
            })
            .collect())
    }

    /// Checks grants `(server, tool)` (`None`: every tool) against the servers' tool lists,
    /// starting every server named, before a run's first step or at `orch check --mcp`.
    ///
    /// # Errors
    /// The first grant that fails, in order: [`McpError::UnknownServer`],
    /// [`McpError::Start`], [`McpError::UnknownTool`] (with a "did you mean").
    pub async fn check_grants(&self, grants: &[(String, Option<String>)]) -> Result<(), McpError> {
        for (server, tool) in grants {
            let connection = self.connection(server).await?;
            select(server, &connection.tools, tool.as_deref())?;
        }
        Ok(())
    }

    /// Stops every server started: closes each connection, then waits for its processes to
    /// exit (or kills them). Tools handed out before fail (an error result) afterwards.
    pub async fn shutdown(self) {
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|e| e.into_inner()));
        for r in running {
            // A server that will not stop is killed by rmcp's transport; nothing to report.
            let _ = r.service.cancel().await;
        }
    }

    async fn connection(&self, server: &str) -> Result<Arc<Connection>, McpError> {
        let Some(cell) = self.connections.get(server) else {
            return Err(McpError::UnknownServer {
                server: server.to_string(),
                suggestion: did_you_mean(server, self.servers.keys().map(String::as_str))
                    .map(str::to_string),
            });
        };
        cell.get_or_init(|| self.start(server)).await.clone()
    }

    async fn start(&self, server: &str) -> Result<Arc<Connection>, McpError> {
        let declared = &self.servers[server];
        let start_error = |message: String, stderr_tail: String| McpError::Start {
            server: server.to_string(),
            message: redact(message).into_string(),
            stderr_tail,
        };
        let (connecting, stderr) = match declared {
            McpServer::Stdio { command, env } => {
                let (transport, stderr) = self
                    .spawn(command, env)
                    .map_err(|m| start_error(m, String::new()))?;
                (
                    Box::pin(async { ().serve(transport).await.map_err(|e| e.to_string()) })
                        as BoxFuture<'_, Result<RunningService<RoleClient, ()>, String>>,
                    stderr,
                )
            }
            McpServer::Http { url } => {
                let transport = StreamableHttpClientTransport::from_uri(url.as_str());
                (
                    Box::pin(async { ().serve(transport).await.map_err(|e| e.to_string()) })
                        as BoxFuture<'_, Result<RunningService<RoleClient, ()>, String>>,
                    None,
                )
            }
        };
        let handshake = async {
            let service = connecting.await?;
            match service.peer().list_all_tools().await {
                Ok(tools) => Ok((service, tools)),
                Err(err) => {
                    let _ = service.cancel().await;
                    Err(format!("listing its tools failed: {err}"))
                }
            }
        };
        let outcome = tokio::time::timeout(self.start_timeout, handshake)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within {} s",
                    self.start_timeout.as_secs()
                ))
            });
        match outcome {
            Ok((service, tools)) => {
                let connection = Arc::new(Connection {
                    peer: service.peer().clone(),
                    tools,
                });
                self.running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Running { service });
                Ok(connection)
            }
            Err(message) => Err(start_error(message, stderr_tail(stderr).await)),
        }
    }

    /// Starts a stdio server: no shell, cwd the workspace, its own process group, stderr
    /// captured (its end kept by a task).
    fn spawn(
        &self,
        command: &[String],
        env: &[(String, String)],
    ) -> Result<(TokioChildProcess, Option<StderrTail>), String> {
        let Some((program, args)) = command.split_first() else {
            return Err("its `command` is empty".into());
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(&self.workspace)
            .env_clear()
            .envs(
                std::env::vars_os().filter(|(_, value)| {
                    !crate::redact::holds_registered(&value.to_string_lossy())
                }),
            );
        for (name, value) in env {
            crate::redact::register_env(name, value);
            cmd.env(name, value);
        }
        let mut wrapped = process_wrap::tokio::CommandWrap::from(cmd);
        wrapped.wrap(process_wrap::tokio::ProcessGroup::leader());
        let (transport, stderr) = TokioChildProcess::builder(wrapped)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("cannot run `{program}`: {err}"))?;
        let tail = stderr.map(|pipe| {
            tokio::spawn(async move {
                crate::run::command::read_tail(Some(pipe), MCP_STDERR_KEPT_BYTES)
                    .await
                    .map(|(text, _)| text)
                    .unwrap_or_default()
            })
        });
        Ok((transport, tail))
    }
}

/// The task keeping the end of a stdio server's stderr.
type StderrTail = tokio::task::JoinHandle<String>;

/// The end of a failed server's stderr, redacted and trimmed; waits a moment for the server
/// to exit (its stderr then ends).
async fn stderr_tail(task: Option<StderrTail>) -> String {
    let Some(task) = task else {
        return String::new();
    };
    match tokio::time::timeout(Duration::from_secs(2), task).await {
        Ok(Ok(text)) => {
            let text = redact(text).into_string();
            let trimmed = text.trim();
            let lines: Vec<&str> = trimmed.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        }
        _ => String::new(),
    }
}

/// The listed tools a grant names, or why not.
fn select<'t>(
    server: &str,
    listed: &'t [rmcp::model::Tool],
    tool: Option<&str>,
) -> Result<Vec<&'t rmcp::model::Tool>, McpError> {
    let Some(name) = tool else {
        return Ok(listed.iter().collect());
    };
    match listed.iter().find(|t| t.name == name) {
        Some(t) => Ok(vec![t]),
        None => Err(McpError::UnknownTool {
            server: server.to_string(),
            tool: name.to_string(),
            suggestion: did_you_mean(name, listed.iter().map(|t| t.name.as_ref()))
                .map(str::to_string),
            available: listed.iter().map(|t| t.name.to_string()).collect(),
        }),
    }
}

/// One tool of a started server.
struct McpTool {
    wire_name: String,
    tool: rmcp::model::Tool,
    peer: Peer<RoleClient>,
}

impl Tool for McpTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.wire_name.clone(),
            description: redact(self.tool.description.as_deref().unwrap_or_default()).into_string(),
            input_schema: serde_json::Value::Object((*self.tool.input_schema).clone()),
        }
    }

    fn read_only(&self) -> bool {
        self.tool
            .annotations
            .as_ref()
            .and_then(|a| a.read_only_hint)
            .unwrap_or(false)
    }

    fn call<'a>(
        &'a self,
        input: serde_json::Value,
        cx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let max = cx.max_result_bytes;
            let serde_json::Value::Object(arguments) = input else {
                return ToolOutput::new(
                    &format!(
                        "invalid input for `{}`: expected a JSON object",
                        self.wire_name
                    ),
                    true,
                    "error",
                    max,
                );
            };
            let request =
                CallToolRequestParams::new(self.tool.name.clone()).with_arguments(arguments);
            match tokio::time::timeout(cx.timeout, self.peer.call_tool(request)).await {
                Ok(Ok(result)) => {
                    let is_error = result.is_error.unwrap_or(false);
                    let text = result_text(&result);
                    let summary = if is_error {
                        "error".to_string()
                    } else {
                        format!("{} bytes", text.len())
                    };
                    ToolOutput::new(&text, is_error, summary, max)
                }
                Ok(Err(err)) => ToolOutput::new(
                    &format!("`{}` failed: {err}", self.wire_name),
                    true,
                    "error",
                    max,
                ),
                // Dropping the request future sends the server a cancellation (rmcp's
                // `send_request_cancel_on_drop`).
                Err(_) => ToolOutput::new(
                    &format!(
                        "`{}` did not answer within {} ms",
                        self.wire_name,
                        cx.timeout.as_millis()
                    ),
                    true,
                    "timed out",
                    max,
                ),
            }
        })
    }
}

/// The text of a result: its text blocks and embedded text resources, one after another;
/// other blocks named by kind; the structured content when there is no text.
fn result_text(result: &rmcp::model::CallToolResult) -> String {
    let parts: Vec<String> = result
        .content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Resource(r) => match &r.resource {
                ResourceContents::TextResourceContents { uri, text, .. } => {
                    format!("[resource {uri}]\n{text}")
                }
                ResourceContents::BlobResourceContents { uri, .. } => {
                    format!("[binary resource {uri}, not shown]")
                }
                _ => "[resource of an unknown kind, not shown]".to_string(),
            },
            ContentBlock::Image(i) => format!("[image, {}, not shown]", i.mime_type),
            ContentBlock::Audio(a) => format!("[audio, {}, not shown]", a.mime_type),
            ContentBlock::ResourceLink(l) => format!("[link to {}]", l.uri),
            _ => "[content of an unknown kind, not shown]".to_string(),
        })
        .collect();
    match (&result.structured_content, parts.is_empty()) {
        (Some(structured), true) => structured.to_string(),
        _ => parts.join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent loop runs tool calls on tokio tasks: the pool and its futures must be `Send`.
    #[test]
    fn the_pool_can_be_shared_across_tasks() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let pool = McpPool::new(&IndexMap::new(), Path::new("."));
        send_sync(&pool);
        send(pool.tools("fs", None));
        send(pool.check_grants(&[]));
        send(pool.shutdown());
    }

    #[test]
    fn results_keep_text_and_name_other_content() {
        let result = rmcp::model::CallToolResult::success(vec![
            ContentBlock::text("first"),
            ContentBlock::image("AAAA", "image/png"),
            ContentBlock::embedded_text("file:///a.txt", "inside"),
        ]);
        assert_eq!(
            result_text(&result),
            "first\n[image, image/png, not shown]\n[resource file:///a.txt]\ninside"
        );
    }
}
