//! Mount tests: each mounts a real msgfs in a temporary directory (through a guard that
//! always unmounts) and drives it with real programs. One test binary.

mod common;
#[path = "../tests/common/dovecot.rs"]
#[allow(dead_code)]
mod dovecot;

mod browse;
mod cli;
mod control;
mod daemon;
mod editors;
mod fstab;
mod fulldisk;
mod kill_loop;
mod listing;
mod nonroot;
mod parts;
mod peer;
mod posix;
mod pst;
mod readonly;
mod sync;
mod systemd;
mod times;
mod tools;
mod transactions;
mod trash;
mod xattrs;
