//! The toolbox of one agent loop: its grants turned into tools, by wire name.

use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::json;

use super::AgentEnv;
use crate::grant::{ToolGrant, agent_wire_name};
use crate::run::cassette::Cassette;
use crate::run::provider::{OfferedTool, ToolSpec};
use crate::run::tools::{BoxFuture, Tool, ToolContext, ToolOutput};

/// What a wire name calls.
#[derive(Clone)]
pub(in crate::run) enum Entry {
    /// A tool (built-in, `exec`, or an MCP server's).
    Tool(Arc<dyn Tool>),
    /// A delegation to the agent of this name, run as a nested step.
    Delegate(String),
}

/// The tools of one agent loop, in grant order, by wire name.
#[derive(Clone, Default)]
pub(in crate::run) struct Toolbox {
    entries: IndexMap<String, (Entry, OfferedTool)>,
}

impl Toolbox {
    /// The toolbox of `grants`: built-ins ([`crate::run::tools::builtin::tools_for`]), the
    /// tools of MCP servers (started now if they are not yet), and delegations to the agents
    /// of `env`.
    ///
    /// # Errors
    /// Why a grant cannot be given: an MCP server that does not start or lacks the tool, a
    /// delegation to an agent the plan does not have.
    pub(in crate::run) async fn build(
        grants: &[ToolGrant],
        env: &AgentEnv,
    ) -> Result<Toolbox, String> {
        let mut b = Toolbox::default();
        for g in grants {
            match g {
                ToolGrant::Builtin { .. } | ToolGrant::Exec { .. } => {
                    for t in crate::run::tools::builtin::tools_for(g) {
                        b.add_tool(on_tape(t, env));
                    }
                }
                ToolGrant::Mcp { server, tool } => {
                    let pool = env.mcp.as_ref().ok_or_else(|| {
                        format!("MCP server `{server}` is not one of this run's servers")
                    })?;
                    let tools = pool
                        .tools(server, tool.as_deref())
                        .await
                        .map_err(|e| e.to_string())?;
                    for t in tools {
                        b.add_tool(on_tape(t, env));
                    }
                }
                ToolGrant::Agent { name } => {
                    let d = env.delegates.get(name).ok_or_else(|| {
                        format!("agent `{name}` cannot be delegated to: the plan does not have it")
                    })?;
                    b.add_delegate(name, &describe_delegate(name, d));
                }
            }
        }
        Ok(b)
    }

    /// Adds a tool under its wire name (a second tool of the same name replaces the first).
    pub(in crate::run) fn add_tool(&mut self, tool: Arc<dyn Tool>) {
        let offered = OfferedTool {
            spec: tool.spec(),
            read_only: tool.read_only(),
        };
        self.entries
            .insert(offered.spec.name.clone(), (Entry::Tool(tool), offered));
    }

    /// Adds a delegation to agent `name`, described to the model by `description`.
    pub(in crate::run) fn add_delegate(&mut self, name: &str, description: &str) {
        let offered = OfferedTool {
            spec: ToolSpec {
                name: agent_wire_name(name),
                description: description.to_string(),
                input_schema: json!({
                    "type": "object",
                    "properties": {
                        "prompt": {
                            "type": "string",
                            "description": "The subtask, self-contained: the agent sees nothing else."
                        }
                    },
                    "required": ["prompt"],
                    "additionalProperties": false
                }),
            },
            // A delegated agent may act: never called by the simulator on that ground alone.
            read_only: false,
        };
        self.entries.insert(
            offered.spec.name.clone(),
            (Entry::Delegate(name.to_string()), offered),
        );
    }

    /// The tools as offered to the model, in grant order.
    pub(in crate::run) fn offered(&self) -> Vec<OfferedTool> {
        self.entries.values().map(|(_, o)| o.clone()).collect()
    }

    /// What `wire_name` calls, if it was granted.
    pub(in crate::run) fn get(&self, wire_name: &str) -> Option<&Entry> {
        self.entries.get(wire_name).map(|(e, _)| e)
    }

    /// The wire names, in grant order.
    pub(in crate::run) fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }
}

/// What the model is told of a delegation to agent `name`.
fn describe_delegate(name: &str, d: &crate::plan::PlanDelegate) -> String {
    let model = match &d.exec {
        crate::plan::PlanExec::Model { model, .. } => format!(" (model `{model}`"),
        _ => " (".to_string(),
    };
    let tools = match &d.exec {
        crate::plan::PlanExec::Model { tools: Some(t), .. } => {
            let names: Vec<String> = t.grants.iter().map(ToolGrant::source).collect();
            format!("; tools: {})", names.join(", "))
        }
        _ => "; no tools)".to_string(),
    };
    format!(
        "Hand a subtask to the agent `{name}`{model}{tools}. Give it a self-contained prompt; it works on its own and its final answer is this tool's result."
    )
}

/// `tool`, recorded to or replayed from the run's cassette if it has one.
fn on_tape(tool: Arc<dyn Tool>, env: &AgentEnv) -> Arc<dyn Tool> {
    match &env.cassette {
        Some(cassette) => Arc::new(Taped {
            name: tool.spec().name,
            tool,
            cassette: cassette.clone(),
        }),
        None => tool,
    }
}

/// A tool whose calls go through a cassette: recorded (`--record`: the call runs, then its
/// output is written), or replayed (`--replay`: the recorded output is returned and nothing
/// runs; a call the cassette does not have gets an error result saying so).
struct Taped {
    /// The tool's wire name (its spec is built anew on each `spec()` call).
    name: String,
    tool: Arc<dyn Tool>,
    cassette: Arc<Cassette>,
}

impl Tool for Taped {
    fn spec(&self) -> ToolSpec {
        self.tool.spec()
    }

    fn read_only(&self) -> bool {
        self.tool.read_only()
    }

    fn call<'a>(
        &'a self,
        input: serde_json::Value,
        cx: &'a ToolContext,
    ) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let name = &self.name;
            if self.cassette.is_replay() {
                return self.cassette.tool(name, &input).unwrap_or_else(|| {
                    ToolOutput::refused(format!(
                        "this call of `{name}` is not in the cassette {}, so it was not run",
                        self.cassette.path().display()
                    ))
                });
            }
            let out = self.tool.call(input.clone(), cx).await;
            match self.cassette.note_tool(name, &input, &out) {
                Ok(()) => out,
                // The call ran; the model is told, and the run's cassette is incomplete.
                Err(e) => ToolOutput::new(
                    &format!("{}\n[{e}]", out.content),
                    true,
                    out.summary,
                    usize::MAX,
                ),
            }
        })
    }
}
