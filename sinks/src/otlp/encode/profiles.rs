//! Profile events → `ExportProfilesServiceRequest` (OTLP profiles,
//! `v1development`: the signal is still development-stage upstream, and its
//! messages may change with the next opentelemetry-proto release).
//!
//! Every profile of a request shares one dictionary (strings, functions,
//! mappings, locations, stacks, attributes); each table starts with its zero
//! value, as the proto requires. A sample's value is its count, with type
//! `samples`/`count`; the profile's period type is the event's sample type
//! and unit (`cpu`/`nanoseconds`), so weight = count × period, the way the
//! OpenTelemetry eBPF profiler reports.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Location, Mapping, Profile as OtlpProfile, ProfilesDictionary, ResourceProfiles,
    Sample, ScopeProfiles, Stack, ValueType,
};
use sonde_core::event::{Frame, FrameKind, Profile, Value};

use super::common::{any_value, is_resource_key, scope, Grouper, ResourceDefaults};

/// Location attribute naming a frame's runtime (semantic conventions).
pub const FRAME_TYPE: &str = "profile.frame.type";

/// Interns everything a request's profiles refer to.
struct Dictionary {
    tables: ProfilesDictionary,
    strings: HashMap<String, i32>,
    functions: HashMap<(i32, i32), i32>,
    mappings: HashMap<i32, i32>,
    locations: HashMap<(i32, u64, i32, u32, i32), i32>,
    stacks: HashMap<Vec<i32>, i32>,
    attributes: HashMap<(i32, String), i32>,
}

fn intern<K: std::hash::Hash + Eq, T>(
    map: &mut HashMap<K, i32>,
    table: &mut Vec<T>,
    key: K,
    make: impl FnOnce() -> T,
) -> i32 {
    *map.entry(key).or_insert_with(|| {
        table.push(make());
        (table.len() - 1) as i32
    })
}

impl Dictionary {
    fn new() -> Self {
        let mut d = Dictionary {
            tables: ProfilesDictionary {
                mapping_table: vec![Mapping::default()],
                location_table: vec![Location::default()],
                function_table: vec![Function::default()],
                link_table: vec![Default::default()],
                string_table: Vec::new(),
                attribute_table: vec![KeyValueAndUnit::default()],
                stack_table: vec![Stack::default()],
            },
            strings: HashMap::new(),
            functions: HashMap::new(),
            mappings: HashMap::new(),
            locations: HashMap::new(),
            stacks: HashMap::new(),
            attributes: HashMap::new(),
        };
        d.string("");
        d
    }

    fn string(&mut self, s: &str) -> i32 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        self.tables.string_table.push(s.to_string());
        let i = (self.tables.string_table.len() - 1) as i32;
        self.strings.insert(s.to_string(), i);
        i
    }

    fn attribute(&mut self, key: &str, value: &Value) -> i32 {
        let key = self.string(key);
        // The value's text and type identify it (AnyValue is not hashable).
        let id = format!("{}:{value}", value_type(value));
        let table = &mut self.tables.attribute_table;
        intern(&mut self.attributes, table, (key, id), || KeyValueAndUnit {
            key_strindex: key,
            value: Some(any_value(value)),
            unit_strindex: 0,
        })
    }

    fn frame_type(&mut self, kind: FrameKind) -> Option<i32> {
        let name = match kind {
            FrameKind::Kernel => "kernel",
            FrameKind::Native => "native",
            // The value OpenTelemetry's profiler uses for CPython frames.
            FrameKind::Python => "cpython",
            // No semantic-convention value says "JIT" or "unknown".
            FrameKind::Jit | FrameKind::Unknown => return None,
        };
        Some(self.attribute(FRAME_TYPE, &Value::from(name)))
    }

    fn location(&mut self, frame: &Frame) -> i32 {
        let name = self.string(&frame.function);
        let file = frame.file.as_deref().map_or(0, |f| self.string(f));
        let function = intern(
            &mut self.functions,
            &mut self.tables.function_table,
            (name, file),
            || Function {
                name_strindex: name,
                system_name_strindex: name,
                filename_strindex: file,
                start_line: 0,
            },
        );
        let mapping = match frame.module.as_deref() {
            Some(module) => {
                let module = self.string(module);
                intern(&mut self.mappings, &mut self.tables.mapping_table, module, || Mapping {
                    filename_strindex: module,
                    ..Mapping::default()
                })
            }
            None => 0,
        };
        let line = frame.line.unwrap_or(0);
        let kind = self.frame_type(frame.kind).unwrap_or(0);
        let key = (mapping, frame.address, function, line, kind);
        intern(&mut self.locations, &mut self.tables.location_table, key, || Location {
            mapping_index: mapping,
            address: frame.address,
            lines: vec![Line {
                function_index: function,
                line: line.into(),
                column: 0,
            }],
            attribute_indices: if kind == 0 { Vec::new() } else { vec![kind] },
        })
    }

    fn stack(&mut self, frames: &[Frame]) -> i32 {
        let locations: Vec<i32> = frames.iter().map(|f| self.location(f)).collect();
        let table = &mut self.tables.stack_table;
        intern(&mut self.stacks, table, locations.clone(), || Stack {
            location_indices: locations,
        })
    }
}

