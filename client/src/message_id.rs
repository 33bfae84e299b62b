//! Message ids for messages published without one. The broker stores a
//! message once per id (within its de-duplication window), so a publish
//! that a lost connection left unanswered can be sent again safely.
//!
//! An id is 128 bits written as 22 characters of URL-safe base64: 64 bits
//! drawn from the operating system once per process, then a 64-bit counter
//! that starts at a random value. Ids are unique across processes and
//! restarts (each draws anew) without a system call per message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// This process's random prefix and its counter.
struct Ids {
    prefix: u64,
    counter: AtomicU64,
}

impl Ids {
    fn new() -> Ids {
        let mut seed = [0u8; 16];
        if let Err(e) = getrandom::fill(&mut seed) {
            // Not expected on any supported platform; std's hasher keys
            // are random per process too, so ids stay unique in practice.
            tracing::warn!(error = %e, "no OS randomness for message ids; using a weaker seed");
            seed = weak_seed();
        }
        let (prefix, start) = seed.split_at(8);
        Ids {
            prefix: u64::from_le_bytes(prefix.try_into().expect("8 bytes")),
            counter: AtomicU64::new(u64::from_le_bytes(start.try_into().expect("8 bytes"))),
        }
    }

    fn next(&self) -> String {
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.prefix.to_be_bytes());
        bytes[8..].copy_from_slice(&count.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

/// 16 bytes from the process's randomly keyed hasher, the clock and the
/// process id.
fn weak_seed() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut seed = [0u8; 16];
    for (i, half) in seed.chunks_mut(8).enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_usize(i);
        hasher.write_u32(std::process::id());
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    seed
}

/// A new id, never given before by this or (with overwhelming
/// probability) any other process.
pub(crate) fn new_id() -> String {
    static IDS: OnceLock<Ids> = OnceLock::new();
    IDS.get_or_init(Ids::new).next()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_22_url_safe_characters_and_all_different() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 22, "{id}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{id}"
            );
        }
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    }

    #[test]
    fn each_generator_draws_its_own_prefix() {
        // Two processes (here: two generators) share no ids.
        let (a, b) = (Ids::new(), Ids::new());
        let a: HashSet<String> = (0..1_000).map(|_| a.next()).collect();
        assert!((0..1_000).all(|_| !a.contains(&b.next())));
    }

    #[test]
    fn the_weak_seed_differs_between_halves_and_calls() {
        let (x, y) = (weak_seed(), weak_seed());
        assert_ne!(x[..8], x[8..]);
        assert_ne!(x, y);
    }
}
