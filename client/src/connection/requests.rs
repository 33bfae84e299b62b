//! The requests of a connection that wait for their answers, and what a
//! lost connection hands over to the next one.
//!
//! A request says whether it may go to another connection ([`Resend`]).
//! When the connection is lost, the requests written and unanswered that
//! may be carried out twice (publishes, reads), and those submitted after
//! the loss, are kept in id order ([`Unanswered`]) for the link to send
//! on its next connection, where their callers get their answers. The
//! others fail with the loss. A connection that ends for good (closed by
//! the application, refused by the broker) fails them all.

use std::collections::BTreeMap;

use bytes::Bytes;
use sluice_proto::{ErrorCode, Response, ResponseBody};
use tokio::sync::oneshot;

use crate::error::ClientError;

/// Whether a request may be sent on another connection than its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resend {
    /// Never: it answers something of its connection (a settlement, the
    /// opening of a stream).
    Never,
    /// If its connection was gone before it was written.
    Unsent,
    /// Also if it was written and not answered: carrying it out twice is
    /// harmless (reads; publishes, whose messages carry ids). A refusal
    /// because the broker is shutting down counts as no answer.
    Unanswered,
}

/// A request waiting for its answer.
struct Waiting {
    /// Its frame, to send again on another connection.
    frame: Bytes,
    resend: Resend,
    reply: oneshot::Sender<Result<ResponseBody, ClientError>>,
}

/// A request's answer, from its connection or the one it went to next.
pub(crate) struct Reply(oneshot::Receiver<Result<ResponseBody, ClientError>>);

impl Reply {
    /// The response, or why none will come.
    pub(crate) async fn answer(self) -> Result<ResponseBody, ClientError> {
        // Dropped unanswered only with the client's link.
        self.0.await.unwrap_or(Err(ClientError::Closed))
    }
}

/// Requests for the next connection, in the order they were first asked
/// for (by id).
#[derive(Default)]
pub(crate) struct Unanswered(BTreeMap<u64, Waiting>);

impl Unanswered {
    /// Adds a request not sent yet; its answer comes once it is.
    pub(crate) fn hold(&mut self, id: u64, frame: Bytes, resend: Resend) -> Reply {
        let (reply, rx) = oneshot::channel();
        self.0.insert(
            id,
            Waiting {
                frame,
                resend,
                reply,
            },
        );
        Reply(rx)
    }

    /// Fails every request with the error `error` makes.
    pub(crate) fn fail(self, error: impl Fn() -> ClientError) {
        for waiting in self.0.into_values() {
            let _ = waiting.reply.send(Err(error()));
        }
    }

    /// Adds `other`'s requests.
    pub(crate) fn extend(&mut self, other: Unanswered) {
        self.0.extend(other.0);
    }

    /// How many there are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where a submitted request went.
pub(super) enum Placed {
    /// Pending here: write its frame.
    Pending(Reply),
    /// The connection is lost: kept for the next one.
    Kept(Reply),
    /// The connection is gone and nothing is kept for the next.
    Gone,
}

/// The requests of one connection.
#[derive(Default)]
pub(super) struct Requests {
    /// Written (or being written), waiting for their response; `None` once
    /// the connection is gone.
    pending: Option<BTreeMap<u64, Waiting>>,
    /// Once the connection is lost: what goes to the next, until the link
    /// takes it.
    left: Option<Unanswered>,
}

impl Requests {
    pub(super) fn new() -> Requests {
        Requests {
            pending: Some(BTreeMap::new()),
            left: None,
        }
    }

    /// Places a request (never sent, or sent again from a lost connection).
    pub(super) fn place(&mut self, id: u64, frame: Bytes, resend: Resend) -> Placed {
        let (reply, rx) = oneshot::channel();
        let waiting = Waiting {
            frame,
            resend,
            reply,
        };
        match (&mut self.pending, &mut self.left) {
            (Some(pending), _) => {
                pending.insert(id, waiting);
                Placed::Pending(Reply(rx))
            }
            (None, Some(left)) if resend != Resend::Never => {
                left.0.insert(id, waiting);
                Placed::Kept(Reply(rx))
            }
            _ => Placed::Gone,
        }
    }

    /// Places a request of another connection here, keeping its caller:
    /// `Ok(frame)` to write, or `Err` with the request if this connection
    /// is gone too and keeps nothing.
    fn adopt(&mut self, id: u64, waiting: Waiting) -> Result<Option<Bytes>, Waiting> {
        match (&mut self.pending, &mut self.left) {
            (Some(pending), _) => {
                let frame = waiting.frame.clone();
                pending.insert(id, waiting);
                Ok(Some(frame))
            }
            (None, Some(left)) => {
                left.0.insert(id, waiting);
                Ok(None)
            }
            _ => Err(waiting),
        }
    }

    /// Hands a response to its caller; a refusal because the broker is
    /// shutting down leaves a request that may go again waiting.
    pub(super) fn answer(&mut self, response: Response) {
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        let shutting_down =
            matches!(&response.result, Err(e) if e.error_code() == Some(ErrorCode::ShuttingDown));
        let again = pending
            .get(&response.id)
            .is_some_and(|w| w.resend == Resend::Unanswered);
        if shutting_down && again {
            return;
        }
        if let Some(waiting) = pending.remove(&response.id) {
            let _ = waiting
                .reply
                .send(response.result.map_err(ClientError::Server));
        }
    }

