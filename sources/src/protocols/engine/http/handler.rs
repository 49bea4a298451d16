//! What a direction's parser hands its messages to: the pairing.

use sonde_core::event::Timestamp;

use super::super::counters::Counters;
use super::head::{BodyLength, Head};

/// How the message whose head was just parsed goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// How its body ends.
    pub body: BodyLength,
    /// Body bytes to keep.
    pub keep: usize,
    /// The connection leaves HTTP after this message (Upgrade, CONNECT).
    pub stop: bool,
}

/// What a direction's messages are handed to: the pairing of requests
/// and responses.
pub trait Handler {
    /// A head was parsed; its first byte came at `start` from thread `tid`.
    fn head(&mut self, head: Head, start: Timestamp, tid: u32) -> Framing;
    /// The message of the last head ended at `at` (thread `tid`).
    fn end(&mut self, at: Timestamp, tid: u32, body_size: u64, body: Option<Vec<u8>>);
    /// The stream lost its place at `at` (a hole, bad bytes): the message
    /// in progress, if any, is lost, and so may be whole messages.
    fn lost(&mut self, at: Timestamp);
    /// Where losses are counted.
    fn counters(&mut self) -> &mut Counters;
}
