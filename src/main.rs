//! The `msgfs` command: parses arguments and calls the library.

fn main() {}
