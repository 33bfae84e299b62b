//! Harness of the sluice end-to-end tests.
//!
//! # Layout
//!
//! - `broker.rs`: [`TestBroker`], a real broker (`sluice::start`) on
//!   `127.0.0.1:0` with a temporary data directory, that can be stopped and
//!   restarted on the same data, and hands out real clients
//!   (`sluice_client::Client`) that trust its self-signed certificate;
//!   [`client_options`] for clients built by hand.
//! - `raw.rs`: [`RawClient`] / [`RawControl`], a bare QUIC connection and
//!   control stream for the bad-input tests: any ALPN, any bytes, any frame.
//! - `child.rs`: [`ChildBroker`], the `sluice-under-test` binary run as a
//!   child process (crash tests), killed when dropped.
//! - `steady.rs`: [`Steady`], a well-behaved client working beside a test
//!   that misbehaves.
//! - `wait.rs`: bounded waiting, [`bounded`], [`bounded_for`] and
//!   [`wait_until`]. Every wait in the suite goes through a deadline, and a
//!   test waits for what it expects to happen, never sleeps then asserts.
//! - `messages.rs`: reading messages back, [`collect`], [`collect_until`],
//!   [`fetch_all`] ([`fetch_all_within`] for long logs), and short forms
//!   for assertions.
//! - `command.rs`: [`run_command`], the command line run to its end, bounded.
//! - `http.rs`: [`Http`], requests to the admin listener and the console's
//!   API, with a console session kept as a browser keeps it.
//! - `nats.rs` (and `nats/`): [`NatsCluster`], real nats-server 2.15
//!   processes (the binary `cargo xtask setup` installs, or
//!   [`NATS_SERVER_ENV`]) forming one JetStream cluster, each with its own
//!   store and log in a temp dir; started with [`NatsOptions`] and waited
//!   for until healthy with a meta leader; servers can be killed,
//!   restarted on the same store, paused and resumed, and asked for
//!   `/varz`, `/jsz`, the meta leader, a stream's leader and their client
//!   connections. On 127.0.0.1, or ([`Network::Namespaces`]) each in a
//!   network namespace of its own on a bridge, where one can be cut off
//!   and joined again; [`namespaces_unavailable`] says why not, here.
//! - `history/`: the history checkers. Of crash tests (`e2e/crash.rs` and
//!   the `sluice-crash-test` binary): what clients sent and were acked,
//!   what a group delivered and confirmed, checked against what the broker
//!   holds. Of cluster fault tests (`e2e/cluster_faults/`): a `Recorder`
//!   of every client operation, and `check`, the history against the
//!   topic, the dead letters and the group at the end.
//! - here: [`init_tracing`] (logs of the broker and client, filtered by
//!   `RUST_LOG`, captured per test) and [`plugin_dist`].
//!
//! Dependencies point one way: `wait`, `messages`, `history` and `nats`
//! import nothing of the harness; `broker`, `raw` and `command` use `wait`;
//! `child` and `steady` build on those.

mod broker;
mod child;
mod command;
pub mod history;
mod http;
mod messages;
mod nats;
mod otlp;
mod raw;
mod steady;
mod wait;

use std::path::{Path, PathBuf};
use std::sync::Once;

pub use broker::{client_options, TestBroker};
pub use child::{free_udp_port, ChildBroker};
pub use command::{cli_command, run_command, CommandOutput};
pub use http::{Http, Reply};
pub use messages::{collect, collect_until, fetch_all, fetch_all_within, now_ms, offsets, summary};
pub use nats::{
    namespaces_unavailable, nats_server_binary, NatsCluster, NatsOptions, Network, NATS_SERVER_ENV,
};
pub use otlp::{Collector, ReceivedSpan};
pub use raw::{raw_tls_config, RawClient, RawControl};
pub use steady::Steady;
pub use wait::{bounded, bounded_for, wait_until, WAIT};

/// A component built by `cargo xtask plugins` into `plugins/dist/`;
/// panics with the command to run when it is missing.
pub fn plugin_dist(file: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask plugins` (cargo xtask test does)",
        path.display()
    );
    path
}

/// The `test-hostile` fixture with its build stamp set to `version` (at
/// most 8 characters): a second, different version of the same plugin
/// without a second build. In the stamp modes it stamps or routes each
/// message with `version`.
pub fn stamp_build(version: &str) -> Vec<u8> {
    const MARKER_V1: &[u8] = b"SLUICE-STAMP:v1______";
    let mut bytes = std::fs::read(plugin_dist("test_hostile.wasm")).expect("fixture readable");
    let at = bytes
        .windows(MARKER_V1.len())
        .position(|w| w == MARKER_V1)
        .expect("the fixture carries its stamp marker");
    let mut marker = b"SLUICE-STAMP:".to_vec();
    marker.extend_from_slice(format!("{version:_<8}").as_bytes());
    bytes[at..at + MARKER_V1.len()].copy_from_slice(&marker);
    bytes
}

/// Initialises tracing once per test binary: `RUST_LOG` filters, output goes
/// through the test writer so it is shown only for failing tests.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
    });
}
