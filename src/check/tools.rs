//! Tools (docs/language.md, "Tools"): `mcp` declarations, the `tools`, `max_turns` and
//! `tool_timeout` fields of agents, and what is checked of them once every table is known:
//!
//! - each entry of `tools: [...]` is a built-in (`read`), `exec("PREFIX", ...)`, an MCP tool
//!   (`fs.read_text_file`) or every tool of a server (`git.*`), or a delegation
//!   (`agent(scout)`) — else `E1201 unknown-tool` with a "did you mean" over the built-ins,
//!   the declared servers and the agents; `E1202` for an `exec` without a usable prefix;
//!   `E1203` for an undeclared server; `E1204` for a delegation to an unknown agent, a command
//!   agent or one without a model of its own;
//! - delegation cycles (`E1205`, once per cycle with every edge) and chains deeper than
//!   [`MAX_DELEGATION_DEPTH`] (`E1206`);
//! - `max_turns` or `tool_timeout` on an agent without tools (`E1207`);
//! - lints: `write`, `edit` or `exec` granted to a `low`-complexity agent (`W1208`), and an
//!   `mcp` server no agent is granted (`W1209`).
//!
//! MCP server names are global, like models and providers: a server declared in an included
//! file (namespaced or not) is granted by its own name. Agents named in `agent(NAME)` resolve
//! like callees, from the file the grant is written in (`agent(review.editor)` through a
//! namespace).

use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};

use super::Tables;
use super::error::{
    DelegationCycle, DelegationTooDeep, ImpossibleValue, InvalidDelegation, InvalidExec,
    InvalidFieldValue, LowComplexityWrites, MissingField, TurnsWithoutTools, UnknownMcpServer,
    UnknownTool, UnusedMcpServer,
};
use super::items::{AgentKind, Complexity, Fields};
use crate::diag::suggest::did_you_mean;
use crate::diag::{Diagnostics, Span};
use crate::grant::{Builtin, EXEC, McpServer, ToolGrant};
use crate::syntax::ast::{self, Value, ValueKind};

/// The most model turns of an agent loop when neither the call, the agent nor a block sets
/// `max_turns`.
pub const DEFAULT_MAX_TURNS: u32 = 10;

/// The longest chain of delegations (`a` delegates to `b`, which delegates to `c`: 2). Each
/// level is a whole agent loop inside one turn of the level above, so the worst case
/// multiplies with depth; three levels cover a lead, its specialists and their helpers.
pub const MAX_DELEGATION_DEPTH: usize = 3;

/// A checked grant, with where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Granted {
    /// What it grants (an agent by its table key).
    pub grant: ToolGrant,
    /// The entry in `tools: [...]`.
    pub span: Span,
}

/// An `mcp NAME { ... }` declaration, checked.
#[derive(Debug, Clone)]
pub struct McpDef {
    /// Its name.
    pub name: String,
    /// How to reach it.
    pub server: McpServer,
    /// Where its name is written.
    pub name_span: Span,
}

const MCP_FIELDS: &[&str] = &["command", "env", "url"];

const MCP_TRANSPORT_HELP: &str = "give `command: [\"program\", \"arg\", ...]` for a server orch starts, or `url: \"http://...\"` for one already running";

