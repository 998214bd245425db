//! The base key in the shared credentials file: read, and replaced in its
//! profile's section only, the rest of the file kept byte for byte. The
//! file is replaced whole (a temporary file synced and renamed over it),
//! mode 0600, with the owner it had, so that a crash leaves the old key or
//! the new one, never half of each.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// An IAM user's access key.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// `AKIA…`: not secret.
    pub id: String,
    /// The secret access key.
    pub secret: Zeroizing<String>,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"** redacted **")
            .finish()
    }
}

/// Why the key file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file cannot be replaced.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The profile has no long-term key to rotate.
    #[error("{path}: {why}")]
    NoKey {
        /// The file.
        path: PathBuf,
        /// What is missing.
        why: String,
    },
}

/// The credentials file and the profile whose key is rotated.
#[derive(Debug, Clone)]
pub struct KeyFile {
    /// The file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`).
    pub path: PathBuf,
    /// The profile (`AWS_PROFILE`, else `default`).
    pub profile: String,
}

const ID: &str = "aws_access_key_id";
const SECRET: &str = "aws_secret_access_key";
const TOKEN: &str = "aws_session_token";

/// The name and value of an `name = value` line, names lower-cased.
fn setting(line: &str) -> Option<(String, &str)> {
    let (name, value) = line.split_once('=')?;
    Some((name.trim().to_ascii_lowercase(), value.trim()))
}

/// The profile a `[header]` line opens, if it is one.
fn header(line: &str) -> Option<&str> {
    let t = line.trim();
    t.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

impl KeyFile {
    /// The file and profile the SDK reads the base key from.
    pub fn from_env() -> KeyFile {
        let [_, path] = crate::credentials::issuer::sts::profile_files();
        KeyFile::for_profile(path, std::env::var("AWS_PROFILE").ok())
    }

    /// `path` and the profile `AWS_PROFILE` names (`env_profile`), or
    /// `default` when it is unset or blank.
    pub fn for_profile(path: PathBuf, env_profile: Option<String>) -> KeyFile {
        let profile = env_profile
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| "default".to_owned());
        KeyFile { path, profile }
    }

    fn no_key(&self, why: impl Into<String>) -> KeyFileError {
        KeyFileError::NoKey {
            path: self.path.clone(),
            why: why.into(),
        }
    }

    fn text(&self) -> Result<Zeroizing<String>, KeyFileError> {
        std::fs::read_to_string(&self.path)
            .map(Zeroizing::new)
            .map_err(|source| KeyFileError::Read {
                path: self.path.clone(),
                source,
            })
    }

    /// The profile's key.
    pub fn read(&self) -> Result<AccessKey, KeyFileError> {
        let text = self.text()?;
        let (mut id, mut secret, mut token) = (None, None, false);
        let mut inside = false;
        for line in text.lines() {
            if let Some(name) = header(line) {
                inside = name == self.profile;
                continue;
            }
            match setting(line) {
                Some((name, value)) if inside && name == ID => id = Some(value.to_owned()),
                Some((name, value)) if inside && name == SECRET => {
                    secret = Some(Zeroizing::new(value.to_owned()))
                }
                Some((name, _)) if inside && name == TOKEN => token = true,
                _ => {}
            }
        }
        if token {
            return Err(self.no_key(format!(
                "profile {} holds temporary credentials (aws_session_token), not an IAM user's key",
                self.profile
            )));
        }
        match (id, secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                Ok(AccessKey { id, secret })
            }
            _ => Err(self.no_key(format!(
                "profile {} has no {ID} and {SECRET} to rotate",
                self.profile
            ))),
        }
    }

    /// Replaces the profile's key with `key`, keeping every other line.
    pub fn write(&self, key: &AccessKey) -> Result<(), KeyFileError> {
        let text = self.text()?;
        let mut out = Zeroizing::new(String::with_capacity(text.len() + 64));
        let (mut inside, mut written) = (false, 0);
        for line in text.split_inclusive('\n') {
            if let Some(name) = header(line) {
                inside = name == self.profile;
            } else if inside {
                let end = if line.ends_with('\n') { "\n" } else { "" };
                match setting(line) {
                    Some((name, _)) if name == ID => {
                        out.push_str(&format!("{ID} = {}{end}", key.id));
                        written += 1;
                        continue;
                    }
                    Some((name, _)) if name == SECRET => {
                        out.push_str(&format!("{SECRET} = {}{end}", key.secret.as_str()));
                        written += 1;
                        continue;
                    }
                    _ => {}
                }
            }
            out.push_str(line);
        }
        if written != 2 {
            return Err(self.no_key(format!(
                "profile {} has no {ID} and {SECRET} to replace",
                self.profile
            )));
        }
        self.replace(out.as_bytes())
    }

    /// Writes `body` over the file (through a link, at its target), with
    /// the file's owner.
    fn replace(&self, body: &[u8]) -> Result<(), KeyFileError> {
        let write_err = |source| KeyFileError::Write {
            path: self.path.clone(),
            source,
        };
        let real = std::fs::canonicalize(&self.path).map_err(write_err)?;
        let owner = std::fs::metadata(&real).map_err(write_err)?;
        let (dir, name) = split(&real).map_err(write_err)?;
        crate::atomicfile::write_private_owned(dir, name, body, (owner.uid(), owner.gid()))
            .map_err(write_err)
    }
}

fn split(path: &Path) -> std::io::Result<(&Path, &str)> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path");
    let dir = path.parent().ok_or_else(bad)?;
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(bad)?;
    Ok((dir, name))
}

#[cfg(test)]
mod tests;
