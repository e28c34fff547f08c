//! Field checks shared by the use cases. Each failure names its `param`.

use serde_json::Value;
use switchyard_domain::PhoneAddress;

use crate::error::{Error, Result};

pub const METADATA_MAX_BYTES: usize = 16 * 1024;

/// A required string: trimmed, non-empty, at most `max` characters.
pub fn text(param: &str, value: &str, max: usize) -> Result<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Error::validation(param, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(Error::validation(
            param,
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(Error::validation(
            param,
            "must not contain control characters",
        ));
    }
    Ok(v.to_owned())
}

/// Optional free text (agent instructions, descriptions): like [`opt_text`]
/// but TAB, LF and CR are kept; every other control character is refused
/// (the body's own check, `json::parse`, has refused them already).
pub fn opt_free_text(param: &str, value: Option<&str>, max: usize) -> Result<Option<String>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() > max => Err(Error::validation(
            param,
            format!("must be at most {max} characters"),
        )),
        Some(v) => match crate::json::forbidden_char(v) {
            Some(c) => Err(Error::validation(
                param,
                crate::json::forbidden_char_message(c),
            )),
            None => Ok(Some(v.to_owned())),
        },
    }
}

/// An optional string; empty becomes `None`.
pub fn opt_text(param: &str, value: Option<&str>, max: usize) -> Result<Option<String>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => text(param, v, max).map(Some),
    }
}

pub fn phone(param: &str, value: &str) -> Result<PhoneAddress> {
    PhoneAddress::parse(value).map_err(|e| Error::validation(param, e.to_string()))
}

pub fn e164(param: &str, value: &str) -> Result<String> {
    match PhoneAddress::parse(value) {
        Ok(PhoneAddress::E164(number)) => Ok(number),
        _ => Err(Error::validation(
            param,
            "must be an E.164 number such as +14155552671",
        )),
    }
}

pub fn email(param: &str, value: &str) -> Result<String> {
    let v = value.trim();
    let ok = v.len() <= 254
        && v.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !v.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(v.to_lowercase())
    } else {
        Err(Error::validation(param, "must be an email address"))
    }
}

pub fn int_range(param: &str, value: i64, min: i64, max: i64) -> Result<i64> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Error::validation(
            param,
            format!("must be between {min} and {max}"),
        ))
    }
}

/// A JSON object no larger than 16 KiB when serialised.
pub fn metadata(param: &str, value: &Value) -> Result<()> {
    if !value.is_object() {
        return Err(Error::validation(param, "must be a JSON object"));
    }
    if value.to_string().len() > METADATA_MAX_BYTES {
        return Err(Error::validation(param, "must be at most 16 KiB"));
    }
    Ok(())
}

pub fn non_negative(param: &str, value: Option<f64>) -> Result<()> {
    match value {
        Some(v) if !(v >= 0.0 && v.is_finite()) => {
            Err(Error::validation(param, "must be a number >= 0"))
        }
        _ => Ok(()),
    }
}

pub fn in_range_f64(param: &str, value: Option<f64>, min: f64, max: f64) -> Result<()> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(Error::validation(
            param,
            format!("must be between {min} and {max}"),
        )),
        _ => Ok(()),
    }
}

/// Deserialises `value` into `T` strictly (see [`crate::json::from_value`]);
/// a failure names the parameter at fault (`stops[0].location`, or the
/// missing field's name).
pub fn deserialize<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T> {
    crate::json::from_value(value)
}
