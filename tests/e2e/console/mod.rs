//! The web console: its API over plain HTTP (sign-in, sessions, CSRF, the
//! rights of each principal, bad requests, what each page shows and what
//! its actions do) and the pages themselves in headless Chromium
//! (`browser.rs`).

mod access;
mod browser;
mod pages;

use sluice_tests::{Http, TestBroker};

const ADMIN_TOKEN: &str = "console-admin-0123456789";
const ORDERS_TOKEN: &str = "console-orders-0123456789";
const AUDITOR_TOKEN: &str = "console-auditor-0123456789";

/// Auth on: `admin` may do everything; `orders` publishes and reads
/// `orders.>` and joins groups `orders.>`, no admin right; `auditor` reads
/// `orders.>` and `dlq.>` and may administer groups.
fn auth_toml() -> String {
    let hash = |t: &str| sluice::auth::hash_token(t).expect("hashing works");
    format!(
        r#"
[auth]
mode = "required"

[[auth.principal]]
name = "admin"
token_hash = "{admin}"
publish = [">"]
subscribe = [">"]
groups = [">"]
admin = ["*"]

[[auth.principal]]
name = "orders"
token_hash = "{orders}"
publish = ["orders.>"]
subscribe = ["orders.>"]
groups = ["orders.>"]

[[auth.principal]]
name = "auditor"
token_hash = "{auditor}"
subscribe = ["orders.>", "dlq.>"]
admin = ["groups"]
"#,
        admin = hash(ADMIN_TOKEN),
        orders = hash(ORDERS_TOKEN),
        auditor = hash(AUDITOR_TOKEN),
    )
}

/// A broker with the principals of [`auth_toml`].
async fn broker_with_auth() -> anyhow::Result<TestBroker> {
    let parsed = sluice::Config::parse(&auth_toml(), "<test>")?;
    TestBroker::start_with(move |c| c.auth = parsed.auth).await
}

/// A console client of `broker`, signed in with `token`.
async fn signed_in(broker: &TestBroker, token: &str) -> Http {
    let mut http = Http::new(broker.admin_addr().expect("admin listener"));
    let reply = http.sign_in(token).await;
    assert_eq!(reply.status, 200, "sign-in: {}", reply.body);
    http
}

/// A console client of a broker without auth, with its anonymous session.
pub(crate) async fn open_session(broker: &TestBroker) -> Http {
    let mut http = Http::new(broker.admin_addr().expect("admin listener"));
    let reply = http.session().await;
    assert_eq!(reply.status, 200, "session: {}", reply.body);
    http
}
