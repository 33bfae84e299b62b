//! The fault layer and the power-loss model themselves.

use std::path::Path;

use super::fault::{Call, Fault, FaultDisk, EIO, ENOSPC};
use super::sim::{Crash, SimDisk};
use super::*;

fn read(disk: &dyn Disk, path: &str) -> Option<Vec<u8>> {
    disk.read(Path::new(path)).ok()
}

/// A file written and fsynced in a directory whose own fsync came after.
fn durable_file(disk: &SimDisk) {
    disk.create_dir_all(Path::new("/d")).unwrap();
    disk.sync_dir(Path::new("/")).unwrap();
    let f = disk.open(Path::new("/d/a"), OpenMode::CreateNew).unwrap();
    f.write_at(b"hello", 0).unwrap();
    f.sync().unwrap();
    disk.sync_dir(Path::new("/d")).unwrap();
}

#[test]
fn only_synced_bytes_and_names_survive_a_power_loss() {
    let disk = SimDisk::new();
    durable_file(&disk);
    let f = disk.open(Path::new("/d/a"), OpenMode::Existing).unwrap();
    f.write_at(b" world", 5).unwrap();
    let g = disk.open(Path::new("/d/b"), OpenMode::CreateNew).unwrap();
    g.write_at(b"new", 0).unwrap();
    g.sync().unwrap();

    let point = disk.now();
    let after = SimDisk::crash(&point, Crash::DurableOnly);
    assert_eq!(read(&after, "/d/a").as_deref(), Some(&b"hello"[..]));
    // b's bytes were synced but not its name.
    assert_eq!(read(&after, "/d/b"), None);

    let killed = SimDisk::crash(&point, Crash::Everything);
    assert_eq!(read(&killed, "/d/a").as_deref(), Some(&b"hello world"[..]));
    assert_eq!(read(&killed, "/d/b").as_deref(), Some(&b"new"[..]));
}

#[test]
fn a_rename_can_survive_without_the_data_behind_it() {
    let disk = SimDisk::new();
    durable_file(&disk);
    let tmp = disk
        .open(Path::new("/d/a.tmp"), OpenMode::Truncate)
        .unwrap();
    tmp.write_at(b"replaced", 0).unwrap();
    disk.rename(Path::new("/d/a.tmp"), Path::new("/d/a"))
        .unwrap();
    let after = SimDisk::crash(&disk.now(), Crash::NamesWithoutData);
    // The rename happened, the new file's bytes never reached the disk.
    assert_eq!(read(&after, "/d/a").as_deref(), Some(&b""[..]));

    // replace_file syncs the data before the rename: either version, whole.
    let disk = SimDisk::new();
    durable_file(&disk);
    disk.record_points(true);
    replace_file(&disk, Path::new("/d/a"), b"replaced").unwrap();
    let mut states = 0;
    for point in disk.points().iter().chain([&disk.now()]) {
        for crash in Crash::variants(8) {
            let after = SimDisk::crash(point, crash);
            let got = read(&after, "/d/a").expect("a file is always there");
            assert!(
                got == b"hello" || got == b"replaced",
                "a mix: {:?}",
                String::from_utf8_lossy(&got)
            );
            states += 1;
        }
    }
    assert!(states >= 3 * 11);
}

#[test]
fn mixed_crashes_tear_and_zero_the_last_unsynced_write() {
    let disk = SimDisk::new();
    durable_file(&disk);
    let f = disk.open(Path::new("/d/a"), OpenMode::Existing).unwrap();
    f.write_at(b"ABCDEFGH", 5).unwrap();
    let point = disk.now();
    let mut seen = std::collections::BTreeSet::new();
    for seed in 1..=64 {
        let after = SimDisk::crash(&point, Crash::Mixed(seed));
        seen.insert(read(&after, "/d/a").unwrap());
    }
    assert!(seen.contains(b"hello".as_slice()));
    assert!(seen.contains(b"helloABCDEFGH".as_slice()));
    assert!(seen.contains(b"helloABCD".as_slice()), "torn: {seen:?}");
    assert!(seen.contains(b"hello\0\0\0\0\0\0\0\0".as_slice()), "zeros");
}

#[test]
fn a_failed_sync_drops_the_pages_it_was_to_write() {
    let disk = SimDisk::new();
    durable_file(&disk);
    disk.fail_syncs("/d/a", 1);
    let f = disk.open(Path::new("/d/a"), OpenMode::Existing).unwrap();
    f.write_at(b" lost", 5).unwrap();
    assert_eq!(f.sync().unwrap_err().raw_os_error(), Some(EIO));
    // Reads still see the bytes; the next sync succeeds but does not
    // bring them back.
    assert_eq!(f.read_all().unwrap(), b"hello lost");
    f.write_at(b"!", 10).unwrap();
    f.sync().unwrap();
    let after = SimDisk::crash(&disk.now(), Crash::DurableOnly);
    assert_eq!(read(&after, "/d/a").unwrap(), b"hello\0\0\0\0\0!");
}

#[test]
fn directories_and_their_contents_come_and_go_with_their_names() {
    let disk = SimDisk::new();
    durable_file(&disk);
    assert!(create_dir_durably(&disk, Path::new("/d/x/y")).is_ok());
    disk.rename(Path::new("/d"), Path::new("/gone")).unwrap();
    let list = disk.read_dir(Path::new("/")).unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].is_dir && list[0].name == "gone");
    // Not made durable: a power loss brings back the old name.
    let after = SimDisk::crash(&disk.now(), Crash::DurableOnly);
    assert!(after.exists(Path::new("/d/x/y")).unwrap());
    assert_eq!(read(&after, "/d/a").unwrap(), b"hello");
}

#[test]
fn the_fault_disk_fails_what_it_is_told_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FaultDisk::new(real());
    let path = dir.path().join("f");
    let file = disk.open(&path, OpenMode::CreateNew).unwrap();
    disk.inject(Call::Write, "f", Fault::ShortWrite { keep: 3 }, Some(1));
    let err = file.write_at(b"abcdef", 0).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(EIO));
    assert_eq!(file.read_all().unwrap(), b"abc", "a short write");
    file.write_at(b"abcdef", 0).unwrap();

    disk.fill();
    let err = file.write_at(b"more", 6).unwrap_err();
    assert!(is_full(&err), "{err}");
    assert_eq!(err.raw_os_error(), Some(ENOSPC));
    // Cutting a file frees space and works on a full disk.
    file.set_len(2).unwrap();
    disk.clear();
    file.write_at(b"cdef", 2).unwrap();
    assert_eq!(file.read_all().unwrap(), b"abcdef");

    disk.inject(Call::Sync, "", Fault::Errno(EIO), Some(2));
    assert!(file.sync().is_err());
    assert!(file.sync().is_err());
    file.sync().unwrap();
    assert_eq!(disk.hits(), 1 + 1 + 2);
}
