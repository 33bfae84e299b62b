//! Request-reply: [`Client::request`] sends a request to the live
//! responders of a topic and waits for the first reply; [`Client::respond`]
//! makes a [`Responder`], whose [`IncomingRequest`]s are answered with
//! [`IncomingRequest::reply`]. Requests and replies are not stored.
//!
//! A responder goes on over a new connection when the client fails over,
//! as a subscription does; requests it was given on the lost connection
//! and had not answered are answered `no_responders` by the broker.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use sluice_proto::{
    Ask, Delivered, Reply, ReplyTo, RequestBody, Respond, ResponseBody, REPLY_HEADER,
};

use crate::client::Client;
use crate::error::ClientError;
use crate::link::{Batch, Link, Opening, StreamHandle};
use crate::message::Message;

/// How much longer than a request's own timeout the client waits for the
/// broker's answer before it gives up on its own.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

impl Client {
    /// Sends a request with `payload` to the responders of `topic` and
    /// waits up to `timeout` for the first reply. Fails at once with code
    /// `no_responders` when none listens (or every one that got it goes
    /// away), with `request_timeout` when no reply comes in time, and with
    /// `responder_error` when the responder answers with an error.
    pub async fn request(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        self.request_message(Message::new(topic, payload), timeout)
            .await
    }

    /// Like [`Client::request`], with a key and headers (the message's id,
    /// if set, is not sent: a request is not stored).
    pub async fn request_message(
        &self,
        message: Message,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let message = message.into_wire();
        let body = RequestBody::Ask(Ask {
            topic: message.topic,
            key: message.key,
            headers: message.headers,
            payload: message.payload,
            timeout_ms: u64::try_from(timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        });
        let answer = tokio::time::timeout(timeout + ANSWER_GRACE, self.link.request(body))
            .await
            .map_err(|_| {
                ClientError::Protocol(format!(
                    "the broker did not answer a request within its timeout of {} ms and {} s more",
                    timeout.as_millis(),
                    ANSWER_GRACE.as_secs()
                ))
            })?;
        match answer? {
            ResponseBody::Answered(reply) => Ok(reply),
            other => Err(ClientError::unexpected_response(other)),
        }
    }

    /// Answers requests on the topics `pattern` matches: every responder
    /// without a group gets each request, and the first reply wins.
    pub async fn respond(&self, pattern: impl Into<String>) -> Result<Responder, ClientError> {
        self.respond_with(pattern.into(), None).await
    }

    /// Answers requests on `pattern` as a member of queue group `group`:
    /// each request goes to one member of the group, in turn.
    pub async fn respond_in_group(
        &self,
        pattern: impl Into<String>,
        group: impl Into<String>,
    ) -> Result<Responder, ClientError> {
        self.respond_with(pattern.into(), Some(group.into())).await
    }

    async fn respond_with(
        &self,
        pattern: String,
        group: Option<String>,
    ) -> Result<Responder, ClientError> {
        let stream = self
            .link
            .open_stream(|id| {
                Opening::Respond(Respond {
                    responder: id,
                    pattern: pattern.clone(),
                    group,
                })
            })
            .await?;
        Ok(Responder {
            stream,
            pattern,
            buffered: VecDeque::new(),
        })
    }
}

/// The requests of one responder, as a `Stream`. Dropping it ends the
/// responder on the broker.
pub struct Responder {
    stream: StreamHandle,
    pattern: String,
    buffered: VecDeque<Delivered>,
}

impl Responder {
    /// The pattern it answers on.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The next request; `None` when the responder ended.
    pub async fn recv(&mut self) -> Option<Result<IncomingRequest, ClientError>> {
        std::future::poll_fn(|cx| self.poll_request(cx)).await
    }

    fn poll_request(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<IncomingRequest, ClientError>>> {
        loop {
            if let Some(message) = self.buffered.pop_front() {
                return Poll::Ready(Some(IncomingRequest::new(
                    message,
                    self.stream.link.clone(),
                )));
            }
            match self.stream.poll_batch(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(Batch { messages, .. }))) => self.buffered.extend(messages),
            }
        }
    }
}

impl Stream for Responder {
    type Item = Result<IncomingRequest, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_request(cx)
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("id", &self.stream.id())
            .field("pattern", &self.pattern)
            .finish()
    }
}

/// One request a responder received: its topic, key, headers and payload
/// ([`IncomingRequest::message`]), and the right to answer it.
pub struct IncomingRequest {
    message: Delivered,
    token: String,
    link: Arc<Link>,
}

impl IncomingRequest {
    /// Takes the reply token out of `message`'s headers.
    fn new(mut message: Delivered, link: Arc<Link>) -> Result<IncomingRequest, ClientError> {
        let at = message
            .headers
            .iter()
            .position(|(name, _)| name == REPLY_HEADER)
            .ok_or_else(|| {
                ClientError::Protocol(format!(
                    "a request on {:?} came without its {REPLY_HEADER} header",
                    message.topic
                ))
            })?;
        let (_, token) = message.headers.remove(at);
        Ok(IncomingRequest {
            message,
            token,
            link,
        })
    }

    /// The request: topic, key, headers and payload (offset 0: not stored).
    pub fn message(&self) -> &Delivered {
        &self.message
    }

    /// Answers with `payload`. The first reply of all its responders
    /// reaches the requester; a later one fails with code `not_waiting`,
    /// as does one after the request timed out.
    pub async fn reply(&self, payload: impl Into<Bytes>) -> Result<(), ClientError> {
        self.reply_with(Reply {
            headers: Vec::new(),
            payload: payload.into(),
        })
        .await
    }

    /// Answers with a reply that has headers.
    pub async fn reply_with(&self, reply: Reply) -> Result<(), ClientError> {
        self.answer(Ok(reply)).await
    }

    /// Answers with an error: the requester fails with code
    /// `responder_error` and `message`.
    pub async fn reply_error(&self, message: impl Into<String>) -> Result<(), ClientError> {
        self.answer(Err(message.into())).await
    }

    async fn answer(&self, reply: Result<Reply, String>) -> Result<(), ClientError> {
        let body = RequestBody::Reply(ReplyTo {
            token: self.token.clone(),
            reply,
        });
        match self.link.request(body).await? {
            ResponseBody::ReplySent => Ok(()),
            other => Err(ClientError::unexpected_response(other)),
        }
    }
}

impl std::ops::Deref for IncomingRequest {
    type Target = Delivered;

    fn deref(&self) -> &Delivered {
        &self.message
    }
}

impl std::fmt::Debug for IncomingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingRequest")
            .field("topic", &self.message.topic)
            .field("payload_bytes", &self.message.payload.len())
            .finish()
    }
}
