//! The groups pages: every group with its lag, one group with its members
//! and positions, and a reset to a position. All of it needs the `groups`
//! admin right, as `sluice groups` does over QUIC.
//!
//! A reset forgets pending deliveries, so it is confirmed: the request
//! names the group again in `confirm` (the page asks the operator to type
//! it).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use sluice_proto::{GroupInfo, StartPosition};

use super::error::{bad_request, ConsoleError};
use super::{Console, Signed};
use crate::auth::{Action, AdminRight};

fn check(console: &Console, signed: &Signed, what: &str) -> Result<(), ConsoleError> {
    signed.check(console, Action::Admin(AdminRight::Groups), what)
}

/// A group in the list.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub name: String,
    pub pattern: String,
    pub members: usize,
    pub lag: u64,
    pub pending: u64,
    pub redeliveries: u64,
    pub dead_lettered: u64,
}

/// `GET /api/groups`.
pub async fn list(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Json<Vec<Row>>, ConsoleError> {
    check(&console, &signed, "list consumer groups")?;
    let groups = console.broker.list_groups().await;
    Ok(Json(
        groups
            .into_iter()
            .map(|g| Row {
                members: g.members.len(),
                lag: g.topics.iter().map(|t| t.lag).sum(),
                pending: g.topics.iter().map(|t| t.pending).sum(),
                redeliveries: g.redeliveries,
                dead_lettered: g.dead_lettered,
                pattern: g.pattern,
                name: g.name,
            })
            .collect(),
    ))
}

/// `GET /api/groups/{name}`: the group as `sluice groups info` shows it.
pub async fn show(
    State(console): State<Arc<Console>>,
    signed: Signed,
    Path(name): Path<String>,
) -> Result<Json<GroupInfo>, ConsoleError> {
    check(&console, &signed, "inspect consumer groups")?;
    Ok(Json(console.broker.group_info(&name).await?))
}

/// Where a reset moves a group.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum To {
    Earliest,
    Latest,
    Offset(u64),
    /// The first message at or after this time (ms since the Unix epoch).
    TimeMs(i64),
}

/// The body of a reset.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reset {
    to: To,
    /// The group's name again.
    confirm: String,
}

/// `POST /api/groups/{name}/reset`.
pub async fn reset(
    State(console): State<Arc<Console>>,
    signed: Signed,
    Path(name): Path<String>,
    body: Result<Json<Reset>, JsonRejection>,
) -> Result<Json<GroupInfo>, ConsoleError> {
    let Json(body) = body.map_err(bad_request)?;
    check(&console, &signed, "reset consumer groups")?;
    if body.confirm != name {
        return Err(ConsoleError::BadRequest(format!(
            "not confirmed: a reset forgets pending deliveries; send confirm = {name:?}"
        )));
    }
    let to = match body.to {
        To::Earliest => StartPosition::Earliest,
        To::Latest => StartPosition::Latest,
        To::Offset(o) => StartPosition::Offset(o),
        To::TimeMs(t) => StartPosition::Timestamp(t),
    };
    let info = console.broker.reset_group(&name, to).await?;
    tracing::info!(group = %name, principal = %signed.principal.name, "group reset from the console");
    Ok(Json(info))
}
