//! Query-string parameters, with errors that name the parameter.

use crate::error::{Error, Result};

/// The raw `name=value` pairs of a query string, in order.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The last value given for `name`, if not empty (`name=` is as if it
    /// were not there; a value of spaces is a value, and each parameter's
    /// parser says whether it is one it takes).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of a repeatable, comma-separable parameter.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// An integer parameter; given empty (`page_size=`) it is not one.
    pub fn int(&self, name: &str) -> Result<Option<i64>> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| Error::validation(name, "must be an integer"))
            })
            .transpose()
    }
}
