//! Lowering of tools (docs/language.md, "Tools"): each step of an agent with `tools` gets its
//! [`PlanTools`]; the plan gets every agent reachable by delegation ([`Plan::delegates`],
//! followed transitively from the steps' agents) and every MCP server the steps and the
//! delegates are granted ([`Plan::mcp`]).

use indexmap::IndexMap;

use super::lower::plan_exec;
use super::{Estimate, PlanDelegate, PlanExec, PlanNode, PlanTools};
use crate::check::tools::DEFAULT_MAX_TURNS;
use crate::check::workflow::{DEFAULT_MAX_TOKENS, DEFAULT_MODEL_RETRY, Exec};
use crate::check::{AgentDef, AgentKind, Program};
use crate::grant::{
    MAX_CALLS_PER_TURN, MAX_RESULT_BYTES, MAX_TURN_RESULT_BYTES, REFUSAL_MAX_BYTES, ToolGrant,
};

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

/// The plan's delegates (with their worst cases) and MCP servers, from the steps' grants
/// (see [`super::Plan::delegates`], [`super::Plan::mcp`]).
pub(super) fn lower_tools(
    program: &Program,
    steps: &[PlanNode],
) -> (
    IndexMap<String, crate::grant::McpServer>,
    IndexMap<String, PlanDelegate>,
) {
    let mut queue: std::collections::VecDeque<ToolGrant> = steps
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
    let mcp = program
        .tables
        .mcp
        .iter()
        .filter(|(name, _)| servers.contains(name))
        .map(|(name, def)| (name.clone(), def.server.clone()))
        .collect();
    delegate_worst_cases(program, steps, &mut delegates);
    (mcp, delegates)
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
        on_truncated: a.on_truncated,
        worst_case: Estimate::default(),
        defaults,
    })
}

// ------------------------------------------------------------------ worst case

/// Estimated tokens of one tool's definition in a request (name, description, JSON schema of
/// its input): the built-ins' definitions are about 100 to 200 tokens; 256 leaves room for an
/// MCP tool's longer description.
pub const TOOL_DEFINITION_TOKENS: u64 = 256;

/// Tokens (at the plan's 4 bytes a token) of the results one turn can add: the results of its
/// calls together hold at most [`MAX_TURN_RESULT_BYTES`], and each call (at most one per
/// output token, as a call takes at least one) may add a refusal or omission note of at most
/// [`REFUSAL_MAX_BYTES`].
fn turn_results_tokens(max_tokens: u64) -> u64 {
    let results = MAX_TURN_RESULT_BYTES
        .min(MAX_CALLS_PER_TURN * MAX_RESULT_BYTES)
        .div_ceil(4) as u64;
    let refusals = max_tokens.saturating_mul(REFUSAL_MAX_BYTES.div_ceil(4) as u64);
    results.saturating_add(refusals)
}

/// Input and output tokens of one agent loop whose first request holds `base` input tokens
/// (system text, prompt, interpolated outputs), with `max_tokens` per answer, each model call
/// attempted once. With T = `max_turns`, O = `max_tokens`, D the grants' definitions
/// ([`TOOL_DEFINITION_TOKENS`] each) and R what one turn's results add
/// ([`turn_results_tokens`]): turn k sends B = base + D plus every earlier turn's answer and
/// results, B + (k − 1)(O + R), so the loop sends T·B + T(T − 1)/2·(O + R) and receives T·O.
pub(super) fn loop_tokens(base: u64, max_tokens: u64, tools: &PlanTools) -> (u64, u64) {
    let turns = u64::from(tools.max_turns);
    let definitions = (tools.grants.len() as u64).saturating_mul(TOOL_DEFINITION_TOKENS);
    let first = base.saturating_add(definitions);
    let growth = max_tokens.saturating_add(turn_results_tokens(max_tokens));
    let pairs = turns.saturating_mul(turns.saturating_sub(1)) / 2;
    let input = turns
        .saturating_mul(first)
        .saturating_add(pairs.saturating_mul(growth));
    (input, turns.saturating_mul(max_tokens))
}

