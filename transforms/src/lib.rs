//! sonde-transforms: every transform type, one module each.
//!
//! Adding a transform: a file (or folder) here and one line in [`register`].

pub mod filter;
pub mod pod_enrich;
pub mod sample;
pub mod tag;

use sonde_core::Registry;

/// Registers every transform type.
pub fn register(registry: &mut Registry) {
    registry.transform::<filter::FilterTransformConfig>();
    registry.transform::<pod_enrich::PodEnrichTransformConfig>();
    registry.transform::<sample::SampleTransformConfig>();
    registry.transform::<tag::TagTransformConfig>();
}
