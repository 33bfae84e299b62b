//! Parsing whole files: defaults, the example config, values and the
//! errors that name a bad key.

use std::path::Path;
use std::time::Duration;

use super::*;

#[test]
fn empty_file_gives_defaults() {
    let c = Config::parse("", "<test>").unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:4433".parse().unwrap());
    assert_eq!(c.storage.fsync, FsyncPolicy::Always);
    assert!(c.topics.auto_create);
    assert_eq!(c.limits.max_frame_bytes, 1024 * 1024);
}

#[test]
fn the_example_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sluice.toml");
    let c = Config::load(&path).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:4433".parse().unwrap());
}

#[test]
fn durations_and_policies() {
    let c = Config::parse(
        "[storage]\nfsync = \"interval\"\nfsync_interval = \"250ms\"\n[topics.retention]\nmax_age = \"7days\"\nmax_messages = 10\n",
        "<test>",
    )
    .unwrap();
    assert_eq!(c.storage.fsync, FsyncPolicy::Interval);
    assert_eq!(c.storage.fsync_interval, Duration::from_millis(250));
    assert_eq!(
        c.topics.retention.max_age,
        Some(Duration::from_secs(7 * 86400))
    );
    assert_eq!(c.topics.retention.max_messages, Some(10));
}

#[test]
fn unknown_key_is_named() {
    let err = Config::parse("[server]\nlisten_addr = \"127.0.0.1:1\"\n", "<test>").unwrap_err();
    assert!(err.to_string().contains("listen_addr"), "{err}");
    let err = Config::parse("[storge]\n", "<test>").unwrap_err();
    assert!(err.to_string().contains("storge"), "{err}");
}

#[test]
fn plugins_and_pipelines() {
    let c = Config::parse(
        "[[plugin]]\nname = \"r\"\npath = \"r.wasm\"\nconfig = { header = \"region\", n = 2 }\ntimeout = \"50ms\"\n\n[[pipeline]]\ntopics = \"orders.>\"\nstages = [\"r\"]\non_error = \"reject\"\n",
        "<test>",
    )
    .unwrap();
    assert_eq!(c.plugins[0].timeout, Duration::from_millis(50));
    assert_eq!(
        serde_json::to_string(&c.plugins[0].config).unwrap(),
        r#"{"header":"region","n":2}"#
    );
    assert_eq!(c.pipelines[0].on_error, OnError::Reject);
    let err = Config::parse(
        "[[pipeline]]\ntopics = \"a\"\nstages = [\"nope\"]\n",
        "<test>",
    )
    .unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");
    let err = Config::parse(
        "[[plugin]]\nname = \"r\"\npath = \"r.wasm\"\n[[plugin]]\nname = \"r\"\npath = \"s.wasm\"\n",
        "<test>",
    )
    .unwrap_err();
    assert!(err.to_string().contains("defined twice"), "{err}");
}

#[test]
fn bad_value_is_named() {
    let err = Config::parse("[storage]\nfsync = \"sometimes\"\n", "<test>").unwrap_err();
    assert!(err.to_string().contains("sometimes"), "{err}");
    let err = Config::parse("[server]\nlisten = \"nowhere\"\n", "<test>").unwrap_err();
    assert!(err.to_string().contains("listen"), "{err}");
    let err = Config::parse("[limits]\nmax_frame_bytes = 10\n", "<test>").unwrap_err();
    assert!(err.to_string().contains("max_frame_bytes"), "{err}");
}

#[test]
fn storage_and_buffer_bounds_must_be_usable() {
    for (toml, named) in [
        (
            "[limits]\nsubscriber_buffer_messages = 0\n",
            "subscriber_buffer_messages",
        ),
        ("[storage]\nmax_open_files = 0\n", "max_open_files"),
        ("[storage]\ndedup_max_bytes = 10\n", "dedup_max_bytes"),
        (
            "[plugins]\nstate_max_value_bytes = 16777216\n",
            "state_max_value_bytes at most 524288",
        ),
        (
            "[plugins]\nstate_max_key_bytes = 0\n",
            "state_max_key_bytes",
        ),
    ] {
        let err = Config::parse(toml, "<test>").unwrap_err();
        assert!(err.to_string().contains(named), "{toml}: {err}");
    }
    let c = Config::parse(
        "[storage]\nmax_open_files = 8\ndedup_max_bytes = 65536\n",
        "<test>",
    )
    .unwrap();
    assert_eq!(
        (c.storage.max_open_files, c.storage.dedup_max_bytes),
        (8, 65536)
    );
}
