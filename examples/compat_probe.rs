//! The Rust SDK's default chain, unmodified, as a client in the
//! compatibility matrix (`compat/matrix`).
//!
//! One JSON line per step. Step 0 runs at once; each further step waits for
//! a line on stdin (the harness changes something in between). Per step:
//! - `fresh`: a new default chain (`aws_config::defaults(..).load()`), as a
//!   process that starts now would see it: credentials, region, and with
//!   `PROBE_STS_ENDPOINT` a signed `GetCallerIdentity` made with them.
//! - `held`: the credentials provider of step 0, asked again: aws-config's
//!   IMDS provider keeps its token and its last credentials.
use std::io::BufRead;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use serde_json::{json, Value};

const STEP_TIMEOUT: Duration = Duration::from_secs(15);

fn rfc3339(t: SystemTime) -> String {
    let s = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

async fn ask(provider: &SharedCredentialsProvider) -> Value {
    match tokio::time::timeout(STEP_TIMEOUT, provider.provide_credentials()).await {
        Err(_) => json!({ "error": "timed out" }),
        Ok(Err(e)) => json!({ "error": error_chain(&e) }),
        Ok(Ok(c)) => json!({
            "akid": c.access_key_id(),
            "expiration": c.expiry().map(rfc3339),
            "has_token": c.session_token().is_some(),
        }),
    }
}

async fn fresh() -> (Value, SharedCredentialsProvider) {
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let provider = config
        .credentials_provider()
        .expect("the default chain always has a provider");
    let mut v = ask(&provider).await;
    v["region"] = json!(config.region().map(|r| r.to_string()));
    if let (Some(url), None) = (std::env::var_os("PROBE_STS_ENDPOINT"), v.get("error")) {
        let sts = aws_sdk_sts::config::Builder::from(&config)
            .endpoint_url(url.to_string_lossy())
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .build();
        let call = aws_sdk_sts::Client::from_conf(sts)
            .get_caller_identity()
            .send();
        match tokio::time::timeout(STEP_TIMEOUT, call).await {
            Ok(Ok(out)) => v["arn"] = json!(out.arn()),
            Ok(Err(e)) => v["sts_error"] = json!(error_chain(&e)),
            Err(_) => v["sts_error"] = json!("timed out"),
        }
    }
    (v, provider)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let steps: u32 = std::env::var("PROBE_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut held: Option<SharedCredentialsProvider> = None;
    let mut lines = std::io::stdin().lock().lines();
    for step in 0..steps {
        if step > 0 && !matches!(lines.next(), Some(Ok(_))) {
            break;
        }
        let (f, provider) = fresh().await;
        let h = match &held {
            Some(p) => ask(p).await,
            None => Value::Null,
        };
        held.get_or_insert(provider);
        println!("{}", json!({ "step": step, "fresh": f, "held": h }));
    }
}
