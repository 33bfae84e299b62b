//! Hot reload: plugin files and the config file change while the broker
//! runs. Real components from plugins/dist, a real broker started from a
//! config file (so it watches it), the real client.
//!
//! Two versions of one plugin come from one build: the `test-hostile`
//! fixture in `stamp` mode stamps each message with a marker compiled into
//! its data, and `v2` is a copy of the file with that marker patched.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_client::{Client, Message, MessageOutcome, PluginStatus, StartPosition};
use sluice_tests::{fetch_all, wait_until, TestBroker};

use sluice_tests::plugin_dist as dist;
use sluice_tests::stamp_build;

/// How a new file replaces the old one.
#[derive(Debug, Clone, Copy)]
enum Replace {
    /// Truncate and write in place (`cp new old`).
    CopyOver,
    /// Write beside it, then rename over it (what build tools do).
    Rename,
    /// Delete, then create.
    DeleteCreate,
}

fn replace(path: &Path, bytes: &[u8], how: Replace) {
    match how {
        Replace::CopyOver => std::fs::write(path, bytes).unwrap(),
        Replace::Rename => {
            let tmp = path.with_file_name(".incoming.tmp");
            std::fs::write(&tmp, bytes).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        Replace::DeleteCreate => {
            std::fs::remove_file(path).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
}

fn sha_prefix(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn status(client: &Client, name: &str) -> PluginStatus {
    client
        .list_plugins()
        .await
        .expect("plugin list")
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("plugin {name} is not listed"))
}

/// Waits until `sluice plugin list` shows `name` satisfying `check`.
async fn wait_status(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&PluginStatus) -> bool,
) -> PluginStatus {
    wait_until(what, Duration::from_secs(10), || async {
        let s = status(client, name).await;
        if check(&s) {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await
}

fn header<'a>(m: &'a sluice_client::Delivered, name: &str) -> Vec<&'a str> {
    m.headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Writes `sluice.toml` in `dir` with a `stamp` plugin at `dir/stamp.wasm`.
fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            "[storage]\nfsync = \"never\"\n\n[plugins]\nversion_header = true\ndebounce = \"10ms\"\n\n[[plugin]]\nname = \"stamp\"\npath = \"stamp.wasm\"\nconfig = {{ mode = \"stamp\" }}\n{extra}"
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_handle_every_message_once_with_one_version() -> anyhow::Result<()> {
    const MAX_MESSAGES: u64 = 50_000;
    const BATCH: u64 = 50;
    const SWAPS: usize = 20;
    let dir = tempfile::tempdir()?;
    let v1 = stamp_build("v1");
    let v2 = stamp_build("v2");
    let (h1, h2) = (sha_prefix(&v1), sha_prefix(&v2));
    std::fs::write(dir.path().join("stamp.wasm"), &v1)?;
    let config = write_config(
        dir.path(),
        "\n[[pipeline]]\ntopics = \"load\"\nstages = [\"stamp\"]\n",
    );
    let broker = TestBroker::start_from_file(&config).await?;
    let client = broker.client().await?;
    assert_eq!(status(&client, "stamp").await.hash, h1);

    // The producer: ordered batches of sequence numbers until the swaps
    // are done (bounded by MAX_MESSAGES).
    let published = Arc::new(AtomicU64::new(0));
    let done = tokio_util::sync::CancellationToken::new();
    let producer = {
        let client = broker.client().await?;
        let published = published.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seq = 0u64;
            let mut stored = Vec::new();
            while seq < MAX_MESSAGES && !done.is_cancelled() {
                let batch: Vec<Message> = (seq..seq + BATCH)
                    .map(|i| Message::new("load", i.to_string()))
                    .collect();
                let ack = client
                    .publish_batch(batch)
                    .await
                    .expect("publish under reload");
                for outcome in ack.outcomes {
                    match outcome {
                        MessageOutcome::Stored(at) => stored.push(at),
                        other => panic!("message {seq}: {other:?}"),
                    }
                }
                seq += BATCH;
                published.store(seq, Ordering::Relaxed);
            }
            stored
        })
    };

    let plugin = dir.path().join("stamp.wasm");
    let methods = [Replace::CopyOver, Replace::Rename, Replace::DeleteCreate];
    for swap in 0..SWAPS {
        let (bytes, hash) = if swap % 2 == 0 {
            (&v2, &h2)
        } else {
            (&v1, &h1)
        };
        replace(&plugin, bytes, methods[swap % methods.len()]);
        wait_status(&client, "stamp", "the new version to go live", |s| {
            &s.hash == hash
        })
        .await;
        // Let this version handle some traffic before the next swap.
        let seen = published.load(Ordering::Relaxed);
        wait_until("the producer to go on", Duration::from_secs(20), || async {
            let now = published.load(Ordering::Relaxed);
            if now >= seen + 4 * BATCH || now >= MAX_MESSAGES {
                Ok(())
            } else {
                Err(now)
            }
        })
        .await;
    }
    done.cancel();
    let stored = producer.await?;
    let total = published.load(Ordering::Relaxed);
    assert_eq!(stored.len() as u64, total);
    assert!(stored
        .iter()
        .all(|at| at.len() == 1 && at[0].topic == "load"));

    // Every published message is stored exactly once, in order, and
    // carries exactly one version: its stamp and the host's record agree.
    let messages = fetch_all(&client, "load", StartPosition::Earliest).await?;
    assert_eq!(messages.len() as u64, total);
    let mut runs: Vec<&str> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m.offset, i as u64);
        assert_eq!(String::from_utf8_lossy(&m.payload), i.to_string());
        let stamps = header(m, "x-stamp");
        let versions = header(m, "sluice-plugin-versions");
        assert_eq!(stamps.len(), 1, "message {i}: {:?}", m.headers);
        assert_eq!(versions.len(), 1, "message {i}: {:?}", m.headers);
        let expected = match stamps[0] {
            "v1" => format!("stamp@{h1}"),
            "v2" => format!("stamp@{h2}"),
            other => panic!("message {i}: unknown stamp {other}"),
        };
        assert_eq!(versions[0], expected, "message {i}");
        if runs.last() != Some(&stamps[0]) {
            runs.push(stamps[0]);
        }
    }
    // Versions change only at the swaps: v1, v2, v1, ... one run per
    // generation, never an older version after a newer one took over.
    if total < MAX_MESSAGES {
        assert_eq!(runs.len(), SWAPS + 1, "{runs:?}");
    } else {
        assert!(runs.len() <= SWAPS + 1, "{runs:?}");
    }
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(*run, if i % 2 == 0 { "v1" } else { "v2" }, "{runs:?}");
    }

    // Two builds were compiled; every other swap came from the cache.
    let s = status(&client, "stamp").await;
    assert_eq!(s.versions, SWAPS as u64 + 1);
    assert_eq!(s.compiles, 2, "{s:?}");
    assert_eq!(s.cache_hits, SWAPS as u64 - 1, "{s:?}");
    assert_eq!(s.loaded_from, "cached");
    assert!(s.last_reload_ms.is_some());
    assert!(s.refused.is_none(), "{s:?}");
    Ok(())
}

