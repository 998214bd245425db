//! Writes the man pages and shell completions that the packages ship,
//! generated from the command-line definition and the configuration's key
//! list themselves.
//!
//! usage: cargo run --example gen_assets -- OUT_DIR
//! writes OUT_DIR/man/hostrole.1, OUT_DIR/man/hostrole-<command>.1,
//! OUT_DIR/man/hostrole.toml.5, and
//! OUT_DIR/completions/{hostrole.bash,_hostrole,hostrole.fish}.
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use hostrole::cli::Cli;
use hostrole::daemon::config::keys::KEYS;

/// Text for roff: backslashes doubled, and a line that would start with a
/// control character protected.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

fn section(out: &mut Vec<u8>, title: &str, items: &[(&str, &str)]) {
    writeln!(out, ".SH {title}").unwrap();
    for (term, text) in items {
        writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(term), roff(text)).unwrap();
    }
}

const FILES: &[(&str, &str)] = &[
    (
        "/etc/hostrole/hostrole.toml",
        "The configuration (see hostrole.toml(5)); under systemd, hostrole.toml in $CONFIGURATION_DIRECTORY: the user service reads ~/.config/hostrole/hostrole.toml.",
    ),
    (
        "/var/lib/hostrole",
        "The packaged service's state: the token key, the saved association, the lock. A daemon run by hand keeps its own in ~/.local/state/hostrole.",
    ),
    (
        "/run/hostrole/control.sock",
        "The packaged service's control socket. A daemon run by hand, or the user service, uses $XDG_RUNTIME_DIR/hostrole/control.sock.",
    ),
    (
        "/usr/share/doc/hostrole/examples/roles-anywhere.conf",
        "A drop-in that hands the service a Roles Anywhere private key with LoadCredential=.",
    ),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "HOSTROLE_LOG",
        "The log filter: info by default; debug, or info,hostrole=trace, and so on.",
    ),
    (
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN",
        "Base credentials for the sts issuer.",
    ),
    (
        "AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE",
        "The profile and files base credentials are read from (profiles, SSO, credential_process).",
    ),
    (
        "AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN",
        "A web identity as the base identity.",
    ),
    ("AWS_REGION", "The region, unless region is set."),
    (
        "HTTPS_PROXY, NO_PROXY",
        "The proxy for calls to STS and Roles Anywhere, and the hosts reached without it.",
    ),
    (
        "STATE_DIRECTORY, RUNTIME_DIRECTORY, CONFIGURATION_DIRECTORY",
        "Set by systemd: where the state, the control socket and the configuration go.",
    ),
];

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success; a clean shutdown on SIGTERM or SIGINT."),
    (
        "1",
        "The daemon refused the command (associate while a role is associated).",
    ),
    ("64", "A wrong command or flag."),
    (
        "69",
        "Cannot listen on an address; a command cannot reach the daemon.",
    ),
    (
        "73",
        "The state directory, token key or control socket cannot be created or written.",
    ),
    ("74", "A command cannot write its output."),
    ("75", "Another daemon holds the state directory."),
    (
        "77",
        "Permission denied: changing the role, or the container endpoint's tokens, needs root, the daemon's own user or admin-group.",
    ),
    (
        "78",
        "Bad configuration, a corrupt association file, no region, no base credentials.",
    ),
];

const EXAMPLES: &[(&str, &str)] = &[
    (
        "hostrole serve --issuer local --role-arn arn:aws:iam::123456789012:role/demo",
        "Serve locally minted credentials on 127.0.0.1:1338, offline.",
    ),
    (
        "sudo hostrole associate arn:aws:iam::123456789012:role/app",
        "Give the host its role.",
    ),
    (
        "hostrole status",
        "The role, the served key's expiry, the last error and the socket that answered.",
    ),
    (
        "sudo hostrole container-token create web --expires 90d",
        "A token for the container endpoint's consumer web, printed once.",
    ),
    (
        "systemctl --user enable --now hostrole",
        "A user's own daemon on a laptop.",
    ),
];

fn see_also(own: &str, pages: &[String]) -> Vec<u8> {
    let mut refs: Vec<String> = pages
        .iter()
        .filter(|p| p.as_str() != own)
        .map(|p| format!("\\fB{}\\fR(1)", roff(p)))
        .collect();
    refs.push("\\fBhostrole.toml\\fR(5)".into());
    refs.push("\\fBsystemd.exec\\fR(5)".into());
    format!(".SH \"SEE ALSO\"\n{}\n", refs.join(", ")).into_bytes()
}

fn render(cmd: &clap::Command, own: &str, pages: &[String]) -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    if cmd.get_subcommands().next().is_some() {
        man.render_subcommands_section(&mut out)?;
    }
    section(&mut out, "EXIT STATUS", EXIT_STATUS);
    section(&mut out, "ENVIRONMENT", ENVIRONMENT);
    section(&mut out, "FILES", FILES);
    section(&mut out, "EXAMPLES", EXAMPLES);
    out.extend(see_also(own, pages));
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    Ok(out)
}