/// Reads an `mcp NAME { command: [...], env: {...} }` or `mcp NAME { url: "..." }`.
pub(crate) fn mcp_server(decl: &ast::Decl, diags: &mut Diagnostics) -> McpDef {
    let f = Fields::new("an mcp server", &decl.fields, MCP_FIELDS, diags);
    let url = f.plain("url", diags);
    let server = match (f.get("command"), url) {
        (Some(_), Some(_)) => {
            diags.push(
                InvalidFieldValue::McpBothTransports {
                    at: decl.name.span,
                    name: decl.name.name.clone(),
                }
                .into(),
            );
            McpServer::Http { url: String::new() }
        }
        (None, Some(url)) => {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                && let Some(u) = f.get("url")
            {
                diags.push(InvalidFieldValue::McpUrl { at: u.value.span }.into());
            }
            if let Some(e) = f.get("env") {
                diags.push(InvalidFieldValue::McpEnvOnUrl { at: e.key.span }.into());
            }
            McpServer::Http { url }
        }
        (Some(command), None) => McpServer::Stdio {
            command: mcp_command(command, diags),
            env: mcp_env(&f, diags),
        },
        (None, None) => {
            if f.get("url").is_none() {
                diags.push(
                    MissingField {
                        at: decl.name.span,
                        what: "mcp server",
                        name: decl.name.name.clone(),
                        key: "command",
                        help: MCP_TRANSPORT_HELP,
                    }
                    .into(),
                );
            }
            McpServer::Http { url: String::new() }
        }
    };
    McpDef {
        name: decl.name.name.clone(),
        server,
        name_span: decl.name.span,
    }
}

/// `command: ["program", "arg", ...]`: plain strings, at least one.
fn mcp_command(field: &ast::Field, diags: &mut Diagnostics) -> Vec<String> {
    let ValueKind::List(items) = &field.value.kind else {
        diags.push(
            InvalidFieldValue::McpCommandNotList {
                at: field.value.span,
            }
            .into(),
        );
        return Vec::new();
    };
    if items.is_empty() {
        diags.push(
            InvalidFieldValue::McpCommandNotList {
                at: field.value.span,
            }
            .into(),
        );
    }
    items
        .iter()
        .filter_map(|v| match &v.kind {
            ValueKind::Str(t) if t.as_plain().is_some() => t.as_plain(),
            ValueKind::Str(_) => {
                diags.push(
                    InvalidFieldValue::Interpolates {
                        at: v.span,
                        key: "command".into(),
                        what: "an mcp server",
                    }
                    .into(),
                );
                None
            }
            _ => {
                diags.push(
                    InvalidFieldValue::ArgvElement {
                        at: v.span,
                        found: v.kind.describe(),
                    }
                    .into(),
                );
                None
            }
        })
        .collect()
}

/// `env: { NAME: "value" }`: plain strings.
fn mcp_env(f: &Fields<'_>, diags: &mut Diagnostics) -> Vec<(String, String)> {
    let Some(e) = f.get("env") else {
        return Vec::new();
    };
    let ValueKind::Record(fields) = &e.value.kind else {
        diags.push(InvalidFieldValue::EnvNotRecord { at: e.value.span }.into());
        return Vec::new();
    };
    let mut env = Vec::new();
    for field in fields {
        match &field.value.kind {
            ValueKind::Str(t) => match t.as_plain() {
                Some(v) => env.push((field.key.name.clone(), v)),
                None => diags.push(
                    InvalidFieldValue::Interpolates {
                        at: field.value.span,
                        key: field.key.name.clone(),
                        what: "an mcp server's `env`",
                    }
                    .into(),
                ),
            },
            _ => diags.push(
                InvalidFieldValue::EnvValue {
                    at: field.value.span,
                    name: field.key.name.clone(),
                    found: field.value.kind.describe(),
                    text: crate::syntax::print::value_text(&field.value),
                }
                .into(),
            ),
        }
    }
    env
}

// ------------------------------------------------------------------ agent fields

/// `tools: [...]`: the entries as written (`None` without the field; a value that is no list
/// is reported and counts as an empty list).
pub(crate) fn tools_field(f: &Fields<'_>, diags: &mut Diagnostics) -> Option<Vec<Value>> {
    let field = f.get("tools")?;
    match &field.value.kind {
        ValueKind::List(items) => Some(items.clone()),
        _ => {
            diags.push(
                InvalidFieldValue::ToolsNotList {
                    at: field.value.span,
                }
                .into(),
            );
            Some(Vec::new())
        }
    }
}

