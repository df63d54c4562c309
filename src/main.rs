//! The `orch` binary: see [`orch::cli`].

/// The allocator of the whole process: mimalloc rather than the system's (glibc) malloc,
/// without transparent huge pages (its `no_thp` feature). The front end makes many small
/// allocations (its ASTs, names and graphs) and the run-time many short-lived ones; measured
/// in `docs/development.md` (Benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    orch::cli::main()
}
