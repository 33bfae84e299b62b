//! Runs a comparison's [`Stage`]s: starts each broker, runs each of its
//! jobs `--runs` times with the timing flags, keeps every run's JSON in
//! [`Results`], and says on stderr what runs (`[k/n] figure, run r of
//! runs`). A run that fails or comes back with a short window is a
//! warning, not the end of the comparison: its figure has one run fewer.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde_json::Value;

use super::plan::{Broker, Job, Stage};
use super::servers::{NatsMode, NatsServer, NatsTls, Sluice};
use super::table::Results;
use super::{bench_node, json_lines, nats};

/// The programs a comparison runs.
pub struct Programs {
    pub nats_server: PathBuf,
    pub sluice: PathBuf,
    pub harness: PathBuf,
    /// Where the pipeline rows' plugins are (`plugins/dist`).
    pub plugins: PathBuf,
}

/// How long each timed run lasts, as both tools' flags take it.
pub struct Timing {
    pub warmup: String,
    pub duration: String,
}

/// Runs the stages and collects what they measured.
pub struct Runner<'a> {
    programs: &'a Programs,
    timing: &'a Timing,
    runs: usize,
    /// Runs started so far, and in all.
    done: usize,
    total: usize,
    pub results: Results,
    /// Failed runs and short windows, for the note under the table.
    pub warnings: Vec<String>,
}

impl<'a> Runner<'a> {
    pub fn new(programs: &'a Programs, timing: &'a Timing, runs: usize, stages: &[Stage]) -> Self {
        let jobs: usize = stages.iter().map(|s| s.jobs.len()).sum();
        Runner {
            programs,
            timing,
            runs,
            done: 0,
            total: jobs * runs,
            results: Results::default(),
            warnings: Vec::new(),
        }
    }

    /// Runs `stage`, its broker's files under `dir`; `tls` is what a TLS
    /// nats-server presents.
    pub fn stage(&mut self, stage: &Stage, dir: &Path, tls: &NatsTls) -> anyhow::Result<()> {
        let p = self.programs;
        match stage.broker {
            Broker::Nats(mode) => {
                eprintln!("xtask: starting nats-server ({})", mode.name());
                let server = NatsServer::start(&p.nats_server, dir, mode, Some(tls))?;
                self.results.nats_idle_kib.extend(server.idle_rss_kib());
                let ca = tls.ca.display().to_string();
                for job in &stage.jobs {
                    let mut job = job.clone();
                    if mode == NatsMode::Tls {
                        job.args.extend(["--tls-ca".into(), ca.clone()]);
                    }
                    self.repeat(&job, &format!("nats-harness {}", server.url), |args| {
                        Ok(vec![nats(&p.harness, &server.url, args)?])
                    });
                }
            }
            Broker::Sluice(fsync) => {
                eprintln!("xtask: starting sluice serve (fsync={})", fsync.name());
                let sluice = Sluice::start(&p.sluice, dir, fsync.name())?;
                self.results.sluice_idle_kib.extend(sluice.idle_rss_kib());
                for job in &stage.jobs {
                    if job.fresh_broker {
                        self.fresh_broker_runs(job, dir, fsync.name());
                        continue;
                    }
                    let (server, ca) = (&sluice.server, &sluice.ca);
                    self.repeat(job, "sluice bench", |args| {
                        Ok(vec![bench_node(&p.sluice, server, ca, args)?])
                    });
                }
            }
            Broker::Embedded => {
                for job in &stage.jobs {
                    let mut job = job.clone();
                    job.args
                        .extend(["--plugins-dir".into(), p.plugins.display().to_string()]);
                    self.repeat(&job, "sluice bench", |args| {
                        json_lines(
                            Command::new(&p.sluice)
                                .arg("bench")
                                .args(args)
                                .arg("--json"),
                        )
                    });
                }
            }
        }
        Ok(())
    }

    /// Runs `job` (which reads the broker's memory, `--admin`) on a
    /// broker started for each run, its files under `dir`.
    fn fresh_broker_runs(&mut self, job: &Job, dir: &Path, fsync: &str) {
        let sluice = &self.programs.sluice;
        let started = Cell::new(0);
        self.repeat(job, "sluice bench", |args| {
            started.set(started.get() + 1);
            let dir = dir.join(format!("fresh-{}", started.get()));
            let broker = Sluice::start(sluice, &dir, fsync)?;
            let mut args = args.to_vec();
            args.extend(["--admin", &broker.admin]);
            Ok(vec![bench_node(sluice, &broker.server, &broker.ca, &args)?])
        });
    }

    /// Runs `job` `--runs` times with `run`, which gets its arguments and
    /// returns one JSON object per figure of the job.
    fn repeat(
        &mut self,
        job: &Job,
        tool: &str,
        run: impl Fn(&[&str]) -> anyhow::Result<Vec<Value>>,
    ) {
        let mut args: Vec<&str> = job.args.iter().map(String::as_str).collect();
        if job.timed {
            let t = self.timing;
            args.extend(["--warmup", &t.warmup, "--duration", &t.duration]);
        }
        let name = &job.name;
        for key in &job.keys {
            let command = format!("{tool} {}", args.join(" "));
            self.results.commands.insert(*key, command);
        }
        for k in 1..=self.runs {
            self.done += 1;
            eprintln!(
                "xtask: [{}/{}] {name}, run {k} of {}",
                self.done, self.total, self.runs
            );
            let values = run(&args).and_then(|values| match values.len() == job.keys.len() {
                true => Ok(values),
                false => bail!("{} results, not {}", values.len(), job.keys.len()),
            });
            let values = match values.with_context(|| format!("{name}, run {k}")) {
                Ok(values) => values,
                Err(e) => {
                    self.warn(format!("{e:#}; the figure has one run fewer"));
                    continue;
                }
            };
            for (key, value) in job.keys.iter().zip(values) {
                if value["short_window"] == true {
                    self.warn(format!(
                        "{key}, run {k}: the window was cut short to {:.2} s (the work ran out: a consumed topic ran dry)",
                        value["window_s"].as_f64().unwrap_or(f64::NAN)
                    ));
                }
                self.results.runs.entry(*key).or_default().push(value);
            }
        }
    }

    fn warn(&mut self, warning: String) {
        eprintln!("xtask: warning: {warning}");
        self.warnings.push(warning);
    }
}
