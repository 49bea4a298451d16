//! Disk buffers: a sink's input kept in files, so that what the agent
//! accepted survives a crash (`kill -9`) and a restart, and is delivered
//! at least once.
//!
//! `buffer { type = "disk"  max_size = "256MiB"  when_full = "block" }` in a
//! sink puts its input in `DATA_DIR/<sink id>/` (`agent { data_dir }`): a
//! restarted agent with the same sink id resumes it.
//!
//! - [`record`]: the on-disk record (header with the record's id, its event
//!   count and two crc32 checksums, then the batch);
//! - [`codec`]: events ↔ bytes;
//! - [`disk`]: segment files, the reader's position, acknowledgements and
//!   the state file (synchronous; the model-based tests drive it);
//! - [`queue`]: the same behind a lock, with the waits of its writer and
//!   reader; [`check`]: the offline verification of `sonde buffer check`.
//!
//! # Delivery
//!
//! The sink takes records in order; a record is acknowledged only once the
//! sink's call returned: the backend accepted the batch, or the core
//! dropped it and counted why (a permanent error, retries exhausted, a
//! partial rejection). Then it is freed. A record handed out and not
//! acknowledged when the agent dies is delivered again by the next run
//! (counted in `sonde_buffer_redelivered_events_total`): at least once.
//!
//! # fsync policy
//!
//! Each batch is written to its segment with one `write(2)` when the buffer
//! takes it, and the state file (what is acknowledged) with one `pwrite(2)`
//! on each acknowledgement: a killed agent (`kill -9`, a panic, the OOM
//! killer) loses nothing the buffer took, since the kernel holds it. The
//! segment files, the state file and the folder are `fdatasync`ed once a
//! second ([`queue::SYNC_INTERVAL`]), when a segment is full, and when the
//! sink stops: a power loss loses at most about the last second of
//! batches, and a record torn by it is detected by its checksum, skipped
//! and counted. (Vector's disk buffer syncs on a timer as well, every
//! 500ms by default.) A record is never written twice to the same place:
//! writing resumes in a new segment after a restart.
//!
//! # Damage
//!
//! A record whose header or payload checksum does not hold is skipped and
//! counted (`sonde_buffer_corrupted_records_total`, and the events its
//! header names in the sink's
//! `sonde_component_dropped_events_total{reason="corrupted"}`); reading
//! resumes at the next valid header.

pub mod check;
pub mod codec;
pub mod disk;
pub mod metrics;
pub mod queue;
pub mod record;
#[cfg(test)]
mod tests;

pub use disk::{BufferError, DiskBuffer, Encoded, ReadRecord, Stats};
pub use metrics::BufferMetrics;
pub use queue::{DiskQueue, Pushed, Writer};
