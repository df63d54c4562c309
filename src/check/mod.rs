//! Check: a [`ModuleSet`] → a checked [`Program`], with every error of every file reported.
//!
//! Item tables first (providers, models, agents, workflows across all included files, with
//! duplicates reported), then each workflow is lowered to its DAG ([`workflow::lower`]) with
//! its names, models, options, arguments and cycles checked.

mod entry;
mod error;
pub mod items;
pub mod lints;
pub mod tools;
pub mod types;
pub mod workflow;

use indexmap::IndexMap;

use crate::diag::suggest::did_you_mean;
use crate::diag::{Code, Diagnostic, Diagnostics, SourceMap, Span};
use crate::resolve::ModuleSet;
use crate::syntax::ast::{self, Ident, Path};
pub use entry::entry_workflow;
pub use items::{
    AgentDef, AgentKind, Complexity, ModelDef, Price, ProviderDef, ProviderKind, Tier,
};
pub use workflow::WorkflowGraph;

/// The item tables every workflow is checked against.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Providers: built-in, then declared.
    pub providers: IndexMap<String, ProviderDef>,
    /// Models.
    pub models: crate::common::NameMap<String, ModelDef>,
    /// MCP servers, by name: global like models and providers, whichever file declares them
    /// (docs/language.md, "Tools").
    pub mcp: IndexMap<String, tools::McpDef>,
    /// Agents, by name (`ns.name` for a file included `as ns`).
    pub agents: crate::common::NameMap<String, AgentDef>,
    /// Each namespaced file's namespace.
    pub namespaces: std::collections::HashMap<crate::diag::FileId, String>,
    /// Each `as ns`, with the prefix its names have (empty: the file's names are global).
    pub aliases: IndexMap<String, String>,
}

impl Tables {
    /// The table key a callee names, seen from its own file, among the keys `exists`
    /// accepts: `ns.name` through a namespace; else the callee's file's own namespace, then
    /// the global name.
    pub fn lookup(&self, callee: &Path, exists: impl Fn(&str) -> bool) -> Option<String> {
        let candidates: Vec<String> = match callee.fields.as_slice() {
            [] => {
                let mut c = Vec::new();
                if let Some(ns) = self.namespaces.get(&callee.span.file) {
                    c.push(format!("{ns}.{}", callee.root.name));
                }
                c.push(callee.root.name.clone());
                c
            }
            [f] => match self.aliases.get(&callee.root.name) {
                Some(prefix) if prefix.is_empty() => vec![f.name.clone()],
                Some(prefix) => vec![format!("{prefix}.{}", f.name)],
                // A key written whole (`p.lead`, as expansions pass agents on).
                None => vec![callee.dotted()],
            },
            _ => Vec::new(),
        };
        candidates.into_iter().find(|k| exists(k))
    }

    pub(crate) fn unknown_model(&self, m: &Ident) -> Diagnostic {
        error::UnknownModel {
            at: m.span,
            name: m.name.clone(),
            suggestion: did_you_mean(&m.name, self.models.keys().map(String::as_str))
                .map(String::from),
            declared: self.models.keys().cloned().collect(),
        }
        .into()
    }

    pub(crate) fn unknown_agent(&self, callee: &Path) -> Diagnostic {
        let name = callee.dotted();
        let namespaced = self
            .agents
            .keys()
            .find(|k| k.rsplit_once('.').is_some_and(|(_, n)| n == name))
            .cloned();
        // The built-in `approve` is a callee too.
        let callees = self
            .agents
            .keys()
            .map(String::as_str)
            .chain(std::iter::once(workflow::APPROVE));
        let suggestion = did_you_mean(&name, callees).map(String::from);
        error::UnknownAgent {
            at: callee.span,
            root: callee.root.name.clone(),
            name,
            namespaced,
            suggestion,
        }
        .into()
    }
}

impl AgentDef {
    /// Where a command agent puts parameter `param` that must never hold model output: the
    /// first argv element or the `cwd` that interpolates it, with `"argv"` or `"cwd"`.
    pub fn command_use(&self, param: &str) -> Option<(Span, &'static str)> {
        let AgentKind::Command { argv, cwd, .. } = &self.kind else {
            return None;
        };
        let uses = |t: &crate::syntax::ast::Template| t.interps().any(|p| p.root.name == param);
        argv.iter()
            .find(|(t, _)| uses(t))
            .map(|(_, s)| (*s, "argv"))
            .or_else(|| cwd.iter().find(|(t, _)| uses(t)).map(|(_, s)| (*s, "cwd")))
    }
}

