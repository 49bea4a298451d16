//! The edges of the pipeline graph: the bounded [`queue()`] in front of each
//! transform and sink, and the [`Output`] a source or transform pushes into,
//! which fans each batch out to its consumers' queues.
//!
//! This is the layer just above [`crate::event`]: component traits hand an
//! `Output` to sources, and the topology wires queues to outputs, so both
//! depend on it and it depends on neither.

mod output;
mod queue;
pub mod tap;

pub use output::{Output, OutputSlot};
pub use queue::{
    queue, InputReceiver, InputSender, QueueClosed, QueueMetrics, Queued, SlotGuard, WeakInputSender, WhenFull,
    DROP_LOG_EVERY,
};
