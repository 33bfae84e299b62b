//! The cluster's child processes: started with their output in a log,
//! watched for an exit of their own, stopped with SIGTERM (SIGKILL after
//! [`STOP_LIMIT`]); and the signals that ask xtask to stop them.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::process::{kill_process, Pid, Signal};

/// How long a SIGTERMed process may take before it is SIGKILLed: a node
/// answers what it already read and closes its connections; a server
/// flushes its stores.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// Lines of a log shown when its process failed.
const LOG_TAIL_LINES: usize = 15;

/// One child process and its log.
pub(super) struct Process {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Process {
    pub(super) fn spawn(
        name: String,
        cmd: &mut Command,
        log: PathBuf,
        own_group: bool,
    ) -> anyhow::Result<Process> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("failed to open {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        if own_group {
            // A Ctrl-C in the terminal then reaches xtask alone, which
            // stops the children in order.
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("failed to start {name}: {cmd:?}"))?;
        Ok(Process {
            name,
            child: Some(child),
            log,
        })
    }

    /// Its process id while it runs.
    pub(super) fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How it ended, once it has (reaped once).
    pub(super) fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    pub(super) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("--- the end of {}:\n{tail}", self.log.display())
    }
}

/// SIGTERMs every running process of `processes`, waits for them at most
/// [`STOP_LIMIT`], then SIGKILLs what is left.
pub(super) fn terminate(processes: &mut [Process]) {
    for p in processes.iter() {
        if let Some(child) = &p.child {
            let _ = kill_process(Pid::from_child(child), Signal::TERM);
        }
    }
    let deadline = Instant::now() + STOP_LIMIT;
    for p in processes.iter_mut() {
        let Some(child) = p.child.as_mut() else {
            continue;
        };
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    eprintln!(
                        "xtask: {} did not stop within {STOP_LIMIT:?}; killing it",
                        p.name
                    );
                    let _ = child.kill();
                    break child.wait().ok();
                }
            }
        };
        p.child = None;
        eprintln!(
            "xtask: {} stopped ({})",
            p.name,
            status.map_or("?".into(), |s| s.to_string())
        );
    }
}

/// Ctrl-C and SIGTERM, caught from before the first child starts: they ask
/// for an orderly stop instead of ending xtask with its children running.
pub struct Signals {
    runtime: tokio::runtime::Runtime,
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    received: bool,
}

impl Signals {
    /// Starts catching them.
    pub fn catch() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start a runtime for signals")?;
        let _entered = runtime.enter();
        let interrupt = signal(SignalKind::interrupt()).context("failed to catch SIGINT")?;
        let terminate = signal(SignalKind::terminate()).context("failed to catch SIGTERM")?;
        drop(_entered);
        Ok(Signals {
            runtime,
            interrupt,
            terminate,
            received: false,
        })
    }

    /// Sleeps `wait`, less if a signal comes; whether one came, now or before.
    pub(super) fn wait(&mut self, wait: Duration) -> bool {
        if !self.received {
            let (interrupt, terminate) = (&mut self.interrupt, &mut self.terminate);
            self.received = self.runtime.block_on(async {
                tokio::select! {
                    _ = interrupt.recv() => true,
                    _ = terminate.recv() => true,
                    () = tokio::time::sleep(wait) => false,
                }
            });
        }
        self.received
    }
}
