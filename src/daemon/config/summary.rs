//! What the key list says about settings: the keys a reload cannot apply,
//! and what `--check-config` prints.

use super::keys::KEYS;
use super::Settings;

/// The keys whose value changed between `running` and `new` but that only
/// take effect at the next start.
pub fn restart_needed(new: &Settings, running: &Settings) -> Vec<&'static str> {
    KEYS.iter()
        .filter(|k| !k.live && (k.show)(new) != (k.show)(running))
        .map(|k| k.name)
        .collect()
}

/// What `--check-config` prints: every key with its effective value.
pub fn describe(settings: &Settings) -> String {
    let mut out = String::from("configuration OK\n");
    if let Some(p) = &settings.config_path {
        out.push_str(&format!("  {:<26}{}\n", "config file:", p.display()));
    }
    for key in KEYS {
        out.push_str(&format!(
            "  {:<26}{}\n",
            format!("{}:", key.name),
            (key.show)(settings)
        ));
    }
    out
}
