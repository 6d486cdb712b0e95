//! Rebuild when a migration changes (`embed_migrations!` does not tell cargo which files it read)
//! or anything under `web/` (the admin page's assets, embedded by `src/http/admin_page.rs`).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=web");
}
