//! The dealer service's wire format (docs/runtime.md, "Dealer service"): what a party and
//! the dealer say to each other over one plain TCP connection, and the errors of both
//! sides. Every message has a kind byte or a fixed size and every length field is capped,
//! so nothing unauthenticated can claim more than [`MAX_CHUNK_BYTES`] of memory. The
//! handshake (`PartyHello`, then `Grant` or a refusal) lives here alone, so that an
//! encrypted, authenticated channel (issue 13) can wrap it in one place.
//!
//! Integers are little-endian.
//!
//! Party → dealer:
//!
//! | message | bytes |
//! |---|---|
//! | hello | magic `comet-dl` (8), version (4), party (1), plan digest (32): 45 |
//! | call | kind 1 (1), session id (32), call index (8), `seq` (8), `past` (8): 57 |
//!
//! Dealer → party:
//!
//! | message | bytes |
//! |---|---|
//! | session | kind 1, plan digest (32), session id (32), party seed (32), common seed (32): 129 |
//! | refused | kind 2, length (4, ≤ [`MAX_REASON_BYTES`]), UTF-8 reason |
//! | chunk | kind 3, length (4, 1..=[`MAX_CHUNK_BYTES`]), body bytes |
//! | end | kind 4, call index (8), the call's body bytes (8): 17 |
//!
//! A party sends its hello and gets a session (or a refusal); then, per call, it sends a
//! call request and reads that call's chunks up to the call's end; the body bytes of all
//! chunks of a session, in order, are exactly the body of that party's material file.

use std::fmt;
use std::io::{self, Read, Write};
use std::time::Duration;

use comet_ir::DimEnv;

use super::PartySeed;
use crate::transport::ChannelError;

/// Marks a dealer-service hello, so that a foreign program on the port is told apart.
const MAGIC: [u8; 8] = *b"comet-dl";
/// The dealer-service protocol version of this release.
pub const DEALER_VERSION: u32 = 5;
/// Bytes of a party's hello.
pub(crate) const HELLO_BYTES: usize = 8 + 4 + 1 + 32;
/// Bytes of a call request after its kind byte.
const CALL_BYTES: usize = 32 + 8 + 8 + 8;
/// The largest chunk of body bytes the dealer sends, and a party accepts.
pub const MAX_CHUNK_BYTES: u32 = 1 << 20;
/// The longest refusal reason a party accepts.
pub const MAX_REASON_BYTES: u32 = 4096;

const CALL: u8 = 1;
const SESSION: u8 = 1;
const REFUSED: u8 = 2;
const CHUNK: u8 = 3;
const END: u8 = 4;
const START: u8 = 5;

/// The dealer service failed, on either side; every message says what happened.
#[derive(Debug, thiserror::Error)]
pub enum DealerError {
    /// No connection to the dealer could be made.
    #[error("cannot reach the dealer at {addr}: {source}")]
    Unreachable {
        /// The address tried.
        addr: String,
        /// Why.
        source: ChannelError,
    },
    /// The other side sent nothing for the timeout, or did not take a write of this side's
    /// within it.
    #[error("{who} {what} for {waited:?} while {doing}: is it stalled?")]
    Stalled {
        /// The silent side (`the dealer`, `party 1`).
        who: String,
        /// `sent no bytes` or `did not take our bytes`.
        what: &'static str,
        /// The timeout.
        waited: Duration,
        /// What this side was doing.
        doing: String,
    },
    /// The other side closed the connection.
    #[error("{who} disconnected while {doing}")]
    Disconnected {
        /// Who closed.
        who: String,
        /// What this side was doing.
        doing: String,
    },
    /// The dealer refused this party or stopped the session, and said why.
    #[error("the dealer refused: {0}")]
    Refused(String),
    /// The other side broke the protocol: another plan, session or call, a malformed
    /// message, material of the wrong length. Worded in full.
    #[error("{0}")]
    Protocol(String),
    /// Any other operating-system error.
    #[error("network error while {doing}: {source}")]
    Io {
        /// What this side was doing.
        doing: String,
        /// The OS error.
        source: io::Error,
    },
}

