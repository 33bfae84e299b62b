//! The `sluice` command line, built inside the tests package so that the
//! end-to-end tests can run it as a child process (crash tests, CLI tests)
//! through `CARGO_BIN_EXE_sluice-under-test`. Same entry point as the real
//! binary.

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
