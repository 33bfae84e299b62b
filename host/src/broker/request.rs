//! Request-reply: responders, requests and replies, through
//! [`crate::reply::Responders`]. A request runs through the pipeline of
//! its topic, as a published message would, before it goes out: a stage
//! may transform it, route it to another topic (the requester must be
//! allowed to publish there), reject it or drop it. Nothing is stored.

use sluice_proto::{Ask, Reply, ReplyTo, REPLY_HEADER};

use super::checks;
use super::publish::run_pipeline;
use super::Broker;
use crate::auth::{Action, Principal};
use crate::error::BrokerError;
use crate::plugin::Destination;
use crate::reply::{Request, Responder, MAX_REQUEST_TIMEOUT};
use crate::store::NewRecord;

impl Broker {
    /// A responder on `pattern`, in queue group `group` if given: the
    /// requests on matching topics, each with its reply token.
    /// In cluster mode it listens on every node's behalf before this
    /// returns.
    pub async fn respond(
        &self,
        pattern: &str,
        group: Option<String>,
    ) -> Result<Responder, BrokerError> {
        let pattern = checks::pattern(pattern)?;
        if let Some(group) = &group {
            checks::group(group)?;
        }
        self.inner.replies.join(pattern, group).await
    }

    /// Sends requests, and listens for them, through the cluster's NATS
    /// (cluster mode), from now on.
    pub fn relay_requests(&self, relay: std::sync::Arc<crate::reply::nats::NatsRelay>) {
        self.inner.replies.relay_through(relay);
    }

    /// Sends a request from `requester` to the responders of its topic
    /// (after the topic's pipeline); its first reply. Nothing is stored.
    pub async fn ask(&self, ask: Ask, requester: &Principal) -> Result<Reply, BrokerError> {
        checks::topic(&ask.topic)?;
        if ask
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(REPLY_HEADER))
        {
            return Err(BrokerError::InvalidArgument(format!(
                "the header {REPLY_HEADER} is the broker's: a request may not carry it"
            )));
        }
        let timeout = std::time::Duration::from_millis(ask.timeout_ms);
        if timeout.is_zero() || timeout > MAX_REQUEST_TIMEOUT {
            return Err(BrokerError::InvalidArgument(format!(
                "a request's timeout is 1 ms to {} s, not {} ms",
                MAX_REQUEST_TIMEOUT.as_secs(),
                ask.timeout_ms
            )));
        }
        let request = Request {
            topic: ask.topic,
            key: ask.key,
            headers: ask.headers,
            payload: ask.payload,
        };
        let request = self.through_pipeline(request, requester).await?;
        self.inner.replies.ask(request, timeout).await
    }

    /// Answers the request waiting under `reply.token`.
    pub fn reply(&self, reply: ReplyTo) -> Result<(), BrokerError> {
        self.inner.replies.reply(&reply.token, reply.reply)
    }

    /// `request` as the pipeline of its topic leaves it: transformed, or
    /// routed to its first destination; an error if a stage rejected,
    /// dropped or dead-lettered it.
    async fn through_pipeline(
        &self,
        request: Request,
        requester: &Principal,
    ) -> Result<Request, BrokerError> {
        if !self.inner.plugins.has_pipelines() {
            return Ok(request);
        }
        let plugins = self.inner.plugins.current();
        let Some(index) = plugins
            .pipelines
            .iter()
            .position(|p| p.pattern.matches(&request.topic))
        else {
            return Ok(request);
        };
        let record = NewRecord {
            key: request.key,
            headers: request.headers,
            payload: request.payload,
            id: None,
        };
        let (mut dispositions, _report) =
            run_pipeline(&plugins, index, &request.topic, vec![record]).await?;
        let disposition = dispositions.pop().ok_or_else(|| {
            BrokerError::Internal("a pipeline answered nothing for a request".into())
        })?;
        if let Some(reason) = disposition.rejected {
            return Err(BrokerError::Rejected(reason));
        }
        let Some((destination, record)) = disposition.outputs.into_iter().next() else {
            return Err(BrokerError::Rejected(format!(
                "a plugin dropped the request on {:?}",
                request.topic
            )));
        };
        let topic = match destination {
            Destination::Own => request.topic,
            Destination::Topic(to) => {
                checks::topic(&to)?;
                // A routing rule cannot ask where its requester may not.
                crate::auth::authorize(requester, Action::Publish, &to).map_err(|denied| {
                    BrokerError::Forbidden(format!("a plugin routed the request: {denied}"))
                })?;
                to
            }
            Destination::DeadLetter { reason, stage } => {
                return Err(BrokerError::Rejected(format!(
                    "stage {stage} dead-lettered the request: {reason}"
                )))
            }
        };
        Ok(Request {
            topic,
            key: record.key,
            headers: record.headers,
            payload: record.payload,
        })
    }
}
