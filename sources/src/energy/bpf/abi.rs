//! Rust mirrors of `energy.h`. The constants are generated from
//! the header by the crate's `build.rs`; the structs are checked field by field against
//! the compiled object's BTF (`tests` below).

#![allow(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/energy_consts.rs"));

/// `struct energy_key`: one process in one cgroup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnergyKey {
    /// Thread-group id (the pid users know); 0 is the idle task.
    pub tgid: u32,
    pub _pad: u32,
    /// cgroup v2 id.
    pub cgroup_id: u64,
}

// SAFETY: repr(C), u32 + u32 + u64 with no implicit padding (the explicit
// `_pad` fills it): every bit pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for EnergyKey {}

/// `struct energy_thread`: a thread's task clock at its last switch-out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnergyThread {
    /// `se.sum_exec_runtime`, ns.
    pub sum_exec_ns: u64,
    /// The thread's `start_time`.
    pub start_time: u64,
}

// SAFETY: repr(C), two u64 fields: every bit pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for EnergyThread {}

/// `struct energy_value`: a process' on-CPU time and name.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnergyValue {
    /// On-CPU time since attach, ns.
    pub on_cpu_ns: u64,
    /// NUL-padded name of the process' group leader when first seen.
    pub comm: [u8; ENERGY_COMM_LEN as usize],
}

// SAFETY: repr(C), a u64 and a byte array, size 24 with no padding: every
// bit pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for EnergyValue {}

impl EnergyValue {
    /// The name, up to its first NUL.
    pub fn comm(&self) -> String {
        let end = self.comm.iter().position(|b| *b == 0).unwrap_or(self.comm.len());
        String::from_utf8_lossy(&self.comm[..end]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_ebpf::btf_layout::ObjectBtf;

    #[test]
    fn structs_match_the_compiled_object() {
        let btf = ObjectBtf::from_object(super::super::ELF);
        sonde_ebpf::assert_layout!(btf, "energy_key", EnergyKey { tgid, _pad, cgroup_id });
        sonde_ebpf::assert_layout!(btf, "energy_value", EnergyValue { on_cpu_ns, comm });
        sonde_ebpf::assert_layout!(
            btf,
            "energy_thread",
            EnergyThread {
                sum_exec_ns,
                start_time
            }
        );
    }

    #[test]
    fn comm_stops_at_nul() {
        let mut value = EnergyValue::default();
        value.comm[..4].copy_from_slice(b"spin");
        assert_eq!(value.comm(), "spin");
    }
}
