//! What of rollouts survives a restart, in `<data_dir>/plugin-rollouts/<plugin>/`:
//!
//! - `rollout.json` and `candidate.wasm`: a shadow or canary running. At
//!   start it runs again, its counts from zero. Removed when it is
//!   promoted, rolled back by hand or automatically.
//! - `promoted.json` and `promoted.wasm`: the version last promoted, with
//!   the SHA-256 of the plugin's configured file at that moment. At start,
//!   and at each reload, the promoted version is used in place of that
//!   file as long as the file has not changed; once it changes (a new
//!   build, a deploy) the record is removed and the file is used.
//!
//! Each file is written atomically ([`crate::disk::replace_file`]); the
//! component first, then the record that names it.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_proto::CanaryPlan;

use crate::disk::{self, SharedDisk};

const ROLLOUT: &str = "rollout.json";
const CANDIDATE: &str = "candidate.wasm";
const PROMOTED: &str = "promoted.json";
const PROMOTED_WASM: &str = "promoted.wasm";

/// A running rollout, as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedRollout {
    /// `shadow` or `canary`.
    pub mode: String,
    /// The candidate's version.
    pub hash: String,
    /// A canary's plan.
    #[serde(default)]
    pub plan: Option<CanaryPlan>,
    /// When it started (ms since the Unix epoch).
    pub started_at_ms: i64,
}

/// A promoted version, as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPromotion {
    /// The promoted version.
    pub hash: String,
    /// SHA-256 (hex) of the plugin's configured file when it was promoted.
    pub file_sha256: String,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
}

/// The saved rollouts and promotions of a broker.
#[derive(Debug, Clone)]
pub struct Saved {
    disk: SharedDisk,
    dir: PathBuf,
}

impl Saved {
    /// Kept under `dir` (`<data_dir>/plugin-rollouts`).
    pub fn new(disk: SharedDisk, dir: &Path) -> Saved {
        Saved {
            disk,
            dir: dir.to_owned(),
        }
    }

    fn write(&self, name: &str, record: (&str, &[u8]), wasm: (&str, &[u8])) -> io::Result<()> {
        let dir = self.dir.join(name);
        disk::create_dir_durably(&*self.disk, &dir)?;
        disk::replace_file(&*self.disk, &dir.join(wasm.0), wasm.1)?;
        disk::replace_file(&*self.disk, &dir.join(record.0), record.1)
    }

    fn read<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        record: &str,
        wasm: &str,
    ) -> Option<(T, Vec<u8>)> {
        let dir = self.dir.join(name);
        let path = dir.join(record);
        let bytes = match self.disk.read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a saved plugin rollout; ignoring it");
                return None;
            }
        };
        let parsed = serde_json::from_slice(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|record| {
                let wasm = self.disk.read(&dir.join(wasm)).map_err(|e| e.to_string())?;
                Ok((record, wasm))
            });
        match parsed {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "a saved plugin rollout is damaged; ignoring it");
                None
            }
        }
    }

    fn remove(&self, name: &str, files: [&str; 2]) {
        let dir = self.dir.join(name);
        for file in files {
            match self.disk.remove_file(&dir.join(file)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %dir.join(file).display(), error = %e, "cannot remove a saved plugin rollout file")
                }
            }
        }
        let _ = self.disk.sync_dir(&dir);
    }

    /// Saves a running rollout and its candidate.
    pub fn save_rollout(&self, name: &str, rollout: &SavedRollout, wasm: &[u8]) -> io::Result<()> {
        let record = serde_json::to_vec_pretty(rollout).map_err(io::Error::other)?;
        self.write(name, (ROLLOUT, &record), (CANDIDATE, wasm))
    }

    /// The saved running rollout of `name`, with its candidate.
    pub fn rollout(&self, name: &str) -> Option<(SavedRollout, Vec<u8>)> {
        self.read(name, ROLLOUT, CANDIDATE)
    }

    /// Forgets the running rollout of `name`.
    pub fn forget_rollout(&self, name: &str) {
        self.remove(name, [ROLLOUT, CANDIDATE]);
    }

    /// Saves a promotion and the promoted component.
    pub fn save_promotion(
        &self,
        name: &str,
        promotion: &SavedPromotion,
        wasm: &[u8],
    ) -> io::Result<()> {
        let record = serde_json::to_vec_pretty(promotion).map_err(io::Error::other)?;
        self.write(name, (PROMOTED, &record), (PROMOTED_WASM, wasm))
    }

    /// The saved promotion of `name`, with the promoted component.
    pub fn promotion(&self, name: &str) -> Option<(SavedPromotion, Vec<u8>)> {
        self.read(name, PROMOTED, PROMOTED_WASM)
    }

    /// Forgets the promotion of `name`.
    pub fn forget_promotion(&self, name: &str) {
        self.remove(name, [PROMOTED, PROMOTED_WASM]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollouts_and_promotions_are_saved_read_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let saved = Saved::new(disk::real(), dir.path());
        assert!(saved.rollout("p").is_none());
        let rollout = SavedRollout {
            mode: "shadow".into(),
            hash: "abc".into(),
            plan: None,
            started_at_ms: 5,
        };
        saved.save_rollout("p", &rollout, b"wasm").unwrap();
        assert_eq!(saved.rollout("p"), Some((rollout, b"wasm".to_vec())));
        let promotion = SavedPromotion {
            hash: "def".into(),
            file_sha256: "00".into(),
            at_ms: 6,
        };
        saved.save_promotion("p", &promotion, b"v2").unwrap();
        saved.forget_rollout("p");
        assert!(saved.rollout("p").is_none());
        assert_eq!(saved.promotion("p"), Some((promotion, b"v2".to_vec())));
        std::fs::write(dir.path().join("p/promoted.json"), "{").unwrap();
        assert!(saved.promotion("p").is_none(), "damaged: ignored");
        saved.forget_promotion("p");
        assert!(!dir.path().join("p/promoted.wasm").exists());
    }
}
