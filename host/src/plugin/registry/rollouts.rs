//! Rollouts as the registry runs them: starting a shadow or canary,
//! promoting it, rolling it back, and what of it survives a restart.
//!
//! Each is a swap of the set in force under the reload lock, like a hot
//! reload: a batch runs wholly on the set it started with, so promotion
//! loses and doubles nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use sluice_proto::{CanaryPlan, RolloutState, RolloutStatus};

use super::super::instance::short_hash;
use super::super::rollout::saved::{SavedPromotion, SavedRollout};
use super::super::rollout::Rollout;
use super::super::{LoadedPlugin, PluginError, PluginSet};
use super::{ms, PluginRegistry};
use crate::sync::lock;

fn refused(plugin: &str, reason: impl Into<String>) -> PluginError {
    PluginError::Rollout {
        plugin: plugin.to_owned(),
        reason: reason.into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a canary plan; the error says which value is wrong.
pub fn check_plan(plan: &CanaryPlan) -> Result<(), String> {
    if !(plan.percent > 0.0 && plan.percent <= 100.0) {
        return Err(format!(
            "the canary's share must be above 0 and at most 100 percent, not {}",
            plan.percent
        ));
    }
    for (what, rate) in [
        ("max_error_rate", plan.max_error_rate),
        ("max_reject_rate", plan.max_reject_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!(
                "{what} is a fraction from 0 to 1 (0.01 is one point), not {rate}"
            ));
        }
    }
    if plan.window_ms < 1000 {
        return Err("the canary's window must be at least 1s".into());
    }
    if plan.min_messages == 0 {
        return Err("min_messages must be at least 1".into());
    }
    Ok(())
}

impl PluginRegistry {
    /// The component plugin `name` runs given its file's bytes: the
    /// promoted version while the file is unchanged since its promotion,
    /// else the file (and a promotion the file outdated is forgotten).
    pub(super) fn promoted_or(&self, name: &str, file: Vec<u8>) -> Vec<u8> {
        let Some(saved) = &self.saved else {
            return file;
        };
        let Some((promotion, wasm)) = saved.promotion(name) else {
            return file;
        };
        let promoted_hash = short_hash(&Sha256::digest(&wasm).into());
        if promoted_hash != promotion.hash {
            // A crash between the component and its record: no promotion.
            tracing::warn!(plugin = %name, recorded = %promotion.hash, found = %promoted_hash, "the promoted component does not match its record; the configured file is used");
            saved.forget_promotion(name);
            return file;
        }
        if promotion.file_sha256 == hex(&Sha256::digest(&file)) {
            return wasm;
        }
        tracing::info!(plugin = %name, promoted = %promotion.hash, "the plugin's file changed since a version was promoted; the file's version is used");
        saved.forget_promotion(name);
        file
    }

    /// Starts a shadow (no `plan`) or canary of `wasm` as plugin `name`
    /// (blocking: compiles and initialises it).
    pub fn start_rollout(
        &self,
        name: &str,
        wasm: bytes::Bytes,
        plan: Option<CanaryPlan>,
    ) -> Result<RolloutStatus, PluginError> {
        let _reloading = lock(&self.baseline);
        let set = self.current.load_full();
        let running = set.plugins.get(name).ok_or_else(|| PluginError::Unknown {
            plugin: name.to_owned(),
        })?;
        if let Some(r) = set.rollouts.get(name).filter(|r| r.is_running()) {
            return Err(refused(
                name,
                format!(
                    "a {} of version {} is running: promote it or roll it back first",
                    r.mode(),
                    r.candidate.hash
                ),
            ));
        }
        if let Some(plan) = &plan {
            check_plan(plan).map_err(|reason| refused(name, reason))?;
        }
        let rollout = self.load_rollout(running, wasm, plan, SystemTime::now())?;
        if let Some(saved) = &self.saved {
            let record = SavedRollout {
                mode: rollout.mode().to_owned(),
                hash: rollout.candidate.hash.clone(),
                plan: rollout.status("").plan,
                started_at_ms: ms(rollout.started_at),
            };
            saved
                .save_rollout(name, &record, &rollout.wasm)
                .map_err(|e| PluginError::Store {
                    plugin: name.to_owned(),
                    reason: e.to_string(),
                })?;
        }
        let status = rollout.status(&running.hash);
        let mut rollouts = set.rollouts.clone();
        rollouts.insert(name.to_owned(), rollout);
        self.current.store(Arc::new(set.with_rollouts(rollouts)));
        tracing::info!(plugin = %name, mode = %status.mode, current = %status.current, candidate = %status.candidate, plan = ?status.plan, "plugin rollout started");
        Ok(status)
    }

    /// Loads a rollout's candidate (blocking).
    fn load_rollout(
        &self,
        running: &LoadedPlugin,
        wasm: bytes::Bytes,
        plan: Option<CanaryPlan>,
        started_at: SystemTime,
    ) -> Result<Arc<Rollout>, PluginError> {
        let name = running.name().to_owned();
        let digest: [u8; 32] = Sha256::digest(&wasm).into();
        if short_hash(&digest) == running.hash {
            return Err(refused(&name, "this is the version already running"));
        }
        let engine = self.engine()?;
        let spec = running.spec().clone();
        let saved = self.saved.clone();
        let forget = {
            let name = name.clone();
            Box::new(move |_: &str| {
                if let Some(saved) = &saved {
                    saved.forget_rollout(&name);
                }
            })
        };
        let mut rollout = match plan {
            None => {
                let candidate = engine.load_shadow(spec, &wasm, &digest)?;
                Rollout::shadow(Arc::new(candidate), wasm, forget)
            }
            Some(plan) => {
                let candidate = engine.load_digested(spec, &wasm, &digest)?;
                Rollout::canary(Arc::new(candidate), wasm, plan, forget)
            }
        };
        rollout.started_at = started_at;
        Ok(Arc::new(rollout))
    }

    /// The set without `name`'s rollout, and with `replaced` versions.
    fn without_rollout(
        set: &PluginSet,
        name: &str,
        replaced: &BTreeMap<String, Arc<LoadedPlugin>>,
    ) -> PluginSet {
        let mut rollouts = set.rollouts.clone();
        rollouts.remove(name);
        set.rebuilt(replaced, rollouts)
    }

    /// Ends plugin `name`'s rollout by hand (a shadow's `--stop` too): the
    /// current version keeps all traffic. Also clears a canary that was
    /// rolled back automatically.
    pub fn rollback(&self, name: &str) -> Result<RolloutStatus, PluginError> {
        let _reloading = lock(&self.baseline);
        let set = self.current.load_full();
        let rollout = set
            .rollouts
            .get(name)
            .ok_or_else(|| refused(name, "no rollout of it is running"))?;
        rollout.end(RolloutState::RolledBack, None);
        let current = set
            .plugins
            .get(name)
            .map(|p| p.hash.clone())
            .unwrap_or_default();
        let status = rollout.status(&current);
        self.current.store(Arc::new(Self::without_rollout(
            &set,
            name,
            &BTreeMap::new(),
        )));
        if let Some(saved) = &self.saved {
            saved.forget_rollout(name);
        }
        lock(&self.ended).insert(name.to_owned(), status.clone());
        tracing::info!(plugin = %name, mode = %status.mode, candidate = %status.candidate, "plugin rollout rolled back; the current version keeps all traffic");
        Ok(status)
    }

    /// Makes the candidate of `name`'s running rollout the current version
    /// (blocking), and remembers it across restarts while the plugin's
    /// file stays as it is.
    pub fn promote(&self, name: &str) -> Result<RolloutStatus, PluginError> {
        let _reloading = lock(&self.baseline);
        let set = self.current.load_full();
        let rollout = set
            .rollouts
            .get(name)
            .ok_or_else(|| refused(name, "no rollout of it is running"))?;
        let old = set
            .plugins
            .get(name)
            .map(|p| p.hash.clone())
            .unwrap_or_default();
        if !rollout.is_running() {
            let why = rollout.status(&old).reason.unwrap_or_default();
            return Err(refused(
                name,
                format!("its canary was rolled back automatically ({why}); start a new one"),
            ));
        }
        let promoted = if rollout.candidate.is_shadow() {
            Arc::new(rollout.candidate.unshadowed()?)
        } else {
            rollout.candidate.clone()
        };
        if let Some(saved) = &self.saved {
            let file = std::fs::read(&promoted.spec().path).map_err(|e| PluginError::Read {
                plugin: name.to_owned(),
                path: promoted.spec().path.clone(),
                reason: format!("cannot record the promotion against the configured file: {e}"),
            })?;
            let record = SavedPromotion {
                hash: promoted.hash.clone(),
                file_sha256: hex(&Sha256::digest(&file)),
                at_ms: ms(SystemTime::now()),
            };
            saved
                .save_promotion(name, &record, &rollout.wasm)
                .map_err(|e| PluginError::Store {
                    plugin: name.to_owned(),
                    reason: e.to_string(),
                })?;
            saved.forget_rollout(name);
        }
        rollout.end(RolloutState::Promoted, None);
        let status = rollout.status(&old);
        let replaced = BTreeMap::from([(name.to_owned(), promoted.clone())]);
        self.current
            .store(Arc::new(Self::without_rollout(&set, name, &replaced)));
        self.note_loaded(&promoted, None);
        lock(&self.ended).insert(name.to_owned(), status.clone());
        tracing::info!(plugin = %name, from = %old, to = %promoted.hash, mode = %status.mode, "plugin version promoted");
        Ok(status)
    }

    /// Plugin `name`'s rollout as it stands, or its last one.
    pub fn rollout_status(&self, name: &str) -> Result<RolloutStatus, PluginError> {
        let set = self.current.load_full();
        if !set.plugins.contains_key(name) {
            return Err(PluginError::Unknown {
                plugin: name.to_owned(),
            });
        }
        if let Some(rollout) = set.rollouts.get(name) {
            return Ok(rollout.status(&set.plugins[name].hash));
        }
        lock(&self.ended)
            .get(name)
            .cloned()
            .ok_or_else(|| refused(name, "it has had no rollout since the broker started"))
    }

    /// Each plugin's rollout as it stands, or its last one since start
    /// (for the console), by plugin name.
    pub fn rollouts(&self) -> Vec<RolloutStatus> {
        let set = self.current.load_full();
        set.plugins
            .keys()
            .filter_map(|name| self.rollout_status(name).ok())
            .collect()
    }

    /// Starts again the rollouts saved by the last run (at start).
    pub(super) fn restore_rollouts(&self) {
        let Some(saved) = &self.saved else {
            return;
        };
        let set = self.current.load_full();
        let mut rollouts = set.rollouts.clone();
        for (name, running) in &set.plugins {
            let Some((record, wasm)) = saved.rollout(name) else {
                continue;
            };
            let started = std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(record.started_at_ms.max(0) as u64);
            let plan = if record.mode == "canary" {
                record.plan.clone()
            } else {
                None
            };
            match self.load_rollout(running, wasm.into(), plan, started) {
                Ok(rollout) if rollout.candidate.hash == record.hash => {
                    tracing::info!(plugin = %name, mode = %rollout.mode(), candidate = %record.hash, "plugin rollout resumed after the restart");
                    rollouts.insert(name.clone(), rollout);
                }
                Ok(_) => {
                    tracing::warn!(plugin = %name, "a saved rollout's component does not match its record; forgotten");
                    saved.forget_rollout(name);
                }
                Err(e) => {
                    tracing::warn!(plugin = %name, error = %e, "a saved rollout cannot be resumed; forgotten");
                    saved.forget_rollout(name);
                }
            }
        }
        if rollouts.len() != set.rollouts.len() {
            self.current.store(Arc::new(set.with_rollouts(rollouts)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> CanaryPlan {
        CanaryPlan {
            percent: 10.0,
            by_key: false,
            max_error_rate: 0.01,
            max_reject_rate: 0.05,
            max_p99_us: None,
            window_ms: 60_000,
            min_messages: 20,
        }
    }

    #[test]
    fn canary_plans_are_checked() {
        assert_eq!(check_plan(&plan()), Ok(()));
        for (bad, says) in [
            (
                CanaryPlan {
                    percent: 0.0,
                    ..plan()
                },
                "share",
            ),
            (
                CanaryPlan {
                    percent: 101.0,
                    ..plan()
                },
                "share",
            ),
            (
                CanaryPlan {
                    max_error_rate: 2.0,
                    ..plan()
                },
                "max_error_rate",
            ),
            (
                CanaryPlan {
                    max_reject_rate: -1.0,
                    ..plan()
                },
                "max_reject_rate",
            ),
            (
                CanaryPlan {
                    window_ms: 10,
                    ..plan()
                },
                "window",
            ),
            (
                CanaryPlan {
                    min_messages: 0,
                    ..plan()
                },
                "min_messages",
            ),
        ] {
            let error = check_plan(&bad).unwrap_err();
            assert!(error.contains(says), "{error}");
        }
    }
}
