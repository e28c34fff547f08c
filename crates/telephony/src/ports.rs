//! RTP ports: each leg takes an even port for RTP and the next for RTCP
//! (RFC 3550 §11) from the configured range, and gives both back when the
//! leg ends.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::rtp_socket::TimedSocket;

/// The pool of RTP ports of one engine.
#[derive(Debug)]
pub struct RtpPorts {
    ip: IpAddr,
    first: u16,
    last: u16,
    state: Mutex<PortState>,
}

#[derive(Debug)]
struct PortState {
    next: u16,
    in_use: HashSet<u16>,
}

/// A leg's bound RTP and RTCP sockets; dropping it frees the ports.
#[derive(Debug)]
pub struct RtpSockets {
    pub rtp: TimedSocket,
    pub rtcp: TimedSocket,
    pub port: u16,
    pool: Arc<RtpPorts>,
}

impl Drop for RtpSockets {
    fn drop(&mut self) {
        if let Ok(mut s) = self.pool.state.lock() {
            s.in_use.remove(&self.port);
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no free RTP port pair in {first}-{last}")]
pub struct NoFreePort {
    pub first: u16,
    pub last: u16,
}

impl RtpPorts {
    /// Ports `first..=last` on `ip` (rounded in to whole even/odd pairs).
    pub fn new(ip: IpAddr, first: u16, last: u16) -> Arc<Self> {
        let first = first + (first % 2);
        Arc::new(Self {
            ip,
            first,
            last,
            state: Mutex::new(PortState {
                next: first,
                in_use: HashSet::new(),
            }),
        })
    }

    /// Pairs in the range.
    pub fn capacity(&self) -> usize {
        if self.last <= self.first {
            return 0;
        }
        (self.last - self.first).div_ceil(2) as usize
    }

    /// Binds the next free pair, skipping ports another program holds.
    pub fn allocate(self: &Arc<Self>) -> Result<RtpSockets, NoFreePort> {
        let pairs = self.capacity();
        for _ in 0..pairs {
            let Some(port) = self.reserve() else {
                break;
            };
            let rtp = TimedSocket::bind(SocketAddr::new(self.ip, port));
            let rtcp = TimedSocket::bind(SocketAddr::new(self.ip, port + 1));
            match (rtp, rtcp) {
                (Ok(rtp), Ok(rtcp)) => {
                    return Ok(RtpSockets {
                        rtp,
                        rtcp,
                        port,
                        pool: self.clone(),
                    });
                }
                _ => {
                    // Taken by someone else: leave it marked until the next round.
                    if let Ok(mut s) = self.state.lock() {
                        s.in_use.remove(&port);
                    }
                }
            }
        }
        Err(NoFreePort {
            first: self.first,
            last: self.last,
        })
    }

    fn reserve(&self) -> Option<u16> {
        let mut s = self.state.lock().ok()?;
        for _ in 0..self.capacity() {
            let port = s.next;
            s.next = if port.saturating_add(3) > self.last {
                self.first
            } else {
                port + 2
            };
            if s.in_use.insert(port) {
                return Some(port);
            }
        }
        None
    }

    /// Pairs in use now.
    pub fn in_use(&self) -> usize {
        self.state.lock().map(|s| s.in_use.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_distinct_and_reused_after_drop() {
        let base = 41000 + (std::process::id() % 1000) as u16 * 8;
        let pool = RtpPorts::new("127.0.0.1".parse().unwrap(), base, base + 3);
        assert_eq!(pool.capacity(), 2);
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        assert_ne!(a.port, b.port);
        assert_eq!(a.port % 2, 0);
        assert_eq!(a.rtcp.local_addr().unwrap().port(), a.port + 1);
        assert!(pool.allocate().is_err());
        let freed = a.port;
        drop(a);
        assert_eq!(pool.in_use(), 1);
        let c = pool.allocate().unwrap();
        assert_eq!(c.port, freed);
        drop((b, c));
    }
}
