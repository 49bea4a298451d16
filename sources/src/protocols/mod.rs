//! `protocols`: requests seen from the syscalls that move socket data (and
//! from TLS libraries), turned into spans, RED metrics and a service graph.

pub mod model;
