//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256>` of
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, keyed with the base64-decoded
//! part of the secret after `whsec_`. `webhook-signature` holds one entry
//! per active secret, space-separated, so a receiver that knows either the
//! old or the new secret verifies during a rotation.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use switchyard_domain::webhook::SECRET_PREFIX;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a signing secret starts with whsec_")]
    Prefix,
    #[error("the part of a signing secret after whsec_ is not base64")]
    Base64,
    #[error("a signing secret's key is empty")]
    Empty,
}

/// The HMAC key inside a `whsec_…` secret.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, SecretError> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or(SecretError::Prefix)?;
    // Accept unpadded base64 too, as the reference verifiers do.
    let key = data_encoding::BASE64
        .decode(encoded.as_bytes())
        .or_else(|_| data_encoding::BASE64_NOPAD.decode(encoded.as_bytes()))
        .map_err(|_| SecretError::Base64)?;
    if key.is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(key)
}

/// One signature entry, `v1,<base64>`.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        data_encoding::BASE64.encode(&mac.finalize().into_bytes())
    )
}

/// The `webhook-signature` value: one entry per secret, in the order given.
pub fn signature_header(
    secrets: &[String],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SecretError> {
    let entries = secrets
        .iter()
        .map(|s| secret_key(s).map(|key| sign(&key, msg_id, timestamp, body)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(entries.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference vector (the same one the official
    /// libraries test against).
    #[test]
    fn signs_the_reference_vector() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn one_entry_per_secret() {
        let secrets = vec![
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            format!(
                "whsec_{}",
                data_encoding::BASE64.encode(b"another key of some length")
            ),
        ];
        let header = signature_header(&secrets, "msg_1", 1, b"{}").unwrap();
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|e| e.starts_with("v1,")));
        assert_ne!(entries[0], entries[1]);
        assert_eq!(
            entries[0],
            sign(&secret_key(&secrets[0]).unwrap(), "msg_1", 1, b"{}")
        );
    }

    #[test]
    fn malformed_secrets_are_errors() {
        assert_eq!(
            secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::Prefix)
        );
        assert_eq!(secret_key("whsec_!!!"), Err(SecretError::Base64));
        assert_eq!(secret_key("whsec_"), Err(SecretError::Empty));
        // Unpadded base64 is accepted.
        assert_eq!(secret_key("whsec_YWJj").unwrap(), b"abc");
        assert_eq!(secret_key("whsec_YWI").unwrap(), b"ab");
    }
}
