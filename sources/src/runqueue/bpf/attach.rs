//! Attaching the scheduler tracepoints the way bcc's runqlat does: as
//! `tp_btf` programs (5.5+, arguments typed by the kernel's BTF: cheaper
//! and checked) where the kernel loads them, else as `raw_tp` programs of
//! the same code. Shared by `runqueue` and `offcpu`, whose objects carry
//! both flavours of each program.

use sonde_ebpf::aya::programs::{BtfTracePoint, RawTracePoint};
use sonde_ebpf::loader::{kernel_btf, load_error, Object};
use sonde_ebpf::LoadError;

/// Forces the `raw_tp` flavour when set to anything but `0` or empty:
/// tests run both on one kernel.
pub const NO_TP_BTF_ENV: &str = "SONDE_SCHED_NO_TP_BTF";

/// Which flavour of the programs is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `tp_btf/<tracepoint>` (BTF-typed raw tracepoints, 5.5+).
    TpBtf,
    /// `raw_tp/<tracepoint>` (4.17+).
    RawTp,
}

impl Flavor {
    /// `tp_btf` or `raw_tp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::TpBtf => "tp_btf",
            Flavor::RawTp => "raw_tp",
        }
    }
}

/// One tracepoint and its two programs.
#[derive(Clone, Copy, Debug)]
pub struct SchedProgram {
    /// The tracepoint (`sched_switch`).
    pub tracepoint: &'static str,
    /// The `tp_btf` program's name.
    pub btf: &'static str,
    /// The `raw_tp` program's name.
    pub raw: &'static str,
}

/// Loads and attaches `programs`, all `tp_btf` if the kernel takes them
/// (and [`NO_TP_BTF_ENV`] is not set), else all `raw_tp`.
pub fn attach(object: &mut Object, programs: &[SchedProgram]) -> Result<Flavor, LoadError> {
    let forced_raw = std::env::var(NO_TP_BTF_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
    if !forced_raw {
        // A refused load falls back; a refused attach after loading is an error.
        match load_btf(object, programs) {
            Ok(()) => {
                attach_btf(object, programs)?;
                return Ok(Flavor::TpBtf);
            }
            Err(error) => tracing::debug!(%error, "tp_btf programs refused, using raw_tp"),
        }
    }
    for program in programs {
        let name = object.name();
        let prog: &mut RawTracePoint = object.program_as(program.raw)?;
        prog.load().map_err(|e| load_error(name, program.raw, e))?;
        prog.attach(program.tracepoint).map_err(|source| LoadError::Attach {
            object: name,
            program: program.raw,
            attach_point: format!("raw_tp {}", program.tracepoint),
            source: Box::new(source),
        })?;
    }
    Ok(Flavor::RawTp)
}

fn load_btf(object: &mut Object, programs: &[SchedProgram]) -> Result<(), LoadError> {
    // Parsed for these loads only (tens of MiB), dropped on return.
    let btf = kernel_btf()?;
    let name = object.name();
    for program in programs {
        let prog: &mut BtfTracePoint = object.program_as(program.btf)?;
        prog.load(program.tracepoint, &btf)
            .map_err(|e| load_error(name, program.btf, e))?;
    }
    Ok(())
}

fn attach_btf(object: &mut Object, programs: &[SchedProgram]) -> Result<(), LoadError> {
    let name = object.name();
    for program in programs {
        let prog: &mut BtfTracePoint = object.program_as(program.btf)?;
        prog.attach().map_err(|source| LoadError::Attach {
            object: name,
            program: program.btf,
            attach_point: format!("tp_btf {}", program.tracepoint),
            source: Box::new(source),
        })?;
    }
    Ok(())
}
