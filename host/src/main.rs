//! The `sluice` binary: the broker (`sluice serve`) and its client commands.

/// mimalloc instead of glibc's malloc: a broker allocates and frees small
/// buffers per message from many threads, and glibc's arena locks and
/// consolidation were about a fifth of the broker's time under load
/// (BENCHMARKS.md, "Where the time went"). Built without transparent huge
/// pages (the workspace's `no_thp` feature): with them, page faults zeroed
/// 2 MiB at a time and an idle connection kept ~20 KiB more resident.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
