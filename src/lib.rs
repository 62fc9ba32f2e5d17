//! msgfs: a message store mounted as a Linux filesystem, with MAPI SaveChanges semantics.

pub mod cmd;
pub mod export;
pub mod import;
pub mod control;
pub mod fs;
pub mod mime;
pub mod store;
