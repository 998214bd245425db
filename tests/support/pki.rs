//! Certificates made by openssl for the Roles Anywhere tests, and the
//! verifying fake endpoint (compat/fake_rolesanywhere.py) started on
//! loopback.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A key type.
#[derive(Debug, Clone, Copy)]
pub enum KeyType {
    /// RSA 2048.
    Rsa2048,
    /// EC P-256.
    P256,
    /// EC P-384.
    P384,
}

/// A key pair and certificate on disk.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Certificate, PEM.
    pub cert: PathBuf,
    /// Private key, PEM (PKCS#8 unless made traditional), mode 0600.
    pub key: PathBuf,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (Debian's openssl package) runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CNF: &str = "[ca]
default_ca = ca_default
[ca_default]
database = DIR/index.txt
new_certs_dir = DIR/new
serial = DIR/serial
default_md = sha256
policy = any
unique_subject = no
email_in_dn = no
[any]
commonName = supplied
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
[req]
distinguished_name = dn
[dn]
";

/// A directory of keys and certificates.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Uses `dir` (created).
    pub fn new(dir: &Path) -> Pki {
        let dir = dir.join("pki");
        std::fs::create_dir_all(dir.join("new")).unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(
            dir.join("ca.cnf"),
            CNF.replace("DIR", dir.to_str().unwrap()),
        )
        .unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A new private key, PKCS#8, mode 0600.
    pub fn key(&self, name: &str, kind: KeyType) -> PathBuf {
        let out = self.path(&format!("{name}.key"));
        let opt = match kind {
            KeyType::Rsa2048 => ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            KeyType::P256 => ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyType::P384 => ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        };
        let mut args = vec!["genpkey"];
        args.extend(opt);
        args.extend(["-out", out.to_str().unwrap()]);
        openssl(&args);
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600)).unwrap();
        out
    }

    /// A self-signed CA.
    pub fn root(&self, name: &str, kind: KeyType) -> Issued {
        let key = self.key(name, kind);
        let cert = self.path(&format!("{name}.pem"));
        let cnf = self.path("ca.cnf");
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "30",
            "-config",
            cnf.to_str().unwrap(),
            "-extensions",
            "ca_ext",
            "-out",
            cert.to_str().unwrap(),
        ]);
        Issued { cert, key }
    }

    /// A certificate for a new key of `kind`, signed by `issuer`, with
    /// `serial` (hex) and validity `start`..`end` (openssl's
    /// YYYYMMDDHHMMSSZ); `ca` makes an intermediate.
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        &self,
        name: &str,
        issuer: &Issued,
        kind: KeyType,
        serial: &str,
        start: &str,
        end: &str,
        ca: bool,
    ) -> Issued {
        self.issue_with(
            name,
            issuer,
            kind,
            serial,
            (start, end),
            if ca { "ca_ext" } else { "leaf_ext" },
        )
    }

    /// A host certificate for a new key of `kind`, signed by `issuer`,
    /// valid from yesterday for 30 days.
    pub fn leaf(&self, name: &str, issuer: &Issued, kind: KeyType, serial: &str) -> Issued {
        self.issue(name, issuer, kind, serial, &date(-1), &date(30), false)
    }

    /// A TLS server certificate for 127.0.0.1.
    pub fn server(&self, name: &str, issuer: &Issued) -> Issued {
        self.issue_with(
            name,
            issuer,
            KeyType::P256,
            "7E",
            (&date(-1), &date(30)),
            "server_ext",
        )
    }

    fn issue_with(
        &self,
        name: &str,
        issuer: &Issued,
        kind: KeyType,
        serial: &str,
        (start, end): (&str, &str),
        extensions: &str,
    ) -> Issued {
        let key = self.key(name, kind);
        let csr = self.path(&format!("{name}.csr"));
        let cert = self.path(&format!("{name}.pem"));
        let cnf = self.path("ca.cnf");
        openssl(&[
            "req",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            &format!("/CN={name}"),
            "-config",
            cnf.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
        ]);
        std::fs::write(self.path("serial"), format!("{serial}\n")).unwrap();
        openssl(&[
            "ca",
            "-batch",
            "-notext",
            "-config",
            cnf.to_str().unwrap(),
            "-cert",
            issuer.cert.to_str().unwrap(),
            "-keyfile",
            issuer.key.to_str().unwrap(),
            "-in",
            csr.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
            "-extensions",
            extensions,
            "-startdate",
            start,
            "-enddate",
            end,
        ]);
        Issued { cert, key }
    }

    /// The same key in the traditional PEM form (PKCS#1 or SEC1).
    pub fn traditional(&self, key: &Path) -> PathBuf {
        let out = key.with_extension("trad.key");
        openssl(&[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-traditional",
            "-out",
            out.to_str().unwrap(),
        ]);
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600)).unwrap();
        out
    }
}

