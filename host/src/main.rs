//! The `sluice` binary: the broker (`sluice serve`) and its client commands.

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
