//! A packet dropper for tests (`bpf/loss.bpf.c`): drops a share of the TCP
//! segments with payload that arrive for one port, at cgroup ingress on the
//! cgroup v2 root, so the sender retransmits. netem is not available on
//! every kernel; this is. Detached when the [`LossInjector`] is dropped —
//! also when a test panics, and by the kernel when the process dies, since
//! the attachment is a bpf_link owned by this process.
//!
//! Minimum kernel 5.7 (cgroup bpf_link).

use aya::maps::{Array, MapData};
use aya::programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, ProgramError};

use crate::error::{LoadError, ReadError};
use crate::loader::{load_error, Object};

const OBJECT: &str = "loss";
const PROGRAM: &str = "loss_ingress";
const MAP: &str = "loss_counts";

/// Drops packets while it lives.
pub struct LossInjector {
    // Held for its attachment.
    _object: Object,
    counts: Array<MapData, u64>,
}

impl std::fmt::Debug for LossInjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LossInjector").finish_non_exhaustive()
    }
}

impl LossInjector {
    /// Starts dropping `percent` % of the TCP segments with payload sent to
    /// local `port` (IPv4).
    pub fn attach(port: u16, percent: f64) -> Result<Self, LoadError> {
        let per_million = (percent.clamp(0.0, 100.0) * 10_000.0) as u32;
        let mut object = Object::load(OBJECT, crate::objects::LOSS, |loader| {
            loader.override_global("port", &port, true);
            loader.override_global("per_million", &per_million, true);
        })?;
        let attach_error = |source: ProgramError, what: String| LoadError::Attach {
            object: OBJECT,
            program: PROGRAM,
            attach_point: what,
            source: Box::new(source),
        };
        let root = crate::cgroup::cgroup2_root().map_err(|e| attach_error(e.into(), "the cgroup v2 root".into()))?;
        let cgroup =
            std::fs::File::open(&root).map_err(|e| attach_error(e.into(), format!("cgroup {}", root.display())))?;
        let program: &mut CgroupSkb = object.program_as(PROGRAM)?;
        program.load().map_err(|e| load_error(OBJECT, PROGRAM, e))?;
        program
            .attach(&cgroup, CgroupSkbAttachType::Ingress, CgroupAttachMode::Single)
            .map_err(|e| attach_error(e, format!("cgroup_skb ingress {}", root.display())))?;
        let counts = object.take_map(MAP)?;
        Ok(LossInjector {
            _object: object,
            counts,
        })
    }

    /// (segments dropped, segments for the port seen) so far.
    pub fn counts(&self) -> Result<(u64, u64), ReadError> {
        let get = |index: u32| self.counts.get(&index, 0).map_err(ReadError::of(OBJECT, MAP));
        Ok((get(0)?, get(1)?))
    }
}
