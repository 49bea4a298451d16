//! Where a `*tls.Conn` keeps its socket's fd: `tls.Conn.conn` (a
//! `net.Conn` interface holding a `*net.TCPConn`) → `TCPConn.conn.fd`
//! (`*netFD`) → `netFD.pfd` (`poll.FD`) → `FD.Sysfd`. Read from the
//! binary's DWARF when it has some (`go build` keeps it unless `-w`),
//! else from [`TABLE`], by Go release.

use std::borrow::Cow;

use gimli::{AttributeValue, EndianSlice, RunTimeEndian};
use object::{Object, ObjectSection};

use crate::protocols::bpf::ProtoGoOffsets;

/// How the offsets were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetsSource {
    /// The binary's own DWARF.
    Dwarf,
    /// [`TABLE`], for this release.
    Table,
    /// [`TABLE`]'s newest row, for a release newer than it knows.
    TableNewest,
}

/// The offsets per Go release, (first release, offsets), oldest first:
/// a row holds until the next one. Checked against the DWARF of the
/// release installed here by the tests; the layout has not changed since
/// the register ABI came (1.17): `conn` is the first field of `tls.Conn`,
/// `fd` of `net.conn` (the only field of `TCPConn`), `pfd` of `netFD`,
/// and `Sysfd` follows `poll.FD`'s 16-byte `fdMutex`.
pub const TABLE: &[((u32, u32), ProtoGoOffsets)] = &[(
    (1, 17),
    ProtoGoOffsets {
        conn: 0,
        netfd: 0,
        pfd: 0,
        sysfd: 16,
    },
)];

/// The table's offsets for release `(major, minor)`; `None` before 1.17.
pub fn from_table(release: (u32, u32)) -> Option<(ProtoGoOffsets, OffsetsSource)> {
    let row = TABLE.iter().rev().find(|(first, _)| *first <= release)?;
    let newest = TABLE.last().map(|(first, _)| *first);
    // Past the newest row by more than a release: assumed unchanged.
    let source = match newest {
        Some((major, minor)) if release > (major, minor) && release.1 > LATEST_CHECKED_MINOR => {
            OffsetsSource::TableNewest
        }
        _ => OffsetsSource::Table,
    };
    Some((row.1, source))
}

/// The newest Go 1.x release whose layout is known to match [`TABLE`].
pub const LATEST_CHECKED_MINOR: u32 = 25;

/// The struct members that lead to the fd: (type, member).
const MEMBERS: [(&str, &str); 5] = [
    ("crypto/tls.Conn", "conn"),
    ("net.TCPConn", "conn"),
    ("net.conn", "fd"),
    ("net.netFD", "pfd"),
    ("internal/poll.FD", "Sysfd"),
];

/// The offsets from the binary's DWARF, `None` without DWARF or without
/// any of the members.
pub fn from_dwarf(elf: &object::File<'_>) -> Option<ProtoGoOffsets> {
    let endian = if elf.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    elf.section_by_name(".debug_info")?;
    let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, gimli::Error> {
        Ok(elf
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[])))
    };
    let sections = gimli::DwarfSections::load(load).ok()?;
    let dwarf = sections.borrow(|s| EndianSlice::new(s, endian));
    let found = members(&dwarf).ok()?;
    let get = |i: usize| found[i];
    Some(ProtoGoOffsets {
        conn: get(0)?,
        netfd: get(1)? + get(2)?,
        pfd: get(3)?,
        sysfd: get(4)?,
    })
}

/// The offset of each of [`MEMBERS`], as found.
fn members(dwarf: &gimli::Dwarf<EndianSlice<'_, RunTimeEndian>>) -> gimli::Result<[Option<u32>; 5]> {
    let mut found = [None; MEMBERS.len()];
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        let mut entries = unit.entries();
        // The wanted struct being walked: its index in MEMBERS-by-type and depth.
        let mut inside: Option<(&str, isize)> = None;
        while let Some(entry) = entries.next_dfs()? {
            let depth = entry.depth();
            if inside.is_some_and(|(_, d)| depth <= d) {
                inside = None;
            }
            let name = || -> Option<String> {
                let value = entry.attr_value(gimli::DW_AT_name)?;
                let text = dwarf.attr_string(&unit, value).ok()?;
                Some(String::from_utf8_lossy(text.slice()).into_owned())
            };
            match (entry.tag(), inside) {
                (gimli::DW_TAG_structure_type, None) => {
                    if let Some(name) = name() {
                        if let Some((ty, _)) = MEMBERS.iter().find(|(ty, _)| *ty == name) {
                            inside = Some((ty, depth));
                        }
                    }
                }
                (gimli::DW_TAG_member, Some((ty, d))) if depth == d + 1 => {
                    let Some(member) = name() else { continue };
                    let Some(i) = MEMBERS.iter().position(|(t, m)| *t == ty && *m == member) else {
                        continue;
                    };
                    let offset = match entry.attr_value(gimli::DW_AT_data_member_location) {
                        Some(AttributeValue::Udata(n)) => u32::try_from(n).ok(),
                        Some(AttributeValue::Data1(n)) => Some(u32::from(n)),
                        Some(AttributeValue::Data2(n)) => Some(u32::from(n)),
                        Some(AttributeValue::Data4(n)) => Some(n),
                        Some(AttributeValue::Sdata(n)) => u32::try_from(n).ok(),
                        _ => None,
                    };
                    if found[i].is_none() {
                        found[i] = offset;
                    }
                }
                _ => {}
            }
        }
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_starts_with_the_register_abi_and_flags_releases_past_the_checked_ones() {
        assert_eq!(from_table((1, 16)), None);
        let (offsets, source) = from_table((1, 17)).unwrap();
        assert_eq!(offsets.sysfd, 16);
        assert_eq!(source, OffsetsSource::Table);
        assert_eq!(from_table((1, LATEST_CHECKED_MINOR)).unwrap().1, OffsetsSource::Table);
        assert_eq!(
            from_table((1, LATEST_CHECKED_MINOR + 1)).unwrap().1,
            OffsetsSource::TableNewest
        );
    }

    #[test]
    fn a_binary_without_dwarf_has_no_dwarf_offsets() {
        let data = std::fs::read("/bin/sh").unwrap();
        let elf = object::File::parse(&*data).unwrap();
        assert_eq!(from_dwarf(&elf), None);
    }
}
