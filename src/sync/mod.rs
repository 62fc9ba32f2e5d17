//! Replication between a store and an IMAP server (`msgfs sync`): accounts, the IMAP
//! connection, and the mapping of server folder names to store folders. Knows nothing of
//! FUSE and reaches the store only through its public API.

pub mod commands;
pub mod config;
pub mod download;
pub mod engine;
pub mod imap;
mod incoming;
mod literals;
mod matching;
mod merge;
pub mod names;
pub mod run;
pub mod survey;
mod upload;
