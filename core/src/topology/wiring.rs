//! Wiring: once a reload's components are built, every producer's output
//! slot is given the input queues of its consumers, new or kept.
//!
//! Slots are swapped, not rebuilt, so a kept producer keeps running and
//! simply starts feeding its new consumers at its next `poll_ready`.

use std::collections::HashMap;

use super::node::{Built, Node};
use crate::component::ComponentKind;
use crate::config::ComponentConfig;
use crate::edge::{InputSender, WeakInputSender};
use crate::event::SharedStr;

/// Points every producer among `kept` and `built` at the queues of the
/// components that name it as an input. `running` holds the nodes of the
/// kept components (replaced ones may still be there; `built` wins).
pub(super) fn wire(running: &HashMap<SharedStr, Node>, kept: &[ComponentConfig], built: &HashMap<SharedStr, Built>) {
    let all_configs: Vec<&ComponentConfig> = kept.iter().chain(built.values().map(|b| &b.node.config)).collect();

    // The input queue of every consumer.
    let mut senders: HashMap<SharedStr, InputSender> = HashMap::new();
    for c in &all_configs {
        if c.kind == ComponentKind::Source {
            continue;
        }
        let sender = match built.get(&c.id) {
            Some(b) => b.sender.clone(),
            None => running
                .get(&c.id)
                .and_then(|n| n.input.as_ref())
                .and_then(WeakInputSender::upgrade),
        };
        if let Some(sender) = sender {
            senders.insert(c.id.clone(), sender);
        }
    }

    // For each producer, the queues of its consumers.
    let mut targets: HashMap<SharedStr, Vec<InputSender>> = HashMap::new();
    for c in &all_configs {
        for input in &c.inputs {
            if let Some(sender) = senders.get(&c.id) {
                targets.entry(input.id.clone()).or_default().push(sender.clone());
            }
        }
    }

    for c in &all_configs {
        let slot = match built.get(&c.id) {
            Some(b) => b.node.slot.clone(),
            None => running.get(&c.id).and_then(|n| n.slot.clone()),
        };
        if let Some(slot) = slot {
            slot.set(targets.remove(&c.id).unwrap_or_default());
        }
    }
    // `senders` drops here: from now on only the slots (and each built
    // node's own sender, until it is spawned) keep the queues open.
}
