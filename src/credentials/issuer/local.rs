//! The local issuer: realistic credentials minted offline.
//!
//! For laptops, CI and tests against LocalStack or moto, where there is no
//! AWS account to call. Keys look like STS's (`ASIA` + 16 base-32
//! characters, a 40-character secret, an opaque session token) but are not
//! accepted by AWS. Never the default of the packaged service.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::{Rng, RngCore};
use zeroize::Zeroizing;

use super::{CredentialSource, FetchFuture};
use crate::clock::SharedClock;
use crate::credentials::Credentials;
use crate::role::Association;

const KEY_ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Mints credentials locally.
#[derive(Debug)]
pub struct LocalIssuer {
    lifetime: Duration,
    clock: SharedClock,
}

impl LocalIssuer {
    /// An issuer whose credentials live for `lifetime`.
    pub fn new(lifetime: Duration, clock: SharedClock) -> Self {
        LocalIssuer { lifetime, clock }
    }

    /// Mints one set of credentials now.
    pub fn mint(&self, association: &Association) -> Credentials {
        let mut rng = rand::thread_rng();
        let mut key_id = String::from("ASIA");
        key_id.extend(
            (0..16).map(|_| KEY_ID_ALPHABET[rng.gen_range(0..KEY_ID_ALPHABET.len())] as char),
        );
        let secret: Zeroizing<String> = Zeroizing::new(
            (0..40)
                .map(|_| SECRET_ALPHABET[rng.gen_range(0..SECRET_ALPHABET.len())] as char)
                .collect(),
        );
        // An opaque blob the size of a real session token, tagged so that a
        // reader can tell where it came from, and naming the role.
        let mut blob = Zeroizing::new(vec![0u8; 280]);
        rng.fill_bytes(&mut blob[..]);
        let mut raw = Zeroizing::new(association.role.as_str().as_bytes().to_vec());
        raw.extend_from_slice(&blob[..]);
        let mut token = Zeroizing::new(String::from("IQoJb3JpZ2luX2hvc3Ryb2xlLWxvY2Fs"));
        token.push_str(&STANDARD.encode(&raw[..]));
        let now = self.clock.now();
        Credentials {
            access_key_id: key_id,
            secret_access_key: secret,
            session_token: token,
            expiration: truncate_to_second(now + self.lifetime),
            last_updated: truncate_to_second(now),
        }
    }
}

fn truncate_to_second(t: std::time::SystemTime) -> std::time::SystemTime {
    std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(crate::clock::unix_seconds(t))
}

impl CredentialSource for LocalIssuer {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn fetch<'a>(&'a self, association: &'a Association) -> FetchFuture<'a> {
        let creds = self.mint(association);
        Box::pin(async move { Ok(creds) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::RoleArn;
    use std::sync::Arc;

    #[test]
    fn minted_credentials_look_like_sts_ones() {
        let issuer = LocalIssuer::new(
            Duration::from_secs(3600),
            Arc::new(crate::clock::SystemClock),
        );
        let assoc = Association {
            role: RoleArn::parse("arn:aws:iam::123456789012:role/demo").unwrap(),
            external_id: None,
            session_name: "host".into(),
        };
        let a = issuer.mint(&assoc);
        let b = issuer.mint(&assoc);
        assert_eq!(a.access_key_id.len(), 20);
        assert!(a.access_key_id.starts_with("ASIA"));
        assert!(a.access_key_id[4..]
            .bytes()
            .all(|c| KEY_ID_ALPHABET.contains(&c)));
        assert_eq!(a.secret_access_key.len(), 40);
        assert!(a.session_token.len() > 300);
        assert_ne!(a.access_key_id, b.access_key_id);
        assert_ne!(*a.secret_access_key, *b.secret_access_key);
        let life = a.expiration.duration_since(a.last_updated).unwrap();
        assert_eq!(life, Duration::from_secs(3600));
    }
}
