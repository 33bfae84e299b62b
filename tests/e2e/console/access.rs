//! Who may use the console and how: sign-in with a token, the session
//! cookie, CSRF on every action, the rights of each principal on every
//! action, the loopback-only rule without auth, security headers and bad
//! requests.

use serde_json::json;
use sluice_tests::{Http, TestBroker};

use super::{broker_with_auth, open_session, signed_in, ADMIN_TOKEN, AUDITOR_TOKEN, ORDERS_TOKEN};

#[tokio::test]
async fn the_page_is_served_with_security_headers_and_can_be_turned_off() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let http = Http::new(broker.admin_addr().expect("admin"));
    let page = http.get("/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<script src=\"/console.js\""),
        "{}",
        page.body
    );
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    // Everything the page needs is served here (nothing from the internet).
    for asset in ["/console.js", "/console.css"] {
        let reply = http.get(asset).await;
        assert_eq!(reply.status, 200, "{asset}");
        assert!(
            !reply.body.contains("https://"),
            "{asset} loads nothing remote"
        );
    }
    assert!(!page.body.contains("https://"));
    // /metrics and /healthz are where they were.
    assert_eq!(http.get("/healthz").await.body, "ok\n");
    assert!(http
        .get("/metrics")
        .await
        .body
        .contains("sluice_connections"));

    let off = TestBroker::start_with(|c| c.admin.console = false).await?;
    let http = Http::new(off.admin_addr().expect("admin"));
    assert_eq!(http.get("/").await.status, 404);
    assert_eq!(http.get("/api/session").await.status, 404);
    assert_eq!(http.get("/healthz").await.status, 200);
    Ok(())
}

#[tokio::test]
async fn sign_in_needs_a_valid_token_and_the_session_is_an_http_only_cookie() -> anyhow::Result<()>
{
    let broker = broker_with_auth().await?;
    let mut http = Http::new(broker.admin_addr().expect("admin"));
    let none = http.session().await;
    assert_eq!(
        (none.status, none.code().as_deref()),
        (401, Some("signed_out"))
    );
    assert_eq!(http.get("/api/topics").await.status, 401);

    let bad = http.sign_in("not-the-token-at-all").await;
    assert_eq!(
        (bad.status, bad.code().as_deref()),
        (401, Some("unauthorized")),
        "{}",
        bad.body
    );
    assert!(bad.header("set-cookie").is_none());
    let empty = http.sign_in("").await;
    assert_eq!(
        (empty.status, empty.code().as_deref()),
        (400, Some("bad_request"))
    );

    let ok = http.sign_in(ADMIN_TOKEN).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["principal"], "admin");
    let cookie = ok.header("set-cookie").expect("a session cookie");
    assert!(cookie.starts_with("sluice_console="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains(ADMIN_TOKEN), "the token is not the cookie");
    let session = http.session().await;
    assert_eq!(session.json()["principal"], "admin");
    assert_eq!(
        session.json()["admin"],
        json!(["topics", "groups", "plugins"])
    );

    // A forged cookie is no session.
    let forged = http
        .raw(
            "GET",
            "/api/topics",
            &[("cookie", "sluice_console=forged")],
            None,
        )
        .await;
    assert_eq!(forged.code().as_deref(), Some("signed_out"));

    // Signing out needs the CSRF token too, and ends the session.
    let cookie = http.cookie.clone().unwrap_or_default();
    let no_csrf = http
        .raw("DELETE", "/api/session", &[("cookie", &cookie)], None)
        .await;
    assert_eq!(
        (no_csrf.status, no_csrf.code().as_deref()),
        (403, Some("csrf"))
    );
    assert_eq!(http.act("DELETE", "/api/session", None).await.status, 204);
    assert_eq!(
        http.get("/api/topics").await.code().as_deref(),
        Some("signed_out")
    );
    Ok(())
}

