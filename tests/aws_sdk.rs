//! aws-config's own IMDS providers (the Rust SDK's default chain uses
//! these) against the real daemon. The Rust SDK is IMDSv2-only.

mod support;

use std::time::{Duration, SystemTime};

use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::imds::region::ImdsRegionProvider;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::ProvideCredentials;
use support::*;

fn imds_client(url: &str) -> aws_config::imds::Client {
    aws_config::imds::Client::builder()
        .configure(&ProviderConfig::empty())
        .endpoint(url)
        .expect("endpoint URL")
        .build()
}

fn credentials_provider(client: &aws_config::imds::Client) -> ImdsCredentialsProvider {
    ImdsCredentialsProvider::builder()
        .configure(&ProviderConfig::empty())
        .imds_client(client.clone())
        .build()
}

async fn raw_key(addr: std::net::SocketAddr) -> String {
    tokio::task::spawn_blocking(move || {
        fetch_credentials(addr)["AccessKeyId"]
            .as_str()
            .unwrap()
            .to_owned()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_sdk_imds_provider_gets_the_served_credentials() {
    let dir = temp_dir();
    let d = start_demo_daemon(dir.path());
    let client = imds_client(&d.url());
    let creds = tokio::time::timeout(
        Duration::from_secs(20),
        credentials_provider(&client).provide_credentials(),
    )
    .await
    .expect("no hang")
    .expect("credentials from IMDS");
    assert_eq!(creds.access_key_id(), raw_key(d.addr).await);
    assert_eq!(creds.secret_access_key().len(), 40);
    assert!(creds.session_token().is_some());
    let left = creds
        .expiry()
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        left > Duration::from_secs(55 * 60) && left <= Duration::from_secs(3600),
        "{left:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_sdk_imds_region_provider_gets_the_configured_region() {
    let dir = temp_dir();
    let d = start_daemon(
        dir.path(),
        &[
            "--issuer",
            "local",
            "--role-arn",
            ROLE_ARN,
            "--region",
            "eu-west-3",
        ],
    );
    let region = ImdsRegionProvider::builder()
        .configure(&ProviderConfig::empty())
        .imds_client(imds_client(&d.url()))
        .build()
        .region()
        .await;
    assert_eq!(region.map(|r| r.to_string()).as_deref(), Some("eu-west-3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_role_the_rust_sdk_reports_no_credentials_promptly() {
    let dir = temp_dir();
    let d = start_daemon(dir.path(), &["--issuer", "local"]);
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        credentials_provider(&imds_client(&d.url())).provide_credentials(),
    )
    .await
    .expect("no hang");
    match result {
        Err(CredentialsError::CredentialsNotLoaded(_)) => {}
        other => panic!("expected CredentialsNotLoaded, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_restart_between_fetches_is_invisible_to_a_long_lived_rust_client() {
    let dir = temp_dir();
    let args = LOCAL_DEMO;
    let d = start_daemon(dir.path(), &args);
    // One client, as in a long-lived process: it caches its IMDSv2 token.
    let client = imds_client(&d.url());
    let provider = credentials_provider(&client);
    let first = provider.provide_credentials().await.expect("first fetch");
    let state = dir.path().to_owned();
    let d = tokio::task::spawn_blocking(move || d.restart(&state, &args))
        .await
        .unwrap();
    // The same client, with its cached token, fetches again without error.
    let second = tokio::time::timeout(
        Duration::from_secs(20),
        credentials_provider(&client).provide_credentials(),
    )
    .await
    .expect("no hang")
    .expect("fetch after restart");
    assert_eq!(second.access_key_id(), raw_key(d.addr).await);
    assert_ne!(
        first.access_key_id(),
        second.access_key_id(),
        "a new daemon minted new keys"
    );
}
