//! Mount tests: each mounts a real msgfs in a temporary directory and drives it with real
//! programs.
