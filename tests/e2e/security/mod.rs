//! Authentication, permissions and per-client limits, over QUIC with the
//! real client: tokens, client certificates (right CA, foreign CA,
//! expired), per-principal allow lists (also for plugin routes, consumer
//! groups and their dead-letter topics), and limits hit by one client
//! while a well-behaved one keeps working.
//! One module per theme; the principals and helpers they share are here.

mod certificates;
mod groups;
mod limits;
mod permissions;
mod requests;
mod tokens;

use sluice_client::{Client, ClientError, ErrorCode};
use sluice_tests::{bounded, client_options, TestBroker};

const ORDERS_TOKEN: &str = "orders-secret-0123456789";
const ADMIN_TOKEN: &str = "admin-secret-0123456789";
const STEADY_TOKEN: &str = "steady-secret-0123456789";
const AUDITOR_TOKEN: &str = "auditor-secret-0123456789";

/// `[[auth.principal]]` entries as TOML: `orders` may publish and
/// subscribe under `orders.>` and join the groups named `orders.>`;
/// `admin` may do everything; `steady` works on `steady` only and joins no
/// group; `auditor` may read `orders.>` but join only its own `audit.>`
/// groups.
fn principals_toml(extra: &str) -> String {
    let hash = |t: &str| sluice::auth::hash_token(t).expect("hashing works");
    format!(
        r#"
[auth]
mode = "required"
{extra}

[[auth.principal]]
name = "orders"
token_hash = "{orders}"
publish = ["orders.>"]
subscribe = ["orders.>"]
groups = ["orders.>"]

[[auth.principal]]
name = "admin"
token_hash = "{admin}"
publish = [">"]
subscribe = [">"]
groups = [">"]
admin = ["*"]

[[auth.principal]]
name = "steady"
token_hash = "{steady}"
publish = ["steady"]
subscribe = ["steady"]

[[auth.principal]]
name = "auditor"
token_hash = "{auditor}"
subscribe = ["orders.>"]
groups = ["audit.>"]
"#,
        orders = hash(ORDERS_TOKEN),
        admin = hash(ADMIN_TOKEN),
        steady = hash(STEADY_TOKEN),
        auditor = hash(AUDITOR_TOKEN),
    )
}

/// Replaces the broker's auth, limits and plugins with those of `toml`.
fn with_config(toml: &str) -> impl FnOnce(&mut sluice::Config) {
    let parsed = sluice::Config::parse(toml, "<test>").expect("test config parses");
    move |c| {
        c.auth = parsed.auth;
        c.limits = parsed.limits;
        c.plugins = parsed.plugins;
        c.pipelines = parsed.pipelines;
    }
}

async fn connect(broker: &TestBroker, token: Option<&str>) -> Result<Client, ClientError> {
    let mut options = client_options(broker.addr(), broker.cert_path());
    if let Some(token) = token {
        options = options.token(token);
    }
    bounded("a client connection", Client::connect(options)).await
}

fn refused(result: Result<Client, ClientError>, code: ErrorCode) -> String {
    match result {
        Ok(_) => panic!("the connection was accepted; expected {code}"),
        Err(e) => {
            assert_eq!(e.code(), Some(code), "{e}");
            e.to_string()
        }
    }
}

async fn scrape(broker: &TestBroker) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = broker.admin_addr().expect("admin listener");
    let mut stream = bounded("an admin connection", tokio::net::TcpStream::connect(addr))
        .await
        .expect("admin reachable");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("request sent");
    let mut response = Vec::new();
    bounded("an admin response", stream.read_to_end(&mut response))
        .await
        .expect("response read");
    String::from_utf8_lossy(&response).into_owned()
}

/// The value of the sample `name` (with labels), 0 if absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}
