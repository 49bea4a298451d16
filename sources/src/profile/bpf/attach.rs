//! Attaching the sampling program to one perf event per CPU: hardware
//! cycles where the PMU offers them (`Auto`), software cpu-clock otherwise,
//! the same event on every CPU.

use sonde_ebpf::aya::programs::perf_event::{
    HardwareEvent, PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use sonde_ebpf::aya::programs::PerfEvent;
use sonde_ebpf::loader::Object;
use sonde_ebpf::LoadError;

use super::{Options, SampleEvent, OBJECT, PROGRAM};

/// Attaches the loaded program to one perf event per CPU; returns the event used.
pub(super) fn attach(object: &mut Object, cpus: &[u32], options: &Options) -> Result<SampleEvent, LoadError> {
    let program: &mut PerfEvent = object.program_as(PROGRAM)?;
    let policy = SamplePolicy::Frequency(options.frequency_hz.max(1));
    let mut event = options.event;
    for (index, &cpu) in cpus.iter().enumerate() {
        let config = match event {
            SampleEvent::CpuClock => PerfEventConfig::Software(SoftwareEvent::CpuClock),
            SampleEvent::Cycles | SampleEvent::Auto => PerfEventConfig::Hardware(HardwareEvent::CpuCycles),
        };
        let result = program.attach(config, PerfEventScope::AllProcessesOneCpu { cpu }, policy, false);
        match result {
            Ok(_) => {
                if event == SampleEvent::Auto {
                    event = SampleEvent::Cycles;
                }
            }
            // No PMU (ENOENT, EOPNOTSUPP): fall back on the first CPU only,
            // so every CPU samples the same event.
            Err(_) if event == SampleEvent::Auto && index == 0 => {
                event = SampleEvent::CpuClock;
                program
                    .attach(
                        PerfEventConfig::Software(SoftwareEvent::CpuClock),
                        PerfEventScope::AllProcessesOneCpu { cpu },
                        policy,
                        false,
                    )
                    .map_err(|source| attach_error(cpu, SampleEvent::CpuClock, source))?;
            }
            Err(source) => return Err(attach_error(cpu, event, source)),
        }
    }
    Ok(event)
}

fn attach_error(cpu: u32, event: SampleEvent, source: sonde_ebpf::aya::programs::ProgramError) -> LoadError {
    let name = match event {
        SampleEvent::CpuClock => "software cpu-clock",
        _ => "hardware cycles",
    };
    LoadError::Attach {
        object: OBJECT,
        program: PROGRAM,
        attach_point: format!("perf event {name} on CPU {cpu}"),
        source: Box::new(source),
    }
}
