//! Request bodies as JSON, read strictly and checked once for every route.
//!
//! [`parse`] reads the bytes into a [`Value`] and refuses, naming the
//! field at fault (`param`), any text that holds a control character:
//! NUL is never accepted anywhere (PostgreSQL cannot store it in text),
//! and neither is any other C0 or C1 control (U+0001–U+001F, U+007F–U+009F)
//! except TAB, LF and CR, which free text (agent instructions, a load's
//! special instructions, descriptions) may hold. Object keys are text too.
//! Fields that must be one line (names, numbers, URIs, hosts) refuse TAB,
//! LF and CR in their own validation (`validate::text`).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{Error, ErrorCode, Result};

/// The first character of `text` that the API refuses in any text field.
pub fn forbidden_char(text: &str) -> Option<char> {
    text.chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// The message for a refused character.
pub fn forbidden_char_message(c: char) -> String {
    format!(
        "must not contain control characters (U+{:04X} found)",
        c as u32
    )
}

/// The parameter a path from `serde_path_to_error` names (`.` is the body).
pub(crate) fn param_of(path: &serde_path_to_error::Path) -> String {
    let path = path.to_string();
    if path == "." { "body".to_owned() } else { path }
}

/// Reads a request body. Malformed JSON is 422 with `param` = `body`;
/// a refused character is 422 naming the field that holds it.
pub fn parse(bytes: &[u8]) -> Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, Checked>(&mut de)
        .map_err(|e| {
            let inner = e.inner();
            if inner.is_data() {
                // One of ours (a refused character): the message without
                // serde_json's position suffix, the field as `param`.
                let suffix = format!(" at line {} column {}", inner.line(), inner.column());
                let text = inner.to_string();
                let message = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
                Error::validation(param_of(e.path()), message)
            } else {
                malformed(inner)
            }
        })?
        .0;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn malformed(e: &serde_json::Error) -> Error {
    Error::new(ErrorCode::ValidationError, format!("Malformed JSON: {e}")).with_param("body")
}

/// A JSON value whose every string and key passed [`forbidden_char`].
struct Checked(Value);

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor).map(Checked)
    }
}

struct CheckedVisitor;

fn checked_text<E: de::Error>(text: &str) -> std::result::Result<(), E> {
    match forbidden_char(text) {
        Some(c) => Err(E::custom(forbidden_char_message(c))),
        None => Ok(()),
    }
}

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        // serde_json never hands over a non-finite number.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Value, E> {
        checked_text(v)?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Value, E> {
        checked_text(&v)?;
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Checked(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            checked_text::<A::Error>(&key).map_err(|_| {
                de::Error::custom(format!(
                    "keys must not contain control characters (key {:?})",
                    key.escape_debug().to_string()
                ))
            })?;
            let Checked(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> (String, String) {
        let e = parse(body.as_bytes()).expect_err(body);
        assert_eq!(e.code, ErrorCode::ValidationError, "{body}");
        (e.param.unwrap_or_default(), e.message)
    }

    #[test]
    fn control_characters_name_their_field() {
        assert_eq!(refused(r#"{"email":"a\u0000b"}"#).0, "email");
        assert_eq!(
            refused(r#"{"stops":[{}, {"location":{"city":"D\u0001"}}]}"#).0,
            "stops[1].location.city"
        );
        assert_eq!(refused(r#"{"a":["x","\u007f"]}"#).0, "a[1]");
        assert_eq!(refused(r#"{"a":"\u0085"}"#).0, "a");
        assert_eq!(refused("{\"a\":\"\u{9f}\"}").0, "a");
        assert_eq!(refused(r#"{"metadata":{"k\u0000":1}}"#).0, "metadata");
        assert_eq!(refused(r#""\u0000""#).0, "body");
        let (_, message) = refused(r#"{"email":"a\u0000b"}"#);
        assert_eq!(
            message,
            "must not contain control characters (U+0000 found)"
        );
    }

    #[test]
    fn free_text_keeps_tabs_and_line_breaks() {
        let v = parse(br#"{"instructions":"one\ttwo\r\nthree","n":[1,-2,2.5,null,true]}"#).unwrap();
        assert_eq!(v["instructions"], "one\ttwo\r\nthree");
        assert_eq!(v["n"], serde_json::json!([1, -2, 2.5, null, true]));
        // Unicode beyond the controls is text like any other.
        assert_eq!(
            parse("{\"a\":\"é\u{a0}漢\"}".as_bytes()).unwrap()["a"],
            "é\u{a0}漢"
        );
    }

    #[test]
    fn malformed_json_is_the_body_at_fault() {
        for body in ["{", "{} x", "", r#"{"a":"\ud800"}"#, "[1,]"] {
            let (param, message) = refused(body);
            assert_eq!(param, "body", "{body}");
            assert!(message.starts_with("Malformed JSON"), "{body}: {message}");
        }
    }
}