fn value_type(value: &Value) -> &'static str {
    match value {
        Value::Str(_) => "s",
        Value::Int(_) => "i",
        Value::Float(_) => "f",
        Value::Bool(_) => "b",
    }
}

fn profile(profile: &Profile, dictionary: &mut Dictionary) -> OtlpProfile {
    let samples = profile
        .samples
        .iter()
        .map(|s| Sample {
            stack_index: dictionary.stack(&s.frames),
            values: vec![i64::try_from(s.count).unwrap_or(i64::MAX)],
            ..Sample::default()
        })
        .collect();
    let attribute_indices = profile
        .attributes
        .iter()
        .filter(|(k, _)| !is_resource_key(k) && k.as_str() != sonde_core::event::keys::COMPONENT_ID)
        .map(|(k, v)| dictionary.attribute(k, v))
        .collect();
    let sample_type = ValueType {
        type_strindex: dictionary.string("samples"),
        unit_strindex: dictionary.string("count"),
    };
    let period_type = ValueType {
        type_strindex: dictionary.string(&profile.sample_type),
        unit_strindex: dictionary.string(&profile.sample_unit),
    };
    OtlpProfile {
        sample_type: Some(sample_type),
        samples,
        time_unix_nano: profile.start.as_nanos(),
        duration_nano: profile.end.as_nanos().saturating_sub(profile.start.as_nanos()),
        period_type: Some(period_type),
        period: i64::try_from(profile.period).unwrap_or(i64::MAX),
        // Random, never all zeroes (invalid). A retried batch is re-encoded
        // and gets new ids, so they do not deduplicate retries.
        profile_id: fastrand::u128(1..).to_le_bytes().to_vec(),
        attribute_indices,
        ..OtlpProfile::default()
    }
}

/// One request carrying `profiles`.
pub fn encode(profiles: &[&Profile], defaults: &ResourceDefaults) -> ExportProfilesServiceRequest {
    let mut dictionary = Dictionary::new();
    let mut grouper = Grouper::<Vec<OtlpProfile>>::new(defaults);
    for p in profiles {
        let encoded = profile(p, &mut dictionary);
        grouper.scope_for(&p.attributes).push(encoded);
    }
    ExportProfilesServiceRequest {
        resource_profiles: grouper
            .groups
            .into_iter()
            .map(|group| ResourceProfiles {
                resource: Some(group.resource),
                scope_profiles: group
                    .scopes
                    .into_iter()
                    .map(|(component, profiles)| ScopeProfiles {
                        scope: Some(scope(component.as_ref())),
                        profiles,
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect(),
        dictionary: Some(dictionary.tables),
    }
}

/// Profiles in a request.
pub fn profiles(request: &ExportProfilesServiceRequest) -> usize {
    request
        .resource_profiles
        .iter()
        .flat_map(|r| &r.scope_profiles)
        .map(|s| s.profiles.len())
        .sum()
}
