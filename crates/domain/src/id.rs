//! Prefixed identifiers: `{prefix}_{uuid}`, as Envoy's API shows them.
//!
//! Responses always carry the prefixed form. Input accepts the prefixed form
//! and the bare UUID; a prefix of another resource is `invalid_id_format`.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use uuid::Uuid;

/// A kind of resource and the prefix of its IDs.
pub trait IdKind: Copy + Clone + Send + Sync + 'static {
    const PREFIX: &'static str;
    /// The resource's name in messages ("call", "load", ...).
    const NAME: &'static str;
}

macro_rules! id_kinds {
    ($($kind:ident => $prefix:literal, $name:literal;)*) => {
        pub mod kind {
            $(
                #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
                pub struct $kind;
                impl super::IdKind for $kind {
                    const PREFIX: &'static str = $prefix;
                    const NAME: &'static str = $name;
                }
            )*
        }
        /// Every prefix Switchyard issues, to tell "wrong prefix" from "garbage".
        pub const KNOWN_PREFIXES: &[&str] = &[$($prefix),*];
    };
}

id_kinds! {
    Organization => "org", "organization";
    User => "usr", "user";
    ApiKey => "key", "API key";
    Load => "load", "load";
    Call => "call", "call";
    SipTrunk => "trk", "SIP trunk";
    PhoneNumber => "pn", "phone number";
    Participant => "prt", "participant";
    Event => "evt", "event";
    Endpoint => "ep", "webhook endpoint";
    Message => "msg", "webhook message";
    Attempt => "atmp", "delivery attempt";
    Offer => "ofr", "offer";
    Carrier => "car", "carrier";
    Outreach => "otr", "outreach";
    Contact => "con", "contact";
    ElpTest => "elp", "ELP test";
    Escalation => "esc", "escalation";
}

pub type OrganizationId = Id<kind::Organization>;
pub type UserId = Id<kind::User>;
pub type ApiKeyId = Id<kind::ApiKey>;
pub type LoadId = Id<kind::Load>;
pub type CallId = Id<kind::Call>;
pub type SipTrunkId = Id<kind::SipTrunk>;
pub type PhoneNumberId = Id<kind::PhoneNumber>;
pub type EventId = Id<kind::Event>;
pub type EndpointId = Id<kind::Endpoint>;
pub type MessageId = Id<kind::Message>;
pub type AttemptId = Id<kind::Attempt>;

/// A typed, prefixed identifier.
pub struct Id<K: IdKind> {
    uuid: Uuid,
    kind: PhantomData<K>,
}

impl<K: IdKind> Id<K> {
    /// A fresh ID. UUIDv7 keeps new rows close together in indexes.
    pub fn new() -> Self {
        Self::from_uuid(Uuid::now_v7())
    }

    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self {
            uuid,
            kind: PhantomData,
        }
    }

    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// Parses the prefixed form or a bare hyphenated UUID.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let uuid_part = match input.rfind('_') {
            Some(at) => {
                let prefix = &input[..at];
                if prefix != K::PREFIX {
                    return Err(IdError::WrongPrefix {
                        expected: K::PREFIX,
                        found: prefix.chars().take(16).collect(),
                    });
                }
                &input[at + 1..]
            }
            None => input,
        };
        // Envoy's pattern is the hyphenated form; other UUID spellings are not IDs.
        if uuid_part.len() != 36 {
            return Err(IdError::Malformed {
                expected: K::PREFIX,
            });
        }
        Uuid::parse_str(uuid_part)
            .map(Self::from_uuid)
            .map_err(|_| IdError::Malformed {
                expected: K::PREFIX,
            })
    }
}

impl<K: IdKind> Default for Id<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: IdKind> Clone for Id<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K: IdKind> Copy for Id<K> {}
impl<K: IdKind> PartialEq for Id<K> {
    fn eq(&self, other: &Self) -> bool {
        self.uuid == other.uuid
    }
}
impl<K: IdKind> Eq for Id<K> {}
impl<K: IdKind> std::hash::Hash for Id<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.uuid.hash(state)
    }
}
impl<K: IdKind> PartialOrd for Id<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: IdKind> Ord for Id<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.uuid.cmp(&other.uuid)
    }
}

impl<K: IdKind> fmt::Display for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", K::PREFIX, self.uuid.hyphenated())
    }
}

impl<K: IdKind> fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<K: IdKind> FromStr for Id<K> {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<K: IdKind> serde::Serialize for Id<K> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de, K: IdKind> serde::Deserialize<'de> for Id<K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected an ID starting with '{expected}_', got prefix '{found}'")]
    WrongPrefix {
        expected: &'static str,
        found: String,
    },
    #[error("not a valid ID: expected '{expected}_' followed by a UUID, or a bare UUID")]
    Malformed { expected: &'static str },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_prefixed_and_bare() {
        let id = CallId::new();
        let text = id.to_string();
        assert!(text.starts_with("call_"));
        assert_eq!(CallId::parse(&text).unwrap(), id);
        assert_eq!(CallId::parse(&text["call_".len()..]).unwrap(), id);
    }

    #[test]
    fn wrong_prefix_is_not_malformed() {
        let id = LoadId::new().to_string();
        assert!(matches!(
            CallId::parse(&id),
            Err(IdError::WrongPrefix { .. })
        ));
        let pn = PhoneNumberId::new().to_string();
        assert!(matches!(
            CallId::parse(&pn),
            Err(IdError::WrongPrefix { .. })
        ));
        assert!(matches!(
            CallId::parse("call_nope"),
            Err(IdError::Malformed { .. })
        ));
        assert!(matches!(
            CallId::parse("nope"),
            Err(IdError::Malformed { .. })
        ));
        assert!(matches!(
            CallId::parse("call_550e8400e29b41d4a716446655440000"),
            Err(IdError::Malformed { .. })
        ));
    }

    #[test]
    fn output_matches_envoy_pattern() {
        let id = CallId::parse("550E8400-E29B-41D4-A716-446655440000").unwrap();
        assert_eq!(id.to_string(), "call_550e8400-e29b-41d4-a716-446655440000");
    }
}
