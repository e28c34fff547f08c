//! Recordings people can play: the time-limited URL of `GET
//! /calls/{id}/recording`, the media route that URL points at (signed, no
//! API key), and deletion. Where the files live is the
//! [`RecordingStorage`] port (the recordings crate implements it over
//! object storage); encoding them is the recordings crate's worker.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use switchyard_domain::id::{CallId, OrganizationId};
use switchyard_domain::{
    RECORDING_CONTENT_TYPE as CONTENT_TYPE, RecordingChannel, RecordingStatus, Role, timefmt,
};
use switchyard_store::{StoreError, StoredRecording};
use utoipa::ToSchema;

use crate::calls::RecordingResponse;
use crate::error::{Error, ErrorCode, Result};
use crate::{Principal, Services};

/// Facts about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub e_tag: Option<String>,
}

/// A stored object's bytes, or a range of them.
pub struct ObjectBody {
    pub meta: ObjectMeta,
    /// The bytes the stream carries, `[start, end)`.
    pub range: Range<u64>,
    pub stream: BoxStream<'static, std::io::Result<Bytes>>,
}

/// Where recordings are kept. Keys are relative (`recordings/<org>/<call>/stereo.m4a`).
#[async_trait]
pub trait RecordingStorage: Send + Sync {
    /// Stores `bytes` at `key` atomically: readers see the whole object or none.
    async fn put(&self, key: &str, bytes: Bytes) -> anyhow::Result<()>;
    /// The object, or `range` of it; `None` if there is no such object.
    async fn get(&self, key: &str, range: Option<Range<u64>>)
    -> anyhow::Result<Option<ObjectBody>>;
    async fn head(&self, key: &str) -> anyhow::Result<Option<ObjectMeta>>;
    /// Removes the object; removing a missing one is not an error.
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
    /// A URL the storage serves itself (an S3 presigned GET), if it can.
    async fn presigned_get(&self, key: &str, ttl: Duration) -> anyhow::Result<Option<String>>;
}

/// Which URL `GET /calls/{id}/recording` hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UrlMode {
    /// A Switchyard URL signed with the server's key.
    Signed,
    /// The storage's own presigned URL (S3), where it has one.
    Presigned,
}

/// Recording settings and the storage they live in.
pub struct Recordings {
    pub storage: Arc<dyn RecordingStorage>,
    /// HMAC-SHA256 key of the playback URLs (the same on every server).
    pub url_key: Vec<u8>,
    /// Where clients reach this server (`https://calls.example.com`);
    /// `None`: the Host a request came to.
    pub public_url: Option<String>,
    pub url_ttl: Duration,
    pub url_mode: UrlMode,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The path of the media route, under `/api/v1`.
pub const MEDIA_PATH: &str = "/api/v1/recordings";

/// The object key of one of a recording's files.
pub fn object_key(prefix: &str, channel: RecordingChannel) -> String {
    format!("{prefix}{}", channel.object_name())
}

/// Where a call's recording files go.
pub fn object_prefix(org: OrganizationId, call: CallId) -> String {
    format!("recordings/{}/{}/", org.uuid(), call.uuid())
}

impl Recordings {
    fn mac(&self, call: CallId, channel: RecordingChannel, expires: i64) -> HmacSha256 {
        // HMAC takes keys of any length; new_from_slice only fails for
        // algorithms with fixed-size keys.
        let mut mac = match HmacSha256::new_from_slice(&self.url_key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts any key length"),
        };
        mac.update(format!("{}.{}.{expires}", call.uuid(), channel.as_str()).as_bytes());
        mac
    }

    /// The signed URL of `channel` of `call`'s recording, valid until
    /// `expires` (Unix seconds).
    pub fn signed_url(
        &self,
        base: &str,
        call: CallId,
        channel: RecordingChannel,
        expires: i64,
    ) -> String {
        let sig = data_encoding::BASE64URL_NOPAD
            .encode(&self.mac(call, channel, expires).finalize().into_bytes());
        format!(
            "{}{MEDIA_PATH}/{call}?channel={}&expires={expires}&signature={sig}",
            base.trim_end_matches('/'),
            channel.as_str()
        )
    }

