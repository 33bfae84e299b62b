//! Authentication, permissions and per-client limits, over QUIC with the
//! real client: tokens, client certificates (right CA, foreign CA,
//! expired), per-principal allow lists (also for plugin routes), and
//! limits hit by one client while a well-behaved one keeps working.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_client::{
    Client, ClientError, ClientIdentity, ConsumeOptions, ErrorCode, Message, MessageOutcome,
    StartPosition,
};
use sluice_tests::{bounded, client_options, collect, fetch_all, Steady, TestBroker};

const ORDERS_TOKEN: &str = "orders-secret-0123456789";
const ADMIN_TOKEN: &str = "admin-secret-0123456789";
const STEADY_TOKEN: &str = "steady-secret-0123456789";

/// `[[auth.principal]]` entries as TOML: `orders` may publish and
/// subscribe under `orders.>`; `admin` may do everything; `steady` works
/// on `steady` only.
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

[[auth.principal]]
name = "admin"
token_hash = "{admin}"
publish = [">"]
subscribe = [">"]
admin = ["*"]

[[auth.principal]]
name = "steady"
token_hash = "{steady}"
publish = ["steady"]
subscribe = ["steady"]
"#,
        orders = hash(ORDERS_TOKEN),
        admin = hash(ADMIN_TOKEN),
        steady = hash(STEADY_TOKEN),
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

