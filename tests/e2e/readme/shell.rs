//! Running one README command as a child process, in the foreground with
//! a time limit or in the background until it prints what a plan waits for.

use super::*;

/// The command line as a user in a second terminal runs it.
pub(super) struct Shell {
    pub(super) server: String,
    pub(super) data: PathBuf,
    /// The working directory (the test's files go here).
    pub(super) cwd: PathBuf,
}

impl Shell {
    pub(super) fn new(broker: &TestBroker) -> anyhow::Result<Shell> {
        let cwd = broker.scratch_dir().join("shell");
        std::fs::create_dir_all(&cwd)?;
        Ok(Shell {
            server: broker.addr().to_string(),
            data: broker.data_dir().to_path_buf(),
            cwd,
        })
    }

    /// Starts `sluice ARGS`.
    pub(super) fn spawn(&self, args: &[String]) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SLUICE_") {
                command.env_remove(name);
            }
        }
        command
            .env_remove("RUST_LOG")
            .env("SLUICE_SERVER", &self.server)
            .env("SLUICE_DATA", &self.data)
            .current_dir(&self.cwd);
        for arg in args {
            match arg.strip_prefix("plugins/dist/") {
                Some(file) => command.arg(plugin_dist(file)),
                None => command.arg(arg),
            };
        }
        Process::spawn(command, format!("sluice {}", args.join(" ")))
    }
}

/// What a command printed so far, line by line.
#[derive(Debug, Clone, Default)]
pub(super) struct Printed {
    /// The first [`KEEP_LINES`] lines of standard output.
    pub(super) stdout: Vec<String>,
    /// The first [`KEEP_LINES`] lines of standard error.
    pub(super) stderr: Vec<String>,
    /// Lines printed in all, both streams, kept or not.
    pub(super) lines: usize,
    /// Output streams still open (both close when it exits).
    pub(super) open: u8,
}

impl std::fmt::Display for Printed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shorten = |l: &String| l.chars().take(200).collect::<String>();
        writeln!(f, "stdout ({} lines in all):", self.lines)?;
        for line in self.stdout.iter().take(20) {
            writeln!(f, "  {}", shorten(line))?;
        }
        writeln!(f, "stderr:")?;
        for line in self.stderr.iter().take(20) {
            writeln!(f, "  {}", shorten(line))?;
        }
        Ok(())
    }
}

/// A running `sluice`, its output read on two threads; killed when dropped.
pub(super) struct Process {
    pub(super) what: String,
    pub(super) child: Option<Child>,
    printed: watch::Receiver<Printed>,
}

impl Process {
    pub(super) fn spawn(mut command: Command, what: String) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to run {what}: {e}"));
        let (sender, printed) = watch::channel(Printed {
            open: 2,
            ..Printed::default()
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        read_lines(stdout, sender.clone(), |p| &mut p.stdout);
        read_lines(stderr, sender, |p| &mut p.stderr);
        Process {
            what,
            child: Some(child),
            printed,
        }
    }

    /// Waits, at most `limit`, until what it printed satisfies `done`;
    /// returns what it printed so far either way.
    pub(super) async fn wait_for(
        &mut self,
        limit: Duration,
        done: impl FnMut(&Printed) -> bool,
    ) -> Result<Printed, Printed> {
        let met = match tokio::time::timeout(limit, self.printed.wait_for(done)).await {
            Ok(Ok(printed)) => Some(printed.clone()),
            _ => None,
        };
        met.ok_or_else(|| self.printed.borrow().clone())
    }

    /// Waits, at most `limit`, for it to exit (its output ends first).
    pub(super) async fn finish(
        mut self,
        limit: Duration,
        example: &Example,
    ) -> anyhow::Result<Finished> {
        let ended = self.wait_for(limit, |p| p.open == 0).await;
        let printed = match ended {
            Ok(printed) => printed,
            Err(_) => {
                let printed = self.stop().await;
                panic!(
                    "{example}: `{}` did not exit within {limit:?}\n{printed}",
                    self.what
                );
            }
        };
        let mut child = self.child.take().expect("not yet waited for");
        let status = tokio::task::spawn_blocking(move || child.wait()).await??;
        Ok(Finished {
            code: status.code(),
            stdout: printed.stdout,
            stderr: printed.stderr,
        })
    }

    /// Kills it; returns what it printed.
    pub(super) async fn stop(&mut self) -> Printed {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
        self.printed.borrow().clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads `pipe` line by line into the stream `keep` picks, on a thread.
pub(super) fn read_lines(
    pipe: impl Read + Send + 'static,
    printed: watch::Sender<Printed>,
    keep: fn(&mut Printed) -> &mut Vec<String>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']).to_owned();
            printed.send_modify(|p| {
                p.lines += 1;
                let lines = keep(p);
                if lines.len() < KEEP_LINES {
                    lines.push(text);
                }
            });
            line.clear();
        }
        printed.send_modify(|p| p.open -= 1);
    });
}

/// A command that ran to its end.
pub(super) struct Finished {
    /// Its exit code (none if killed by a signal).
    pub(super) code: Option<i32>,
    pub(super) stdout: Vec<String>,
    pub(super) stderr: Vec<String>,
}

impl Finished {
    pub(super) fn stdout_is(&self, lines: &[&str]) {
        assert_eq!(self.stdout, lines, "{self}");
    }

    pub(super) fn stdout_has(&self, line: &str) {
        assert!(
            self.stdout.iter().any(|l| l == line),
            "no line {line:?}: {self}"
        );
    }

    /// The words of the stdout line whose first word is `first`.
    pub(super) fn row(&self, first: &str) -> Vec<&str> {
        let mut rows = self
            .stdout
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>());
        let row = rows.find(|words| words.first() == Some(&first));
        row.unwrap_or_else(|| panic!("no line starting {first:?}: {self}"))
    }

    pub(super) fn stderr_has(&self, start: &str) {
        assert!(
            self.stderr.iter().any(|l| l.starts_with(start)),
            "no line starting {start:?} on stderr: {self}"
        );
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "exit code {:?}", self.code)?;
        writeln!(f, "stdout:\n{}", self.stdout.join("\n"))?;
        write!(f, "stderr:\n{}", self.stderr.join("\n"))
    }
}
