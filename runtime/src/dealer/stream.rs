//! A party's side of the dealer service (docs/runtime.md, "Dealer service"): connect to
//! the dealer, say who this party is and which plan it runs, get the session (its id, this
//! party's stream seed and the common seed), then per call ask for that call's material and
//! read it as the body of a [`PartyReplay`], exactly as from a material file.
//!
//! ```text
//! let (mut dealer, replay) = DealerStream::connect(addr, party, digest, &opts)?;
//! // handshake with the other party using dealer.session() ...
//! for env in calls {
//!     dealer.begin_call(env)?;   // the request: (session, call index, seq, past)
//!     party.call(inputs, env)?;  // the replay reads the call's material from the socket
//!     dealer.end_call()?;        // the dealer's end of call: every byte used, none missing
//! }
//! ```
//!
//! Every read waits at most the socket's read timeout (a stalled dealer is
//! [`DealerError::Stalled`]), and every message is checked: material of another call, more
//! or less material than the call uses, or the dealer's refusal are clear errors, which
//! reach the interpreter as [`MaterialError::Source`](super::MaterialError::Source).

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};

use comet_ir::DimEnv;

use super::PartyReplay;
use super::wire::{
    CallRequest, DealerError, FromDealer, Grant, PartyHello, Side, hex, read_from_dealer,
};
use crate::transport::secure::{
    self, HandshakeError, Noise, Role, SecureReader, SecureWriter, TO_DEALER,
};
use crate::transport::{ChannelError, DealerAuth, TcpOptions, connect_stream};

/// Read buffer of the material stream.
const READ_BUFFER_BYTES: usize = 256 << 10;

/// A party's connection to the dealer service, for one session.
pub struct DealerStream {
    link: Arc<Mutex<Link>>,
    writer: SecureWriter,
    side: Side,
    session: [u8; 32],
    next_call: u64,
}

impl fmt::Debug for DealerStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DealerStream")
            .field("session", &hex(&self.session[..8]))
            .field("next_call", &self.next_call)
            .finish_non_exhaustive()
    }
}

/// The reading half, shared by the [`DealerStream`] (call ends) and the replay's body.
struct Link {
    reader: SecureReader<BufReader<TcpStream>>,
    side: Side,
    /// The call whose material is being read.
    call: Option<u64>,
    /// Body bytes left in the current chunk.
    left: u32,
    /// Body bytes read in the current call.
    read: u64,
    /// Set by the first error: the stream is out of step and refuses further use.
    failed: bool,
}

impl DealerStream {
    /// Connects to the dealer at `addr` as party `party` running the plan of digest
    /// `plan_digest`, authenticates it by `auth` (Noise `NK` with its pinned public key, or
    /// plaintext if both sides say so) and waits (at most `opts.accept_timeout`) for the
    /// dealer to pair this party with the other one. Returns the stream and this party's
    /// [`PartyReplay`], whose body is the session's material as the dealer streams it.
    ///
    /// # Errors
    /// If the dealer cannot be reached, is not the dealer of the pinned key, stalls,
    /// disconnects or refuses (another plan, the party already connected, the other party
    /// never came), or serves another plan.
    pub fn connect(
        addr: &str,
        party: u8,
        plan_digest: [u8; 32],
        opts: &TcpOptions,
        auth: &DealerAuth,
    ) -> Result<(DealerStream, PartyReplay), DealerError> {
        let unreachable = |source| DealerError::Unreachable {
            addr: addr.to_string(),
            source,
        };
        let stream = connect_stream(addr, opts).map_err(unreachable)?;
        let side = Side {
            who: "the dealer".into(),
            read_timeout: opts.read_timeout,
            write_timeout: opts.write_timeout,
        };
        let io = |e| DealerError::Io {
            doing: "setting up the dealer connection".into(),
            source: e,
        };
        let noise = match auth {
            DealerAuth::Pinned(k) => Noise::Pinned(k),
            DealerAuth::Mutual { dealer, own } => Noise::Mutual { own, dealer },
            DealerAuth::InsecurePlaintext => Noise::Plaintext,
        };
        let limit = opts.handshake_timeout;
        let keys = secure::establish(&stream, Role::Initiator, TO_DEALER, noise, limit)
            .map_err(|e| handshake_error(e, addr, limit))?;
        let buffered = BufReader::with_capacity(READ_BUFFER_BYTES, stream.try_clone().map_err(io)?);
        let mut reader = SecureReader::new(buffered, keys.clone());
        let mut writer =
            SecureWriter::new(stream.try_clone().map_err(io)?, keys, opts.write_timeout);
        let grant = handshake(
            &stream,
            &mut reader,
            &mut writer,
            &side,
            party,
            plan_digest,
            opts,
        )?;
        stream
            .set_read_timeout(Some(opts.read_timeout))
            .map_err(io)?;
        let link = Arc::new(Mutex::new(Link {
            reader,
            side: side.clone(),
            call: None,
            left: 0,
            read: 0,
            failed: false,
        }));
        let body = Box::new(Body(Arc::clone(&link)));
        let replay = PartyReplay::new(party, grant.seed, grant.common, body);
        let dealer = DealerStream {
            link,
            writer,
            side,
            session: grant.session,
            next_call: 0,
        };
        Ok((dealer, replay))
    }

