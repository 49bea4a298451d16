//! Real-kernel tests of the feature trials (root needed). Each source's
//! programs are tested by its kernel check (`tests/bpf_<source>.rs`).

use sonde_ebpf::probe::{self, Feature};
use sonde_ebpf::testing::bpf_available_or_skip;

#[test]
fn feature_trials_report_each_feature() {
    if !bpf_available_or_skip("feature_trials_report_each_feature") {
        return;
    }
    for feature in Feature::ALL {
        let result = probe::trial(feature);
        eprintln!(
            "{feature}: {:?}",
            result.as_ref().map_err(|e| (e.to_string(), e.errno()))
        );
    }
    assert!(probe::trial(Feature::Tracepoint).is_ok());
    assert!(probe::trial(Feature::PerfEvent).is_ok());
    assert!(probe::trial(Feature::RingBuf).is_ok());
}
