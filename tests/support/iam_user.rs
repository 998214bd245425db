//! An IAM user in moto's IAM as the daemon's base identity, with moto
//! enforcing authentication: its keys, the credentials file that holds
//! one, and the daemon started on that file alone.

use std::path::Path;

use aws_sdk_sts::error::ProvideErrorMetadata;

use super::moto::Moto;
use super::*;

/// The base identity: an IAM user in moto's IAM.
pub const USER: &str = "host-base";
/// Calls moto answers without a signature: the four of [`set_up`].
pub const SET_UP_CALLS: u32 = 4;

/// An access key of moto's IAM.
#[derive(Clone)]
pub struct Key {
    /// Its id.
    pub id: String,
    /// Its secret.
    pub secret: String,
}

/// An SDK configuration for moto signed with `key`.
pub fn sdk(moto: &Moto, key: &Key) -> aws_config::SdkConfig {
    super::moto::static_config(moto, &key.id, &key.secret, None)
}

pub fn iam(moto: &Moto, key: &Key) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&sdk(moto, key))
}

/// The user, its policy, the role and the user's first key: the calls
/// moto answers before it enforces authentication.
pub async fn set_up(moto: &Moto) -> Key {
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

pub async fn new_key(iam: &aws_sdk_iam::Client) -> Key {
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
pub async fn caller(moto: &Moto, key: &Key) -> Result<String, String> {
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
pub fn code_in_body<E, R: std::fmt::Debug>(e: &aws_sdk_sts::error::SdkError<E, R>) -> String {
    let text = format!("{:?}", e.raw_response());
    text.split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .map_or_else(|| format!("no code in {text}"), str::to_owned)
}

pub fn write_credentials(path: &Path, key: &Key) {
    std::fs::write(
        path,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            key.id, key.secret
        ),
    )
    .unwrap();
}

/// The daemon with its base identity in `credentials` only, STS at moto.
pub fn start_with_file(moto: &Moto, dir: &Path, credentials: &Path) -> Daemon {
    start_on_file(&moto.url, dir, credentials, "")
}

/// As [`start_with_file`], STS at `sts`, with `config` as the text of its
/// config file.
pub fn start_on_file(sts: &str, dir: &Path, credentials: &Path, config: &str) -> Daemon {
    let home = dir.display().to_string();
    let none = dir.join("none").display().to_string();
    let file = credentials.display().to_string();
    let config_path = dir.join("hostrole.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_path = config_path.display().to_string();
    let mut args = sts_args(sts, true);
    args.extend(["--session-duration", "900", "--config", &config_path]);
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

/// The user's keys as IAM lists them: id and status, signed with `key`.
pub async fn keys_of_user(moto: &Moto, key: &Key) -> Vec<(String, String)> {
    let out = iam(moto, key)
        .list_access_keys()
        .user_name(USER)
        .send()
        .await
        .unwrap();
    let mut keys: Vec<(String, String)> = out
        .access_key_metadata()
        .iter()
        .map(|m| {
            (
                m.access_key_id().unwrap_or_default().to_owned(),
                m.status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// The key the credentials file holds now.
pub fn key_in_file(path: &Path) -> Key {
    let text = std::fs::read_to_string(path).unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == name).then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    Key {
        id: value("aws_access_key_id"),
        secret: value("aws_secret_access_key"),
    }
}
