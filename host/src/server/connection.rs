//! One client connection up to its session: TLS and ALPN, the connection
//! limit, the Hello handshake, authentication and the principal's slot,
//! then [`Session`] serves the requests; at the end the client is told why
//! the connection closes.

use std::sync::Arc;

use bytes::Bytes;
use rustls::pki_types::CertificateDer;
use sluice_client::wire::FrameReader;
use sluice_proto::{
    frame, ClientFrame, ErrorBody, ErrorCode, ServerFrame, Welcome, PROTOCOL_VERSION,
};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::session::{wire_error_body, Close, Session};
use super::Shared;
use crate::auth::Principal;

/// How long a finished control stream may take to reach the client before
/// the connection is closed anyway.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves one incoming connection until it ends.
pub(crate) async fn handle(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let peer = incoming.remote_address();
    let span = tracing::info_span!("connection", %peer);
    async move {
        let timeout = shared.config.limits.handshake_timeout;
        let conn = match tokio::time::timeout(timeout, incoming).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return;
            }
        };
        let alpn = conn
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.protocol);
        if alpn.as_deref() != Some(sluice_proto::ALPN) {
            close_with(
                &conn,
                &ErrorBody::new(ErrorCode::ProtocolViolation, "ALPN sluice/1 is required"),
            );
            return;
        }
        let Ok(_slot) = shared.connection_slots.clone().try_acquire_owned() else {
            let error = ErrorBody::new(
                ErrorCode::LimitExceeded,
                format!(
                    "too many connections (limits.max_connections = {})",
                    shared.config.limits.max_connections
                ),
            );
            if let Some(held) = shared.auth.log_limit.allow() {
                tracing::warn!(held_back = held, "{}", error.message);
            }
            shared.broker.metrics().connection_refused();
            shared.broker.metrics().limit_hit("max_connections");
            close_with(&conn, &error);
            return;
        };
        let _counted = shared.broker.metrics().connection();
        serve(conn, &shared).await;
    }
    .instrument(span)
    .await
}

fn close_with(conn: &quinn::Connection, error: &ErrorBody) {
    conn.close(u32::from(error.code).into(), error.message.as_bytes());
}

