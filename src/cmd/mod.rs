//! The subcommands of `msgfs`, one module each; `main.rs` only parses and calls these.
//! Each returns the exit code, or an error that `main` prints as one line.

pub mod check;
pub mod control;
pub mod export;
pub mod import;
pub mod init;
pub mod mount;

/// What a subcommand returns: an exit code, or an error printed as `msgfs: ERROR`.
pub type CmdResult = Result<u8, Box<dyn std::error::Error + Send + Sync>>;
