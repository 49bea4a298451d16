//! Protobuf written straight into a byte buffer: what the metrics encoder
//! uses instead of building `opentelemetry-proto` structs, which cost an
//! allocation per string and a second walk (`encoded_len` at every level)
//! to encode.
//!
//! A nested message is written after a one-byte length placeholder and its
//! length filled in afterwards; the rare message of 128 bytes or more moves
//! its body by the extra length bytes (one `memmove`, not a copy per level
//! of a struct tree).

use prost::encoding::{encode_varint, encoded_len_varint};
use sonde_core::event::Value;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

fn key(buf: &mut Vec<u8>, field: u32, wire_type: u32) {
    encode_varint(u64::from(field << 3 | wire_type), buf);
}

/// A varint field (enums, bools, unsigned and non-negative integers).
pub fn uint(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        key(buf, field, VARINT);
        encode_varint(value, buf);
    }
}

/// A `fixed64` field.
pub fn fixed64(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        key(buf, field, FIXED64);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

/// A `double` field; `always` writes a zero too (a `oneof` member or an
/// `optional` field, whose presence means something).
pub fn double(buf: &mut Vec<u8>, field: u32, value: f64, always: bool) {
    if always || value.to_bits() != 0 {
        key(buf, field, FIXED64);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

/// A `string` or `bytes` field (left out when empty, as proto3 does).
pub fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    if !value.is_empty() {
        key(buf, field, LEN);
        encode_varint(value.len() as u64, buf);
        buf.extend_from_slice(value);
    }
}

/// A `string` field.
pub fn string(buf: &mut Vec<u8>, field: u32, value: &str) {
    bytes(buf, field, value.as_bytes());
}

/// A packed `repeated fixed64` field.
pub fn packed_fixed64(buf: &mut Vec<u8>, field: u32, values: impl ExactSizeIterator<Item = u64>) {
    if values.len() > 0 {
        key(buf, field, LEN);
        encode_varint(values.len() as u64 * 8, buf);
        for value in values {
            buf.extend_from_slice(&value.to_le_bytes());
        }
    }
}

/// An embedded message whose body `body` writes (always present, even
/// when empty: the caller writes a message only where one is wanted).
pub fn message(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(buf, field, LEN);
    let at = buf.len();
    buf.push(0);
    body(buf);
    let len = buf.len() - at - 1;
    let width = encoded_len_varint(len as u64);
    if width > 1 {
        buf.splice(at + 1..at + 1, std::iter::repeat_n(0, width - 1));
    }
    let mut slot = &mut buf[at..at + width];
    encode_varint(len as u64, &mut slot);
}

/// An `AnyValue` body.
pub fn any_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        // A oneof member is written even when empty: "" is a value.
        Value::Str(s) => {
            key(buf, 1, LEN);
            encode_varint(s.len() as u64, buf);
            buf.extend_from_slice(s.as_bytes());
        }
        Value::Bool(b) => {
            key(buf, 2, VARINT);
            buf.push(u8::from(*b));
        }
        Value::Int(i) => {
            key(buf, 3, VARINT);
            encode_varint(*i as u64, buf);
        }
        Value::Float(f) => double(buf, 4, *f, true),
    }
}

/// A `KeyValue` message as field `field`.
pub fn key_value(buf: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    message(buf, field, |buf| {
        string(buf, 1, key);
        message(buf, 2, |buf| any_value(buf, value));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use prost::Message;

    #[test]
    fn key_values_decode_as_prost_encodes_them() {
        let long = "x".repeat(300);
        for value in [
            Value::from("vda"),
            Value::from(""),
            Value::Int(-3),
            Value::Int(0),
            Value::Float(0.0),
            Value::Float(2.5),
            Value::Bool(false),
            Value::from(long.clone()),
        ] {
            let mut buf = Vec::new();
            key_value(&mut buf, 1, "system.device", &value);
            // Field 1 of a wrapper message: strip key and length.
            let decoded = opentelemetry_proto::tonic::common::v1::KeyValueList::decode(&buf[..]).unwrap();
            let expected = match &value {
                Value::Str(s) => any_value::Value::StringValue(s.to_string()),
                Value::Int(i) => any_value::Value::IntValue(*i),
                Value::Float(f) => any_value::Value::DoubleValue(*f),
                Value::Bool(b) => any_value::Value::BoolValue(*b),
            };
            assert_eq!(
                decoded.values,
                vec![KeyValue {
                    key: "system.device".into(),
                    value: Some(AnyValue { value: Some(expected) }),
                    ..KeyValue::default()
                }],
                "{value:?}"
            );
        }
    }
}
