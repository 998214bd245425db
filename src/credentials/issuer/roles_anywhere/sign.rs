//! SigV4-X509: how a CreateSession request is signed with the host's
//! certificate key (AWS's "signing process for IAM Roles Anywhere").
//!
//! It is SigV4 with three differences: the algorithm is
//! `AWS4-X509-RSA-SHA256` or `AWS4-X509-ECDSA-SHA256`; the credential in the
//! `Authorization` header is the certificate's serial number in decimal;
//! and the string to sign is signed with the private key (RSA PKCS#1 v1.5
//! or ECDSA, both over SHA-256, the ECDSA signature DER-encoded) instead of
//! an HMAC chain. The certificate travels in `X-Amz-X509`, intermediates in
//! `X-Amz-X509-Chain` (base64 DER, comma-separated); both are signed.
//!
//! The primitives are aws-lc-rs (RSA) and RustCrypto's p256 / p384 (ECDSA,
//! which sign a SHA-256 prehash on either curve).

use base64::Engine;
use sha2::{Digest, Sha256};

/// The public key of a certificate, as its SubjectPublicKeyInfo says.
pub enum PublicKey {
    /// An RSA key: the DER `RSAPublicKey`.
    Rsa(Vec<u8>),
    /// An EC key on P-256: the SEC1 point.
    P256(Vec<u8>),
    /// An EC key on P-384: the SEC1 point.
    P384(Vec<u8>),
}

/// A private key able to sign the string to sign.
pub enum SigningKey {
    /// RSA, 2048 bits or more.
    Rsa(aws_lc_rs::rsa::KeyPair),
    /// ECDSA on P-256.
    P256(p256::ecdsa::SigningKey),
    /// ECDSA on P-384.
    P384(p384::ecdsa::SigningKey),
}

impl SigningKey {
    /// Parses a PEM block's DER as the key of a certificate with `public`,
    /// and checks that they are a pair.
    pub(super) fn from_pem_block(
        label: &str,
        der: &[u8],
        public: &PublicKey,
    ) -> Result<SigningKey, String> {
        let mismatch = || "the private key is not the certificate's key".to_string();
        match label {
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {}
            "ENCRYPTED PRIVATE KEY" => {
                return Err("the private key is encrypted; give an unencrypted key (with LoadCredentialEncrypted= under systemd)".into())
            }
            other => return Err(format!("a {other} is not a supported private key")),
        }
        match public {
            PublicKey::Rsa(expected) => {
                use aws_lc_rs::signature::KeyPair;
                let key = match label {
                    "RSA PRIVATE KEY" => aws_lc_rs::rsa::KeyPair::from_der(der),
                    "PRIVATE KEY" => aws_lc_rs::rsa::KeyPair::from_pkcs8(der),
                    _ => return Err(mismatch()),
                }
                .map_err(|e| format!("the RSA private key cannot be used: {e}"))?;
                if key.public_modulus_len() < 256 {
                    return Err("the RSA key is shorter than 2048 bits".into());
                }
                if key.public_key().as_ref() != expected.as_slice() {
                    return Err(mismatch());
                }
                Ok(SigningKey::Rsa(key))
            }
            PublicKey::P256(point) => Ok(SigningKey::P256(
                ec_secret::<p256::NistP256>(label, der, point)?.into(),
            )),
            PublicKey::P384(point) => Ok(SigningKey::P384(
                ec_secret::<p384::NistP384>(label, der, point)?.into(),
            )),
        }
    }

    /// The signing algorithm's name in the string to sign and the header.
    pub fn algorithm(&self) -> &'static str {
        match self {
            SigningKey::Rsa(_) => "AWS4-X509-RSA-SHA256",
            SigningKey::P256(_) | SigningKey::P384(_) => "AWS4-X509-ECDSA-SHA256",
        }
    }

    /// Signs `message` (hashed with SHA-256 here).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        match self {
            SigningKey::Rsa(key) => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let mut sig = vec![0; key.public_modulus_len()];
                key.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &rng,
                    message,
                    &mut sig,
                )
                .map_err(|_| "RSA signing failed".to_string())?;
                Ok(sig)
            }
            SigningKey::P256(key) => {
                let digest = Sha256::digest(message);
                let sig: p256::ecdsa::Signature = key
                    .sign_prehash(&digest)
                    .map_err(|_| "ECDSA signing failed".to_string())?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            SigningKey::P384(key) => {
                let digest = Sha256::digest(message);
                let sig: p384::ecdsa::Signature = key
                    .sign_prehash(&digest)
                    .map_err(|_| "ECDSA signing failed".to_string())?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
        }
    }
}