/// `max_turns: N`, not zero.
pub(crate) fn max_turns_field(f: &Fields<'_>, diags: &mut Diagnostics) -> Option<u32> {
    let n = f.int("max_turns", diags)?;
    if n > 0 {
        return Some(n);
    }
    let at = f.get("max_turns")?.value.span;
    diags.push(ImpossibleValue::ZeroMaxTurns { at }.into());
    None
}

/// `tool_timeout: D`, not zero.
pub(crate) fn tool_timeout_field(f: &Fields<'_>, diags: &mut Diagnostics) -> Option<u64> {
    let ms = f.duration("tool_timeout", diags)?;
    if ms > 0 {
        return Some(ms);
    }
    let at = f.get("tool_timeout")?.value.span;
    diags.push(ImpossibleValue::ZeroTimeout { at }.into());
    None
}

// ------------------------------------------------------------------ the checks

/// `E0212` for every tool grant written where a value is read: a parameter's default, a
/// step's argument, a `for` list, a `return`. (In fields, a grant is a value of the wrong
/// kind, reported by the field's own check.)
pub(crate) fn grants_outside_tools(module: &ast::Module, diags: &mut Diagnostics) {
    for item in &module.items {
        match item {
            ast::Item::Agent(a) => params_grants(&a.params, diags),
            ast::Item::Workflow(w) => {
                params_grants(&w.params, diags);
                block_grants(&w.body, diags);
            }
            _ => {}
        }
    }
}

fn params_grants(params: &[ast::Param], diags: &mut Diagnostics) {
    for v in params.iter().filter_map(|p| p.default.as_ref()) {
        value_grants(v, diags);
    }
}

fn block_grants(b: &ast::Block, diags: &mut Diagnostics) {
    for s in &b.stmts {
        match s {
            ast::Stmt::Step(s) => step_grants(s, diags),
            ast::Stmt::Gather(g) => step_grants(&g.step, diags),
            ast::Stmt::Return(r) => value_grants(&r.value, diags),
            ast::Stmt::Then(b) => block_grants(b, diags),
            ast::Stmt::Parallel(p) => {
                if let Some(f) = &p.for_each {
                    value_grants(&f.list, diags);
                }
                block_grants(&p.body, diags);
            }
            ast::Stmt::Repeat(r) => block_grants(&r.body, diags),
            ast::Stmt::If(i) => {
                block_grants(&i.then, diags);
                if let Some(o) = &i.otherwise {
                    block_grants(o, diags);
                }
            }
        }
    }
}

fn step_grants(s: &ast::Step, diags: &mut Diagnostics) {
    for a in &s.args {
        value_grants(&a.value, diags);
    }
}

fn value_grants(v: &Value, diags: &mut Diagnostics) {
    match &v.kind {
        ValueKind::Call { .. } | ValueKind::Wildcard(_) => diags.push(
            super::error::TypeMismatch::GrantAsValue {
                at: v.span,
                written: crate::syntax::print::value_text(v),
            }
            .into(),
        ),
        ValueKind::List(items) => items.iter().for_each(|i| value_grants(i, diags)),
        ValueKind::Record(fields) => fields.iter().for_each(|f| value_grants(&f.value, diags)),
        _ => {}
    }
}

/// Resolves every agent's grants against the tables and checks them (see the module docs).
pub(crate) fn check(tables: &mut Tables, diags: &mut Diagnostics) {
    let keys: Vec<String> = tables.agents.keys().cloned().collect();
    for key in &keys {
        let agent = &tables.agents[key];
        let written = agent.tools_written.clone();
        let granted: Vec<Granted> = written
            .iter()
            .filter_map(|v| grant(tables, v, diags))
            .collect();
        loop_fields_without_tools(tables, key, diags);
        low_complexity_writes(tables, key, &granted, diags);
        let agent = tables.agents.get_mut(key).expect("listed above");
        if let Some(tools) = &mut agent.tools {
            *tools = granted;
        }
    }
    delegation_cycles_and_depth(tables, diags);
    unused_servers(tables, diags);
}

