//! What a power loss leaves of a [`World`]: [`Crash`] chooses which of the
//! unsynced work survives.

use std::collections::HashMap;

use super::{apply, DataOp, Node, World};

impl World {
    /// What the disk holds after losing power, as `crash` chooses.
    pub(super) fn after_crash(&self, crash: &mut Crash) -> World {
        let mut nodes = HashMap::new();
        // Node ids are kept, so the ones kept by a directory stay right.
        let mut ids: Vec<_> = self.nodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let node = match &self.nodes[&id] {
                Node::Dir { entries, durable } => {
                    let kept = if crash.keep_names() {
                        entries.clone()
                    } else {
                        durable.clone()
                    };
                    Node::Dir {
                        entries: kept.clone(),
                        durable: kept,
                    }
                }
                Node::File {
                    durable, unsynced, ..
                } => {
                    let mut data = durable.clone();
                    let (kept, last) = crash.keep_ops(unsynced.len());
                    for op in &unsynced[..kept] {
                        apply(&mut data, op);
                    }
                    if let (Some(last), Some(DataOp::Write { position, bytes })) =
                        (last, unsynced.get(kept))
                    {
                        let bytes = match last {
                            Last::Torn => bytes[..bytes.len() / 2].to_vec(),
                            Last::Zeros => vec![0; bytes.len()],
                        };
                        apply(
                            &mut data,
                            &DataOp::Write {
                                position: *position,
                                bytes,
                            },
                        );
                    }
                    Node::File {
                        durable: data.clone(),
                        data,
                        unsynced: Vec::new(),
                    }
                }
            };
            nodes.insert(id, node);
        }
        World {
            nodes,
            next_node: self.next_node,
        }
    }
}

/// What happens to the last unsynced write a crash keeps part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Its first half reached the disk.
    Torn,
    /// Its blocks were allocated but hold zeros.
    Zeros,
}

/// Which of the unsynced work survives a power loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crash {
    /// Only what was made durable.
    DurableOnly,
    /// Every create, rename and removal, but only the durable bytes.
    NamesWithoutData,
    /// Everything written (as a killed process leaves it).
    Everything,
    /// A pseudo-random choice per directory and per file: names kept or
    /// not, a prefix of the writes, the last one torn or zero-filled.
    Mixed(u64),
}

impl Crash {
    /// The kinds of crash the enumeration tries at each point: the three
    /// fixed ones and `mixed` seeded choices.
    pub fn variants(mixed: u64) -> Vec<Crash> {
        let mut out = vec![
            Crash::DurableOnly,
            Crash::NamesWithoutData,
            Crash::Everything,
        ];
        out.extend((1..=mixed).map(Crash::Mixed));
        out
    }

    /// Every crash state to check: each point with each of
    /// [`Crash::variants`]`(mixed)`.
    pub fn states(
        points: &[super::Point],
        mixed: u64,
    ) -> impl Iterator<Item = (&super::Point, Crash)> {
        points
            .iter()
            .flat_map(move |point| Crash::variants(mixed).into_iter().map(move |c| (point, c)))
    }

    /// The next pseudo-random number (splitmix64).
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn keep_names(&mut self) -> bool {
        match self {
            Crash::DurableOnly => false,
            Crash::NamesWithoutData | Crash::Everything => true,
            Crash::Mixed(state) => Crash::next(state).is_multiple_of(2),
        }
    }

    /// How many of `n` unsynced changes are kept whole, and what becomes
    /// of the one after them.
    fn keep_ops(&mut self, n: usize) -> (usize, Option<Last>) {
        match self {
            Crash::DurableOnly | Crash::NamesWithoutData => (0, None),
            Crash::Everything => (n, None),
            Crash::Mixed(state) => {
                let kept = (Crash::next(state) % (n as u64 + 1)) as usize;
                let last = match Crash::next(state) % 3 {
                    0 => Some(Last::Torn),
                    1 => Some(Last::Zeros),
                    _ => None,
                };
                (kept, last)
            }
        }
    }
}
