//! One short cause for a call that got no answer, for the log and
//! `hostrole status`: the root of the error's `source()` chain, in words,
//! never an SDK's debug dump of its wrappers.

use std::error::Error;

/// The deepest cause in `err`'s chain. An operating-system error reads as
/// its description without the errno ("connection refused"); any other
/// error as its own text (a DNS failure, a TLS certificate problem).
pub fn root_cause(err: &(dyn Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    match cause.downcast_ref::<std::io::Error>() {
        Some(io) if io.raw_os_error().is_some() => lower_first(&os_text(io)),
        _ => cause.to_string(),
    }
}

/// Whether an error of type `T` is in `err`'s chain, `err` included.
pub fn in_chain<T: Error + 'static>(err: &(dyn Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(c) = cause {
        if c.is::<T>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// "Connection refused (os error 111)" without its errno.
fn os_text(io: &std::io::Error) -> String {
    let text = io.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("dispatch failure: {inner:?}")]
    struct Wrapper {
        #[source]
        inner: std::io::Error,
    }

    #[test]
    fn an_os_error_deep_in_the_chain_reads_as_its_description() {
        let e = Wrapper {
            inner: std::io::Error::from_raw_os_error(nix::libc::ECONNREFUSED),
        };
        assert_eq!(root_cause(&e), "connection refused");
    }

    #[test]
    fn another_root_reads_as_its_own_text() {
        let e = Wrapper {
            inner: std::io::Error::other("failed to lookup address information"),
        };
        assert_eq!(root_cause(&e), "failed to lookup address information");
    }
}
