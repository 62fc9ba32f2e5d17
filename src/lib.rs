//! msgfs: a message store mounted as a Linux filesystem, with MAPI SaveChanges semantics.

pub mod cli;
pub mod cmd;
pub mod control;
pub mod export;
pub mod fs;
pub mod import;
pub mod mime;
pub mod plural;
pub mod pst;
pub mod store;
pub mod sync;
#[doc(hidden)]
pub mod testdata;
