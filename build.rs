//! Rebuild when a migration changes: `embed_migrations!` does not tell cargo which files it read.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