/// A checked program: the tables and every workflow's DAG.
#[derive(Debug, Clone)]
pub struct Program {
    /// Every source file.
    pub sources: SourceMap,
    /// Providers, models and agents.
    pub tables: Tables,
    /// Workflows by name, in source order.
    pub workflows: IndexMap<String, WorkflowGraph>,
}

/// Checks a module set. The program is returned even when there are errors (for tools that
/// want to show as much as possible); callers must not run it if `diags.has_errors()`.
pub fn check(set: &ModuleSet, diags: &mut Diagnostics) -> Program {
    let before = diags.len();
    let mut tables = Tables {
        providers: items::builtin_providers(),
        ..Tables::default()
    };
    let mut item_spans: IndexMap<String, (Span, &'static str)> = IndexMap::new();
    let mut workflows: Vec<&ast::Workflow> = Vec::new();
    let mut model_providers: Vec<(String, Ident)> = Vec::new();
    let mut declared_providers: Vec<String> = Vec::new();

    tables.namespaces = set.namespaces.clone();
    tables.aliases = set.aliases.clone();
    let mut workflow_keys: Vec<String> = Vec::new();
    for m in &set.modules {
        // Agents and workflows of a file included `as ns` are `ns.name`.
        let keyed = |n: &Ident| -> Ident {
            match &m.namespace {
                Some(ns) => Ident {
                    name: format!("{ns}.{}", n.name),
                    span: n.span,
                },
                None => n.clone(),
            }
        };
        for item in &m.module.items {
            let agent_key;
            let workflow_key;
            let (name, kind) = match item {
                ast::Item::Include(_) => continue,
                ast::Item::Provider(d) => (&d.name, "provider"),
                ast::Item::Model(d) => (&d.name, "model"),
                ast::Item::Mcp(d) => (&d.name, "mcp server"),
                ast::Item::Agent(a) => {
                    agent_key = keyed(&a.name);
                    (&agent_key, "agent")
                }
                ast::Item::Workflow(w) => {
                    workflow_key = keyed(&w.name);
                    (&workflow_key, "workflow")
                }
            };
            if let Some(&(prev, prev_kind)) = item_spans.get(&name.name) {
                diags.push(duplicate_item(
                    set,
                    &name.name,
                    (name.span, kind),
                    (prev, prev_kind),
                ));
                // An item of another kind does not clash in its own table: keep it there, so
                // that its uses are not reported as unknown on top of this error.
                let free = kind != prev_kind
                    && match item {
                        ast::Item::Provider(_) => false,
                        ast::Item::Model(_) => !tables.models.contains_key(&name.name),
                        ast::Item::Mcp(_) => !tables.mcp.contains_key(&name.name),
                        ast::Item::Agent(_) => !tables.agents.contains_key(&name.name),
                        ast::Item::Workflow(_) => !workflow_keys.contains(&name.name),
                        ast::Item::Include(_) => false,
                    };
                if !free {
                    continue;
                }
            } else {
                item_spans.insert(name.name.clone(), (name.span, kind));
            }
            match item {
                ast::Item::Provider(d) => {
                    declared_providers.push(d.name.name.clone());
                    tables
                        .providers
                        .insert(d.name.name.clone(), items::provider(d, diags));
                }
                ast::Item::Model(d) => {
                    let (def, provider) = items::model(d, diags);
                    if let Some(p) = provider {
                        model_providers.push((d.name.name.clone(), p));
                    }
                    tables.models.insert(d.name.name.clone(), def);
                }
                ast::Item::Mcp(d) => {
                    tables
                        .mcp
                        .insert(d.name.name.clone(), tools::mcp_server(d, diags));
                }
                ast::Item::Agent(a) => {
                    let mut def = items::agent(a, diags);
                    def.name = name.name.clone();
                    tables.agents.insert(name.name.clone(), def);
                }
                ast::Item::Workflow(w) => {
                    workflow_keys.push(name.name.clone());
                    workflows.push(w);
                }
                ast::Item::Include(_) => {}
            }
        }
    }
    check_model_providers(&tables, &model_providers, diags);
    check_agent_models(&tables, diags);
    tools::check(&mut tables, diags);
    for m in &set.modules {
        tools::grants_outside_tools(&m.module, diags);
    }

    let by_key: IndexMap<String, &ast::Workflow> = workflow_keys
        .iter()
        .cloned()
        .zip(workflows.iter().copied())
        .collect();
    let workflows = lower_workflows(&by_key, &tables, diags);
    dedup_expanded(diags, before);
    if set.incomplete {
        // An included file could not be loaded: an unknown agent, model or provider may well be
        // declared in it, so only the include error is reported.
        let mut i = 0;
        diags.retain(|d| {
            i += 1;
            i <= before
                || !matches!(
                    d.code,
                    Code::UnknownAgent | Code::UnknownModel | Code::UnknownProvider
                )
        });
    }
    let program = Program {
        sources: set.sources.clone(),
        tables,
        workflows,
    };
    lints::lint(set, &program, diags);
    program
}

/// Lowers every workflow, callees before callers (see [`workflow::limits`]), and reports the
/// bounds on expanding calls they reach, once per chain. The graphs come back in source order.
fn lower_workflows(
    by_key: &IndexMap<String, &ast::Workflow>,
    tables: &Tables,
    diags: &mut Diagnostics,
) -> IndexMap<String, WorkflowGraph> {
    let mut expansion = workflow::limits::Expansion::default();
    let mut graphs: std::collections::HashMap<String, WorkflowGraph> = Default::default();
    let mut hits = IndexMap::new();
    let mut calls = std::collections::HashMap::new();
    for key in workflow::limits::lowering_order(by_key, tables) {
        let wf = by_key[&key];
        if expansion.exhausted {
            // Past the program's bound (reported): an empty graph, unchecked.
            let mut skipped =
                workflow::lower(&empty_body(wf), tables, by_key, &mut expansion, diags);
            skipped.graph.name = key.clone();
            graphs.insert(key, skipped.graph);
            continue;
        }
        let mut lowered = workflow::lower(wf, tables, by_key, &mut expansion, diags);
        lowered.graph.name = key.clone();
        if let Some(hit) = lowered.limit {
            expansion.exhausted = hit.limit == workflow::limits::Limit::ProgramSteps;
            let hit = workflow::limits::LimitHit {
                workflow: key.clone(),
                ..hit
            };
            expansion.hits.insert(key.clone(), hit.clone());
            hits.insert(key.clone(), hit);
        }
        if !hits.contains_key(&key) {
            expansion
                .sizes
                .insert(key.clone(), lowered.graph.nodes.len());
        }
        calls.insert(key.clone(), lowered.calls);
        graphs.insert(key, lowered.graph);
    }
    for d in workflow::limits::reported_limits(&hits, &calls) {
        diags.push(d);
    }
    by_key
        .keys()
        .map(|k| {
            (
                k.clone(),
                graphs.remove(k).expect("every workflow is lowered"),
            )
        })
        .collect()
}

/// `wf` without its statements (a workflow left unchecked keeps its parameters).
fn empty_body(wf: &ast::Workflow) -> ast::Workflow {
    ast::Workflow {
        body: ast::Block {
            stmts: Vec::new(),
            span: wf.body.span,
        },
        ..wf.clone()
    }
}

/// A pattern's own errors are found when it is checked on its own and again in every
/// expansion of a call: keep the first of identical diagnostics (same code, place and message).
fn dedup_expanded(diags: &mut Diagnostics, from: usize) {
    let mut seen = std::collections::HashSet::new();
    let mut i = 0;
    diags.retain(|d| {
        i += 1;
        i <= from || seen.insert((d.code, d.primary.span, d.message.clone()))
    });
}

/// `name` is declared twice: `this` is the later declaration, `prev` the first one. The error
/// points into the entry script when one of them is there (that is the file being edited),
/// and otherwise at the later declaration.
fn duplicate_item(
    set: &ModuleSet,
    name: &str,
    this: (Span, &'static str),
    prev: (Span, &'static str),
) -> Diagnostic {
    let (primary, other) = if prev.0.file == set.entry && this.0.file != set.entry {
        (prev, this)
    } else {
        (this, prev)
    };
    error::DuplicateDefinition::Item {
        name: name.to_string(),
        primary: error::Declared {
            at: primary.0,
            kind: primary.1,
        },
        other: error::Declared {
            at: other.0,
            kind: other.1,
        },
        other_file: set.sources.get(other.0.file).name.clone(),
    }
    .into()
}

fn check_model_providers(
    tables: &Tables,
    model_providers: &[(String, Ident)],
    diags: &mut Diagnostics,
) {
    for (_, p) in model_providers {
        if tables.providers.contains_key(&p.name) {
            continue;
        }
        diags.push(
            error::UnknownProvider {
                at: p.span,
                name: p.name.clone(),
                suggestion: did_you_mean(&p.name, tables.providers.keys().map(String::as_str))
                    .map(String::from),
            }
            .into(),
        );
    }
}

fn check_agent_models(tables: &Tables, diags: &mut Diagnostics) {
    for a in tables.agents.values() {
        if let AgentKind::Model {
            model, fallback, ..
        } = &a.kind
        {
            for m in model.iter().chain(fallback.iter()) {
                if !tables.models.contains_key(&m.name) {
                    diags.push(tables.unknown_model(m));
                }
            }
        }
    }
}
