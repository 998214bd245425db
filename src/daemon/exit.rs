//! Process exit codes, from sysexits.h, so that systemd units and scripts
//! can tell a bad configuration (78) from a temporary failure (75).

/// Command line usage error (sysexits.h).
pub const EX_USAGE: u8 = 64;
/// A required service is unavailable (listening failed).
pub const EX_UNAVAILABLE: u8 = 69;
/// Internal error.
pub const EX_SOFTWARE: u8 = 70;
/// Permission denied.
pub const EX_NOPERM: u8 = 77;
/// Cannot write the output.
pub const EX_IOERR: u8 = 74;
/// Cannot create or write a needed file.
pub const EX_CANTCREAT: u8 = 73;
/// Temporary failure (another daemon holds the lock).
pub const EX_TEMPFAIL: u8 = 75;
/// Configuration error.
pub const EX_CONFIG: u8 = 78;
