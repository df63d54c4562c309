//! The `orch` binary: see [`orch::cli`].

/// The allocator of the whole process: mimalloc rather than the system's (glibc) malloc. The
/// front end makes many small allocations (its ASTs, names and graphs) and the run-time many
/// short-lived ones; measured in `docs/development.md` (Benchmarks). mimalloc asks for
/// transparent huge pages; `orch::cli::main` turns them off for the run-time's commands.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    orch::cli::main()
}
