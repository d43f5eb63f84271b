//! Links the plugin so that its own calls bind to its own symbols: the pure-Rust OpenJPEG
//! port exports C names (`opj_*`), which must not be interposed by a system libopenjp2
//! another part of the Orthanc process may have loaded.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic");
    }
}
