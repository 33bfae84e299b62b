//! What each request kind does: checked against the session's rights and
//! limits, handed to the broker, and turned into an [`Answer`].

use sluice_proto::{ErrorBody, ErrorCode, RequestBody, ResponseBody};

use super::{Answer, Session};
use crate::auth::{Action, AdminRight};
use crate::broker::{BrokerError, PendingPublish, PublishBatch};
use crate::sync::lock;

impl Session {
    /// The answer to one request. Awaited in the read loop, so work that
    /// must keep the connection's order (appending a publish, starting a
    /// stream) happens here; the rest is left to the [`Answer`].
    pub(super) async fn dispatch(&self, request: RequestBody) -> Answer {
        let broker = self.shared.broker.clone();
        match request {
            RequestBody::Publish(publish) => {
                let received = std::time::Instant::now();
                let batch = PublishBatch::from_messages(publish.messages);
                let pending = self.publish(batch).await;
                self.acked(received, pending, ResponseBody::Published)
            }
            RequestBody::PublishCompact(publish) => {
                let received = std::time::Instant::now();
                let batch = PublishBatch::from_runs(publish.runs);
                let pending = self.publish(batch).await;
                self.acked(received, pending, |ack| {
                    ResponseBody::PublishedCompact(sluice_proto::CompactAck::from_ack(ack))
                })
            }
            RequestBody::Ping => Answer::Now(Ok(ResponseBody::Pong)),
            RequestBody::Subscribe(subscribe) => Answer::Now(self.subscribe(subscribe).await),
            RequestBody::Unsubscribe { subscription } => {
                Answer::Now(self.unsubscribe(subscription))
            }
            RequestBody::Fetch(fetch) => {
                if let Err(e) = self.check_subscribe(&fetch.topic) {
                    return Answer::Now(Err(e));
                }
                // Room for the response's envelope within the frame limit.
                let max_bytes = fetch
                    .max_bytes
                    .min(self.shared.config.limits.max_frame_bytes / 2);
                Answer::later(async move {
                    broker
                        .fetch(&fetch.topic, fetch.from, fetch.max_messages, max_bytes)
                        .await
                        .map(ResponseBody::Fetched)
                })
            }
            RequestBody::CreateTopic(create) => {
                if let Err(e) = self.check_admin(AdminRight::Topics, "create topics") {
                    return Answer::Now(Err(e));
                }
                Answer::later(async move {
                    broker
                        .create_topic(&create)
                        .await
                        .map(ResponseBody::TopicCreated)
                })
            }
            RequestBody::DeleteTopic { name } => {
                if let Err(e) = self.check_admin(AdminRight::Topics, "delete topics") {
                    return Answer::Now(Err(e));
                }
                Answer::later(async move {
                    broker
                        .delete_topic(&name)
                        .await
                        .map(|()| ResponseBody::TopicDeleted)
                })
            }
            RequestBody::ListTopics => {
                let principal = self.principal.clone();
                Answer::later(async move {
                    let mut topics = broker.list_topics().await;
                    topics.retain(|t| {
                        crate::auth::authorize(&principal, Action::Describe, &t.name).is_ok()
                    });
                    Ok(ResponseBody::Topics(topics))
                })
            }
            RequestBody::TopicInfo { name } => {
                if let Err(e) = self.authorize(Action::Describe, &name) {
                    return Answer::Now(Err(e));
                }
                Answer::later(
                    async move { broker.topic_info(&name).await.map(ResponseBody::TopicInfo) },
                )
            }
            RequestBody::ListPlugins => {
                if let Err(e) = self.check_admin(AdminRight::Plugins, "see plugin status") {
                    return Answer::Now(Err(e));
                }
                Answer::later(
                    async move { Ok(ResponseBody::Plugins(broker.plugin_status().await)) },
                )
            }
            RequestBody::DeployPlugin { name, wasm } => {
                if let Err(e) = self.check_admin(AdminRight::Plugins, "deploy plugins") {
                    return Answer::Now(Err(e));
                }
                Answer::later(async move {
                    broker
                        .deploy_plugin(&name, wasm)
                        .await
                        .map(|hash| ResponseBody::Deployed { hash })
                })
            }
            RequestBody::Rollout(rollout) => {
                if let Err(e) = self.check_admin(AdminRight::Plugins, "roll plugins out") {
                    return Answer::Now(Err(e));
                }
                Answer::later(async move {
                    broker
                        .plugin_rollout(rollout)
                        .await
                        .map(|status| ResponseBody::Rollout(Box::new(status)))
                })
            }
            RequestBody::Consume(consume) => Answer::Now(self.consume(consume).await),
            RequestBody::Respond(respond) => Answer::Now(self.start_responder(respond).await),
            RequestBody::Ask(ask) => {
                if let Err(e) = self.authorize(Action::Publish, &ask.topic) {
                    return Answer::Now(Err(e));
                }
                // A request waits for its reply only as long as its
                // connection lasts (a closing connection waits for its
                // requests' answers, and a request may wait minutes).
                let closing = self.reading_done.clone();
                let shutdown = self.shared.shutdown.clone();
                let requester = self.principal.clone();
                Answer::later(async move {
                    tokio::select! {
                        answer = broker.ask(ask, &requester) => answer.map(ResponseBody::Answered),
                        () = closing.cancelled() => Err(if shutdown.is_cancelled() {
                            BrokerError::ShuttingDown
                        } else {
                            BrokerError::Internal("the connection closed before the reply".into())
                        }),
                    }
                })
            }
            RequestBody::Reply(reply) => {
                Answer::Now(broker.reply(reply).map(|()| ResponseBody::ReplySent))
            }
            RequestBody::Settle(settle) => {
                if let Err(e) = self.check_settle(&settle.group, [settle.topic.as_str()]) {
                    return Answer::Now(Err(e));
                }
                let members = self.settling_members(&settle.group, settle.consumer);
                // Answered once durable in the group's journal; pipelined
                // acks share one journal write.
                Answer::later(async move {
                    broker
                        .settle(settle, members)
                        .await
                        .map(|()| ResponseBody::Settled)
                })
            }
            RequestBody::SettleBatch(batch) => {
                let checked = self.check_batch(batch.items.len()).and_then(|()| {
                    self.check_settle(&batch.group, batch.items.iter().map(|i| i.topic.as_str()))
                });
                if let Err(e) = checked {
                    return Answer::Now(Err(e));
                }
                let members = self.settling_members(&batch.group, batch.consumer);
                Answer::later(async move {
                    broker
                        .settle_batch(batch, members)
                        .await
                        .map(|errors| ResponseBody::SettledBatch { errors })
                })
            }
            RequestBody::ListGroups => {
                match self.check_group_admin() {
                    Err(e) => Answer::Now(Err(e)),
                    Ok(()) => Answer::later(async move {
                        Ok(ResponseBody::Groups(broker.list_groups().await))
                    }),
                }
            }
            RequestBody::GroupInfo { name } => match self.check_group_admin() {
                Err(e) => Answer::Now(Err(e)),
                Ok(()) => Answer::later(async move {
                    broker.group_info(&name).await.map(ResponseBody::GroupInfo)
                }),
            },
            RequestBody::Trace(key) => {
                if let Err(e) = self.check_trace(&key) {
                    return Answer::Now(Err(e));
                }
                let principal = self.principal.clone();
                // The record is scanned under its lock: off the async workers.
                Answer::later(async move {
                    tokio::task::spawn_blocking(move || {
                        broker.trace(&key, |topic| {
                            crate::auth::authorize(&principal, Action::Subscribe, topic).is_ok()
                        })
                    })
                    .await
                    .map(ResponseBody::Traced)
                    .map_err(|e| BrokerError::Internal(format!("trace task failed: {e}")))
                })
            }
            RequestBody::ResetGroup { name, to } => match self.check_group_admin() {
                Err(e) => Answer::Now(Err(e)),
                Ok(()) => Answer::later(async move {
                    broker
                        .reset_group(&name, to)
                        .await
                        .map(ResponseBody::GroupInfo)
                }),
            },
        }
    }

    /// A publish's answer: its acks once stored (awaited on the answer's
    /// task), with its latency recorded.
    fn acked(
        &self,
        received: std::time::Instant,
        pending: Result<PendingPublish, BrokerError>,
        wrap: impl FnOnce(sluice_proto::PublishAck) -> ResponseBody + Send + 'static,
    ) -> Answer {
        let metrics = self.shared.broker.metrics().clone();
        match pending {
            Ok(pending) => Answer::later(async move {
                let result = pending.wait().await.map(wrap);
                metrics.published(received.elapsed(), result.is_ok());
                result
            }),
            Err(e) => {
                metrics.published(received.elapsed(), false);
                Answer::Now(Err(e))
            }
        }
    }

    fn unsubscribe(&self, subscription: u64) -> Result<ResponseBody, BrokerError> {
        match lock(&self.subscriptions).remove(&subscription) {
            Some(stream) => {
                stream.cancel.cancel();
                Ok(ResponseBody::Unsubscribed)
            }
            None => Err(BrokerError::UnknownSubscription(subscription)),
        }
    }
}

/// The body of an error for a request the broker could not read.
pub(super) fn unknown_request(reason: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::UnknownRequest,
        format!("unknown or malformed request: {reason}"),
    )
}
