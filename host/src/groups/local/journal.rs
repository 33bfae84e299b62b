//! Consumer groups' state on disk: the store's [`Journal`] of group
//! [`Event`]s over a [`GroupState`] snapshot.

use super::state::{Event, GroupState};
use crate::store::journal::Journaled;

/// A group's snapshot and journal files.
pub(crate) type Journal = crate::store::journal::Journal<GroupState>;

impl Journaled for GroupState {
    type Event = Event;
    const WHAT: &'static str = "group";

    fn apply(&mut self, event: &Event) {
        GroupState::apply(self, event)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::disk;
    use crate::store::journal::{
        decode_entries, decode_snapshot, encode_entry, encode_snapshot, JOURNAL, SNAPSHOT,
    };

    fn ev(offset: u64) -> Event {
        Event::Delivered {
            topic: "t".into(),
            offset,
            attempt: 1,
        }
    }

    #[test]
    fn events_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(disk::real(), dir.path()).unwrap();
        j.append(&[ev(0), ev(1)]).unwrap();
        j.append(&[Event::Settled {
            topic: "t".into(),
            offset: 0,
        }])
        .unwrap();
        drop(j);
        let (_, state) = Journal::open(disk::real(), dir.path()).unwrap();
        assert_eq!(
            state.topics["t"].pending_offsets().collect::<Vec<_>>(),
            vec![1]
        );
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(disk::real(), dir.path()).unwrap();
        j.append(&[ev(0), ev(1)]).unwrap();
        drop(j);
        let path = dir.path().join(JOURNAL);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        drop(f);
        let (mut j, state) = Journal::open(disk::real(), dir.path()).unwrap();
        assert_eq!(state.topics["t"].cursor, 1);
        j.append(&[ev(5)]).unwrap();
        drop(j);
        let (_, state) = Journal::open(disk::real(), dir.path()).unwrap();
        assert_eq!(state.topics["t"].cursor, 6);
    }

    #[test]
    fn compaction_keeps_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut state) = Journal::open(disk::real(), dir.path()).unwrap();
        let events: Vec<_> = (0..10).map(ev).collect();
        for e in &events {
            state.apply(e);
        }
        j.append(&events).unwrap();
        j.compact(&state).unwrap();
        let settle = Event::Settled {
            topic: "t".into(),
            offset: 3,
        };
        state.apply(&settle);
        j.append(&[settle]).unwrap();
        drop(j);
        let (_, recovered) = Journal::open(disk::real(), dir.path()).unwrap();
        assert_eq!(recovered, state);
        assert!(std::fs::metadata(dir.path().join(JOURNAL)).unwrap().len() < 40);
    }

    #[test]
    fn a_damaged_entry_in_the_middle_loses_only_itself() {
        let mut bytes = Vec::new();
        for o in 0..6 {
            encode_entry(&ev(o), &mut bytes).unwrap();
        }
        let one = bytes.len() / 6;
        // The third entry torn: zeros, as a lost page leaves it.
        for b in &mut bytes[2 * one..3 * one] {
            *b = 0;
        }
        let decoded = decode_entries::<Event>(&bytes);
        let offsets: Vec<u64> = decoded
            .events
            .iter()
            .map(|e| match e {
                Event::Delivered { offset, .. } => *offset,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(offsets, [0, 1, 3, 4, 5]);
        assert_eq!((decoded.good, decoded.skipped), (bytes.len(), one));
        // Garbage at the end is a tail to cut, not entries.
        bytes.extend_from_slice(&[7; 13]);
        let decoded = decode_entries::<Event>(&bytes);
        assert_eq!(decoded.events.len(), 5);
        assert_eq!(decoded.good, bytes.len() - 13);
    }

    #[test]
    fn snapshots_are_checked_and_old_ones_still_read() {
        let mut state = GroupState::default();
        for o in 0..3 {
            state.apply(&ev(o));
        }
        let mut bytes = encode_snapshot(&state).unwrap();
        assert_eq!(decode_snapshot::<GroupState>(&bytes), Ok(state.clone()));
        // From before the header.
        assert_eq!(
            decode_snapshot::<GroupState>(&rmp_serde::to_vec(&state).unwrap()),
            Ok(state.clone())
        );
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            decode_snapshot::<GroupState>(&bytes),
            Err("snapshot fails its checksum")
        );
        assert!(decode_snapshot::<GroupState>(&bytes[..7]).is_err());
        assert!(decode_snapshot::<GroupState>(b"garbage").is_err());
    }

    #[test]
    fn a_bad_snapshot_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut state) = Journal::open(disk::real(), dir.path()).unwrap();
        state.apply(&ev(0));
        j.append(&[ev(0)]).unwrap();
        j.compact(&state).unwrap();
        drop(j);
        let path = dir.path().join(SNAPSHOT);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2 + 5;
        bytes[mid] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        let error = Journal::open(disk::real(), dir.path())
            .err()
            .expect("refused");
        assert!(error.to_string().contains("snapshot"), "{error}");
    }

    #[test]
    fn a_failed_write_leaves_no_bytes_and_reports() {
        use crate::disk::fault::{Call, Fault, FaultDisk};
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultDisk::new(disk::real());
        let (mut j, _) = Journal::open(Arc::new(faults.clone()), dir.path()).unwrap();
        j.append(&[ev(0)]).unwrap();
        faults.inject(Call::Write, JOURNAL, Fault::ShortWrite { keep: 5 }, Some(1));
        assert!(j.append(&[ev(1), ev(2)]).is_err());
        j.append(&[ev(3)]).unwrap();
        drop(j);
        let (_, state) = Journal::open(disk::real(), dir.path()).unwrap();
        assert_eq!(
            state.topics["t"].pending_offsets().collect::<Vec<_>>(),
            vec![0, 1, 2, 3],
            "0 and 3 delivered; 1 and 2 below the cursor stay pending"
        );
        assert_eq!(state.attempts("t", 1), 0, "the failed write left nothing");
    }
}
