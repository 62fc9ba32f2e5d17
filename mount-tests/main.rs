//! Mount tests: each mounts a real msgfs in a temporary directory (through a guard that
//! always unmounts) and drives it with real programs. One test binary.

mod common;

mod browse;
mod control;
mod daemon;
mod editors;
mod nonroot;
mod peer;
mod pst;
mod tools;
mod transactions;
mod xattrs;
