//! Test support: reads struct layouts out of a compiled object's BTF, so
//! that Rust mirrors of C structs are checked against what clang produced
//! (the one definition is the C header). aya-obj finds and parses the
//! `.BTF` section; this reads the raw type records it hands back.

use std::collections::HashMap;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Debug)]
struct Type {
    kind: u32,
    name: String,
    /// Size for sized kinds, referenced type id for the others.
    size_or_type: u32,
    members: Vec<Member>,
    /// (element type, element count) for arrays.
    array: Option<(u32, u32)>,
}

#[derive(Clone, Debug)]
struct Member {
    name: String,
    type_id: u32,
    bit_offset: u32,
}

/// A field of a struct as BTF describes it.
#[derive(Clone, Debug)]
pub struct FieldLayout {
    /// Byte offset.
    pub offset: usize,
    /// Byte size.
    pub size: usize,
}

/// A struct as BTF describes it.
#[derive(Clone, Debug)]
pub struct StructLayout {
    /// Its name.
    pub name: String,
    /// Byte size.
    pub size: usize,
    /// Fields by name, in order.
    pub fields: Vec<(String, FieldLayout)>,
}

impl StructLayout {
    /// Field `name`; panics if there is none.
    pub fn field(&self, name: &str) -> &FieldLayout {
        &self
            .fields
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("struct {} has no field {name} in BTF", self.name))
            .1
    }
}

/// The types of one object's BTF.
pub struct ObjectBtf {
    types: Vec<Type>,
    by_name: HashMap<String, u32>,
}

impl ObjectBtf {
    /// Parses the BTF of an ELF eBPF object.
    pub fn from_object(elf: &[u8]) -> ObjectBtf {
        let object = aya_obj::Object::parse(elf).expect("object parses");
        let raw = object.btf.expect("object has BTF").to_bytes();
        ObjectBtf::parse(&raw)
    }

    fn parse(raw: &[u8]) -> ObjectBtf {
        let u16_at = |at: usize| u16::from_le_bytes([raw[at], raw[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().unwrap());
        assert_eq!(u16_at(0), 0xeb9f, "BTF magic");
        let hdr_len = u32_at(4) as usize;
        let (type_off, type_len) = (u32_at(8) as usize, u32_at(12) as usize);
        let str_off = u32_at(16) as usize;
        let strings = &raw[hdr_len + str_off..];
        let string = |off: u32| {
            let s = &strings[off as usize..];
            String::from_utf8_lossy(&s[..s.iter().position(|b| *b == 0).unwrap_or(s.len())]).into_owned()
        };
        // Type id 0 is void.
        let mut types = vec![Type {
            kind: 0,
            name: String::new(),
            size_or_type: 0,
            members: Vec::new(),
            array: None,
        }];
        let mut at = hdr_len + type_off;
        let end = at + type_len;
        while at < end {
            let (name_off, info, size_or_type) = (u32_at(at), u32_at(at + 4), u32_at(at + 8));
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let mut ty = Type {
                kind,
                name: string(name_off),
                size_or_type,
                members: Vec::new(),
                array: None,
            };
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => at += 4,
                KIND_ARRAY => {
                    ty.array = Some((u32_at(at), u32_at(at + 8)));
                    at += 12;
                }
                KIND_STRUCT | KIND_UNION => {
                    for _ in 0..vlen {
                        let offset = u32_at(at + 8);
                        ty.members.push(Member {
                            name: string(u32_at(at)),
                            type_id: u32_at(at + 4),
                            bit_offset: if kind_flag { offset & 0xff_ffff } else { offset },
                        });
                        at += 12;
                    }
                }
                KIND_ENUM | KIND_FUNC_PROTO => at += 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => at += 12 * vlen,
                _ => {}
            }
            types.push(ty);
        }
        let by_name = types
            .iter()
            .enumerate()
            .filter(|(_, t)| t.kind == KIND_STRUCT && !t.name.is_empty())
            .map(|(id, t)| (t.name.clone(), id as u32))
            .collect();
        ObjectBtf { types, by_name }
    }

    fn size_of(&self, id: u32) -> usize {
        let ty = &self.types[id as usize];
        match ty.kind {
            KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 | KIND_FLOAT => ty.size_or_type as usize,
            KIND_PTR => 8,
            KIND_ARRAY => {
                let (elem, n) = ty.array.unwrap();
                self.size_of(elem) * n as usize
            }
            KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => self.size_of(ty.size_or_type),
            other => panic!("no size for BTF kind {other}"),
        }
    }

    /// The layout of `struct name`; panics if the object has none.
    pub fn struct_layout(&self, name: &str) -> StructLayout {
        let id = *self
            .by_name
            .get(name)
            .unwrap_or_else(|| panic!("no struct {name} in BTF"));
        let ty = &self.types[id as usize];
        StructLayout {
            name: name.to_string(),
            size: ty.size_or_type as usize,
            fields: ty
                .members
                .iter()
                .map(|m| {
                    assert_eq!(m.bit_offset % 8, 0, "bitfield {name}.{}", m.name);
                    let layout = FieldLayout {
                        offset: (m.bit_offset / 8) as usize,
                        size: self.size_of(m.type_id),
                    };
                    (m.name.clone(), layout)
                })
                .collect(),
        }
    }
}

/// The size of the field a projection `|s: &S| &s.field` points at.
pub fn field_size<S, F>(_: impl Fn(&S) -> &F) -> usize {
    std::mem::size_of::<F>()
}

/// Asserts that Rust struct `$ty` has exactly the fields of C struct
/// `$c_name` in `$btf`, with the same offsets and sizes, and the same size.
#[macro_export]
#[doc(hidden)]
macro_rules! assert_layout {
    ($btf:expr, $c_name:literal, $ty:ident { $($field:ident),* $(,)? }) => {{
        let layout = $btf.struct_layout($c_name);
        assert_eq!(layout.size, ::std::mem::size_of::<$ty>(), "size of struct {}", $c_name);
        let rust_fields: &[&str] = &[$(stringify!($field)),*];
        let c_fields: Vec<&str> = layout.fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(c_fields, rust_fields, "fields of struct {}", $c_name);
        $(
            let c = layout.field(stringify!($field));
            assert_eq!(c.offset, ::std::mem::offset_of!($ty, $field), "offset of {}.{}", $c_name, stringify!($field));
            assert_eq!(
                c.size,
                $crate::btf_layout::field_size(|s: &$ty| &s.$field),
                "size of {}.{}", $c_name, stringify!($field)
            );
        )*
    }};
}