#[tokio::test]
async fn bad_versions_are_refused_and_the_running_one_keeps_serving() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let v1 = stamp_build("v1");
    let h1 = sha_prefix(&v1);
    let plugin = dir.path().join("stamp.wasm");
    std::fs::write(&plugin, &v1)?;
    let config = write_config(
        dir.path(),
        "\n[[pipeline]]\ntopics = \"t\"\nstages = [\"stamp\"]\n",
    );
    let broker = TestBroker::start_from_file(&config).await?;
    let client = broker.client().await?;

    // A file that is not WebAssembly; a valid component of another world
    // (an empty component); a plugin whose init refuses this config.
    let corrupt = b"\0asm this is not a component".to_vec();
    let wrong_world = b"\0asm\x0d\x00\x01\x00".to_vec();
    let refuses_init = std::fs::read(dist("filter_json.wasm"))?;
    let cases: [(&str, &Vec<u8>, &str); 3] = [
        ("corrupt", &corrupt, "not a valid WebAssembly component"),
        (
            "wrong world",
            &wrong_world,
            "does not implement the sluice:plugin/plugin world",
        ),
        ("init failure", &refuses_init, "init refused its config"),
    ];
    for (i, (what, bytes, error)) in cases.iter().enumerate() {
        let hash = sha_prefix(bytes);
        replace(
            &plugin,
            bytes,
            if i % 2 == 0 {
                Replace::Rename
            } else {
                Replace::CopyOver
            },
        );
        let s = wait_status(
            &client,
            "stamp",
            &format!("the {what} version to be refused"),
            |s| s.refused.as_ref().is_some_and(|r| r.hash == hash),
        )
        .await;
        let refused = s.refused.as_ref().unwrap();
        assert!(refused.error.contains(error), "{what}: {refused:?}");
        assert!(refused.at_ms > 0);
        assert_eq!(s.hash, h1, "{what}: the running version stays");
        // ... and serves: the publish is stamped by v1.
        client.publish("t", format!("during {what}")).await?;
    }
    let stored = fetch_all(&client, "t", StartPosition::Earliest).await?;
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|m| header(m, "x-stamp") == ["v1"]));

    // `sluice plugin list` shows the refusal next to the running version.
    // (On a blocking thread: the broker runs on this test's runtime.)
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    cli.args(["plugin", "list", "--server"])
        .arg(broker.addr().to_string())
        .arg("--ca")
        .arg(broker.cert_path());
    let out = tokio::task::spawn_blocking(move || cli.output()).await??;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("(version {h1})")), "{text}");
    assert!(
        text.contains(&format!("REFUSED  version {}", sha_prefix(&refuses_init))),
        "{text}"
    );
    assert!(text.contains("init refused its config"), "{text}");

    // A good version afterwards is taken, and the refusal is cleared.
    let v2 = stamp_build("v2");
    replace(&plugin, &v2, Replace::Rename);
    let s = wait_status(&client, "stamp", "v2 to go live", |s| {
        s.hash == sha_prefix(&v2)
    })
    .await;
    assert!(s.refused.is_none(), "{s:?}");
    client.publish("t", "after").await?;
    let stored = fetch_all(&client, "t", StartPosition::Offset(3)).await?;
    assert_eq!(header(&stored[0], "x-stamp"), ["v2"]);
    Ok(())
}