/// The worst case of the delegations of one loop: every turn may start
/// [`MAX_CALLS_PER_TURN`] of them, each at most the costliest delegate granted (its whole
/// loop, its own delegations included).
pub(super) fn delegations(
    tools: &PlanTools,
    delegates: &IndexMap<String, PlanDelegate>,
) -> Estimate {
    let worst = tools
        .grants
        .iter()
        .filter_map(|g| match g {
            ToolGrant::Agent { name } => delegates.get(name).map(|d| d.worst_case),
            _ => None,
        })
        .fold(Estimate::default(), |a, b| Estimate {
            input_tokens: a.input_tokens.max(b.input_tokens),
            output_tokens: a.output_tokens.max(b.output_tokens),
            cost_usd: a.cost_usd.max(b.cost_usd),
        });
    let n = u64::from(tools.max_turns).saturating_mul(MAX_CALLS_PER_TURN as u64);
    Estimate {
        input_tokens: worst.input_tokens.saturating_mul(n),
        output_tokens: worst.output_tokens.saturating_mul(n),
        cost_usd: worst.cost_usd * n as f64,
    }
}

/// Fills each delegate's worst case: one delegation runs its whole loop, its prompt being at
/// most the longest answer (`max_tokens`) of an agent that may delegate to it, each model call
/// attempted `1 + retry` times (and as often on its fallback), plus its own delegations.
/// Delegates are done callees first (delegation has no cycles: checked).
fn delegate_worst_cases(
    program: &Program,
    steps: &[super::PlanNode],
    delegates: &mut IndexMap<String, PlanDelegate>,
) {
    // The longest prompt each delegate may get: the longest answer of any agent granting it.
    let mut prompt: IndexMap<String, u64> = IndexMap::new();
    let granting = steps
        .iter()
        .map(|n| &n.exec)
        .chain(delegates.values().map(|d| &d.exec));
    for exec in granting {
        let PlanExec::Model {
            max_tokens,
            tools: Some(t),
            ..
        } = exec
        else {
            continue;
        };
        for g in &t.grants {
            if let ToolGrant::Agent { name } = g {
                let p = prompt.entry(name.clone()).or_default();
                *p = (*p).max(u64::from(*max_tokens));
            }
        }
    }
    let mut done: Vec<String> = Vec::new();
    while done.len() < delegates.len() {
        // A delegate whose own delegates are all done (one exists: no cycles).
        let Some(next) = delegates
            .iter()
            .find(|(name, d)| {
                !done.contains(name)
                    && granted_agents(&d.exec)
                        .all(|a| done.contains(a) || !delegates.contains_key(a))
            })
            .map(|(name, _)| name.clone())
        else {
            break;
        };
        let d = &delegates[&next];
        let mut worst = model_worst_case(
            program,
            &d.exec,
            prompt.get(&next).copied().unwrap_or(0),
            d.retry,
        );
        if let PlanExec::Model { tools: Some(t), .. } = &d.exec {
            worst += delegations(t, delegates);
        }
        delegates[&next].worst_case = worst;
        done.push(next);
    }
}

/// The agents an exec may delegate to.
fn granted_agents(exec: &PlanExec) -> impl Iterator<Item = &String> {
    let grants = match exec {
        PlanExec::Model { tools: Some(t), .. } => t.grants.as_slice(),
        _ => &[],
    };
    grants.iter().filter_map(|g| match g {
        ToolGrant::Agent { name } => Some(name),
        _ => None,
    })
}

/// Worst case of a delegate's model calls (without its delegations): its system text plus a
/// prompt of `prompt` tokens as the base of its loop.
fn model_worst_case(program: &Program, exec: &PlanExec, prompt: u64, retry: u32) -> Estimate {
    let PlanExec::Model {
        model,
        fallback,
        system,
        max_tokens,
        tools,
        ..
    } = exec
    else {
        return Estimate::default();
    };
    let system = system.as_ref().map_or(0, |t| {
        t.parts()
            .iter()
            .map(|p| match p {
                super::TemplatePart::Text(s) => super::estimate_tokens(s),
                super::TemplatePart::Interp(_) => 0,
            })
            .sum()
    });
    let base = system.saturating_add(prompt);
    let (input, output) = match tools {
        Some(t) => loop_tokens(base, u64::from(*max_tokens), t),
        None => (base, u64::from(*max_tokens)),
    };
    let attempts = u64::from(retry) + 1;
    priced(
        program,
        model,
        fallback.as_deref(),
        input.saturating_mul(attempts),
        output.saturating_mul(attempts),
    )
}

/// `input` and `output` tokens on `model`, and as many again on `fallback`.
pub(super) fn priced(
    program: &Program,
    model: &str,
    fallback: Option<&str>,
    input: u64,
    output: u64,
) -> Estimate {
    let price = |m: &str| {
        program
            .tables
            .models
            .get(m)
            .map(|m| m.price)
            .unwrap_or_default()
    };
    let mut e = Estimate {
        input_tokens: input,
        output_tokens: output,
        cost_usd: price(model).cost(input, output),
    };
    if let Some(f) = fallback {
        e += Estimate {
            input_tokens: input,
            output_tokens: output,
            cost_usd: price(f).cost(input, output),
        };
    }
    e
}

