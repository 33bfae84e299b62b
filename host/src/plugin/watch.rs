//! Watching plugin files and the config file, and turning bursts of file
//! events into one reload.
//!
//! `notify` watches the *directories* that hold the files (non-recursive):
//! a file replaced by rename, or deleted and created again, is a new inode
//! that a watch on the file itself would miss. Events for other files in
//! those directories are ignored. A burst of events (an editor's save, a
//! `cargo build`, a copy then rename) is collected until the files have
//! been quiet for `[plugins] debounce`, then acted on once: a config change
//! reloads the config (which also picks up changed plugin files), otherwise
//! the changed plugin files are reloaded. A reload that finds the same
//! content as the running version does nothing, so a duplicate event costs
//! a read and a hash.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::registry::PluginRegistry;

/// The longest a burst is collected before acting on it anyway.
const MAX_BURST: Duration = Duration::from_secs(1);

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

fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Starts watching (when the config asks for it). The task ends with `stop`.
pub fn spawn(
    registry: Arc<PluginRegistry>,
    debounce: Duration,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let _ = tx.send(event);
    })?;
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
            // Collect until quiet (or the burst is too long).
            loop {
                let quiet = self
                    .debounce
                    .min(MAX_BURST.saturating_sub(started.elapsed()));
                match tokio::time::timeout(quiet, rx.recv()).await {
                    Ok(Some(event)) => burst.add(event, config.as_deref(), &plugins),
                    Ok(None) => return,
                    Err(_) => break,
                }
                if started.elapsed() >= MAX_BURST {
                    break;
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
}

impl Burst {
    fn add(
        &mut self,
        event: notify::Result<notify::Event>,
        config: Option<&Path>,
        plugins: &HashSet<PathBuf>,
    ) {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "file watch error");
                return;
            }
        };
        if !is_change(&event.kind) {
            return;
        }
        for path in &event.paths {
            let path = normalize(path);
            if Some(path.as_path()) == config {
                self.config = true;
            } else if plugins.contains(&path) {
                self.plugins.insert(path);
            }
        }
    }

    fn is_empty(&self) -> bool {
        !self.config && self.plugins.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d.wasm")),
            PathBuf::from("/a/c/d.wasm")
        );
        assert_eq!(normalize(Path::new("a/../../x")), PathBuf::from("../x"));
    }
}
