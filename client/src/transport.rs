//! QUIC transport settings shared by the client and the broker.
//!
//! Two levers, measured with `sluice bench pubsub` on loopback (2 cores):
//!
//! - Socket buffers: the kernel's default UDP receive buffer (~208 KiB)
//!   overflowed under bursts (`netstat -su` receive buffer errors), and each
//!   drop cost a QUIC loss recovery: p50 delivery latency at 1 KiB fell
//!   from ~120 ms to ~7 ms with 4 MiB buffers.
//! - Datagram size: per-packet costs (AEAD, headers, skbs) dominate small
//!   messages. Both ends accept UDP payloads up to [`MAX_UDP_PAYLOAD`] and
//!   MTU discovery searches up to it; on a 1500-byte path discovery stops at
//!   what the path carries, so this is safe everywhere. 4096 gave +10-50%
//!   over quinn's 1452 (1 KiB: ~230k -> ~350k msg/s); 8 KiB and above
//!   collapsed into losses and retransmits here, so the bound stays at 4 KiB.

use std::net::SocketAddr;

/// Largest UDP payload accepted from peers and probed for.
pub const MAX_UDP_PAYLOAD: u16 = 4096;

/// Endpoint settings: accept large datagrams.
pub fn endpoint_config() -> std::io::Result<quinn::EndpointConfig> {
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .map_err(|e| std::io::Error::other(format!("UDP payload size {MAX_UDP_PAYLOAD}: {e}")))?;
    Ok(config)
}

/// Transport settings every sluice connection gets (callers add their
/// stream limits and timeouts).
pub fn transport_config() -> quinn::TransportConfig {
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    let mut transport = quinn::TransportConfig::default();
    transport.mtu_discovery_config(Some(mtu));
    transport
}

/// UDP socket buffers asked for (the kernel caps them at
/// `net.core.rmem_max` / `wmem_max`). The default (~208 KiB) overflows
/// under a burst of full-size datagrams, and every drop costs a QUIC loss
/// recovery.
pub const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// A UDP socket bound to `addr` with large buffers (best effort).
fn socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        // Dual-stack where the platform allows, like std's bind.
        let _ = socket.set_only_v6(false);
    }
    for (what, result) in [
        ("receive", socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES)),
        ("send", socket.set_send_buffer_size(SOCKET_BUFFER_BYTES)),
    ] {
        if let Err(e) = result {
            tracing::debug!(error = %e, "cannot enlarge the UDP {what} buffer");
        }
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A QUIC endpoint bound to `addr` with [`endpoint_config`] and large
/// socket buffers, serving `server` if given.
pub fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let socket = socket(addr)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for QUIC (run inside tokio)"))?;
    quinn::Endpoint::new(endpoint_config()?, server, socket, runtime)
}
