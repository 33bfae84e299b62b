//! Dialing a broker: resolve its address, set up TLS and QUIC, open the
//! control stream and exchange `Hello` for `Welcome`.

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_proto::{frame, ClientFrame, Hello, ServerFrame, Welcome, PROTOCOL_VERSION};

use crate::error::ClientError;
use crate::options::ClientOptions;
use crate::tls;
use crate::wire::FrameReader;

/// Keep-alives sent within one idle timeout: one lost packet does not
/// end a live connection.
const KEEP_ALIVES_PER_IDLE_TIMEOUT: u32 = 3;

/// A connection whose handshake succeeded, before its tasks start.
pub(super) struct Established {
    pub(super) endpoint: quinn::Endpoint,
    pub(super) conn: quinn::Connection,
    /// The sending half of the control stream.
    pub(super) send: quinn::SendStream,
    /// The receiving half of the control stream, past the `Welcome`.
    pub(super) reader: FrameReader,
    pub(super) welcome: Welcome,
}

fn host_of(server: &str) -> String {
    let host = match server.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => server,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

async fn resolve(server: &str) -> Result<SocketAddr, ClientError> {
    let mut addrs = tokio::net::lookup_host(server).await.map_err(|e| {
        ClientError::Config(format!(
            "cannot resolve {server:?} (expected host:port): {e}"
        ))
    })?;
    addrs
        .next()
        .ok_or_else(|| ClientError::Config(format!("{server:?} resolves to no address")))
}

/// Dials `address` (one of `options.server`) and performs the handshake.
pub(super) async fn establish(
    options: &ClientOptions,
    address: &str,
) -> Result<Established, ClientError> {
    let trust = options.trust.as_ref().ok_or_else(|| {
        ClientError::Config(
            "no way to check the broker's certificate: give a CA file, the broker's data directory, or choose insecure"
                .into(),
        )
    })?;
    let addr = resolve(address).await?;
    let server_name = options
        .server_name
        .clone()
        .unwrap_or_else(|| host_of(address));
    tls::server_name(&server_name)?;
    let tls_config = tls::client_config(trust, options.identity.as_ref())?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls_config)
        .map_err(|e| ClientError::Config(format!("TLS set-up failed: {e}")))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = crate::transport::transport_config();
    let idle = quinn::IdleTimeout::try_from(options.idle_timeout).map_err(|e| {
        ClientError::Config(format!("idle_timeout {:?}: {e}", options.idle_timeout))
    })?;
    transport
        // A quiet broker is not a lost one: keep-alives well inside the
        // idle timeout, so that only silence of a dead node ends it.
        .keep_alive_interval(Some(options.idle_timeout / KEEP_ALIVES_PER_IDLE_TIMEOUT))
        .max_idle_timeout(Some(idle))
        .max_concurrent_uni_streams(4096u32.into())
        .max_concurrent_bidi_streams(0u32.into());
    config.transport_config(Arc::new(transport));

    let bind: SocketAddr = if addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let connect_error = |e: Box<dyn std::error::Error + Send + Sync>| ClientError::Connect {
        addr: address.to_owned(),
        source: e,
    };
    let mut endpoint =
        crate::transport::endpoint(bind, None).map_err(|e| connect_error(e.into()))?;
    endpoint.set_default_client_config(config);
    let connecting = endpoint
        .connect(addr, &server_name)
        .map_err(|e| connect_error(e.into()))?;
    let conn = tokio::time::timeout(options.connect_timeout, connecting)
        .await
        .map_err(|_| ClientError::Timeout(options.connect_timeout))?
        .map_err(|e| connect_error(e.into()))?;

    let (mut send, recv) = conn.open_bi().await?;
    let hello = frame::encode(
        &ClientFrame::Hello(Hello {
            version: PROTOCOL_VERSION,
            token: options.token.clone(),
            client_name: options.client_name.clone(),
            features: vec![
                sluice_proto::FEATURE_COMPACT_DELIVERY.into(),
                sluice_proto::FEATURE_COMPACT_PUBLISH.into(),
            ],
        }),
        sluice_proto::DEFAULT_MAX_FRAME_BYTES,
    )?;
    send.write_all(&hello).await?;
    let mut reader = FrameReader::new(recv, options.max_frame_bytes);
    let welcome = tokio::time::timeout(options.connect_timeout, reader.next_frame::<ServerFrame>())
        .await
        .map_err(|_| ClientError::Timeout(options.connect_timeout))??;
    let welcome = match welcome {
        Some(ServerFrame::Welcome(w)) => w,
        Some(ServerFrame::Error(e)) => return Err(ClientError::Server(e)),
        Some(other) => {
            return Err(ClientError::Protocol(format!(
                "expected Welcome, got {other:?}"
            )))
        }
        None => {
            return Err(ClientError::Protocol(
                "the broker closed the control stream".into(),
            ))
        }
    };
    if welcome.version != PROTOCOL_VERSION {
        return Err(ClientError::Protocol(format!(
            "broker speaks protocol version {}, this client {}",
            welcome.version, PROTOCOL_VERSION
        )));
    }
    Ok(Established {
        endpoint,
        conn,
        send,
        reader,
        welcome,
    })
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_part_of_server_addresses() {
        assert_eq!(host_of("127.0.0.1:4433"), "127.0.0.1");
        assert_eq!(host_of("[::1]:4433"), "::1");
        assert_eq!(host_of("broker.example.com:4433"), "broker.example.com");
        assert_eq!(host_of("localhost"), "localhost");
    }
}
