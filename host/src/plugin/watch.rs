//! Watching plugin files and the config file, and turning bursts of file
//! events into one reload.
//!
//! `notify` watches the *directories* that hold the files (non-recursive):
//! a file replaced by rename, or deleted and created again, is a new inode
//! that a watch on the file itself would miss. Events for other files in
//! those directories are ignored. A burst of events (an editor's save, a
//! `cargo build`, a copy then rename) is collected until the files have
//! been quiet for `[plugins] debounce`, then acted on once (when every
//! changed file was last *completed*, closed after writing or renamed into
//! place, a short [`SETTLE`] window is enough): a config change
//! reloads the config (which also picks up changed plugin files), otherwise
//! the changed plugin files are reloaded. A reload that finds the same
//! content as the running version does nothing, so a duplicate event costs
//! a read and a hash.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::registry::PluginRegistry;

/// The longest a burst is collected before acting on it anyway.
const MAX_BURST: Duration = Duration::from_secs(1);

/// Quiet time after a burst whose files were all completed (closed after
/// writing, or renamed into place): only to coalesce the last events.
const SETTLE: Duration = Duration::from_millis(2);

/// Removes `.` and resolves `..` without touching the file system, so that
/// one file has one spelling in specs, watches and events.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// What an event says about the file at `paths[index]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Nothing (a read, an open).
    None,
    /// Being written, removed or moved away: more is likely to follow.
    Partial,
    /// Complete: closed after writing, or renamed into place.
    Complete,
}

fn change(kind: &EventKind, index: usize, paths: usize) -> Change {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Change::Complete,
        EventKind::Access(_) => Change::None,
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Change::Complete,
        // `Both` lists the old path, then the new one.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both))
            if index + 1 == paths && paths > 1 =>
        {
            Change::Complete
        }
        _ => Change::Partial,
    }
}

/// Why file watching could not start (the broker runs on without it).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The operating system's file watcher could not be created (on Linux,
    /// usually the inotify instance limit, `fs.inotify.max_user_instances`).
    /// The cause is in the message because this error is logged, not chained.
    #[error("cannot create a file watcher: {0}")]
    Watcher(notify::Error),
}

/// Starts watching (when the config asks for it). The task ends with `stop`.
pub fn spawn(
    registry: Arc<PluginRegistry>,
    debounce: Duration,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, WatchError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let _ = tx.send(event);
    })
    .map_err(WatchError::Watcher)?;
    let mut task = WatchTask {
        registry,
        watcher,
        watched: HashSet::new(),
        debounce,
    };
    task.update_watches();
    Ok(tokio::spawn(task.run(rx, stop)))
}

struct WatchTask {
    registry: Arc<PluginRegistry>,
    watcher: notify::RecommendedWatcher,
    watched: HashSet<PathBuf>,
    debounce: Duration,
}

impl WatchTask {
    /// The files that matter now: the config file and every plugin's.
    fn files(&self) -> (Option<PathBuf>, HashSet<PathBuf>) {
        let config = self.registry.config_path().map(normalize);
        let plugins = self
            .registry
            .plugin_paths()
            .iter()
            .map(|p| normalize(p))
            .collect();
        (config, plugins)
    }

    /// Watches the directories of the files that matter, and no others.
    fn update_watches(&mut self) {
        let (config, plugins) = self.files();
        let wanted: HashSet<PathBuf> = config
            .iter()
            .chain(plugins.iter())
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for dir in self.watched.difference(&wanted) {
            let _ = self.watcher.unwatch(dir);
        }
        let mut watched = HashSet::new();
        for dir in wanted {
            if self.watched.contains(&dir) {
                watched.insert(dir);
                continue;
            }
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(dir = %dir.display(), "watching for plugin and config changes");
                    watched.insert(dir);
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch this directory; changes to files in it are not picked up until a restart")
                }
            }
        }
        self.watched = watched;
    }

    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
        stop: CancellationToken,
    ) {
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                event = rx.recv() => match event {
                    Some(event) => event,
                    None => return,
                },
            };
            let (config, plugins) = self.files();
            let mut burst = Burst::default();
            burst.add(event, config.as_deref(), &plugins);
            if burst.is_empty() {
                continue;
            }
            let started = Instant::now();
            // Collect until the files that matter are quiet (events for
            // other files in the same directories do not extend the wait),
            // or the burst is too long.
            let limit = tokio::time::Instant::now() + MAX_BURST;
            let mut quiet_at = tokio::time::Instant::now() + burst.wait(self.debounce);
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(quiet_at.min(limit)) => break,
                    event = rx.recv() => match event {
                        Some(event) => {
                            if burst.add(event, config.as_deref(), &plugins) {
                                quiet_at = tokio::time::Instant::now() + burst.wait(self.debounce);
                            }
                        }
                        None => return,
                    },
                }
            }
            let registry = self.registry.clone();
            let reloaded = tokio::task::spawn_blocking(move || {
                if burst.config {
                    let _ = registry.reload_config(started);
                } else {
                    registry.reload_files(&burst.plugins, started);
                }
            })
            .await;
            if let Err(e) = reloaded {
                tracing::error!(error = %e, "plugin reload task failed");
            }
            self.update_watches();
        }
    }
}