    /// The connection is gone: if `lost`, keeps what may go again for the
    /// next connection; every other request fails with `error`'s error.
    pub(super) fn end(&mut self, lost: bool, error: impl Fn() -> ClientError) {
        let pending = self.pending.take().unwrap_or_default();
        let mut left = Unanswered::default();
        for (id, waiting) in pending {
            if lost && waiting.resend == Resend::Unanswered {
                left.0.insert(id, waiting);
            } else {
                let _ = waiting.reply.send(Err(error()));
            }
        }
        if lost {
            self.left = Some(left);
        }
    }

    /// What the lost connection leaves for the next; nothing is kept here
    /// after this.
    pub(super) fn take_left(&mut self) -> Unanswered {
        self.left.take().unwrap_or_default()
    }

    /// Places `unanswered` here, in id order; a frame over `max_frame_bytes`
    /// fails. Returns the frames to write, and what this connection, gone
    /// too, cannot keep.
    pub(super) fn adopt_all(
        &mut self,
        unanswered: Unanswered,
        max_frame_bytes: u32,
    ) -> (Vec<Bytes>, Unanswered) {
        let mut frames = Vec::with_capacity(unanswered.len());
        let mut refused = Unanswered::default();
        for (id, waiting) in unanswered.0 {
            let len = (waiting.frame.len() - sluice_proto::frame::LENGTH_PREFIX_BYTES) as u64;
            if len > u64::from(max_frame_bytes) {
                let too_large = sluice_proto::CodecError::TooLarge {
                    len,
                    max: max_frame_bytes,
                };
                let _ = waiting.reply.send(Err(too_large.into()));
                continue;
            }
            match self.adopt(id, waiting) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => {}
                Err(waiting) => {
                    refused.0.insert(id, waiting);
                }
            }
        }
        (frames, refused)
    }
}

#[cfg(test)]
mod tests {
    use sluice_proto::ErrorBody;

    use super::*;

    fn frame(id: u64) -> Bytes {
        Bytes::from(format!("....{id}"))
    }

    fn pending(placed: Placed) -> Reply {
        match placed {
            Placed::Pending(reply) => reply,
            _ => panic!("expected the request to be pending"),
        }
    }

    fn response(id: u64, result: Result<ResponseBody, ErrorBody>) -> Response {
        Response { id, result }
    }

    fn answered(reply: &mut Reply) -> Option<Result<ResponseBody, ClientError>> {
        reply.0.try_recv().ok()
    }

    #[test]
    fn a_lost_connection_keeps_what_may_go_again_in_order() {
        let mut requests = Requests::new();
        let mut read = pending(requests.place(1, frame(1), Resend::Unanswered));
        let mut admin = pending(requests.place(2, frame(2), Resend::Unsent));
        let mut settle = pending(requests.place(3, frame(3), Resend::Never));
        let mut publish = pending(requests.place(4, frame(4), Resend::Unanswered));
        // The broker refuses the publish as it shuts down: it stays.
        requests.answer(response(
            4,
            Err(ErrorBody::new(ErrorCode::ShuttingDown, "bye")),
        ));
        assert!(answered(&mut publish).is_none());

        requests.end(true, || ClientError::Closed);
        assert!(matches!(answered(&mut admin), Some(Err(_))));
        assert!(matches!(answered(&mut settle), Some(Err(_))));
        // Asked after the loss, before the link took over: kept too, but
        // not what must stay on this connection.
        let _late = match requests.place(5, frame(5), Resend::Unsent) {
            Placed::Kept(reply) => reply,
            _ => panic!("expected the request to be kept"),
        };
        assert!(matches!(
            requests.place(6, frame(6), Resend::Never),
            Placed::Gone
        ));

        let left = requests.take_left();
        assert_eq!(left.0.keys().copied().collect::<Vec<_>>(), [1, 4, 5]);
        // Nothing more is kept once the link took it.
        assert!(matches!(
            requests.place(7, frame(7), Resend::Unanswered),
            Placed::Gone
        ));

        let mut next = Requests::new();
        let (frames, refused) = next.adopt_all(left, 1024);
        assert_eq!(frames, [frame(1), frame(4), frame(5)]);
        assert!(refused.is_empty());
        next.answer(response(1, Ok(ResponseBody::Pong)));
        assert!(matches!(answered(&mut read), Some(Ok(ResponseBody::Pong))));
    }

    #[test]
    fn a_connection_ended_for_good_fails_everything() {
        let mut requests = Requests::new();
        let mut read = pending(requests.place(1, frame(1), Resend::Unanswered));
        requests.end(false, || ClientError::Closed);
        assert!(matches!(
            answered(&mut read),
            Some(Err(ClientError::Closed))
        ));
        assert!(matches!(
            requests.place(2, frame(2), Resend::Unanswered),
            Placed::Gone
        ));
        assert!(requests.take_left().is_empty());
    }

    #[test]
    fn a_frame_over_the_next_brokers_limit_fails_and_a_gone_connection_hands_back() {
        let mut left = Unanswered::default();
        let mut big = left.hold(1, Bytes::from(vec![0u8; 100]), Resend::Unanswered);
        let _small = left.hold(2, frame(2), Resend::Unanswered);
        let mut gone = Requests::new();
        gone.end(false, || ClientError::Closed);
        let (frames, refused) = gone.adopt_all(left, 50);
        assert!(frames.is_empty());
        assert!(matches!(
            answered(&mut big),
            Some(Err(ClientError::Codec(
                sluice_proto::CodecError::TooLarge { .. }
            )))
        ));
        assert_eq!(refused.len(), 1);
    }
}
