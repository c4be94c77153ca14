// `sqlx::migrate!` embeds the files of `migrations/` at compile time; tell Cargo to rebuild
// when one is added or changed, or a new migration would silently not ship.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
