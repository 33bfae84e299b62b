//! `plugin-costs`: what a shadow version and plugin state cost, as publish
//! throughput through one stage of `test_hostile` (see `target.rs`):
//!
//! - `pass-through`: mode `pass`, alone;
//! - `pass-through + shadow`: the same with a shadow version running on
//!   every batch (a copy of the component that differs only in its build
//!   stamp, so it agrees on every message);
//! - `state get + set`: mode `state`, one `get` and one `set` per message
//!   (the broker's fsync policy applies to the state journal too).

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use sluice_client::{Message, RolloutRequest};

use super::load::{run_id, MakeMessage};
use super::publish::publish_measured;
use super::report::Outcome;
use super::target::Target;
use crate::cli::args::BenchArgs;

/// The build stamp `test_hostile` carries, and what the shadow copy's is.
const STAMP: &[u8] = b"SLUICE-STAMP:v1______";
const SHADOW_STAMP: &[u8] = b"SLUICE-STAMP:shadow__";

/// `plugin-costs`: one row per variant.
pub async fn plugin_costs(args: &BenchArgs, target: &Target) -> anyhow::Result<Vec<Outcome>> {
    let id = run_id();
    let body = Bytes::from(vec![b'x'; args.size]);
    let to = |topic: &str| -> MakeMessage {
        let (topic, body) = (topic.to_owned(), body.clone());
        Arc::new(move |_: u64| Message::new(topic.clone(), body.clone()))
    };
    let mut rows = Vec::new();
    let alone = format!("bench.pipeline.shadowed.{id}.alone");
    rows.push(publish_measured(args, target, "pass-through", to(&alone)).await?);
    target.clean_up(args, &alone).await;

    let client = target.client().await?;
    let shadow = shadow_copy(args)?;
    client
        .plugin_rollout(RolloutRequest::Shadow {
            name: "shadowed".into(),
            wasm: shadow.into(),
        })
        .await
        .context("cannot start the shadow version")?;
    let beside = format!("bench.pipeline.shadowed.{id}.shadow");
    let row = publish_measured(args, target, "pass-through + shadow", to(&beside)).await;
    let status = client
        .plugin_rollout(RolloutRequest::Status {
            name: "shadowed".into(),
        })
        .await?;
    client
        .plugin_rollout(RolloutRequest::Rollback {
            name: "shadowed".into(),
        })
        .await?;
    rows.push(row?);
    if let Some(diff) = status.diff {
        eprintln!(
            "shadow: compared {} messages, {} agreed, {} skipped (its queue was full)",
            diff.compared, diff.agreed, diff.skipped
        );
    }
    target.clean_up(args, &beside).await;

    let stateful = format!("bench.pipeline.state.{id}");
    rows.push(publish_measured(args, target, "state get + set", to(&stateful)).await?);
    target.clean_up(args, &stateful).await;
    client.close().await;
    Ok(rows)
}

/// `test_hostile` with another build stamp: a second version of the same
/// plugin that behaves the same.
fn shadow_copy(args: &BenchArgs) -> anyhow::Result<Vec<u8>> {
    let path = args.plugins_dir.join("test_hostile.wasm");
    let mut bytes =
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let at = bytes
        .windows(STAMP.len())
        .position(|w| w == STAMP)
        .with_context(|| format!("{} carries no build stamp", path.display()))?;
    bytes[at..at + STAMP.len()].copy_from_slice(SHADOW_STAMP);
    Ok(bytes)
}
