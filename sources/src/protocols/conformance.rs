//! The kernel check of `protocols` (placeholder until written below).