    /// Whether `signature` is ours for these values (compared in constant time).
    pub fn verify(
        &self,
        call: CallId,
        channel: RecordingChannel,
        expires: i64,
        signature: &str,
    ) -> bool {
        let Ok(given) = data_encoding::BASE64URL_NOPAD.decode(signature.as_bytes()) else {
            return false;
        };
        self.mac(call, channel, expires)
            .verify_slice(&given)
            .is_ok()
    }
}

/// `GET /recordings/{call_id}`'s query: the signed part of the URL.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MediaQuery {
    /// `stereo` (default), `customer` or `agent`.
    #[param(pattern = r"^((stereo|customer|agent))?$")]
    pub channel: Option<String>,
    /// Unix seconds after which the URL no longer works.
    #[param(pattern = r"^([0-9]{1,18})?$")]
    pub expires: Option<String>,
    /// The URL's HMAC-SHA256, base64url.
    #[param(pattern = r"^([A-Za-z0-9_-]{1,100})?$")]
    pub signature: Option<String>,
}

/// Conditional and range headers of a media request.
#[derive(Debug, Clone, Default)]
pub struct MediaConditions {
    pub range: Option<String>,
    pub if_none_match: Option<String>,
    pub if_range: Option<String>,
}

/// What the media route answers.
pub struct MediaResponse {
    /// 200, 206 or 304.
    pub status: u16,
    pub content_type: &'static str,
    pub total_size: u64,
    pub range: Range<u64>,
    pub e_tag: Option<String>,
    pub file_name: String,
    /// Absent for 304.
    pub body: Option<BoxStream<'static, std::io::Result<Bytes>>>,
}

/// The answer to `DELETE /calls/{id}/recording`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeleteRecordingResponse {
    pub success: bool,
    #[schema(value_type = String)]
    pub call_id: switchyard_domain::id::CallId,
    pub recording_status: RecordingStatus,
}

/// `Retry-After` (seconds) for a recording still PROCESSING: the worker
/// encodes about 500 s of call per second of CPU, so 2 s plus one per 100 s
/// of call, at most 60 (a busy worker makes the client ask once more).
pub fn processing_retry_after(duration_seconds: Option<f64>) -> u64 {
    let call = duration_seconds.unwrap_or(0.0).max(0.0);
    (2.0 + (call / 100.0).ceil()).min(60.0) as u64
}

fn parse_channel(value: Option<&str>) -> Result<RecordingChannel> {
    match value {
        None => Ok(RecordingChannel::Stereo),
        Some(v) => RecordingChannel::parse(v).ok_or_else(|| {
            Error::validation(
                "channel",
                format!(
                    "unknown channel {v:?}; allowed: {}",
                    RecordingChannel::allowed()
                ),
            )
        }),
    }
}

fn channel_size(rec: &StoredRecording, channel: RecordingChannel) -> Option<i64> {
    match channel {
        RecordingChannel::Stereo => rec.stereo_bytes,
        RecordingChannel::Customer => rec.customer_bytes,
        RecordingChannel::Agent => rec.agent_bytes,
    }
}

fn link_refused(message: &str) -> Error {
    Error::forbidden(message)
}

/// The byte range to serve, from `Range` (and `If-Range`), for an object
/// of `size` bytes: `Ok(None)` for the whole object. A malformed header or
/// several ranges are ignored (RFC 9110 §14.2 lets a server send 200); an
/// unsatisfiable one is an error the API answers with 416.
fn wanted_range(
    cond: &MediaConditions,
    size: u64,
    e_tag: Option<&str>,
) -> Result<Option<Range<u64>>> {
    let Some(header) = cond.range.as_deref() else {
        return Ok(None);
    };
    if let Some(if_range) = cond.if_range.as_deref()
        && Some(if_range.trim()) != e_tag
    {
        return Ok(None);
    }
    let Ok(parsed) = http_range_header::parse_range_header(header) else {
        return Ok(None);
    };
    if parsed.len() != 1 {
        return Ok(None);
    }
    match parsed.validate(size) {
        Ok(ranges) => Ok(ranges
            .first()
            .map(|r| *r.start()..r.end().saturating_add(1))),
        Err(_) => Err(Error::new(
            ErrorCode::RangeNotSatisfiable,
            format!("the range {header:?} is outside the recording ({size} bytes)"),
        )
        .with_range_size(size)),
    }
}

/// A Host header fit to build a URL from: `name` or `name:port`, nothing else.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

fn etag_matches(if_none_match: &str, e_tag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .any(|t| t.trim().trim_start_matches("W/") == e_tag.trim_start_matches("W/"))
}

