//! The answers hyper gives by itself, with the error envelope.
//!
//! A request whose head hyper cannot read (a URI over 64 KiB: 414; more
//! than 100 headers, or a head over its buffer: 431; a malformed request
//! line or header: 400) never reaches the router: hyper writes a bare
//! status line with `content-length: 0` and closes the connection, and has
//! no hook to say anything else. So the connection's writes are watched:
//! a write that is exactly such a head (one complete response head with
//! status 400, 414 or 431 and an empty body; the router never answers
//! those without the envelope) is replaced by the same status with the
//! envelope, a request ID and `connection: close`. Any other write passes
//! through untouched.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::error::{ErrorBody, ErrorEnvelope};

/// A TCP listener whose connections carry [`EnvelopeIo`].
pub struct EnvelopeListener(pub TcpListener);

impl Listener for EnvelopeListener {
    type Io = EnvelopeIo<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.0).await;
        (EnvelopeIo::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Serves `router` on `listener` (with each request's `ConnectInfo`) until
/// `shutdown` completes, answering hyper's own errors with the envelope.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let make = tower::service_fn(
        move |incoming: axum::serve::IncomingStream<'_, EnvelopeListener>| {
            let addr = *incoming.remote_addr();
            let router = router.clone();
            async move {
                Ok::<_, std::convert::Infallible>(tower::Layer::layer(
                    &axum::Extension(ConnectInfo(addr)),
                    router,
                ))
            }
        },
    );
    axum::serve(EnvelopeListener(listener), make)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A connection whose writes of hyper's bare error heads are replaced.
pub struct EnvelopeIo<T> {
    inner: T,
    /// The answer being written in place of hyper's, and how much of it is
    /// out; the write it replaces reports its own length once all is out.
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl<T> EnvelopeIo<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            replacing: None,
        }
    }
}

/// hyper's heads are short; anything longer is not one.
const MAX_BARE_HEAD: usize = 512;

/// The enveloped answer for `head`, if `head` is one of hyper's bare
/// error heads, whole.
pub fn replacement_for(head: &[u8]) -> Option<Vec<u8>> {
    if head.len() > MAX_BARE_HEAD || !head.starts_with(b"HTTP/1.") {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return None,
    }
    let (code, message) = match response.code? {
        400 => ("bad_request", "The request is not valid HTTP."),
        414 => (
            "uri_too_long",
            "The request URI is too long (at most 65534 bytes).",
        ),
        431 => (
            "headers_too_large",
            "The request's headers are too large (at most 100 headers, about 400 KiB in all).",
        ),
        _ => return None,
    };
    let mut empty = false;
    let mut date = None;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            empty = h.value == b"0";
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        } else if h.name.eq_ignore_ascii_case("date") {
            date = std::str::from_utf8(h.value).ok();
        }
    }
    if !empty {
        return None;
    }
    let body = serde_json::to_vec(&ErrorEnvelope {
        error: ErrorBody {
            code: code.to_owned(),
            message: message.to_owned(),
            param: None,
        },
    })
    .ok()?;
    let status = axum::http::StatusCode::from_u16(response.code?).ok()?;
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\nx-request-id: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        uuid::Uuid::new_v4(),
    );
    if let Some(date) = date {
        out.push_str(&format!("date: {date}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

impl<T: AsyncWrite + Unpin> EnvelopeIo<T> {
    /// Writes the rest of the replacement; then reports `original` bytes.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, original)) = &mut self.replacing {
            if *written == bytes.len() {
                let original = *original;
                self.replacing = None;
                return Poll::Ready(Ok(original));
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(0))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for EnvelopeIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EnvelopeIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            match replacement_for(buf) {
                Some(bytes) => self.replacing = Some((bytes, 0, buf.len())),
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
            }
        }
        self.drain(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            let candidate = (total <= MAX_BARE_HEAD)
                .then(|| {
                    bufs.iter()
                        .flat_map(|b| b.iter().copied())
                        .collect::<Vec<u8>>()
                })
                .and_then(|head| replacement_for(&head));
            match candidate {
                Some(bytes) => self.replacing = Some((bytes, 0, total)),
                None => return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
            }
        }
        self.drain(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.replacing.is_some() {
            ready!(self.drain(cx))?;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.replacing.is_some() {
            ready!(self.drain(cx))?;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_error_heads_are_replaced() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 10:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(replacement_for(head).unwrap()).unwrap();
        let (top, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(
            top.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{top}"
        );
        assert!(top.contains("\r\nconnection: close"), "{top}");
        assert!(
            top.contains("\r\ndate: Thu, 03 Dec 2026 10:00:00 GMT"),
            "{top}"
        );
        assert!(
            top.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{top}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "headers_too_large");
        assert!(v["error"]["param"].is_null());
        for code in [400, 414] {
            let head = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n");
            assert!(replacement_for(head.as_bytes()).is_some(), "{code}");
        }
        for other in [
            // The router's own answers carry a body.
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 57\r\n\r\n"[..],
            b"HTTP/1.1 431 X\r\ntransfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            // Not one head, whole.
            b"HTTP/1.1 431 X\r\ncontent-length: 0\r\n\r\nmore",
            b"HTTP/1.1 431 X\r\ncontent-length: 0\r\n",
            b"{\"error\":1}",
        ] {
            assert!(
                replacement_for(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