#[tokio::test]
async fn actions_need_the_session_csrf_token_and_the_same_origin() -> anyhow::Result<()> {
    let broker = broker_with_auth().await?;
    let http = signed_in(&broker, ADMIN_TOKEN).await;
    let cookie = http.cookie.clone().unwrap_or_default();
    let csrf = http.csrf.clone().unwrap_or_default();
    let message = json!({ "payload": "hello" });
    let path = "/api/topics/orders.eu/messages";
    let host = broker.admin_addr().expect("admin").to_string();
    let same_origin = format!("http://{host}");
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        ("no token", vec![("cookie", &cookie)]),
        (
            "a wrong token",
            vec![("cookie", &cookie), ("x-sluice-csrf", "guess")],
        ),
        (
            "another origin",
            vec![
                ("cookie", &cookie),
                ("x-sluice-csrf", &csrf),
                ("origin", "http://evil.example"),
            ],
        ),
        (
            "a cross-site fetch",
            vec![
                ("cookie", &cookie),
                ("x-sluice-csrf", &csrf),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
    ];
    for (what, headers) in cases {
        let reply = http
            .raw("POST", path, &headers, Some(message.clone()))
            .await;
        assert_eq!(
            (reply.status, reply.code().as_deref()),
            (403, Some("csrf")),
            "{what}: {}",
            reply.body
        );
    }
    let options =
        sluice_tests::client_options(broker.addr(), broker.cert_path()).token(ADMIN_TOKEN);
    let client = sluice_client::Client::connect(options).await?;
    assert!(
        client.list_topics().await?.is_empty(),
        "nothing was published"
    );

    let reply = http
        .raw(
            "POST",
            path,
            &[
                ("cookie", &cookie),
                ("x-sluice-csrf", &csrf),
                ("origin", &same_origin),
            ],
            Some(message),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["Stored"][0]["offset"], 0);
    Ok(())
}

/// The status of each action for one principal.
async fn statuses(http: &Http) -> Vec<(&'static str, u16)> {
    let pick = json!({ "offsets": [0] });
    let reset = json!({ "to": "earliest", "confirm": "orders.workers" });
    vec![
        (
            "orders topic",
            http.get("/api/topics/orders.eu").await.status,
        ),
        (
            "orders messages",
            http.get("/api/topics/orders.eu/messages").await.status,
        ),
        (
            "publish orders",
            http.act(
                "POST",
                "/api/topics/orders.eu/messages",
                Some(json!({"payload": "x"})),
            )
            .await
            .status,
        ),
        (
            "billing topic",
            http.get("/api/topics/billing").await.status,
        ),
        (
            "billing messages",
            http.get("/api/topics/billing/messages").await.status,
        ),
        (
            "publish billing",
            http.act(
                "POST",
                "/api/topics/billing/messages",
                Some(json!({"payload": "x"})),
            )
            .await
            .status,
        ),
        ("groups", http.get("/api/groups").await.status),
        ("group", http.get("/api/groups/orders.workers").await.status),
        (
            "reset group",
            http.act("POST", "/api/groups/orders.workers/reset", Some(reset))
                .await
                .status,
        ),
        (
            "dead letters",
            http.get("/api/dead-letters/dlq.orders.eu").await.status,
        ),
        (
            "redrive",
            http.act(
                "POST",
                "/api/dead-letters/dlq.orders.eu/redrive",
                Some(pick.clone()),
            )
            .await
            .status,
        ),
        (
            "discard",
            http.act(
                "POST",
                "/api/dead-letters/dlq.orders.eu/discard",
                Some(pick),
            )
            .await
            .status,
        ),
        ("plugins", http.get("/api/plugins").await.status),
    ]
}

#[tokio::test]
async fn every_action_is_allowed_or_refused_by_the_principals_rights() -> anyhow::Result<()> {
    let broker = broker_with_auth().await?;
    // Something to look at: both topics, a group, one dead letter.
    let admin_client = {
        let options =
            sluice_tests::client_options(broker.addr(), broker.cert_path()).token(ADMIN_TOKEN);
        sluice_client::Client::connect(options).await?
    };
    admin_client.publish("orders.eu", "o-1").await?;
    admin_client.publish("billing", "b-1").await?;
    let mut member = admin_client
        .consume(
            "orders.eu",
            "orders.workers",
            sluice_client::ConsumeOptions::default(),
        )
        .await?;
    let delivery = sluice_tests::bounded("a delivery", member.recv())
        .await
        .expect("open")?;
    delivery.reject("poison").await?;
    sluice_tests::wait_until("the dead letter", sluice_tests::WAIT, || async {
        match admin_client.topic_info("dlq.orders.eu").await {
            Ok(t) if t.messages == 1 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let admin = statuses(&signed_in(&broker, ADMIN_TOKEN).await).await;
    assert!(
        admin.iter().all(|(_, s)| *s == 200),
        "admin may do all: {admin:?}"
    );

    let orders = statuses(&signed_in(&broker, ORDERS_TOKEN).await).await;
    let expect_orders = [
        ("orders topic", 200),
        ("orders messages", 200),
        ("publish orders", 200),
        ("billing topic", 403),
        ("billing messages", 403),
        ("publish billing", 403),
        ("groups", 403),
        ("group", 403),
        ("reset group", 403),
        ("dead letters", 403),
        ("redrive", 403),
        ("discard", 403),
        ("plugins", 403),
    ];
    assert_eq!(orders, expect_orders);

    let auditor = statuses(&signed_in(&broker, AUDITOR_TOKEN).await).await;
    let expect_auditor = [
        ("orders topic", 200),
        ("orders messages", 200),
        ("publish orders", 403),
        ("billing topic", 403),
        ("billing messages", 403),
        ("publish billing", 403),
        ("groups", 200),
        ("group", 200),
        ("reset group", 200),
        // May read the dead letters, but not publish them back or discard.
        ("dead letters", 200),
        ("redrive", 200),
        ("discard", 403),
        ("plugins", 403),
    ];
    assert_eq!(auditor, expect_auditor);
    // The redrive was answered per item: refused, nothing published.
    let http = signed_in(&broker, AUDITOR_TOKEN).await;
    let reply = http
        .act(
            "POST",
            "/api/dead-letters/dlq.orders.eu/redrive",
            Some(json!({ "offsets": [0] })),
        )
        .await;
    assert_eq!(
        reply.json()[0]["error"]["code"],
        "forbidden",
        "{}",
        reply.body
    );

    // Lists hold only what the principal may describe.
    let http = signed_in(&broker, ORDERS_TOKEN).await;
    let names: Vec<String> = http
        .get("/api/topics")
        .await
        .json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, ["orders.eu"]);
    let overview = http.get("/api/overview").await.json();
    assert_eq!(
        (
            overview["groups"].is_null(),
            overview["failing_plugins"].is_null(),
            overview["points"].is_null(),
            overview["connections"].is_null()
        ),
        (true, true, true, true)
    );
    Ok(())
}

#[tokio::test]
async fn without_auth_the_console_answers_this_machine_only() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let http = open_session(&broker).await;
    let session = http.get("/api/session").await.json();
    assert_eq!(
        (session["principal"].as_str(), session["auth"].as_bool()),
        (Some("anonymous"), Some(false))
    );
    // A page of another site whose name resolves to 127.0.0.1.
    let rebound = http
        .raw(
            "GET",
            "/api/session",
            &[("host", "evil.example:9464")],
            None,
        )
        .await;
    assert_eq!(
        (rebound.status, rebound.code().as_deref()),
        (403, Some("local_only"))
    );
    let page = http
        .raw("GET", "/", &[("host", "evil.example")], None)
        .await;
    assert_eq!(page.status, 403);
    // Actions still need the session's CSRF token.
    let cookie = http.cookie.clone().unwrap_or_default();
    let reply = http
        .raw(
            "POST",
            "/api/topics/t/messages",
            &[("cookie", &cookie)],
            Some(json!({"payload": "x"})),
        )
        .await;
    assert_eq!(reply.code().as_deref(), Some("csrf"));

    let open = TestBroker::start_with(|c| c.admin.console_allow_remote = true).await?;
    let http = Http::new(open.admin_addr().expect("admin"));
    let reply = http
        .raw(
            "GET",
            "/api/session",
            &[("host", "broker.internal:9464")],
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    Ok(())
}

#[tokio::test]
async fn bad_requests_get_clear_errors_with_stable_codes() -> anyhow::Result<()> {
    let broker = TestBroker::start().await?;
    let http = open_session(&broker).await;
    let cookie = http.cookie.clone().unwrap_or_default();
    let csrf = http.csrf.clone().unwrap_or_default();
    let check = |reply: sluice_tests::Reply, status: u16, code: &str, what: &str| {
        assert_eq!(
            (reply.status, reply.code().as_deref()),
            (status, Some(code)),
            "{what}: {}",
            reply.body
        );
        assert!(
            !reply.json()["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{what} says why"
        );
    };
    let not_json = http
        .raw(
            "POST",
            "/api/topics/t/messages",
            &[
                ("cookie", &cookie),
                ("x-sluice-csrf", &csrf),
                ("content-type", "application/json"),
            ],
            None,
        )
        .await;
    check(not_json, 400, "bad_request", "an empty body");
    check(
        http.act(
            "POST",
            "/api/topics/t/messages",
            Some(json!({"payload": 5})),
        )
        .await,
        400,
        "bad_request",
        "a number payload",
    );
    check(
        http.act(
            "POST",
            "/api/topics/t/messages",
            Some(json!({"payload": "x", "extra": 1})),
        )
        .await,
        400,
        "bad_request",
        "an unknown field",
    );
    check(
        http.act(
            "POST",
            "/api/topics/a..b/messages",
            Some(json!({"payload": "x"})),
        )
        .await,
        400,
        "invalid_topic",
        "a bad topic name",
    );
    check(
        http.get("/api/topics/nope").await,
        404,
        "topic_not_found",
        "an unknown topic",
    );
    check(
        http.get("/api/topics/nope/messages?last=0").await,
        400,
        "bad_request",
        "last=0",
    );
    check(
        http.get("/api/topics/nope/messages?last=many").await,
        400,
        "bad_request",
        "last=many",
    );
    check(
        http.get("/api/groups/nope").await,
        404,
        "group_not_found",
        "an unknown group",
    );
    check(
        http.act(
            "POST",
            "/api/groups/g/reset",
            Some(json!({"to": "earliest", "confirm": "other"})),
        )
        .await,
        400,
        "bad_request",
        "an unconfirmed reset",
    );
    check(
        http.act(
            "POST",
            "/api/groups/g/reset",
            Some(json!({"to": "sideways", "confirm": "g"})),
        )
        .await,
        400,
        "bad_request",
        "a bad position",
    );
    check(
        http.get("/api/dead-letters/orders").await,
        400,
        "bad_request",
        "a topic that is no dead-letter topic",
    );
    check(
        http.act(
            "POST",
            "/api/dead-letters/dlq.t/redrive",
            Some(json!({"offsets": []})),
        )
        .await,
        400,
        "bad_request",
        "an empty selection",
    );
    check(
        http.get("/api/nothing-here").await,
        404,
        "not_found",
        "an unknown API path",
    );
    // A large body is refused, and the broker carries on.
    let big = "x".repeat(2 * 1024 * 1024);
    let reply = http
        .act(
            "POST",
            "/api/topics/t/messages",
            Some(json!({ "payload": big })),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code().as_deref()),
        (413, Some("too_large")),
        "{}",
        reply.body
    );
    assert_eq!(http.get("/healthz").await.status, 200);
    Ok(())
}