impl Services {
    /// `GET /calls/{id}/recording`: where to play it, for how long.
    pub async fn call_recording(
        &self,
        who: &Principal,
        id: CallId,
        channel: Option<&str>,
        request_host: Option<&str>,
    ) -> Result<RecordingResponse> {
        let channel = parse_channel(channel)?;
        let call = self.get_call(who, id).await?;
        let unavailable = |status: &str, why: Option<&str>| {
            Error::new(
                ErrorCode::NotFound,
                match why {
                    Some(why) => format!(
                        "No recording is available for this call (recording_status: {status}: {why})."
                    ),
                    None => format!(
                        "No recording is available for this call (recording_status: {status})."
                    ),
                },
            )
        };
        match call.recording_status {
            Some(RecordingStatus::Available) => {}
            Some(RecordingStatus::Failed) => {
                let why = self
                    .store
                    .get_recording(id)
                    .await
                    .ok()
                    .and_then(|r| r.failure_reason);
                return Err(unavailable("FAILED", why.as_deref()));
            }
            Some(RecordingStatus::Processing) => {
                let mut e = unavailable("PROCESSING", None);
                e.retry_after = Some(processing_retry_after(call.duration_seconds));
                return Err(e);
            }
            Some(other) => return Err(unavailable(other.as_str(), None)),
            None => return Err(unavailable("null", None)),
        }
        let rec = self
            .store
            .get_recording(id)
            .await
            .map_err(|e| Error::from_store(e, "Recording"))?;
        let prefix = rec.object_prefix.as_deref().ok_or_else(|| {
            Error::internal(anyhow::anyhow!("AVAILABLE recording without objects"))
        })?;
        let r = &self.recordings;
        let now = timefmt::now_ms();
        let expires = now / 1000 + r.url_ttl.as_secs() as i64;
        let presigned = match r.url_mode {
            UrlMode::Presigned => r
                .storage
                .presigned_get(&object_key(prefix, channel), r.url_ttl)
                .await
                .map_err(Error::internal)?,
            UrlMode::Signed => None,
        };
        let url = match presigned {
            Some(url) => url,
            None => {
                let base = match (&r.public_url, request_host) {
                    (Some(public), _) => public.clone(),
                    (None, Some(host)) if valid_host(host) => format!("http://{host}"),
                    (None, _) => {
                        return Err(Error::internal(anyhow::anyhow!(
                            "no public_url configured and no usable Host header"
                        )));
                    }
                };
                r.signed_url(&base, id, channel, expires)
            }
        };
        Ok(RecordingResponse {
            call_id: id,
            url,
            content_type: CONTENT_TYPE.into(),
            expires_at: timefmt::format_ms(expires * 1000),
            recording_status: RecordingStatus::Available.as_str().into(),
            duration_seconds: rec.duration_seconds,
            file_size_bytes: channel_size(&rec, channel),
            recording_start_time: rec.recording_start_time.map(timefmt::format_ms),
        })
    }

