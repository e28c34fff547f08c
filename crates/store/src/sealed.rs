//! Secrets at rest: trunk passwords and webhook signing secrets are stored
//! sealed (AES-256-GCM), so a copy of the database (a backup, a dump, a
//! PostgreSQL on another host) does not give them away.
//!
//! A sealed value is text: `sy-sealed:v1:<key id>:<base64url(nonce ‖
//! ciphertext ‖ tag)>`. The key id (8 hex digits derived from the key)
//! says which key sealed it, so a key can be rotated: values are opened
//! with the current key or any previous one, and [`crate::Store::reseal_secrets`]
//! seals what the current key did not (older keys, or plain text written
//! before sealing existed) under the current one.
//!
//! The additional data binds each value to its row (`sip_trunks:<id>`), so
//! a ciphertext copied into another row does not open there. It names the
//! row, not the column: webhook rotation moves the signing secret to the
//! previous-secret column of the same row in SQL.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use data_encoding::BASE64URL_NOPAD;
use sha2::{Digest, Sha256};

const PREFIX: &str = "sy-sealed:v1:";

/// The key that seals, and the ones that may still open.
pub struct SecretKeys {
    current: Key,
    previous: Vec<Key>,
}

struct Key {
    id: String,
    aead: RandomizedNonceKey,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeys")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("no secrets key is configured, so secrets cannot be stored or read")]
    NoKey,
    #[error(
        "a stored secret was sealed with key {0}, which is not configured (secrets_key / secrets_key_previous)"
    )]
    UnknownKey(String),
    #[error(
        "a stored secret does not open: altered, moved to another row, or sealed with another key of the same id"
    )]
    Damaged,
}

impl Key {
    fn new(material: &[u8]) -> Self {
        // The configured text is at least 32 characters of secret; one
        // SHA-256 turns any such text into the 32 bytes AES-256 takes.
        let bytes: [u8; 32] = Sha256::digest(material).into();
        let id_hash = Sha256::new()
            .chain_update(b"switchyard secrets key id\0")
            .chain_update(bytes)
            .finalize();
        Self {
            id: hex::encode(&id_hash[..4]),
            aead: RandomizedNonceKey::new(&AES_256_GCM, &bytes)
                .expect("32 bytes is an AES-256 key"),
        }
    }
}

impl SecretKeys {
    /// `current` seals; `previous` keys only open (during a rotation).
    pub fn new(current: &[u8], previous: &[&[u8]]) -> Self {
        Self {
            current: Key::new(current),
            previous: previous.iter().map(|k| Key::new(k)).collect(),
        }
    }

    /// The id sealed values carry for the current key.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plain` for the row named by `row` (`table:id`).
    pub fn seal(&self, row: &str, plain: &str) -> String {
        let mut buf = plain.as_bytes().to_vec();
        let nonce = self
            .current
            .aead
            .seal_in_place_append_tag(Aad::from(row.as_bytes()), &mut buf)
            .expect("AES-GCM sealing does not fail for short texts");
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&buf);
        format!(
            "{PREFIX}{}:{}",
            self.current.id,
            BASE64URL_NOPAD.encode(&out)
        )
    }

    /// Opens a stored value. Text without the sealed prefix is plain text
    /// stored before values were sealed, and is returned as it is.
    pub fn open(&self, row: &str, stored: &str) -> Result<String, SealError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, body) = rest.split_once(':').ok_or(SealError::Damaged)?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let mut bytes = BASE64URL_NOPAD
            .decode(body.as_bytes())
            .map_err(|_| SealError::Damaged)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Damaged);
        }
        let mut sealed = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SealError::Damaged)?;
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(row.as_bytes()), &mut sealed)
            .map_err(|_| SealError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Damaged)
    }

    /// Whether `stored` is already sealed with the current key.
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(id, _)| id == self.current.id)
    }
}

impl crate::Store {
    /// Seals a secret for the row `row` (`table:id`) with the current key.
    pub(crate) fn seal_secret(&self, row: &str, plain: &str) -> crate::Result<String> {
        let keys = self.secrets.as_ref().ok_or(SealError::NoKey)?;
        Ok(keys.seal(row, plain))
    }

    pub(crate) fn seal_opt_secret(
        &self,
        row: &str,
        plain: Option<&str>,
    ) -> crate::Result<Option<String>> {
        plain.map(|p| self.seal_secret(row, p)).transpose()
    }

    /// Opens a stored secret (plain text from before sealing as it is).
    pub(crate) fn open_secret(&self, row: &str, stored: &str) -> crate::Result<String> {
        match &self.secrets {
            Some(keys) => Ok(keys.open(row, stored)?),
            None if !stored.starts_with(PREFIX) => Ok(stored.to_owned()),
            None => Err(SealError::NoKey.into()),
        }
    }

