//! An in-memory endpoint for tests of the pure handler: a manual clock,
//! a fixed token key, and (optionally) a role with credentials.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hostrole::clock::{Clock, ManualClock, SharedClock};
use hostrole::credentials::refresh::{Served, Snapshot};
use hostrole::credentials::Credentials;
use hostrole::endpoint::identity::InstanceIdentity;
use hostrole::endpoint::imds::{handle, Caller, Endpoint, Reply};
use hostrole::endpoint::token::TokenAuthority;
use hostrole::role::{Association, RoleArn};
use http::{Method, Request, Response};
use zeroize::Zeroizing;

pub const ROLE: &str = "arn:aws:iam::123456789012:role/team/demo";

pub struct World {
    pub clock: Arc<ManualClock>,
    pub endpoint: Endpoint,
    pub snapshot: Snapshot,
}

pub fn world_with(v1: bool, role: bool) -> World {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000));
    let shared: SharedClock = clock.clone();
    let endpoint = Endpoint {
        tokens: TokenAuthority::new([1u8; 32], "boot".into(), shared.clone()),
        imds_v1: v1,
        identity: InstanceIdentity {
            instance_id: "i-0123456789abcdef0".into(),
            region: "eu-central-1".into(),
            availability_zone: "eu-central-1b".into(),
            started: clock.now(),
        },
        clock: shared,
        hop_limit: 1,
        access: None,
    };
    let snapshot = if role {
        let now = clock.now();
        Snapshot {
            association: Some(Association {
                role: RoleArn::parse(ROLE).unwrap(),
                external_id: None,
                session_name: "host".into(),
            }),
            served: Some(Arc::new(Served {
                credentials: Credentials {
                    access_key_id: "ASIAAAAAAAAAAAAAAAAA".into(),
                    secret_access_key: Zeroizing::new("s".repeat(40)),
                    session_token: Zeroizing::new("t".repeat(300)),
                    expiration: now + Duration::from_secs(3600),
                    last_updated: now,
                },
                expires_boot: clock.boot_time() + Duration::from_secs(3600),
            })),
            last_refresh: Some(now),
            source: "local",
            ..Snapshot::default()
        }
    } else {
        Snapshot::default()
    };
    World {
        clock,
        endpoint,
        snapshot,
    }
}

pub fn world() -> World {
    world_with(false, true)
}

impl World {
    pub fn send(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send_as(&Caller::default(), method, path, headers)
    }

    pub fn send_as(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "169.254.169.254");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        handle(&b.body(()).unwrap(), &self.snapshot, &self.endpoint, caller)
    }

    pub fn token(&self) -> String {
        let r = self.send(
            Method::PUT,
            "/latest/api/token",
            &[("x-aws-ec2-metadata-token-ttl-seconds", "21600")],
        );
        assert_eq!(r.response.status(), 200);
        body(&r.response)
    }

    pub fn get(&self, path: &str) -> Reply {
        let t = self.token();
        self.send(Method::GET, path, &[("x-aws-ec2-metadata-token", &t)])
    }
}

pub fn body(r: &Response<Bytes>) -> String {
    String::from_utf8(r.body().to_vec()).unwrap()
}
