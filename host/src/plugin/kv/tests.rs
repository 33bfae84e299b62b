use std::sync::Arc;
use std::time::Duration;

use super::local::LocalOpener;
use super::*;
use crate::config::FsyncPolicy;
use crate::disk;

fn small() -> Limits {
    Limits {
        max_key: 8,
        max_value: 16,
        max_bytes: 200,
    }
}

fn local(dir: &std::path::Path, limits: Limits) -> KvStores {
    let opener = LocalOpener::new(disk::real(), dir, FsyncPolicy::Always, Duration::ZERO);
    KvStores::new(Box::new(opener), limits)
}

#[test]
fn set_get_delete_and_incr() {
    let ns = Namespace::in_memory("p", Limits::default());
    assert_eq!(ns.get("a"), Ok(None));
    ns.set("a", b"1".to_vec(), None).unwrap();
    assert_eq!(ns.get("a"), Ok(Some(b"1".to_vec())));
    assert_eq!(ns.incr("a", 41, None), Ok(42));
    assert_eq!(ns.get("a"), Ok(Some(b"42".to_vec())));
    assert_eq!(ns.incr("fresh", -3, None), Ok(-3));
    assert_eq!(ns.delete("a"), Ok(true));
    assert_eq!(ns.delete("a"), Ok(false));
    assert_eq!(ns.get("a"), Ok(None));
    ns.set("text", b"hello".to_vec(), None).unwrap();
    assert_eq!(ns.incr("text", 1, None), Err(KvError::NotANumber));
    ns.set("max", i64::MAX.to_string().into_bytes(), None)
        .unwrap();
    assert_eq!(ns.incr("max", 1, None), Err(KvError::NotANumber));
    assert_eq!(ns.get("max"), Ok(Some(i64::MAX.to_string().into_bytes())));
}

#[test]
fn expired_entries_are_gone_and_incr_keeps_the_first_expiry() {
    let ns = Namespace::in_memory("p", Limits::default());
    ns.set("gone", b"x".to_vec(), Some(0)).unwrap();
    assert_eq!(ns.get("gone"), Ok(None));
    assert_eq!(ns.delete("gone"), Ok(false));
    ns.set("kept", b"x".to_vec(), Some(60_000)).unwrap();
    assert_eq!(ns.get("kept"), Ok(Some(b"x".to_vec())));
    // A counter created with a TTL keeps it; later increments' TTLs do not
    // extend it.
    assert_eq!(ns.incr("c", 1, Some(0)), Ok(1));
    assert_eq!(
        ns.incr("c", 1, Some(60_000)),
        Ok(1),
        "expired: starts again"
    );
    assert_eq!(ns.incr("c", 1, Some(0)), Ok(2));
}

#[test]
fn limits_are_checked_before_anything_changes() {
    let ns = Namespace::in_memory("p", small());
    assert_eq!(
        ns.set("", b"x".to_vec(), None),
        Err(KvError::KeyTooLong { len: 0, max: 8 })
    );
    assert_eq!(
        ns.get("123456789"),
        Err(KvError::KeyTooLong { len: 9, max: 8 })
    );
    assert_eq!(
        ns.set("k", vec![0; 17], None),
        Err(KvError::ValueTooLarge { len: 17, max: 16 })
    );
    // Each entry costs 1 + 16 + 32 = 49 bytes: four fit in 200, a fifth not.
    for k in ["a", "b", "c", "d"] {
        ns.set(k, vec![1; 16], None).unwrap();
    }
    let error = ns.set("e", vec![1; 16], None).unwrap_err();
    assert_eq!(
        error,
        KvError::QuotaExceeded {
            would: 245,
            max: 200
        }
    );
    assert_eq!(error.code(), "quota_exceeded");
    assert!(error.to_string().contains("state_max_bytes"), "{error}");
    assert_eq!(ns.get("e"), Ok(None));
    // Replacing an entry with one of the same size fits.
    ns.set("a", vec![2; 16], None).unwrap();
    // Expired entries are swept to make room.
    ns.set("d", vec![1; 16], Some(0)).unwrap();
    ns.set("e", vec![1; 16], None).unwrap();
    assert_eq!(ns.usage(), (4, 196));
}

