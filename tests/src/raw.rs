//! [`RawClient`] / [`RawControl`]: a bare QUIC connection and control
//! stream for the bad-input tests: any ALPN, any bytes, any frame, which
//! the real client never sends.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use serde::Serialize;
use sluice_client::wire::{FrameReader, WireError};
use sluice_proto::{ClientFrame, Hello, Request, RequestBody, ServerFrame, PROTOCOL_VERSION};

use crate::wait::bounded;

/// Frame limit used by the raw client when encoding and reading frames.
const RAW_MAX_FRAME_BYTES: u32 = 16 * 1024 * 1024;

/// A rustls client config trusting `cert` (PEM), TLS
/// 1.3, offering `alpn`.
pub fn raw_tls_config(cert: &Path, alpn: &[&[u8]]) -> anyhow::Result<rustls::ClientConfig> {
    let pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(der?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(config)
}

/// A bare QUIC connection to a broker, for sending what the real client never would.
pub struct RawClient {
    /// The endpoint (kept alive with the connection).
    pub endpoint: quinn::Endpoint,
    /// The connection.
    pub conn: quinn::Connection,
}

impl RawClient {
    /// Connects with ALPN `sluice/1`, trusting `cert`.
    pub async fn connect(addr: SocketAddr, cert: &Path) -> anyhow::Result<RawClient> {
        Ok(Self::connect_with_alpn(addr, cert, &[sluice_proto::ALPN]).await??)
    }

    /// Connects offering `alpn`. The outer error is a set-up failure of the
    /// harness; the inner one is how the QUIC handshake failed.
    pub async fn connect_with_alpn(
        addr: SocketAddr,
        cert: &Path,
        alpn: &[&[u8]],
    ) -> anyhow::Result<Result<RawClient, quinn::ConnectionError>> {
        let tls = raw_tls_config(cert, alpn)?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let connecting = endpoint.connect(addr, "127.0.0.1")?;
        match bounded("a QUIC handshake", connecting).await {
            Ok(conn) => Ok(Ok(RawClient { endpoint, conn })),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Opens the bidirectional control stream. Nothing reaches the broker
    /// until something is written on it.
    pub async fn open_control(&self) -> anyhow::Result<RawControl> {
        let (send, recv) = self.conn.open_bi().await?;
        Ok(RawControl {
            send,
            reader: FrameReader::new(recv, RAW_MAX_FRAME_BYTES),
        })
    }

    /// Waits (bounded) for the broker to close the connection and returns why.
    pub async fn closed(&self) -> quinn::ConnectionError {
        bounded("the broker to close the connection", self.conn.closed()).await
    }

    /// The `(error code, reason)` the broker closed the connection with, if it
    /// closed it with an application close (waits, bounded).
    pub async fn close_reason(&self) -> Option<(u64, String)> {
        match self.closed().await {
            quinn::ConnectionError::ApplicationClosed(close) => Some((
                close.error_code.into_inner(),
                String::from_utf8_lossy(&close.reason).into_owned(),
            )),
            _ => None,
        }
    }
}

impl Drop for RawClient {
    fn drop(&mut self) {
        self.conn.close(0u32.into(), b"test done");
    }
}

/// The control stream of a [`RawClient`].
pub struct RawControl {
    /// Where bytes go to the broker.
    pub send: quinn::SendStream,
    /// Frames from the broker.
    pub reader: FrameReader,
}

impl RawControl {
    /// Writes raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.send.write_all(bytes).await?;
        Ok(())
    }

    /// Encodes any serialisable value as a frame and writes it.
    pub async fn send_frame<T: Serialize>(&mut self, frame: &T) -> anyhow::Result<()> {
        let bytes: Bytes = sluice_proto::frame::encode(frame, RAW_MAX_FRAME_BYTES)?;
        self.write(&bytes).await
    }

    /// Sends a Hello of `version`.
    pub async fn send_hello(&mut self, version: u16) -> anyhow::Result<()> {
        self.send_frame(&ClientFrame::Hello(Hello {
            version,
            token: None,
            client_name: "sluice-e2e-raw".into(),
            features: Vec::new(),
        }))
        .await
    }

    /// Sends a valid Hello and expects a Welcome.
    pub async fn handshake(&mut self) -> anyhow::Result<sluice_proto::Welcome> {
        self.send_hello(PROTOCOL_VERSION).await?;
        match self.next().await? {
            Some(ServerFrame::Welcome(welcome)) => Ok(welcome),
            other => anyhow::bail!("expected Welcome, got {other:?}"),
        }
    }

    /// Sends a request.
    pub async fn send_request(&mut self, id: u64, body: RequestBody) -> anyhow::Result<()> {
        self.send_frame(&ClientFrame::Request(Request { id, body }))
            .await
    }

    /// Finishes the sending side.
    pub fn finish(&mut self) {
        let _ = self.send.finish();
    }

    /// The next frame from the broker (bounded); `Ok(None)` when the broker
    /// finished the stream.
    pub async fn next(&mut self) -> Result<Option<ServerFrame>, WireError> {
        bounded(
            "a frame from the broker",
            self.reader.next_frame::<ServerFrame>(),
        )
        .await
    }
}
