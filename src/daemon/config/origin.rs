//! Where a key's value came from, so that a message about the value can
//! say what to change.

use std::path::Path;

/// The source of one key's effective value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Its command-line flag.
    Flag,
    /// The config file.
    File,
    /// Neither: the built-in default.
    Default,
}

impl Origin {
    /// Which setting gave `key`'s value (the flag has the key's name):
    /// "--listen", "listen in /etc/hostrole/hostrole.toml", or the default
    /// and how to change it.
    pub fn describe(self, key: &str, config_path: Option<&Path>) -> String {
        match (self, config_path) {
            (Origin::Flag, _) => format!("--{key}"),
            (Origin::File, Some(path)) => format!("{key} in {}", path.display()),
            (Origin::File, None) => format!("{key} in the config file"),
            (Origin::Default, _) => {
                format!("the default; set another with --{key} or {key} in the config file")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_origin_names_what_to_change() {
        let file = Path::new("/etc/hostrole/hostrole.toml");
        assert_eq!(Origin::Flag.describe("listen", Some(file)), "--listen");
        assert_eq!(
            Origin::File.describe("metrics-listen", Some(file)),
            "metrics-listen in /etc/hostrole/hostrole.toml"
        );
        assert_eq!(
            Origin::Default.describe("listen", None),
            "the default; set another with --listen or listen in the config file"
        );
    }
}
