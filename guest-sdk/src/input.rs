//! Command payloads and projection params: decoding them with errors that name the field,
//! and listing their fields for `describe`, both from the types' serde impls alone.

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};

use crate::{Error, Field};

/// Decodes an input. No payload (empty or nil) counts as an empty map, so inputs without
/// fields need none. Errors are `invalid-input`, prefixed with the top-level field that failed.
pub(crate) fn decode_input<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    const EMPTY_MAP: &[u8] = &[0x80];
    let bytes = if bytes.is_empty() || bytes == [0xc0] {
        EMPTY_MAP
    } else {
        bytes
    };
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    let mut field = None;
    T::deserialize(Tracked {
        de: &mut de,
        field: &mut field,
    })
    .map_err(|e| {
        Error::invalid_input(match field {
            Some(field) => explain::<T>(&field, &e.to_string()),
            None => e.to_string(),
        })
    })
}

/// Says what a field expected and got. rmp-serde reports a value of the wrong type as
/// "wrong msgpack marker FixStr(3)": translate the marker into a kind people know.
fn explain<T: DeserializeOwned>(field: &str, error: &str) -> String {
    let expected = fields_of::<T>()
        .into_iter()
        .find(|f| f.name == field)
        .map(|f| f.kind);
    let got = error.strip_prefix("wrong msgpack marker ").map(|marker| {
        match marker
            .trim_start_matches("Fix")
            .split(|c: char| c.is_ascii_digit() || c == '(')
            .next()
        {
            Some("Str") => "string",
            Some("Pos" | "Neg" | "U" | "I") => "integer",
            Some("F") => "number",
            Some("True" | "False") => "bool",
            Some("Null") => "null",
            Some("Array") => "list",
            Some("Map") => "object",
            Some("Bin") => "bytes",
            _ => marker,
        }
    });
    match (expected, got) {
        (Some(expected), Some(got)) => format!("field `{field}`: expected {expected}, got {got}"),
        _ => format!("field `{field}`: {error}"),
    }
}

/// Forwards to `de`, except that a struct remembers which of its fields is being decoded.
struct Tracked<'f, D> {
    de: D,
    field: &'f mut Option<String>,
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.de.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Tracked<'_, D> {
    type Error = D::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = TrackedVisitor {
            inner: visitor,
            fields,
            field: self.field,
        };
        self.de.deserialize_struct(name, fields, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }

    forward! {
        deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16();
        deserialize_i32(); deserialize_i64(); deserialize_i128(); deserialize_u8();
        deserialize_u16(); deserialize_u32(); deserialize_u64(); deserialize_u128();
        deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str();
        deserialize_string(); deserialize_bytes(); deserialize_byte_buf(); deserialize_option();
        deserialize_unit(); deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str); deserialize_seq();
        deserialize_tuple(len: usize); deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map(); deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier(); deserialize_ignored_any();
    }
}

struct TrackedVisitor<'f, V> {
    inner: V,
    fields: &'static [&'static str],
    field: &'f mut Option<String>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for TrackedVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(TrackedMap {
            inner: map,
            key: None,
            field: self.field,
        })
    }

    // Structs encoded compactly (rmp_serde::to_vec) arrive as arrays in field order.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let seq = TrackedSeq {
            inner: seq,
            fields: self.fields,
            index: 0,
            field: self.field,
        };
        self.inner.visit_seq(seq)
    }
}

struct TrackedMap<'f, A> {
    inner: A,
    key: Option<String>,
    field: &'f mut Option<String>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for TrackedMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        // Payload keys are strings; read one, then hand it to the struct's field visitor.
        let Some(key) = self.inner.next_key::<String>()? else {
            return Ok(None);
        };
        let value = seed.deserialize(key.as_str().into_deserializer())?;
        self.key = Some(key);
        Ok(Some(value))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        *self.field = self.key.take();
        let value = self.inner.next_value_seed(seed)?;
        *self.field = None;
        Ok(value)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