/// One entry of `tools: [...]`, or `None` (reported) when it grants nothing.
fn grant(tables: &Tables, v: &Value, diags: &mut Diagnostics) -> Option<Granted> {
    let ok = |grant| {
        Some(Granted {
            grant,
            span: v.span,
        })
    };
    match &v.kind {
        ValueKind::Path(p) if p.fields.is_empty() => {
            if let Some(tool) = Builtin::from_name(&p.root.name) {
                return ok(ToolGrant::Builtin { tool });
            }
            if p.root.name == EXEC {
                diags.push(InvalidExec::NoPrefix { at: v.span }.into());
                return None;
            }
            diags.push(unknown_tool(tables, v, &p.root.name, false));
            None
        }
        ValueKind::Path(p) if p.fields.len() == 1 => {
            known_server(tables, &p.root, diags)?;
            ok(ToolGrant::Mcp {
                server: p.root.name.clone(),
                tool: Some(p.fields[0].name.clone()),
            })
        }
        ValueKind::Wildcard(server) => {
            known_server(tables, server, diags)?;
            ok(ToolGrant::Mcp {
                server: server.name.clone(),
                tool: None,
            })
        }
        ValueKind::Call { name, args } if name.name == EXEC => ok(exec_grant(v.span, args, diags)?),
        ValueKind::Call { name, args } if name.name == "agent" => {
            ok(delegation(tables, v.span, args, diags)?)
        }
        ValueKind::Str(t) => {
            let word = t.as_plain().unwrap_or_default();
            diags.push(unknown_tool(tables, v, &word, true));
            None
        }
        ValueKind::Call { name, .. } => {
            diags.push(unknown_tool(tables, v, &name.name, false));
            None
        }
        _ => {
            diags.push(unknown_tool(tables, v, "", false));
            None
        }
    }
}

/// `E1201` for entry `v`, with the closest grant to `word`: a built-in, `exec(...)`, a
/// server's `NAME.*`, or `agent(NAME)`.
fn unknown_tool(tables: &Tables, v: &Value, word: &str, quoted: bool) -> crate::diag::Diagnostic {
    let builtins = Builtin::ALL.iter().map(|b| b.name().to_string());
    let mut candidates: Vec<(String, String)> = builtins
        .chain(std::iter::once(EXEC.to_string()))
        .map(|b| (b.clone(), b))
        .collect();
    for s in tables.mcp.keys() {
        candidates.push((s.clone(), format!("{s}.*")));
    }
    for a in tables.agents.keys() {
        candidates.push((a.clone(), format!("agent({a})")));
    }
    let suggestion = candidates
        .iter()
        .find(|(name, _)| name == word)
        .or_else(|| {
            let best = did_you_mean(word, candidates.iter().map(|(n, _)| n.as_str()))?;
            candidates.iter().find(|(n, _)| n == best)
        })
        .map(|(n, written)| {
            if n == EXEC {
                format!("{EXEC}(\"PROGRAM\")")
            } else {
                written.clone()
            }
        });
    UnknownTool {
        at: v.span,
        written: crate::syntax::print::value_text(v),
        quoted,
        suggestion,
    }
    .into()
}

/// `Some(())` when `server` is a declared `mcp` server; else reports `E1203`.
fn known_server(tables: &Tables, server: &ast::Ident, diags: &mut Diagnostics) -> Option<()> {
    if tables.mcp.contains_key(&server.name) {
        return Some(());
    }
    diags.push(
        UnknownMcpServer {
            at: server.span,
            name: server.name.clone(),
            suggestion: did_you_mean(&server.name, tables.mcp.keys().map(String::as_str))
                .map(String::from),
        }
        .into(),
    );
    None
}

