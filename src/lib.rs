//! The `sonde` package as a library: the command-line tool's pieces, and
//! the one [`registry`] of every component type, which the binary, the
//! tests and the benchmarks share.

pub mod cli;
pub mod client;
pub mod components;
pub mod conformance;
pub mod doctor;
pub mod tap;
pub mod top;

/// Every component type this binary has: the one list, registered by each
/// component crate's `register` (one line per type).
pub fn registry() -> sonde_core::Registry {
    let mut registry = sonde_core::Registry::new();
    sonde_sources::register(&mut registry);
    sonde_transforms::register(&mut registry);
    sonde_sinks::register(&mut registry);
    registry
}

#[cfg(test)]
mod tests {
    use sonde_core::privileges::Capability;
    use sonde_core::registry::AnyConfig;
    use sonde_core::ComponentKind;

    /// A source that loads eBPF programs must say so when it registers, or
    /// `sonde doctor`, the kernel matrix and the benchmarks would not know
    /// it. (A declared side cannot leave out its conformance check: the
    /// field is required.)
    #[test]
    fn every_source_that_needs_bpf_declares_its_kernel_side() {
        let registry = super::registry();
        let mut ebpf = 0;
        for ty in registry.iter().filter(|t| t.kind == ComponentKind::Source) {
            let Ok(AnyConfig::Source(config)) = ty.parse(serde_json::json!({})) else {
                panic!("source `{}` has no default config: extend this test", ty.name);
            };
            if config.capabilities().contains(Capability::BPF) {
                assert!(
                    ty.ebpf.is_some(),
                    "source `{}` needs CAP_BPF but declares no EbpfSide (SourceType::EBPF)",
                    ty.name
                );
                ebpf += 1;
            }
        }
        assert_eq!(
            ebpf,
            registry.ebpf_sources().count(),
            "an EbpfSide on a source without CAP_BPF"
        );
    }
}
