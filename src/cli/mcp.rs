//! The commands' MCP side: `orch check --mcp` and `orch plan --mcp` start the MCP servers a
//! plan uses (in the current directory, as a run with the default `--workspace` would), ask
//! them, and stop them.

use std::path::PathBuf;

use indexmap::IndexMap;

use crate::plan::{McpToolNote, Plan};
use crate::run::tools::mcp::{McpError, McpPool, plan_grants};

/// Runs `job` against a pool of `plan`'s MCP servers, then stops every server it started.
///
/// # Errors
/// The async runtime cannot start, or `job`'s error, as a message for stderr.
fn with_pool<T>(
    plan: &Plan,
    job: impl AsyncFnOnce(&McpPool) -> Result<T, McpError>,
) -> Result<T, String> {
    let workspace = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let pool = McpPool::new(&plan.mcp, &workspace);
        let done = job(&pool).await;
        pool.shutdown().await;
        done.map_err(|e| e.to_string())
    })
}

/// `orch check --mcp`: every granted tool of `plan` is one its server lists.
///
/// # Errors
/// The first grant that fails (an unknown tool has a "did you mean"), or a server that does
/// not start.
pub fn check(plan: &Plan) -> Result<(), String> {
    let grants = plan_grants(plan);
    if grants.is_empty() {
        return Ok(());
    }
    with_pool(plan, async |pool| pool.check_grants(&grants).await)
}

/// `orch plan --mcp`: fills [`Plan::mcp_tools`] with what each server says of the tools granted
/// from it (every tool it lists, for `NAME.*`), after checking the grants as [`check`] does.
///
/// # Errors
/// As [`check`].
pub fn annotate(plan: &mut Plan) -> Result<(), String> {
    let grants = plan_grants(plan);
    if grants.is_empty() {
        return Ok(());
    }
    let notes = with_pool(plan, async |pool| {
        pool.check_grants(&grants).await?;
        let mut notes: IndexMap<String, Vec<McpToolNote>> = IndexMap::new();
        for (server, _) in &grants {
            if notes.contains_key(server) {
                continue;
            }
            let every = grants.iter().any(|(s, t)| s == server && t.is_none());
            let granted = |name: &str| {
                every
                    || grants
                        .iter()
                        .any(|(s, t)| s == server && t.as_deref() == Some(name))
            };
            let tools = pool.describe(server).await?;
            let listed = tools
                .into_iter()
                .filter(|t| granted(&t.name))
                .map(|t| McpToolNote {
                    name: t.name,
                    read_only: t.read_only,
                    destructive: t.destructive,
                })
                .collect();
            notes.insert(server.clone(), listed);
        }
        Ok(notes)
    })?;
    plan.mcp_tools = notes;
    Ok(())
}
