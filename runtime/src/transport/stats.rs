//! Traffic counters: what the cost model's estimate is checked against.

/// The traffic of one kind of exchange, seen from one party.
///
/// Payload bytes are the messages alone, the quantity the compiler's cost estimate
/// predicts; wire bytes add the framing ([`FRAME_HEADER_BYTES`](super::FRAME_HEADER_BYTES)
/// per frame) and, on an encrypted channel, each record's length and tag
/// ([`RECORD_OVERHEAD_BYTES`](super::secure::RECORD_OVERHEAD_BYTES) per record of at most
/// [`RECORD_PLAINTEXT_BYTES`](super::secure::RECORD_PLAINTEXT_BYTES) bytes of frames).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Exchanges made (both parties count the same).
    pub rounds: u64,
    /// Message bytes this party sent.
    pub payload_bytes_sent: u64,
    /// Message bytes this party received.
    pub payload_bytes_received: u64,
    /// Bytes this party put on the wire, framing included.
    pub wire_bytes_sent: u64,
    /// Bytes this party took off the wire, framing included.
    pub wire_bytes_received: u64,
}

impl Traffic {
    /// Adds one exchange that sent `sent` and received `received` payload bytes, taking
    /// `wire.0` and `wire.1` bytes on the wire.
    pub(crate) fn record(&mut self, sent: usize, received: usize, wire: (u64, u64)) {
        self.rounds += 1;
        self.payload_bytes_sent += sent as u64;
        self.payload_bytes_received += received as u64;
        self.wire_bytes_sent += wire.0;
        self.wire_bytes_received += wire.1;
    }

    /// The traffic since the snapshot `before` (zero where `before` is larger, as after a
    /// reset).
    pub fn since(&self, before: &Traffic) -> Traffic {
        Traffic {
            rounds: self.rounds.saturating_sub(before.rounds),
            payload_bytes_sent: self
                .payload_bytes_sent
                .saturating_sub(before.payload_bytes_sent),
            payload_bytes_received: self
                .payload_bytes_received
                .saturating_sub(before.payload_bytes_received),
            wire_bytes_sent: self.wire_bytes_sent.saturating_sub(before.wire_bytes_sent),
            wire_bytes_received: self
                .wire_bytes_received
                .saturating_sub(before.wire_bytes_received),
        }
    }

    /// Payload bytes in both directions.
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes_sent + self.payload_bytes_received
    }
}

/// What a channel has carried, per-call rounds and one-off setup apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// The communication rounds ([`Channel::exchange`](super::Channel::exchange)).
    pub online: Traffic,
    /// The one-off setup exchanges
    /// ([`Channel::exchange_setup`](super::Channel::exchange_setup)).
    pub setup: Traffic,
}

impl ChannelStats {
    /// The traffic since the snapshot `before`: the cost of one phase of a run.
    pub fn since(&self, before: &ChannelStats) -> ChannelStats {
        ChannelStats {
            online: self.online.since(&before.online),
            setup: self.setup.since(&before.setup),
        }
    }
}
