//! HTTP to the admin listener (`/metrics`, `/healthz`, the console's API)
//! with ureq on the blocking pool, every call bounded by [`crate::WAIT`].
//!
//! [`Http`] keeps a console session as a browser would: the cookie the
//! broker set, and the CSRF token `/api/session` answered, which it sends
//! on every action unless told not to.

use std::net::SocketAddr;

use serde_json::Value;
use ureq::http::{Method, Request};

use crate::wait::bounded;

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The console error's `code`, if the body is one.
    pub fn code(&self) -> Option<String> {
        self.json()["code"].as_str().map(str::to_owned)
    }

    /// The first header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A client of one admin listener, with a console session once signed in.
#[derive(Debug, Clone)]
pub struct Http {
    base: String,
    agent: ureq::Agent,
    /// `name=value` of the session cookie.
    pub cookie: Option<String>,
    /// The session's CSRF token.
    pub csrf: Option<String>,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(crate::WAIT))
            .build()
            .into();
        Http {
            base: format!("http://{addr}"),
            agent,
            cookie: None,
            csrf: None,
        }
    }

    /// A request with exactly these headers (no cookie or CSRF token added).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("a method"))
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                json.to_string()
            }
            None => String::new(),
        };
        let request = request.body(body).expect("a request");
        let agent = self.agent.clone();
        let what = format!("{method} {path}");
        let call = tokio::task::spawn_blocking(move || {
            let response = agent.run(request)?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let body = response.into_body().read_to_string()?;
            Ok::<_, ureq::Error>(Reply {
                status,
                headers,
                body,
            })
        });
        bounded(&what, call)
            .await
            .expect("the request task ran")
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// A GET with the session's cookie.
    pub async fn get(&self, path: &str) -> Reply {
        let cookie = self.cookie.clone().unwrap_or_default();
        let headers: Vec<(&str, &str)> = if cookie.is_empty() {
            Vec::new()
        } else {
            vec![("cookie", cookie.as_str())]
        };
        self.raw("GET", path, &headers, None).await
    }

    /// An action with the session's cookie and CSRF token.
    pub async fn act(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let cookie = self.cookie.clone().unwrap_or_default();
        let csrf = self.csrf.clone().unwrap_or_default();
        self.raw(
            method,
            path,
            &[("cookie", &cookie), ("x-sluice-csrf", &csrf)],
            body,
        )
        .await
    }

    fn keep_session(&mut self, reply: &Reply) {
        if let Some(set) = reply.header("set-cookie") {
            self.cookie = set.split(';').next().map(str::to_owned);
        }
        if let Some(csrf) = reply.json()["csrf"].as_str() {
            self.csrf = Some(csrf.to_owned());
        }
    }

    /// `POST /api/session` with `token`; keeps the session if it opened.
    pub async fn sign_in(&mut self, token: &str) -> Reply {
        let reply = self
            .raw(
                "POST",
                "/api/session",
                &[],
                Some(serde_json::json!({ "token": token })),
            )
            .await;
        if reply.status == 200 {
            self.keep_session(&reply);
        }
        reply
    }

    /// `GET /api/session`: without auth this opens a session, kept here.
    pub async fn session(&mut self) -> Reply {
        let reply = self.get("/api/session").await;
        if reply.status == 200 {
            self.keep_session(&reply);
        }
        reply
    }
}
