//! The host's X.509 identity for IAM Roles Anywhere: its certificate, the
//! certificate's private key and any intermediates, read from disk at every
//! refresh so that a renewed certificate is used without a restart.
//!
//! Every problem is an error that names the file and what is wrong with it:
//! missing, unreadable, not a regular file (a FIFO would block the read),
//! not PEM, a key readable by others (refused, as ssh does), a key that is
//! not the certificate's, a certificate not yet valid or expired.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use x509_parser::pem::Pem;
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use super::sign::{PublicKey, SigningKey};
use crate::clock::rfc3339_seconds;

/// The largest certificate, chain or key file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A certificate closer than this to its end is reported (log, status,
/// metric) so that its renewal can be looked at in time.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// Longest wait for the files to be read (a hung network file system).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the identity is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaterialPaths {
    /// The end-entity certificate (PEM); further certificates in the same
    /// file are taken as intermediates when `chain` is not given.
    pub certificate: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// Intermediate certificates (PEM), if any.
    pub chain: Option<PathBuf>,
}

/// A certificate, its key and intermediates, checked against each other and
/// the clock.
pub struct Identity {
    /// The certificate, DER.
    pub certificate: Vec<u8>,
    /// Intermediates, DER, in file order.
    pub chain: Vec<Vec<u8>>,
    /// The certificate's serial number in decimal, as the `Credential` of
    /// the signature names it.
    pub serial: String,
    /// The end of the certificate's validity.
    pub not_after: SystemTime,
    /// The key that signs the request.
    pub key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("serial", &self.serial)
            .field("not_after", &rfc3339_seconds(self.not_after))
            .field("chain", &self.chain.len())
            .field("key", &self.key.algorithm())
            .finish()
    }
}

/// Reads and checks the identity at `paths` as of `now`. Blocking file I/O:
/// call it off the runtime.
pub fn load(paths: &MaterialPaths, now: SystemTime) -> Result<Identity, String> {
    let cert_file = read(&paths.certificate)?;
    let mut certs = pem_blocks(&paths.certificate, &cert_file, &["CERTIFICATE"])?.into_iter();
    let certificate = certs.next().ok_or_else(|| {
        format!(
            "{}: not a PEM file with a CERTIFICATE in it",
            paths.certificate.display()
        )
    })?;
    let mut chain: Vec<Vec<u8>> = certs.collect();
    if let Some(chain_path) = &paths.chain {
        chain = pem_blocks(chain_path, &read(chain_path)?, &["CERTIFICATE"])?;
        if chain.is_empty() {
            return Err(format!(
                "{}: not a PEM file with a CERTIFICATE in it",
                chain_path.display()
            ));
        }
    }
    let (serial, not_after, spki) = check_certificate(&paths.certificate, &certificate, now)?;
    for (i, der) in chain.iter().enumerate() {
        let path = paths.chain.as_ref().unwrap_or(&paths.certificate);
        X509Certificate::from_der(der).map_err(|e| {
            format!(
                "{}: certificate {} of the chain cannot be parsed: {e}",
                path.display(),
                i + 1
            )
        })?;
    }
    let key = read_key(&paths.private_key, &spki)?;
    Ok(Identity {
        certificate,
        chain,
        serial,
        not_after,
        key,
    })
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

fn check_certificate(
    path: &Path,
    der: &[u8],
    now: SystemTime,
) -> Result<(String, SystemTime, PublicKey), String> {
    let name = path.display();
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("{name}: the certificate cannot be parsed: {e}"))?;
    let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    let not_before = at(cert.validity().not_before.timestamp());
    let not_after = at(cert.validity().not_after.timestamp());
    if now < not_before {
        return Err(format!(
            "{name}: the certificate is not valid until {} (is the host clock right?)",
            rfc3339_seconds(not_before)
        ));
    }
    if now >= not_after {
        return Err(format!(
            "{name}: the certificate expired at {}; install a renewed one (no restart needed)",
            rfc3339_seconds(not_after)
        ));
    }
    let spki = cert.public_key();
    let bits = spki.subject_public_key.data.to_vec();
    let alg = spki.algorithm.algorithm.to_id_string();
    let key = if alg == OID_RSA {
        PublicKey::Rsa(bits)
    } else if alg == OID_EC {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        match curve.as_deref() {
            Some(OID_P256) => PublicKey::P256(bits),
            Some(OID_P384) => PublicKey::P384(bits),
            other => {
                return Err(format!(
                    "{name}: the certificate's EC curve {} is not supported (P-256 or P-384)",
                    other.unwrap_or("(none)")
                ))
            }
        }
    } else {
        return Err(format!(
            "{name}: the certificate's key type {alg} is not supported (RSA, or EC on P-256 or P-384)"
        ));
    };
    Ok((cert.serial.to_string(), not_after, key))
}

fn read_key(path: &Path, public: &PublicKey) -> Result<SigningKey, String> {
    let file = open(path)?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{}: the private key is accessible by group or others (mode {:04o}); \
             it must be readable by its owner only (chmod 600)",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    let text = Zeroizing::new(read_bounded(path, file)?);
    let blocks = Pem::iter_from_buffer(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM file: {e}", path.display()))?;
    let block = blocks
        .into_iter()
        .find(|b| b.label.ends_with("PRIVATE KEY"))
        .ok_or_else(|| format!("{}: no PRIVATE KEY in the file", path.display()))?;
    let der = Zeroizing::new(block.contents);
    SigningKey::from_pem_block(&block.label, &der, public)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Opens `path` for reading without blocking on a FIFO or a device (a file
/// swapped for one would otherwise hang every refresh), and refuses anything
/// but a regular file.
fn open(path: &Path) -> Result<File, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let kind = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .file_type();
    if !kind.is_file() {
        return Err(format!(
            "{}: not a regular file ({})",
            path.display(),
            describe(kind)
        ));
    }
    Ok(file)
}

fn describe(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a named pipe"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "another kind of file"
    }
}

fn read_bounded(path: &Path, file: File) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{}: larger than {MAX_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(buf)
}

/// Reads a small regular file (see [`open`]), at most [`MAX_FILE_BYTES`].
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, String> {
    read_bounded(path, open(path)?)
}

fn pem_blocks(path: &Path, text: &[u8], labels: &[&str]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(text) {
        let block = block.map_err(|e| format!("{}: not a PEM file: {e}", path.display()))?;
        if labels.contains(&block.label.as_str()) {
            out.push(block.contents);
        }
    }
    Ok(out)
}
