//! The handshake message: who a party is and what it is about to run.

use super::ChannelError;
use comet_ir::Party;
use std::fmt;

/// Marks a Comet handshake, so that a foreign program on the port is told apart.
const MAGIC: [u8; 8] = *b"comet-2p";
/// The same magic opens the connection's clear preamble.
pub(crate) const MAGIC_2P: &[u8; 8] = &MAGIC;

/// Bytes of an encoded [`Hello`]: magic, version, party, plan digest, session id.
pub(crate) const HELLO_BYTES: usize = 8 + 4 + 1 + 32 + 32;

/// What a party says before the first exchange, so that two parties that cannot work
/// together (another release, the same role twice, another plan, another dealer session)
/// stop at once with a clear error instead of computing garbage.
#[derive(Clone, PartialEq, Eq)]
pub struct Hello {
    /// The transport and protocol version ([`Hello::VERSION`] for this release).
    pub version: u32,
    /// The sender's role.
    pub party: Party,
    /// A digest of the plan the sender runs: both must run the same plan.
    pub plan_digest: [u8; 32],
    /// The id of the correlated material (dealer session) the sender loaded: both halves
    /// must come from the same session.
    pub session: [u8; 32],
}

impl Hello {
    /// The version this release speaks.
    pub const VERSION: u32 = 1;

    /// A hello of this release's version.
    pub fn new(party: Party, plan_digest: [u8; 32], session: [u8; 32]) -> Self {
        Hello {
            version: Self::VERSION,
            party,
            plan_digest,
            session,
        }
    }

    /// Checks that `peer`, this party being `self`, can run with it: same version, the
    /// other party, same plan, same session. The error names both values.
    pub fn check_peer(&self, peer: &Hello) -> Result<(), ChannelError> {
        let what = if self.version != peer.version {
            format!(
                "this party speaks protocol version {}, the peer version {}: run the same \
                 Comet release on both sides",
                self.version, peer.version
            )
        } else if self.party == peer.party {
            format!(
                "both parties are the {} (party {}): start one as the server (party 0) and \
                 the other as the client (party 1)",
                self.party,
                self.party.index()
            )
        } else if self.plan_digest != peer.plan_digest {
            format!(
                "plan digest differs: this party runs plan {}, the peer plan {}: both must \
                 run the same compiled plan",
                hex(&self.plan_digest),
                hex(&peer.plan_digest)
            )
        } else if self.session != peer.session {
            format!(
                "session differs: this party loaded material {}, the peer material {}: both \
                 must use the two halves of the same dealer session",
                hex(&self.session),
                hex(&peer.session)
            )
        } else {
            return Ok(());
        };
        Err(ChannelError::Handshake { what })
    }

    /// The wire form.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HELLO_BYTES);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.push(self.party.index() as u8);
        out.extend_from_slice(&self.plan_digest);
        out.extend_from_slice(&self.session);
        out
    }

    /// Reads the wire form, refusing anything that is not a Comet hello.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Hello, ChannelError> {
        let fail = |what: String| ChannelError::Handshake { what };
        if bytes.len() != HELLO_BYTES || bytes[..8] != MAGIC {
            return Err(fail(format!(
                "the peer's hello ({} bytes) is not a Comet hello: is it a Comet party?",
                bytes.len()
            )));
        }
        let party = match bytes[12] {
            0 => Party::Server,
            1 => Party::Client,
            other => {
                return Err(fail(format!(
                    "the peer claims party index {other}, not 0 or 1"
                )));
            }
        };
        Ok(Hello {
            version: u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")),
            party,
            plan_digest: bytes[13..45].try_into().expect("32 bytes"),
            session: bytes[45..77].try_into().expect("32 bytes"),
        })
    }
}

impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hello")
            .field("version", &self.version)
            .field("party", &self.party)
            .field("plan_digest", &hex(&self.plan_digest))
            .field("session", &hex(&self.session))
            .finish()
    }
}

/// Lower-case hexadecimal, two digits a byte.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
