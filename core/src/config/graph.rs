//! Graph checks: ids, inputs, cycles, event kinds, unconsumed outputs.

use std::collections::{HashMap, HashSet};

use super::diagnostic::{Diagnostic, DiagnosticKind};
use super::model::{ComponentConfig, PipelineConfig};
use crate::component::ComponentKind;
use crate::event::EventKinds;
use crate::registry::{AnyConfig, Registry};

/// The kinds a component accepts as input (sources: none).
pub fn accepts(component: &ComponentConfig) -> EventKinds {
    match &component.options {
        AnyConfig::Source(_) => EventKinds::NONE,
        AnyConfig::Transform(t) => t.accepts(),
        AnyConfig::Sink(s) => s.accepts(),
    }
}

/// The kinds each of `components` emits, given what flows into it from the
/// others. Used by the checks below and by the running topology's `/graph`.
/// Inputs naming no component and cycles contribute nothing (both are
/// reported by [`check`]).
pub fn output_kinds<'a>(components: impl IntoIterator<Item = &'a ComponentConfig>) -> HashMap<&'a str, EventKinds> {
    let components: Vec<&ComponentConfig> = components.into_iter().collect();
    let by_id: HashMap<&str, &ComponentConfig> = components.iter().map(|c| (&*c.id, *c)).collect();
    let mut done: HashMap<&str, EventKinds> = HashMap::new();
    let mut visiting = HashSet::new();
    for component in components {
        outputs_of(component, &by_id, &mut done, &mut visiting);
    }
    done
}

fn outputs_of<'a>(
    component: &'a ComponentConfig,
    by_id: &HashMap<&str, &'a ComponentConfig>,
    done: &mut HashMap<&'a str, EventKinds>,
    visiting: &mut HashSet<&'a str>,
) -> EventKinds {
    if let Some(kinds) = done.get(&*component.id) {
        return *kinds;
    }
    // A cycle is reported elsewhere; here it just contributes nothing.
    if !visiting.insert(&component.id) {
        return EventKinds::NONE;
    }
    let kinds = match &component.options {
        AnyConfig::Source(s) => s.outputs(),
        AnyConfig::Sink(_) => EventKinds::NONE,
        AnyConfig::Transform(t) => {
            let input = component
                .inputs
                .iter()
                .filter_map(|i| by_id.get(&*i.id))
                .fold(EventKinds::NONE, |set, up| {
                    set.union(outputs_of(up, by_id, done, visiting))
                });
            t.outputs(input.intersection(t.accepts()))
        }
    };
    visiting.remove(&*component.id);
    done.insert(&component.id, kinds);
    kinds
}

/// Component blocks that were already reported as wrong and left out of
/// the config: the graph checks treat them as present, so that one bad
/// block gives one error, not also "input names no component" in its
/// consumers and "nothing consumes" in its producers.
#[derive(Debug, Default)]
pub struct Failed {
    ids: HashSet<String>,
    /// Ids named as inputs by failed blocks.
    consumed: HashSet<String>,
    /// Whether a failed block's inputs could not be read (then any
    /// component may be its input).
    unknown_inputs: bool,
}

impl Failed {
    /// Records a failed block: its id and, when readable, its inputs.
    pub fn add(&mut self, id: &str, inputs: Option<Vec<String>>) {
        self.ids.insert(id.to_string());
        match inputs {
            Some(inputs) => self.consumed.extend(inputs),
            None => self.unknown_inputs = true,
        }
    }

    /// Whether no block failed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn consumes(&self, id: &str) -> bool {
        self.unknown_inputs || self.consumed.contains(id)
    }
}

