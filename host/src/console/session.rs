//! Console sessions: sign-in with a sluice token, an HttpOnly cookie that
//! names the session, and a CSRF token every action must carry.
//!
//! The token is sent once, in the body of `POST /api/session`, and checked
//! by [`Auth`] as a QUIC client's would be; the session then holds the
//! principal. The cookie is `HttpOnly` and `SameSite=Strict`; actions
//! (every method but GET) also need the header [`CSRF_HEADER`] with the
//! session's CSRF token, which the page gets from `GET /api/session`, and
//! are refused when `Origin` or `Sec-Fetch-Site` says another site sent
//! them. Without auth (`auth.mode = "none"`) the first `GET /api/session`
//! opens a session as the anonymous principal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::error::{bad_request, ConsoleError};
use super::Console;
use crate::auth::{authorize, Action, AdminRight, Auth, Principal};
use crate::sync::lock;

/// The session cookie's name.
pub const COOKIE: &str = "sluice_console";
/// The header that carries the CSRF token on actions.
pub const CSRF_HEADER: &str = "x-sluice-csrf";
/// A session ends this long after sign-in.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at once, and per principal: signing in past either ends
/// the oldest one (the principal's own first), so that a principal signing
/// in again and again ends no one else's session.
const MAX_SESSIONS: usize = 4096;
const MAX_SESSIONS_PER_PRINCIPAL: usize = 64;

struct Entry {
    principal: Arc<Principal>,
    csrf: String,
    started: Instant,
}

/// The open sessions, by the SHA-256 of their cookie value (a leaked
/// memory dump holds no usable cookie).
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<[u8; 32], Entry>>);

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// 32 random bytes, URL-safe base64.
fn random_token() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    /// Opens a session; returns its cookie value and CSRF token.
    fn open(&self, principal: Arc<Principal>) -> (String, String) {
        let (id, csrf) = (random_token(), random_token());
        let mut map = lock(&self.0);
        map.retain(|_, e| e.started.elapsed() < LIFETIME);
        let own = |e: &Entry| e.principal.name == principal.name;
        let oldest = |map: &HashMap<[u8; 32], Entry>, only_own: bool| {
            map.iter()
                .filter(|(_, e)| !only_own || own(e))
                .min_by_key(|(_, e)| e.started)
                .map(|(k, _)| *k)
        };
        let evict = if map.values().filter(|e| own(e)).count() >= MAX_SESSIONS_PER_PRINCIPAL {
            oldest(&map, true)
        } else if map.len() >= MAX_SESSIONS {
            oldest(&map, false)
        } else {
            None
        };
        if let Some(key) = evict {
            map.remove(&key);
        }
        map.insert(
            digest(&id),
            Entry {
                principal,
                csrf: csrf.clone(),
                started: Instant::now(),
            },
        );
        (id, csrf)
    }

    fn find(&self, id: &str) -> Option<(Arc<Principal>, String)> {
        let map = lock(&self.0);
        let entry = map.get(&digest(id))?;
        (entry.started.elapsed() < LIFETIME).then(|| (entry.principal.clone(), entry.csrf.clone()))
    }

    fn close(&self, id: &str) {
        lock(&self.0).remove(&digest(id));
    }
}

/// A request from a signed-in session (and, for actions, with its CSRF
/// token): what handlers take to know who asks.
pub struct Signed {
    pub principal: Arc<Principal>,
    id: String,
    csrf: String,
}

impl Signed {
    /// [`authorize`], counted in the broker's denial metric when refused.
    pub fn check(
        &self,
        console: &Console,
        action: Action,
        target: &str,
    ) -> Result<(), ConsoleError> {
        authorize(&self.principal, action, target).map_err(|denied| {
            console.broker.metrics().denied(denied.action.label());
            ConsoleError::Forbidden(denied.to_string())
        })
    }

    /// Whether the principal holds an admin right (no metric: for what a
    /// page shows, not for an action).
    pub fn may(&self, right: AdminRight) -> bool {
        self.principal.permissions.may_admin(right)
    }
}

/// Whether an action came from another site, by the headers browsers set.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if site != "same-origin" && site != "none" {
            return true;
        }
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (Some(origin), Some(host)) => {
            let origin = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            origin != Some(host)
        }
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn same_bytes(a: &str, b: &str) -> bool {
    // Compared as digests: no early exit on the secret's bytes.
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

impl FromRequestParts<Arc<Console>> for Signed {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Signed, ConsoleError> {
        let jar = CookieJar::from_headers(&parts.headers);
        let id = jar
            .get(COOKIE)
            .map(|c| c.value().to_owned())
            .ok_or(ConsoleError::SignedOut)?;
        let (principal, csrf) = console.sessions.find(&id).ok_or(ConsoleError::SignedOut)?;
        if parts.method != Method::GET && parts.method != Method::HEAD {
            if cross_site(&parts.headers) {
                return Err(ConsoleError::Csrf(
                    "refused: the request came from another site",
                ));
            }
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .ok_or(ConsoleError::Csrf(
                    "refused: the request lacks the x-sluice-csrf header",
                ))?;
            if !same_bytes(sent, &csrf) {
                return Err(ConsoleError::Csrf(
                    "refused: the x-sluice-csrf header does not match this session",
                ));
            }
        }
        Ok(Signed {
            principal,
            id,
            csrf,
        })
    }
}

/// What the page learns about its session.
#[derive(Debug, serde::Serialize)]
pub struct SessionInfo {
    pub principal: String,
    pub csrf: String,
    /// Whether sign-in is needed (auth on).
    pub auth: bool,
    /// The admin rights held: `topics`, `groups`, `plugins`.
    pub admin: Vec<&'static str>,
}

fn info(auth: &Auth, principal: &Principal, csrf: String) -> SessionInfo {
    SessionInfo {
        principal: principal.name.clone(),
        csrf,
        auth: auth.required(),
        admin: [AdminRight::Topics, AdminRight::Groups, AdminRight::Plugins]
            .into_iter()
            .filter(|r| principal.permissions.may_admin(*r))
            .map(AdminRight::name)
            .collect(),
    }
}

fn cookie(id: String) -> Cookie<'static> {
    Cookie::build((COOKIE, id))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(time::Duration::seconds(LIFETIME.as_secs() as i64))
        .build()
}