/// Publishes one message to `topic` and returns it as stored.
async fn publish_and_read(client: &Client, topic: &str, body: &str) -> sluice_client::Delivered {
    let stored = client
        .publish(topic, body.to_owned())
        .await
        .expect("publish");
    let batch = client
        .fetch(topic, StartPosition::Offset(stored.offset), 1)
        .await
        .expect("fetch");
    batch.messages.into_iter().next().expect("stored")
}

#[tokio::test]
async fn config_changes_take_effect_without_a_restart_and_a_broken_one_is_refused(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("stamp.wasm"), stamp_build("v1"))?;
    let redact = format!(
        "\n[[plugin]]\nname = \"redact\"\npath = \"{}\"\nconfig = {{ fields = [\"email\"] }}\n",
        dist("redact_pii.wasm").display()
    );
    let pipeline =
        |stages: &str| format!("\n[[pipeline]]\ntopics = \"orders\"\nstages = [{stages}]\n");
    let config = write_config(dir.path(), &format!("{redact}{}", pipeline("\"stamp\"")));
    let broker = TestBroker::start_from_file(&config).await?;
    let client = broker.client().await?;
    let body = r#"{"email": "a@b.io"}"#;
    let m = publish_and_read(&client, "orders", body).await;
    assert_eq!(header(&m, "x-stamp"), ["v1"]);
    assert!(String::from_utf8_lossy(&m.payload).contains("a@b.io"));

    // Add a stage.
    write_config(
        dir.path(),
        &format!("{redact}{}", pipeline("\"stamp\", \"redact\"")),
    );
    let m = wait_until(
        "the added stage to run",
        Duration::from_secs(10),
        || async {
            let m = publish_and_read(&client, "orders", body).await;
            if String::from_utf8_lossy(&m.payload).contains("a@b.io") {
                Err("not redacted yet")
            } else {
                Ok(m)
            }
        },
    )
    .await;
    assert_eq!(header(&m, "x-stamp"), ["v1"]);
    assert_eq!(
        header(&m, "sluice-plugin-versions").len(),
        1,
        "{:?}",
        m.headers
    );
    assert!(header(&m, "sluice-plugin-versions")[0].contains(",redact@"));

    // Remove one (and change a setting that needs a restart: reported, and
    // the pipeline change still applies).
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)?
            .replace("fsync = \"never\"", "fsync = \"always\"")
            .replace("stages = [\"stamp\", \"redact\"]", "stages = [\"redact\"]"),
    )?;
    let m = wait_until(
        "the removed stage to stop",
        Duration::from_secs(10),
        || async {
            let m = publish_and_read(&client, "orders", body).await;
            if header(&m, "x-stamp").is_empty() {
                Ok(m)
            } else {
                Err("still stamped")
            }
        },
    )
    .await;
    assert!(!String::from_utf8_lossy(&m.payload).contains("a@b.io"));
    let registry = broker.plugins().expect("running").clone();
    assert!(registry.config_refusal().is_none());

    // A config that does not parse, then one naming a missing plugin: both
    // refused whole, the running pipeline stays.
    let good = std::fs::read_to_string(&config)?;
    for (broken, error) in [
        (format!("{good}\n[[pipeline]\n"), "invalid config"),
        (
            good.replace("stages = [\"redact\"]", "stages = [\"redact\", \"nope\"]"),
            "\"nope\", which no [[plugin]] defines",
        ),
    ] {
        std::fs::write(&config, &broken)?;
        let (_, refused) = wait_until(
            "the broken config to be refused",
            Duration::from_secs(10),
            || async {
                match registry.config_refusal() {
                    Some((at, e)) if e.contains(error) => Ok((at, e)),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
        assert!(refused.contains(error), "{refused}");
        let m = publish_and_read(&client, "orders", body).await;
        assert!(header(&m, "x-stamp").is_empty());
        assert!(!String::from_utf8_lossy(&m.payload).contains("a@b.io"));
        // Put the good one back before the next case (clears the refusal).
        std::fs::write(&config, &good)?;
        wait_until(
            "the good config to be taken again",
            Duration::from_secs(10),
            || async { registry.config_refusal().map_or(Ok(()), Err) },
        )
        .await;
    }
    Ok(())
}

#[tokio::test]
async fn a_delivery_plugin_follows_reloads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let plugin = dir.path().join("stamp.wasm");
    std::fs::write(&plugin, stamp_build("v1"))?;
    let config = write_config(dir.path(), "");
    let broker = TestBroker::start_from_file(&config).await?;
    let client = broker.client().await?;
    let mut sub = client
        .subscribe_with(
            "feed",
            StartPosition::Earliest,
            Some(sluice_client::DeliveryPlugin {
                name: "stamp".into(),
                config: None,
            }),
        )
        .await?;
    client.publish("feed", "one").await?;
    let got = sluice_tests::collect(&mut sub, 1, Duration::from_secs(10)).await;
    assert_eq!(header(&got[0], "x-stamp"), ["v1"]);
    let v2 = stamp_build("v2");
    replace(&plugin, &v2, Replace::Rename);
    wait_status(&client, "stamp", "v2 to go live", |s| {
        s.hash == sha_prefix(&v2)
    })
    .await;
    client.publish("feed", "two").await?;
    let got = sluice_tests::collect(&mut sub, 1, Duration::from_secs(10)).await;
    assert_eq!(header(&got[0], "x-stamp"), ["v2"]);
    // Stored messages are not stamped: the plugin is on the delivery side.
    let stored = fetch_all(&client, "feed", StartPosition::Earliest).await?;
    assert!(stored.iter().all(|m| header(m, "x-stamp").is_empty()));
    Ok(())
}

#[tokio::test]
async fn compiled_components_are_cached_across_restarts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("stamp.wasm"), stamp_build("v1"))?;
    let config = write_config(dir.path(), "");
    let mut broker = TestBroker::start_from_file(&config).await?;
    let client = broker.client().await?;
    let s = status(&client, "stamp").await;
    assert_eq!(
        (s.loaded_from.as_str(), s.compiles, s.cache_hits),
        ("compiled", 1, 0)
    );
    drop(client);

    broker.restart().await?;
    let client = broker.client().await?;
    let s = status(&client, "stamp").await;
    assert_eq!(
        (s.loaded_from.as_str(), s.compiles, s.cache_hits),
        ("cached", 0, 1)
    );
    drop(client);

    // A damaged cache file is noticed and the component compiled again.
    let cache = broker.data_dir().join("plugin-cache");
    for entry in std::fs::read_dir(&cache)? {
        let path = entry?.path();
        let mut bytes = std::fs::read(&path)?;
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes)?;
    }
    broker.restart().await?;
    let client = broker.client().await?;
    let s = status(&client, "stamp").await;
    assert_eq!((s.loaded_from.as_str(), s.compiles), ("compiled", 1));
    let m = publish_and_read(&client, "any", "still works").await;
    assert!(m.headers.is_empty(), "no pipeline on this topic");
    Ok(())
}

