//! Tokens for the container credentials endpoint, one per consumer.
//!
//! Unlike IMDS, every caller of `/v1/credentials` proves who it is with a
//! token of its own (`AWS_CONTAINER_AUTHORIZATION_TOKEN`). Each token is
//! random (256 bits), shown once when it is created, and stored only as its
//! SHA-256 in `container-tokens.json` in the state directory (mode 0600,
//! replaced whole). A presented token is hashed and compared with every
//! stored hash in constant time. A revoked token is kept as a tombstone
//! (hash and name) so that its later use is logged with the consumer's name.
//!
//! Creating a token is written to disk before it is valid; revoking one
//! takes effect in memory first, so a revocation that cannot be saved still
//! ends the token at once (and is reported).

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::atomicfile;
use crate::clock::{from_unix_seconds, unix_seconds, SharedClock};

/// The file in the state directory.
pub const TOKENS_FILE: &str = "container-tokens.json";
/// Most consumers kept, tombstones included.
pub const MAX_CONSUMERS: usize = 1000;
/// Largest file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// What every token starts with, so that one found in a log or a
/// repository is recognised.
pub const TOKEN_PREFIX: &str = "hrct-";
/// Longest token accepted for checking (a longer one is refused unhashed).
const MAX_TOKEN_CHARS: usize = 128;
/// Longest consumer name.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest lifetime of a token.
pub const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);

/// What a presented token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid, for this consumer.
    Valid(String),
    /// Not any consumer's.
    Unknown,
    /// This consumer's, expired.
    Expired(String),
    /// This consumer's, revoked.
    Revoked(String),
}

/// A consumer as `container-token list` shows it: never its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ConsumerView {
    /// Its name.
    pub name: String,
    /// When its token was created (RFC 3339).
    pub created: String,
    /// When it expires, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// A bad name.
    #[error(
        "invalid consumer name {0:?}: 1–{MAX_NAME_CHARS} characters of letters, digits and ._-"
    )]
    Name(String),
    /// A name in use.
    #[error("consumer {0:?} has an active token already: revoke it first")]
    Exists(String),
    /// No such consumer.
    #[error("no consumer named {0:?}")]
    NotFound(String),
    /// Already revoked.
    #[error("the token of consumer {0:?} is revoked already")]
    AlreadyRevoked(String),
    /// A bad lifetime.
    #[error("invalid lifetime: from 1 second to 10 years")]
    Lifetime,
    /// Too many consumers.
    #[error("{MAX_CONSUMERS} consumers already (revoked and expired ones included): revoke some")]
    Full,
    /// The file could not be written.
    #[error("cannot save {}: {source}", path.display())]
    Save {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file could not be read at start.
    #[error("cannot read {}: {message}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// A token just created: shown once.
pub struct NewToken {
    /// The token.
    pub token: Zeroizing<String>,
    /// The consumer as listed.
    pub consumer: ConsumerView,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("token", &"[redacted]")
            .field("consumer", &self.consumer)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(with = "hex32")]
    sha256: [u8; 32],
    created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    consumers: Vec<Entry>,
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out)
            .map_err(|_| serde::de::Error::custom("sha256: 64 hexadecimal digits expected"))?;
        Ok(out)
    }
}

/// The consumers and their token hashes.
#[derive(Debug)]
pub struct ConsumerTokens {
    dir: PathBuf,
    clock: SharedClock,
    entries: RwLock<Vec<Entry>>,
}