async fn serve(conn: quinn::Connection, shared: &Arc<Shared>) {
    let limits = &shared.config.limits;
    let max_frame = limits.max_frame_bytes;
    let handshake = async {
        let (send, recv) = conn.accept_bi().await.ok()?;
        let mut reader = FrameReader::new(recv, max_frame);
        let first = reader.next_body().await;
        Some((send, reader, first))
    };
    let (send, mut reader, first) =
        match tokio::time::timeout(limits.handshake_timeout, handshake).await {
            Ok(Some(x)) => x,
            Ok(None) => return,
            Err(_) => {
                tracing::info!("no Hello within the handshake timeout; closing");
                close_with(
                    &conn,
                    &ErrorBody::new(
                        ErrorCode::HandshakeRequired,
                        format!(
                            "no Hello within {:?} (limits.handshake_timeout)",
                            limits.handshake_timeout
                        ),
                    ),
                );
                return;
            }
        };
    let (writer, queue) = mpsc::channel::<Bytes>(limits.max_in_flight_requests + 16);
    let writer_task = tokio::spawn(write_control(send, queue));

    let hello = match first {
        Ok(Some(body)) => match frame::decode_body::<ClientFrame>(&body) {
            Ok(ClientFrame::Hello(hello)) => Ok(hello),
            Ok(ClientFrame::Request(_)) => Err(ErrorBody::new(
                ErrorCode::HandshakeRequired,
                "the first frame must be Hello",
            )),
            Err(e) => Err(ErrorBody::new(
                ErrorCode::MalformedFrame,
                format!("expected Hello: {e}"),
            )),
        },
        Ok(None) => Err(ErrorBody::new(
            ErrorCode::HandshakeRequired,
            "control stream ended before Hello",
        )),
        Err(e) => Err(wire_error_body(&e)),
    };
    let outcome = match hello {
        Ok(hello) if hello.version != PROTOCOL_VERSION => Close::Refused(ErrorBody::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "client speaks protocol version {}, this broker {}",
                hello.version, PROTOCOL_VERSION
            ),
        )),
        Ok(hello) => match admit(&conn, shared, &hello).await {
            Err(error) => Close::RefusedQuietly(error),
            Ok((principal, _slot)) => {
                tracing::info!(client = %hello.client_name, principal = %principal.name, "client connected");
                // The features of the Hello this broker knows, echoed.
                let features: Vec<String> = hello
                    .features
                    .iter()
                    .filter(|f| {
                        [
                            sluice_proto::FEATURE_COMPACT_DELIVERY,
                            sluice_proto::FEATURE_COMPACT_PUBLISH,
                        ]
                        .contains(&f.as_str())
                    })
                    .cloned()
                    .collect();
                let compact = features
                    .iter()
                    .any(|f| f == sluice_proto::FEATURE_COMPACT_DELIVERY);
                let welcome = ServerFrame::Welcome(Welcome {
                    version: PROTOCOL_VERSION,
                    server: format!("sluice/{}", env!("CARGO_PKG_VERSION")),
                    max_frame_bytes: max_frame,
                    features,
                });
                let sent = match frame::encode(&welcome, max_frame) {
                    Ok(bytes) => writer.send(bytes).await.is_ok(),
                    Err(_) => false,
                };
                if sent {
                    Session::new(
                        conn.clone(),
                        shared.clone(),
                        writer.clone(),
                        hello.client_name.clone(),
                        principal,
                        compact,
                    )
                    .run(&mut reader)
                    .await
                } else {
                    Close::Client
                }
            }
        },
        Err(error) => Close::Refused(error),
    };

    // Tell the client why, then close.
    let close = match outcome {
        Close::Client => None,
        Close::Shutdown => Some(ErrorBody::new(
            ErrorCode::ShuttingDown,
            "broker is shutting down",
        )),
        Close::Refused(error) => {
            tracing::info!(code = error.code, reason = %error.message, "refusing client");
            Some(error)
        }
        Close::RefusedQuietly(error) => Some(error),
    };
    if let Some(error) = &close {
        // Requests the client sent but the broker never read fail with this.
        if let Ok(bytes) = frame::encode(&ServerFrame::Error(error.clone()), max_frame) {
            let _ = writer.send(bytes).await;
        }
    }
    drop(writer);
    let _ = writer_task.await;
    match close {
        Some(error) => close_with(&conn, &error),
        None => conn.close(0u32.into(), b"bye"),
    }
    tracing::debug!("connection closed");
}

/// Authenticates the client of `hello` and takes a connection slot of its
/// principal; refusals are counted and logged at a rate limit.
async fn admit(
    conn: &quinn::Connection,
    shared: &Shared,
    hello: &sluice_proto::Hello,
) -> Result<(Arc<Principal>, crate::auth::PrincipalSlot), ErrorBody> {
    let auth = &shared.auth;
    let metrics = shared.broker.metrics();
    let certs = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok());
    let principal = match auth
        .authenticate(hello.token.as_deref(), certs.as_deref().map(Vec::as_slice))
        .await
    {
        Ok(principal) => principal,
        Err(failure) => {
            metrics.auth_failed(failure.reason);
            if let Some(held) = auth.log_limit.allow() {
                tracing::warn!(client = %hello.client_name, reason = failure.reason, held_back = held, "refusing unauthenticated client: {}", failure.message);
            }
            return Err(failure.to_body());
        }
    };
    match auth.open_connection(&principal) {
        Ok(slot) => Ok((principal, slot)),
        Err(message) => {
            metrics.limit_hit("max_connections_per_principal");
            if let Some(held) = auth.log_limit.allow() {
                tracing::warn!(principal = %principal.name, held_back = held, "refusing connection: {message}");
            }
            Err(ErrorBody::new(ErrorCode::LimitExceeded, message))
        }
    }
}

/// Writes queued frames to the control stream, coalescing what is queued,
/// and finishes the stream when every sender is gone.
async fn write_control(mut send: quinn::SendStream, mut queue: mpsc::Receiver<Bytes>) {
    let mut batch = Vec::with_capacity(64);
    while queue.recv_many(&mut batch, 64).await > 0 {
        if send.write_all_chunks(&mut batch).await.is_err() {
            return;
        }
        batch.clear();
    }
    if send.finish().is_ok() {
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, send.stopped()).await;
    }
}