/// The EC private key in `der`, checked to be the pair of the certificate's
/// public `point` on curve `C`.
fn ec_secret<C>(
    label: &str,
    der: &[u8],
    point: &[u8],
) -> Result<elliptic_curve::SecretKey<C>, String>
where
    C: elliptic_curve::CurveArithmetic + elliptic_curve::pkcs8::AssociatedOid,
    elliptic_curve::FieldBytesSize<C>: elliptic_curve::sec1::ModulusSize,
    elliptic_curve::AffinePoint<C>:
        elliptic_curve::sec1::FromEncodedPoint<C> + elliptic_curve::sec1::ToEncodedPoint<C>,
{
    use elliptic_curve::pkcs8::DecodePrivateKey;
    let secret = match label {
        "EC PRIVATE KEY" => elliptic_curve::SecretKey::<C>::from_sec1_der(der),
        "PRIVATE KEY" => {
            elliptic_curve::SecretKey::<C>::from_pkcs8_der(der).map_err(|_| elliptic_curve::Error)
        }
        _ => Err(elliptic_curve::Error),
    }
    .map_err(|_| {
        "the private key is not the certificate's key (or is not an EC key on its curve)"
            .to_string()
    })?;
    let public = elliptic_curve::PublicKey::<C>::from_sec1_bytes(point)
        .map_err(|_| "the certificate's EC point is malformed".to_string())?;
    if secret.public_key() != public {
        return Err("the private key is not the certificate's key".into());
    }
    Ok(secret)
}

/// The parts of a signed request that the signature covers.
#[derive(Debug, Clone)]
pub struct Unsigned<'a> {
    /// `host[:port]` as sent in the Host header.
    pub host: &'a str,
    /// The absolute path, already URI-encoded.
    pub path: &'a str,
    /// Query parameters, unencoded.
    pub query: Vec<(&'a str, &'a str)>,
    /// The JSON body.
    pub body: &'a [u8],
    /// The region of the scope.
    pub region: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
    /// The certificate, DER.
    pub certificate: &'a [u8],
    /// Intermediates, DER.
    pub chain: &'a [Vec<u8>],
}

/// The signed headers of a request: name and value, in canonical order,
/// ending with `authorization`.
pub fn sign(
    req: &Unsigned<'_>,
    serial: &str,
    key: &SigningKey,
) -> Result<Vec<(String, String)>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut headers: Vec<(String, String)> = vec![
        ("content-type".into(), "application/json".into()),
        ("host".into(), req.host.to_owned()),
        ("x-amz-date".into(), req.amz_date.to_owned()),
        ("x-amz-x509".into(), b64.encode(req.certificate)),
    ];
    if !req.chain.is_empty() {
        let chain: Vec<String> = req.chain.iter().map(|c| b64.encode(c)).collect();
        headers.push(("x-amz-x509-chain".into(), chain.join(",")));
    }
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let scope = format!(
        "{}/{}/rolesanywhere/aws4_request",
        &req.amz_date[..8],
        req.region
    );
    let string_to_sign = string_to_sign(req, &headers, &signed_headers, &scope, key.algorithm());
    let signature = hex::encode(key.sign(string_to_sign.as_bytes())?);
    headers.push((
        "authorization".into(),
        format!(
            "{} Credential={serial}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            key.algorithm()
        ),
    ));
    Ok(headers)
}

/// SigV4's canonical request, hashed into the string to sign.
fn string_to_sign(
    req: &Unsigned<'_>,
    headers: &[(String, String)],
    signed_headers: &str,
    scope: &str,
    algorithm: &str,
) -> String {
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let canonical_request = format!(
        "POST\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        req.path,
        canonical_query(&req.query),
        hex::encode(Sha256::digest(req.body)),
    );
    format!(
        "{algorithm}\n{}\n{scope}\n{}",
        req.amz_date,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The query string, sorted by name and URI-encoded as SigV4 asks; the
/// request is sent with exactly this string.
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 encoding: everything but `A-Z a-z 0-9 - _ . ~` as `%XX`.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_sorted_and_encoded_like_sigv4() {
        let q = canonical_query(&[
            (
                "trustAnchorArn",
                "arn:aws:rolesanywhere:eu-west-1:1:trust-anchor/a b",
            ),
            ("profileArn", "p~_.-"),
        ]);
        assert_eq!(
            q,
            "profileArn=p~_.-&trustAnchorArn=arn%3Aaws%3Arolesanywhere%3Aeu-west-1%3A1%3Atrust-anchor%2Fa%20b"
        );
    }
}