#[tokio::test]
async fn sluice_plugin_deploy_replaces_the_file_after_checking_the_new_version(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let plugin = dir.path().join("stamp.wasm");
    std::fs::write(&plugin, stamp_build("v1"))?;
    let config = write_config(
        dir.path(),
        "\n[[pipeline]]\ntopics = \"t\"\nstages = [\"stamp\"]\n",
    );
    let broker = TestBroker::start_from_file(&config).await?;
    let client = broker.client().await?;

    // Refused before anything is written: init refuses the config.
    let refuses_init = std::fs::read(dist("filter_json.wasm"))?;
    let err = client
        .deploy_plugin("stamp", refuses_init)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("init refused its config"), "{err}");
    assert_eq!(
        std::fs::read(&plugin)?,
        stamp_build("v1"),
        "the file is untouched"
    );

    // Accepted: live when the call returns, and the file holds it.
    let v2 = stamp_build("v2");
    let hash = client.deploy_plugin("stamp", v2.clone()).await?;
    assert_eq!(hash, sha_prefix(&v2));
    assert_eq!(std::fs::read(&plugin)?, v2);
    assert_eq!(status(&client, "stamp").await.hash, hash);
    client.publish("t", "after").await?;
    let stored = fetch_all(&client, "t", StartPosition::Earliest).await?;
    assert_eq!(header(&stored[0], "x-stamp"), ["v2"]);
    assert!(
        status(&client, "stamp").await.node.is_none(),
        "one machine: no node"
    );
    Ok(())
}
