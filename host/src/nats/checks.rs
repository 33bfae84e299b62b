//! What a node checks before it serves in cluster mode: JetStream answers,
//! enough servers run it for the replica count, and each fsyncs before it
//! acknowledges. A client cannot see a server's fsync setting, so it is
//! read from the servers' monitoring endpoint (`/varz`,
//! `jetstream.config.sync_always`).

use std::time::Duration;

use serde::Deserialize;

use super::{Nats, NatsError};
use crate::config::ClusterConfig;

/// What `/varz` tells about one server.
#[derive(Debug, Deserialize)]
struct Varz {
    server_name: String,
    #[serde(default)]
    jetstream: Option<JetStreamVarz>,
}

#[derive(Debug, Deserialize)]
struct JetStreamVarz {
    #[serde(default)]
    config: Option<JetStreamConfig>,
}

#[derive(Debug, Deserialize)]
struct JetStreamConfig {
    #[serde(default)]
    sync_always: bool,
}

/// One server as its monitoring endpoint describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// Its `server_name`.
    pub name: String,
    /// Whether JetStream runs on it.
    pub jetstream: bool,
    /// Whether it fsyncs every write before acknowledging.
    pub sync_always: bool,
}

/// Reads `/varz` of one monitoring URL.
pub async fn server_state(url: &str, timeout: Duration) -> Result<ServerState, NatsError> {
    let varz_url = format!("{}/varz", url.trim_end_matches('/'));
    let fetch_url = varz_url.clone();
    let body = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .build()
            .into();
        agent
            .get(&fetch_url)
            .call()
            .and_then(|mut response| response.body_mut().read_to_string())
    })
    .await
    .map_err(|e| NatsError::Monitor {
        url: varz_url.clone(),
        reason: e.to_string(),
    })?
    .map_err(|e| NatsError::Monitor {
        url: varz_url.clone(),
        reason: e.to_string(),
    })?;
    parse_varz(&body).map_err(|reason| NatsError::Monitor {
        url: varz_url,
        reason,
    })
}

/// What a `/varz` document says of its server. nats-server 2.15 leaves
/// `sync_always` out when it is off, and `jetstream.config` out when
/// JetStream is.
fn parse_varz(body: &str) -> Result<ServerState, String> {
    let varz: Varz =
        serde_json::from_str(body).map_err(|e| format!("not a NATS /varz document: {e}"))?;
    let config = varz.jetstream.and_then(|js| js.config);
    Ok(ServerState {
        name: varz.server_name,
        jetstream: config.is_some(),
        sync_always: config.is_some_and(|c| c.sync_always),
    })
}

/// The checks of a node's start; the first that fails is the error.
pub(super) async fn before_serving(nats: &Nats, config: &ClusterConfig) -> Result<(), NatsError> {
    nats.jetstream
        .query_account()
        .await
        .map_err(|e| NatsError::JetStreamOff(e.to_string()))?;
    if !config.require_fsync {
        tracing::warn!("cluster.require_fsync = false: the NATS servers may acknowledge a publish before it is on disk; acknowledged messages survive the crash of a minority of servers, but can be lost when several fail together (see README, cluster mode)");
    }
    if config.monitor.is_empty() {
        tracing::warn!("cluster.monitor is empty: the NATS servers' JetStream and fsync settings are not checked");
        return Ok(());
    }
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for url in &config.monitor {
        match server_state(url, config.request_timeout).await {
            Ok(state) if state.jetstream => found.push(state),
            Ok(state) => missing.push(format!("{} (JetStream off)", state.name)),
            Err(e) => missing.push(e.to_string()),
        }
    }
    if found.len() < config.replicas {
        let mut detail: Vec<String> = found.iter().map(|s| format!("{} ok", s.name)).collect();
        detail.extend(missing);
        return Err(NatsError::TooFewServers {
            replicas: config.replicas,
            found: found.len(),
            detail: detail.join("; "),
        });
    }
    if config.require_fsync {
        if let Some(server) = found.iter().find(|s| !s.sync_always) {
            return Err(NatsError::NoFsync {
                server: server.name.clone(),
            });
        }
    }
    for reason in &missing {
        tracing::warn!(%reason, "a NATS server named in cluster.monitor could not be checked");
    }
    tracing::info!(
        servers = found.len(),
        replicas = config.replicas,
        fsync = found.iter().all(|s| s.sync_always),
        "NATS JetStream cluster checked"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varz_of_2_15_tells_jetstream_and_fsync() {
        let always = r#"{"server_name":"n1","jetstream":{"config":{"max_memory":1,"store_dir":"/x","sync_interval":120000000000,"sync_always":true,"strict":true},"stats":{}}}"#;
        let lazy = r#"{"server_name":"n2","jetstream":{"config":{"max_memory":1,"store_dir":"/x","sync_interval":120000000000,"strict":true}}}"#;
        let off = r#"{"server_name":"n3","jetstream":{}}"#;
        let none = r#"{"server_name":"n4"}"#;
        let state = |body| parse_varz(body).expect("parses");
        assert_eq!(
            state(always),
            ServerState {
                name: "n1".into(),
                jetstream: true,
                sync_always: true
            }
        );
        assert!(state(lazy).jetstream && !state(lazy).sync_always);
        assert!(!state(off).jetstream && !state(off).sync_always);
        assert!(!state(none).jetstream);
        let err = parse_varz("<html>not found</html>").expect_err("refused");
        assert!(err.contains("not a NATS /varz document"), "{err}");
    }
}