#[derive(Default)]
struct Burst {
    config: bool,
    plugins: HashSet<PathBuf>,
    /// Files whose last event was not a completion.
    unfinished: HashSet<PathBuf>,
}

impl Burst {
    /// Adds an event; true if it concerns a file that matters.
    fn add(
        &mut self,
        event: notify::Result<notify::Event>,
        config: Option<&Path>,
        plugins: &HashSet<PathBuf>,
    ) -> bool {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "file watch error");
                return false;
            }
        };
        let mut relevant = false;
        for (index, path) in event.paths.iter().enumerate() {
            let kind = change(&event.kind, index, event.paths.len());
            if kind == Change::None {
                continue;
            }
            let path = normalize(path);
            if Some(path.as_path()) == config {
                self.config = true;
            } else if plugins.contains(&path) {
                self.plugins.insert(path.clone());
            } else {
                continue;
            }
            relevant = true;
            if kind == Change::Complete {
                self.unfinished.remove(&path);
            } else {
                self.unfinished.insert(path);
            }
        }
        relevant
    }

    /// How long to wait for more: a moment when every file is complete,
    /// the debounce while one is still being written.
    fn wait(&self, debounce: Duration) -> Duration {
        if self.unfinished.is_empty() {
            SETTLE.min(debounce)
        } else {
            debounce
        }
    }

    fn is_empty(&self) -> bool {
        !self.config && self.plugins.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange};

    use super::*;

    fn event(kind: EventKind, paths: &[&str]) -> notify::Result<notify::Event> {
        let mut e = notify::Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        Ok(e)
    }

    #[test]
    fn bursts_know_which_files_are_complete() {
        let plugins: HashSet<PathBuf> = [PathBuf::from("/p/a.wasm")].into();
        let config = Some(Path::new("/c/sluice.toml"));
        let mut burst = Burst::default();
        // Unrelated files and reads are ignored.
        burst.add(
            event(EventKind::Create(CreateKind::File), &["/p/other"]),
            config,
            &plugins,
        );
        burst.add(
            event(EventKind::Access(AccessKind::Read), &["/p/a.wasm"]),
            config,
            &plugins,
        );
        assert!(burst.is_empty());
        // A write in place: unfinished until closed.
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        burst.add(event(write, &["/p/a.wasm"]), config, &plugins);
        assert!(!burst.unfinished.is_empty());
        let close = EventKind::Access(AccessKind::Close(AccessMode::Write));
        burst.add(event(close, &["/p/a.wasm"]), config, &plugins);
        assert!(burst.unfinished.is_empty());
        // A rename into place completes the new path.
        let mut burst = Burst::default();
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        burst.add(
            event(both, &["/c/.tmp", "/c/sluice.toml"]),
            config,
            &plugins,
        );
        assert!(burst.config && burst.unfinished.is_empty());
        // Removal waits for the file to come back.
        let mut burst = Burst::default();
        let remove = EventKind::Remove(notify::event::RemoveKind::File);
        burst.add(event(remove, &["/p/./a.wasm"]), config, &plugins);
        assert_eq!(burst.plugins, plugins);
        assert!(!burst.unfinished.is_empty());
    }

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d.wasm")),
            PathBuf::from("/a/c/d.wasm")
        );
        assert_eq!(normalize(Path::new("a/../../x")), PathBuf::from("../x"));
    }
}
