//! Compiles the generic programs of `bpf/` (the doctor's probes, the
//! tests' packet dropper) and exports `bpf/include` — the headers every
//! source shares (`sonde_slot.h`, `sonde_sock.h`) — to the build scripts
//! of dependents as `DEP_SONDE_EBPF_INCLUDE` (this package `links`
//! `sonde_ebpf`). Sources compile their own programs from their own
//! folders (`sources/build.rs`).

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let include = manifest.join("bpf/include");
    sonde_ebpf_build::compile(&[manifest.join("bpf"), include.clone()], std::slice::from_ref(&include));
    println!("cargo:include={}", include.display());
}
