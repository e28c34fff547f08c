//! RTP ports: each leg takes an even port for RTP and the next for RTCP
//! (RFC 3550 §11) from the configured range, and gives both back when the
//! leg ends. The pair is drawn at random among the free ones, so a call's
//! port cannot be guessed from the last one's (a guessed port is where a
//! hijacker would send).

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
    in_use: HashSet<u16>,
}

/// Random draws before a pair is looked for in order (from a random
/// place): with the range nearly full, draws mostly hit pairs in use.
const RANDOM_DRAWS: usize = 16;

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

    /// Binds a free pair drawn at random, skipping ports another program
    /// holds.
    pub fn allocate(self: &Arc<Self>) -> Result<RtpSockets, NoFreePort> {
        let pairs = self.capacity();
        // Pairs another program holds, not to be drawn again this time.
        let mut taken = HashSet::new();
        for _ in 0..pairs {
            let Some(port) = self.reserve(&taken) else {
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
                    // Taken by someone else: skipped this time, tried again
                    // by later calls.
                    taken.insert(port);
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

    /// Marks a free pair (not in `skip`) as in use and returns its RTP port.
    fn reserve(&self, skip: &HashSet<u16>) -> Option<u16> {
        let pairs = self.capacity();
        if pairs == 0 {
            return None;
        }
        let port_of = |i: usize| self.first + 2 * i as u16;
        let mut s = self.state.lock().ok()?;
        let free = |s: &PortState, port: u16| !s.in_use.contains(&port) && !skip.contains(&port);
        let drawn = (0..RANDOM_DRAWS)
            .map(|_| port_of(rand::random_range(0..pairs)))
            .find(|&p| free(&s, p));
        let port = drawn.or_else(|| {
            let start = rand::random_range(0..pairs);
            (0..pairs)
                .map(|k| port_of((start + k) % pairs))
                .find(|&p| free(&s, p))
        })?;
        s.in_use.insert(port);
        Some(port)
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

    #[test]
    fn pairs_are_drawn_at_random_not_in_sequence() {
        // 64 pairs; calls come and go one at a time (each freed before the
        // next), as a hijacker probing for the next call's port would see.
        let base = 50000 + (std::process::id() % 64) as u16 * 128;
        let pool = RtpPorts::new("127.0.0.1".parse().unwrap(), base, base + 127);
        assert_eq!(pool.capacity(), 64);
        let mut ports = Vec::new();
        for _ in 0..24 {
            let s = pool.allocate().unwrap();
            assert!((base..base + 127).contains(&s.port) && s.port.is_multiple_of(2));
            ports.push(s.port);
        }
        assert_eq!(pool.in_use(), 0);
        let steps_of_two = ports.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(steps_of_two < 6, "ports follow each other: {ports:?}");
        let distinct: HashSet<_> = ports.iter().collect();
        assert!(distinct.len() >= 12, "too few distinct ports: {ports:?}");
        // Ports in use are never handed out twice, up to the last free pair.
        let held: Vec<_> = (0..64).filter_map(|_| pool.allocate().ok()).collect();
        let distinct: HashSet<_> = held.iter().map(|s| s.port).collect();
        assert_eq!(distinct.len(), held.len());
        assert!(held.len() >= 60, "only {} pairs bound", held.len());
        assert!(pool.allocate().is_err());
    }
}