    /// The session id the dealer chose: both parties must present the same one in their
    /// own handshake ([`Hello`](crate::transport::Hello)).
    pub fn session(&self) -> [u8; 32] {
        self.session
    }

    /// The index of the next call [`DealerStream::begin_call`] asks for.
    pub fn next_call(&self) -> u64 {
        self.next_call
    }

    /// Asks the dealer for the next call's material, at sizes `env`; returns its index.
    ///
    /// # Errors
    /// If a call is still open or the request cannot be sent.
    pub fn begin_call(&mut self, env: DimEnv) -> Result<u64, DealerError> {
        self.begin_call_at(self.next_call, env)
    }

    /// Asks the dealer for call `call` (normally [`DealerStream::next_call`]: the dealer
    /// refuses any other index, a repeated one included).
    ///
    /// # Errors
    /// As [`DealerStream::begin_call`].
    pub fn begin_call_at(&mut self, call: u64, env: DimEnv) -> Result<u64, DealerError> {
        let mut link = lock(&self.link)?;
        if let Some(open) = link.call {
            return Err(DealerError::Protocol(format!(
                "call {open}'s material is still open: end it before asking for call {call}"
            )));
        }
        let req = CallRequest {
            session: self.session,
            call,
            env,
        };
        let doing = format!("asking for call {call}'s material");
        (self.writer.write_all(&req.encode())).map_err(|e| self.side.write_error(e, &doing))?;
        link.call = Some(call);
        link.read = 0;
        link.left = 0;
        let started = link.wait_start(call);
        link.failed |= started.is_err();
        started.map(|()| call)
    }

    /// Reads the dealer's end of the open call and checks that this party used exactly the
    /// call's material; returns the call's body bytes.
    ///
    /// # Errors
    /// If no call is open, the dealer sent more material than the call used or the end of
    /// another call, stopped the session, stalled or disconnected.
    pub fn end_call(&mut self) -> Result<u64, DealerError> {
        let mut link = lock(&self.link)?;
        let result = link.end_call();
        link.failed |= result.is_err();
        let bytes = result?;
        self.next_call += 1;
        Ok(bytes)
    }
}

/// A failed preamble or key exchange with the dealer, worded.
fn handshake_error(e: HandshakeError, addr: &str, limit: std::time::Duration) -> DealerError {
    match e.into_channel(limit) {
        ChannelError::KeyMismatch { what } => DealerError::Protocol(format!(
            "the dealer at {addr} is not the one of the pinned key: {what}"
        )),
        ChannelError::Handshake { what } => DealerError::Protocol(format!(
            "the dealer at {addr} refused the connection: {what}"
        )),
        other => DealerError::Protocol(format!(
            "the connection to the dealer at {addr} failed before authentication: {other}"
        )),
    }
}

/// Sends this party's hello and reads the dealer's answer: the session's grant, for this
/// plan.
fn handshake(
    stream: &TcpStream,
    r: &mut SecureReader<BufReader<TcpStream>>,
    w: &mut SecureWriter,
    side: &Side,
    party: u8,
    plan_digest: [u8; 32],
    opts: &TcpOptions,
) -> Result<Grant, DealerError> {
    let io = |e| DealerError::Io {
        doing: "setting up the dealer connection".into(),
        source: e,
    };
    stream.set_nodelay(true).map_err(io)?;
    stream
        .set_write_timeout(Some(opts.write_timeout))
        .map_err(io)?;
    // the dealer answers once the other party is there too
    stream
        .set_read_timeout(Some(opts.accept_timeout))
        .map_err(io)?;
    let hello = PartyHello { party, plan_digest };
    (w.write_all(&hello.encode()))
        .map_err(|e| side.write_error(e, "sending this party's hello"))?;
    let doing = format!("waiting for the dealer to pair party {party} with the other party");
    let waiting = Side {
        read_timeout: opts.accept_timeout,
        ..side.clone()
    };
    let grant = match read_from_dealer(r).map_err(|e| e.at(&waiting, &doing))? {
        FromDealer::Session(g) => g,
        FromDealer::Refused(reason) => return Err(DealerError::Refused(reason)),
        other => {
            return Err(DealerError::Protocol(format!(
                "the dealer sent {other:?} before the session: is it a Comet dealer?"
            )));
        }
    };
    if grant.plan_digest != plan_digest {
        return Err(DealerError::Protocol(format!(
            "the dealer serves plan {}, this party runs plan {}: start the dealer with this \
             party's plan",
            hex(&grant.plan_digest),
            hex(&plan_digest)
        )));
    }
    Ok(grant)
}

