//! Which workflow of a checked program a plan or a run starts from (`E0701`).

use indexmap::IndexMap;

use super::types::Type;
use super::{Program, WorkflowGraph};
use crate::diag::suggest::did_you_mean;
use crate::diag::{Code, Diagnostic, Span};

/// Picks the workflow a run starts from: `name` if given, else `main`, else the only one.
///
/// # Errors
/// `E0701` when there is no such workflow, none at all, or several and none is `main`.
pub fn entry_workflow<'p>(
    program: &'p Program,
    name: Option<&str>,
    file_span: Span,
) -> Result<&'p WorkflowGraph, Box<Diagnostic>> {
    // Without a name, the entry file's own workflows: included libraries (the stdlib's
    // patterns) are called, not run.
    let own: IndexMap<&String, &WorkflowGraph> = program
        .workflows
        .iter()
        .filter(|(_, w)| w.span.file == file_span.file)
        .collect();
    let names: Vec<&str> = own.keys().map(|k| k.as_str()).collect();
    let pick = match name {
        Some(n) => program.workflows.get(n).ok_or_else(|| {
            let mut d = Diagnostic::new(
                Code::NoEntryWorkflow,
                file_span,
                format!("no workflow named `{n}`"),
            )
            .with_label("in this file");
            d = match did_you_mean(n, names.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!(
                    "workflows here: {}",
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                )),
            };
            Box::new(d)
        })?,
        None => match (own.get(&"main".to_string()), own.len()) {
            (Some(w), _) => w,
            (None, 1) => own[0],
            (None, 0) => {
                return Err(Box::new(
                    Diagnostic::new(
                        Code::NoEntryWorkflow,
                        file_span,
                        "this file has no workflow to run",
                    )
                    .with_label("no `workflow` here")
                    .with_help("add `workflow main() { ... }`, or plan a file that has one"),
                ));
            }
            (None, _) => {
                return Err(Box::new(
                    Diagnostic::new(
                        Code::NoEntryWorkflow,
                        file_span,
                        format!("several workflows and none is `main`: {}", names.join(", ")),
                    )
                    .with_label("which one?")
                    .with_help("choose one with `--workflow NAME`, or name one `main`"),
                ));
            }
        },
    };
    if let Some(p) = pick
        .params
        .iter()
        .find(|p| p.ty == Type::Agent || p.ty == Type::List(Box::new(Type::Agent)))
    {
        return Err(Box::new(
            Diagnostic::new(
                Code::NoEntryWorkflow,
                p.span,
                format!(
                    "workflow `{}` is a pattern: its parameter `{}` is {}",
                    pick.name, p.name, p.ty
                ),
            )
            .with_label("filled by a workflow that calls this one")
            .with_help(format!(
                "run a workflow that calls it: `result = {}({}: ...)`",
                pick.name, p.name
            )),
        ));
    }
    Ok(pick)
}
