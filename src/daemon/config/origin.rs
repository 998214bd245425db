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
    /// The flag's value if given, else the file's, and where it came from
    /// (`Default` when neither gave one).
    pub fn pick<T>(flag: Option<T>, file: Option<T>) -> (Option<T>, Origin) {
        match (flag, file) {
            (Some(v), _) => (Some(v), Origin::Flag),
            (None, Some(v)) => (Some(v), Origin::File),
            (None, None) => (None, Origin::Default),
        }
    }

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
    fn a_flag_wins_over_the_file_and_either_over_the_default() {
        assert_eq!(Origin::pick(Some(1), Some(2)), (Some(1), Origin::Flag));
        assert_eq!(Origin::pick(None, Some(2)), (Some(2), Origin::File));
        assert_eq!(Origin::pick::<u8>(None, None), (None, Origin::Default));
    }

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
