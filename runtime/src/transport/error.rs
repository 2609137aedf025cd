//! Why a channel failed, worded so that the user knows what to check.

use super::Phase;
use super::secure::{AuthFailure, is};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a channel could not be made or could not complete an exchange.
///
/// After any error in an exchange the channel is unusable ([`ChannelError::Unusable`]):
/// the parties no longer agree on where they are in the session.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The peer closed the connection or its process ended.
    #[error("peer disconnected during {during}")]
    Disconnected {
        /// Where this party was.
        during: Phase,
    },
    /// Nothing arrived from the peer for the configured receive timeout.
    #[error("no message from the peer for {waited:?} in {during}: is it running?")]
    Timeout {
        /// How long this party waited.
        waited: Duration,
        /// Where this party was.
        during: Phase,
    },
    /// The peer took none of this party's bytes for the configured send timeout.
    #[error("the peer accepted no data for {waited:?} in {during}: is it still reading?")]
    SendTimeout {
        /// How long this party waited.
        waited: Duration,
        /// Where this party was.
        during: Phase,
    },
    /// The peer's data failed authentication: altered on the way or sent under another key.
    #[error(
        "data from the peer failed authentication in {during}: it was altered on the way (a \
         man in the middle?) or sent under another key; nothing of it was used, and the run \
         stops"
    )]
    Tampered {
        /// Where this party was.
        during: Phase,
    },
    /// The Noise handshake failed: the two sides do not hold matching keys.
    #[error("the channel's keys do not match: {what}")]
    KeyMismatch {
        /// Who could not authenticate whom, and what to check.
        what: String,
    },
    /// An exchange did not complete within the overall deadline of one exchange.
    #[error(
        "{during} did not complete within {limit:?} (its deadline): the peer is too slow or \
         trickles its bytes"
    )]
    CallTimeout {
        /// The deadline.
        limit: Duration,
        /// Where this party was.
        during: Phase,
    },
    /// The peer's bytes are not a Comet frame.
    #[error("malformed frame from the peer in {during}: {what}")]
    Malformed {
        /// What was wrong.
        what: String,
        /// Where this party was.
        during: Phase,
    },
    /// The parties do not call the channel in the same order.
    #[error(
        "the parties are out of step: this party is in {ours}, the peer sent {theirs}; \
         both must run the same plan and make the same calls"
    )]
    OutOfStep {
        /// Where this party is.
        ours: Phase,
        /// Where the peer is.
        theirs: Phase,
    },
    /// The handshake found the parties incompatible, or was misused.
    #[error("handshake failed: {what}")]
    Handshake {
        /// What differs, naming both values.
        what: String,
    },
    /// No connection could be made to the listening party.
    #[error(
        "could not connect to {addr} after {attempts} attempt(s) over {waited:?}: {source}; \
         is the other party listening there?"
    )]
    Connect {
        /// The address tried.
        addr: String,
        /// How many attempts were made.
        attempts: u32,
        /// How long it tried.
        waited: Duration,
        /// The last attempt's error.
        source: io::Error,
    },
    /// Nobody connected to the listening party in time.
    #[error(
        "no party connected to {addr} within {waited:?}: was the other party started?{refused}"
    )]
    NoPeer {
        /// The address listened on.
        addr: SocketAddr,
        /// How long it waited.
        waited: Duration,
        /// The connections refused meanwhile (empty, or `; refused N connection(s)...`).
        refused: String,
    },
    /// The options cannot work (a zero timeout, no attempts).
    #[error("invalid channel options: {what}")]
    InvalidOptions {
        /// Which option, and why.
        what: String,
    },
    /// An earlier error left the channel in an unknown state.
    #[error("the channel failed in {failed} and cannot be used any more")]
    Unusable {
        /// Where the first error happened.
        failed: Phase,
    },
    /// Any other operating-system error.
    #[error("network error {during}: {source}")]
    Io {
        /// What this party was doing.
        during: String,
        /// The OS error.
        source: io::Error,
    },
}

impl ChannelError {
    /// Classifies an error of a read from the peer, waiting at most `timeout`.
    pub(crate) fn from_read(e: io::Error, during: Phase, timeout: Duration) -> Self {
        if is::<AuthFailure>(&e) {
            return ChannelError::Tampered { during };
        }
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ChannelError::Timeout {
                waited: timeout,
                during,
            },
            _ => Self::from_io(e, during),
        }
    }

    /// Classifies an error of a write to the peer, waiting at most `timeout`.
    pub(crate) fn from_write(e: io::Error, during: Phase, timeout: Duration) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ChannelError::SendTimeout {
                waited: timeout,
                during,
            },
            _ => Self::from_io(e, during),
        }
    }

    /// A lost connection is [`ChannelError::Disconnected`]; anything else stays an OS error.
    fn from_io(e: io::Error, during: Phase) -> Self {
        use io::ErrorKind::*;
        match e.kind() {
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected => {
                ChannelError::Disconnected { during }
            }
            _ => ChannelError::Io {
                during: format!("in {during}"),
                source: e,
            },
        }
    }
}
