//! The frame format: what one party's message of one phase looks like on the wire.
//!
//! A frame is an 8-byte little-endian payload length, a 9-byte tag (a kind byte and an
//! 8-byte little-endian index) naming the [`Phase`] the sender is in, then the payload.
//! The length comes first so that a malformed or foreign peer (a huge length) is refused
//! before anything is allocated; the tag lets the receiver notice parties out of step.
//! A message longer than the frame size travels as several frames of its phase, every one
//! but the last with the kind's high bit ([`MORE`]) set; the receiver bounds each frame and
//! the whole message.

use std::fmt;
use std::io::{self, Read};

/// Bytes of framing in front of every payload: the length (8) and the phase tag (9).
pub const FRAME_HEADER_BYTES: u64 = 17;

/// Which exchange of the session a frame belongs to, as both parties count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The [`Hello`](super::Hello) swap before the first exchange.
    Handshake,
    /// The n-th one-off setup exchange (1-based).
    Setup(u64),
    /// The n-th communication round since the channel was made (1-based).
    Round(u64),
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Handshake => f.write_str("the handshake"),
            Phase::Setup(n) => write!(f, "setup exchange {n}"),
            Phase::Round(n) => write!(f, "round {n}"),
        }
    }
}

/// A frame read from the peer.
#[derive(Debug)]
pub(crate) struct Received {
    /// The phase the peer was in when it sent the frame.
    pub phase: Phase,
    /// The message.
    pub payload: Vec<u8>,
}

/// Why a frame could not be read: the stream failed, or its bytes make no sense.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The read failed (timeout, end of stream, reset...).
    Io(io::Error),
    /// The bytes are not a frame; says what was wrong.
    Malformed(String),
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// The kind byte's flag of a frame that more frames of the same message follow.
pub(crate) const MORE: u8 = 0x80;

/// Frames of a message of `payload_len` bytes in frames of at most `frame_bytes`.
pub(crate) fn frames(payload_len: usize, frame_bytes: u64) -> u64 {
    (payload_len as u64).div_ceil(frame_bytes.max(1)).max(1)
}

/// Bytes on the wire for a payload of `payload_len` bytes in frames of `frame_bytes`.
pub(crate) fn wire_bytes(payload_len: usize, frame_bytes: u64) -> u64 {
    frames(payload_len, frame_bytes) * FRAME_HEADER_BYTES + payload_len as u64
}

/// The header of a message's last (or only) frame of `payload_len` bytes sent in `phase`.
#[cfg(test)]
pub(crate) fn encode_header(phase: Phase, payload_len: usize) -> [u8; FRAME_HEADER_BYTES as usize] {
    encode_frame_header(phase, payload_len, false)
}

/// The header of a frame of `payload_len` bytes sent in `phase`; `more`: frames of the
/// same message follow.
pub(crate) fn encode_frame_header(
    phase: Phase,
    payload_len: usize,
    more: bool,
) -> [u8; FRAME_HEADER_BYTES as usize] {
    let (kind, index) = match phase {
        Phase::Handshake => (0u8, 0u64),
        Phase::Setup(n) => (1, n),
        Phase::Round(n) => (2, n),
    };
    let mut header = [0u8; FRAME_HEADER_BYTES as usize];
    header[..8].copy_from_slice(&(payload_len as u64).to_le_bytes());
    header[8] = if more { kind | MORE } else { kind };
    header[9..].copy_from_slice(&index.to_le_bytes());
    header
}

/// The payload length announced by `bytes`, refused above `max_frame_bytes`.
pub(crate) fn decode_len(bytes: [u8; 8], max_frame_bytes: u64) -> Result<u64, String> {
    let len = u64::from_le_bytes(bytes);
    if len > max_frame_bytes {
        return Err(format!(
            "the peer announced a frame of {len} bytes, more than the maximum of \
             {max_frame_bytes} bytes: is it a Comet party of the same version?"
        ));
    }
    Ok(len)
}

/// The phase named by a frame's tag (whether more frames follow aside).
pub(crate) fn decode_phase(tag: [u8; 9]) -> Result<Phase, String> {
    let index = u64::from_le_bytes(tag[1..].try_into().expect("8 bytes"));
    match (tag[0] & !MORE, index) {
        (0, 0) => Ok(Phase::Handshake),
        (1, n) if n > 0 => Ok(Phase::Setup(n)),
        (2, n) if n > 0 => Ok(Phase::Round(n)),
        (kind, n) => Err(format!(
            "the peer sent a frame of unknown kind {kind} (index {n})"
        )),
    }
}

/// Reads one message of one frame, refusing payloads above `max_frame_bytes`.
#[cfg(test)]
pub(crate) fn read_frame<R: Read>(r: &mut R, max_frame_bytes: u64) -> Result<Received, FrameError> {
    read_message(r, max_frame_bytes, max_frame_bytes)
}

/// Reads one message, frame after frame while the peer marks that more follow: each frame
/// at most `max_frame_bytes`, all of them of one phase and together at most
/// `max_message_bytes`.
pub(crate) fn read_message<R: Read>(
    r: &mut R,
    max_frame_bytes: u64,
    max_message_bytes: u64,
) -> Result<Received, FrameError> {
    let (phase, mut more, mut payload) = (None::<Phase>, true, Vec::new());
    let mut phase = phase;
    while more {
        let mut len = [0u8; 8];
        r.read_exact(&mut len)?;
        let len = decode_len(len, max_frame_bytes).map_err(FrameError::Malformed)?;
        let mut tag = [0u8; 9];
        r.read_exact(&mut tag)?;
        let this = decode_phase(tag).map_err(FrameError::Malformed)?;
        if phase.is_some_and(|p| p != this) {
            let what = format!(
                "a frame of {this} inside a message of {}",
                phase.expect("set")
            );
            return Err(FrameError::Malformed(what));
        }
        let total = payload.len() as u64 + len;
        if total > max_message_bytes {
            return Err(FrameError::Malformed(format!(
                "the peer's message grows past the maximum of {max_message_bytes} bytes"
            )));
        }
        read_payload(r, len, &mut payload)?;
        (phase, more) = (Some(this), tag[0] & MORE != 0);
    }
    let phase = phase.expect("at least one frame");
    Ok(Received { phase, payload })
}

/// Appends exactly `len` bytes to `payload`; a short read is the peer's end of stream.
fn read_payload<R: Read>(r: &mut R, len: u64, payload: &mut Vec<u8>) -> Result<(), FrameError> {
    let capacity = usize::try_from(len).unwrap_or(usize::MAX);
    payload.try_reserve_exact(capacity).map_err(|_| {
        FrameError::Malformed(format!("no memory for the peer's frame of {len} bytes"))
    })?;
    let before = payload.len();
    r.take(len).read_to_end(payload)?;
    if ((payload.len() - before) as u64) < len {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(())
}
