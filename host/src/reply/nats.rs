//! Request-reply across a cluster: requests and responders meet in core
//! NATS (no JetStream: nothing is stored).
//!
//! - A node listens for each pattern and queue group its responders have
//!   on the subject `sluice.rr.<pattern>` (sluice's `*` and `>` are NATS's
//!   wildcards), as a NATS queue subscriber named after the group when
//!   there is one, so that one node's member gets each request; once per
//!   pattern and group, however many of its responders share them.
//! - A request is a NATS request on `sluice.rr.<topic>`, after the
//!   requester's node ran it through the topic's pipeline. NATS answers at
//!   once when no subscriber listens on any node: `no_responders`.
//! - A node that gets a request hands it to its responders of that
//!   pattern and group ([`Responders::ask_local`]) and publishes the first
//!   reply to the request's inbox; the requester takes the first that
//!   comes from any node. When the responders of a queue group that got
//!   it all leave without answering, the node answers `no_responders`; a
//!   node whose plain responders leave says nothing (another node's may
//!   still answer), so the requester waits for its timeout.
//!
//! On the wire between nodes a request and a reply are MessagePack:
//! [`Relayed`] and `Result<Reply, (code, message)>`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sluice_proto::{ErrorCode, Reply};

use super::{Request, Responders};
use crate::error::BrokerError;
use crate::sync::lock;

/// The subject prefix of requests.
const SUBJECT_PREFIX: &str = "sluice.rr.";

/// A request as it travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
struct Relayed {
    topic: String,
    #[serde(with = "serde_bytes")]
    key: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
    timeout_ms: u64,
}

/// A reply as it travels back: the reply, or an error's code and message.
type Answer = Result<Reply, (u16, String)>;

/// One NATS subscription of this node and the responders behind it.
struct Listening {
    responders: usize,
    task: tokio::task::JoinHandle<()>,
}

/// This node's side of request-reply over NATS.
pub struct NatsRelay {
    client: async_nats::Client,
    /// By (pattern, group).
    listening: Mutex<HashMap<(String, Option<String>), Listening>>,
}

impl std::fmt::Debug for NatsRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsRelay").finish_non_exhaustive()
    }
}

fn cluster(what: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Internal(format!("{what} through the cluster: {e}"))
}

impl NatsRelay {
    /// Request-reply over `client`.
    pub fn new(client: async_nats::Client) -> Arc<NatsRelay> {
        Arc::new(NatsRelay {
            client,
            listening: Mutex::new(HashMap::new()),
        })
    }

