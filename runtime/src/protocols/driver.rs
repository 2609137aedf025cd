//! Running two parties in one process (tests, single-process runs): each party's code is a
//! closure over its end of [`mem_pair`], run on its own thread. The only IO glue of the
//! protocols lives here: [`round`] packs a message, makes one exchange and unpacks the
//! peer's.

use std::thread;

use super::{MessageError, pack, unpack};
use crate::transport::{Channel, ChannelError, ChannelStats, MemChannel, mem_pair};

/// A round failed: the channel, or a malformed peer message.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    /// The channel failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The peer's message was malformed.
    #[error(transparent)]
    Message(#[from] MessageError),
}

/// One online round: sends `msg`, returns the peer's message.
///
/// # Errors
/// If the exchange fails or the peer's bytes are not whole `u64`s.
pub fn round<C: Channel + ?Sized>(ch: &mut C, msg: &[u64]) -> Result<Vec<u64>, RoundError> {
    Ok(unpack(&ch.exchange(&pack(msg))?)?)
}

/// One online round of a protocol whose messages are bytes (the boolean ones): sends
/// `msg`, returns the peer's bytes.
///
/// # Errors
/// If the exchange fails.
pub fn round_bytes<C: Channel + ?Sized>(ch: &mut C, msg: &[u8]) -> Result<Vec<u8>, RoundError> {
    Ok(ch.exchange(msg)?)
}

/// One setup exchange (counted apart from the online rounds).
///
/// # Errors
/// As [`round`].
pub fn setup_round<C: Channel + ?Sized>(ch: &mut C, msg: &[u64]) -> Result<Vec<u64>, RoundError> {
    Ok(unpack(&ch.exchange_setup(&pack(msg))?)?)
}

/// What one party's closure returned, and its channel's statistics.
#[derive(Debug)]
pub struct PartyRun<T> {
    /// The closure's result.
    pub output: T,
    /// What the party's channel counted.
    pub stats: ChannelStats,
}

/// Runs `f0` as party 0 and `f1` as party 1 on two threads over [`mem_pair`].
///
/// # Panics
/// If either closure panics.
pub fn run_two_party<T0, T1, F0, F1>(f0: F0, f1: F1) -> (PartyRun<T0>, PartyRun<T1>)
where
    T0: Send,
    T1: Send,
    F0: FnOnce(&mut MemChannel) -> T0 + Send,
    F1: FnOnce(&mut MemChannel) -> T1 + Send,
{
    let (mut c0, mut c1) = mem_pair();
    thread::scope(|s| {
        let h0 = s.spawn(move || run_one(f0, &mut c0));
        let h1 = s.spawn(move || run_one(f1, &mut c1));
        (join(h0), join(h1))
    })
}

fn run_one<T>(f: impl FnOnce(&mut MemChannel) -> T, ch: &mut MemChannel) -> PartyRun<T> {
    let output = f(ch);
    PartyRun {
        output,
        stats: ch.stats(),
    }
}

fn join<T>(h: thread::ScopedJoinHandle<'_, PartyRun<T>>) -> PartyRun<T> {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}