struct TrackedSeq<'f, A> {
    inner: A,
    fields: &'static [&'static str],
    index: usize,
    field: &'f mut Option<String>,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for TrackedSeq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        *self.field = self.fields.get(self.index).map(|f| f.to_string());
        self.index += 1;
        let value = self.inner.next_element_seed(seed)?;
        *self.field = None;
        Ok(value)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// The fields of a struct with a kind each (`string`, `integer`, `number`, `bool`, `list`,
/// `object`, `bytes`, `a|b` for enums, `any`; optional ones end in `?`), found by
/// deserializing it from a probe that records what each field asks for. A type that is
/// not a plain struct gives no fields.
pub fn fields_of<T: DeserializeOwned>() -> Vec<Field> {
    let mut fields = Vec::new();
    // A field whose type rejects the probe's placeholder value keeps the kind `any`.
    let _ = T::deserialize(Shape(&mut fields));
    fields
}

type ProbeError = de::value::Error;

struct Shape<'a>(&'a mut Vec<Field>);

impl<'de> Deserializer<'de> for Shape<'_> {
    type Error = ProbeError;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        names: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.0.extend(names.iter().map(|n| Field {
            name: n.to_string(),
            kind: "any".into(),
        }));
        visitor.visit_map(Placeholders {
            names,
            index: 0,
            fields: Some(self.0),
        })
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        Err(de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// A struct's fields, each with a placeholder value; records the kinds when `fields` is set.
struct Placeholders<'a> {
    names: &'static [&'static str],
    index: usize,
    fields: Option<&'a mut Vec<Field>>,
}

impl<'de> MapAccess<'de> for Placeholders<'_> {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        match self.names.get(self.index) {
            Some(name) => seed.deserialize(name.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, ProbeError> {
        let mut kind = String::new();
        let value = seed.deserialize(Probe(&mut kind));
        if let Some(field) = self.fields.as_mut().and_then(|f| f.get_mut(self.index))
            && !kind.is_empty()
        {
            field.kind = kind;
        }
        self.index += 1;
        value
    }
}

/// Deserializes a placeholder value of whatever type asks, writing down the kind asked for.
struct Probe<'a>(&'a mut String);

macro_rules! probe {
    ($($method:ident => $kind:literal, $visit:ident($($value:expr)?);)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
            self.0.push_str($kind);
            visitor.$visit($($value)?)
        }
    )*};
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = ProbeError;

    probe! {
        deserialize_bool => "bool", visit_bool(false);
        deserialize_i8 => "integer", visit_i64(0);
        deserialize_i16 => "integer", visit_i64(0);
        deserialize_i32 => "integer", visit_i64(0);
        deserialize_i64 => "integer", visit_i64(0);
        deserialize_i128 => "integer", visit_i64(0);
        deserialize_u8 => "integer", visit_u64(0);
        deserialize_u16 => "integer", visit_u64(0);
        deserialize_u32 => "integer", visit_u64(0);
        deserialize_u64 => "integer", visit_u64(0);
        deserialize_u128 => "integer", visit_u64(0);
        deserialize_f32 => "number", visit_f64(0.0);
        deserialize_f64 => "number", visit_f64(0.0);
        deserialize_char => "string", visit_char(' ');
        deserialize_str => "string", visit_str("");
        deserialize_string => "string", visit_str("");
        deserialize_identifier => "string", visit_str("");
        deserialize_bytes => "bytes", visit_bytes(&[]);
        deserialize_byte_buf => "bytes", visit_bytes(&[]);
        deserialize_unit => "null", visit_unit();
        deserialize_any => "any", visit_unit();
        deserialize_ignored_any => "any", visit_unit();
        deserialize_seq => "list", visit_seq(Nothing);
        deserialize_map => "object", visit_map(Nothing);
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        let value = visitor.visit_some(Probe(&mut *self.0));
        self.0.push('?');
        value
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        names: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.0.push_str("object");
        visitor.visit_map(Placeholders {
            names,
            index: 0,
            fields: None,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.0.push_str(&variants.join("|"));
        let first = variants.first().copied().unwrap_or_default();
        visitor.visit_enum(first.into_deserializer())
    }
}

/// An empty list or map.
struct Nothing;

impl<'de> SeqAccess<'de> for Nothing {
    type Error = ProbeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        _: T,
    ) -> Result<Option<T::Value>, ProbeError> {
        Ok(None)
    }
}

