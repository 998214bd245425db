//! Writes the man pages and shell completions that the packages ship,
//! generated from the command-line definition itself.
//!
//! usage: cargo run --example gen_assets -- OUT_DIR
//! writes OUT_DIR/man/hostrole.1, OUT_DIR/man/hostrole-<command>.1, and
//! OUT_DIR/completions/{hostrole.bash,_hostrole,hostrole.fish}.
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use hostrole::cli::Cli;

fn man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(dir.join(format!("{}.1", cmd.get_name())), page)?;
    let pages = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help");
    for sub in pages {
        let name = format!("{}-{}", cmd.get_name(), sub.get_name());
        // A one-shot program: the names live until it exits.
        let name: &'static str = name.leak();
        let sub = sub.clone().name(name).bin_name(name);
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).render(&mut page)?;
        std::fs::write(dir.join(format!("{name}.1")), page)?;
    }
    Ok(())
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
