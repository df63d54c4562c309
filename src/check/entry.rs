//! Which workflow of a checked program a plan or a run starts from (`E0701`).

use indexmap::IndexMap;

use super::error::NoEntryWorkflow;
use super::types::Type;
use super::{Program, WorkflowGraph};
use crate::diag::suggest::did_you_mean;
use crate::diag::{Diagnostic, Span};

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
            let error: Diagnostic = NoEntryWorkflow::NoSuchWorkflow {
                at: file_span,
                name: n.to_string(),
                suggestion: did_you_mean(n, names.iter().copied()).map(String::from),
                own: names.iter().map(|n| n.to_string()).collect(),
            }
            .into();
            Box::new(error)
        })?,
        None => match (own.get(&"main".to_string()), own.len()) {
            (Some(w), _) => w,
            (None, 1) => own[0],
            (None, 0) => {
                return Err(Box::new(NoEntryWorkflow::None { at: file_span }.into()));
            }
            (None, _) => {
                return Err(Box::new(
                    NoEntryWorkflow::Several {
                        at: file_span,
                        own: names.iter().map(|n| n.to_string()).collect(),
                    }
                    .into(),
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
            NoEntryWorkflow::Pattern {
                at: p.span,
                workflow: pick.name.clone(),
                param: p.name.clone(),
                ty: p.ty.clone(),
            }
            .into(),
        ));
    }
    Ok(pick)
}
