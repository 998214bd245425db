//! The command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::association::control;
use crate::daemon::config;
mod container_token;
mod serve;
pub use container_token::{ContainerTokenArgs, TokenAction};
pub use serve::ServeArgs;

use crate::daemon::exit::{EX_CONFIG, EX_IOERR, EX_NOPERM, EX_SOFTWARE, EX_UNAVAILABLE, EX_USAGE};

/// Gives this host one IAM role through an EC2-compatible metadata endpoint.
#[derive(Debug, Parser)]
#[command(name = "hostrole", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (no timestamps under systemd: journald adds them).
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the metadata endpoint.
    Serve(Box<ServeArgs>),
    /// Give this host a role (fails if it has one: use replace).
    Associate(RoleArgs),
    /// Swap the host's role for another, atomically.
    Replace(RoleArgs),
    /// Remove the host's role: its credentials stop being served at once.
    Disassociate(ClientArgs),
    /// Show the role, the credentials' expiry and refresh state.
    Status(StatusArgs),
    /// Replace the base IAM user's access key in its credentials file with a new one (issuer sts).
    RotateBaseKey(ClientArgs),
    /// Manage the tokens of the container credentials endpoint's consumers.
    ContainerToken(ContainerTokenArgs),
}

/// Options shared by the client commands.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The daemon's control socket [default: your own daemon's, then /run/hostrole/control.sock; root: the other way round].
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
}

/// `hostrole associate` and `hostrole replace`.
#[derive(Debug, clap::Args)]
pub struct RoleArgs {
    /// The role, e.g. arn:aws:iam::123456789012:role/app.
    #[arg(value_name = "ROLE_ARN")]
    pub role_arn: String,
    /// External id the role's trust policy asks for.
    #[arg(long, value_name = "ID")]
    pub external_id: Option<String>,
    /// Role session name [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub session_name: Option<String>,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `hostrole status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub client: ClientArgs,
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HOSTROLE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn"));
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    // A log line that cannot be written (the reader of stderr is gone) is
    // dropped: reporting it would go to the same stderr and panic, in
    // whatever task logged, the one that stops the daemon included.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_target(false);
    let _ = match (format, under_journal) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Text, true) => builder.without_time().with_ansi(false).try_init(),
        (LogFormat::Text, false) => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("hostrole: error: {message}");
    ExitCode::from(code)
}

/// With this set to `true`, the AWS SDK logs the bodies of STS requests and
/// responses at trace level: the role's secret key and session token.
const SENSITIVE_BODIES_VAR: &str = "LOG_SENSITIVE_BODIES";

/// Entry point of the `hostrole` binary.
pub fn main() -> ExitCode {
    // Before any thread exists: only then is changing the environment sound.
    let sensitive_bodies_ignored = std::env::var_os(SENSITIVE_BODIES_VAR).is_some();
    std::env::remove_var(SENSITIVE_BODIES_VAR);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Serve(args) => serve(*args, sensitive_bodies_ignored),
        Command::Associate(args) => change(
            control::Request::Associate(args.role_request()),
            &args.client,
        ),
        Command::Replace(args) => {
            change(control::Request::Replace(args.role_request()), &args.client)
        }
        Command::Disassociate(args) => change(control::Request::Disassociate, &args),
        Command::Status(args) => status(&args),
        Command::RotateBaseKey(args) => rotate_base_key(&args),
        Command::ContainerToken(args) => container_token::run(args),
    }
}

impl RoleArgs {
    fn role_request(&self) -> control::RoleRequest {
        control::RoleRequest {
            role_arn: self.role_arn.clone(),
            external_id: self.external_id.clone(),
            session_name: self.session_name.clone(),
        }
    }
}

fn socket_path(args: &ClientArgs) -> PathBuf {
    args.control_socket
        .clone()
        .unwrap_or_else(crate::daemon::paths::client_socket_path)
}

fn call(request: &control::Request, socket: &Path) -> Result<control::Response, ExitCode> {
    call_within(request, socket, control::client::ANSWER_TIMEOUT)
}

fn call_within(
    request: &control::Request,
    socket: &Path,
    timeout: std::time::Duration,
) -> Result<control::Response, ExitCode> {
    let response = control::client::call_within(socket, request, timeout).map_err(|e| match e {
        control::client::ClientError::Connect { .. } => fail(EX_UNAVAILABLE, e),
        _ => fail(EX_SOFTWARE, e),
    })?;
    if response.ok {
        Ok(response)
    } else if response.permission_denied {
        Err(fail(EX_NOPERM, response.error.unwrap_or_default()))
    } else {
        Err(fail(1, response.error.unwrap_or_default()))
    }
}

fn change(request: control::Request, args: &ClientArgs) -> ExitCode {
    match call(&request, &socket_path(args)) {
        Ok(response) => {
            if let Some(w) = &response.warning {
                eprintln!("hostrole: warning: {w}");
            }
            let role = response.status.and_then(|s| s.role);
            print_out(&format!("role: {}\n", role.as_deref().unwrap_or("none")))
        }
        Err(code) => code,
    }
}

