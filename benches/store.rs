//! Store benchmark (placeholder until written): see benches/README.
fn main() {}
