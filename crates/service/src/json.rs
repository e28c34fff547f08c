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

use std::cell::RefCell;
use std::fmt;

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Unexpected, Visitor,
};
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

/// Reads a request body. Malformed JSON is 422 with `param` = `body`; a
/// refused character, or a key given twice in one object (serde_json
/// would keep the last), is 422 naming the field.
pub fn parse(bytes: &[u8]) -> Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let duplicate = RefCell::new(None);
    let mut track = serde_path_to_error::Track::new();
    let read = Checked(&duplicate)
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track));
    let value = match read {
        Ok(value) => value,
        Err(e) if e.is_data() => {
            // One of ours: the message without serde_json's position
            // suffix, the field as `param`.
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let text = e.to_string();
            let message = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
            let container = param_of(&track.path());
            let param = match duplicate.take() {
                Some(key) if container == "body" => key,
                Some(key) => format!("{container}.{key}"),
                None => container,
            };
            return Err(Error::validation(param, message));
        }
        Err(e) => return Err(malformed(&e)),
    };
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn malformed(e: &serde_json::Error) -> Error {
    Error::new(ErrorCode::ValidationError, format!("Malformed JSON: {e}")).with_param("body")
}

/// Reads any JSON value whose every string and key passes
/// [`forbidden_char`] and whose objects name each key once (the key given
/// twice is left in the cell, so that `param` can name it).
#[derive(Clone, Copy)]
struct Checked<'c>(&'c RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for Checked<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn checked_text<E: de::Error>(text: &str) -> std::result::Result<(), E> {
    match forbidden_char(text) {
        Some(c) => Err(E::custom(forbidden_char_message(c))),
        None => Ok(()),
    }
}

impl<'de> Visitor<'de> for Checked<'_> {
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
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if forbidden_char(&key).is_some() {
                return Err(de::Error::custom(format!(
                    "keys must not contain control characters (key \"{}\")",
                    key.escape_debug()
                )));
            }
            if object.contains_key(&key) {
                let message = format!("duplicate key \"{key}\"");
                *self.0.borrow_mut() = Some(key);
                return Err(de::Error::custom(message));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Deserialises `T` from a parsed body, strictly: a struct is read from an
/// object only (serde would otherwise take a JSON array's items as its
/// fields, by position). A failure names the parameter at fault
/// (`stops[0].location`, or the missing field's name).
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T> {
    serde_path_to_error::deserialize::<_, T>(Strict(value)).map_err(|e| {
        let message = e.inner().to_string();
        let base = param_of(e.path());
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        let param = match (base.as_str(), missing) {
            ("body", Some(field)) => field.to_owned(),
            (base, Some(field)) => format!("{base}.{field}"),
            (base, None) => base.to_owned(),
        };
        let message = if missing.is_some() {
            "field required".to_owned()
        } else {
            message
        };
        Error::validation(param, message)
    })
}

/// A deserializer over a parsed [`Value`] like serde_json's own, except
/// that a struct must be an object.
struct Strict<'a>(&'a Value);

impl<'de> de::Deserializer<'de> for Strict<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    v.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    v.visit_i64(i)
                } else {
                    v.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => v.visit_borrowed_str(s),
            Value::Array(items) => {
                let mut seq = StrictSeq(items.iter());
                let out = v.visit_seq(&mut seq)?;
                match seq.0.len() {
                    0 => Ok(out),
                    _ => Err(de::Error::invalid_length(
                        items.len(),
                        &"fewer elements in array",
                    )),
                }
            }
            Value::Object(map) => v.visit_map(StrictMap {
                entries: map.iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(
        self,
        v: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(v),
            Value::Array(_) => Err(de::Error::invalid_type(Unexpected::Seq, &v)),
            _ => self.deserialize_any(v),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        match self.0 {
            Value::String(s) => v.visit_enum(BorrowedStrDeserializer::new(s)),
            Value::Object(map) if map.len() == 1 => {
                v.visit_enum(MapAccessDeserializer::new(StrictMap {
                    entries: map.iter(),
                    value: None,
                }))
            }
            _ => self.deserialize_any(v),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct StrictSeq<'a>(std::slice::Iter<'a, Value>);

impl<'de> SeqAccess<'de> for StrictSeq<'de> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> std::result::Result<Option<T::Value>, Self::Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(Strict(v)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct StrictMap<'a> {
    entries: serde_json::map::Iter<'a>,
    value: Option<&'a Value>,
}

impl<'de> MapAccess<'de> for StrictMap<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> std::result::Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(BorrowedStrDeserializer::new(key))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(Strict(value)),
            None => Err(de::Error::custom("a value was asked for before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
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
    fn a_key_given_twice_is_named() {
        assert_eq!(
            refused(r#"{"to_number":"+1","to_number":"+2"}"#).0,
            "to_number"
        );
        assert_eq!(
            refused(r#"{"metadata":{"a":1,"b":{"c":1,"c":2}}}"#).0,
            "metadata.b.c"
        );
        assert_eq!(refused(r#"{"stops":[{},{"x":1,"x":1}]}"#).0, "stops[1].x");
        let (_, message) = refused(r#"{"a":1,"a":1}"#);
        assert_eq!(message, "duplicate key \"a\"");
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Inner {
        a: Option<String>,
        b: Option<i64>,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Outer {
        name: String,
        inner: Option<Inner>,
        list: Option<Vec<Inner>>,
        tags: Option<std::collections::BTreeMap<String, String>>,
        #[serde(default)]
        any: Option<Value>,
    }

    fn strict(body: &str) -> Result<Outer> {
        from_value::<Outer>(&parse(body.as_bytes()).unwrap())
    }

    #[test]
    fn structs_are_objects_only() {
        for (body, param) in [
            (r#"["n", null]"#, "body"),
            (r#"{"name":"n","inner":["x", 1]}"#, "inner"),
            (r#"{"name":"n","list":[{}, ["x"]]}"#, "list[1]"),
        ] {
            let e = strict(body).expect_err(body);
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
            assert!(
                e.message.contains("invalid type: sequence"),
                "{body}: {}",
                e.message
            );
        }
        let ok = strict(r#"{"name":"n","inner":{"a":"x","b":-3},"list":[{}],"tags":{"k":"v"},"any":[1,{"z":[]}]}"#).unwrap();
        assert_eq!(
            ok.inner,
            Some(Inner {
                a: Some("x".into()),
                b: Some(-3)
            })
        );
        assert_eq!(ok.any, Some(serde_json::json!([1, {"z": []}])));
        // The errors serde_json's own deserializer gives, with the field named.
        let e = strict(r#"{"name":5}"#).unwrap_err();
        assert_eq!(
            (e.param.as_deref(), e.message.as_str()),
            (Some("name"), "invalid type: integer `5`, expected a string")
        );
        let e = strict(r#"{"inner":{}}"#).unwrap_err();
        assert_eq!(
            (e.param.as_deref(), e.message.as_str()),
            (Some("name"), "field required")
        );
        let e = strict(r#"{"name":"n","inner":{"b":1.5}}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("inner.b"));
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