    /// Sends `request` to the responders of every node; the first reply.
    pub(super) async fn ask(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Reply, BrokerError> {
        let relayed = Relayed {
            topic: request.topic.clone(),
            key: request.key.map(|k| k.to_vec()),
            headers: request.headers,
            payload: request.payload.to_vec(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let body =
            rmp_serde::to_vec_named(&relayed).map_err(|e| cluster("cannot encode a request", e))?;
        let subject = format!("{SUBJECT_PREFIX}{}", request.topic);
        let asked = self
            .client
            .send_request(
                subject,
                async_nats::Request::new()
                    .payload(Bytes::from(body))
                    .timeout(Some(timeout)),
            )
            .await;
        let message = match asked {
            Ok(message) => message,
            Err(e) => {
                return Err(match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => BrokerError::NoResponders(
                        format!("no responder listens on {:?} on any node", request.topic),
                    ),
                    async_nats::RequestErrorKind::TimedOut => BrokerError::RequestTimeout(format!(
                        "no reply to the request on {:?} within {} ms",
                        request.topic,
                        timeout.as_millis()
                    )),
                    _ => cluster("cannot send a request", e),
                })
            }
        };
        let answer: Answer = rmp_serde::from_slice(&message.payload)
            .map_err(|e| cluster("a reply does not decode", e))?;
        answer.map_err(|(code, message)| match ErrorCode::from_u16(code) {
            Some(ErrorCode::NoResponders) => BrokerError::NoResponders(message),
            Some(ErrorCode::RequestTimeout) => BrokerError::RequestTimeout(message),
            Some(ErrorCode::ResponderError) => BrokerError::ResponderError(message),
            _ => BrokerError::Internal(message),
        })
    }

    /// Listens for requests on `pattern` (in queue group `group`) for the
    /// responders of `local`, once per pattern and group; returns when the
    /// NATS server has the subscription.
    pub(super) async fn listen(
        &self,
        local: &Arc<Responders>,
        pattern: &str,
        group: Option<&str>,
    ) -> Result<(), BrokerError> {
        let key = (pattern.to_owned(), group.map(str::to_owned));
        if let Some(listening) = lock(&self.listening).get_mut(&key) {
            listening.responders += 1;
            return Ok(());
        }
        let subject = format!("{SUBJECT_PREFIX}{pattern}");
        let subscriber = match group {
            Some(group) => self.client.queue_subscribe(subject, group.to_owned()).await,
            None => self.client.subscribe(subject).await,
        }
        .map_err(|e| cluster("cannot listen for requests", e))?;
        self.client
            .flush()
            .await
            .map_err(|e| cluster("cannot listen for requests", e))?;
        let task = tokio::spawn(serve(
            self.client.clone(),
            Arc::downgrade(local),
            subscriber,
            key.clone(),
        ));
        let mut listening = lock(&self.listening);
        match listening.get_mut(&key) {
            // Another responder of the same pattern and group came first.
            Some(other) => {
                other.responders += 1;
                task.abort();
            }
            None => {
                listening.insert(
                    key,
                    Listening {
                        responders: 1,
                        task,
                    },
                );
            }
        }
        Ok(())
    }

    /// One responder of `pattern` and `group` left; the last one ends the
    /// subscription.
    pub(super) fn stop_listening(&self, pattern: &str, group: Option<&str>) {
        let key = (pattern.to_owned(), group.map(str::to_owned));
        let mut listening = lock(&self.listening);
        if let Some(entry) = listening.get_mut(&key) {
            entry.responders = entry.responders.saturating_sub(1);
            if entry.responders == 0 {
                if let Some(entry) = listening.remove(&key) {
                    entry.task.abort();
                }
            }
        }
    }
}

/// Hands each request `subscriber` gets to the local responders of its
/// pattern and group, and sends back what they answer.
async fn serve(
    client: async_nats::Client,
    local: Weak<Responders>,
    mut subscriber: async_nats::Subscriber,
    (pattern, group): (String, Option<String>),
) {
    while let Some(message) = subscriber.next().await {
        let Some(local) = local.upgrade() else { return };
        let Some(inbox) = message.reply.clone() else {
            continue;
        };
        let relayed: Relayed = match rmp_serde::from_slice(&message.payload) {
            Ok(relayed) => relayed,
            Err(e) => {
                tracing::warn!(subject = %message.subject, error = %e, "a relayed request does not decode; ignored");
                continue;
            }
        };
        let (client, pattern, group) = (client.clone(), pattern.clone(), group.clone());
        tokio::spawn(async move {
            let timeout = Duration::from_millis(relayed.timeout_ms.max(1));
            let request = Request {
                topic: relayed.topic,
                key: relayed.key.map(Bytes::from),
                headers: relayed.headers,
                payload: Bytes::from(relayed.payload),
            };
            let only = Some((pattern.as_str(), group.as_deref()));
            let answer: Answer = match local.ask_local(request, timeout, only).await {
                Ok(reply) => Ok(reply),
                // Plain responders of other nodes may still answer.
                Err(BrokerError::NoResponders(_) | BrokerError::RequestTimeout(_))
                    if group.is_none() =>
                {
                    return
                }
                Err(e) => Err((e.code().as_u16(), e.to_string())),
            };
            match rmp_serde::to_vec_named(&answer) {
                Ok(body) => {
                    if let Err(e) = client.publish(inbox, Bytes::from(body)).await {
                        tracing::warn!(error = %e, "cannot send a reply back through the cluster");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot encode a reply"),
            }
        });
    }
}