/// Which side an IO error came from and how long each wait may take, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Side {
    /// `the dealer`, `party 0`...
    pub who: String,
    /// The read timeout set on the socket.
    pub read_timeout: Duration,
    /// The write timeout set on the socket.
    pub write_timeout: Duration,
}

impl Side {
    /// An error reading from this side while `doing`.
    pub fn read_error(&self, e: io::Error, doing: &str) -> DealerError {
        self.classify(e, doing, "sent no bytes", self.read_timeout)
    }

    /// An error writing to this side while `doing`.
    pub fn write_error(&self, e: io::Error, doing: &str) -> DealerError {
        self.classify(e, doing, "did not take our bytes", self.write_timeout)
    }

    fn classify(
        &self,
        e: io::Error,
        doing: &str,
        what: &'static str,
        waited: Duration,
    ) -> DealerError {
        use io::ErrorKind::*;
        let (who, doing) = (self.who.clone(), doing.to_string());
        if crate::transport::secure::is::<crate::transport::secure::AuthFailure>(&e) {
            return DealerError::Protocol(format!(
                "{who}'s data failed authentication while {doing}: altered on the way (a man \
                 in the middle?) or sent under another key; nothing of it was used"
            ));
        }
        match e.kind() {
            WouldBlock | TimedOut => DealerError::Stalled {
                who,
                what,
                waited,
                doing,
            },
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected => {
                DealerError::Disconnected { who, doing }
            }
            _ => DealerError::Io { doing, source: e },
        }
    }
}

/// A party's first message: who it is and which plan it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartyHello {
    /// 0 or 1.
    pub party: u8,
    /// [`plan_digest`](super::plan_digest) of the party's plan.
    pub plan_digest: [u8; 32],
}

impl PartyHello {
    pub fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut out = [0u8; HELLO_BYTES];
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&DEALER_VERSION.to_le_bytes());
        out[12] = self.party;
        out[13..].copy_from_slice(&self.plan_digest);
        out
    }

    /// Reads the wire form; refuses anything that is not a hello of this version.
    pub fn decode(b: &[u8; HELLO_BYTES]) -> Result<PartyHello, String> {
        if b[..8] != MAGIC {
            return Err("not a Comet dealer-service hello (no `comet-dl` magic)".into());
        }
        let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if version != DEALER_VERSION {
            return Err(format!(
                "dealer-service protocol version {version}, this dealer speaks \
                 {DEALER_VERSION}: run the same Comet release"
            ));
        }
        if b[12] > 1 {
            return Err(format!("party index {}, not 0 or 1", b[12]));
        }
        Ok(PartyHello {
            party: b[12],
            plan_digest: array32(&b[13..]),
        })
    }
}

/// What the dealer hands a party for a session: exactly what a material file's header
/// carries ([`MaterialHeader`](super::MaterialHeader)), less the calls. Seeds never appear
/// in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub plan_digest: [u8; 32],
    pub session: [u8; 32],
    pub seed: PartySeed,
    pub common: PartySeed,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("plan_digest", &hex(&self.plan_digest[..8]))
            .field("session", &hex(&self.session[..8]))
            .finish_non_exhaustive()
    }
}

/// A party's request for the material of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallRequest {
    pub session: [u8; 32],
    pub call: u64,
    pub env: DimEnv,
}

impl CallRequest {
    pub fn encode(&self) -> [u8; 1 + CALL_BYTES] {
        let mut out = [0u8; 1 + CALL_BYTES];
        out[0] = CALL;
        out[1..33].copy_from_slice(&self.session);
        out[33..41].copy_from_slice(&self.call.to_le_bytes());
        out[41..49].copy_from_slice(&self.env.seq.to_le_bytes());
        out[49..57].copy_from_slice(&self.env.past.to_le_bytes());
        out
    }
}

