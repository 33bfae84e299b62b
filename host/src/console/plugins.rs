//! The plugins page: each pipeline as its stages, and each plugin's
//! version, counters, latency, outcomes and the versions it loaded or
//! refused since start, and each plugin's rollout (shadow differences,
//! canary windows). Needs the `plugins` admin right, as `sluice plugin
//! list` does.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use sluice_proto::{PluginStatus, RolloutStatus};

use super::error::ConsoleError;
use super::{Console, Signed};
use crate::auth::{Action, AdminRight};
use crate::plugin::registry::VersionEvent;
use crate::plugin::stats::Outcomes;

/// A pipeline stage.
#[derive(Debug, serde::Serialize)]
pub struct Stage {
    pub plugin: String,
    pub hash: String,
}

/// A pipeline as configured.
#[derive(Debug, serde::Serialize)]
pub struct PipelineRow {
    pub pattern: String,
    pub stages: Vec<Stage>,
    /// What a failing stage does to its batch.
    pub on_error: crate::config::OnError,
}

/// A plugin with its outcomes and version history.
#[derive(Debug, serde::Serialize)]
pub struct PluginRow {
    #[serde(flatten)]
    pub status: PluginStatus,
    /// Outcomes given as a pipeline stage, by this version (`None` for
    /// another node's plugin in cluster mode).
    pub outcomes: Option<Outcomes>,
    /// Versions loaded or refused since start, oldest first.
    pub history: Vec<VersionEvent>,
}

/// What the page shows.
#[derive(Debug, serde::Serialize)]
pub struct Plugins {
    pub pipelines: Vec<PipelineRow>,
    pub plugins: Vec<PluginRow>,
    /// The last refused change of the config file: (when, why).
    pub config_refused: Option<(i64, String)>,
    /// Each plugin's rollout running, or its last since start: shadow
    /// differences and samples, canary windows (single-node mode).
    pub rollouts: Vec<RolloutStatus>,
}

/// `GET /api/plugins`.
pub async fn show(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Json<Plugins>, ConsoleError> {
    signed.check(
        &console,
        Action::Admin(AdminRight::Plugins),
        "see plugin status",
    )?;
    let registry = console.broker.plugins();
    let set = registry.current();
    let pipelines = set
        .pipelines
        .iter()
        .map(|p| PipelineRow {
            pattern: p.pattern.as_str().to_owned(),
            stages: p
                .stages
                .iter()
                .map(|s| Stage {
                    plugin: s.name().to_owned(),
                    hash: s.hash.clone(),
                })
                .collect(),
            on_error: p.on_error,
        })
        .collect();
    // Every node's status (as `sluice plugin list` shows it); outcomes and
    // version history are kept by each node for itself.
    let plugins = console
        .broker
        .plugin_status()
        .await
        .into_iter()
        .map(|status| {
            let local = status.node.is_none();
            PluginRow {
                outcomes: set
                    .plugins
                    .get(&status.name)
                    .filter(|_| local)
                    .map(|p| p.stats.snapshot().outcomes),
                history: if local {
                    registry.version_events(&status.name)
                } else {
                    Vec::new()
                },
                status,
            }
        })
        .collect();
    Ok(Json(Plugins {
        pipelines,
        plugins,
        config_refused: registry.config_refusal(),
        rollouts: registry.rollouts(),
    }))
}