/// What the worst case of the loops cannot bound: the definitions of `NAME.*` grants, whose
/// tools are known only once the server lists them (counted as one tool each).
pub(super) fn notes(steps: &[PlanNode], delegates: &IndexMap<String, PlanDelegate>) -> Vec<String> {
    let mut servers: Vec<&str> = steps
        .iter()
        .map(|n| &n.exec)
        .chain(delegates.values().map(|d| &d.exec))
        .filter_map(|e| match e {
            PlanExec::Model { tools: Some(t), .. } => Some(&t.grants),
            _ => None,
        })
        .flatten()
        .filter_map(|g| match g {
            ToolGrant::Mcp { server, tool: None } => Some(server.as_str()),
            _ => None,
        })
        .collect();
    servers.sort_unstable();
    servers.dedup();
    servers
        .into_iter()
        .map(|s| {
            format!(
                "`{s}.*` grants every tool the server lists at run time; the worst case counts its definitions as one tool"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{PlanExec, plan_for_test};
    use super::*;

    const SCRIPT: &str = r#"
provider s { kind: sim }
model m { provider: s, max_tokens: 100, price: { input: 1.00, output: 2.00 } }
mcp fs { command: ["srv"] }
mcp unused_by_plan { url: "http://127.0.0.1:1/mcp" }
agent helper { model: m, tools: [read], max_turns: 2, retry: 0 }
agent scout { model: m, tools: [grep, fs.*, agent(helper)], max_turns: 3, retry: 0 }
agent lead { model: m, tools: [agent(scout)], retry: 0 }
agent other { model: m, tools: [unused_by_plan.x] }
workflow main() {
  a = lead<max_turns 4>("go")
  return a
}
"#;

    #[test]
    fn loop_tokens_grow_with_every_turn() {
        let tools = PlanTools {
            grants: vec![ToolGrant::Builtin {
                tool: crate::grant::Builtin::Read,
            }],
            max_turns: 3,
            tool_timeout_ms: None,
        };
        let (input, output) = loop_tokens(10, 100, &tools);
        let b = 10 + TOOL_DEFINITION_TOKENS;
        let growth = 100 + turn_results_tokens(100);
        // Turns send B, B + growth, B + 2·growth.
        assert_eq!(input, 3 * b + 3 * growth);
        assert_eq!(output, 300);
        assert_eq!(turn_results_tokens(100), 32 * 1024 + 100 * 16);
    }

    #[test]
    fn delegates_and_servers_are_followed_transitively() {
        let (_, plan) = plan_for_test(SCRIPT);
        assert_eq!(
            plan.delegates.keys().collect::<Vec<_>>(),
            ["scout", "helper"]
        );
        assert_eq!(plan.mcp.keys().collect::<Vec<_>>(), ["fs"]);
        let PlanExec::Model { tools: Some(t), .. } = &plan.nodes[0].exec else {
            panic!("a loop");
        };
        assert_eq!(t.max_turns, 4);
        assert_eq!(plan.notes.len(), 1, "{:?}", plan.notes);
        // helper: 2 turns, prompt up to scout's 100 tokens, no delegations.
        let helper = &plan.delegates["helper"];
        let (hi, ho) = loop_tokens(100, 100, &plan_tools_of(&helper.exec));
        assert_eq!(helper.worst_case.input_tokens, hi);
        assert_eq!(helper.worst_case.output_tokens, ho);
        // scout: its own loop plus 3 turns × 8 delegations to helper.
        let scout = &plan.delegates["scout"];
        let (si, _) = loop_tokens(100, 100, &plan_tools_of(&scout.exec));
        assert_eq!(scout.worst_case.input_tokens, si + 3 * 8 * hi);
        // The step: lead's 4 turns plus 4 × 8 delegations to scout.
        let (li, _) = loop_tokens(super::super::estimate_tokens("go"), 100, t);
        assert_eq!(
            plan.nodes[0].worst_case.input_tokens,
            li + 4 * 8 * scout.worst_case.input_tokens
        );
        assert!(plan.nodes[0].worst_case.cost_usd > scout.worst_case.cost_usd * 32.0);
    }

    fn plan_tools_of(exec: &PlanExec) -> PlanTools {
        match exec {
            PlanExec::Model { tools: Some(t), .. } => t.clone(),
            _ => panic!("a loop"),
        }
    }
}
