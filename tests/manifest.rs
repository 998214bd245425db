//! What the manifest promises a packager or a user building from source: a
//! `rust-version` no lower than any locked dependency needs, and a package
//! description that fits the one line Debian and RPM give it.

use std::process::Command;

fn version(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap()).collect()
}

fn metadata() -> serde_json::Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn rust_version_is_no_lower_than_any_locked_dependency_needs() {
    let declared = env!("CARGO_PKG_RUST_VERSION");
    assert!(!declared.is_empty(), "Cargo.toml declares no rust-version");
    let m = metadata();
    let (needed, by) = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] != "hostrole")
        .filter_map(|p| Some((version(p["rust_version"].as_str()?), p["name"].to_string())))
        .max()
        .expect("some dependency declares a rust-version");
    assert!(
        version(declared) >= needed,
        "rust-version {declared} is lower than {by} needs ({needed:?})"
    );
}

#[test]
fn the_package_description_fits_one_line() {
    let d = env!("CARGO_PKG_DESCRIPTION");
    assert!(
        !d.is_empty() && d.chars().count() <= 80,
        "{} characters: {d}",
        d.chars().count()
    );
    assert!(!d.ends_with('.'), "a synopsis has no final full stop: {d}");
}

/// The README's configuration table says what hostrole.toml(5) says: both
/// come from the key list the parser uses (`config::keys::KEYS`).
#[test]
fn the_readmes_configuration_table_is_the_key_list() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("| key | flag | default | meaning |")
        .expect("the README has its configuration table");
    let mut rows = Vec::new();
    for line in readme[start..].lines().skip(2) {
        if !line.starts_with("| `") {
            break;
        }
        let cells: Vec<String> = line
            .replace("\\|", "\u{1}")
            .split('|')
            .map(|c| c.trim().replace('`', "").replace('\u{1}', "|"))
            .collect();
        rows.push((
            cells[1].clone(),
            cells[2].clone(),
            cells[3].clone(),
            cells[4].clone(),
        ));
    }
    let keys: Vec<(String, String, String, String)> = hostrole::daemon::config::keys::KEYS
        .iter()
        .map(|k| {
            (
                k.name.to_owned(),
                k.flag.to_owned(),
                k.default.to_owned(),
                k.doc.to_owned(),
            )
        })
        .collect();
    for row in &rows {
        assert!(keys.contains(row), "README row not in KEYS: {row:?}");
    }
    for key in &keys {
        assert!(rows.contains(key), "KEYS entry not in the README: {key:?}");
    }
}
