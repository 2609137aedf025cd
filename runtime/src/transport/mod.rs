//! Transport: the channel between the two parties, in memory or over TCP.
//!
//! A **round** is one exchange in which both parties send, then receive (ARCHITECTURE.md,
//! "Runtime"; PROTOCOLS.md: "all messages of one round travel in one exchange"). So the
//! only communication primitive is [`Channel::exchange`]: this party sends its message of
//! the round (possibly empty) and gets the peer's. Both parties call it exactly once per
//! round, so both count the same rounds, and the counts are compared with the plan's cost
//! estimate: payload bytes are the messages alone, framing is counted apart as wire bytes.
//!
//! Traffic that happens once per session (opening fixed-weight masks, say) goes through
//! [`Channel::exchange_setup`] and is reported apart ([`ChannelStats::setup`]), so per-call
//! figures stay comparable with the per-call estimate. [`Channel::handshake`] checks, before
//! any exchange, that the two parties run the same protocol version, the same plan and the
//! same session, and that they are not the same party; it is not counted at all.
//!
//! Every frame carries its phase (handshake, setup exchange n, round n), so parties that
//! fall out of step are told so at once ([`ChannelError::OutOfStep`]) instead of reading
//! one another's bytes as the wrong values. A stalled or vanished peer is an error within a
//! configured time, never a hang; after any error a channel refuses further use.
//!
//! Protocol code (STYLE.md, "Core vs IO") takes `&mut impl Channel` and never sees which
//! transport it runs on: [`mem_pair`] for tests and single-process runs, [`TcpChannel`]
//! between processes.

mod error;
pub(crate) mod frame;
mod hello;
mod mem;
pub mod secure;
mod session;
mod stats;
mod tcp;
mod writer;

#[cfg(test)]
mod tcp_tests;
#[cfg(test)]
mod tests;

pub use error::ChannelError;
pub use frame::{FRAME_HEADER_BYTES, Phase};
pub use hello::Hello;
pub use mem::{DEFAULT_RECV_TIMEOUT, MemChannel, mem_pair, mem_pair_with_timeout};
pub use secure::{
    ChannelKey, DealerAuth, DealerIdentity, DealerKeypair, DealerPublicKey, PartyKey, Security,
};
pub use stats::{ChannelStats, Traffic};
pub(crate) use tcp::connect_stream;
pub use tcp::{TcpChannel, TcpListenerHandle, TcpOptions};

/// One party's end of the link to the other party.
///
/// Every method that communicates must be called by both parties in the same order:
/// the channel checks this and fails with [`ChannelError::OutOfStep`] otherwise.
pub trait Channel: Send {
    /// One communication round: sends `msg` (possibly empty) and returns the peer's
    /// message of the same round. Counted in [`ChannelStats::online`].
    fn exchange(&mut self, msg: &[u8]) -> Result<Vec<u8>, ChannelError>;

    /// Like [`Channel::exchange`], for one-off setup traffic (opening fixed masks once per
    /// session): counted in [`ChannelStats::setup`], so that per-call figures exclude it.
    fn exchange_setup(&mut self, msg: &[u8]) -> Result<Vec<u8>, ChannelError>;

    /// Swaps `hello` with the peer's and checks that the two agree (see
    /// [`Hello::check_peer`]); returns the peer's. Allowed once, before any exchange; not
    /// counted in the statistics.
    fn handshake(&mut self, hello: &Hello) -> Result<Hello, ChannelError>;

    /// The traffic counted since the channel was made or last [`reset`](Self::reset_stats).
    fn stats(&self) -> ChannelStats;

    /// Zeroes the statistics. Round numbers in errors keep counting from the start.
    fn reset_stats(&mut self);

    /// Bounds the messages the peer may send from now on (bytes of one setup exchange and
    /// of one round), as derived from the plan; a larger one is
    /// [`ChannelError::Malformed`] before it is read. In memory: nothing to bound.
    fn limit_messages(&mut self, _setup_bytes: u64, _round_bytes: u64) {}

    /// The traffic since `before`, a snapshot taken earlier with [`Channel::stats`]: the
    /// cost of one phase (a decode step, say) without resetting the totals.
    fn stats_since(&self, before: &ChannelStats) -> ChannelStats {
        self.stats().since(before)
    }
}

impl<C: Channel + ?Sized> Channel for Box<C> {
    fn exchange(&mut self, msg: &[u8]) -> Result<Vec<u8>, ChannelError> {
        (**self).exchange(msg)
    }

    fn exchange_setup(&mut self, msg: &[u8]) -> Result<Vec<u8>, ChannelError> {
        (**self).exchange_setup(msg)
    }

    fn handshake(&mut self, hello: &Hello) -> Result<Hello, ChannelError> {
        (**self).handshake(hello)
    }

    fn stats(&self) -> ChannelStats {
        (**self).stats()
    }

    fn reset_stats(&mut self) {
        (**self).reset_stats()
    }

    fn limit_messages(&mut self, setup_bytes: u64, round_bytes: u64) {
        (**self).limit_messages(setup_bytes, round_bytes)
    }
}
