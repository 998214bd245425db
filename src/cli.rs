//! The command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::association::control;
use crate::daemon::config::{self, FileConfig, ImdsV1, IssuerKind};
use crate::daemon::exit::{EX_CONFIG, EX_NOPERM, EX_SOFTWARE, EX_UNAVAILABLE, EX_USAGE};

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
}

/// Options shared by the client commands.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The daemon's control socket [default: /run/hostrole/control.sock].
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

/// `hostrole serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Config file [default: /etc/hostrole/hostrole.toml, if it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, repeatable [default: 127.0.0.1:1338].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<String>,
    /// The role to assume, e.g. arn:aws:iam::123456789012:role/demo.
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// External id the role's trust policy asks for.
    #[arg(long, value_name = "ID")]
    pub external_id: Option<String>,
    /// Role session name [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub session_name: Option<String>,
    /// Session length in seconds [default: 3600].
    #[arg(long = "session-duration", value_name = "SECONDS")]
    pub session_duration: Option<u64>,
    /// Where credentials come from [default: sts].
    #[arg(long, value_enum)]
    pub issuer: Option<IssuerKind>,
    /// STS endpoint URL (moto, LocalStack, a VPC endpoint).
    #[arg(long, value_name = "URL")]
    pub sts_endpoint: Option<String>,
    /// Region [default: from config, AWS_REGION or the AWS profile].
    #[arg(long)]
    pub region: Option<String>,
    /// Availability zone to report [default: the region's "a" zone].
    #[arg(long, value_name = "ZONE")]
    pub availability_zone: Option<String>,
    /// Serve requests that carry no IMDSv2 token [default: disabled].
    #[arg(long, value_enum)]
    pub imds_v1: Option<ImdsV1>,
    /// State directory [default: /var/lib/hostrole as root, else ~/.local/state/hostrole].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Control socket path [default: /run/hostrole/control.sock as root].
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Serve Prometheus metrics on this address [default: off].
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<String>,
    /// IP TTL / IPv6 hop limit of token responses [default: 1].
    #[arg(long, value_name = "N")]
    pub hop_limit: Option<u32>,
    /// Only this local user may read credentials (repeatable; uid).
    #[arg(long = "allowed-uid", value_name = "UID")]
    pub allowed_uids: Vec<u32>,
    /// Only members of this group may read credentials (repeatable; gid).
    #[arg(long = "allowed-gid", value_name = "GID")]
    pub allowed_gids: Vec<u32>,
    /// Validate the configuration, print it, and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// The flags, in the shape of the config file they override, each
    /// checked as the same key in the file would be.
    fn overrides(&self) -> Result<FileConfig, config::ConfigError> {
        let listen = self
            .listen
            .iter()
            .map(|a| config::flag("listen", Some(a)).map(Option::unwrap))
            .collect::<Result<Vec<_>, _>>()?;
        let hop_limit = self
            .hop_limit
            .map(|h| {
                config::values::HopLimit::try_from(i64::from(h))
                    .map_err(|e| config::ConfigError::Invalid(format!("hop-limit: {e}")))
            })
            .transpose()?;
        let state_dir = self
            .state_dir
            .clone()
            .map(|d| {
                config::values::AbsolutePath::try_from(d)
                    .map_err(|e| config::ConfigError::Invalid(format!("state-dir: {e}")))
            })
            .transpose()?;
        Ok(FileConfig {
            listen: (!listen.is_empty()).then_some(listen),
            role_arn: config::flag("role-arn", self.role_arn.as_deref())?,
            external_id: self.external_id.clone(),
            session_name: self.session_name.clone(),
            session_duration_seconds: self.session_duration,
            issuer: self.issuer,
            sts_endpoint: config::flag("sts-endpoint", self.sts_endpoint.as_deref())?,
            region: config::flag("region", self.region.as_deref())?,
            availability_zone: config::flag(
                "availability-zone",
                self.availability_zone.as_deref(),
            )?,
            imds_v1: self.imds_v1,
            state_dir,
            control_socket: self.control_socket.clone(),
            metrics_listen: config::flag("metrics-listen", self.metrics_listen.as_deref())?,
            hop_limit,
            allowed_uids: (!self.allowed_uids.is_empty()).then(|| self.allowed_uids.clone()),
            allowed_gids: (!self.allowed_gids.is_empty()).then(|| self.allowed_gids.clone()),
            // Set in the config file only.
            admin_group: None,
            revoke_sessions: None,
            iam_endpoint: None,
        })
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HOSTROLE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn"));
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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

fn call(request: &control::Request, args: &ClientArgs) -> Result<control::Response, ExitCode> {
    let response = control::client::call(&socket_path(args), request).map_err(|e| match e {
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
    match call(&request, args) {
        Ok(response) => {
            if let Some(w) = &response.warning {
                eprintln!("hostrole: warning: {w}");
            }
            let role = response.status.and_then(|s| s.role);
            match role {
                Some(role) => println!("role: {role}"),
                None => println!("role: none"),
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn status(args: &StatusArgs) -> ExitCode {
    let response = match call(&control::Request::Status, &args.client) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let Some(s) = response.status else {
        return fail(EX_SOFTWARE, "the daemon sent no status");
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s).expect("plain data serializes")
        );
        return ExitCode::SUCCESS;
    }
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!(
        "role:            {}",
        s.role.clone().unwrap_or_else(|| "none".into())
    );
    println!("source:          {}", s.source);
    println!("serving:         {}", if s.serving { "yes" } else { "no" });
    println!("access key id:   {}", or_none(&s.access_key_id));
    println!("expiration:      {}", or_none(&s.expiration));
    println!("last refresh:    {}", or_none(&s.last_refresh));
    println!("next refresh:    {}", or_none(&s.next_refresh));
    println!("last error:      {}", or_none(&s.last_error));
    println!("tokens issued:   {}", s.tokens_issued);
    println!("requests:        {}", s.requests);
    println!("daemon pid:      {}", s.pid);
    ExitCode::SUCCESS
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
        print!("{}", config::keys::describe(&settings));
        return ExitCode::SUCCESS;
    }
    init_logging(args.log_format);
    if sensitive_bodies_ignored {
        tracing::warn!(
            "{SENSITIVE_BODIES_VAR} is set; ignored: it would make the AWS SDK log \
             STS responses, secret keys and session tokens included"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            fail(e.exit_code(), e)
        }
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