fn man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .cloned()
        .collect();
    // A page per command, and per command of a command
    // (hostrole-container-token-create(1)), as the subcommand lists name them.
    let mut pages = vec![cmd.get_name().to_owned()];
    let mut nested = Vec::new();
    for sub in &subs {
        let name = format!("{}-{}", cmd.get_name(), sub.get_name());
        pages.push(name.clone());
        for inner in sub.get_subcommands().filter(|s| s.get_name() != "help") {
            let bin = format!("{} {} {}", cmd.get_name(), sub.get_name(), inner.get_name());
            let page = format!("{name}-{}", inner.get_name());
            pages.push(page.clone());
            nested.push((page, bin, inner.clone()));
        }
    }
    // The top page lists the commands, but not `help`, which has no page.
    std::fs::write(
        dir.join(format!("{}.1", cmd.get_name())),
        render(&without_help(cmd.clone()), cmd.get_name(), &pages)?,
    )?;
    for sub in subs {
        let name = format!("{}-{}", cmd.get_name(), sub.get_name());
        // The page is hostrole-serve(1); its synopsis reads "hostrole serve".
        let bin: &'static str = format!("{} {}", cmd.get_name(), sub.get_name()).leak();
        let title: &'static str = name.clone().leak();
        let sub = without_help(sub.name(title).bin_name(bin));
        std::fs::write(dir.join(format!("{name}.1")), render(&sub, &name, &pages)?)?;
    }
    for (page, bin, inner) in nested {
        let title: &'static str = page.clone().leak();
        let bin: &'static str = bin.leak();
        let inner = inner.name(title).bin_name(bin);
        std::fs::write(
            dir.join(format!("{page}.1")),
            render(&inner, &page, &pages)?,
        )?;
    }
    std::fs::write(dir.join("hostrole.toml.5"), config_page())
}

/// The top command without the `help` subcommand clap adds.
fn without_help(cmd: clap::Command) -> clap::Command {
    if cmd.find_subcommand("help").is_some() {
        cmd.mut_subcommand("help", |s| s.hide(true))
    } else {
        cmd
    }
}

/// hostrole.toml(5), from the same key list the configuration parser's
/// `--check-config` and reload use.
fn config_page() -> Vec<u8> {
    let mut out = Vec::new();
    let version = env!("CARGO_PKG_VERSION");
    writeln!(
        out,
        ".TH hostrole.toml 5 \"\" \"hostrole {version}\" \"File Formats\"\n\
         .SH NAME\nhostrole.toml \\- hostrole's configuration\n\
         .SH SYNOPSIS\n/etc/hostrole/hostrole.toml, ~/.config/hostrole/hostrole.toml\n\
         .SH DESCRIPTION\nA TOML file of the keys below. A flag of \\fBhostrole serve\\fR \
         overrides its key. An unknown key, or a value of the wrong type or shape, is an error \
         naming the file and line. \\fBhostrole serve \\-\\-check\\-config\\fR checks the file \
         and prints every key with its effective value. A reload (SIGHUP, \\fBsystemctl reload \
         hostrole\\fR) applies the role at once and names every other changed key, which needs \
         a restart.\n.SH KEYS"
    )
    .unwrap();
    for key in KEYS {
        let flag = if key.flag.is_empty() {
            "file only".to_owned()
        } else {
            format!("flag {}", key.flag)
        };
        let live = if key.live {
            "; applied by a reload"
        } else {
            ""
        };
        writeln!(
            out,
            ".TP\n\\fB{}\\fR ({}; default: {}{})\n{}",
            roff(key.name),
            roff(&flag),
            roff(key.default),
            live,
            roff(key.doc)
        )
        .unwrap();
    }
    section(&mut out, "FILES", &FILES[..1]);
    writeln!(
        out,
        ".SH \"SEE ALSO\"\n\\fBhostrole\\fR(1), \\fBhostrole\\-serve\\fR(1)"
    )
    .unwrap();
    out
}

fn main() {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen_assets OUT_DIR");
        std::process::exit(64);
    };
    let mut cmd = Cli::command();
    cmd.build();
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("gen_assets: cannot create {}: {e}", dir.display());
            std::process::exit(73);
        }
    }
    if let Err(e) = man_pages(&cmd, &man) {
        eprintln!(
            "gen_assets: cannot write man pages in {}: {e}",
            man.display()
        );
        std::process::exit(73);
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        if let Err(e) = clap_complete::generate_to(shell, &mut cmd, "hostrole", &completions) {
            eprintln!("gen_assets: cannot write {shell} completions: {e}");
            std::process::exit(73);
        }
    }
    println!("{}", out.display());
}
