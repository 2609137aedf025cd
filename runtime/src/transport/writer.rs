//! The sending half of a TCP channel: a thread of its own.
//!
//! In a round both parties send before they receive. With messages larger than the socket
//! buffers, a party that wrote and then read would block in its write while the peer blocks
//! in its own write: a deadlock. So each channel writes on a dedicated thread, fed one frame
//! at a time, while the caller's thread reads the peer's frame.
//!
//! Small frames (at most [`INLINE_FRAME_BYTES`]) are written on the caller's thread
//! instead: handing them to the thread costs two thread wake-ups, several times a loopback
//! round trip. This cannot deadlock: a deadlock needs both parties stuck writing round n
//! at once, and a party writes round n only after reading the peer's whole frame n-1, so
//! then each has read everything the other sent before: at most one small frame per
//! direction is unread, and TCP buffers far more than that (Linux's defaults: a 16 KiB send
//! buffer plus a receive window of 64 KiB or more). Were a kernel tuned below that, the
//! write timeout would still turn the stall into an error.

use super::Phase;
use super::frame::encode_frame_header;
use super::secure::{Keys, deadline_passed, records, seal};
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

/// A frame handed back by the thread with the outcome of writing it.
type Written = (Vec<u8>, io::Result<()>);
/// A message's frames and, encrypted, the nonce of its first record.
type Job = (Vec<u8>, u64);

/// Frames up to this size, header included, are written on the caller's thread.
pub(crate) const INLINE_FRAME_BYTES: usize = 16 << 10;

/// Spare frame buffers this much larger than needed are given back to the allocator.
const SHRINK_SLACK_BYTES: usize = 1 << 20;

/// The writer thread of one connection and the frame buffer it recycles.
pub(crate) struct Writer {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Written>,
    /// The last frame's buffer, reused so that large rounds do not reallocate.
    spare: Vec<u8>,
    /// A handle on the socket: small frames are written on it, and it is shut down to
    /// unblock the thread when the channel is dropped.
    socket: TcpStream,
    thread: Option<JoinHandle<()>>,
    /// Whether the thread holds a frame not yet reported by [`Writer::finish`].
    pending: bool,
    /// The largest frame's payload: longer messages are split.
    frame_bytes: u64,
    /// The keys of an encrypted channel, and the next record's nonce.
    keys: Option<Keys>,
    nonce: u64,
    /// The records of a small frame, sealed on the caller's thread.
    sealed: Vec<u8>,
}

impl Writer {
    /// Starts the thread writing to `stream`.
    /// With `keys`, the frames are sealed into records (on the thread for large ones).
    pub(crate) fn spawn(
        stream: &TcpStream,
        frame_bytes: u64,
        keys: Option<Keys>,
    ) -> io::Result<Self> {
        let (jobs, job_rx) = sync_channel::<Job>(1);
        let (done_tx, done) = sync_channel::<Written>(1);
        let out = stream.try_clone()?;
        let thread_keys = keys.clone();
        let thread = std::thread::Builder::new()
            .name("comet-tcp-writer".into())
            .spawn(move || write_frames(out, job_rx, done_tx, thread_keys))?;
        Ok(Writer {
            jobs: Some(jobs),
            done,
            spare: Vec::new(),
            socket: stream.try_clone()?,
            thread: Some(thread),
            pending: false,
            frame_bytes,
            keys,
            nonce: 0,
            sealed: Vec::new(),
        })
    }

    /// Starts sending `msg` as the frame of `phase`: a small frame is written at once, a
    /// large one is handed to the thread.
    pub(crate) fn start(&mut self, phase: Phase, msg: &[u8]) -> io::Result<()> {
        let frame = self.frame_buffer(phase, msg);
        if frame.len() <= INLINE_FRAME_BYTES {
            let written = match &self.keys {
                Some(keys) => {
                    self.sealed.clear();
                    seal(keys, &mut self.nonce, &frame, &mut self.sealed);
                    self.socket.write_all(&self.sealed)
                }
                None => self.socket.write_all(&frame),
            };
            self.spare = frame;
            return written;
        }
        let nonce = self.nonce;
        if self.keys.is_some() {
            self.nonce += records(frame.len() as u64);
        }
        let jobs = self.jobs.as_ref().expect("jobs live until drop");
        jobs.send((frame, nonce)).map_err(|_| writer_gone())?;
        self.pending = true;
        Ok(())
    }

    /// Waits until the frame given to [`Writer::start`] is handed to the OS, at most until
    /// `deadline` (then the socket is shut down: the peer took too long to read it).
    pub(crate) fn finish(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        if !std::mem::take(&mut self.pending) {
            return Ok(());
        }
        let received = match deadline {
            None => self.done.recv().map_err(|_| writer_gone()),
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                self.done.recv_timeout(left).map_err(|e| match e {
                    RecvTimeoutError::Timeout => {
                        let _ = self.socket.shutdown(Shutdown::Both);
                        deadline_passed()
                    }
                    RecvTimeoutError::Disconnected => writer_gone(),
                })
            }
        };
        let (buffer, result) = received?;
        self.spare = buffer;
        result
    }

    /// The header and `msg` in the recycled buffer.
    /// The message's frames, each of at most `frame_bytes` of payload, in one buffer.
    fn frame_buffer(&mut self, phase: Phase, msg: &[u8]) -> Vec<u8> {
        let step = usize::try_from(self.frame_bytes)
            .unwrap_or(usize::MAX)
            .max(1);
        let n = msg.len().div_ceil(step).max(1);
        let needed = n * super::FRAME_HEADER_BYTES as usize + msg.len();
        let mut frame = std::mem::take(&mut self.spare);
        if frame.capacity() > 2 * needed + SHRINK_SLACK_BYTES {
            frame = Vec::new();
        }
        frame.clear();
        frame.reserve_exact(needed);
        for k in 0..n {
            let part = &msg[(k * step).min(msg.len())..((k + 1) * step).min(msg.len())];
            frame.extend_from_slice(&encode_frame_header(phase, part.len(), k + 1 < n));
            frame.extend_from_slice(part);
        }
        frame
    }
}

impl Drop for Writer {
    /// Stops the thread: shutting the socket down unblocks a write stuck on a stalled peer.
    fn drop(&mut self) {
        let _ = self.socket.shutdown(Shutdown::Both);
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread's loop: writes each frame (sealed into records with `keys`), hands it back
/// with the outcome, stops at the first error or when the channel is dropped.
fn write_frames(
    mut out: TcpStream,
    jobs: Receiver<Job>,
    done: SyncSender<Written>,
    keys: Option<Keys>,
) {
    let mut sealed = Vec::new();
    for (frame, mut nonce) in jobs {
        let result = match &keys {
            Some(keys) => {
                sealed.clear();
                seal(keys, &mut nonce, &frame, &mut sealed);
                out.write_all(&sealed)
            }
            None => out.write_all(&frame),
        };
        let failed = result.is_err();
        if done.send((frame, result)).is_err() || failed {
            return;
        }
    }
}

/// The error when the thread has stopped after an earlier failure.
fn writer_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the writer thread has stopped")
}
