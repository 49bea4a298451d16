//! The ring buffer of process records, decoded into owned values.

use std::os::fd::{AsRawFd, RawFd};

use sonde_ebpf::aya::maps::{MapData, RingBuf};

use super::abi::{
    read, ProcExecFixed, ProcExit, ProcHead, EXEC_ARGS_OFFSET, EXEC_CWD_OFFSET, EXEC_EXE_OFFSET, PROC_EVENT_EXEC,
    PROC_EVENT_EXIT, PROC_EVENT_FORK, PROC_PATH_BUF,
};

/// An exec, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRecord {
    /// The fixed fields (head, credentials, lengths).
    pub fixed: ProcExecFixed,
    /// The executable's absolute path (in the process' mount namespace).
    pub exe: String,
    /// The working directory.
    pub cwd: String,
    /// argv as the process has it: NUL-separated, a byte-exact prefix
    /// when `PROC_FLAG_ARGS_TRUNCATED` is set.
    pub args: Vec<u8>,
}

/// One record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A process exec'd.
    Exec(Box<ExecRecord>),
    /// A new process (only when forks are asked for).
    Fork(ProcHead),
    /// A process' last thread exited.
    Exit(ProcExit),
}

impl Record {
    /// Decodes one record; `None` for a malformed one (counted by the caller).
    pub fn parse(bytes: &[u8]) -> Option<Record> {
        let head: ProcHead = read(bytes)?;
        match head.kind {
            PROC_EVENT_EXEC => {
                let fixed: ProcExecFixed = read(bytes)?;
                let path = |at: usize, len: u16| {
                    let len = usize::from(len).min(PROC_PATH_BUF as usize);
                    bytes.get(at..at + len).map(path_from_components)
                };
                let exe = path(EXEC_EXE_OFFSET, fixed.exe_len)?;
                let cwd = path(EXEC_CWD_OFFSET, fixed.cwd_len)?;
                let args = bytes
                    .get(EXEC_ARGS_OFFSET..EXEC_ARGS_OFFSET + fixed.args_len as usize)?
                    .to_vec();
                Some(Record::Exec(Box::new(ExecRecord { fixed, exe, cwd, args })))
            }
            PROC_EVENT_FORK => Some(Record::Fork(head)),
            PROC_EVENT_EXIT => read(bytes).map(Record::Exit),
            _ => None,
        }
    }
}

/// An absolute path from components written leaf first, each
/// NUL-terminated (`true\0bin\0usr\0` → `/usr/bin/true`); none: `/`.
pub fn path_from_components(bytes: &[u8]) -> String {
    let mut parts: Vec<&[u8]> = bytes.split(|b| *b == 0).filter(|p| !p.is_empty()).collect();
    parts.reverse();
    let mut path = String::with_capacity(bytes.len() + 1);
    for part in parts {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(part));
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

/// argv bytes split into arguments: each NUL ends one; a last piece with
/// no NUL (a truncated prefix) is an argument too. An empty argument
/// (`""`) is kept.
pub fn split_args(bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let mut args: Vec<String> = bytes
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // The NUL ending the last argument leaves an empty piece after it.
    if bytes.last() == Some(&0) {
        args.pop();
    }
    args
}

/// The records, as the kernel writes them. Pollable (`AsRawFd`): readable
/// when records wait.
pub struct Records(RingBuf<MapData>);

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records").finish_non_exhaustive()
    }
}

impl Records {
    pub(super) fn new(ring: RingBuf<MapData>) -> Self {
        Records(ring)
    }

    /// Hands every record waiting now to `each`, up to `limit` of them (so
    /// one drain cannot starve the rest of the agent). Returns how many
    /// were read and how many of them were malformed.
    pub fn drain(&mut self, limit: usize, mut each: impl FnMut(Record)) -> (usize, usize) {
        let (mut read, mut malformed) = (0, 0);
        while read < limit {
            let Some(item) = self.0.next() else { break };
            read += 1;
            match Record::parse(&item) {
                Some(record) => each(record),
                None => malformed += 1,
            }
        }
        (read, malformed)
    }
}

impl AsRawFd for Records {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_leaf_first() {
        assert_eq!(path_from_components(b"true\0bin\0usr\0"), "/usr/bin/true");
        assert_eq!(path_from_components(b""), "/");
    }

    #[test]
    fn args_keep_empty_ones_and_a_truncated_tail() {
        assert_eq!(split_args(b"a\0\0b\0"), ["a", "", "b"]);
        assert_eq!(split_args(b"a\0bc"), ["a", "bc"]);
        assert_eq!(split_args(b""), Vec::<String>::new());
    }
}