impl<'de> MapAccess<'de> for Nothing {
    type Error = ProbeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        _: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        Ok(None)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, _: V) -> Result<V::Value, ProbeError> {
        Err(de::Error::custom("no value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Size {
        Small,
        Large,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Line {
        sku: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AddItem {
        order_id: String,
        qty: u32,
        price: f64,
        gift: bool,
        note: Option<String>,
        size: Size,
        lines: Vec<Line>,
        line: Line,
    }

    fn sample() -> AddItem {
        AddItem {
            order_id: "o-1".into(),
            qty: 2,
            price: 1.5,
            gift: false,
            note: None,
            size: Size::Large,
            lines: vec![Line { sku: "a".into() }],
            line: Line { sku: "b".into() },
        }
    }

    #[test]
    fn lists_fields_with_kinds() {
        let fields: Vec<(String, String)> = fields_of::<AddItem>()
            .into_iter()
            .map(|f| (f.name, f.kind))
            .collect();
        let expected = [
            ("order_id", "string"),
            ("qty", "integer"),
            ("price", "number"),
            ("gift", "bool"),
            ("note", "string?"),
            ("size", "small|large"),
            ("lines", "list"),
            ("line", "object"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, k)| (n.to_string(), k.to_string()))
            .collect();
        assert_eq!(fields, expected);
        assert!(fields_of::<u32>().is_empty());
        #[derive(Deserialize)]
        struct Empty {}
        assert!(fields_of::<Empty>().is_empty());
    }

    #[test]
    fn decodes_named_and_compact_payloads() {
        let named = rmp_serde::to_vec_named(&sample()).unwrap();
        assert_eq!(decode_input::<AddItem>(&named).unwrap(), sample());
        let compact = rmp_serde::to_vec(&sample()).unwrap();
        assert_eq!(decode_input::<AddItem>(&compact).unwrap(), sample());
    }

    #[test]
    fn no_payload_is_an_empty_map() {
        #[derive(Debug, Deserialize)]
        struct Ping {
            #[allow(dead_code)]
            stream: Option<String>,
        }
        assert!(decode_input::<Ping>(&[]).unwrap().stream.is_none());
        assert!(decode_input::<Ping>(&[0xc0]).unwrap().stream.is_none());
    }

    #[derive(Serialize)]
    struct Wrong<'a> {
        order_id: &'a str,
        qty: &'a str,
    }

    fn invalid(bytes: &[u8]) -> String {
        match decode_input::<AddItem>(bytes) {
            Err(Error::InvalidInput(m)) => m,
            other => panic!("expected invalid-input, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let m = invalid(
            &rmp_serde::to_vec_named(&Wrong {
                order_id: "o",
                qty: "two",
            })
            .unwrap(),
        );
        assert_eq!(m, "field `qty`: expected integer, got string");
        let m = invalid(
            &rmp_serde::to_vec(&Wrong {
                order_id: "o",
                qty: "two",
            })
            .unwrap(),
        );
        assert_eq!(m, "field `qty`: expected integer, got string");
        #[derive(Serialize)]
        struct Negative<'a> {
            order_id: &'a str,
            qty: i64,
            price: bool,
        }
        let m = invalid(
            &rmp_serde::to_vec_named(&Negative {
                order_id: "o",
                qty: -1,
                price: true,
            })
            .unwrap(),
        );
        assert_eq!(m, "field `qty`: invalid value: integer `-1`, expected u32");
        let m = invalid(
            &rmp_serde::to_vec_named(&Negative {
                order_id: "o",
                qty: 1,
                price: true,
            })
            .unwrap(),
        );
        assert_eq!(
            m,
            "field `price`: invalid type: boolean `true`, expected f64"
        );
        #[derive(Serialize)]
        struct Partial<'a> {
            order_id: &'a str,
        }
        let m = invalid(&rmp_serde::to_vec_named(&Partial { order_id: "o" }).unwrap());
        assert_eq!(m, "missing field `qty`");
        let m = invalid(&[0x01]);
        assert!(m.contains("invalid type: integer `1`"), "{m}");
        let m = invalid(&[0x81, 0xa3]);
        assert!(!m.is_empty());
    }
}
