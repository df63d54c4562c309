//! Lowering of tools (docs/language.md, "Tools"): each step of an agent with `tools` gets its
//! [`PlanTools`]; the plan gets every agent reachable by delegation ([`Plan::delegates`],
//! followed transitively from the steps' agents) and every MCP server the steps and the
//! delegates are granted ([`Plan::mcp`]).

use indexmap::IndexMap;

use super::lower::plan_exec;
use super::{Plan, PlanDelegate, PlanExec, PlanTools};
use crate::check::tools::DEFAULT_MAX_TURNS;
use crate::check::workflow::{DEFAULT_MAX_TOKENS, DEFAULT_MODEL_RETRY, Exec};
use crate::check::{AgentDef, AgentKind, Program};
use crate::grant::ToolGrant;

/// The tools of a step of `agent` whose `max_turns` resolved to `max_turns` (call, agent,
/// blocks); `None` for an agent without `tools`.
pub(super) fn plan_tools(agent: &AgentDef, max_turns: Option<u32>) -> Option<PlanTools> {
    let granted = agent.tools.as_ref()?;
    Some(PlanTools {
        grants: granted.iter().map(|g| g.grant.clone()).collect(),
        max_turns: max_turns.or(agent.max_turns).unwrap_or(DEFAULT_MAX_TURNS),
        tool_timeout_ms: agent.tool_timeout_ms,
    })
}

/// Fills [`Plan::delegates`] and [`Plan::mcp`] from the steps' grants.
pub(super) fn lower_tools(program: &Program, plan: &mut Plan) {
    let mut queue: std::collections::VecDeque<ToolGrant> = plan
        .nodes
        .iter()
        .filter_map(|n| match &n.exec {
            PlanExec::Model { tools, .. } => tools.as_ref(),
            _ => None,
        })
        .flat_map(|t| t.grants.iter().cloned())
        .collect();
    let mut delegates: IndexMap<String, PlanDelegate> = IndexMap::new();
    let mut servers: Vec<String> = Vec::new();
    while let Some(g) = queue.pop_front() {
        match g {
            ToolGrant::Mcp { server, .. } if !servers.contains(&server) => servers.push(server),
            ToolGrant::Agent { name } if !delegates.contains_key(&name) => {
                let Some(d) = program
                    .tables
                    .agents
                    .get(&name)
                    .and_then(|a| delegate(program, a))
                else {
                    continue;
                };
                // The delegate's own grants: its servers and its delegates are the plan's too.
                if let PlanExec::Model { tools: Some(t), .. } = &d.exec {
                    queue.extend(t.grants.iter().cloned());
                }
                delegates.insert(name, d);
            }
            _ => {}
        }
    }
    plan.mcp = program
        .tables
        .mcp
        .iter()
        .filter(|(name, _)| servers.contains(name))
        .map(|(name, def)| (name.clone(), def.server.clone()))
        .collect();
    plan.delegates = delegates;
}

/// Agent `a` as a delegation target: its own model (checked to be there), its tools and
/// limits, its parameters' defaults as arguments. `None` for a command agent (checked not to
/// be delegated to).
fn delegate(program: &Program, a: &AgentDef) -> Option<PlanDelegate> {
    let AgentKind::Model {
        model,
        system,
        max_tokens,
        temperature,
        fallback,
    } = &a.kind
    else {
        return None;
    };
    let model = model.as_ref()?.name.clone();
    let model_max = program.tables.models.get(&model).and_then(|m| m.max_tokens);
    let exec = Exec::Model {
        fallback: fallback
            .as_ref()
            .map(|f| f.name.clone())
            .filter(|f| *f != model && program.tables.models.contains_key(f)),
        system: system.clone(),
        max_tokens: max_tokens.or(model_max).unwrap_or(DEFAULT_MAX_TOKENS),
        temperature: *temperature,
        model,
    };
    let defaults: IndexMap<String, String> = a
        .params
        .iter()
        .filter_map(|p| Some((p.name.clone(), p.default.clone()?)))
        .collect();
    let args: Vec<&str> = defaults.keys().map(String::as_str).collect();
    let mut exec = plan_exec(program, &exec, &args);
    if let PlanExec::Model { tools, .. } = &mut exec {
        *tools = plan_tools(a, None);
    }
    Some(PlanDelegate {
        agent: a.name.clone(),
        exec,
        retry: a.retry.unwrap_or(DEFAULT_MODEL_RETRY),
        timeout_ms: a.timeout_ms,
        max_output_bytes: a.max_output_bytes,
        worst_case: super::Estimate::default(),
        defaults,
    })
}
