//! What every transport shares: phase numbering, the out-of-step check, counting, and
//! refusing use after an error. A transport only supplies a [`Link`] that moves one
//! frame each way.

use super::frame::Received;
use super::hello::Hello;
use super::{ChannelError, ChannelStats, Phase};

/// Moves frames between the parties: the transport-specific part of a channel.
pub(crate) trait Link: Send {
    /// The largest frame's payload: a longer message travels as several frames.
    fn frame_bytes(&self) -> u64 {
        u64::MAX
    }

    /// Bytes on the wire for a message of `payload` bytes: its frames' headers included
    /// (and, encrypted, its records' lengths and tags).
    fn wire_bytes(&self, payload: usize) -> u64 {
        super::frame::wire_bytes(payload, self.frame_bytes())
    }

    /// Sends `msg` tagged with `phase` and, at the same time, receives the peer's next
    /// frame. Must not deadlock when both parties send large messages at once.
    fn swap(&mut self, phase: Phase, msg: &[u8]) -> Result<Received, ChannelError>;
}

/// A [`Link`] with the bookkeeping of a [`Channel`](super::Channel).
pub(crate) struct Session<L> {
    link: L,
    stats: ChannelStats,
    /// Rounds completed since the start (not reset with the stats).
    rounds: u64,
    /// Setup exchanges completed since the start.
    setups: u64,
    handshaken: bool,
    /// Where the first error happened, after which the session refuses to go on.
    failed: Option<Phase>,
}

impl<L: Link> Session<L> {
    /// A fresh session over `link`.
    pub(crate) fn new(link: L) -> Self {
        Session {
            link,
            stats: ChannelStats::default(),
            rounds: 0,
            setups: 0,
            handshaken: false,
            failed: None,
        }
    }

    /// One round (see [`Channel::exchange`](super::Channel::exchange)).
    pub(crate) fn exchange(&mut self, msg: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let payload = self.swap(Phase::Round(self.rounds + 1), msg)?;
        self.rounds += 1;
        let wire = (
            self.link.wire_bytes(msg.len()),
            self.link.wire_bytes(payload.len()),
        );
        self.stats.online.record(msg.len(), payload.len(), wire);
        Ok(payload)
    }

    /// One setup exchange, counted apart.
    pub(crate) fn exchange_setup(&mut self, msg: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let payload = self.swap(Phase::Setup(self.setups + 1), msg)?;
        self.setups += 1;
        let wire = (
            self.link.wire_bytes(msg.len()),
            self.link.wire_bytes(payload.len()),
        );
        self.stats.setup.record(msg.len(), payload.len(), wire);
        Ok(payload)
    }

    /// Swaps hellos and checks them; once, before any exchange; uncounted.
    pub(crate) fn handshake(&mut self, hello: &Hello) -> Result<Hello, ChannelError> {
        if self.handshaken || self.rounds + self.setups > 0 {
            return Err(ChannelError::Handshake {
                what: "the handshake must come once, before the first exchange".into(),
            });
        }
        let peer = Hello::decode(&self.swap(Phase::Handshake, &hello.encode())?);
        let checked = peer.and_then(|peer| hello.check_peer(&peer).map(|()| peer));
        self.handshaken = true;
        self.fail_on_error(Phase::Handshake, checked)
    }

    /// The link.
    pub(crate) fn link(&self) -> &L {
        &self.link
    }

    /// The link, to configure it.
    pub(crate) fn link_mut(&mut self) -> &mut L {
        &mut self.link
    }

    /// The counters.
    pub(crate) fn stats(&self) -> ChannelStats {
        self.stats
    }

    /// Zeroes the counters, not the phase numbering.
    pub(crate) fn reset_stats(&mut self) {
        self.stats = ChannelStats::default();
    }

    /// Swaps one frame in `phase` and checks the peer was in the same phase.
    fn swap(&mut self, phase: Phase, msg: &[u8]) -> Result<Vec<u8>, ChannelError> {
        if let Some(failed) = self.failed {
            return Err(ChannelError::Unusable { failed });
        }
        let received = self
            .link
            .swap(phase, msg)
            .and_then(|r| same_phase(phase, r));
        self.fail_on_error(phase, received)
    }

    /// Remembers an error so that later calls refuse.
    fn fail_on_error<T>(
        &mut self,
        phase: Phase,
        r: Result<T, ChannelError>,
    ) -> Result<T, ChannelError> {
        if r.is_err() {
            self.failed.get_or_insert(phase);
        }
        r
    }
}

/// The payload of `received` if the peer was in `ours` too.
fn same_phase(ours: Phase, received: Received) -> Result<Vec<u8>, ChannelError> {
    if received.phase != ours {
        return Err(ChannelError::OutOfStep {
            ours,
            theirs: received.phase,
        });
    }
    Ok(received.payload)
}
