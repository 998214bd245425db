//! The host's base credentials against moto with authentication enforced:
//! a deleted or inactive key really fails there, so a call that succeeds
//! was signed with a key that works.
//!
//! A key rewritten in the credentials file under a running daemon is used
//! by the next AssumeRole, with no restart.

mod support;

use std::path::Path;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_sdk_sts::error::ProvideErrorMetadata;
use support::moto::*;
use support::*;

/// The base identity: an IAM user in moto's IAM.
const USER: &str = "host-base";
/// Calls moto answers without a signature: the four of [`set_up`].
const SET_UP_CALLS: u32 = 4;

/// An access key of moto's IAM.
#[derive(Clone)]
struct Key {
    id: String,
    secret: String,
}

fn sdk(moto: &Moto, key: &Key) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&moto.url)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                &key.id,
                &key.secret,
                None,
                None,
                "test",
            )),
        )
        .build()
}

fn iam(moto: &Moto, key: &Key) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&sdk(moto, key))
}

/// The user, its policy, the role and the user's first key: the calls
/// moto answers before it enforces authentication.
async fn set_up(moto: &Moto) -> Key {
    let anyone = Key {
        id: "AKIAUNSIGNEDSETUP000".into(),
        secret: "unsigned".into(),
    };
    let iam = iam(moto, &anyone);
    iam.create_user().user_name(USER).send().await.unwrap();
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sts:AssumeRole","sts:GetCallerIdentity","iam:ListAccessKeys","iam:CreateAccessKey","iam:UpdateAccessKey","iam:DeleteAccessKey"],"Resource":"*"}]}"#;
    iam.put_user_policy()
        .user_name(USER)
        .policy_name("base")
        .policy_document(policy)
        .send()
        .await
        .unwrap();
    // moto checks the trust policy against the caller's own ARN.
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/host-base"},"Action":"sts:AssumeRole"}]}"#;
    iam.create_role()
        .role_name("demo")
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap();
    new_key(&iam).await
}

async fn new_key(iam: &aws_sdk_iam::Client) -> Key {
    let out = iam
        .create_access_key()
        .user_name(USER)
        .send()
        .await
        .unwrap();
    let k = out.access_key().unwrap();
    Key {
        id: k.access_key_id().to_owned(),
        secret: k.secret_access_key().to_owned(),
    }
}

/// What `GetCallerIdentity` signed with `key` answers: the user's ARN, or
/// the error code.
async fn caller(moto: &Moto, key: &Key) -> Result<String, String> {
    aws_sdk_sts::Client::new(&sdk(moto, key))
        .get_caller_identity()
        .send()
        .await
        .map(|o| o.arn().unwrap_or_default().to_owned())
        .map_err(|e| match e.code() {
            Some(code) => code.to_owned(),
            None => code_in_body(&e),
        })
}

/// The error code of an answer the SDK could not parse: moto wraps its
/// authentication errors in `<Errors>`, which STS's own answers do not.
fn code_in_body<E, R: std::fmt::Debug>(e: &aws_sdk_sts::error::SdkError<E, R>) -> String {
    let text = format!("{:?}", e.raw_response());
    text.split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .map_or_else(|| format!("no code in {text}"), str::to_owned)
}

fn write_credentials(path: &Path, key: &Key) {
    std::fs::write(
        path,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            key.id, key.secret
        ),
    )
    .unwrap();
}

/// The daemon with its base identity in `credentials` only.
fn start_with_file(moto: &Moto, dir: &Path, credentials: &Path) -> Daemon {
    let home = dir.display().to_string();
    let none = dir.join("none").display().to_string();
    let file = credentials.display().to_string();
    let mut args = sts_args(&moto.url, true);
    args.extend(["--session-duration", "900"]);
    start_daemon_env(
        dir,
        &args,
        &[
            ("HOME", &home),
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_CONFIG_FILE", &none),
            ("AWS_SHARED_CREDENTIALS_FILE", &file),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_rewritten_under_a_running_daemon_signs_the_next_assume_role() {
    let moto = start_moto_with_auth(SET_UP_CALLS);
    let first = set_up(&moto).await;
    // Authentication is on: an unknown key is refused, the user's works.
    let unknown = Key {
        id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret: "wrong".into(),
    };
    assert_eq!(
        caller(&moto, &unknown).await.unwrap_err(),
        "InvalidClientTokenId"
    );
    assert!(caller(&moto, &first)
        .await
        .unwrap()
        .ends_with(":user/host-base"));

    let dir = temp_dir();
    let file = dir.path().join("aws-credentials");
    write_credentials(&file, &first);
    let d = start_with_file(&moto, dir.path(), &file);
    let before = wait_served(&d, Duration::from_secs(30));

    // The operator rotates the key by hand: a second key, the file
    // rewritten in place, the first key deleted.
    let second = new_key(&iam(&moto, &first)).await;
    write_credentials(&file, &second);
    iam(&moto, &second)
        .delete_access_key()
        .user_name(USER)
        .access_key_id(&first.id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        caller(&moto, &first).await.unwrap_err(),
        "InvalidClientTokenId",
        "the first key no longer works"
    );

    // A new AssumeRole, with no restart: it can only succeed with the
    // second key.
    let out = client(dir.path(), &["replace", ROLE_ARN]);
    assert!(out.status.success(), "{out:?}\n{}", d.log());
    let after = wait_served(&d, Duration::from_secs(30));
    assert_ne!(after["AccessKeyId"], before["AccessKeyId"]);
    let status = status_json(dir.path());
    assert_eq!(status["last-error"], serde_json::Value::Null, "{status}");
    assert!(
        d.wait_for_log(&second.id, Duration::from_secs(5)),
        "the log names the key in use: {}",
        d.log()
    );
    // The served credentials work at moto, which checks them too.
    let served = Key {
        id: after["AccessKeyId"].as_str().unwrap().into(),
        secret: after["SecretAccessKey"].as_str().unwrap().into(),
    };
    let token = after["Token"].as_str().unwrap().to_owned();
    let with_token = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&moto.url)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                &served.id,
                &served.secret,
                Some(token),
                None,
                "test",
            )),
        )
        .build();
    let arn = aws_sdk_sts::Client::new(&with_token)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert!(
        arn.arn()
            .unwrap_or_default()
            .contains(":assumed-role/demo/"),
        "{arn:?}"
    );
}