async fn connect_with_cert(
    broker: &TestBroker,
    identity: &Pki,
    token: Option<&str>,
) -> Result<Client, ClientError> {
    let mut options = client_options(broker.addr(), broker.cert_path()).identity(ClientIdentity {
        cert_pem: identity.cert_pem.clone(),
        key_pem: identity.key_pem.clone(),
    });
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

#[tokio::test]
async fn clients_without_a_valid_token_are_refused_with_unauthorized() -> anyhow::Result<()> {
    let broker = TestBroker::start_with(with_config(&principals_toml(""))).await?;

    let message = refused(connect(&broker, None).await, ErrorCode::Unauthorized);
    assert!(message.contains("requires authentication"), "{message}");
    let message = refused(
        connect(&broker, Some("not-the-secret-at-all")).await,
        ErrorCode::Unauthorized,
    );
    assert!(message.contains("token is not valid"), "{message}");
    // A second try with the same wrong token (answered from the cache).
    refused(
        connect(&broker, Some("not-the-secret-at-all")).await,
        ErrorCode::Unauthorized,
    );
    // A hash sent as the token is not the token.
    let hash = broker.config().auth.principals[0]
        .token_hash
        .clone()
        .expect("a hash");
    refused(connect(&broker, Some(&hash)).await, ErrorCode::Unauthorized);

    let orders = connect(&broker, Some(ORDERS_TOKEN)).await?;
    orders.publish("orders.eu", "o-1").await?;

    // Nothing was stored by the refused clients; the refusals are counted.
    let admin = connect(&broker, Some(ADMIN_TOKEN)).await?;
    let topics: Vec<_> = admin
        .list_topics()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(topics, ["orders.eu"]);
    let metrics = scrape(&broker).await;
    assert!(
        sample(&metrics, "sluice_auth_failures_total{reason=\"bad_token\"}") >= 3.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "sluice_auth_failures_total{reason=\"no_credentials\"}"
        ) >= 1.0,
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn a_principal_may_only_publish_and_subscribe_where_it_is_allowed() -> anyhow::Result<()> {
    let broker = TestBroker::start_with(with_config(&principals_toml(""))).await?;
    let orders = connect(&broker, Some(ORDERS_TOKEN)).await?;
    let admin = connect(&broker, Some(ADMIN_TOKEN)).await?;
    admin.publish("billing.x", "b-0").await?;

    orders.publish("orders.eu", "o-1").await?;
    let mut sub = orders
        .subscribe("orders.>", StartPosition::Earliest)
        .await?;
    assert_eq!(collect(&mut sub, 1, Duration::from_secs(5)).await.len(), 1);

    // Publish: refused, names the topic and the action; a batch with one
    // forbidden topic stores nothing.
    let err = orders.publish("billing.x", "b-1").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("billing.x") && text.contains("publish") && text.contains("orders"),
        "{text}"
    );
    let err = orders
        .publish_batch(vec![
            Message::new("orders.eu", "o-2"),
            Message::new("billing.x", "b-2"),
        ])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");

    // Subscribe, consume, fetch: the pattern must lie inside an allowed one.
    for pattern in ["billing.>", "billing.x", ">", "*.x", "orders"] {
        let err = orders
            .subscribe(pattern, StartPosition::Earliest)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{pattern}: {err}");
        assert!(err.to_string().contains("subscribe"), "{err}");
    }
    let err = orders
        .consume("billing.>", "billing-workers", ConsumeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let err = orders
        .fetch("billing.x", StartPosition::Earliest, 10)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");

    // Admin requests need admin rights.
    let err = orders
        .create_topic("orders.new", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let err = orders.delete_topic("billing.x").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let err = orders.list_groups().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let err = orders.list_plugins().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    // Topic listings show only what the principal may use.
    let visible: Vec<_> = orders
        .list_topics()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(visible, ["orders.eu"]);
    let err = orders.topic_info("billing.x").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");

    // The connection stays usable, and billing.x holds only the admin's message.
    orders.ping().await?;
    let billing = fetch_all(&admin, "billing.x", StartPosition::Earliest).await?;
    assert_eq!(billing.len(), 1);
    assert_eq!(billing[0].payload, b"b-0"[..]);
    let eu = fetch_all(&admin, "orders.eu", StartPosition::Earliest).await?;
    assert_eq!(eu.len(), 1, "the refused batch stored nothing");

    let metrics = scrape(&broker).await;
    assert!(
        sample(
            &metrics,
            "sluice_permission_denials_total{action=\"publish\"}"
        ) >= 2.0,
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "sluice_permission_denials_total{action=\"subscribe\"}"
        ) >= 7.0,
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn a_routing_plugin_cannot_write_where_the_publisher_may_not() -> anyhow::Result<()> {
    let route = sluice_tests::plugin_dist("route_by_header.wasm");
    let toml = format!(
        r#"
{principals}

[[plugin]]
name = "route"
path = "{route}"
config = {{ header = "to", prefix = "billing.", fallback = "orders.unrouted" }}

[[pipeline]]
topics = "orders.in"
stages = ["route"]
"#,
        principals = principals_toml(""),
        route = route.display(),
    );
    let broker = TestBroker::start_with(with_config(&toml)).await?;
    let orders = connect(&broker, Some(ORDERS_TOKEN)).await?;
    let admin = connect(&broker, Some(ADMIN_TOKEN)).await?;

    let ack = orders
        .publish_batch(vec![
            Message::new("orders.in", "to billing").header("to", "x"),
            Message::new("orders.in", "no header"),
        ])
        .await?;
    match &ack.outcomes[0] {
        MessageOutcome::Rejected(reason) => {
            assert!(
                reason.contains("billing.x") && reason.contains("orders"),
                "{reason}"
            )
        }
        other => panic!("routed to billing.x: {other:?}"),
    }
    match &ack.outcomes[1] {
        MessageOutcome::Stored(places) => assert_eq!(places[0].topic, "orders.unrouted"),
        other => panic!("{other:?}"),
    }
    let err = admin.topic_info("billing.x").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(ErrorCode::TopicNotFound),
        "nothing stored at billing.x: {err}"
    );

    // The same rule routes for a publisher that may write there.
    let ack = admin
        .publish_batch(vec![
            Message::new("orders.in", "to billing").header("to", "x")
        ])
        .await?;
    match &ack.outcomes[0] {
        MessageOutcome::Stored(places) => assert_eq!(places[0].topic, "billing.x"),
        other => panic!("{other:?}"),
    }
    let metrics = scrape(&broker).await;
    assert!(
        sample(
            &metrics,
            "sluice_permission_denials_total{action=\"route\"}"
        ) >= 1.0,
        "{metrics}"
    );
    Ok(())
}

/// A CA, or a certificate it issued, as PEM.
struct Pki {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Pki {
    fn ca(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Pki {
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
            cert,
            key,
        }
    }

    /// A client certificate for `cn`, valid now unless `expired`.
    fn client(&self, cn: &str, expired: bool) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signed");
        Pki {
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
            cert,
            key,
        }
    }

    fn write_cert(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.cert_pem).expect("write the CA file");
        path
    }
}

#[tokio::test]
async fn client_certificates_name_the_principal_and_bad_ones_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Pki::ca("sluice test client CA");
    let foreign = Pki::ca("someone else's CA");
    let ca_path = ca.write_cert(dir.path(), "client-ca.pem");
    let toml = principals_toml(&format!("client_ca = {:?}", ca_path.display().to_string()));
    let broker = TestBroker::start_with(with_config(&toml)).await?;

    // Issued by the configured CA for `orders`: in, with orders' rights.
    let good = ca.client("orders", false);
    let client = connect_with_cert(&broker, &good, None).await?;
    client.publish("orders.eu", "by cert").await?;
    let err = client.publish("billing.x", "no").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    // With the principal's own token as well: they agree.
    connect_with_cert(&broker, &good, Some(ORDERS_TOKEN))
        .await?
        .ping()
        .await?;

    // Another CA's certificate for the same name.
    let message = refused(
        connect_with_cert(&broker, &foreign.client("orders", false), None).await,
        ErrorCode::Unauthorized,
    );
    assert!(
        message.contains("client certificate refused") && message.contains("Issuer"),
        "{message}"
    );
    // Expired.
    let message = refused(
        connect_with_cert(&broker, &ca.client("orders", true), None).await,
        ErrorCode::Unauthorized,
    );
    assert!(message.to_lowercase().contains("expired"), "{message}");
    // Valid, but for a principal the broker does not know.
    let message = refused(
        connect_with_cert(&broker, &ca.client("stranger", false), None).await,
        ErrorCode::Unauthorized,
    );
    assert!(message.contains("stranger"), "{message}");
    // A certificate for one principal and another's token.
    let message = refused(
        connect_with_cert(&broker, &good, Some(ADMIN_TOKEN)).await,
        ErrorCode::Unauthorized,
    );
    assert!(message.contains("admin"), "{message}");
    // A foreign certificate does not pass even with a good token.
    refused(
        connect_with_cert(&broker, &foreign.client("admin", false), Some(ADMIN_TOKEN)).await,
        ErrorCode::Unauthorized,
    );

    let metrics = scrape(&broker).await;
    assert!(
        sample(
            &metrics,
            "sluice_auth_failures_total{reason=\"bad_certificate\"}"
        ) >= 3.0,
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn connections_past_the_per_principal_limit_are_refused_while_others_work(
) -> anyhow::Result<()> {
    let toml = principals_toml("") + "\n[limits]\nmax_connections_per_principal = 3\n";
    let broker = TestBroker::start_with(with_config(&toml)).await?;
    let steady = Steady::start(connect(&broker, Some(STEADY_TOKEN)).await?).await?;

    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&broker, Some(ORDERS_TOKEN)).await?);
    }
    for _ in 0..3 {
        let message = refused(
            connect(&broker, Some(ORDERS_TOKEN)).await,
            ErrorCode::LimitExceeded,
        );
        assert!(
            message.contains("max_connections_per_principal") && message.contains("orders"),
            "{message}"
        );
    }
    // Another principal is not affected; one closed connection frees a slot.
    connect(&broker, Some(ADMIN_TOKEN)).await?.ping().await?;
    let closing = held.pop().expect("three held");
    closing.close().await;
    drop(closing);
    let again = sluice_tests::wait_until(
        "a freed connection slot",
        Duration::from_secs(5),
        || async { connect(&broker, Some(ORDERS_TOKEN)).await },
    )
    .await;
    again.publish("orders.eu", "after").await?;
    for client in &held {
        client.ping().await?;
    }
    assert!(steady.finish().await? > 0);
    Ok(())
}

