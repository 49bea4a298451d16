//! Compiles each source's eBPF programs, `src/<source>/bpf/*.bpf.c`, with
//! the shared headers of `sonde-ebpf` (`DEP_SONDE_EBPF_INCLUDE`) on the
//! include path, and generates the Rust constants of each source's headers
//! (see `sonde-ebpf-build`). A new eBPF source needs nothing here: its
//! `bpf/` folder is found.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let shared = std::env::var_os("DEP_SONDE_EBPF_INCLUDE").expect("sonde-ebpf exports its include dir (links)");
    let folders = sonde_ebpf_build::bpf_folders(&manifest.join("src"));
    sonde_ebpf_build::compile(&folders, &[PathBuf::from(shared)]);
}
