//! `Profile` events → one pprof profile.
//!
//! Two sample types, as Go's CPU profiles have: `samples/count` and
//! `<sample_type>/<unit>` (`cpu/nanoseconds`, count × period). Functions,
//! mappings and locations are deduplicated across every profile merged;
//! each sample carries its process' attributes as labels when asked.

use std::collections::HashMap;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;
use sonde_core::event::{Frame, Profile, Value};

use super::proto;

/// How to encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Give each sample its profile's attributes as labels (string values
    /// as `str`, integers as `num`). Off where the attributes travel beside
    /// the profile (Pyroscope's application name).
    pub sample_labels: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { sample_labels: true }
    }
}

/// Builds the string table: index 0 is "".
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut strings = Strings::default();
        strings.get("");
        strings
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(i) = self.index.get(s) {
            return *i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

#[derive(Default)]
struct Tables {
    strings: Strings,
    functions: HashMap<(i64, i64), u64>,
    mappings: HashMap<i64, u64>,
    locations: HashMap<(u64, u64, u64, i64), u64>,
    out: proto::Profile,
}

impl Tables {
    fn location(&mut self, frame: &Frame) -> u64 {
        let name = self.strings.get(&frame.function);
        let file = self.strings.get(frame.file.as_deref().unwrap_or(""));
        let next_function = self.functions.len() as u64 + 1;
        let function = *self.functions.entry((name, file)).or_insert_with(|| {
            self.out.function.push(proto::Function {
                id: next_function,
                name,
                system_name: name,
                filename: file,
                start_line: 0,
            });
            next_function
        });
        let mapping = match frame.module.as_deref() {
            Some(module) => {
                let filename = self.strings.get(module);
                let next = self.mappings.len() as u64 + 1;
                *self.mappings.entry(filename).or_insert_with(|| {
                    self.out.mapping.push(proto::Mapping {
                        id: next,
                        filename,
                        has_functions: true,
                        ..proto::Mapping::default()
                    });
                    next
                })
            }
            None => 0,
        };
        let line = i64::from(frame.line.unwrap_or(0));
        let next_location = self.locations.len() as u64 + 1;
        *self
            .locations
            .entry((mapping, frame.address, function, line))
            .or_insert_with(|| {
                self.out.location.push(proto::Location {
                    id: next_location,
                    mapping_id: mapping,
                    address: frame.address,
                    line: vec![proto::Line {
                        function_id: function,
                        line,
                        column: 0,
                    }],
                    is_folded: false,
                });
                next_location
            })
    }

    fn labels(&mut self, profile: &Profile) -> Vec<proto::Label> {
        profile
            .attributes
            .iter()
            .map(|(key, value)| {
                let key = self.strings.get(key);
                match value {
                    Value::Int(n) => proto::Label {
                        key,
                        num: *n,
                        ..proto::Label::default()
                    },
                    other => proto::Label {
                        key,
                        str: self.strings.get(&other.to_string()),
                        ..proto::Label::default()
                    },
                }
            })
            .collect()
    }
}

/// Merges `profiles` into one pprof profile. Its period and sample types
/// are the first profile's (a pipeline's profiles of one source share them);
/// its time range covers them all. `None` when there is no profile.
pub fn encode<'a>(profiles: impl IntoIterator<Item = &'a Profile>, options: EncodeOptions) -> Option<proto::Profile> {
    let mut profiles = profiles.into_iter().peekable();
    let first = *profiles.peek()?;
    let mut t = Tables {
        strings: Strings::new(),
        ..Tables::default()
    };
    let samples = proto::ValueType {
        r#type: t.strings.get("samples"),
        unit: t.strings.get("count"),
    };
    let weighted = proto::ValueType {
        r#type: t.strings.get(&first.sample_type),
        unit: t.strings.get(&first.sample_unit),
    };
    t.out.sample_type = vec![samples, weighted];
    t.out.period_type = Some(weighted);
    t.out.period = first.period as i64;
    t.out.default_sample_type = weighted.r#type;
    let (mut start, mut end) = (first.start, first.end);
    for profile in profiles {
        start = start.min(profile.start);
        end = end.max(profile.end);
        let labels = if options.sample_labels {
            t.labels(profile)
        } else {
            Vec::new()
        };
        for sample in &profile.samples {
            let location_id = sample.frames.iter().map(|f| t.location(f)).collect();
            let count = sample.count as i64;
            t.out.sample.push(proto::Sample {
                location_id,
                value: vec![count, count.saturating_mul(profile.period as i64)],
                label: labels.clone(),
            });
        }
    }
    t.out.time_nanos = start.as_nanos() as i64;
    t.out.duration_nanos = end.as_nanos().saturating_sub(start.as_nanos()) as i64;
    t.out.string_table = t.strings.table;
    Some(t.out)
}

/// The profile as gzipped protobuf bytes (`.pb.gz`), as pprof files are stored.
pub fn gzip(profile: &proto::Profile) -> Vec<u8> {
    let bytes = profile.encode_to_vec();
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4 + 64), Compression::default());
    // Writes to a Vec cannot fail.
    encoder.write_all(&bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use sonde_core::event::{keys, Attributes, FrameKind, StackSample, Timestamp};

    use super::*;

    fn frame(name: &'static str, module: &'static str) -> Frame {
        Frame {
            function: name.into(),
            module: Some(module.into()),
            file: None,
            line: None,
            address: name.len() as u64,
            kind: FrameKind::Native,
        }
    }

    pub(crate) fn profile() -> Profile {
        let hot: Arc<[Frame]> = vec![frame("hot", "/bin/a"), frame("main", "/bin/a")].into();
        let cold: Arc<[Frame]> = vec![frame("read", "[kernel]"), frame("main", "/bin/a")].into();
        Profile {
            sample_type: "cpu".into(),
            sample_unit: "nanoseconds".into(),
            period: 10_101_010,
            start: Timestamp::from_nanos(1_000_000_000),
            end: Timestamp::from_nanos(16_000_000_000),
            samples: vec![
                StackSample { frames: hot, count: 90 },
                StackSample {
                    frames: cold,
                    count: 10,
                },
            ],
            attributes: Attributes::new().with(keys::PID, 42u32).with(keys::COMM, "a"),
        }
    }

    #[test]
    fn tables_are_deduplicated_and_values_weighted() {
        let p = encode([&profile()], EncodeOptions::default()).unwrap();
        assert_eq!(p.string_table[0], "");
        assert_eq!(p.sample.len(), 2);
        assert_eq!(p.function.len(), 3, "main appears once");
        assert_eq!(p.mapping.len(), 2);
        assert_eq!(p.location.len(), 3);
        assert_eq!(p.sample[0].value, [90, 90 * 10_101_010]);
        assert_eq!(p.duration_nanos, 15_000_000_000);
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(
            (s(p.sample_type[1].r#type), s(p.sample_type[1].unit)),
            ("cpu", "nanoseconds")
        );
        let leaf = &p.location[(p.sample[0].location_id[0] - 1) as usize];
        assert_eq!(s(p.function[(leaf.line[0].function_id - 1) as usize].name), "hot");
        let pid = p.sample[0].label.iter().find(|l| s(l.key) == keys::PID).unwrap();
        assert_eq!(pid.num, 42);
        let without = encode([&profile()], EncodeOptions { sample_labels: false }).unwrap();
        assert!(without.sample[0].label.is_empty());
        assert!(encode([], EncodeOptions::default()).is_none());
        assert_eq!(&gzip(&p)[..2], [0x1f, 0x8b]);
    }
}
