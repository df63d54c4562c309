//! Engines: running a plan somewhere other than this process, durably and on many machines.
//! One engine so far, [`temporal`] (`orch worker --engine temporal://HOST:PORT`, `orch run
//! FILE --engine temporal://HOST:PORT`; docs/scale-out.md).
//!
//! Layering: an engine sits above [`crate::run`] (it drives [`crate::run::remote`]'s
//! interpreter and runs steps with its step host) and below [`crate::cli`].

pub mod temporal;
