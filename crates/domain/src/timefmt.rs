//! Time as the API shows it (RFC 3339, UTC, `Z`) and as the store keeps it
//! (milliseconds since the Unix epoch, which sort and compare the same way on
//! SQLite and PostgreSQL).

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, UtcOffset};

pub fn now_ms() -> i64 {
    to_ms(OffsetDateTime::now_utc())
}

pub fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `2024-01-15T09:30:00Z`, or with milliseconds when they are not zero.
pub fn format_ms(ms: i64) -> String {
    from_ms(ms)
        .to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// An RFC 3339 datetime (any offset), normalised to milliseconds.
pub fn parse_datetime(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339).ok().map(to_ms)
}

/// `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &format).ok()
}

/// Milliseconds at the start of a UTC day.
pub fn day_start_ms(d: Date) -> i64 {
    to_ms(d.midnight().assume_utc())
}

/// serde helpers for `i64` milliseconds fields rendered as RFC 3339.
pub mod rfc3339_ms {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_ms(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        super::parse_datetime(&text)
            .ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 datetime"))
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => s.serialize_str(&super::super::format_ms(*ms)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
            let text = Option::<std::borrow::Cow<'de, str>>::deserialize(d)?;
            match text {
                None => Ok(None),
                Some(t) => super::super::parse_datetime(&t)
                    .map(Some)
                    .ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 datetime")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_z() {
        assert_eq!(format_ms(1_705_311_000_000), "2024-01-15T09:30:00Z");
        assert_eq!(format_ms(1_705_311_000_123), "2024-01-15T09:30:00.123Z");
        assert_eq!(
            parse_datetime("2024-01-15T10:30:00+01:00"),
            Some(1_705_311_000_000)
        );
    }
}
