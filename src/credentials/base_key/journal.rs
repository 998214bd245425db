//! What a rotation has done so far, in the state directory, written before
//! each step that changes something: at the next start (or the next
//! rotation) an unfinished rotation is finished or undone from it. It holds
//! key ids and times, never a secret: the credentials file is the one
//! place a secret is written.
//!
//! Also the base key's record: which key it is, when it was created and
//! last rotated, for `status` and the `base-key-max-age-days` schedule.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The rotation journal's file name in the state directory.
pub const JOURNAL_FILE: &str = "base-key-rotation.json";
/// The record's file name in the state directory.
pub const RECORD_FILE: &str = "base-key.json";
/// Larger files are refused as corrupt.
const MAX_BYTES: u64 = 16 * 1024;

/// An unfinished rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Journal {
    /// The key being replaced.
    pub old: String,
    /// The new key, once IAM has returned it.
    pub new: Option<String>,
    /// When the rotation started (Unix seconds).
    pub started: u64,
    /// When the old key was made inactive (Unix seconds): it is deleted
    /// after the grace period.
    pub deactivated_at: Option<u64>,
}

/// The base key as last rotated or seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Record {
    /// The key id.
    pub key: String,
    /// When IAM created it (Unix seconds), if known.
    pub created: Option<u64>,
    /// When a rotation last put it in place (Unix seconds).
    pub last_rotation: Option<u64>,
}

/// Why a state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading, writing or removing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The content is not what this version writes.
    #[error("{path}: corrupt ({why}); move it away to start over")]
    Corrupt {
        /// The file.
        path: String,
        /// The parser's words.
        why: String,
    },
}

fn read<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> Result<Option<T>, JournalError> {
    use std::io::Read;
    let path = dir.join(name);
    let shown = path.display().to_string();
    let io = |source| JournalError::Io {
        path: shown.clone(),
        source,
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut text = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_BYTES {
        return Err(JournalError::Corrupt {
            path: shown,
            why: format!("larger than {MAX_BYTES} bytes"),
        });
    }
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| JournalError::Corrupt {
            path: shown,
            why: e.to_string(),
        })
}

fn write<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), JournalError> {
    let body = serde_json::to_vec_pretty(value).expect("plain data serializes");
    crate::atomicfile::write_private(dir, name, &body).map_err(|source| JournalError::Io {
        path: dir.join(name).display().to_string(),
        source,
    })
}

impl Journal {
    /// The unfinished rotation in `dir`, if any.
    pub fn load(dir: &Path) -> Result<Option<Journal>, JournalError> {
        read(dir, JOURNAL_FILE)
    }

    /// Writes it, durably, before the step it announces.
    pub fn save(&self, dir: &Path) -> Result<(), JournalError> {
        write(dir, JOURNAL_FILE, self)
    }

    /// The rotation is over.
    pub fn clear(dir: &Path) -> Result<(), JournalError> {
        crate::atomicfile::remove(dir, JOURNAL_FILE).map_err(|source| JournalError::Io {
            path: dir.join(JOURNAL_FILE).display().to_string(),
            source,
        })
    }
}

impl Record {
    /// The record in `dir`, if any.
    pub fn load(dir: &Path) -> Result<Option<Record>, JournalError> {
        read(dir, RECORD_FILE)
    }

    /// Writes it.
    pub fn save(&self, dir: &Path) -> Result<(), JournalError> {
        write(dir, RECORD_FILE, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_survives_a_round_trip_and_clearing_twice_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Journal::load(dir.path()).unwrap(), None);
        let j = Journal {
            old: "AKIAOLD".into(),
            new: Some("AKIANEW".into()),
            started: 1,
            deactivated_at: None,
        };
        j.save(dir.path()).unwrap();
        assert_eq!(Journal::load(dir.path()).unwrap(), Some(j));
        Journal::clear(dir.path()).unwrap();
        Journal::clear(dir.path()).unwrap();
        assert_eq!(Journal::load(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_journal_that_cannot_be_opened_is_an_error_not_an_absence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        std::os::unix::fs::symlink(&path, &path).unwrap();
        let e = Journal::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("base-key-rotation.json: "), "{e}");
    }

    #[test]
    fn a_journal_of_exactly_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut text =
            br#"{"old":"AKIAOLD","new":null,"started":1,"deactivated-at":null}"#.to_vec();
        text.resize(MAX_BYTES as usize, b' ');
        std::fs::write(dir.path().join(JOURNAL_FILE), text).unwrap();
        assert!(Journal::load(dir.path()).unwrap().is_some());
    }

    #[test]
    fn a_corrupt_or_huge_journal_is_named_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), "{\"old\":").unwrap();
        let e = Journal::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("base-key-rotation.json: corrupt"), "{e}");
        std::fs::write(dir.path().join(RECORD_FILE), vec![b' '; 20_000]).unwrap();
        let e = Record::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("larger than 16384 bytes"), "{e}");
    }
}