    /// The media route: the signed URL's bytes, with ranges and ETags.
    /// Needs no credentials; the signature (call, channel, expiry) is the
    /// permission.
    pub async fn recording_media(
        &self,
        call: &str,
        query: &MediaQuery,
        cond: &MediaConditions,
    ) -> Result<MediaResponse> {
        let refused = "This recording link is invalid or has been altered.";
        let Ok(call_id) = call.parse::<CallId>() else {
            return Err(link_refused(refused));
        };
        let Ok(channel) = parse_channel(query.channel.as_deref()) else {
            return Err(link_refused(refused));
        };
        let (Some(expires), Some(signature)) =
            (query.expires.as_deref(), query.signature.as_deref())
        else {
            return Err(link_refused(refused));
        };
        let Ok(expires) = expires.parse::<i64>() else {
            return Err(link_refused(refused));
        };
        if !self.recordings.verify(call_id, channel, expires, signature) {
            return Err(link_refused(refused));
        }
        if timefmt::now_ms() / 1000 > expires {
            return Err(link_refused(
                "This recording link has expired; ask GET /calls/{call_id}/recording for a new one.",
            ));
        }
        let rec = match self.store.get_recording(call_id).await {
            Ok(r) => r,
            Err(StoreError::NotFound) => return Err(Error::not_found("Recording")),
            Err(e) => return Err(Error::internal(e)),
        };
        let Some(prefix) = rec
            .object_prefix
            .as_deref()
            .filter(|_| rec.status == RecordingStatus::Available)
        else {
            return Err(Error::new(
                ErrorCode::NotFound,
                format!("Recording not found (recording_status: {}).", rec.status),
            ));
        };
        let key = object_key(prefix, channel);
        let storage = &self.recordings.storage;
        let meta = storage
            .head(&key)
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| Error::not_found("Recording"))?;
        let file_name = format!("{call_id}-{}.m4a", channel.as_str());
        if let (Some(inm), Some(tag)) = (cond.if_none_match.as_deref(), meta.e_tag.as_deref())
            && etag_matches(inm, tag)
        {
            return Ok(MediaResponse {
                status: 304,
                content_type: CONTENT_TYPE,
                total_size: meta.size,
                range: 0..meta.size,
                e_tag: meta.e_tag,
                file_name,
                body: None,
            });
        }
        let range = wanted_range(cond, meta.size, meta.e_tag.as_deref())?;
        let partial = range.is_some();
        let body = storage
            .get(&key, range)
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| Error::not_found("Recording"))?;
        metrics::counter!("switchyard_recording_requests_total", "kind" => if partial { "range" } else { "full" })
            .increment(1);
        Ok(MediaResponse {
            status: if partial { 206 } else { 200 },
            content_type: CONTENT_TYPE,
            total_size: body.meta.size,
            range: body.range,
            e_tag: body.meta.e_tag,
            file_name,
            body: Some(body.stream),
        })
    }

    /// `DELETE /calls/{id}/recording` (OWNER or ADMIN): the files go, the
    /// recording becomes DELETED.
    pub async fn delete_recording(
        &self,
        who: &Principal,
        id: CallId,
    ) -> Result<DeleteRecordingResponse> {
        who.require_role(Role::Admin)?;
        let call = self.get_call(who, id).await?;
        match call.recording_status {
            Some(RecordingStatus::Available | RecordingStatus::Failed) => {}
            Some(RecordingStatus::Deleted) => {
                return Ok(DeleteRecordingResponse {
                    success: true,
                    call_id: id,
                    recording_status: RecordingStatus::Deleted,
                });
            }
            Some(s) => {
                return Err(Error::new(
                    ErrorCode::InvalidState,
                    format!("The recording is {s}; it can be deleted once AVAILABLE or FAILED."),
                ));
            }
            None => return Err(Error::not_found("Recording")),
        }
        delete_recording_objects(self.recordings.storage.as_ref(), call.organization_id, id)
            .await
            .map_err(Error::internal)?;
        match self
            .store
            .mark_recording_deleted(id, timefmt::now_ms())
            .await
        {
            Ok(_) | Err(StoreError::Stale) => {}
            Err(e) => return Err(Error::from_store(e, "Recording")),
        }
        Ok(DeleteRecordingResponse {
            success: true,
            call_id: id,
            recording_status: RecordingStatus::Deleted,
        })
    }
}

