//! The [`RecordingStorage`] port over the `object_store` crate: a local
//! directory by default, any S3-compatible service when configured. Both
//! write atomically (local: a temporary file renamed into place; S3: one
//! PUT), so a partial upload is never visible.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use switchyard_service::recordings::{ObjectBody, ObjectMeta, RecordingStorage};

/// Where recordings are kept, as configured.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// A directory on this machine.
    Local { root: PathBuf },
    /// An S3-compatible bucket. Credentials not given here come from the
    /// usual AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …).
    S3 {
        bucket: String,
        /// Prepended to every key (e.g. `switchyard/`).
        prefix: String,
        /// For services other than AWS (MinIO, Ceph, …): their URL.
        endpoint: Option<String>,
        region: Option<String>,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
        /// Needed for an `http://` endpoint.
        allow_http: bool,
    },
}

/// Recording storage over `object_store`.
#[derive(Debug, Clone)]
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    /// The same S3 store, for presigned URLs.
    s3: Option<Arc<AmazonS3>>,
    prefix: String,
}

impl ObjectStorage {
    pub fn open(config: &StorageConfig) -> anyhow::Result<Self> {
        match config {
            StorageConfig::Local { root } => {
                // Recordings are for this user only (files inside take the
                // server's umask, 077 in the binary).
                let mut dir = std::fs::DirBuilder::new();
                dir.recursive(true);
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
                dir.create(root)
                    .map_err(|e| anyhow::anyhow!("recording storage {}: {e}", root.display()))?;
                let fs = LocalFileSystem::new_with_prefix(root)?.with_automatic_cleanup(true);
                Ok(Self {
                    store: Arc::new(fs),
                    s3: None,
                    prefix: String::new(),
                })
            }
            StorageConfig::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                allow_http,
            } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_allow_http(*allow_http);
                if let Some(e) = endpoint {
                    builder = builder.with_endpoint(e);
                }
                if let Some(r) = region {
                    builder = builder.with_region(r);
                }
                if let Some(k) = access_key_id {
                    builder = builder.with_access_key_id(k);
                }
                if let Some(s) = secret_access_key {
                    builder = builder.with_secret_access_key(s);
                }
                let s3 = Arc::new(builder.build()?);
                Ok(Self {
                    store: s3.clone(),
                    s3: Some(s3),
                    prefix: prefix.trim_matches('/').to_owned(),
                })
            }
        }
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }
}

/// An HTTP entity tag: quoted, as `ETag` carries it (S3's already are).
fn http_etag(tag: Option<String>) -> Option<String> {
    tag.map(|t| {
        if t.starts_with('"') || t.starts_with("W/") {
            t
        } else {
            format!("\"{t}\"")
        }
    })
}

fn meta_of(m: &object_store::ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        size: m.size,
        e_tag: http_etag(m.e_tag.clone()),
    }
}

#[async_trait]
impl RecordingStorage for ObjectStorage {
    async fn put(&self, key: &str, bytes: Bytes) -> anyhow::Result<()> {
        self.store
            .put(&self.path(key), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> anyhow::Result<Option<ObjectBody>> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        match self.store.get_opts(&self.path(key), options).await {
            Ok(got) => {
                let meta = meta_of(&got.meta);
                let range = got.range.clone();
                let stream = got.into_stream().map_err(std::io::Error::other).boxed();
                Ok(Some(ObjectBody {
                    meta,
                    range,
                    stream,
                }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn head(&self, key: &str) -> anyhow::Result<Option<ObjectMeta>> {
        match self.store.head(&self.path(key)).await {
            Ok(m) => Ok(Some(meta_of(&m))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn presigned_get(&self, key: &str, ttl: Duration) -> anyhow::Result<Option<String>> {
        let Some(s3) = &self.s3 else {
            return Ok(None);
        };
        let url = s3
            .signed_url(object_store::signer::Method::GET, &self.path(key), ttl)
            .await?;
        Ok(Some(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_objects_round_trip_with_ranges_and_tags() {
        let root = std::env::temp_dir().join(format!("sy-objects-{}", rand::random::<u64>()));
        let storage = ObjectStorage::open(&StorageConfig::Local { root: root.clone() }).unwrap();
        let key = "recordings/o/c/stereo.m4a";
        assert!(storage.head(key).await.unwrap().is_none());
        assert!(storage.get(key, None).await.unwrap().is_none());
        storage
            .put(key, Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        let meta = storage.head(key).await.unwrap().unwrap();
        assert_eq!(meta.size, 10);
        let tag = meta.e_tag.clone().unwrap();
        assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");

        let body = storage.get(key, Some(2..5)).await.unwrap().unwrap();
        assert_eq!(body.range, 2..5);
        let bytes: Vec<Bytes> = body.stream.try_collect().await.unwrap();
        assert_eq!(bytes.concat(), b"234");
        let whole = storage.get(key, None).await.unwrap().unwrap();
        assert_eq!(whole.range, 0..10);

        assert!(
            storage
                .presigned_get(key, Duration::from_secs(60))
                .await
                .unwrap()
                .is_none()
        );
        storage.delete(key).await.unwrap();
        storage.delete(key).await.unwrap();
        assert!(storage.head(key).await.unwrap().is_none());
        let _ = std::fs::remove_dir_all(root);
    }
}