/// Every graph-level mistake in `config`, leaving out those that only
/// follow from the `failed` blocks.
pub fn check(config: &PipelineConfig, _registry: &Registry, failed: &Failed) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let mut first: HashMap<&str, &ComponentConfig> = HashMap::new();
    for component in &config.components {
        if let Some(earlier) = first.get(&*component.id) {
            diagnostics.push(
                Diagnostic::error(
                    DiagnosticKind::DuplicateId,
                    Some(component.location.clone()),
                    format!("duplicate component id `{}`", component.id),
                )
                .with_help(format!(
                    "`{}` is already the id of the {} at {}",
                    component.id, earlier.kind, earlier.location
                )),
            );
        } else {
            first.insert(&component.id, component);
        }
    }

    let producers: Vec<&str> = config
        .components
        .iter()
        .filter(|c| c.kind != ComponentKind::Sink)
        .map(|c| &*c.id)
        .collect();
    let outputs = output_kinds(&config.components);
    let mut consumed: HashSet<&str> = HashSet::new();

    for component in &config.components {
        let accepted = accepts(component);
        for input in &component.inputs {
            let Some(upstream) = first.get(&*input.id) else {
                if failed.ids.contains(&*input.id) {
                    continue;
                }
                diagnostics.push(
                    Diagnostic::error(
                        DiagnosticKind::UnknownInput,
                        Some(input.location.clone()),
                        format!("input `{}` of `{}` names no component", input.id, component.id),
                    )
                    .suggest(&input.id, producers.iter().copied()),
                );
                continue;
            };
            consumed.insert(&upstream.id);
            if upstream.kind == ComponentKind::Sink {
                diagnostics.push(Diagnostic::error(
                    DiagnosticKind::InputIsSink,
                    Some(input.location.clone()),
                    format!(
                        "input `{}` of `{}` is a sink, and sinks have no output",
                        input.id, component.id
                    ),
                ));
                continue;
            }
            let emitted = outputs.get(&*upstream.id).copied().unwrap_or_default();
            if emitted.is_empty() {
                continue;
            }
            let usable = emitted.intersection(accepted);
            let what = format!("{} \"{}\" \"{}\"", component.kind, component.type_name, component.id);
            if usable.is_empty() {
                diagnostics.push(
                    Diagnostic::error(
                        DiagnosticKind::IncompatibleKinds,
                        Some(input.location.clone()),
                        format!("`{}` emits {emitted}, but {what} accepts only {accepted}", upstream.id),
                    )
                    .with_help("connect it to a component that accepts these events, or filter them first"),
                );
            } else if usable != emitted {
                diagnostics.push(Diagnostic::warning(
                    DiagnosticKind::IncompatibleKinds,
                    Some(input.location.clone()),
                    format!(
                        "{} events from `{}` will be dropped before {what}, which accepts only {accepted}",
                        emitted.difference(accepted),
                        upstream.id
                    ),
                ));
            }
        }
    }

    for cycle in cycles(config, &first) {
        let start = first[cycle[0]];
        let path = cycle
            .iter()
            .chain(std::iter::once(&cycle[0]))
            .copied()
            .collect::<Vec<_>>()
            .join(" → ");
        diagnostics.push(Diagnostic::error(
            DiagnosticKind::Cycle,
            Some(start.location.clone()),
            format!("inputs form a cycle: {path}"),
        ));
    }

    for component in first.values() {
        if component.kind != ComponentKind::Sink
            && !consumed.contains(&*component.id)
            && !failed.consumes(&component.id)
        {
            diagnostics.push(
                Diagnostic::warning(
                    DiagnosticKind::Unconsumed,
                    Some(component.location.clone()),
                    format!("nothing consumes the output of {} `{}`", component.kind, component.id),
                )
                .with_help(format!("add `{}` to the inputs of a transform or sink", component.id)),
            );
        }
    }
    diagnostics
}

/// Each cycle once, as the ids along it.
fn cycles<'a>(config: &'a PipelineConfig, by_id: &HashMap<&'a str, &'a ComponentConfig>) -> Vec<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        id: &'a str,
        by_id: &HashMap<&'a str, &'a ComponentConfig>,
        marks: &mut HashMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        found: &mut Vec<Vec<&'a str>>,
    ) {
        match marks.get(id) {
            Some(Mark::Done) => return,
            Some(Mark::Visiting) => {
                if let Some(pos) = stack.iter().position(|s| *s == id) {
                    found.push(stack[pos..].to_vec());
                }
                return;
            }
            None => {}
        }
        marks.insert(id, Mark::Visiting);
        stack.push(id);
        if let Some(component) = by_id.get(id) {
            for input in &component.inputs {
                if by_id.contains_key(&*input.id) {
                    visit(&input.id, by_id, marks, stack, found);
                }
            }
        }
        stack.pop();
        marks.insert(id, Mark::Done);
    }
    let mut marks = HashMap::new();
    let mut found = Vec::new();
    for component in &config.components {
        visit(&component.id, by_id, &mut marks, &mut Vec::new(), &mut found);
    }
    for cycle in &mut found {
        // Inputs point upstream; print the cycle in data-flow order.
        cycle.reverse();
    }
    found
}
