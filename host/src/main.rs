//! The `sluice` binary: the broker (`sluice serve`) and its client commands.

/// mimalloc instead of glibc's malloc: a broker allocates and frees small
/// buffers per message from many threads, and glibc's arena locks and
/// consolidation were about a fifth of the broker's time under load
/// (BENCHMARKS.md, "Where the time went").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