#[test]
fn state_survives_a_reopen_and_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let stores = local(dir.path(), Limits::default());
    let ns = stores.namespace("limiter").unwrap();
    ns.set("a", b"1".to_vec(), None).unwrap();
    ns.incr("n", 5, None).unwrap();
    ns.set("gone", b"x".to_vec(), Some(0)).unwrap();
    ns.set("b", b"2".to_vec(), None).unwrap();
    ns.delete("b").unwrap();
    ns.flush().unwrap();
    drop((ns, stores));
    let stores = local(dir.path(), Limits::default());
    let ns = stores.namespace("limiter").unwrap();
    assert_eq!(ns.get("a"), Ok(Some(b"1".to_vec())));
    assert_eq!(ns.get("n"), Ok(Some(b"5".to_vec())));
    assert_eq!(ns.get("b"), Ok(None));
    assert_eq!(ns.get("gone"), Ok(None));
    // Enough rewrites of one key to pass the compaction bound.
    let value = vec![7u8; 1000];
    for _ in 0..(local::COMPACT_AFTER_BYTES / 1000 + 10) {
        ns.set("big", value.clone(), None).unwrap();
    }
    ns.flush().unwrap();
    let journal = std::fs::metadata(dir.path().join("limiter/journal"))
        .unwrap()
        .len();
    assert!(journal < local::COMPACT_AFTER_BYTES, "{journal}");
    ns.incr("n", 1, None).unwrap();
    drop((ns, stores));
    let stores = local(dir.path(), Limits::default());
    let ns = stores.namespace("limiter").unwrap();
    assert_eq!(ns.get("big"), Ok(Some(value)));
    assert_eq!(ns.get("n"), Ok(Some(b"6".to_vec())));
    assert_eq!(ns.get("a"), Ok(Some(b"1".to_vec())));
    // Namespaces are apart.
    assert_eq!(stores.namespace("other").unwrap().get("a"), Ok(None));
}

#[test]
fn a_failed_write_changes_nothing_and_says_so() {
    use crate::disk::fault::{Call, Fault, FaultDisk};
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultDisk::new(disk::real());
    let opener = LocalOpener::new(
        Arc::new(faults.clone()),
        dir.path(),
        FsyncPolicy::Always,
        Duration::ZERO,
    );
    let stores = KvStores::new(Box::new(opener), Limits::default());
    let ns = stores.namespace("p").unwrap();
    ns.set("a", b"1".to_vec(), None).unwrap();
    faults.inject(
        Call::Write,
        "journal",
        Fault::ShortWrite { keep: 3 },
        Some(1),
    );
    let error = ns.set("a", b"2".to_vec(), None).unwrap_err();
    assert_eq!(error.code(), "unavailable");
    assert_eq!(ns.get("a"), Ok(Some(b"1".to_vec())));
    assert_eq!(ns.incr("n", 1, None), Ok(1));
    drop((ns, stores));
    let stores = local(dir.path(), Limits::default());
    let ns = stores.namespace("p").unwrap();
    assert_eq!(ns.get("a"), Ok(Some(b"1".to_vec())));
    assert_eq!(ns.get("n"), Ok(Some(b"1".to_vec())));
}

#[test]
fn a_shadow_overlay_reads_live_state_and_keeps_its_writes_to_itself() {
    let live = Arc::new(Namespace::in_memory("p", small()));
    live.set("seen", b"1".to_vec(), None).unwrap();
    live.set("n", b"10".to_vec(), None).unwrap();
    let shadow = KvHandle::Shadow(Arc::new(Overlay::new(live.clone())));
    assert_eq!(shadow.get("seen"), Ok(Some(b"1".to_vec())));
    assert_eq!(shadow.incr("n", 1, None), Ok(11));
    assert_eq!(shadow.delete("seen"), Ok(true));
    shadow.set("new", b"x".to_vec(), None).unwrap();
    assert_eq!(shadow.get("seen"), Ok(None));
    assert_eq!(shadow.get("new"), Ok(Some(b"x".to_vec())));
    assert_eq!(live.get("n"), Ok(Some(b"10".to_vec())));
    assert_eq!(live.get("seen"), Ok(Some(b"1".to_vec())));
    assert_eq!(live.get("new"), Ok(None));
    // The overlay has the namespace's quota too (its deletion of `seen`
    // counts its key): 107 bytes held, room for one more of 49.
    shadow.set("a", vec![1; 16], None).unwrap();
    // Setting a key again counts only the difference.
    shadow.set("a", vec![2; 16], None).unwrap();
    assert_eq!(
        shadow.set("d", vec![1; 16], None).unwrap_err().code(),
        "quota_exceeded"
    );
}
