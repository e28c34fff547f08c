//! A leg's UDP socket as the media reactor uses it: non-blocking, never
//! registered with tokio (no readiness events, no wake-ups per packet), read
//! once per 20 ms tick until it is empty. The kernel stamps each datagram
//! with its arrival time (`SO_TIMESTAMPNS`), so reading late does not blur
//! the interarrival jitter the jitter buffer and RTCP are built on.
//!
//! nix is used for `recvmsg` because std's UDP socket has no way to read
//! ancillary data; the rest is std.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

use nix::sys::socket::{MsgFlags, SockaddrStorage, recvmsg};

/// A datagram read from a [`TimedSocket`].
#[derive(Debug, Clone, Copy)]
pub struct Datagram {
    pub len: usize,
    pub from: SocketAddr,
    /// When the kernel received it (wall clock), where the kernel said.
    pub received_at: Option<SystemTime>,
}

#[derive(Debug)]
pub struct TimedSocket {
    socket: UdpSocket,
    /// Room for one `SO_TIMESTAMPNS` control message.
    cmsg: Vec<u8>,
}

impl TimedSocket {
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        #[cfg(target_os = "linux")]
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::ReceiveTimestampns,
            &true,
        )
        .map_err(io::Error::from)?;
        Ok(Self {
            socket,
            cmsg: nix::cmsg_space!(nix::sys::time::TimeSpec),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The next waiting datagram into `buf`, or `None` when none is waiting.
    /// A datagram longer than `buf` is cut (RTP here is far smaller).
    pub fn try_recv(&mut self, buf: &mut [u8]) -> io::Result<Option<Datagram>> {
        let mut iov = [io::IoSliceMut::new(buf)];
        let msg = match recvmsg::<SockaddrStorage>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut self.cmsg),
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EAGAIN) => return Ok(None),
            // A datagram's ICMP error (port unreachable from a peer that
            // went away) is reported on the next read; it is not ours to
            // stop for.
            Err(nix::errno::Errno::ECONNREFUSED) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(from) = msg.address.as_ref().and_then(socket_addr) else {
            return Ok(None);
        };
        let mut received_at = None;
        #[cfg(target_os = "linux")]
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let nix::sys::socket::ControlMessageOwned::ScmTimestampns(ts) = c {
                    let since_epoch = Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32);
                    received_at = SystemTime::UNIX_EPOCH.checked_add(since_epoch);
                }
            }
        }
        Ok(Some(Datagram {
            len: msg.bytes,
            from,
            received_at,
        }))
    }

    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.socket.send_to(buf, to)
    }
}

fn socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_waits_with_its_arrival_time_then_none() {
        let mut rx = TimedSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 64];
        assert!(rx.try_recv(&mut buf).unwrap().is_none());
        let before = SystemTime::now();
        tx.send_to(b"one", rx.local_addr().unwrap()).unwrap();
        tx.send_to(b"two", rx.local_addr().unwrap()).unwrap();
        // Loopback delivers at once, but wait on it rather than assume.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let first = loop {
            if let Some(d) = rx.try_recv(&mut buf).unwrap() {
                break d;
            }
            assert!(std::time::Instant::now() < deadline, "nothing arrived");
            std::thread::yield_now();
        };
        assert_eq!(&buf[..first.len], b"one");
        assert_eq!(first.from, tx.local_addr().unwrap());
        #[cfg(target_os = "linux")]
        {
            let at = first.received_at.expect("kernel timestamp");
            assert!(
                at + Duration::from_millis(50) >= before,
                "stamped before it was sent"
            );
            assert!(at <= SystemTime::now() + Duration::from_millis(50));
        }
        let second = rx.try_recv(&mut buf).unwrap().expect("second datagram");
        assert_eq!(&buf[..second.len], b"two");
        assert!(rx.try_recv(&mut buf).unwrap().is_none());
    }
}