    pub(crate) fn open_opt_secret(
        &self,
        row: &str,
        stored: Option<&str>,
    ) -> crate::Result<Option<String>> {
        stored.map(|s| self.open_secret(row, s)).transpose()
    }

    /// Whether `stored` needs sealing again (plain text, or an older key).
    pub(crate) fn needs_reseal(&self, stored: &str) -> crate::Result<bool> {
        let keys = self.secrets.as_ref().ok_or(SealError::NoKey)?;
        Ok(!keys.is_current(stored))
    }
}

/// The columns that hold sealed secrets, with the table's row naming.
const SEALED_COLUMNS: &[(&str, &str)] = &[
    ("sip_trunks", "password"),
    ("webhook_endpoints", "signing_secret"),
    ("webhook_endpoints", "previous_signing_secret"),
];

impl crate::Store {
    /// Seals again, with the current key, every stored secret that is plain
    /// text (written before sealing) or sealed with a previous key. Run at
    /// start; after it, previous keys may be dropped from the
    /// configuration. Returns how many values it rewrote. Fails, naming the
    /// key, when a value is sealed with a key that is not configured.
    pub async fn reseal_secrets(&self) -> crate::Result<usize> {
        let mut rewritten = 0;
        for (table, column) in SEALED_COLUMNS {
            let select = format!("SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL");
            let rows: Vec<(String, String)> = crate::on_pool!(self, |pool| {
                sqlx::query_as(sqlx::AssertSqlSafe(select.as_str()))
                    .fetch_all(pool)
                    .await?
            });
            // Compare-and-set on the old value: a concurrent rotation or
            // another process's reseal wins, and nothing is overwritten.
            let update =
                format!("UPDATE {table} SET {column} = $1 WHERE id = $2 AND {column} = $3");
            for (id, stored) in rows {
                if !self.needs_reseal(&stored)? {
                    continue;
                }
                let row = format!("{table}:{id}");
                let plain = self.open_secret(&row, &stored)?;
                let sealed = self.seal_secret(&row, &plain)?;
                let n = crate::on_writer!(self, |pool| {
                    sqlx::query(sqlx::AssertSqlSafe(update.as_str()))
                        .bind(&sealed)
                        .bind(&id)
                        .bind(&stored)
                        .execute(pool)
                        .await?
                        .rows_affected()
                });
                rewritten += n as usize;
            }
        }
        Ok(rewritten)
    }
}

/// The additional data of a trunk's password.
pub(crate) fn trunk_row(id: &str) -> String {
    format!("{}:{id}", SEALED_COLUMNS[0].0)
}

/// The additional data of a webhook endpoint's secrets.
pub(crate) fn endpoint_row(id: &str) -> String {
    format!("{}:{id}", SEALED_COLUMNS[1].0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"key-a-key-a-key-a-key-a-key-a-key-a";
    const B: &[u8] = b"key-b-key-b-key-b-key-b-key-b-key-b";

    #[test]
    fn a_sealed_value_opens_and_hides_the_text() {
        let keys = SecretKeys::new(A, &[]);
        let sealed = keys.seal("sip_trunks:1", "hunter2");
        assert!(sealed.starts_with("sy-sealed:v1:"), "{sealed}");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(keys.open("sip_trunks:1", &sealed).unwrap(), "hunter2");
        // A fresh nonce each time: the same text seals differently.
        assert_ne!(sealed, keys.seal("sip_trunks:1", "hunter2"));
        assert!(keys.is_current(&sealed));
    }

    #[test]
    fn another_row_or_an_altered_value_does_not_open() {
        let keys = SecretKeys::new(A, &[]);
        let sealed = keys.seal("sip_trunks:1", "hunter2");
        assert_eq!(keys.open("sip_trunks:2", &sealed), Err(SealError::Damaged));
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(keys.open("sip_trunks:1", &altered), Err(SealError::Damaged));
        assert_eq!(
            keys.open("sip_trunks:1", "sy-sealed:v1:zz"),
            Err(SealError::Damaged)
        );
    }

    #[test]
    fn a_previous_key_opens_during_a_rotation_and_an_unknown_one_is_named() {
        let old = SecretKeys::new(A, &[]);
        let sealed = old.seal("webhook_endpoints:9", "whsec_x");
        let rotated = SecretKeys::new(B, &[A]);
        assert_eq!(
            rotated.open("webhook_endpoints:9", &sealed).unwrap(),
            "whsec_x"
        );
        assert!(!rotated.is_current(&sealed));
        let without = SecretKeys::new(B, &[]);
        assert_eq!(
            without.open("webhook_endpoints:9", &sealed),
            Err(SealError::UnknownKey(old.current_id().to_owned()))
        );
    }

    #[test]
    fn plain_text_from_before_sealing_is_read_as_is() {
        let keys = SecretKeys::new(A, &[]);
        assert_eq!(keys.open("sip_trunks:1", "secret").unwrap(), "secret");
        assert!(!keys.is_current("secret"));
    }
}