/// `exec("PREFIX", ...)`: at least one prefix, each a plain string with a word.
fn exec_grant(at: Span, args: &[Value], diags: &mut Diagnostics) -> Option<ToolGrant> {
    if args.is_empty() {
        diags.push(InvalidExec::NoPrefix { at }.into());
        return None;
    }
    let mut prefixes = Vec::new();
    for a in args {
        let text = match &a.kind {
            ValueKind::Str(t) => t.as_plain(),
            _ => None,
        };
        let Some(text) = text else {
            let found = match &a.kind {
                ValueKind::Str(_) => "an interpolation",
                k => k.describe(),
            };
            diags.push(InvalidExec::NotText { at: a.span, found }.into());
            continue;
        };
        let words: Vec<String> = text.split_whitespace().map(String::from).collect();
        if words.is_empty() {
            diags.push(InvalidExec::EmptyPrefix { at: a.span }.into());
            continue;
        }
        prefixes.push(words);
    }
    (prefixes.len() == args.len()).then_some(ToolGrant::Exec { prefixes })
}

/// `agent(NAME)`: a declared model agent with a model of its own, by its table key.
fn delegation(
    tables: &Tables,
    at: Span,
    args: &[Value],
    diags: &mut Diagnostics,
) -> Option<ToolGrant> {
    let [
        Value {
            kind: ValueKind::Path(p),
            ..
        },
    ] = args
    else {
        diags.push(InvalidDelegation::Malformed { at }.into());
        return None;
    };
    let Some(key) = tables.lookup(p, |k| tables.agents.contains_key(k)) else {
        diags.push(
            InvalidDelegation::Unknown {
                at: p.span,
                name: p.dotted(),
                suggestion: did_you_mean(&p.dotted(), tables.agents.keys().map(String::as_str))
                    .map(String::from),
            }
            .into(),
        );
        return None;
    };
    let target = &tables.agents[&key];
    match &target.kind {
        AgentKind::Command { .. } => {
            diags.push(
                InvalidDelegation::Command {
                    at: p.span,
                    name: key,
                    declared: target.name_span,
                }
                .into(),
            );
            None
        }
        AgentKind::Model { model: None, .. } => {
            diags.push(
                InvalidDelegation::NoModel {
                    at: p.span,
                    name: key,
                    declared: target.name_span,
                }
                .into(),
            );
            None
        }
        AgentKind::Model { .. } => {
            let required: Vec<String> = target
                .params
                .iter()
                .filter(|p| p.default.is_none())
                .map(|p| p.name.clone())
                .collect();
            if required.is_empty() {
                return Some(ToolGrant::Agent { name: key });
            }
            diags.push(
                InvalidDelegation::NeedsArguments {
                    at: p.span,
                    name: key,
                    params: required,
                    declared: target.name_span,
                }
                .into(),
            );
            None
        }
    }
}

/// `E1207`: `max_turns` or `tool_timeout` on agent `key`, which has no `tools`.
fn loop_fields_without_tools(tables: &Tables, key: &str, diags: &mut Diagnostics) {
    let agent = &tables.agents[key];
    if agent.tools.is_some() || matches!(agent.kind, AgentKind::Command { .. }) {
        // A command agent's `max_turns` is reported as a field it does not have.
        return;
    }
    for field in ["max_turns", "tool_timeout"] {
        if let Some(at) = agent.field_spans.get(field) {
            diags.push(
                TurnsWithoutTools::Field {
                    at: *at,
                    key: field.to_string(),
                    agent: key.to_string(),
                }
                .into(),
            );
        }
    }
}

