//! The admin listener: HTTP/1.1 (axum on hyper) on `[admin] listen`,
//! loopback by default:
//!
//! - `GET /metrics`: Prometheus / OpenMetrics text ([`crate::metrics`]).
//! - `GET /healthz`: `200 ok` while the broker serves, `503` once it is
//!   shutting down.
//! - the web console at `/` ([`crate::console`]), unless `[admin] console
//!   = false`.
//!
//! `/metrics` and `/healthz` carry no credentials and change nothing; the
//! console signs in with a sluice token. Request heads are limited by
//! hyper, request bodies to [`crate::console::MAX_BODY`], and a request
//! that takes longer than [`REQUEST_TIMEOUT`] is answered 503.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::console::Console;

/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open connections get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Admin {
    broker: Broker,
    shutdown: CancellationToken,
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    broker: Broker,
    console: Option<Arc<Console>>,
    shutdown: CancellationToken,
) {
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(Admin {
            broker,
            shutdown: shutdown.clone(),
        });
    app = match console {
        Some(console) => app.merge(crate::console::routes(console)),
        None => app.fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: try /metrics or /healthz\n",
            )
        }),
    };
    let app = app
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::console::MAX_BODY,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ));
    let stopping = shutdown.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { stopping.cancelled().await });
    let drained = async {
        shutdown.cancelled().await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        result = server => {
            if let Err(e) = result {
                tracing::warn!(error = %e, "admin listener failed");
            }
        }
        () = drained => tracing::debug!("admin connections did not finish in time; closed"),
    }
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    let broker = &admin.broker;
    let state = crate::metrics::State {
        topics: broker.list_topics().await,
        groups: broker.list_groups().await,
        plugins: broker.plugins().status(),
        spans: {
            let c = broker.observer().spans.counts();
            [c.exported, c.dropped, c.failed]
        },
        record: {
            let r = broker.observer().record.size();
            [r.messages as u64, r.bytes as u64]
        },
        rollbacks: crate::plugin::rollout::ROLLBACKS.load(std::sync::atomic::Ordering::Relaxed),
    };
    let body = broker.metrics().render(&state);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

async fn healthz(State(admin): State<Admin>) -> (StatusCode, &'static str) {
    if admin.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}
