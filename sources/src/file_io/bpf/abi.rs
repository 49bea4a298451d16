//! Rust mirrors of `file_io.h`. The constants are generated from the header
//! by the crate's `build.rs`; the structs are checked field by field against
//! the compiled object's BTF (`tests` below).

#![allow(missing_docs)]

pub use sonde_ebpf::owners::comm_str;

include!(concat!(env!("OUT_DIR"), "/file_io_consts.rs"));

/// Operations counted per file.
pub const OPS: usize = FIO_OPS as usize;
/// Slots of the latency histograms.
pub const LAT_SLOTS: usize = FIO_LAT_SLOTS as usize;

/// `struct fio_key`: one process' use of one regular file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FioKey {
    pub cgroup_id: u64,
    pub ino: u64,
    pub dev: u32,
    pub pid: u32,
}

// SAFETY: repr(C), fields of 8, 8, 4 and 4 bytes: no padding.
unsafe impl sonde_ebpf::aya::Pod for FioKey {}

/// `struct fio_op_stats`: one operation's totals on a file.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FioOpStats {
    pub calls: u64,
    pub errors: u64,
    pub bytes: u64,
    pub ns: u64,
    pub slots: [u64; LAT_SLOTS],
}

impl Default for FioOpStats {
    fn default() -> Self {
        FioOpStats {
            calls: 0,
            errors: 0,
            bytes: 0,
            ns: 0,
            slots: [0; LAT_SLOTS],
        }
    }
}

impl FioOpStats {
    /// Adds `other` (another file's or an earlier period's totals).
    pub fn add(&mut self, other: &FioOpStats) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.ns += other.ns;
        for (a, b) in self.slots.iter_mut().zip(other.slots) {
            *a += b;
        }
    }
}

/// `struct fio_value`: a (process, file) pair's totals per operation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FioValue {
    pub op: [FioOpStats; OPS],
    pub comm: [u8; 16],
}

// SAFETY: repr(C), u64 fields and arrays, then 16 bytes: no padding.
unsafe impl sonde_ebpf::aya::Pod for FioValue {}

impl FioValue {
    /// Bytes read and written.
    pub fn bytes(&self) -> u64 {
        self.op.iter().map(|o| o.bytes).sum()
    }

    /// Adds `other`'s totals.
    pub fn add(&mut self, other: &FioValue) {
        for (a, b) in self.op.iter_mut().zip(other.op.iter()) {
            a.add(b);
        }
    }
}

/// `struct fio_new_file`: a (process, file) pair's first call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FioNewFile {
    pub key: FioKey,
    pub fd: u32,
    pub depth: u32,
    pub names: [[u8; FIO_NAME_LEN as usize]; FIO_PATH_DEPTH as usize],
}

impl FioNewFile {
    /// Reads a notice from a ring-buffer record (None when too short).
    pub fn from_bytes(bytes: &[u8]) -> Option<FioNewFile> {
        if bytes.len() < std::mem::size_of::<FioNewFile>() {
            return None;
        }
        // SAFETY: the length is checked; every bit pattern is valid, and
        // read_unaligned copes with the record's alignment.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<FioNewFile>()) })
    }

    /// The file's path from its file system's root (`/dir/file`), and
    /// whether the root was reached (a deeper file is `…/`-prefixed).
    pub fn path_in_fs(&self) -> (String, bool) {
        let depth = (self.depth as usize).min(self.names.len());
        let mut path = String::new();
        for name in self.names[..depth].iter().rev() {
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            path.push('/');
            path.push_str(&String::from_utf8_lossy(&name[..end]));
        }
        (path, self.depth as usize <= self.names.len())
    }
}

/// A kernel `dev_t` (major << 20 | minor) as user space's `st_dev`.
pub fn user_dev(kernel_dev: u32) -> u64 {
    libc::makedev(kernel_dev >> 20, kernel_dev & 0xfffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_ebpf::btf_layout::ObjectBtf;

    #[test]
    fn structs_match_the_compiled_object() {
        let btf = ObjectBtf::from_object(super::super::ELF);
        sonde_ebpf::assert_layout!(
            btf,
            "fio_key",
            FioKey {
                cgroup_id,
                ino,
                dev,
                pid
            }
        );
        sonde_ebpf::assert_layout!(
            btf,
            "fio_op_stats",
            FioOpStats {
                calls,
                errors,
                bytes,
                ns,
                slots
            }
        );
        sonde_ebpf::assert_layout!(btf, "fio_value", FioValue { op, comm });
        sonde_ebpf::assert_layout!(btf, "fio_new_file", FioNewFile { key, fd, depth, names });
    }

    #[test]
    fn dentry_names_join_from_the_root() {
        let mut notice = FioNewFile {
            key: FioKey::default(),
            fd: 3,
            depth: 3,
            names: [[0; FIO_NAME_LEN as usize]; FIO_PATH_DEPTH as usize],
        };
        for (i, name) in ["data", "tmp", "var"].iter().enumerate() {
            notice.names[i][..name.len()].copy_from_slice(name.as_bytes());
        }
        assert_eq!(notice.path_in_fs(), ("/var/tmp/data".to_string(), true));
        notice.depth = FIO_PATH_DEPTH + 1;
        assert!(!notice.path_in_fs().1);
    }

    #[test]
    fn kernel_devices_convert_to_user_space_numbers() {
        // sda1 (8:1) and an nvme partition (259:3).
        assert_eq!(user_dev(8 << 20 | 1), libc::makedev(8, 1));
        assert_eq!(user_dev(259 << 20 | 3), libc::makedev(259, 3));
    }
}
