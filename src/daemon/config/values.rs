//! Typed configuration values. Each checks itself when it is read, from the
//! file (where the TOML parser then names the file, line and column) or
//! from a flag (where the message names the flag's key), so a bad value is
//! never carried further as text.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use crate::role::RoleArn;

/// A value that is not what its key takes; the message says what is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadValue(pub String);

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! from_text {
    ($t:ty) => {
        impl TryFrom<String> for $t {
            type Error = BadValue;
            fn try_from(s: String) -> Result<Self, BadValue> {
                s.parse()
            }
        }
    };
}

/// An IP address and port to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ListenAddr(pub SocketAddr);

impl FromStr for ListenAddr {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        s.parse().map(ListenAddr).map_err(|_| {
            BadValue(format!(
                "{s:?} is not an IP address and port (e.g. 127.0.0.1:1338 or [::1]:1338)"
            ))
        })
    }
}
from_text!(ListenAddr);

/// A role ARN in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Role(pub RoleArn);

impl FromStr for Role {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        RoleArn::parse(s.trim())
            .map(Role)
            .map_err(|e| BadValue(e.to_string()))
    }
}
from_text!(Role);

/// A region or availability-zone name: lowercase letters, digits and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RegionName(pub String);

impl FromStr for RegionName {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(RegionName(s.to_owned()))
        } else {
            Err(BadValue(format!(
                "{s:?} is not a region or zone name (e.g. us-east-1, us-east-1a)"
            )))
        }
    }
}
from_text!(RegionName);

/// An `http://` or `https://` URL with a host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct EndpointUrl(pub String);

impl FromStr for EndpointUrl {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        let ok = (s.starts_with("http://") || s.starts_with("https://"))
            && s.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
        if ok {
            Ok(EndpointUrl(s.to_owned()))
        } else {
            Err(BadValue(format!("{s:?} is not an http:// or https:// URL")))
        }
    }
}
from_text!(EndpointUrl);

/// The ARN of a Roles Anywhere trust anchor or profile:
/// `arn:<partition>:rolesanywhere:<region>:<account>:<kind>/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RolesAnywhereArn {
    /// The ARN as written.
    pub arn: String,
    /// Its region.
    pub region: String,
    /// `trust-anchor` or `profile`.
    pub kind: String,
}

impl FromStr for RolesAnywhereArn {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        let s = s.trim();
        let bad = || {
            BadValue(format!(
                "{s:?} is not a Roles Anywhere ARN (arn:aws:rolesanywhere:REGION:ACCOUNT:trust-anchor/ID or .../profile/ID)"
            ))
        };
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return Err(bad());
        };
        let (kind, id) = resource.split_once('/').ok_or_else(bad)?;
        let ok = arn == "arn"
            && partition.starts_with("aws")
            && service == "rolesanywhere"
            && region.parse::<RegionName>().is_ok()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && matches!(kind, "trust-anchor" | "profile")
            && !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(bad());
        }
        Ok(RolesAnywhereArn {
            arn: s.to_owned(),
            region: region.to_owned(),
            kind: kind.to_owned(),
        })
    }
}
from_text!(RolesAnywhereArn);

/// An absolute path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PathBuf")]
pub struct AbsolutePath(pub PathBuf);

impl TryFrom<PathBuf> for AbsolutePath {
    type Error = BadValue;
    fn try_from(p: PathBuf) -> Result<Self, BadValue> {
        if p.is_absolute() {
            Ok(AbsolutePath(p))
        } else {
            Err(BadValue(format!(
                "{} must be an absolute path",
                p.display()
            )))
        }
    }
}

/// The IP TTL / IPv6 hop limit of token responses: 1 to 255.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct HopLimit(pub u8);

impl TryFrom<i64> for HopLimit {
    type Error = BadValue;
    fn try_from(n: i64) -> Result<Self, BadValue> {
        u8::try_from(n)
            .ok()
            .filter(|h| *h >= 1)
            .map(HopLimit)
            .ok_or_else(|| BadValue(format!("{n} is out of range 1..=255")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_checks_itself() {
        assert!("127.0.0.1:1".parse::<ListenAddr>().is_ok());
        assert!("[::1]:1".parse::<ListenAddr>().is_ok());
        assert!("localhost:1".parse::<ListenAddr>().is_err());
        assert!(" arn:aws:iam::123456789012:role/x ".parse::<Role>().is_ok());
        assert!("x".parse::<Role>().is_err());
        assert!("eu-west-1".parse::<RegionName>().is_ok());
        assert!("EU West".parse::<RegionName>().is_err());
        assert!("".parse::<RegionName>().is_err());
        assert!("http://127.0.0.1:5000".parse::<EndpointUrl>().is_ok());
        assert!("moto:5000".parse::<EndpointUrl>().is_err());
        assert!("ftp://x".parse::<EndpointUrl>().is_err());
        assert!(AbsolutePath::try_from(PathBuf::from("/a")).is_ok());
        assert!(AbsolutePath::try_from(PathBuf::from("a")).is_err());
        assert_eq!(HopLimit::try_from(1), Ok(HopLimit(1)));
        assert_eq!(HopLimit::try_from(255), Ok(HopLimit(255)));
        assert!(HopLimit::try_from(0).is_err());
        assert!(HopLimit::try_from(256).is_err());
        assert!(HopLimit::try_from(-1).is_err());
    }
}
