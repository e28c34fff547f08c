//! The live recordings' disk writes, on a thread of their own. A media
//! thread ticks hundreds of calls every 20 ms; a write that blocks (a
//! journal commit, a slow or full disk) must not hold them up. So the
//! recorder's sink only queues its positioned writes here (the audio since
//! the last checkpoint, then the header, every few seconds per call), and
//! this thread makes them in order, a batch at a time. Closing a file is
//! queued too: its callback runs once every write before it is on disk (in
//! the page cache), so a call's recording is complete before the call
//! reports it PROCESSING.
//!
//! The queue is unbounded on purpose: what a stalled disk has not taken yet
//! waits in memory (16 KB per call per second) rather than being dropped.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use switchyard_media::recorder::RecordingSink;

type OnClosed = Box<dyn FnOnce(Option<String>) + Send>;

enum Job {
    Open {
        id: u64,
        file: File,
    },
    Write {
        id: u64,
        offset: u64,
        bytes: Vec<u8>,
    },
    Close {
        id: u64,
        then: OnClosed,
    },
}

/// The writer thread's queue; the thread ends once this and every file it
/// handed out are dropped.
pub struct RecordingWriter {
    jobs: mpsc::Sender<Job>,
    next_id: AtomicU64,
}

impl RecordingWriter {
    pub fn start() -> io::Result<Self> {
        let (jobs, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("recording-writer".into())
            .spawn(move || run(rx))?;
        Ok(Self {
            jobs,
            next_id: AtomicU64::new(0),
        })
    }

    /// A recording sink whose writes go to `file` through this thread.
    pub fn open(&self, file: File) -> io::Result<QueuedFile> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.jobs
            .send(Job::Open { id, file })
            .map_err(|_| stopped())?;
        Ok(QueuedFile {
            id,
            jobs: self.jobs.clone(),
        })
    }
}

/// A file written by the [`RecordingWriter`]'s thread.
pub struct QueuedFile {
    id: u64,
    jobs: mpsc::Sender<Job>,
}

impl QueuedFile {
    /// Closes the file once the writes queued before are made; `then` is
    /// given the first write error, if there was one.
    pub fn close(self, then: impl FnOnce(Option<String>) + Send + 'static) {
        let then: OnClosed = Box::new(then);
        if let Err(mpsc::SendError(Job::Close { then, .. })) =
            self.jobs.send(Job::Close { id: self.id, then })
        {
            then(Some(stopped().to_string()));
        }
    }
}

impl RecordingSink for QueuedFile {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.jobs
            .send(Job::Write {
                id: self.id,
                offset,
                bytes: buf.to_vec(),
            })
            .map_err(|_| stopped())
    }
}

fn stopped() -> io::Error {
    io::Error::other("the recording writer has stopped")
}

/// How long the thread rests after emptying its queue. While it rests it
/// is not waiting on the channel, so a sender's `send` is a push and wakes
/// nobody: with a thousand live calls queueing their writes, waking the
/// thread for every one cost a third of what the writes did. A close waits
/// this long at most.
const REST: Duration = Duration::from_millis(50);

fn run(jobs: mpsc::Receiver<Job>) {
    // Each open file and its first error (later writes to it are skipped).
    let mut files: HashMap<u64, (File, Option<String>)> = HashMap::new();
    // Blocks only when the queue is empty after a rest (nothing is live).
    while let Ok(first) = jobs.recv() {
        let mut next = Some(first);
        while let Some(job) = next {
            run_job(&mut files, job);
            next = jobs.try_recv().ok();
        }
        std::thread::sleep(REST);
    }
}

fn run_job(files: &mut HashMap<u64, (File, Option<String>)>, job: Job) {
    match job {
        Job::Open { id, file } => {
            files.insert(id, (file, None));
        }
        Job::Write { id, offset, bytes } => {
            if let Some((file, error @ None)) = files.get_mut(&id)
                && let Err(e) = write_at(file, &bytes, offset)
            {
                tracing::warn!(error = %e, "recording write failed");
                *error = Some(e.to_string());
            }
        }
        Job::Close { id, then } => {
            let error = match files.remove(&id) {
                Some((_, error)) => error,
                None => Some("the recording was never opened".into()),
            };
            then(error);
        }
    }
}

fn write_at(file: &mut File, bytes: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_media::recorder::{RecordingReader, StereoRecorder};

    #[test]
    fn writes_land_in_order_before_the_close_reports() {
        let dir = std::env::temp_dir().join(format!("sy-recwriter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("call.wav");
        let writer = RecordingWriter::start().unwrap();
        let sink = writer.open(File::create(&path).unwrap()).unwrap();
        let mut rec = StereoRecorder::new(sink, 8000, 160).unwrap();
        let tone: Vec<i16> = (0..160).map(|i| (i * 100) as i16).collect();
        for _ in 0..120 {
            rec.tick(Some(&tone), None).unwrap();
        }
        rec.checkpoint().unwrap();
        let (tx, rx) = mpsc::channel();
        rec.into_sink()
            .unwrap()
            .close(move |error| tx.send(error).unwrap());
        let error = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("close reported");
        assert_eq!(error, None);
        let reader = RecordingReader::new(File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.frames, 120 * 160);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_is_reported_at_close() {
        let dir = std::env::temp_dir().join(format!("sy-recwriter-ro-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("call.wav");
        std::fs::write(&path, b"").unwrap();
        // Opened read-only: every write fails.
        let writer = RecordingWriter::start().unwrap();
        let mut sink = writer.open(File::open(&path).unwrap()).unwrap();
        sink.write_all_at(b"data", 0).unwrap();
        let (tx, rx) = mpsc::channel();
        sink.close(move |error| tx.send(error).unwrap());
        let error = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("close reported");
        assert!(error.is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
