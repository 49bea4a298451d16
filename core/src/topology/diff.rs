//! What a reload changes: the new config compared with the running one,
//! decided before anything is built or stopped.

use std::collections::{HashMap, HashSet};

use crate::config::{ComponentConfig, PipelineConfig};
use crate::event::SharedStr;

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Components started for the first time.
    pub added: Vec<SharedStr>,
    /// Components rebuilt because their type or options changed.
    pub rebuilt: Vec<SharedStr>,
    /// Components stopped.
    pub removed: Vec<SharedStr>,
    /// Components left running.
    pub kept: Vec<SharedStr>,
}

/// The work one reload has to do.
#[derive(Debug)]
pub(super) struct Plan {
    /// What will change, as reported to the caller.
    pub summary: ReloadSummary,
    /// New and changed components: built from scratch.
    pub to_build: Vec<ComponentConfig>,
    /// Unchanged components, with their new configs: they keep running, but
    /// their `inputs` may differ, so they are rewired.
    pub kept: Vec<ComponentConfig>,
    /// Every component id, in config order (what `/graph` lists).
    pub order: Vec<SharedStr>,
}

/// Compares `config` with the configs of the `running` components.
/// A component is rebuilt only when its type or options changed
/// ([`ComponentConfig::needs_rebuild`]); a change of inputs only rewires.
pub(super) fn plan<'a>(running: impl IntoIterator<Item = &'a ComponentConfig>, config: PipelineConfig) -> Plan {
    let running: Vec<&ComponentConfig> = running.into_iter().collect();
    let by_id: HashMap<&str, &ComponentConfig> = running.iter().map(|c| (&*c.id, *c)).collect();
    let new_ids: HashSet<SharedStr> = config.components.iter().map(|c| c.id.clone()).collect();
    let order: Vec<SharedStr> = config.components.iter().map(|c| c.id.clone()).collect();

    let mut summary = ReloadSummary::default();
    let mut to_build = Vec::new();
    let mut kept = Vec::new();
    for component in config.components {
        match by_id.get(&*component.id) {
            Some(old) if !old.needs_rebuild(&component) => kept.push(component),
            Some(_) => {
                summary.rebuilt.push(component.id.clone());
                to_build.push(component);
            }
            None => {
                summary.added.push(component.id.clone());
                to_build.push(component);
            }
        }
    }
    summary.removed = running
        .iter()
        .filter(|c| !new_ids.contains(&c.id))
        .map(|c| c.id.clone())
        .collect();
    summary.kept = kept.iter().map(|c| c.id.clone()).collect();
    Plan {
        summary,
        to_build,
        kept,
        order,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::testing;

    fn load(text: &str) -> PipelineConfig {
        load_str("test.hcl", text, &testing::registry())
            .unwrap_or_else(|e| panic!("{e}"))
            .config
    }

    #[test]
    fn options_rebuild_inputs_only_rewire() {
        let running = load(
            r#"
            source "sequence" "a" { count = 1 }
            source "sequence" "gone" { count = 1 }
            sink "record" "k" { inputs = ["a", "gone"] }
            sink "record" "slow" { inputs = ["a"] }
            "#,
        );
        let next = load(
            r#"
            source "sequence" "a" { count = 1 }
            sink "record" "k" { inputs = ["a"] }
            sink "record" "slow" {
              inputs = ["a"]
              delay_ms = 5
            }
            sink "record" "new" { inputs = ["a"] }
            "#,
        );
        let plan = plan(&running.components, next);
        let ids = |v: &[SharedStr]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&plan.summary.added), ["new"]);
        assert_eq!(ids(&plan.summary.rebuilt), ["slow"]);
        assert_eq!(ids(&plan.summary.removed), ["gone"]);
        assert_eq!(ids(&plan.summary.kept), ["a", "k"]);
        assert_eq!(ids(&plan.order), ["a", "k", "slow", "new"]);
        let built: Vec<&str> = plan.to_build.iter().map(|c| &*c.id).collect();
        assert_eq!(built, ["slow", "new"]);
        // The kept sink carries its new inputs, for the rewiring.
        let k = plan.kept.iter().find(|c| c.id == "k").expect("k is kept");
        assert_eq!(k.inputs.len(), 1);
    }
}
