//! The console in a real browser: Debian's headless Chromium, driven
//! through WebDriver (chromedriver) by fantoccini, against a real broker
//! with auth and plugins. Each step asserts the values the page shows, as
//! an operator reads them, and each page is saved as a screenshot under
//! `target/console-screenshots/`.
//!
//! `cargo xtask test` installs `chromium` and `chromium-driver`; run
//! alone, the test says how to get them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use sluice_client::{
    Client, ConsumeOptions, Message, MessageOutcome, RolloutRequest, StartPosition,
};
use sluice_tests::{bounded, client_options, plugin_dist, wait_until, TestBroker, WAIT};

use super::{auth_toml, ADMIN_TOKEN};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Long enough for a page's poll (1 s) and a broker round trip, on a
/// loaded 2-core machine.
const SHOWN: Duration = Duration::from_secs(20);

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> anyhow::Result<Driver> {
    anyhow::ensure!(
        Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
        "{CHROMEDRIVER} or {CHROMIUM} is missing: `cargo xtask setup` installs Debian's chromium and chromium-driver"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let driver = Driver { child, port };
    wait_until("chromedriver to listen", WAIT, || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map(|_| ())
    })
    .await;
    Ok(driver)
}

async fn open_browser(driver: &Driver, profile: &Path) -> anyhow::Result<Browser> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser = bounded(
        "a Chromium session",
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port)),
    )
    .await?;
    Ok(browser)
}

/// Waits until the element `css` shows `want(text)`; returns the text.
async fn shows(browser: &Browser, what: &str, css: &str, want: impl Fn(&str) -> bool) -> String {
    wait_until(what, SHOWN, || async {
        let text = match browser.find(Locator::Css(css)).await {
            Ok(el) => el.text().await.map_err(|e| e.to_string())?,
            Err(e) => return Err(e.to_string()),
        };
        if want(&text) {
            Ok(text)
        } else {
            Err(format!("{css} shows {text:?}"))
        }
    })
    .await
}

async fn click(browser: &Browser, css: &str) -> anyhow::Result<()> {
    browser.find(Locator::Css(css)).await?.click().await?;
    Ok(())
}

