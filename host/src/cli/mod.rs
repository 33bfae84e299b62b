//! The `sluice` command: `serve` runs the broker, the other subcommands are
//! clients of a running broker.
//!
//! # Layout
//!
//! Dependencies point one way: subcommands read the helpers and [`args`];
//! [`args`] reads only the flag types of [`connect`], [`reply`] and
//! [`rollout`].
//!
//! - [`args`]: the command-line definition (clap), the leaf.
//! - [`connect`]: client flags to a connected client (`--server`, `--ca`, `--data`, `--insecure`).
//! - [`display`]: publish outcomes as text, progress bars.
//! - [`flags`]: parsers of flag values (`--header NAME=VALUE`).
//! - [`payload`]: what `sluice pub` sends (templates, `--size`, files).
//! - [`serve`], [`publish`], [`subscribe`], [`topics`], [`groups`],
//!   [`plugin`] (with [`scaffold`], [`plugin_logs`] and [`rollout`]), [`bench`], [`token`], [`trace`],
//!   [`reply`] (`req` and `reply`): one per subcommand.

pub mod args;
pub mod bench;
pub mod connect;
pub mod display;
pub mod flags;
pub mod groups;
pub mod payload;
pub mod plugin;
pub mod plugin_logs;
pub mod publish;
pub mod reply;
pub mod rollout;
pub mod scaffold;
pub mod serve;
pub mod subscribe;
pub mod token;
pub mod topics;
pub mod trace;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// Entry point of the `sluice` binary: parses arguments, sets up tracing,
/// runs the subcommand and turns an error into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        Command::Plugin(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Pub(args) => publish::run(args).await,
            Command::Sub(args) => subscribe::run(args).await,
            Command::Topics(args) => topics::run(args).await,
            Command::Groups(args) => groups::run(args).await,
            Command::Plugin(args) => plugin::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Token(args) => token::run(args),
            Command::Trace(args) => trace::run(args).await,
            Command::Req(args) => reply::request(args).await,
            Command::Reply(args) => reply::reply(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
