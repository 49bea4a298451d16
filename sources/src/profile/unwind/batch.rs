//! Writing many entries of an array map in one `BPF_MAP_UPDATE_BATCH`
//! call (kernel 5.6+; aya has no batch operations): a table of 30,000
//! rows is a few syscalls, not 30,000.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use sonde_ebpf::aya::maps::MapData;

/// `BPF_MAP_UPDATE_BATCH` (include/uapi/linux/bpf.h).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
/// Entries per syscall: bounds the kernel's copy of keys and values.
const CHUNK: usize = 8192;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Writes `values` at indices `first..` of array map `map`, whose values
/// are `T`.
pub fn update_array<T: Copy>(map: &MapData, first: u32, values: &[T]) -> io::Result<()> {
    let fd = map.fd().as_fd().as_raw_fd();
    for (n, chunk) in values.chunks(CHUNK).enumerate() {
        let start = first + (n * CHUNK) as u32;
        let keys: Vec<u32> = (start..start + chunk.len() as u32).collect();
        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            values: chunk.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid bpf_attr prefix of the size passed; its
        // pointers refer to `keys` and `chunk`, which outlive the call and
        // hold `count` keys and values of the map's sizes.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_BATCH,
                &raw mut attr,
                std::mem::size_of::<BatchAttr>() as u32,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        if attr.count as usize != chunk.len() {
            return Err(io::Error::other(format!(
                "batch update wrote {} of {} entries",
                attr.count,
                chunk.len()
            )));
        }
    }
    Ok(())
}
