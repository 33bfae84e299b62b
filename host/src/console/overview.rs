//! The overview page: rates and their chart, connections, topics, the
//! groups that lag most and the plugins that fail. Each part shows only
//! where the principal may look: topics it may describe, groups with the
//! `groups` admin right, plugins with the `plugins` admin right, and the
//! broker-wide rates and connections with any admin right.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::rates::Point;
use super::{Console, Signed};
use crate::auth::{authorize, Action, AdminRight};

/// Groups listed as lagging most.
const WORST_GROUPS: usize = 5;

/// A group and how far it lags.
#[derive(Debug, serde::Serialize)]
pub struct Lagging {
    pub name: String,
    pub lag: u64,
    pub pending: u64,
    pub members: usize,
}

/// A plugin with errors.
#[derive(Debug, serde::Serialize)]
pub struct Failing {
    pub name: String,
    pub hash: String,
    pub errors: u64,
    pub calls: u64,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
}

/// What the overview shows.
#[derive(Debug, serde::Serialize)]
pub struct Overview {
    /// The last minutes, oldest first.
    /// `None` without an admin right (they cover every topic).
    pub points: Option<Vec<Point>>,
    pub published_per_sec: Option<f64>,
    pub delivered_per_sec: Option<f64>,
    pub connections: Option<i64>,
    pub topics: usize,
    pub messages: u64,
    pub bytes: u64,
    /// `None` without the `groups` admin right.
    pub groups: Option<usize>,
    pub lagging_groups: Option<Vec<Lagging>>,
    /// `None` without the `plugins` admin right.
    pub failing_plugins: Option<Vec<Failing>>,
}

/// `GET /api/overview`.
pub async fn show(State(console): State<Arc<Console>>, signed: Signed) -> Json<Overview> {
    let broker = &console.broker;
    let broker_wide = [AdminRight::Topics, AdminRight::Groups, AdminRight::Plugins]
        .into_iter()
        .any(|right| signed.may(right));
    let points = broker_wide.then(|| console.rates.points());
    let last = points
        .as_ref()
        .map(|p| p.last().copied().unwrap_or_default());
    let mut topics = broker.list_topics().await;
    topics.retain(|t| authorize(&signed.principal, Action::Describe, &t.name).is_ok());
    let (groups, lagging_groups) = if signed.may(AdminRight::Groups) {
        let groups = broker.list_groups().await;
        let mut lagging: Vec<Lagging> = groups
            .iter()
            .map(|g| Lagging {
                name: g.name.clone(),
                lag: g.topics.iter().map(|t| t.lag).sum(),
                pending: g.topics.iter().map(|t| t.pending).sum(),
                members: g.members.len(),
            })
            .collect();
        lagging.sort_by_key(|g| std::cmp::Reverse((g.lag, g.pending)));
        lagging.truncate(WORST_GROUPS);
        (Some(groups.len()), Some(lagging))
    } else {
        (None, None)
    };
    let failing_plugins = if signed.may(AdminRight::Plugins) {
        let mut failing: Vec<Failing> = broker
            .plugin_status()
            .await
            .into_iter()
            .filter(|p| p.errors > 0 || p.refused.is_some())
            .map(|p| Failing {
                name: p.name,
                hash: p.hash,
                errors: p.errors,
                calls: p.calls,
                last_error: p.last_error.or(p.refused.as_ref().map(|r| r.error.clone())),
                last_error_at_ms: p.last_error_at_ms.or(p.refused.as_ref().map(|r| r.at_ms)),
            })
            .collect();
        failing.sort_by_key(|p| std::cmp::Reverse(p.last_error_at_ms));
        Some(failing)
    } else {
        None
    };
    Json(Overview {
        published_per_sec: last.map(|p| p.published),
        delivered_per_sec: last.map(|p| p.delivered),
        connections: broker_wide.then(|| broker.metrics().open_connections()),
        topics: topics.len(),
        messages: topics.iter().map(|t| t.messages).sum(),
        bytes: topics.iter().map(|t| t.bytes).sum(),
        points,
        groups,
        lagging_groups,
        failing_plugins,
    })
}
