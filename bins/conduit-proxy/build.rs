//! Links the proxy with packed relative relocations (`DT_RELR`, glibc 2.36+).
//!
//! The proxy is a position-independent executable, and Rust's vtables and string tables make
//! most of its relocations relative ones. As classic `RELA` entries they fill about 260 KiB,
//! which the dynamic loader reads at every start and which then stays resident: a twentieth
//! of an idle proxy's memory. Packed, the same relocations take a few KiB. Address-space
//! layout randomisation is unchanged.

fn main() {
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