/// `GET /api/session`: the session, or without auth a new anonymous one.
pub async fn current(
    State(console): State<Arc<Console>>,
    jar: CookieJar,
    signed: Result<Signed, ConsoleError>,
) -> Result<Response, ConsoleError> {
    match signed {
        Ok(s) => Ok(Json(info(&console.auth, &s.principal, s.csrf)).into_response()),
        Err(ConsoleError::SignedOut) if !console.auth.required() => {
            let principal = Principal::anonymous();
            let body = info(&console.auth, &principal, String::new());
            let (id, csrf) = console.sessions.open(Arc::new(principal));
            let body = SessionInfo { csrf, ..body };
            Ok((jar.add(cookie(id)), Json(body)).into_response())
        }
        Err(e) => Err(e),
    }
}

/// The body of a sign-in.
#[derive(Debug, serde::Deserialize)]
pub struct SignIn {
    token: String,
}

/// `POST /api/session`: signs in with a token.
pub async fn sign_in(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    jar: CookieJar,
    body: Result<Json<SignIn>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ConsoleError> {
    if cross_site(&headers) {
        return Err(ConsoleError::Csrf(
            "refused: the sign-in came from another site",
        ));
    }
    let Json(body) = body.map_err(bad_request)?;
    if body.token.is_empty() {
        return Err(ConsoleError::BadRequest(
            "a token is needed to sign in".into(),
        ));
    }
    let Ok(_turn) = console.sign_ins.try_acquire() else {
        return Err(ConsoleError::Busy(
            "another sign-in is being checked; try again in a moment",
        ));
    };
    let principal = console
        .auth
        .authenticate(Some(&body.token), None)
        .await
        .map_err(|failure| {
            console.broker.metrics().auth_failed(failure.reason);
            ConsoleError::Unauthorized(failure.message)
        })?;
    tracing::info!(principal = %principal.name, "console sign-in");
    let (id, csrf) = console.sessions.open(principal.clone());
    let body = info(&console.auth, &principal, csrf);
    Ok((jar.add(cookie(id)), Json(body)).into_response())
}

/// `DELETE /api/session`: signs out.
pub async fn sign_out(
    State(console): State<Arc<Console>>,
    jar: CookieJar,
    signed: Signed,
) -> impl IntoResponse {
    console.sessions.close(&signed.id);
    (
        StatusCode::NO_CONTENT,
        jar.remove(Cookie::build(COOKIE).path("/")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn actions_from_other_sites_are_told_apart() {
        assert!(!cross_site(&headers(&[("host", "127.0.0.1:9464")])));
        assert!(!cross_site(&headers(&[
            ("host", "127.0.0.1:9464"),
            ("origin", "http://127.0.0.1:9464"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:9464"),
            ("origin", "http://evil.example"),
        ])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:9464"),
            ("sec-fetch-site", "cross-site"),
        ])));
        assert!(cross_site(&headers(&[("origin", "null")])));
    }

    #[test]
    fn sessions_are_found_by_their_cookie_and_closed() {
        let sessions = Sessions::default();
        let (id, csrf) = sessions.open(Arc::new(Principal::anonymous()));
        assert_ne!(id, csrf);
        let (principal, found) = sessions.find(&id).expect("open session");
        assert_eq!((principal.name.as_str(), found), ("anonymous", csrf));
        assert!(sessions.find("forged").is_none());
        sessions.close(&id);
        assert!(sessions.find(&id).is_none());
    }

    #[test]
    fn one_principal_signing_in_often_ends_only_its_own_sessions() {
        let sessions = Sessions::default();
        let (other, _) = sessions.open(Arc::new(Principal::anonymous()));
        let p: crate::config::PrincipalConfig =
            toml::from_str("name = \"eager\"").expect("a principal");
        let eager = Arc::new(Principal::configured(&p));
        let (first, _) = sessions.open(eager.clone());
        for _ in 0..MAX_SESSIONS_PER_PRINCIPAL {
            sessions.open(eager.clone());
        }
        assert!(sessions.find(&first).is_none(), "its oldest ended");
        assert!(sessions.find(&other).is_some(), "another's stays");
        assert_eq!(lock(&sessions.0).len(), MAX_SESSIONS_PER_PRINCIPAL + 1);
    }
}
