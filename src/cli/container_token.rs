//! `hostrole container-token create | list | revoke`: the container
//! endpoint's consumers, over the control socket.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::{call, fail, print_out, socket_path, ClientArgs};
use crate::association::control::protocol::{
    ConsumerName, ConsumerView, Request, TokenCreateRequest,
};
use crate::daemon::exit::EX_USAGE;

/// `hostrole container-token`.
#[derive(Debug, clap::Args)]
pub struct ContainerTokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: TokenAction,
}

/// The container-token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token for a new consumer and print it, once (root, the admin group or the daemon's user).
    Create {
        /// The consumer's name: 1–64 letters, digits and ._-
        #[arg(value_name = "NAME")]
        name: String,
        /// The token expires after this long, e.g. 90d, 12h, 30m [default: never].
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        #[allow(missing_docs)]
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the consumers: names, creation, expiry and state, never tokens.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[allow(missing_docs)]
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a consumer's token: refused from this moment.
    Revoke {
        /// The consumer's name.
        #[arg(value_name = "NAME")]
        name: String,
        #[allow(missing_docs)]
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Parses `--expires`: a number with a unit (`s`, `m`, `h`, `d`, as
/// `humantime` reads them: `90d`, `12h 30m`).
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("--expires {text:?}: {e} (for example 90d, 12h, 30m)"))?;
    if d < Duration::from_secs(1) {
        return Err(format!("--expires {text:?}: at least one second"));
    }
    Ok(d)
}

/// Runs one container-token subcommand.
pub fn run(args: ContainerTokenArgs) -> ExitCode {
    match args.action {
        TokenAction::Create {
            name,
            expires,
            client,
        } => {
            let lifetime = match expires.as_deref().map(parse_lifetime).transpose() {
                Ok(l) => l,
                Err(e) => return fail(EX_USAGE, e),
            };
            let request = Request::ContainerTokenCreate(TokenCreateRequest {
                name,
                expires_in_seconds: lifetime.map(|l| l.as_secs()),
            });
            match call(&request, &socket_path(&client)) {
                Ok(response) => match response.token {
                    Some(token) => {
                        eprintln!(
                            "hostrole: this token is shown once; give it to the consumer as \
                             AWS_CONTAINER_AUTHORIZATION_TOKEN (or in a file named by \
                             AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)"
                        );
                        print_out(&format!("{}\n", token.0))
                    }
                    None => fail(crate::daemon::exit::EX_SOFTWARE, "the daemon sent no token"),
                },
                Err(code) => code,
            }
        }
        TokenAction::List { json, client } => {
            match call(&Request::ContainerTokenList, &socket_path(&client)) {
                Ok(response) => {
                    let consumers = response.consumers.unwrap_or_default();
                    if json {
                        let text = serde_json::to_string_pretty(&consumers)
                            .expect("plain data serializes");
                        return print_out(&format!("{text}\n"));
                    }
                    print_out(&table(&consumers))
                }
                Err(code) => code,
            }
        }
        TokenAction::Revoke { name, client } => {
            let request = Request::ContainerTokenRevoke(ConsumerName { name: name.clone() });
            match call(&request, &socket_path(&client)) {
                Ok(_) => print_out(&format!("revoked: {name}\n")),
                Err(code) => code,
            }
        }
    }
}

/// The consumers as `list` prints them.
fn table(consumers: &[ConsumerView]) -> String {
    if consumers.is_empty() {
        return "no consumers\n".to_owned();
    }
    let width = consumers
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "{:<width$}  {:<8}  {:<20}  {:<20}  REVOKED\n",
        "NAME", "STATE", "CREATED", "EXPIRES"
    );
    for c in consumers {
        out.push_str(&format!(
            "{:<width$}  {:<8}  {:<20}  {:<20}  {}\n",
            c.name,
            c.state,
            c.created,
            c.expires.as_deref().unwrap_or("never"),
            c.revoked.as_deref().unwrap_or("-"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_take_units_and_refuse_nonsense() {
        assert_eq!(
            parse_lifetime("90d").unwrap(),
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(
            parse_lifetime("12h 30m").unwrap(),
            Duration::from_secs(45_000)
        );
        assert_eq!(parse_lifetime("1s").unwrap(), Duration::from_secs(1));
        for bad in ["", "soon", "10", "-1d", "500ms"] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_table_shows_every_consumer_and_no_token() {
        let view = |name: &str, state: &str| ConsumerView {
            name: name.into(),
            created: "2026-12-03T06:00:00Z".into(),
            expires: None,
            revoked: None,
            state: state.into(),
        };
        let text = table(&[view("web", "active"), view("batch-worker", "revoked")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME "));
        assert!(lines[1].starts_with("web           active"));
        assert!(lines[2].contains("batch-worker  revoked"));
        assert_eq!(table(&[]), "no consumers\n");
    }
}