/// openssl's date format for now plus `days` (negative: in the past).
pub fn date(days: i64) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + days * 86_400;
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{t}"), "+%Y%m%d%H%M%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The trust anchor and profile the fake knows.
pub const TRUST_ANCHOR_ARN: &str =
    "arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
/// The profile.
pub const PROFILE_ARN: &str =
    "arn:aws:rolesanywhere:eu-west-1:123456789012:profile/1a2b3c4d-5e6f-7a8b-9c0d-e1f2a3b4c5d6";

/// `serve` arguments for the roles-anywhere issuer at `endpoint` with the
/// demo role, the fake's trust anchor and profile, and `cert` and `key`.
pub fn ra_args(endpoint: &str, cert: &Path, key: &Path) -> Vec<String> {
    [
        "--issuer",
        "roles-anywhere",
        "--role-arn",
        super::ROLE_ARN,
        "--certificate",
        cert.to_str().unwrap(),
        "--private-key",
        key.to_str().unwrap(),
        "--trust-anchor-arn",
        TRUST_ANCHOR_ARN,
        "--profile-arn",
        PROFILE_ARN,
        "--roles-anywhere-endpoint",
        endpoint,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The verifying fake Roles Anywhere endpoint, stopped on drop.
pub struct FakeRolesAnywhere {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// One JSON line per CreateSession.
    pub log: PathBuf,
}

impl Drop for FakeRolesAnywhere {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> String {
    std::env::var("HOSTROLE_PYTHON").unwrap_or_else(|_| {
        panic!("HOSTROLE_PYTHON is not set: run scripts/test (it installs cryptography)")
    })
}

impl FakeRolesAnywhere {
    /// Starts the fake trusting `cas`, with extra arguments.
    pub fn start(dir: &Path, cas: &[&Path], extra: &[&str]) -> FakeRolesAnywhere {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/fake_rolesanywhere.py");
        let log = dir.join("rolesanywhere.jsonl");
        let mut cmd = Command::new(python());
        cmd.arg(script)
            .args([
                "--trust-anchor-arn",
                TRUST_ANCHOR_ARN,
                "--profile-arn",
                PROFILE_ARN,
            ])
            .args(["--log", log.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for ca in cas {
            cmd.args(["--ca", ca.to_str().unwrap()]);
        }
        let mut child = cmd.spawn().expect("start the fake Roles Anywhere endpoint");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the fake said {line:?}"))
            .to_owned();
        FakeRolesAnywhere {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Starts the fake over HTTPS with `tls`'s server certificate; also
    /// its `https://127.0.0.1:PORT` URL.
    pub fn start_https(dir: &Path, cas: &[&Path], tls: &Issued) -> (FakeRolesAnywhere, String) {
        let fake = FakeRolesAnywhere::start(
            dir,
            cas,
            &[
                "--tls-cert",
                tls.cert.to_str().unwrap(),
                "--tls-key",
                tls.key.to_str().unwrap(),
            ],
        );
        let https = fake.url.replacen("http://", "https://", 1);
        (fake, https)
    }

    /// Every CreateSession so far.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Switches the fake's mode (ok, throttle, denied, error, slow, empty).
    pub fn set_mode(&self, mode: &str) {
        let addr: std::net::SocketAddr = self.url.trim_start_matches("http://").parse().unwrap();
        let r = super::raw_request(
            addr,
            &format!(
                "POST /__fake/mode HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{mode}",
                mode.len()
            ),
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
}
