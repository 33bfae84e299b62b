//! `[cluster]`: cluster mode. When the table is present the node keeps no
//! state of its own: topics, groups, pipelines and plugins live in a NATS
//! JetStream cluster that every node of the sluice cluster shares.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The replica count of streams, consumers and buckets by default.
pub const DEFAULT_REPLICAS: usize = 3;

/// `[cluster]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The NATS servers' client URLs (`nats://host:port`); the node connects
    /// to any of them and fails over among them.
    pub nats: Vec<String>,
    /// Copies of every stream, consumer and bucket (1, 3 or 5).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// This node's name in logs and `plugin list`; by default the host name
    /// and the QUIC port.
    #[serde(default)]
    pub node: Option<String>,
    /// A NATS credentials file (JWT + NKey seed).
    #[serde(default)]
    pub creds: Option<PathBuf>,
    /// A NATS token (instead of `creds`).
    #[serde(default)]
    pub token: Option<String>,
    /// The CA (PEM) that signed the NATS servers' certificates: TLS to NATS.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// The servers' monitoring URLs (`http://host:8222`): read at start to
    /// check that JetStream runs on enough servers and fsyncs before it
    /// acknowledges.
    #[serde(default)]
    pub monitor: Vec<String>,
    /// Refuse to start unless every server fsyncs before acknowledging
    /// (`sync_interval: always`). Setting it to false is logged as a
    /// warning at every start.
    #[serde(default = "default_true")]
    pub require_fsync: bool,
    /// How long a NATS request (a publish's acknowledgement, an admin call)
    /// may take before it fails.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
}

fn default_replicas() -> usize {
    DEFAULT_REPLICAS
}

fn default_true() -> bool {
    true
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

impl ClusterConfig {
    /// Checks values that serde cannot; the message names the key.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.nats.is_empty() {
            return Err("cluster.nats must name at least one NATS server URL".into());
        }
        if let Some(bad) = self
            .nats
            .iter()
            .find(|u| !(u.starts_with("nats://") || u.starts_with("tls://")))
        {
            return Err(format!(
                "cluster.nats: {bad:?} is not a NATS URL (nats://host:port or tls://host:port)"
            ));
        }
        if !matches!(self.replicas, 1 | 3 | 5) {
            return Err(format!(
                "cluster.replicas must be 1, 3 or 5 (JetStream keeps an odd number of copies), not {}",
                self.replicas
            ));
        }
        if self.creds.is_some() && self.token.is_some() {
            return Err("cluster.creds and cluster.token cannot both be set".into());
        }
        if let Some(bad) = self
            .monitor
            .iter()
            .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(format!(
                "cluster.monitor: {bad:?} is not an http:// or https:// URL"
            ));
        }
        if self.require_fsync && self.monitor.is_empty() {
            return Err("cluster.monitor must list the NATS servers' monitoring URLs (http://host:8222), so that the node can check they fsync before acknowledging; or set cluster.require_fsync = false".into());
        }
        if self.request_timeout.is_zero() {
            return Err("cluster.request_timeout must be above zero".into());
        }
        if self.node.as_deref().is_some_and(str::is_empty) {
            return Err("cluster.node must not be empty".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(cluster: &str) -> Result<Config, String> {
        Config::parse(&format!("[cluster]\n{cluster}"), "<test>").map_err(|e| e.to_string())
    }

    #[test]
    fn a_cluster_table_gets_its_defaults() {
        let config =
            parse("nats = [\"nats://a:4222\", \"tls://b:4222\"]\nmonitor = [\"http://a:8222\"]\n")
                .expect("valid");
        let cluster = config.cluster.expect("cluster mode");
        assert_eq!(cluster.replicas, 3);
        assert!(cluster.require_fsync);
        assert_eq!(cluster.request_timeout, std::time::Duration::from_secs(10));
        assert!(Config::parse("", "<test>")
            .expect("valid")
            .cluster
            .is_none());
    }

    #[test]
    fn bad_cluster_settings_are_refused_naming_the_key() {
        let cases = [
            ("nats = []\nrequire_fsync = false", "cluster.nats must name"),
            (
                "nats = [\"http://a:4222\"]\nrequire_fsync = false",
                "is not a NATS URL",
            ),
            (
                "nats = [\"nats://a:4222\"]\nreplicas = 2\nrequire_fsync = false",
                "cluster.replicas must be 1, 3 or 5",
            ),
            (
                "nats = [\"nats://a:4222\"]\ncreds = \"c\"\ntoken = \"t\"\nrequire_fsync = false",
                "cannot both be set",
            ),
            ("nats = [\"nats://a:4222\"]", "cluster.monitor must list"),
            (
                "nats = [\"nats://a:4222\"]\nmonitor = [\"a:8222\"]",
                "is not an http:// or https:// URL",
            ),
            (
                "nats = [\"nats://a:4222\"]\nrequire_fsync = false\nrequest_timeout = \"0s\"",
                "request_timeout must be above zero",
            ),
            (
                "nats = [\"nats://a:4222\"]\nrequire_fsync = false\nnode = \"\"",
                "cluster.node must not be empty",
            ),
            (
                "nats = [\"nats://a:4222\"]\nrequire_fsync = false\nreplica = 3",
                "unknown field",
            ),
        ];
        for (table, expected) in cases {
            let err = parse(table).expect_err(table);
            assert!(err.contains(expected), "{table}: {err}");
        }
    }
}
