//! The media bus of a live call: what the rest of Switchyard (the agent, a
//! joined human, a recorder) uses to hear and speak on it. Frames are 20 ms
//! of 8 kHz mono PCM.
//!
//! Back-pressure never reaches the RTP loop: the far end's frames and
//! digits go out on broadcast channels (a slow listener loses the oldest
//! frames and is told how many), and frames to send come from a bounded
//! queue the loop only ever polls; a producer that outruns real time waits
//! on that queue, never the loop.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

/// One second of frames in each direction.
const FRAMES_BUFFERED: usize = 50;

/// The handle other parts of Switchyard hold.
#[derive(Clone, Debug)]
pub struct MediaBus {
    far: broadcast::Sender<Arc<[i16]>>,
    digits: broadcast::Sender<char>,
    near: mpsc::Sender<Vec<i16>>,
}

/// The RTP loop's end of the bus.
#[derive(Debug)]
pub struct BusPort {
    pub(crate) far: broadcast::Sender<Arc<[i16]>>,
    pub(crate) digits: broadcast::Sender<char>,
    pub(crate) near: mpsc::Receiver<Vec<i16>>,
}

pub fn media_bus() -> (MediaBus, BusPort) {
    let (far, _) = broadcast::channel(FRAMES_BUFFERED);
    let (digits, _) = broadcast::channel(32);
    let (near_tx, near_rx) = mpsc::channel(FRAMES_BUFFERED);
    (
        MediaBus {
            far: far.clone(),
            digits: digits.clone(),
            near: near_tx,
        },
        BusPort {
            far,
            digits,
            near: near_rx,
        },
    )
}

impl MediaBus {
    /// The far end's audio, one frame per 20 ms from now on.
    pub fn listen(&self) -> broadcast::Receiver<Arc<[i16]>> {
        self.far.subscribe()
    }

    /// Digits the far end sends (RFC 4733), each once.
    pub fn digits(&self) -> broadcast::Receiver<char> {
        self.digits.subscribe()
    }

    /// Queues one frame to send; waits while a second of audio is already
    /// queued. Fails once the call has ended.
    pub async fn speak(&self, frame: Vec<i16>) -> Result<(), CallEnded> {
        self.near.send(frame).await.map_err(|_| CallEnded)
    }
}

#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the call has ended")]
pub struct CallEnded;
