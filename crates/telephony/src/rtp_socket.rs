//! A leg's UDP socket as the media reactor uses it: non-blocking, never
//! registered with tokio (no readiness events, no wake-ups per packet), read
//! once per 20 ms tick until it is empty. The kernel stamps each datagram
//! with its arrival time (`SO_TIMESTAMPNS`), so reading late does not blur
//! the interarrival jitter the jitter buffer and RTCP are built on.
//!
//! A read is one `recvmmsg`: whatever waits, up to a batch, in one system
//! call. A leg's tick usually finds one packet; one `recvmsg` for it and a
//! second to learn the socket was empty was two calls where one does (a
//! batch that comes back short says the socket is empty).
//!
//! nix is used for `recvmmsg` because std's UDP socket has no way to read
//! several datagrams or ancillary data; the rest is std. (`recvmmsg` is
//! Linux's and the BSDs', which is where Switchyard runs.)

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

use nix::sys::socket::{MsgFlags, MultiHeaders, RecvMsg, SockaddrStorage, recvmmsg};

/// Datagrams one read takes at most.
pub const BATCH: usize = 8;
/// Room for one datagram; longer ones are cut (RTP here is far smaller).
const DATAGRAM_ROOM: usize = 2048;

/// A datagram read from a [`TimedSocket`].
#[derive(Debug, Clone, Copy)]
pub struct Datagram {
    pub len: usize,
    pub from: SocketAddr,
    /// When the kernel received it (wall clock), where the kernel said.
    pub received_at: Option<SystemTime>,
}

/// What one read needs: the kernel's message headers, room for their
/// timestamps and the datagrams. One per media thread, reused for every
/// socket it reads (it holds pointers into itself, so it stays on the
/// thread that made it).
pub struct RecvBatch {
    headers: MultiHeaders<SockaddrStorage>,
    room: Box<[u8]>,
}

impl RecvBatch {
    pub fn new() -> Self {
        Self {
            headers: MultiHeaders::preallocate(
                BATCH,
                Some(nix::cmsg_space!(nix::sys::time::TimeSpec)),
            ),
            room: vec![0; BATCH * DATAGRAM_ROOM].into_boxed_slice(),
        }
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
pub struct TimedSocket {
    socket: UdpSocket,
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
        Ok(Self { socket })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Reads what waits, up to [`BATCH`] datagrams, in one system call, and
    /// gives each to `each` with its bytes, in arrival order. Returns how
    /// many were read; fewer than [`BATCH`] means the socket is now empty.
    pub fn recv_batch(
        &self,
        batch: &mut RecvBatch,
        mut each: impl FnMut(Datagram, &[u8]),
    ) -> io::Result<usize> {
        let mut got: [Option<Datagram>; BATCH] = [None; BATCH];
        let read = {
            let mut room = batch.room.chunks_mut(DATAGRAM_ROOM);
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(room.next().unwrap_or_default())]);
            let results = match recvmmsg(
                self.socket.as_raw_fd(),
                &mut batch.headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(r) => r,
                Err(nix::errno::Errno::EAGAIN) => return Ok(0),
                // A datagram's ICMP error (port unreachable from a peer that
                // went away) is reported on the next read; it is not ours to
                // stop for.
                Err(nix::errno::Errno::ECONNREFUSED) => return Ok(0),
                Err(e) => return Err(e.into()),
            };
            let mut read = 0;
            for (slot, msg) in got.iter_mut().zip(results) {
                read += 1;
                *slot = datagram(&msg);
            }
            read
        };
        for (i, d) in got.iter().enumerate().take(read) {
            if let Some(d) = d {
                let start = i * DATAGRAM_ROOM;
                each(*d, &batch.room[start..start + d.len.min(DATAGRAM_ROOM)]);
            }
        }
        Ok(read)
    }

    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.socket.send_to(buf, to)
    }
}

/// A received message as a [`Datagram`]; `None` without a source address
/// (not a UDP datagram's).
fn datagram(msg: &RecvMsg<'_, '_, SockaddrStorage>) -> Option<Datagram> {
    let from = msg.address.as_ref().and_then(socket_addr)?;
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
    Some(Datagram {
        len: msg.bytes,
        from,
        received_at,
    })
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
    use std::time::Instant;

    /// Reads until `want` datagrams came (or a deadline passes): each
    /// read's count, and the datagrams with their bytes.
    fn read_until(
        rx: &TimedSocket,
        batch: &mut RecvBatch,
        want: usize,
    ) -> (Vec<usize>, Vec<(Datagram, Vec<u8>)>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut counts, mut got) = (Vec::new(), Vec::new());
        while got.len() < want {
            assert!(Instant::now() < deadline, "only {} arrived", got.len());
            let n = rx
                .recv_batch(batch, |d, bytes| got.push((d, bytes.to_vec())))
                .unwrap();
            if n > 0 {
                counts.push(n);
            } else {
                std::thread::yield_now();
            }
        }
        (counts, got)
    }

    #[test]
    fn reads_what_waits_with_its_arrival_time_then_nothing() {
        let rx = TimedSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = RecvBatch::new();
        assert_eq!(
            rx.recv_batch(&mut batch, |_, _| panic!("nothing sent"))
                .unwrap(),
            0
        );
        let before = SystemTime::now();
        tx.send_to(b"one", rx.local_addr().unwrap()).unwrap();
        tx.send_to(b"two", rx.local_addr().unwrap()).unwrap();
        let (_, got) = read_until(&rx, &mut batch, 2);
        assert_eq!(got[0].1, b"one");
        assert_eq!(got[1].1, b"two");
        for (d, _) in &got {
            assert_eq!(d.from, tx.local_addr().unwrap());
            #[cfg(target_os = "linux")]
            {
                let at = d.received_at.expect("kernel timestamp");
                assert!(
                    at + Duration::from_millis(50) >= before,
                    "stamped before it was sent"
                );
                assert!(at <= SystemTime::now() + Duration::from_millis(50));
            }
        }
        assert_eq!(
            rx.recv_batch(&mut batch, |_, _| panic!("all read"))
                .unwrap(),
            0
        );
    }

    #[test]
    fn more_than_a_batch_is_read_a_batch_at_a_time_in_order() {
        let rx = TimedSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = RecvBatch::new();
        let sent = 2 * BATCH + 3;
        for i in 0..sent {
            tx.send_to(&vec![i as u8; 100 + i], rx.local_addr().unwrap())
                .unwrap();
        }
        let (counts, got) = read_until(&rx, &mut batch, sent);
        assert!(counts.iter().all(|&n| n <= BATCH), "{counts:?}");
        for (i, (d, bytes)) in got.iter().enumerate() {
            assert_eq!(d.len, 100 + i);
            assert_eq!(bytes, &vec![i as u8; 100 + i]);
        }
        // A datagram longer than the room for one is cut, not spilled into
        // the next one's room.
        tx.send_to(&[9u8; 3000], rx.local_addr().unwrap()).unwrap();
        tx.send_to(b"after", rx.local_addr().unwrap()).unwrap();
        let (_, got) = read_until(&rx, &mut batch, 2);
        assert_eq!(got[0].1.len(), DATAGRAM_ROOM);
        assert_eq!(got[1].1, b"after");
    }
}