/// Reads a party's next call request; `Ok(None)` if the party closed the connection
/// cleanly between calls (the end of its session).
pub(crate) fn read_request(r: &mut impl Read) -> Result<Option<CallRequest>, WireError> {
    let mut kind = [0u8; 1];
    if r.read(&mut kind)? == 0 {
        return Ok(None);
    }
    if kind[0] != CALL {
        return Err(WireError::Malformed(format!(
            "a message of kind {} where a call request (kind {CALL}) belongs",
            kind[0]
        )));
    }
    let mut b = [0u8; CALL_BYTES];
    r.read_exact(&mut b)?;
    Ok(Some(CallRequest {
        session: array32(&b[..32]),
        call: u64_at(&b, 32),
        env: DimEnv {
            seq: u64_at(&b, 40),
            past: u64_at(&b, 48),
        },
    }))
}

/// A message from the dealer, as a party reads it: a chunk's body bytes stay in the
/// stream, to be read by the caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FromDealer {
    /// The session's grant.
    Session(Grant),
    /// The dealer refuses or stops, with its reason.
    Refused(String),
    /// The dealer accepted both parties' requests for call `call` and streams it now.
    Start {
        /// The call index.
        call: u64,
    },
    /// A chunk of this many body bytes follows.
    Chunk(u32),
    /// The end of call `call`, which had `bytes` body bytes.
    End {
        /// The call index.
        call: u64,
        /// Its body bytes.
        bytes: u64,
    },
}

/// Why a message could not be read: the stream failed, or its bytes make no sense.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The read failed (timeout, end of stream, reset...).
    Io(io::Error),
    /// The bytes are not a message of this protocol; says what was wrong.
    Malformed(String),
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        WireError::Io(e)
    }
}

impl WireError {
    /// As a [`DealerError`], reading from `side` while `doing`.
    pub fn at(self, side: &Side, doing: &str) -> DealerError {
        match self {
            WireError::Io(e) => side.read_error(e, doing),
            WireError::Malformed(what) => DealerError::Protocol(format!(
                "{} sent a malformed message while {doing}: {what}; is it a Comet dealer of \
                 this release?",
                side.who
            )),
        }
    }
}

/// Reads the next message from the dealer (a chunk's header only).
pub(crate) fn read_from_dealer(r: &mut impl Read) -> Result<FromDealer, WireError> {
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind)?;
    match kind[0] {
        SESSION => {
            let mut b = [0u8; 128];
            r.read_exact(&mut b)?;
            Ok(FromDealer::Session(Grant {
                plan_digest: array32(&b[..32]),
                session: array32(&b[32..64]),
                seed: array32(&b[64..96]),
                common: array32(&b[96..]),
            }))
        }
        REFUSED => {
            let len = read_len(r, MAX_REASON_BYTES, "refusal")?;
            let mut b = vec![0u8; len as usize];
            r.read_exact(&mut b)?;
            Ok(FromDealer::Refused(
                String::from_utf8_lossy(&b).into_owned(),
            ))
        }
        CHUNK => match read_len(r, MAX_CHUNK_BYTES, "chunk")? {
            0 => Err(WireError::Malformed("an empty chunk".into())),
            n => Ok(FromDealer::Chunk(n)),
        },
        START => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            Ok(FromDealer::Start {
                call: u64::from_le_bytes(b),
            })
        }
        END => {
            let mut b = [0u8; 16];
            r.read_exact(&mut b)?;
            Ok(FromDealer::End {
                call: u64_at(&b, 0),
                bytes: u64_at(&b, 8),
            })
        }
        other => Err(WireError::Malformed(format!(
            "a message of unknown kind {other}"
        ))),
    }
}

fn read_len(r: &mut impl Read, max: u32, what: &str) -> Result<u32, WireError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    let len = u32::from_le_bytes(b);
    if len > max {
        return Err(WireError::Malformed(format!(
            "a {what} of {len} bytes, more than the maximum of {max}"
        )));
    }
    Ok(len)
}

/// Writes the session grant.
pub(crate) fn write_session(w: &mut impl Write, g: &Grant) -> io::Result<()> {
    let mut out = Vec::with_capacity(129);
    out.push(SESSION);
    for part in [&g.plan_digest, &g.session, &g.seed, &g.common] {
        out.extend_from_slice(part);
    }
    w.write_all(&out)?;
    w.flush()
}

