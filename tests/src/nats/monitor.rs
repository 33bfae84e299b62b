//! Reading a nats-server's HTTP monitoring port: a plain HTTP/1.0 GET
//! ([`http_get`]) and what the fault tests look for in the JSON answers
//! (the meta leader, a stream's leader, the client connections).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one monitoring request may take; a paused or cut-off server
/// never answers, so requests to it end here.
const HTTP_LIMIT: Duration = Duration::from_secs(2);

/// A GET on a monitoring port: the status and the body.
pub(super) async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let what = format!("GET {addr}{path}");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        // HTTP/1.0: the server closes after one response, never chunked.
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(HTTP_LIMIT, exchange)
        .await
        .with_context(|| format!("{what} timed out after {HTTP_LIMIT:?}"))?
        .with_context(|| format!("{what} failed"))?;
    let status = (response.split_whitespace().nth(1)).and_then(|s| s.parse().ok());
    match (status, response.split_once("\r\n\r\n")) {
        (Some(status), Some((_, body))) => Ok((status, body.to_owned())),
        _ => bail!("{what}: not an HTTP response: {response:?}"),
    }
}

/// `meta_cluster.leader` of a `/jsz`, empty when there is none.
pub(super) fn meta_leader_seen_by(jsz: &Value) -> &str {
    jsz["meta_cluster"]["leader"].as_str().unwrap_or("")
}

/// The leader of `stream` in a `/jsz?accounts=true&streams=true`.
pub(super) fn stream_leader_seen_by<'a>(jsz: &'a Value, stream: &str) -> Option<&'a str> {
    let accounts = jsz["account_details"].as_array()?;
    accounts
        .iter()
        .filter_map(|account| account["stream_detail"].as_array())
        .flatten()
        .find(|detail| detail["name"] == stream)
        .and_then(|detail| detail["cluster"]["leader"].as_str())
        .filter(|leader| !leader.is_empty())
}

impl super::NatsCluster {
    /// The state (`first_seq`, `last_seq`, `messages`, ...) of the first
    /// stream whose name starts with `prefix`, as server `i` reports it in
    /// `/jsz?accounts=true&streams=true`.
    pub async fn stream_state(&self, i: usize, prefix: &str) -> anyhow::Result<Option<Value>> {
        let jsz = self.monitor(i, "/jsz?accounts=true&streams=true").await?;
        Ok(stream_state_seen_by(&jsz, prefix))
    }
}

/// The state of the first stream in a `/jsz?accounts=true&streams=true`
/// whose name starts with `prefix`.
fn stream_state_seen_by(jsz: &Value, prefix: &str) -> Option<Value> {
    let accounts = jsz["account_details"].as_array()?;
    accounts
        .iter()
        .filter_map(|account| account["stream_detail"].as_array())
        .flatten()
        .find(|detail| {
            detail["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(prefix))
        })
        .map(|detail| detail["state"].clone())
}

/// The names the clients of a `/connz` gave their connections (unnamed
/// ones left out).
pub(super) fn connection_names(connz: &Value) -> Vec<String> {
    let Some(connections) = connz["connections"].as_array() else {
        return Vec::new();
    };
    connections
        .iter()
        .filter_map(|c| c["name"].as_str())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_leader_is_read_from_the_account_details() {
        // The shape of nats-server 2.15.1's /jsz?accounts=true&streams=true.
        let jsz = serde_json::json!({
            "meta_cluster": {"name": "sluice-test", "leader": "n1"},
            "account_details": [{
                "name": "$G",
                "stream_detail": [
                    {"name": "OTHER", "cluster": {"name": "sluice-test"}},
                    {"name": "ORDERS", "cluster": {"name": "sluice-test", "leader": "n3"}}
                ]
            }]
        });
        assert_eq!(meta_leader_seen_by(&jsz), "n1");
        assert_eq!(stream_leader_seen_by(&jsz, "ORDERS"), Some("n3"));
        assert_eq!(stream_leader_seen_by(&jsz, "OTHER"), None);
        assert_eq!(stream_leader_seen_by(&jsz, "MISSING"), None);
    }

    #[test]
    fn connections_are_named_as_their_clients_named_them() {
        // The shape of nats-server 2.15.1's /connz.
        let connz = serde_json::json!({
            "num_connections": 3,
            "connections": [
                {"cid": 5, "name": "sluice node-0"},
                {"cid": 7},
                {"cid": 9, "name": "sluice node-1"}
            ]
        });
        assert_eq!(
            connection_names(&connz),
            vec!["sluice node-0".to_owned(), "sluice node-1".to_owned()]
        );
        assert!(connection_names(&serde_json::json!({})).is_empty());
    }
}