#[tokio::test]
async fn subscriptions_consumers_and_batches_past_their_limits_are_refused_per_client(
) -> anyhow::Result<()> {
    let toml = principals_toml("")
        + "\n[limits]\nmax_subscriptions_per_connection = 3\nmax_consumers_per_connection = 2\nmax_batch_messages = 100\n";
    let broker = TestBroker::start_with(with_config(&toml)).await?;
    let steady = Steady::start(connect(&broker, Some(STEADY_TOKEN)).await?).await?;
    let greedy = connect(&broker, Some(ORDERS_TOKEN)).await?;

    let mut subs = Vec::new();
    for i in 0..3 {
        subs.push(
            greedy
                .subscribe(format!("orders.s{i}"), StartPosition::Latest)
                .await?,
        );
    }
    let err = greedy
        .subscribe("orders.s3", StartPosition::Latest)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded), "{err}");
    assert!(
        err.to_string().contains("max_subscriptions_per_connection"),
        "{err}"
    );

    // Group members count on their own.
    greedy.publish("orders.jobs", "job").await?;
    let mut members = Vec::new();
    for i in 0..2 {
        members.push(
            greedy
                .consume("orders.jobs", format!("g{i}"), ConsumeOptions::default())
                .await?,
        );
    }
    let err = greedy
        .consume("orders.jobs", "g2", ConsumeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded), "{err}");
    assert!(
        err.to_string().contains("max_consumers_per_connection"),
        "{err}"
    );

    // A batch over the limit is refused whole; one at the limit is stored.
    let batch = |n: usize| {
        (0..n)
            .map(|i| Message::new("orders.batch", format!("b{i}")))
            .collect::<Vec<_>>()
    };
    let err = greedy.publish_batch(batch(101)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded), "{err}");
    assert!(err.to_string().contains("max_batch_messages"), "{err}");
    greedy.publish_batch(batch(100)).await?;
    let admin = connect(&broker, Some(ADMIN_TOKEN)).await?;
    let stored = fetch_all(&admin, "orders.batch", StartPosition::Earliest).await?;
    assert_eq!(stored.len(), 100);

    // The limits are per connection: another connection of the same
    // principal subscribes freely, and freeing a slot makes room again.
    let other = connect(&broker, Some(ORDERS_TOKEN)).await?;
    other.subscribe("orders.s9", StartPosition::Latest).await?;
    drop(subs.remove(0));
    sluice_tests::wait_until("a freed subscription slot", Duration::from_secs(5), || {
        greedy.subscribe("orders.s3", StartPosition::Latest)
    })
    .await;

    assert!(steady.finish().await? > 0);
    let metrics = scrape(&broker).await;
    assert!(
        sample(
            &metrics,
            "sluice_limits_hit_total{limit=\"max_batch_messages\"}"
        ) >= 1.0,
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn development_mode_needs_no_credentials_and_rejects_inconsistent_auth_config(
) -> anyhow::Result<()> {
    // The default: no auth; a token is ignored.
    let broker = TestBroker::start().await?;
    connect(&broker, None).await?.ping().await?;
    connect(&broker, Some("anything")).await?.ping().await?;

    // Principals with mode "none" would silently let everyone in.
    let err = sluice::Config::parse(
        "[auth]\nmode = \"none\"\n[[auth.principal]]\nname = \"a\"\n",
        "<test>",
    )
    .unwrap_err();
    assert!(err.to_string().contains("auth.mode"), "{err}");
    // Required with nobody to let in.
    let err = sluice::Config::parse("[auth]\nmode = \"required\"\n", "<test>").unwrap_err();
    assert!(err.to_string().contains("no [[auth.principal]]"), "{err}");
    // A plain-text secret where a hash belongs.
    let err = sluice::Config::parse(
        "[[auth.principal]]\nname = \"a\"\ntoken_hash = \"hunter2\"\n",
        "<test>",
    )
    .unwrap_err();
    assert!(err.to_string().contains("sluice token hash"), "{err}");
    // A bad pattern and an unknown admin right are named.
    let err = sluice::Config::parse(
        "[[auth.principal]]\nname = \"a\"\npublish = [\"a.>.b\"]\n",
        "<test>",
    )
    .unwrap_err();
    assert!(err.to_string().contains("a.>.b"), "{err}");
    let err = sluice::Config::parse(
        "[[auth.principal]]\nname = \"a\"\nadmin = [\"root\"]\n",
        "<test>",
    )
    .unwrap_err();
    assert!(err.to_string().contains("root"), "{err}");
    // A client CA that does not exist stops start-up with its path.
    let err = TestBroker::start_with(|c| {
        c.auth = sluice::Config::parse(
            "[auth]\nclient_ca = \"/nonexistent/ca.pem\"\n[[auth.principal]]\nname = \"a\"\n",
            "<test>",
        )
        .expect("parses")
        .auth;
    })
    .await
    .err()
    .expect("start-up fails");
    assert!(
        format!("{err:#}").contains("/nonexistent/ca.pem"),
        "{err:#}"
    );
    Ok(())
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

/// Runs the `sluice` CLI with `args` and `stdin`; (success, stdout, stderr).
async fn sluice_cli(args: Vec<String>, stdin: &str) -> anyhow::Result<(bool, String, String)> {
    let stdin = stdin.to_owned();
    let run = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
            .args(&args)
            .env_remove("SLUICE_TOKEN")
            .env("RUST_LOG", "error")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    });
    bounded("the sluice command", run).await?
}