fn rotate_base_key(args: &ClientArgs) -> ExitCode {
    let timeout = control::client::ROTATION_TIMEOUT;
    match call_within(
        &control::Request::RotateBaseKey,
        &socket_path(args),
        timeout,
    ) {
        Ok(response) => {
            if let Some(w) = &response.warning {
                eprintln!("hostrole: warning: {w}");
            }
            print_out(&format!("{}\n", response.done.unwrap_or_default()))
        }
        Err(code) => code,
    }
}

fn status(args: &StatusArgs) -> ExitCode {
    // Looked up once: the socket named is the one that answered.
    let socket = socket_path(&args.client);
    let response = match call(&control::Request::Status, &socket) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let Some(s) = response.status else {
        return fail(EX_SOFTWARE, "the daemon sent no status");
    };
    if args.json {
        let json = serde_json::to_string_pretty(&s).expect("plain data serializes");
        return print_out(&format!("{json}\n"));
    }
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut text = String::new();
    let mut line = |name: &str, value: &dyn std::fmt::Display| {
        text.push_str(&format!("{:<17}{value}\n", format!("{name}:")));
    };
    line("role", &s.role.clone().unwrap_or_else(|| "none".into()));
    line("source", &s.source);
    line("serving", &if s.serving { "yes" } else { "no" });
    line("access key id", &or_none(&s.access_key_id));
    line("expiration", &or_none(&s.expiration));
    line("last refresh", &or_none(&s.last_refresh));
    line("next refresh", &or_none(&s.next_refresh));
    line("last error", &or_none(&s.last_error));
    if let (Some(serial), Some(expires)) = (&s.certificate, &s.certificate_expiration) {
        line(
            "certificate",
            &format!("serial {serial}, expires {expires}"),
        );
    }
    if let Some(key) = &s.base_key {
        let mut about = key.clone();
        if let Some(created) = &s.base_key_created {
            about.push_str(&format!(", created {created}"));
        }
        if let Some(days) = s.base_key_age_days {
            about.push_str(&format!(" ({days} days old)"));
        }
        if let Some(last) = &s.base_key_last_rotation {
            about.push_str(&format!(", rotated {last}"));
        }
        line("base key", &about);
    }
    if let Some(pending) = &s.base_key_rotation {
        line("key rotation", pending);
    }
    line("tokens issued", &s.tokens_issued);
    line("requests", &s.requests);
    line("daemon pid", &s.pid);
    line("control socket", &socket.display());
    print_out(&text)
}

/// Writes a command's output to standard output. A reader that stopped
/// reading (`hostrole status | head -1`) is no failure of the command:
/// exit 0, quietly. Dying of SIGPIPE instead (status 141, as cat does)
/// would fail `set -o pipefail` scripts that stop at the line they want,
/// `| grep -q serving` for one.
fn print_out(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(EX_IOERR, format!("cannot write the output: {e}")),
    }
}

fn serve(args: ServeArgs, sensitive_bodies_ignored: bool) -> ExitCode {
    let overrides = match args.overrides() {
        Ok(o) => o,
        Err(e) => return fail(EX_CONFIG, e),
    };
    let settings = match config::load_file(args.config.as_deref())
        .and_then(|(file, path)| config::resolve(file, overrides.clone(), path))
    {
        Ok(s) => s,
        Err(e) => return fail(EX_CONFIG, e),
    };
    if args.check_config {
        return check_config(&settings);
    }
    let log_format = args.log_format;
    init_logging(log_format);
    if sensitive_bodies_ignored {
        tracing::warn!(
            "{SENSITIVE_BODIES_VAR} is set; ignored: it would make the AWS SDK log \
             STS responses, secret keys and session tokens included"
        );
    }
    // One thread: the endpoint adds one per other core (see
    // endpoint::shards); the rest of the daemon is light.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(EX_SOFTWARE, format!("cannot start the runtime: {e}")),
    };
    let config = args.config.clone();
    let reload: crate::daemon::reload::Reload = Box::new(move || {
        config::load_file(config.as_deref())
            .and_then(|(file, path)| config::resolve(file, overrides.clone(), path))
    });
    let result = runtime.block_on(crate::daemon::run(
        settings,
        Some(reload),
        shutdown_signal(),
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Printed once, on a terminal as in the journal: a JSON log stays
        // JSON (the error is a field of its last line); otherwise the plain
        // line every other command error uses.
        Err(e) if log_format == LogFormat::Json => {
            tracing::error!(error = %e, "cannot start");
            ExitCode::from(e.exit_code())
        }
        Err(e) => fail(e.exit_code(), e),
    }
}

/// `serve --check-config`: the values, then what a start would find wrong
/// before binding (the region, the base credentials), with the same
/// message as the start; warnings on standard error, the settings printed.
fn check_config(settings: &config::Settings) -> ExitCode {
    let checked = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(EX_SOFTWARE, format!("cannot start the runtime: {e}")))
        .and_then(|rt| {
            let warn = |w: &str| eprintln!("hostrole: warning: {w}");
            rt.block_on(crate::daemon::setup::check(settings, warn))
                .map_err(|e| fail(e.exit_code(), e))
        });
    match checked {
        Ok(()) => print_out(&config::summary::describe(settings)),
        Err(code) => code,
    }
}

/// Completes at the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
