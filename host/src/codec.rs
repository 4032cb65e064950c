//! JSON at the edges, MessagePack inside: slices take and return MessagePack with named fields,
//! people and HTTP clients speak JSON.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{json, Value};

use crate::store::SequencedEvent;

/// Encodes JSON as MessagePack (objects become maps with string keys).
pub fn json_to_msgpack(value: &Value) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("a JSON value always encodes as MessagePack")
}

/// Decodes MessagePack into JSON; `None` when the bytes are not MessagePack that JSON can hold.
pub fn msgpack_to_json(bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    let mut de = rmp_serde::Deserializer::new(bytes);
    let value: Value = serde::Deserialize::deserialize(&mut de).ok()?;
    // Trailing bytes mean this was not one MessagePack value.
    (de.into_inner().is_empty()).then_some(value)
}

/// An event for people: its data as JSON when it is MessagePack, else as base64; its position as
/// a decimal string.
pub fn event_to_json(event: &SequencedEvent) -> Value {
    let data = match msgpack_to_json(&event.event.data) {
        Some(value) => json!({ "json": value }),
        None => json!({ "base64": BASE64.encode(&event.event.data) }),
    };
    let metadata: serde_json::Map<String, Value> =
        event.event.metadata.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    json!({
        "position": event.position,
        "type": event.event.event_type,
        "tags": event.event.tags,
        "data": data,
        "metadata": metadata,
    })
}

/// Event data given by people: `{"json": …}` is encoded as MessagePack, `{"base64": "…"}` decoded.
pub fn data_from_json(data: &Value) -> Result<Vec<u8>, String> {
    match data {
        Value::Object(map) if map.len() == 1 && map.contains_key("json") => Ok(json_to_msgpack(&map["json"])),
        Value::Object(map) if map.len() == 1 && map.contains_key("base64") => match &map["base64"] {
            Value::String(text) => BASE64.decode(text).map_err(|e| format!("data.base64 is not base64: {e}")),
            _ => Err("data.base64 must be a string".into()),
        },
        Value::Null => Ok(Vec::new()),
        _ => Err(r#"data must be {"json": <any JSON>} or {"base64": "<bytes>"}"#.into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn round_trip_and_refusal() {
        let value = json!({"order_id": "o-1", "qty": 3, "tags": ["a"], "nested": {"ok": true, "n": null}});
        assert_eq!(super::msgpack_to_json(&super::json_to_msgpack(&value)), Some(value));
        assert_eq!(super::msgpack_to_json(b"\xc1"), None, "0xc1 is never valid MessagePack");
        assert_eq!(super::msgpack_to_json(&[0x01, 0x02]), None, "trailing bytes");
        assert_eq!(super::msgpack_to_json(&[]), None);
    }
}
