//! [`run_command`]: a command (usually the `sluice-under-test` command line)
//! run to its end, bounded: its exit is awaited as the end of its output,
//! and it is killed, its output shown, if it overstays.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// What a finished command left.
#[derive(Debug)]
pub struct CommandOutput {
    /// Whether it exited successfully.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// The command line `binary ARGS... --server <broker> --ca <its cert>`,
/// logging warnings only, without a token from the environment. Tests
/// pass `env!("CARGO_BIN_EXE_sluice-under-test")` as `binary`.
pub fn cli_command(binary: &str, broker: &crate::TestBroker, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command
        .args(args)
        .arg("--server")
        .arg(broker.addr().to_string())
        .arg("--ca")
        .arg(broker.cert_path())
        .env_remove("SLUICE_TOKEN")
        .env("RUST_LOG", "warn");
    command
}

/// How long a killed command may take to close its output.
const KILL_LIMIT: Duration = Duration::from_secs(5);

/// Runs `command` with `stdin` as its standard input and waits, for at most
/// `limit`, until it exits; returns what it printed. A command still running
/// at `limit` is killed and the wait fails with what it printed so far.
///
/// The pipes are read on blocking threads: the broker under test may run on
/// the test's own (single-threaded) runtime and must keep serving meanwhile.
pub async fn run_command(
    mut command: Command,
    stdin: &str,
    limit: Duration,
) -> anyhow::Result<CommandOutput> {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to run {what}"))?;
    let mut input = child.stdin.take().context("no stdin pipe")?;
    let stdin = stdin.to_owned();
    // Dropping `input` at the end closes the child's standard input.
    let writer = tokio::task::spawn_blocking(move || input.write_all(stdin.as_bytes()));
    let mut stdout = read_all(child.stdout.take().context("no stdout pipe")?);
    let mut stderr = read_all(child.stderr.take().context("no stderr pipe")?);

    // Both pipes end when the child exits.
    let ended =
        tokio::time::timeout(limit, async { ((&mut stdout).await, (&mut stderr).await) }).await;
    let Ok((out, err)) = ended else {
        let _ = child.kill();
        let (out, err) = tokio::time::timeout(KILL_LIMIT, async {
            (
                stdout.await.unwrap_or_default(),
                stderr.await.unwrap_or_default(),
            )
        })
        .await
        .unwrap_or_default();
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        anyhow::bail!("{what} did not exit within {limit:?}; stdout:\n{out}\nstderr:\n{err}");
    };
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    // A child that exits without reading its input breaks the pipe: not an error.
    let _ = writer.await;
    Ok(CommandOutput {
        success: status.success(),
        stdout: out?,
        stderr: err?,
    })
}

/// Reads `pipe` to its end on a blocking thread, as text.
fn read_all(mut pipe: impl Read + Send + 'static) -> tokio::task::JoinHandle<String> {
    tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_input_goes_in_and_the_output_comes_back() {
        let out = run_command(Command::new("cat"), "hello\n", Duration::from_secs(10))
            .await
            .expect("cat runs");
        assert!(out.success, "{out:?}");
        assert_eq!(out.stdout, "hello\n");
    }

    #[tokio::test]
    async fn a_command_that_overstays_is_killed_with_its_output_shown() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo started; exec tail -f /dev/null"]);
        let err = run_command(command, "", Duration::from_millis(500))
            .await
            .expect_err("it does not exit");
        let text = format!("{err:#}");
        assert!(
            text.contains("did not exit within") && text.contains("started"),
            "{text}"
        );
    }
}
