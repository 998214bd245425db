//! The host's base credentials against moto with authentication enforced:
//! a deleted or inactive key really fails there, so a call that succeeds
//! was signed with a key that works.
//!
//! A key rewritten in the credentials file under a running daemon is used
//! by the next AssumeRole, with no restart.

mod support;

use std::time::Duration;

use support::iam_user::*;
use support::moto::*;
use support::*;

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
    let with_token = static_config(
        &moto,
        after["AccessKeyId"].as_str().unwrap(),
        after["SecretAccessKey"].as_str().unwrap(),
        after["Token"].as_str().map(str::to_owned),
    );
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
