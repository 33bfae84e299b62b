//! The web console: pages for topics, groups, dead letters and plugins,
//! served by the admin listener at `/` (off with `[admin] console =
//! false`).
//!
//! The page is one embedded HTML file with a script and a style sheet
//! ([`assets`]): nothing is built and nothing loads from the internet. It
//! renders what the JSON API under `/api/` answers and polls it every
//! second for live values. Every API call goes through a [`Signed`]
//! session ([`session`]) and is checked with [`crate::auth::authorize`]
//! against the principal's rights, as the same request over QUIC would be.
//!
//! # Layout
//!
//! - [`session`] - sign-in, cookies, CSRF.
//! - [`rates`] - rates over the last minutes, sampled once a second.
//! - [`overview`], [`topics`], [`groups`], [`dead_letters`], [`plugins`] -
//!   one page each.
//! - [`assets`] - the embedded page and its security headers.
//! - [`error`] - [`ConsoleError`] and its JSON body.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::broker::Broker;

mod assets;
mod dead_letters;
mod error;
mod groups;
mod ledger;
mod overview;
mod plugins;
mod rates;
mod session;
mod topics;

pub use error::ConsoleError;
pub use session::{Signed, COOKIE, CSRF_HEADER};

/// Largest request body the admin listener takes (a test message, a
/// selection of dead letters).
pub const MAX_BODY: usize = 1024 * 1024;

/// What the console's handlers share.
pub struct Console {
    broker: Broker,
    auth: Arc<Auth>,
    sessions: session::Sessions,
    rates: rates::Rates,
    ledger: tokio::sync::Mutex<ledger::Ledger>,
    /// Sign-ins checked at once; more are refused as busy (token checks
    /// are argon2 hashes on the pool QUIC sign-ins also use).
    sign_ins: tokio::sync::Semaphore,
    allow_remote: bool,
}

impl Console {
    /// A console over `broker`; samples rates until `shutdown`.
    pub fn start(
        broker: Broker,
        auth: Arc<Auth>,
        allow_remote: bool,
        shutdown: CancellationToken,
    ) -> Arc<Console> {
        let console = Arc::new(Console {
            broker,
            auth,
            sessions: session::Sessions::default(),
            rates: rates::Rates::default(),
            ledger: tokio::sync::Mutex::default(),
            sign_ins: tokio::sync::Semaphore::new(1),
            allow_remote,
        });
        tokio::spawn(rates::sample(console.clone(), shutdown));
        console
    }
}

/// The console's routes (the page and `/api/`).
pub fn routes(console: Arc<Console>) -> Router {
    let api = Router::new()
        .route(
            "/session",
            get(session::current)
                .post(session::sign_in)
                .delete(session::sign_out),
        )
        .route("/overview", get(overview::show))
        .route("/topics", get(topics::list))
        .route("/topics/{name}", get(topics::show))
        .route(
            "/topics/{name}/messages",
            get(topics::messages).post(topics::publish),
        )
        .route("/groups", get(groups::list))
        .route("/groups/{name}", get(groups::show))
        .route("/groups/{name}/reset", post(groups::reset))
        .route("/dead-letters", get(dead_letters::list))
        .route("/dead-letters/{topic}", get(dead_letters::show))
        .route("/dead-letters/{topic}/redrive", post(dead_letters::redrive))
        .route("/dead-letters/{topic}/discard", post(dead_letters::discard))
        .route("/plugins", get(plugins::show))
        .fallback(|| async {
            ConsoleError::NotFound("no such console API; see ARCHITECTURE.md".into())
        })
        .layer(axum::middleware::map_response(no_store));
    Router::new()
        .nest("/api", api)
        .route("/", get(assets::page))
        .route("/console.js", get(assets::script))
        .route("/console.css", get(assets::style))
        .route("/favicon.ico", get(assets::icon))
        // Matched routes only: an unknown path stays a plain 404.
        .route_layer(axum::middleware::from_fn_with_state(
            console.clone(),
            local_only,
        ))
        .layer(axum::middleware::map_response(assets::security_headers))
        .with_state(console)
}

async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// Without auth, the console answers loopback clients that name it by a
/// loopback host (a page of another site that resolves its own name to
/// 127.0.0.1 is refused), unless `console_allow_remote`.
async fn local_only(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if console.auth.required() || console.allow_remote {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    // `::ffff:127.0.0.1` on a dual-stack listener is loopback too.
    if peer.ip().to_canonical().is_loopback() && loopback_host(host) {
        next.run(request).await
    } else {
        ConsoleError::LocalOnly.into_response()
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::loopback_host;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost",
            "localhost:9464",
            "127.0.0.1:9464",
            "127.1.2.3",
            "[::1]:9464",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:9464",
            "10.0.0.1:9464",
            "[::2]:1",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }
}
