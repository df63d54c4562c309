//! `orch`: a compiler and interpreter for `.orch`, a declarative language for orchestrating
//! teams of LLM agents.
//!
//! The crate follows the pipeline, one module per stage:
//!
//! ```text
//! source ──syntax──▶ AST ──resolve──▶ module set ──check──▶ program ──plan──▶ Plan (DAG) ──run──▶ outputs, report
//! ```
//!
//! [`diag`] is the one diagnostic model every stage reports through; [`cli`] is a thin clap
//! front end over the library API.

pub mod diag;
pub mod syntax;
pub mod check;
pub mod resolve;