/// Removes every file of a call's recording (missing ones are fine).
pub async fn delete_recording_objects(
    storage: &dyn RecordingStorage,
    org: OrganizationId,
    call: CallId,
) -> anyhow::Result<()> {
    let prefix = object_prefix(org, call);
    for channel in RecordingChannel::ALL {
        storage.delete(&object_key(&prefix, *channel)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoStorage;

    #[async_trait]
    impl RecordingStorage for NoStorage {
        async fn put(&self, _: &str, _: Bytes) -> anyhow::Result<()> {
            Ok(())
        }
        async fn get(&self, _: &str, _: Option<Range<u64>>) -> anyhow::Result<Option<ObjectBody>> {
            Ok(None)
        }
        async fn head(&self, _: &str) -> anyhow::Result<Option<ObjectMeta>> {
            Ok(None)
        }
        async fn delete(&self, _: &str) -> anyhow::Result<()> {
            Ok(())
        }
        async fn presigned_get(&self, _: &str, _: Duration) -> anyhow::Result<Option<String>> {
            Ok(None)
        }
    }

    fn recordings() -> Recordings {
        Recordings {
            storage: Arc::new(NoStorage),
            url_key: b"test key of some length".to_vec(),
            public_url: None,
            url_ttl: Duration::from_secs(3600),
            url_mode: UrlMode::Signed,
        }
    }

    fn query_of(url: &str, name: &str) -> String {
        url.split(['?', '&'])
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn a_signed_url_verifies_and_any_change_to_it_does_not() {
        let r = recordings();
        let call = CallId::new();
        let url = r.signed_url(
            "https://calls.example.com/",
            call,
            RecordingChannel::Stereo,
            2_000_000_000,
        );
        assert!(url.starts_with(&format!(
            "https://calls.example.com/api/v1/recordings/{call}?channel=stereo&expires=2000000000&signature="
        )));
        let sig = query_of(&url, "signature");
        assert!(r.verify(call, RecordingChannel::Stereo, 2_000_000_000, &sig));
        assert!(!r.verify(call, RecordingChannel::Stereo, 2_000_000_001, &sig));
        assert!(!r.verify(call, RecordingChannel::Agent, 2_000_000_000, &sig));
        assert!(!r.verify(CallId::new(), RecordingChannel::Stereo, 2_000_000_000, &sig));
        let mut flipped = sig.clone().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(!r.verify(call, RecordingChannel::Stereo, 2_000_000_000, &flipped));
        assert!(!r.verify(call, RecordingChannel::Stereo, 2_000_000_000, "not base64!"));
        assert!(!r.verify(call, RecordingChannel::Stereo, 2_000_000_000, ""));
        let other_key = Recordings {
            url_key: b"another key".to_vec(),
            ..recordings()
        };
        assert!(!other_key.verify(call, RecordingChannel::Stereo, 2_000_000_000, &sig));
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        let cond = |range: Option<&str>, if_range: Option<&str>| MediaConditions {
            range: range.map(str::to_owned),
            if_range: if_range.map(str::to_owned),
            if_none_match: None,
        };
        let tag = Some("\"v1\"");
        assert_eq!(wanted_range(&cond(None, None), 100, tag).unwrap(), None);
        assert_eq!(
            wanted_range(&cond(Some("bytes=0-9"), None), 100, tag).unwrap(),
            Some(0..10)
        );
        assert_eq!(
            wanted_range(&cond(Some("bytes=90-"), None), 100, tag).unwrap(),
            Some(90..100)
        );
        assert_eq!(
            wanted_range(&cond(Some("bytes=-5"), None), 100, tag).unwrap(),
            Some(95..100)
        );
        // Past the end is clamped; starting past it cannot be satisfied.
        assert_eq!(
            wanted_range(&cond(Some("bytes=50-500"), None), 100, tag).unwrap(),
            Some(50..100)
        );
        let err = wanted_range(&cond(Some("bytes=100-"), None), 100, tag).unwrap_err();
        assert_eq!(err.code, ErrorCode::RangeNotSatisfiable);
        // Malformed, several ranges, or a stale If-Range: the whole file.
        assert_eq!(
            wanted_range(&cond(Some("lines=1-2"), None), 100, tag).unwrap(),
            None
        );
        assert_eq!(
            wanted_range(&cond(Some("bytes=0-1,5-6"), None), 100, tag).unwrap(),
            None
        );
        assert_eq!(
            wanted_range(&cond(Some("bytes=0-9"), Some("\"v0\"")), 100, tag).unwrap(),
            None
        );
        assert_eq!(
            wanted_range(&cond(Some("bytes=0-9"), Some("\"v1\"")), 100, tag).unwrap(),
            Some(0..10)
        );
    }

    #[test]
    fn only_plain_hosts_make_urls() {
        assert!(valid_host("calls.example.com"));
        assert!(valid_host("127.0.0.1:8080"));
        assert!(valid_host("[::1]:8080"));
        assert!(!valid_host("evil.com/path?x="));
        assert!(!valid_host("a b"));
        assert!(!valid_host(""));
    }

    #[test]
    fn if_none_match_compares_tags() {
        assert!(etag_matches("\"a\", \"b\"", "\"b\""));
        assert!(etag_matches("*", "\"b\""));
        assert!(etag_matches("W/\"b\"", "\"b\""));
        assert!(!etag_matches("\"a\"", "\"b\""));
    }

    #[test]
    fn processing_retry_after_grows_with_the_call_and_is_bounded() {
        assert_eq!(processing_retry_after(None), 2);
        assert_eq!(processing_retry_after(Some(1.0)), 3);
        assert_eq!(processing_retry_after(Some(3600.0)), 38);
        assert_eq!(processing_retry_after(Some(1e9)), 60);
        assert_eq!(processing_retry_after(Some(-5.0)), 2);
    }

    #[test]
    fn channels_name_their_objects() {
        let prefix = object_prefix(OrganizationId::new(), CallId::new());
        assert!(prefix.starts_with("recordings/") && prefix.ends_with('/'));
        assert!(object_key(&prefix, RecordingChannel::Customer).ends_with("/customer.m4a"));
        assert_eq!(parse_channel(None).unwrap(), RecordingChannel::Stereo);
        assert_eq!(
            parse_channel(Some("AGENT")).unwrap(),
            RecordingChannel::Agent
        );
        assert_eq!(
            parse_channel(Some("left")).unwrap_err().param.as_deref(),
            Some("channel")
        );
    }
}