/// Writes a refusal (the reason cut to [`MAX_REASON_BYTES`] at a character boundary).
pub(crate) fn write_refused(w: &mut impl Write, reason: &str) -> io::Result<()> {
    let mut end = reason.len().min(MAX_REASON_BYTES as usize);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(5 + end);
    out.push(REFUSED);
    out.extend_from_slice(&(end as u32).to_le_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
    w.write_all(&out)?;
    w.flush()
}

/// Writes one chunk of body bytes (at most [`MAX_CHUNK_BYTES`], at least one).
pub(crate) fn write_chunk(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    debug_assert!(!bytes.is_empty() && bytes.len() <= MAX_CHUNK_BYTES as usize);
    let mut head = [0u8; 5];
    head[0] = CHUNK;
    head[1..].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
    w.write_all(&head)?;
    w.write_all(bytes)
}

/// Writes the start of call `call`: both parties asked for it at the same sizes.
pub(crate) fn write_start(w: &mut impl Write, call: u64) -> io::Result<()> {
    let mut out = [0u8; 9];
    out[0] = START;
    out[1..].copy_from_slice(&call.to_le_bytes());
    w.write_all(&out)
}

/// Writes the end of call `call`, which had `bytes` body bytes.
pub(crate) fn write_end(w: &mut impl Write, call: u64, bytes: u64) -> io::Result<()> {
    let mut out = [0u8; 17];
    out[0] = END;
    out[1..9].copy_from_slice(&call.to_le_bytes());
    out[9..].copy_from_slice(&bytes.to_le_bytes());
    w.write_all(&out)?;
    w.flush()
}

fn array32(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&b[..32]);
    out
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut out = [0u8; 8];
    out.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(out)
}

/// Lower-case hexadecimal, two digits a byte.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let h = PartyHello {
            party: 1,
            plan_digest: [7; 32],
        };
        assert_eq!(PartyHello::decode(&h.encode()).unwrap(), h);
        let req = CallRequest {
            session: [3; 32],
            call: 2,
            env: DimEnv { seq: 1, past: 7 },
        };
        assert_eq!(read_request(&mut &req.encode()[..]).unwrap(), Some(req));
        assert_eq!(read_request(&mut &[][..]).unwrap(), None);
        let g = Grant {
            plan_digest: [1; 32],
            session: [2; 32],
            seed: [3; 32],
            common: [4; 32],
        };
        let mut out = Vec::new();
        write_session(&mut out, &g).unwrap();
        write_refused(&mut out, "no").unwrap();
        write_start(&mut out, 5).unwrap();
        write_chunk(&mut out, &[9, 9]).unwrap();
        write_end(&mut out, 5, 2).unwrap();
        let mut r = &out[..];
        assert_eq!(read_from_dealer(&mut r).unwrap(), FromDealer::Session(g));
        assert_eq!(
            read_from_dealer(&mut r).unwrap(),
            FromDealer::Refused("no".into())
        );
        let start = FromDealer::Start { call: 5 };
        assert_eq!(read_from_dealer(&mut r).unwrap(), start);
        assert_eq!(read_from_dealer(&mut r).unwrap(), FromDealer::Chunk(2));
        r = &r[2..];
        let end = FromDealer::End { call: 5, bytes: 2 };
        assert_eq!(read_from_dealer(&mut r).unwrap(), end);
    }

    #[test]
    fn oversized_lengths_and_foreign_hellos_are_refused() {
        let mut huge = vec![CHUNK];
        huge.extend_from_slice(&(MAX_CHUNK_BYTES + 1).to_le_bytes());
        assert!(matches!(
            read_from_dealer(&mut &huge[..]),
            Err(WireError::Malformed(_))
        ));
        let mut hello = [0u8; HELLO_BYTES];
        hello[..8].copy_from_slice(b"GET / HT");
        assert!(PartyHello::decode(&hello).is_err());
    }

    #[test]
    fn a_grant_debug_hides_the_seeds() {
        let g = Grant {
            plan_digest: [1; 32],
            session: [2; 32],
            seed: [0xab; 32],
            common: [0xcd; 32],
        };
        let s = format!("{g:?}");
        assert!(
            !s.contains("abab") && !s.contains("cdcd") && !s.contains("171"),
            "{s}"
        );
    }
}