fn lock(link: &Mutex<Link>) -> Result<MutexGuard<'_, Link>, DealerError> {
    link.lock()
        .map_err(|_| DealerError::Protocol("the dealer stream failed in another thread".into()))
}

impl Link {
    /// The call being read, or an error if none is open or the stream failed before.
    fn open_call(&self) -> Result<u64, DealerError> {
        if self.failed {
            return Err(DealerError::Protocol(
                "the dealer stream failed earlier and cannot be used any more".into(),
            ));
        }
        self.call.ok_or_else(|| {
            DealerError::Protocol(
                "material read outside a call: ask the dealer for the call first".into(),
            )
        })
    }

    fn doing(&self, call: u64) -> String {
        format!("reading call {call}'s material")
    }

    /// Reads body bytes of the open call into `buf`.
    fn read_body(&mut self, buf: &mut [u8]) -> Result<usize, DealerError> {
        let call = self.open_call()?;
        if buf.is_empty() {
            return Ok(0);
        }
        while self.left == 0 {
            self.left = self.next_chunk(call)?;
        }
        let n = buf.len().min(self.left as usize);
        let got = match self.reader.read(&mut buf[..n]) {
            Ok(0) => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            other => other,
        }
        .map_err(|e| self.side.read_error(e, &self.doing(call)))?;
        self.left -= got as u32;
        self.read += got as u64;
        Ok(got)
    }

    /// The length of the next chunk of call `call`; anything else is an error.
    fn next_chunk(&mut self, call: u64) -> Result<u32, DealerError> {
        let doing = self.doing(call);
        let msg = read_from_dealer(&mut self.reader).map_err(|e| e.at(&self.side, &doing))?;
        match msg {
            FromDealer::Chunk(n) => Ok(n),
            FromDealer::End { call: c, bytes } if c == call => Err(DealerError::Protocol(format!(
                "the dealer's material for call {call} ended after {bytes} bytes, and this \
                 party needs more: do the dealer and this party run the same plan?"
            ))),
            FromDealer::End { call: c, .. } => Err(DealerError::Protocol(format!(
                "the dealer sent the end of call {c} while this party reads call {call}: the \
                 stream is of another call"
            ))),
            FromDealer::Refused(reason) => Err(DealerError::Refused(reason)),
            FromDealer::Session(_) | FromDealer::Start { .. } => Err(DealerError::Protocol(
                format!("the dealer sent a new session or call while {doing}"),
            )),
        }
    }

    /// Waits for the dealer to start call `call` (both parties asked for it at the same
    /// sizes), so that a refusal reaches both parties before either starts the call.
    fn wait_start(&mut self, call: u64) -> Result<(), DealerError> {
        let doing = format!("waiting for the dealer to start call {call}");
        let msg = read_from_dealer(&mut self.reader).map_err(|e| e.at(&self.side, &doing))?;
        match msg {
            FromDealer::Start { call: c } if c == call => Ok(()),
            FromDealer::Refused(reason) => Err(DealerError::Refused(reason)),
            _ => Err(DealerError::Protocol(format!(
                "the dealer sent something else than the start of call {call}"
            ))),
        }
    }

    /// Reads the end of the open call and checks its length.
    fn end_call(&mut self) -> Result<u64, DealerError> {
        let call = self.open_call()?;
        let more = || {
            DealerError::Protocol(format!(
                "the dealer sent more material for call {call} than this party used: do the \
                 dealer and this party run the same plan?"
            ))
        };
        if self.left > 0 {
            return Err(more());
        }
        let doing = format!("waiting for the end of call {call}'s material");
        let msg = read_from_dealer(&mut self.reader).map_err(|e| e.at(&self.side, &doing))?;
        match msg {
            FromDealer::End { call: c, bytes } if c == call && bytes == self.read => {
                self.call = None;
                Ok(bytes)
            }
            FromDealer::End { call: c, bytes } => Err(DealerError::Protocol(format!(
                "the dealer ended call {c} after {bytes} bytes, and this party read call \
                 {call}'s {} bytes: the stream is of another call",
                self.read
            ))),
            FromDealer::Chunk(_) => Err(more()),
            FromDealer::Refused(reason) => Err(DealerError::Refused(reason)),
            FromDealer::Session(_) | FromDealer::Start { .. } => Err(DealerError::Protocol(
                format!("the dealer sent a new session or call while {doing}"),
            )),
        }
    }
}

/// The replay's body: the open call's material, read from the dealer's socket.
struct Body(Arc<Mutex<Link>>);

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut link = lock(&self.0).map_err(io::Error::other)?;
        let result = link.read_body(buf);
        link.failed |= result.is_err();
        result.map_err(io::Error::other)
    }
}
