//! [`Rollout`]: a candidate version of a plugin beside its current one,
//! in one of two modes.
//!
//! - **Shadow** ([`shadow`]): the candidate handles a copy of every batch
//!   the current version handles, on its own thread, after the current
//!   version answered. Its outcomes are compared with the current one's
//!   and counted; they are never acted on, and its state writes go to a
//!   throwaway overlay. A shadow that falls behind skips batches (counted)
//!   rather than slowing the publish path.
//! - **Canary** ([`canary`]): the candidate handles a share of live
//!   messages, by percentage or by key hash. Each version's failures,
//!   rejects and dead letters, and batch latency are measured over a
//!   sliding window; when the canary does worse than the current version
//!   by more than the plan allows, it is stopped at once (the current
//!   version takes all traffic from the next batch on), a warning is
//!   logged and `sluice_plugin_rollbacks_total` counts it.
//!
//! A rollout lives in the [`super::PluginSet`] in force, so a batch sees
//! one rollout state from start to end, as it sees one version of each
//! stage. Starting, promoting and rolling back swap the set (see the
//! registry). What must survive a restart is kept by [`saved`].

pub mod canary;
pub mod saved;
pub mod shadow;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sluice_proto::{CanaryPlan, RolloutState, RolloutStatus};

use super::instance::LoadedPlugin;
use crate::sync::lock;

/// Automatic rollbacks since start, for `/metrics`.
pub static ROLLBACKS: AtomicU64 = AtomicU64::new(0);

/// What the candidate does.
pub enum Kind {
    /// Runs beside the current version; compared, never acted on.
    Shadow(shadow::Shadow),
    /// Handles a share of live traffic.
    Canary(canary::Canary),
}

/// How a rollout ended.
#[derive(Debug, Clone)]
struct Ended {
    at: SystemTime,
    state: RolloutState,
    reason: Option<String>,
}

/// A candidate version of one plugin and how it is being tried.
pub struct Rollout {
    /// The plugin.
    pub name: String,
    /// The candidate version.
    pub candidate: Arc<LoadedPlugin>,
    /// Its component, kept for promotion.
    pub wasm: bytes::Bytes,
    /// Shadow or canary.
    pub kind: Kind,
    /// When it started.
    pub started_at: SystemTime,
    /// Set when it stops taking part (an automatic rollback).
    stopped: AtomicBool,
    ended: Mutex<Option<Ended>>,
    /// Called once when the canary is rolled back automatically, with the
    /// reason (the registry forgets the saved rollout).
    on_rollback: Box<dyn Fn(&str) + Send + Sync>,
}

impl std::fmt::Debug for Rollout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollout")
            .field("name", &self.name)
            .field("candidate", &self.candidate.hash)
            .field("mode", &self.mode())
            .finish()
    }
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Rollout {
    /// A shadow run of `candidate` (loaded with its state on an overlay).
    pub fn shadow(
        candidate: Arc<LoadedPlugin>,
        wasm: bytes::Bytes,
        on_rollback: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Rollout {
        let kind = Kind::Shadow(shadow::Shadow::start(candidate.clone()));
        Self::new(candidate, wasm, kind, on_rollback)
    }

    /// A canary run of `candidate` under `plan`.
    pub fn canary(
        candidate: Arc<LoadedPlugin>,
        wasm: bytes::Bytes,
        plan: CanaryPlan,
        on_rollback: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Rollout {
        let kind = Kind::Canary(canary::Canary::new(plan));
        Self::new(candidate, wasm, kind, on_rollback)
    }

    fn new(
        candidate: Arc<LoadedPlugin>,
        wasm: bytes::Bytes,
        kind: Kind,
        on_rollback: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Rollout {
        Rollout {
            name: candidate.name().to_owned(),
            candidate,
            wasm,
            kind,
            started_at: SystemTime::now(),
            stopped: AtomicBool::new(false),
            ended: Mutex::new(None),
            on_rollback,
        }
    }

    /// `shadow` or `canary`.
    pub fn mode(&self) -> &'static str {
        match self.kind {
            Kind::Shadow(_) => "shadow",
            Kind::Canary(_) => "canary",
        }
    }

    /// Whether the candidate still takes part.
    pub fn is_running(&self) -> bool {
        !self.stopped.load(Ordering::Relaxed)
    }

    /// The shadow run, if this is one and it is running.
    pub fn running_shadow(&self) -> Option<&shadow::Shadow> {
        match &self.kind {
            Kind::Shadow(s) if self.is_running() => Some(s),
            _ => None,
        }
    }

    /// The canary run, if this is one and it is running.
    pub fn running_canary(&self) -> Option<&canary::Canary> {
        match &self.kind {
            Kind::Canary(c) if self.is_running() => Some(c),
            _ => None,
        }
    }

    /// After a canary batch: stops the canary if it now does worse than
    /// the current version by more than its plan allows.
    pub fn judge(&self, current: &LoadedPlugin) {
        let Kind::Canary(canary) = &self.kind else {
            return;
        };
        let Some(reason) = canary.verdict() else {
            return;
        };
        if self.stopped.swap(true, Ordering::AcqRel) {
            return; // another batch got there first
        }
        ROLLBACKS.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(plugin = %self.name, canary = %self.candidate.hash, current = %current.hash, %reason, "canary rolled back automatically; the current version takes all traffic");
        self.end(RolloutState::RolledBack, Some(reason.clone()));
        (self.on_rollback)(&reason);
    }

    /// Marks the rollout ended (it stops taking part).
    pub fn end(&self, state: RolloutState, reason: Option<String>) {
        self.stopped.store(true, Ordering::Release);
        let mut ended = lock(&self.ended);
        if ended.is_none() {
            *ended = Some(Ended {
                at: SystemTime::now(),
                state,
                reason,
            });
        }
    }

    /// Where it stands, with its comparisons, against `current`.
    pub fn status(&self, current: &str) -> RolloutStatus {
        let ended = lock(&self.ended).clone();
        let (plan, diff, canary) = match &self.kind {
            Kind::Shadow(s) => (None, Some(s.diff()), None),
            Kind::Canary(c) => (Some(c.plan().clone()), None, Some(c.window_report())),
        };
        RolloutStatus {
            name: self.name.clone(),
            mode: self.mode().to_owned(),
            state: ended.as_ref().map_or(RolloutState::Running, |e| e.state),
            current: current.to_owned(),
            candidate: self.candidate.hash.clone(),
            started_at_ms: ms(self.started_at),
            ended_at_ms: ended.as_ref().map(|e| ms(e.at)),
            reason: ended.and_then(|e| e.reason),
            plan,
            diff,
            canary,
        }
    }
}
