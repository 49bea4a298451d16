//! Reading and clearing the program's maps: stacks of a drained set,
//! entries of hash maps, and the errors that name the map.

use std::collections::{HashMap as StdHashMap, HashSet};

use sonde_ebpf::aya::maps::{HashMap, MapData, MapError, StackTraceMap};
use sonde_ebpf::ReadError;

use super::{UnwindStack, OBJECT, UNWOUND_BIT};

/// Reads the stacks of `map` that `wanted` refers to into `out` (under
/// their id with `id_bit`), and removes every stack from `map`.
pub(super) fn drain_stacks(
    map: &mut StackTraceMap<MapData>,
    name: &'static str,
    id_bit: u32,
    wanted: &HashSet<u32>,
    out: &mut StdHashMap<u32, Vec<u64>>,
) -> Result<(), ReadError> {
    let ids = map
        .stack_ids()
        .collect::<Result<Vec<_>, _>>()
        .map_err(ReadError::of(OBJECT, name))?;
    for id in ids {
        if wanted.contains(&(id | id_bit)) {
            match map.get(&id, 0) {
                Ok(trace) => {
                    out.insert(id | id_bit, trace.frames().iter().map(|f| f.ip).collect());
                }
                Err(MapError::KeyNotFound) => {}
                Err(source) => return Err(ReadError::of(OBJECT, name)(source)),
            }
        }
        match map.remove(&id) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(source) => return Err(ReadError::of(OBJECT, name)(source)),
        }
    }
    Ok(())
}

/// Reads every unwound stack of `map` into `out`, under ids with
/// [`UNWOUND_BIT`], and empties `map`; returns the id of each hash.
pub(super) fn drain_unwound(
    map: &mut HashMap<MapData, u64, UnwindStack>,
    name: &'static str,
    out: &mut StdHashMap<u32, Vec<u64>>,
) -> Result<StdHashMap<u64, u32>, ReadError> {
    let hashes = map
        .keys()
        .collect::<Result<Vec<_>, _>>()
        .map_err(ReadError::of(OBJECT, name))?;
    let mut ids = StdHashMap::with_capacity(hashes.len());
    for (index, hash) in hashes.into_iter().enumerate() {
        match map.get(&hash, 0) {
            Ok(stack) => {
                let id = UNWOUND_BIT | index as u32;
                let len = (stack.len as usize).min(stack.ips.len());
                out.insert(id, stack.ips[..len].to_vec());
                ids.insert(hash, id);
            }
            Err(MapError::KeyNotFound) => {}
            Err(source) => return Err(ReadError::of(OBJECT, name)(source)),
        }
        remove(map, &hash, name)?;
    }
    Ok(ids)
}

pub(super) fn remove<K: sonde_ebpf::aya::Pod, V: sonde_ebpf::aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    key: &K,
    name: &'static str,
) -> Result<(), ReadError> {
    match map.remove(key) {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(source) => Err(ReadError::of(OBJECT, name)(source)),
    }
}
