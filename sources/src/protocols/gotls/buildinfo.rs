//! A Go executable's build information, the `.go.buildinfo` section the
//! linker writes (what `go version -m` prints): the Go release it was
//! built with, and its main module and dependencies. The format is the
//! one `debug/buildinfo` reads: a 16-byte header (`\xff Go buildinf:`,
//! pointer size, flags), then either the two strings inline as varint
//! length + bytes (Go 1.18+, flag 2) or two pointers to Go string headers
//! (older releases).

use object::{Object, ObjectSection};

const MAGIC: &[u8] = b"\xff Go buildinf:";
/// Flag: the strings follow the header (Go 1.18+).
const FLAG_INLINE: u8 = 2;
/// Flag: big-endian pointers.
const FLAG_BIG_ENDIAN: u8 = 1;
/// Longest string read (the module list of a large program is tens of KiB).
const MAX_STRING: usize = 1 << 20;

/// A module the executable was built from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Module {
    pub path: String,
    pub version: String,
}

/// What `.go.buildinfo` says.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BuildInfo {
    /// `go1.21.5`, `devel go1.23-abc…`.
    pub go_version: String,
    /// The main module (absent for `go build file.go` and GOPATH builds).
    pub main: Option<Module>,
    /// Its dependencies (`dep` lines; replaced ones with the replacement's version).
    pub deps: Vec<Module>,
}

/// The build information of an ELF file, `None` for a file without the
/// section (not Go, or a Go release before 1.13).
pub fn read(elf: &object::File<'_>) -> Option<BuildInfo> {
    let section = elf.section_by_name(".go.buildinfo")?;
    let data = section.data().ok()?;
    let header = data.get(..32)?;
    if !header.starts_with(MAGIC) {
        return None;
    }
    let (version, modinfo) = if header[15] & FLAG_INLINE != 0 {
        let (version, rest) = varint_string(&data[32..])?;
        let (modinfo, _) = varint_string(rest)?;
        (version.to_vec(), modinfo.to_vec())
    } else {
        let size = usize::from(header[14]);
        let big = header[15] & FLAG_BIG_ENDIAN != 0;
        let word = |b: &[u8]| -> Option<u64> { pointer(b.get(..size)?, big) };
        let version = go_string(elf, word(&data[16..])?, size, big)?;
        let modinfo = go_string(elf, word(&data[16 + size..])?, size, big)?;
        (version, modinfo)
    };
    let mut info = BuildInfo {
        go_version: String::from_utf8_lossy(&version).into_owned(),
        ..BuildInfo::default()
    };
    parse_modinfo(&String::from_utf8_lossy(strip_sentinels(&modinfo)), &mut info);
    Some(info)
}

/// A varint-prefixed string and what follows it.
fn varint_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut len: u64 = 0;
    for (i, byte) in data.iter().enumerate().take(10) {
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let len = usize::try_from(len).ok().filter(|l| *l <= MAX_STRING)?;
            let rest = &data[i + 1..];
            return (rest.len() >= len).then(|| rest.split_at(len));
        }
    }
    None
}

fn pointer(bytes: &[u8], big: bool) -> Option<u64> {
    match bytes.len() {
        4 => {
            let b: [u8; 4] = bytes.try_into().ok()?;
            Some(u64::from(if big {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }))
        }
        8 => {
            let b: [u8; 8] = bytes.try_into().ok()?;
            Some(if big {
                u64::from_be_bytes(b)
            } else {
                u64::from_le_bytes(b)
            })
        }
        _ => None,
    }
}

/// The bytes of the Go string header (pointer, length) at `address`.
fn go_string(elf: &object::File<'_>, address: u64, size: usize, big: bool) -> Option<Vec<u8>> {
    let header = at(elf, address, 2 * size)?;
    let data = pointer(&header[..size], big)?;
    let len = usize::try_from(pointer(&header[size..], big)?).ok()?;
    if len > MAX_STRING {
        return None;
    }
    at(elf, data, len).map(<[u8]>::to_vec)
}

/// `len` bytes at virtual address `address`, from the section holding them.
fn at<'a>(elf: &object::File<'a>, address: u64, len: usize) -> Option<&'a [u8]> {
    elf.sections()
        .find(|s| s.address() <= address && address < s.address() + s.size())
        .and_then(|s| s.data_range(address, len as u64).ok().flatten())
}

/// The module text sits between two 16-byte sentinels.
fn strip_sentinels(modinfo: &[u8]) -> &[u8] {
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    }
}

/// `path`, `mod`, `dep` and `=>` (replacement) lines, tab-separated.
fn parse_modinfo(text: &str, info: &mut BuildInfo) {
    for line in text.lines() {
        let mut fields = line.split('\t');
        let module = |fields: &mut std::str::Split<'_, char>| {
            let path = fields.next()?.to_string();
            let version = fields.next().unwrap_or("").to_string();
            Some(Module { path, version })
        };
        match fields.next() {
            Some("mod") => info.main = module(&mut fields),
            Some("dep") => info.deps.extend(module(&mut fields)),
            Some("=>") => {
                if let (Some(last), Some(replacement)) = (info.deps.last_mut(), module(&mut fields)) {
                    *last = Module {
                        path: last.path.clone(),
                        version: replacement.version,
                    };
                }
            }
            _ => {}
        }
    }
}

/// `go1.21.5` → (1, 21); `devel go1.23-…` → (1, 23); anything else `None`.
pub fn release(version: &str) -> Option<(u32, u32)> {
    let start = version.find("go1.")? + 2;
    let mut parts = version[start..].split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_read_from_version_strings() {
        assert_eq!(release("go1.19.8"), Some((1, 19)));
        assert_eq!(release("go1.21"), Some((1, 21)));
        assert_eq!(release("go1.22rc1"), Some((1, 22)));
        assert_eq!(release("devel go1.23-4a5b6c Tue"), Some((1, 23)));
        assert_eq!(release("weekly"), None);
    }

    #[test]
    fn varint_strings_are_bounded_by_the_data() {
        assert_eq!(varint_string(b"\x03abcd"), Some((&b"abc"[..], &b"d"[..])));
        assert_eq!(varint_string(b"\x05abc"), None);
        assert_eq!(varint_string(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"), None);
        assert_eq!(varint_string(b""), None);
    }

    #[test]
    fn module_lines_name_the_main_module_and_its_dependencies() {
        let text = "path\texample.com/app\n\
                    mod\texample.com/app\t(devel)\t\n\
                    dep\tgoogle.golang.org/grpc\tv1.60.0\th1:abc=\n\
                    dep\tgolang.org/x/net\tv0.19.0\th1:def=\n\
                    =>\t../net\t(devel)\t\n\
                    build\t-compiler=gc\n";
        let mut info = BuildInfo::default();
        parse_modinfo(text, &mut info);
        assert_eq!(info.main.unwrap().path, "example.com/app");
        assert_eq!(
            info.deps,
            [
                Module {
                    path: "google.golang.org/grpc".into(),
                    version: "v1.60.0".into()
                },
                Module {
                    path: "golang.org/x/net".into(),
                    version: "(devel)".into()
                },
            ]
        );
    }

    #[test]
    fn sentinels_around_the_module_text_are_removed() {
        let mut modinfo = vec![0xAAu8; 16];
        modinfo.extend_from_slice(b"path\tx\nmod\tx\t(devel)\t\n");
        modinfo.extend_from_slice(&[0xBB; 16]);
        assert_eq!(strip_sentinels(&modinfo), b"path\tx\nmod\tx\t(devel)\t\n");
        assert_eq!(strip_sentinels(b"short"), b"short");
    }
}
