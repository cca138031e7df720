//! A small client for the GCS JSON API: media upload, download, metadata, list, delete.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Body, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::OnceCell;
use tokio_util::io::ReaderStream;

use crate::digest::{FileDigest, Hasher};
use crate::error::{Error, Result};

/// The public GCS endpoint, used when [`GcsConfig::endpoint`] is `None`.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
/// The OAuth scope requested from the token provider.
pub const READ_WRITE_SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

/// How many bytes of an error response are kept in [`Error::Http`].
const BODY_EXCERPT: usize = 512;

const MULTIPART_BOUNDARY: &str = "trendstream-checkpoint-boundary";

/// A `multipart/related` upload body: object metadata, then empty content.
fn empty_multipart_body(metadata: &str) -> String {
    format!(
        "--{MULTIPART_BOUNDARY}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n\
         --{MULTIPART_BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\r\n\r\n\
         --{MULTIPART_BOUNDARY}--\r\n"
    )
}

/// Where checkpoints go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsConfig {
    pub bucket: String,
    /// Object-name prefix for everything this deployment writes (may be empty).
    pub prefix: String,
    /// Endpoint override, e.g. `http://127.0.0.1:PORT` for the emulator. When set, requests
    /// carry no credentials; when `None`, [`DEFAULT_ENDPOINT`] with Application Default
    /// Credentials (Workload Identity on GKE).
    pub endpoint: Option<String>,
}

/// Retries for throttling (429), server errors (5xx) and broken connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// An object's name and size as GCS reports them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ObjectInfo {
    pub name: String,
    #[serde(deserialize_with = "size_from_string_or_number")]
    pub size: u64,
}

fn size_from_string_or_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Text(String),
        Number(u64),
    }
    match Size::deserialize(deserializer)? {
        Size::Number(n) => Ok(n),
        Size::Text(text) => text.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    items: Vec<ObjectInfo>,
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<String>,
}

/// A GCS client bound to one bucket. Cheap to clone.
#[derive(Clone)]
pub struct GcsClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: String,
    bucket: String,
    prefix: String,
    /// `None`: no credentials (emulator). Otherwise created on first use.
    auth: Option<OnceCell<Arc<dyn gcp_auth::TokenProvider>>>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for GcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsClient")
            .field("endpoint", &self.inner.endpoint)
            .field("bucket", &self.inner.bucket)
            .field("prefix", &self.inner.prefix)
            .field("authenticated", &self.inner.auth.is_some())
            .finish()
    }
}

impl GcsClient {
    /// Builds the client; touches no network (credentials are looked up on the first request).
    pub fn new(config: GcsConfig) -> Result<Self> {
        Self::with_retry(config, RetryPolicy::default())
    }