async fn type_into(browser: &Browser, css: &str, text: &str) -> anyhow::Result<()> {
    let el = browser.find(Locator::Css(css)).await?;
    el.clear().await?;
    el.send_keys(text).await?;
    Ok(())
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

async fn screenshot(browser: &Browser, name: &str) -> anyhow::Result<()> {
    let png = browser.screenshot().await?;
    std::fs::create_dir_all(screenshots())?;
    std::fs::write(screenshots().join(format!("{name}.png")), png)?;
    Ok(())
}

async fn go(browser: &Browser, admin: SocketAddr, page: &str) -> anyhow::Result<()> {
    browser.goto(&format!("http://{admin}/{page}")).await?;
    Ok(())
}

fn plugins_toml() -> String {
    format!(
        "[[plugin]]\nname = \"crash\"\npath = \"{}\"\nconfig = {{ mode = \"trap\" }}\n\n[[pipeline]]\ntopics = \"fragile\"\nstages = [\"crash\"]\non_error = \"dead-letter\"\n",
        plugin_dist("test_hostile.wasm").display()
    )
}

#[tokio::test]
async fn an_operator_signs_in_and_sees_and_fixes_things_in_chromium() -> anyhow::Result<()> {
    let config = sluice::Config::parse(&format!("{}\n{}", auth_toml(), plugins_toml()), "<test>")?;
    let broker = TestBroker::start_with(move |c| {
        c.auth = config.auth;
        c.plugins = config.plugins;
        c.pipelines = config.pipelines;
    })
    .await?;
    let admin = broker.admin_addr().expect("admin listener");
    let client =
        Client::connect(client_options(broker.addr(), broker.cert_path()).token(ADMIN_TOKEN))
            .await?;
    let driver = start_driver().await?;
    let profile = tempfile::tempdir()?;
    let browser = open_browser(&driver, profile.path()).await?;
    let result = walk(&browser, admin, &client).await;
    let _ = browser.close().await;
    result
}

async fn walk(browser: &Browser, admin: SocketAddr, client: &Client) -> anyhow::Result<()> {
    // Sign-in: a wrong token is refused and says so; the right one opens.
    go(browser, admin, "").await?;
    type_into(browser, "#token", "not-the-token").await?;
    click(browser, "#sign-in button").await?;
    shows(browser, "the refusal", "#sign-in-error", |t| {
        t.contains("not valid")
    })
    .await;
    screenshot(browser, "sign-in").await?;
    type_into(browser, "#token", ADMIN_TOKEN).await?;
    click(browser, "#sign-in button").await?;
    shows(browser, "the principal", "#who", |t| t == "admin").await;

    // A topic's messages appear after a publish.
    client
        .publish("orders.eu", r#"{"id":"o-1","total":42}"#)
        .await?;
    go(browser, admin, "#/topics/orders.eu").await?;
    let payload = shows(
        browser,
        "the published message",
        "tr[data-offset='0'] td[data-field='payload']",
        |t| t.contains("o-1"),
    )
    .await;
    assert!(
        payload.contains("\"total\": 42"),
        "shown as JSON: {payload}"
    );
    shows(browser, "the message count", "#topic-messages", |t| {
        t == "1"
    })
    .await;

    // Publishing from the form stores it, and the page lists it.
    type_into(browser, "#publish-payload", "typed in the console").await?;
    type_into(browser, "#publish-header", "source=console").await?;
    click(browser, "#publish-form button").await?;
    shows(browser, "the form's outcome", "#publish-result", |t| {
        t == "stored at orders.eu@1"
    })
    .await;
    shows(
        browser,
        "the new message",
        "tr[data-offset='1'] td[data-field='payload']",
        |t| t == "typed in the console",
    )
    .await;
    let stored = client
        .fetch("orders.eu", StartPosition::Offset(1), 1)
        .await?;
    assert_eq!(&stored.messages[0].payload[..], b"typed in the console");
    assert!(stored.messages[0]
        .headers
        .contains(&("source".into(), "console".into())));
    screenshot(browser, "topic").await?;
    go(browser, admin, "#/topics").await?;
    shows(
        browser,
        "the topic list",
        "tr[data-topic='orders.eu'] td[data-field='messages']",
        |t| t == "2",
    )
    .await;
    screenshot(browser, "topics").await?;

    // A group's lag falls from 4 to 0 as its consumer acks.
    for i in 0..5 {
        client.publish("jobs", format!("job {i}")).await?;
    }
    let mut member = client
        .consume(
            "jobs",
            "workers",
            ConsumeOptions::default().max_in_flight(1),
        )
        .await?;
    go(browser, admin, "#/groups/workers").await?;
    let first = bounded("a job", member.recv()).await.expect("open")?;
    shows(browser, "the lag before acks", "#group-lag", |t| t == "4").await;
    shows(browser, "one pending", "#group-pending", |t| t == "1").await;
    screenshot(browser, "group").await?;
    first.ack().await?;
    for _ in 1..5 {
        bounded("a job", member.recv())
            .await
            .expect("open")?
            .ack()
            .await?;
    }
    shows(browser, "the lag after acks", "#group-lag", |t| t == "0").await;
    shows(browser, "nothing pending", "#group-pending", |t| t == "0").await;
    // A reset, confirmed by typing the group's name, brings the work back.
    drop(member);
    shows(browser, "the member gone", "#group-members", |t| t == "0").await;
    type_into(browser, "#reset-confirm", "workers").await?;
    click(browser, "#reset-form button").await?;
    shows(browser, "the reset", "#reset-result", |t| {
        t == "reset to earliest"
    })
    .await;
    shows(browser, "the lag after the reset", "#group-lag", |t| {
        t == "5"
    })
    .await;
    go(browser, admin, "#/groups").await?;
    shows(
        browser,
        "the group list",
        "tr[data-group='workers'] td[data-field='lag']",
        |t| t == "5",
    )
    .await;
    screenshot(browser, "groups").await?;

    // A dead letter, redriven from the page, is consumed again.
    client.publish("payments", "p-0").await?;
    let mut billing = client
        .consume("payments", "billing", ConsumeOptions::default())
        .await?;
    bounded("a payment", billing.recv())
        .await
        .expect("open")?
        .reject("amount is negative")
        .await?;
    go(browser, admin, "#/dead-letters/dlq.payments").await?;
    shows(
        browser,
        "the reason",
        "tr[data-offset='0'] td[data-field='reason']",
        |t| t.contains("amount is negative"),
    )
    .await;
    screenshot(browser, "dead-letters").await?;
    click(browser, "tr[data-offset='0'] input.pick").await?;
    click(browser, "#redrive").await?;
    let done = shows(browser, "the redrive", "#dead-letter-result", |t| {
        t.contains("redriven")
    })
    .await;
    assert!(done.contains("stored at payments@1"), "{done}");
    let again = bounded("the redriven payment", billing.recv())
        .await
        .expect("open")?;
    assert_eq!(
        (again.message.offset, &again.message.payload[..]),
        (1, &b"p-0"[..])
    );
    again.ack().await?;
    click(browser, "#show-handled").await?;
    shows(
        browser,
        "the status",
        "tr[data-offset='0'] td[data-field='status']",
        |t| t.contains("redriven to payments@1 by admin"),
    )
    .await;

    // A plugin failure shows on the plugins page: its error count rises.
    go(browser, admin, "#/plugins").await?;
    let pipeline = shows(
        browser,
        "the pipeline",
        ".pipeline[data-pipeline='fragile']",
        |t| t.contains("crash"),
    )
    .await;
    let pipeline = pipeline.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        pipeline.contains("fragile → crash") && pipeline.contains("dead-letter"),
        "{pipeline}"
    );
    shows(
        browser,
        "no errors yet",
        "tr[data-plugin='crash'] td[data-field='errors']",
        |t| t == "0",
    )
    .await;
    let ack = client
        .publish_batch(vec![Message::new("fragile", "x")])
        .await?;
    assert!(
        matches!(ack.outcomes[0], MessageOutcome::DeadLettered { .. }),
        "{ack:?}"
    );
    shows(
        browser,
        "the error",
        "tr[data-plugin='crash'] td[data-field='errors']",
        |t| t == "1",
    )
    .await;
    let last = shows(
        browser,
        "the last error",
        "tr[data-plugin='crash'] td[data-field='last-error']",
        |t| t.contains("trap"),
    )
    .await;
    assert!(last.contains("wasm trap"), "{last}");
    // A shadow version shows in the rollouts table, with what it compared.
    client
        .plugin_rollout(RolloutRequest::Shadow {
            name: "crash".into(),
            wasm: sluice_tests::stamp_build("v2").into(),
        })
        .await?;
    shows(
        browser,
        "the shadow",
        "tr[data-rollout='crash'] td[data-field='state']",
        |t| t == "running",
    )
    .await;
    // (A second failure of the current version: the overview counts 2.)
    client
        .publish_batch(vec![Message::new("fragile", "y")])
        .await?;
    shows(
        browser,
        "what the shadow compared",
        "tr[data-rollout='crash'] td[data-field='compared']",
        |t| t.starts_with("1 ("),
    )
    .await;
    screenshot(browser, "plugins").await?;

    // The overview sums it up.
    go(browser, admin, "#/overview").await?;
    shows(browser, "the topics", "#topic-count", |t| {
        t.parse::<u32>().is_ok_and(|n| n >= 4)
    })
    .await;
    shows(
        browser,
        "the failing plugin",
        "tr[data-plugin='crash'] td[data-field='errors']",
        |t| t == "2",
    )
    .await;
    screenshot(browser, "overview").await?;

    // Signing out ends the session.
    click(browser, "#sign-out").await?;
    shows(browser, "the sign-in form", ".signin h1", |t| {
        t.contains("Sign in")
    })
    .await;
    Ok(())
}