#[tokio::test]
async fn the_cli_hashes_tokens_and_connects_with_them() -> anyhow::Result<()> {
    let secret = "cli-secret-0123456789";
    let (ok, hash, err) =
        sluice_cli(vec!["token".into(), "hash".into(), secret.into()], "").await?;
    assert!(ok, "{err}");
    let hash = hash.trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    // The secret can come on standard input instead (out of shell history).
    let (ok, from_stdin, err) =
        sluice_cli(vec!["token".into(), "hash".into()], &format!("{secret}\n")).await?;
    assert!(ok, "{err}");
    assert!(from_stdin.trim().starts_with("$argon2id$"));
    assert_ne!(from_stdin.trim(), hash, "a fresh salt each time");

    let toml = format!(
        "[[auth.principal]]\nname = \"cli\"\ntoken_hash = \"{hash}\"\npublish = [\"orders.>\"]\nsubscribe = [\"orders.>\"]\n"
    );
    let broker = TestBroker::start_with(with_config(&toml)).await?;
    let connection = |extra: &[&str]| {
        let mut args = vec![
            "--server".to_owned(),
            broker.addr().to_string(),
            "--ca".to_owned(),
            broker.cert_path().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let pub_args = |topic: &str, token: Option<&str>| {
        let mut args = vec!["pub".to_owned(), topic.to_owned(), "hello".to_owned()];
        if let Some(token) = token {
            args.extend(["--token".to_owned(), token.to_owned()]);
        }
        args.extend(connection(&[]));
        args
    };
    let (ok, _, err) = sluice_cli(pub_args("orders.eu", None), "").await?;
    assert!(!ok);
    assert!(err.contains("unauthorized"), "{err}");
    let (ok, _, err) = sluice_cli(pub_args("orders.eu", Some("wrong-secret-000000")), "").await?;
    assert!(!ok);
    assert!(err.contains("unauthorized"), "{err}");
    let (ok, out, err) = sluice_cli(pub_args("orders.eu", Some(secret)), "").await?;
    assert!(ok, "{out}{err}");
    let (ok, _, err) = sluice_cli(pub_args("billing.x", Some(secret)), "").await?;
    assert!(!ok);
    assert!(
        err.contains("forbidden") && err.contains("billing.x"),
        "{err}"
    );

    let admin = connect(&broker, Some(secret)).await?;
    let stored = fetch_all(&admin, "orders.eu", StartPosition::Earliest).await?;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].payload, b"hello"[..]);
    Ok(())
}

#[tokio::test]
async fn connections_past_the_broker_wide_limit_are_refused_while_others_work() -> anyhow::Result<()>
{
    let broker = TestBroker::start_with(|c| c.limits.max_connections = 3).await?;
    let steady = Steady::start(connect(&broker, None).await?).await?;
    let held = [connect(&broker, None).await?, connect(&broker, None).await?];
    for _ in 0..3 {
        let message = refused(connect(&broker, None).await, ErrorCode::LimitExceeded);
        assert!(message.contains("limits.max_connections"), "{message}");
    }
    for client in &held {
        client.ping().await?;
    }
    held[0].close().await;
    let again = sluice_tests::wait_until(
        "a freed connection slot",
        Duration::from_secs(5),
        || async { connect(&broker, None).await },
    )
    .await;
    again.ping().await?;
    assert!(steady.finish().await? > 0);
    let metrics = scrape(&broker).await;
    assert!(
        sample(
            &metrics,
            "sluice_limits_hit_total{limit=\"max_connections\"}"
        ) >= 3.0,
        "{metrics}"
    );
    Ok(())
}