    pub fn with_retry(config: GcsConfig, retry: RetryPolicy) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|source| Error::Client {
                bucket: config.bucket.clone(),
                source,
            })?;
        let (endpoint, auth) = match config.endpoint {
            Some(endpoint) => (endpoint, None),
            None => (DEFAULT_ENDPOINT.to_owned(), Some(OnceCell::new())),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                bucket: config.bucket,
                prefix: config.prefix,
                auth,
                retry: RetryPolicy {
                    attempts: retry.attempts.max(1),
                    ..retry
                },
            }),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Uploads `bytes` as `object`, replacing it if it exists.
    pub async fn upload_bytes(&self, object: &str, bytes: Vec<u8>) -> Result<ObjectInfo> {
        self.upload_bytes_with(object, bytes, false).await
    }

    /// Uploads `bytes` as `object` only if no such object exists (an existing one is an
    /// [`Error::Http`] with status 412).
    pub async fn create_bytes(&self, object: &str, bytes: Vec<u8>) -> Result<ObjectInfo> {
        self.upload_bytes_with(object, bytes, true).await
    }

    async fn upload_bytes_with(
        &self,
        object: &str,
        bytes: Vec<u8>,
        only_if_absent: bool,
    ) -> Result<ObjectInfo> {
        let size = bytes.len() as u64;
        let bytes = &bytes;
        let info: ObjectInfo = self
            .with_retries("upload", object, move || async move {
                let mut url = self.upload_url(object);
                if only_if_absent {
                    url.query_pairs_mut().append_pair("ifGenerationMatch", "0");
                }
                let request = if bytes.is_empty() {
                    // GCS takes an empty media upload; the emulator drops the connection on
                    // one, so empty objects go up as multipart (which both accept).
                    url.query_pairs_mut().clear();
                    url.query_pairs_mut().append_pair("uploadType", "multipart");
                    if only_if_absent {
                        url.query_pairs_mut().append_pair("ifGenerationMatch", "0");
                    }
                    let metadata = serde_json::json!({ "name": object }).to_string();
                    self.inner
                        .http
                        .post(url)
                        .header(
                            CONTENT_TYPE,
                            format!("multipart/related; boundary={MULTIPART_BOUNDARY}"),
                        )
                        .body(empty_multipart_body(&metadata))
                } else {
                    self.inner
                        .http
                        .post(url)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .body(bytes.clone())
                };
                self.send_json("upload", object, request).await
            })
            .await?;
        self.check_size("upload", object, &info, size)?;
        Ok(info)
    }

    /// Streams the file at `path` to `object`, computing its digest on the way.
    pub async fn upload_file(&self, object: &str, path: &Path) -> Result<(ObjectInfo, FileDigest)> {
        let metadata = tokio::fs::metadata(path)
            .await
            .map_err(Error::io("stat", path))?;
        if metadata.len() == 0 {
            let info = self.upload_bytes(object, Vec::new()).await?;
            return Ok((info, Hasher::default().finish()));
        }
        self.with_retries("upload", object, move || async move {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(Error::io("open", path))?;
            let size = file
                .metadata()
                .await
                .map_err(Error::io("stat", path))?
                .len();
            let hasher = Arc::new(Mutex::new(Hasher::default()));
            let feed = Arc::clone(&hasher);
            let stream = ReaderStream::with_capacity(file, 256 * 1024).map(move |chunk| {
                if let Ok(bytes) = &chunk {
                    feed.lock().expect("hasher lock").update(bytes);
                }
                chunk
            });
            let request = self
                .inner
                .http
                .post(self.upload_url(object))
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .body(Body::wrap_stream(stream));
            let info: ObjectInfo = self.send_json("upload", object, request).await?;
            let digest = std::mem::take(&mut *hasher.lock().expect("hasher lock")).finish();
            self.check_size("upload", object, &info, digest.size)?;
            Ok((info, digest))
        })
        .await
    }

    /// The whole content of `object` (for small objects such as manifests).
    pub async fn download(&self, object: &str) -> Result<Vec<u8>> {
        self.with_retries("download", object, move || async move {
            let response = self
                .send(
                    "download",
                    object,
                    self.inner.http.get(self.media_url(object)),
                )
                .await?;
            let bytes = response
                .bytes()
                .await
                .map_err(|source| self.transport("download", object, source))?;
            Ok(bytes.to_vec())
        })
        .await
    }

    /// Streams `object` into a new file at `path` (replacing one there), returning the digest of
    /// what was written. The file is synced to disk.
    pub async fn download_to_file(&self, object: &str, path: &Path) -> Result<FileDigest> {
        self.with_retries("download", object, move || async move {
            let mut response = self
                .send(
                    "download",
                    object,
                    self.inner.http.get(self.media_url(object)),
                )
                .await?;
            let mut file = tokio::fs::File::create(path)
                .await
                .map_err(Error::io("create", path))?;
            let mut hasher = Hasher::default();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|source| self.transport("download", object, source))?
            {
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(Error::io("write", path))?;
            }
            file.sync_all().await.map_err(Error::io("sync", path))?;
            Ok(hasher.finish())
        })
        .await
    }

    /// Name and size of `object`; [`Error::NotFound`] when it does not exist.
    pub async fn metadata(&self, object: &str) -> Result<ObjectInfo> {
        self.with_retries("metadata", object, move || async move {
            let request = self.inner.http.get(self.object_url(object));
            self.send_json("metadata", object, request).await
        })
        .await
    }

    /// Every object whose name starts with `prefix`, following page tokens.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut objects = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let token = page_token.as_deref();
            let page: ListPage = self
                .with_retries("list", prefix, move || async move {
                    let mut url = self.bucket_url(&["o"]);
                    url.query_pairs_mut().append_pair("prefix", prefix);
                    if let Some(token) = token {
                        url.query_pairs_mut().append_pair("pageToken", token);
                    }
                    self.send_json("list", prefix, self.inner.http.get(url))
                        .await
                })
                .await?;
            objects.extend(page.items);
            match page.next_page_token {
                Some(next) if !next.is_empty() => page_token = Some(next),
                _ => return Ok(objects),
            }
        }
    }

    /// Deletes `object`; [`Error::NotFound`] when it does not exist.
    pub async fn delete(&self, object: &str) -> Result<()> {
        self.with_retries("delete", object, move || async move {
            let request = self.inner.http.delete(self.object_url(object));
            self.send("delete", object, request).await.map(drop)
        })
        .await
    }

    fn bucket_url(&self, segments: &[&str]) -> Url {
        self.url(&["storage", "v1", "b"], segments)
    }

    fn url(&self, base: &[&str], segments: &[&str]) -> Url {
        let mut url = Url::parse(&self.inner.endpoint)
            .unwrap_or_else(|_| Url::parse(DEFAULT_ENDPOINT).expect("valid default endpoint"));
        url.path_segments_mut()
            .expect("http(s) URLs have paths")
            .pop_if_empty()
            .extend(base)
            .push(&self.inner.bucket)
            .extend(segments);
        url
    }

    fn object_url(&self, object: &str) -> Url {
        self.bucket_url(&["o", object])
    }

    fn media_url(&self, object: &str) -> Url {
        let mut url = self.object_url(object);
        url.query_pairs_mut().append_pair("alt", "media");
        url
    }

    fn upload_url(&self, object: &str) -> Url {
        let mut url = self.url(&["upload", "storage", "v1", "b"], &["o"]);
        url.query_pairs_mut()
            .append_pair("uploadType", "media")
            .append_pair("name", object);
        url
    }

    fn check_size(
        &self,
        operation: &'static str,
        object: &str,
        info: &ObjectInfo,
        expected: u64,
    ) -> Result<()> {
        if info.size == expected {
            return Ok(());
        }
        Err(Error::InvalidResponse {
            operation,
            bucket: self.inner.bucket.clone(),
            object: object.to_owned(),
            message: format!("sent {expected} bytes, the stored object has {}", info.size),
        })
    }

    fn transport(&self, operation: &'static str, object: &str, source: reqwest::Error) -> Error {
        Error::Transport {
            operation,
            bucket: self.inner.bucket.clone(),
            object: object.to_owned(),
            source,
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts run out.
    async fn with_retries<T, F, Fut>(
        &self,
        operation: &'static str,
        object: &str,
        attempt: F,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let policy = self.inner.retry;
        let mut backoff = policy.initial_backoff;
        let mut tried = 1;
        loop {
            match attempt().await {
                Err(error) if error.is_retryable() && tried < policy.attempts => {
                    tracing::warn!(
                        %error,
                        operation,
                        bucket = %self.inner.bucket,
                        object,
                        attempt = tried,
                        "GCS request failed; retrying in {backoff:?}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(policy.max_backoff);
                    tried += 1;
                }
                result => return result,
            }
        }
    }

    /// Sends one request (with credentials when configured) and turns a non-2xx status into an
    /// error: 404 into [`Error::NotFound`], anything else into [`Error::Http`] with the body's start.
    async fn send(
        &self,
        operation: &'static str,
        object: &str,
        request: RequestBuilder,
    ) -> Result<Response> {
        let request = self.authorize(request).await?;
        let response = request
            .send()
            .await
            .map_err(|source| self.transport(operation, object, source))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::NOT_FOUND {
            return Err(Error::NotFound {
                operation,
                bucket: self.inner.bucket.clone(),
                object: object.to_owned(),
            });
        }
        let body = response.text().await.unwrap_or_default();
        let mut excerpt: String = body.chars().take(BODY_EXCERPT).collect();
        if excerpt.len() < body.len() {
            excerpt.push('…');
        }
        Err(Error::Http {
            operation,
            bucket: self.inner.bucket.clone(),
            object: object.to_owned(),
            status: status.as_u16(),
            body: excerpt,
        })
    }

    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        object: &str,
        request: RequestBuilder,
    ) -> Result<T> {
        let body = self
            .send(operation, object, request)
            .await?
            .bytes()
            .await
            .map_err(|source| self.transport(operation, object, source))?;
        serde_json::from_slice(&body).map_err(|error| Error::InvalidResponse {
            operation,
            bucket: self.inner.bucket.clone(),
            object: object.to_owned(),
            message: format!("cannot parse the JSON: {error}"),
        })
    }

    async fn authorize(&self, request: RequestBuilder) -> Result<RequestBuilder> {
        let Some(cell) = &self.inner.auth else {
            return Ok(request);
        };
        let auth_error = |source| Error::Auth {
            bucket: self.inner.bucket.clone(),
            source,
        };
        let provider = cell
            .get_or_try_init(gcp_auth::provider)
            .await
            .map_err(auth_error)?;
        let token = provider
            .token(&[READ_WRITE_SCOPE])
            .await
            .map_err(auth_error)?;
        Ok(request.bearer_auth(token.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: Option<&str>) -> GcsClient {
        GcsClient::new(GcsConfig {
            bucket: "ckpt-bucket".to_owned(),
            prefix: "p".to_owned(),
            endpoint: endpoint.map(str::to_owned),
        })
        .unwrap()
    }

    #[test]
    fn object_names_are_one_encoded_path_segment() {
        let client = client(Some("http://127.0.0.1:4443/"));
        assert_eq!(
            client
                .media_url("p/g/partition-7/files/ab-000001.sst")
                .as_str(),
            "http://127.0.0.1:4443/storage/v1/b/ckpt-bucket/o/p%2Fg%2Fpartition-7%2Ffiles%2Fab-000001.sst?alt=media"
        );
        assert_eq!(
            client.upload_url("p/x y.sst").as_str(),
            "http://127.0.0.1:4443/upload/storage/v1/b/ckpt-bucket/o?uploadType=media&name=p%2Fx+y.sst"
        );
    }

    #[test]
    fn without_an_endpoint_the_public_api_is_used_with_credentials() {
        let client = client(None);
        assert!(client.inner.auth.is_some());
        assert_eq!(
            client.object_url("a/b").as_str(),
            "https://storage.googleapis.com/storage/v1/b/ckpt-bucket/o/a%2Fb"
        );
        assert!(
            self::client(Some("http://127.0.0.1:1"))
                .inner
                .auth
                .is_none()
        );
    }

    #[test]
    fn object_size_parses_from_a_string_or_a_number() {
        let text: ObjectInfo = serde_json::from_str(r#"{"name":"a","size":"12"}"#).unwrap();
        let number: ObjectInfo = serde_json::from_str(r#"{"name":"a","size":12}"#).unwrap();
        assert_eq!(text.size, 12);
        assert_eq!(number, text);
    }

    #[test]
    fn throttling_and_server_errors_are_retried_but_not_client_errors() {
        let http = |status| Error::Http {
            operation: "upload",
            bucket: "b".into(),
            object: "o".into(),
            status,
            body: String::new(),
        };
        assert!(http(429).is_retryable());
        assert!(http(503).is_retryable());
        assert!(!http(403).is_retryable());
        assert!(!http(412).is_retryable());
    }

    #[tokio::test]
    async fn connection_failures_are_retried_a_bounded_number_of_times() {
        // Bind and drop a listener so the port is (very likely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = GcsClient::with_retry(
            GcsConfig {
                bucket: "b".into(),
                prefix: String::new(),
                endpoint: Some(format!("http://127.0.0.1:{port}")),
            },
            RetryPolicy {
                attempts: 3,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
            },
        )
        .unwrap();
        let error = client.metadata("x").await.unwrap_err();
        assert!(matches!(error, Error::Transport { .. }), "{error}");
        assert!(error.to_string().contains("gs://b/x"), "{error}");
    }
}