/// `W1208`: `write`, `edit` or `exec(...)` granted to a `low`-complexity agent.
fn low_complexity_writes(tables: &Tables, key: &str, granted: &[Granted], diags: &mut Diagnostics) {
    let agent = &tables.agents[key];
    if agent.complexity != Some(Complexity::Low) {
        return;
    }
    let complexity = agent
        .field_spans
        .get("complexity")
        .copied()
        .unwrap_or(agent.name_span);
    for g in granted {
        let writes = match &g.grant {
            ToolGrant::Builtin { tool } => !tool.read_only(),
            ToolGrant::Exec { .. } => true,
            ToolGrant::Mcp { .. } | ToolGrant::Agent { .. } => false,
        };
        if writes {
            diags.push(
                LowComplexityWrites {
                    at: g.span,
                    agent: key.to_string(),
                    tool: g.grant.source(),
                    complexity,
                }
                .into(),
            );
        }
    }
}

/// The delegation graph: an edge from each agent to each agent it may delegate to, weighted
/// with where the grant is written.
fn delegation_graph(tables: &Tables) -> (DiGraph<String, Span>, IndexMap<String, NodeIndex>) {
    let mut graph = DiGraph::new();
    let idx: IndexMap<String, NodeIndex> = tables
        .agents
        .keys()
        .map(|k| (k.clone(), graph.add_node(k.clone())))
        .collect();
    for (key, agent) in &tables.agents {
        for g in agent.tools.iter().flatten() {
            if let ToolGrant::Agent { name } = &g.grant
                && let Some(&to) = idx.get(name)
            {
                graph.add_edge(idx[key], to, g.span);
            }
        }
    }
    (graph, idx)
}

/// `E1205` once per cycle (a strongly connected component, or an agent delegating to itself),
/// then, on the graph without cycles, `E1206` for each agent that starts a chain deeper than
/// [`MAX_DELEGATION_DEPTH`] and is not itself reached by such a chain.
fn delegation_cycles_and_depth(tables: &Tables, diags: &mut Diagnostics) {
    let (graph, _) = delegation_graph(tables);
    let mut cyclic = false;
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        cyclic = true;
        let edges = cycle_in(&graph, &scc);
        if !edges.is_empty() {
            diags.push(DelegationCycle { edges }.into());
        }
    }
    if cyclic {
        return; // depths are unbounded around a cycle: the cycle is the error
    }
    let mut memo = vec![None; graph.node_count()];
    let chains: Vec<Vec<NodeIndex>> = graph
        .node_indices()
        .map(|n| longest_chain(&graph, n, &mut memo))
        .collect();
    for n in graph.node_indices() {
        let chain = &chains[n.index()];
        if chain.len() - 1 <= MAX_DELEGATION_DEPTH {
            continue;
        }
        let reached = graph
            .neighbors_directed(n, petgraph::Direction::Incoming)
            .any(|m| chains[m.index()].len() - 1 > MAX_DELEGATION_DEPTH);
        if reached {
            continue; // reported at the start of the longer chain
        }
        let agent = &tables.agents[&graph[n]];
        diags.push(
            DelegationTooDeep {
                at: agent
                    .field_spans
                    .get("tools")
                    .copied()
                    .unwrap_or(agent.name_span),
                chain: chain.iter().map(|m| graph[*m].clone()).collect(),
                bound: MAX_DELEGATION_DEPTH,
            }
            .into(),
        );
    }
}

/// The longest delegation chain from `n` (itself first), on a graph without cycles; `memo`
/// holds the chains found so far, so that each agent is visited once.
fn longest_chain(
    graph: &DiGraph<String, Span>,
    n: NodeIndex,
    memo: &mut Vec<Option<Vec<NodeIndex>>>,
) -> Vec<NodeIndex> {
    if let Some(chain) = &memo[n.index()] {
        return chain.clone();
    }
    let mut best = vec![n];
    let mut next: Vec<NodeIndex> = graph.neighbors(n).collect();
    next.sort();
    next.dedup();
    for m in next {
        let rest = longest_chain(graph, m, memo);
        if rest.len() + 1 > best.len() {
            best = std::iter::once(n).chain(rest).collect();
        }
    }
    memo[n.index()] = Some(best.clone());
    best
}

