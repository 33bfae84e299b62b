//! Tokens: clients without a valid one are refused, development mode needs
//! none, inconsistent auth config is refused, and `sluice token hash`
//! makes hashes the broker accepts.

use std::time::Duration;

use sluice_client::{ErrorCode, StartPosition};
use sluice_tests::{fetch_all, run_command, TestBroker};

use super::{
    connect, principals_toml, refused, sample, scrape, with_config, ADMIN_TOKEN, ORDERS_TOKEN,
};

/// How long one run of the command line may take.
const CLI_LIMIT: Duration = Duration::from_secs(10);

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
        "[[auth.principal]]\nname = \"a\"\ngroups = [\"workers.>.x\"]\n",
        "<test>",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("groups") && err.to_string().contains("workers.>.x"),
        "{err}"
    );
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

/// Runs the `sluice` CLI with `args` and `stdin`; (success, stdout, stderr).
async fn sluice_cli(args: Vec<String>, stdin: &str) -> anyhow::Result<(bool, String, String)> {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    command
        .args(&args)
        .env_remove("SLUICE_TOKEN")
        .env("RUST_LOG", "error");
    let out = run_command(command, stdin, CLI_LIMIT).await?;
    Ok((out.success, out.stdout, out.stderr))
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
