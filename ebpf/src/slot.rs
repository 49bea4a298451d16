//! The Rust side of `bpf/include/sonde_slot.h`: the one log2 histogram
//! slot rule every eBPF source uses, and the bucket bounds it implies.

/// Upper bounds of a log2 histogram with `slots` slots whose first slot
/// ends at `2^min_shift`: `2^min_shift, 2^(min_shift+1), …` (`slots - 1`
/// bounds; the last slot is unbounded), each multiplied by `scale`.
pub fn log2_bounds(min_shift: u32, slots: usize, scale: f64) -> Vec<f64> {
    (0..slots.saturating_sub(1))
        .map(|i| (1u64 << (min_shift as usize + i)) as f64 * scale)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_double_from_the_first_slot() {
        let b = log2_bounds(9, 4, 1.0);
        assert_eq!(b, [512.0, 1024.0, 2048.0]);
        assert_eq!(log2_bounds(10, 2, 1e-9), [1.024e-6]);
        assert!(log2_bounds(10, 0, 1.0).is_empty());
    }
}