/// One cycle through the component `scc`, starting at its first agent in declaration order:
/// (from, to, grant span) for each edge in order.
fn cycle_in(graph: &DiGraph<String, Span>, scc: &[NodeIndex]) -> Vec<(String, String, Span)> {
    use petgraph::visit::EdgeRef;
    let start = *scc.iter().min().expect("a component is not empty");
    let inside: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
    // Breadth-first from `start` back to it, within the component.
    let mut parent: std::collections::HashMap<NodeIndex, (NodeIndex, Span)> = Default::default();
    let mut queue = std::collections::VecDeque::from([start]);
    'bfs: while let Some(u) = queue.pop_front() {
        let mut edges: Vec<_> = graph
            .edges(u)
            .filter(|e| inside.contains(&e.target()))
            .collect();
        edges.sort_by_key(|e| e.target());
        for e in edges {
            let v = e.target();
            if v == start {
                parent.insert(start, (u, *e.weight()));
                break 'bfs;
            }
            if v != start && !parent.contains_key(&v) {
                parent.insert(v, (u, *e.weight()));
                queue.push_back(v);
            }
        }
    }
    let mut edges = Vec::new();
    let mut v = start;
    while let Some(&(u, span)) = parent.get(&v) {
        edges.push((graph[u].clone(), graph[v].clone(), span));
        v = u;
        if v == start || edges.len() > scc.len() {
            break;
        }
    }
    edges.reverse();
    edges
}

/// `W1209`: a declared server that no agent is granted.
fn unused_servers(tables: &Tables, diags: &mut Diagnostics) {
    for (name, def) in &tables.mcp {
        let granted = tables.agents.values().any(|a| {
            a.tools_written.iter().any(|v| match &v.kind {
                // `git` alone is reported as a tool (`git.*` meant); not again as unused.
                ValueKind::Path(p) => p.fields.len() <= 1 && p.root.name == *name,
                ValueKind::Wildcard(s) => s.name == *name,
                _ => false,
            })
        });
        if !granted {
            diags.push(
                UnusedMcpServer {
                    at: def.name_span,
                    name: name.clone(),
                }
                .into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::diag::Code;

    fn codes(src: &str) -> Vec<Code> {
        let opts = crate::resolve::ResolveOptions::default();
        let (_, diags) = crate::compile_source("t.orch", src, std::path::Path::new("."), &opts);
        diags.iter().map(|d| d.code).collect()
    }

    /// Thirty layers of three agents, each delegating to every agent of the next layer: the
    /// chains are followed once per agent, not once per path (3^30), and the too-deep chain is
    /// reported once for each agent of the first layer.
    #[test]
    fn deep_delegation_graphs_are_checked_in_linear_time() {
        let mut src = String::from("provider s { kind: sim }\nmodel m { provider: s }\n");
        for layer in 0..30 {
            for i in 0..3 {
                let grants: Vec<String> = if layer == 29 {
                    vec!["read".into()]
                } else {
                    (0..3)
                        .map(|j| format!("agent(a{}_{j})", layer + 1))
                        .collect()
                };
                src.push_str(&format!(
                    "agent a{layer}_{i} {{ model: m, tools: [{}] }}\n",
                    grants.join(", ")
                ));
            }
        }
        src.push_str("workflow main() {\n  x = a0_0(\"go\")\n  return x\n}\n");
        let start = std::time::Instant::now();
        let found = codes(&src);
        assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());
        assert_eq!(found, [Code::DelegationTooDeep; 3]);
    }

    #[test]
    fn a_block_option_reaches_only_agents_with_tools() {
        let found = codes(
            r#"
provider s { kind: sim }
model m { provider: s }
agent plain { model: m }
agent looped { model: m, tools: [read] }
workflow main() <max_turns 3> {
  a = plain("a")
  b = looped("{a}")
  return b
}
"#,
        );
        assert!(found.is_empty(), "{found:?}");
    }
}
