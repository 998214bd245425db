//! The inline session policy: a JSON file read at start, sent without the
//! whitespace outside its strings, which is how STS measures its size.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Most characters of the inline session policy, whitespace outside strings
/// removed.
pub const MAX_POLICY_CHARS: usize = 2048;

/// The inline session policy: where it was read and what is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPolicy {
    /// The file.
    pub path: PathBuf,
    /// Its JSON without whitespace outside strings, as sent.
    pub packed: String,
}

impl SessionPolicy {
    /// Reads and checks the policy at `path`: a regular file (a FIFO or a
    /// directory is refused without blocking), valid JSON, an object, and
    /// at most [`MAX_POLICY_CHARS`] of STS's characters once packed.
    pub fn read(path: &Path) -> Result<SessionPolicy, String> {
        let bytes = crate::credentials::issuer::roles_anywhere::material::read(path)?;
        let text =
            String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
        let packed = pack_policy(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(SessionPolicy {
            path: path.to_owned(),
            packed,
        })
    }

    /// `/etc/hostrole/policy.json (312 of 2048 characters, sha256 1a2b3c4d)`:
    /// the digest tells a changed file from the running one.
    pub fn describe(&self) -> String {
        let digest = Sha256::digest(self.packed.as_bytes());
        let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{} ({} of {MAX_POLICY_CHARS} characters, sha256 {short})",
            self.path.display(),
            self.packed.chars().count()
        )
    }
}

/// `policy` without JSON whitespace outside strings (STS's measure), after
/// checking it is a JSON object of at most [`MAX_POLICY_CHARS`] characters
/// STS takes (U+0020 to U+00FF).
pub fn pack_policy(policy: &str) -> Result<String, String> {
    match serde_json::from_str::<serde_json::Value>(policy) {
        Ok(serde_json::Value::Object(_)) => {}
        Ok(_) => return Err("not a JSON policy object ({…})".to_owned()),
        Err(e) => return Err(format!("not valid JSON: {e}")),
    }
    let mut packed = String::with_capacity(policy.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in policy.chars() {
        if in_string {
            packed.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            packed.push(c);
        }
    }
    let len = packed.chars().count();
    if len > MAX_POLICY_CHARS {
        return Err(format!(
            "the policy is {len} characters without whitespace; STS takes at most {MAX_POLICY_CHARS}"
        ));
    }
    if let Some(c) = packed.chars().find(|c| !(' '..='\u{ff}').contains(c)) {
        return Err(format!(
            "the policy contains {c:?}; STS takes characters U+0020 to U+00FF only"
        ));
    }
    Ok(packed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_packed_without_whitespace_outside_its_strings() {
        let text = "{\n  \"Version\": \"2012-10-17\",\n\t\"Statement\": [ {\"Sid\": \"a b\\\" c\", \"Effect\": \"Allow\", \"Action\": \"s3:Get*\", \"Resource\": \"*\"} ]\r\n}\n";
        assert_eq!(
            pack_policy(text).unwrap(),
            "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Sid\":\"a b\\\" c\",\"Effect\":\"Allow\",\"Action\":\"s3:Get*\",\"Resource\":\"*\"}]}"
        );
    }

    /// A policy object of exactly `chars` characters once packed, with
    /// whitespace around that does not count.
    fn policy_of(chars: usize) -> String {
        let frame = "{\"Sid\":\"\"}".len();
        format!("{{ \"Sid\" :\n \"{}\" }}", "x".repeat(chars - frame))
    }

    #[test]
    fn a_policy_is_at_most_2048_characters_once_packed() {
        let inside = policy_of(2048);
        assert!(inside.len() > 2048);
        assert_eq!(pack_policy(&inside).unwrap().len(), 2048);
        let e = pack_policy(&policy_of(2049)).unwrap_err();
        assert_eq!(
            e,
            "the policy is 2049 characters without whitespace; STS takes at most 2048"
        );
    }

    #[test]
    fn a_policy_must_be_a_json_object_of_stss_characters() {
        assert!(pack_policy("{\"Version\": ")
            .unwrap_err()
            .starts_with("not valid JSON"));
        assert!(pack_policy("[]")
            .unwrap_err()
            .starts_with("not a JSON policy object"));
        assert!(pack_policy("{\"Sid\": \"ÿ\"}").is_ok());
        let e = pack_policy("{\"Sid\": \"Ā\"}").unwrap_err();
        assert!(e.contains("U+0020 to U+00FF"), "{e}");
    }

    #[test]
    fn a_policy_file_is_read_and_described_and_a_fifo_or_directory_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.json");
        std::fs::write(&file, "{ \"Version\": \"2012-10-17\" }\n").unwrap();
        let p = SessionPolicy::read(&file).unwrap();
        assert_eq!(p.packed, "{\"Version\":\"2012-10-17\"}");
        let shown = p.describe();
        assert!(
            shown.starts_with(&format!(
                "{} (24 of 2048 characters, sha256 ",
                file.display()
            )),
            "{shown}"
        );
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = SessionPolicy::read(&fifo).unwrap_err();
        assert!(e.contains("not a regular file (a named pipe)"), "{e}");
        let e = SessionPolicy::read(dir.path()).unwrap_err();
        assert!(e.contains("not a regular file (a directory)"), "{e}");
        let e = SessionPolicy::read(&dir.path().join("missing")).unwrap_err();
        assert!(e.contains("missing"), "{e}");
        std::fs::write(&file, "Version: 2012-10-17\n").unwrap();
        let e = SessionPolicy::read(&file).unwrap_err();
        assert!(
            e.starts_with(&format!("{}: not valid JSON", file.display())),
            "{e}"
        );
        std::fs::write(&file, b"{\"a\": \"\xff\"}").unwrap();
        assert!(SessionPolicy::read(&file)
            .unwrap_err()
            .contains("not UTF-8"));
    }
}
