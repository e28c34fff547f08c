//! The SIP UDP socket rsipstack reads from, with [`crate::sip_screen`] in
//! front of it: each datagram is read whole (rsipstack's own buffer is
//! 8 KiB and silently cuts a longer one), checked, and either handed on,
//! answered from here (to its source) or dropped.

use std::net::SocketAddr;

use rsipstack::platform::net::UdpSocket as PlatformUdpSocket;
use tokio::net::UdpSocket;
use tokio::sync::Mutex;

use crate::sip_screen::{Verdict, screen_datagram};

/// The largest UDP payload (IPv4: 65 535 - 8 - 20).
const MAX_DATAGRAM: usize = 65_507;

pub(crate) struct ScreenedUdp {
    socket: UdpSocket,
    /// One reader (rsipstack's serve loop) at a time; uncontended.
    buf: Mutex<Vec<u8>>,
}

impl ScreenedUdp {
    pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let std_socket = std::net::UdpSocket::bind(addr)?;
        std_socket.set_nonblocking(true)?;
        Ok(ScreenedUdp {
            socket: UdpSocket::from_std(std_socket)?,
            buf: Mutex::new(vec![0; MAX_DATAGRAM + 1]),
        })
    }
}

#[async_trait::async_trait]
impl PlatformUdpSocket for ScreenedUdp {
    async fn recv_from(&self, out: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        let mut buf = self.buf.lock().await;
        loop {
            let (len, source) = self.socket.recv_from(&mut buf).await?;
            let datagram = &buf[..len];
            match screen_datagram(datagram, source, out.len()) {
                // The screen answers 513 to whatever is longer than `out`;
                // what passes fits.
                Verdict::Pass if len <= out.len() => {
                    out[..len].copy_from_slice(datagram);
                    return Ok((len, source));
                }
                Verdict::Pass | Verdict::Drop(_) => {
                    metrics::counter!("switchyard_sip_screened_total", "answer" => "none")
                        .increment(1);
                }
                Verdict::Answer { status, bytes } => {
                    metrics::counter!("switchyard_sip_screened_total", "answer" => status.to_string())
                        .increment(1);
                    if let Err(e) = self.socket.send_to(&bytes, source).await {
                        tracing::debug!(error = %e, %source, "answer to a refused request not sent");
                    }
                }
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.socket.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}