/// Whether `name` may name a consumer.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl ConsumerTokens {
    /// Loads the consumers kept in `dir` (none when the file is absent).
    pub fn load(dir: &Path, clock: SharedClock) -> Result<Self, ConsumerError> {
        let path = dir.join(TOKENS_FILE);
        let load_error = |message: String| ConsumerError::Load {
            path: path.clone(),
            message,
        };
        let entries = match atomicfile::read_private(&path, MAX_FILE_BYTES) {
            Ok(bytes) => {
                let file: File =
                    serde_json::from_slice(&bytes).map_err(|e| load_error(e.to_string()))?;
                if file.version != 1 {
                    return Err(load_error(format!("unknown version {}", file.version)));
                }
                if file.consumers.len() > MAX_CONSUMERS {
                    return Err(load_error(format!("more than {MAX_CONSUMERS} consumers")));
                }
                if let Some(bad) = file.consumers.iter().find(|e| !valid_name(&e.name)) {
                    return Err(load_error(format!("invalid consumer name {:?}", bad.name)));
                }
                file.consumers
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(load_error(e.to_string())),
        };
        Ok(ConsumerTokens {
            dir: dir.to_owned(),
            clock,
            entries: RwLock::new(entries),
        })
    }

    fn save(&self, entries: &[Entry]) -> Result<(), ConsumerError> {
        let file = File {
            version: 1,
            consumers: entries.to_vec(),
        };
        let body = serde_json::to_vec_pretty(&file).expect("plain data serializes");
        atomicfile::write_private(&self.dir, TOKENS_FILE, &body).map_err(|source| {
            ConsumerError::Save {
                path: self.dir.join(TOKENS_FILE),
                source,
            }
        })
    }

    fn view(&self, e: &Entry, now: u64) -> ConsumerView {
        let state = if e.revoked.is_some() {
            "revoked"
        } else if e.expires.is_some_and(|x| x <= now) {
            "expired"
        } else {
            "active"
        };
        let time = |s: u64| crate::clock::rfc3339_seconds(from_unix_seconds(s));
        ConsumerView {
            name: e.name.clone(),
            created: time(e.created),
            expires: e.expires.map(time),
            revoked: e.revoked.map(time),
            state: state.to_owned(),
        }
    }

    /// Creates a token for a new consumer `name`, valid for `lifetime`
    /// (forever when `None`). A name whose token expired or was revoked is
    /// taken over.
    pub fn create(
        &self,
        name: &str,
        lifetime: Option<Duration>,
    ) -> Result<NewToken, ConsumerError> {
        if !valid_name(name) {
            return Err(ConsumerError::Name(name.to_owned()));
        }
        if lifetime.is_some_and(|l| l.is_zero() || l > MAX_LIFETIME) {
            return Err(ConsumerError::Lifetime);
        }
        let now = unix_seconds(self.clock.now());
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *bytes);
        let token = Zeroizing::new(format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(*bytes)
        ));
        let entry = Entry {
            name: name.to_owned(),
            sha256: digest(&token),
            created: now,
            expires: lifetime.map(|l| now + l.as_secs().max(1)),
            revoked: None,
        };
        let mut entries = self.entries.write().expect("not poisoned");
        let mut next = entries.clone();
        if let Some(i) = next.iter().position(|e| e.name == name) {
            let e = &next[i];
            if e.revoked.is_none() && e.expires.is_none_or(|x| x > now) {
                return Err(ConsumerError::Exists(name.to_owned()));
            }
            next.remove(i);
        }
        if next.len() >= MAX_CONSUMERS {
            return Err(ConsumerError::Full);
        }
        next.push(entry);
        // On disk before it is valid: a token that was printed always
        // survives a restart.
        self.save(&next)?;
        let consumer = self.view(next.last().expect("just pushed"), now);
        *entries = next;
        Ok(NewToken { token, consumer })
    }

    /// Revokes `name`'s token, at once. Returns the consumer; an error
    /// when it cannot be saved, though the token is refused from now on
    /// regardless (revoking it again saves it again).
    pub fn revoke(&self, name: &str) -> Result<ConsumerView, ConsumerError> {
        let now = unix_seconds(self.clock.now());
        let mut entries = self.entries.write().expect("not poisoned");
        let Some(e) = entries.iter_mut().find(|e| e.name == name) else {
            return Err(ConsumerError::NotFound(name.to_owned()));
        };
        if e.revoked.is_some() {
            // Saved again: an earlier revocation may not have been.
            let snapshot = entries.clone();
            drop(entries);
            self.save(&snapshot)?;
            return Err(ConsumerError::AlreadyRevoked(name.to_owned()));
        }
        e.revoked = Some(now);
        let view = self.view(e, now);
        let snapshot = entries.clone();
        drop(entries);
        self.save(&snapshot)?;
        Ok(view)
    }

    /// Every consumer, oldest first.
    pub fn list(&self) -> Vec<ConsumerView> {
        let now = unix_seconds(self.clock.now());
        let entries = self.entries.read().expect("not poisoned");
        entries.iter().map(|e| self.view(e, now)).collect()
    }

    /// What `token` is. Every stored hash is compared, in constant time,
    /// whatever matches.
    pub fn verify(&self, token: &str) -> Verdict {
        if token.len() > MAX_TOKEN_CHARS {
            return Verdict::Unknown;
        }
        let presented = digest(token);
        let now = unix_seconds(self.clock.now());
        let entries = self.entries.read().expect("not poisoned");
        let mut found: Option<&Entry> = None;
        for e in entries.iter() {
            if bool::from(e.sha256.ct_eq(&presented)) {
                found = Some(e);
            }
        }
        match found {
            None => Verdict::Unknown,
            Some(e) if e.revoked.is_some() => Verdict::Revoked(e.name.clone()),
            Some(e) if e.expires.is_some_and(|x| x <= now) => Verdict::Expired(e.name.clone()),
            Some(e) => Verdict::Valid(e.name.clone()),
        }
    }
}
