//! Encrypted, authenticated connections (docs/security.md, "Channels"): the Noise protocol
//! framework (`snow`) over TCP.
//!
//! A connection starts with a 16-byte **preamble** each way, in clear: a magic naming the
//! service (`comet-2p` between the parties, `comet-dl` to the dealer), the wire version and
//! the mode (0: plaintext, only with `--insecure-plaintext` on both sides; 1: Noise). It is
//! read with its exact size, so a port scan, a foreign program or a mode mismatch is a
//! clear error before anything is allocated; both preambles are the Noise prologue, so a
//! man in the middle who alters them breaks the handshake.
//!
//! Then a Noise handshake of two messages of exactly [`HANDSHAKE_MESSAGE_BYTES`] each:
//! - between the parties, [`PARTY_NOISE`] (`NNpsk0`): the pre-shared key is derived from
//!   the dealt session ([`ChannelKey::derive`]: the common seed both halves of a session
//!   hold, the plan digest and the session id), so only the holders of the session's two
//!   halves complete it: both parties authenticate each other, and nobody else reads them;
//! - to the dealer, [`DEALER_NOISE`] (`NK`): the party pins the dealer's static public key
//!   ([`DealerPublicKey`], `--dealer-key`), so only the holder of the dealer's private key
//!   ([`DealerKeypair`], `comet dealer --key FILE`) completes it;
//! - to a dealer that authenticates the parties, [`DEALER_MUTUAL_NOISE`] (`KK`): each
//!   party also has a static key pair (`comet keygen`, `comet run --key FILE`) whose public
//!   half the dealer pins per party index ([`PartyKey`], `comet dealer --party-key P=KEY`).
//!   The dealer tries the first message against each pinned key (a wrong key fails its
//!   tag), so it learns which pinned party connected; a key it does not pin fails them all
//!   and the connection is refused before its hello is read. The preamble's mode (2) says
//!   which pattern runs, so neither side can be talked down to `NK`.
//!
//! After the handshake every byte travels in **records**: a 2-byte little-endian length,
//! then a Noise transport message (AES-256-GCM, ≤ 65,535 bytes, of which 16 are the
//! tag), so [`RECORD_OVERHEAD_BYTES`] per at most [`RECORD_PLAINTEXT_BYTES`] of plaintext.
//! Nonces count records in each direction; a record altered, dropped, replayed or
//! reordered fails authentication ([`AuthFailure`]) and the connection stops.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use snow::{Builder, HandshakeState, StatelessTransportState};

use super::{ChannelError, Phase};

/// The Noise protocol between the two parties.
pub const PARTY_NOISE: &str = "Noise_NNpsk0_25519_AESGCM_BLAKE2s";
/// The Noise protocol between a party and the dealer.
pub const DEALER_NOISE: &str = "Noise_NK_25519_AESGCM_BLAKE2s";
/// The Noise protocol between a party and a dealer that pins the parties' keys.
pub const DEALER_MUTUAL_NOISE: &str = "Noise_KK_25519_AESGCM_BLAKE2s";
/// Bytes added to every record: its 2-byte length and the 16-byte AEAD tag.
pub const RECORD_OVERHEAD_BYTES: u64 = 2 + 16;
/// The most plaintext one record carries (a Noise message is at most 65,535 bytes).
pub const RECORD_PLAINTEXT_BYTES: usize = 65535 - 16;
/// Bytes of each of the two handshake messages: an ephemeral key (32) and the tag of an
/// empty payload (16), in each of the three patterns.
pub const HANDSHAKE_MESSAGE_BYTES: usize = 48;
/// Bytes of the clear preamble.
pub(crate) const PREAMBLE_BYTES: usize = 16;
/// The wire version of the preamble, records and handshakes.
pub(crate) const WIRE_VERSION: u32 = 2;

/// Records a payload of `plain` bytes takes (none for nothing).
pub fn records(plain: u64) -> u64 {
    plain.div_ceil(RECORD_PLAINTEXT_BYTES as u64)
}

/// Lower-case hexadecimal.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hexadecimal digits.
fn unhex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The 32-byte pre-shared key of the channel between the two parties of one dealt session.
/// Never printed: its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelKey([u8; 32]);

impl fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChannelKey(<redacted>)")
    }
}

impl ChannelKey {
    /// The key of the session `session` of plan `plan_digest` whose halves share the secret
    /// `secret` ([`PartyReplay::channel_secret`](crate::dealer::PartyReplay::channel_secret)):
    /// SHA-256 of a domain tag, the secret, the plan digest and the session id.
    pub fn derive(secret: &[u8; 32], plan_digest: &[u8; 32], session: &[u8; 32]) -> ChannelKey {
        let mut h = Sha256::new();
        h.update(b"comet channel psk v1\0");
        h.update(secret);
        h.update(plan_digest);
        h.update(session);
        ChannelKey(h.finalize().into())
    }

    /// A key from its bytes (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> ChannelKey {
        ChannelKey(bytes)
    }
}

/// How a channel between the parties is protected.
#[derive(Debug, Clone)]
pub enum Security {
    /// Encrypted and mutually authenticated by the session's pre-shared key.
    Psk(ChannelKey),
    /// No encryption, no authentication (`--insecure-plaintext`, on both sides): tests
    /// and debugging only.
    InsecurePlaintext,
}

/// The dealer's static public key, which the parties pin (`--dealer-key`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DealerPublicKey(pub [u8; 32]);

impl fmt::Debug for DealerPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DealerPublicKey({})", hex(&self.0))
    }
}

impl fmt::Display for DealerPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl DealerPublicKey {
    /// 64 hexadecimal digits, or the path of a file holding them (`FILE.pub` of
    /// `comet keygen`) or a dealer key file (its `public` line).
    pub fn parse(text: &str) -> Result<DealerPublicKey, String> {
        if let Some(k) = unhex32(text) {
            return Ok(DealerPublicKey(k));
        }
        let content = std::fs::read_to_string(text).map_err(|e| {
            format!("the dealer key `{text}` is neither 64 hex digits nor a readable file: {e}")
        })?;
        let line = (content.lines()).find_map(|l| {
            l.strip_prefix("public ")
                .or(Some(l).filter(|l| unhex32(l).is_some()))
        });
        line.and_then(unhex32).map(DealerPublicKey).ok_or_else(|| {
            format!("`{text}` holds no dealer public key (64 hex digits, or a line `public HEX`)")
        })
    }
}

/// The dealer's static key pair (`comet keygen`, `comet dealer --key FILE`). The private
/// half is never printed.
#[derive(Clone)]
pub struct DealerKeypair {
    private: [u8; 32],
    public: DealerPublicKey,
}

impl fmt::Debug for DealerKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DealerKeypair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl DealerKeypair {
    /// A fresh key pair from the operating system's randomness.
    pub fn generate() -> Result<DealerKeypair, String> {
        let k = builder(DEALER_NOISE)
            .generate_keypair()
            .map_err(|e| format!("cannot generate a key pair: {e}"))?;
        let (Some(private), Some(public)) = (k.private.get(..32), k.public.get(..32)) else {
            return Err("the key pair has an unexpected size".into());
        };
        Ok(DealerKeypair {
            private: private.try_into().expect("32 bytes"),
            public: DealerPublicKey(public.try_into().expect("32 bytes")),
        })
    }

    /// The public half, for the parties' `--dealer-key`.
    pub fn public(&self) -> DealerPublicKey {
        self.public
    }

    /// Writes the key file: created new (never overwriting), readable by its owner only
    /// (0600 on Unix); two lines, `private HEX` and `public HEX`.
    pub fn write_new(&self, path: &Path) -> Result<(), String> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options
            .open(path)
            .map_err(|e| format!("cannot create the key file `{}`: {e}", path.display()))?;
        let text = format!(
            "private {}\npublic {}\n",
            hex(&self.private),
            hex(&self.public.0)
        );
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("cannot write the key file `{}`: {e}", path.display()))
    }

    /// Reads a key file of [`DealerKeypair::write_new`]; refuses one that others may read
    /// (Unix).
    pub fn read(path: &Path) -> Result<DealerKeypair, String> {
        let fail = |what: String| format!("key file `{}`: {what}", path.display());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(fail(format!(
                    "readable by others (mode {mode:o}): `chmod 600` it"
                )));
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let field = |name: &str| {
            (text.lines())
                .find_map(|l| l.strip_prefix(name))
                .and_then(unhex32)
                .ok_or_else(|| fail(format!("no line `{name}HEX` of 64 hex digits")))
        };
        Ok(DealerKeypair {
            private: field("private ")?,
            public: DealerPublicKey(field("public ")?),
        })
    }
}

/// A party's public key as the dealer pins it: the party index it may take, and the key
/// (`comet dealer --party-key P=HEX|FILE`; the same format as the dealer's keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartyKey {
    /// The party index (0: server, 1: client) the holder of this key may connect as.
    pub party: u8,
    /// The public key.
    pub key: DealerPublicKey,
}

impl PartyKey {
    /// `P=HEX|FILE` (`P` 0 or 1; the key as [`DealerPublicKey::parse`] reads it).
    pub fn parse(text: &str) -> Result<PartyKey, String> {
        let expected = "expected P=KEY: the party index (0 or 1) and its public key (64 hex \
                        digits or a file of `comet keygen`)";
        let Some((p, key)) = text.split_once('=') else {
            return Err(format!("--party-key `{text}`: {expected}"));
        };
        let party = match p.trim() {
            "0" => 0,
            "1" => 1,
            other => return Err(format!("--party-key: party `{other}`: {expected}")),
        };
        let key = DealerPublicKey::parse(key.trim())?;
        Ok(PartyKey { party, key })
    }
}

/// The dealer's side of its connections.
#[derive(Debug, Clone)]
pub enum DealerIdentity {
    /// Noise `NK` with this static key: the dealer is authenticated, any party is accepted
    /// (`comet dealer --any-party`).
    Key(DealerKeypair),
    /// Noise `KK` with this static key: only the parties whose keys are pinned are accepted,
    /// each as its own index.
    Pinning {
        /// The dealer's key pair.
        key: DealerKeypair,
        /// The parties' pinned public keys.
        parties: Vec<PartyKey>,
    },
    /// Plaintext (`--insecure-plaintext`, on the parties too).
    InsecurePlaintext,
}

/// A party's side of its connection to the dealer.
#[derive(Debug, Clone)]
pub enum DealerAuth {
    /// Noise `NK`: the dealer must hold the private half of this key.
    Pinned(DealerPublicKey),
    /// Noise `KK`: the dealer must hold the private half of `dealer`, and this party proves
    /// it holds `own`, whose public half the dealer pins (`comet run --key FILE`).
    Mutual {
        /// The dealer's public key.
        dealer: DealerPublicKey,
        /// This party's key pair.
        own: DealerKeypair,
    },
    /// Plaintext (`--insecure-plaintext`, on the dealer too).
    InsecurePlaintext,
}

fn builder(pattern: &str) -> Builder<'_> {
    Builder::new(pattern.parse().expect("a valid Noise pattern"))
}

/// The marker inside an [`io::Error`] of a record that failed authentication.
#[derive(Debug)]
pub struct AuthFailure;

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record failed authentication (AEAD tag): altered on the way, or sent under another key")
    }
}

impl std::error::Error for AuthFailure {}

/// The marker inside an [`io::Error`] when the deadline of an exchange passed.
#[derive(Debug)]
pub struct DeadlinePassed;

impl fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the deadline of the exchange passed")
    }
}

impl std::error::Error for DeadlinePassed {}

/// Whether `e` carries the marker `T`.
pub(crate) fn is<T: std::error::Error + 'static>(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<T>())
}

fn auth_failure() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, AuthFailure)
}

/// The established keys of one connection: each half counts its own nonces.
pub(crate) type Keys = Arc<StatelessTransportState>;

/// Encrypts `plain` into records appended to `out`, from nonce `*nonce` on.
pub(crate) fn seal(
    keys: &StatelessTransportState,
    nonce: &mut u64,
    plain: &[u8],
    out: &mut Vec<u8>,
) {
    for part in plain.chunks(RECORD_PLAINTEXT_BYTES) {
        let at = out.len();
        out.resize(at + 2 + part.len() + 16, 0);
        let n = keys
            .write_message(*nonce, part, &mut out[at + 2..])
            .expect("a record fits a Noise message");
        out[at..at + 2].copy_from_slice(&(n as u16).to_le_bytes());
        out.truncate(at + 2 + n);
        *nonce += 1;
    }
}

/// The reading half of a connection: records decrypted and checked (or, in plaintext, the
/// bytes as they come). Its buffers are two records whatever the peer sends.
pub(crate) struct SecureReader<R> {
    inner: R,
    keys: Option<Keys>,
    nonce: u64,
    record: Vec<u8>,
    plain: Vec<u8>,
    pos: usize,
    end: usize,
}

impl<R: Read> SecureReader<R> {
    pub(crate) fn new(inner: R, keys: Option<Keys>) -> Self {
        let size = if keys.is_some() { 65535 } else { 0 };
        SecureReader {
            inner,
            keys,
            nonce: 0,
            record: vec![0; size],
            plain: vec![0; size],
            pos: 0,
            end: 0,
        }
    }

    /// The stream under the reader.
    pub(crate) fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The bytes held by the reader's buffers (tests of bounded memory).
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.record.capacity() + self.plain.capacity()
    }

    /// Reads and decrypts the next record into `plain`; returns its length.
    /// `Ok(None)` at the end of the stream between two records.
    fn next_record(&mut self, keys: &StatelessTransportState) -> io::Result<Option<usize>> {
        let mut len = [0u8; 2];
        loop {
            match self.inner.read(&mut len[..1]) {
                Ok(0) => return Ok(None),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.inner.read_exact(&mut len[1..])?;
        let len = usize::from(u16::from_le_bytes(len));
        if len < 16 {
            return Err(auth_failure());
        }
        self.inner.read_exact(&mut self.record[..len])?;
        let n = keys
            .read_message(self.nonce, &self.record[..len], &mut self.plain)
            .map_err(|_| auth_failure())?;
        self.nonce += 1;
        Ok(Some(n))
    }
}

impl<R: Read> Read for SecureReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(keys) = self.keys.clone() else {
            return self.inner.read(buf);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos == self.end {
            let Some(end) = self.next_record(&keys)? else {
                return Ok(0);
            };
            (self.end, self.pos) = (end, 0);
        }
        let n = buf.len().min(self.end - self.pos);
        buf[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The writing half: each `write` is sealed into records and written whole.
pub(crate) struct SecureWriter {
    inner: TcpStream,
    keys: Option<Keys>,
    nonce: u64,
    out: Vec<u8>,
    /// How long one write may take in all, however the peer trickles its reading.
    limit: Duration,
}

impl SecureWriter {
    /// A writer on `inner` whose every write completes within `limit` or fails with
    /// [`io::ErrorKind::TimedOut`] (a peer that reads nothing, or too little to matter).
    pub(crate) fn new(inner: TcpStream, keys: Option<Keys>, limit: Duration) -> Self {
        SecureWriter {
            inner,
            keys,
            nonce: 0,
            out: Vec::new(),
            limit,
        }
    }
}

impl Write for SecureWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let deadline = Instant::now() + self.limit;
        let Some(keys) = &self.keys else {
            write_all_by(&self.inner, buf, deadline)?;
            return Ok(buf.len());
        };
        if buf.is_empty() {
            return Ok(0);
        }
        self.out.clear();
        seal(keys, &mut self.nonce, buf, &mut self.out);
        write_all_by(&self.inner, &self.out, deadline)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes all of `buf` by `deadline`, however slowly the peer reads: the socket's write
/// timeout alone bounds each write call, and a peer whose receive window opens a little now
/// and then would keep a long write going indefinitely.
fn write_all_by(stream: &TcpStream, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match (&*stream).write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A writing half shared by several writers (the dealer's service and its chunk sinks), so
/// that one nonce sequence serves them all.
#[derive(Clone)]
pub(crate) struct SharedWriter(Arc<std::sync::Mutex<SecureWriter>>);

impl SharedWriter {
    pub(crate) fn new(w: SecureWriter) -> Self {
        SharedWriter(Arc::new(std::sync::Mutex::new(w)))
    }
}

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut w = (self.0.lock()).map_err(|_| io::Error::other("a writer panicked"))?;
        w.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut w = (self.0.lock()).map_err(|_| io::Error::other("a writer panicked"))?;
        w.flush()
    }
}

/// A deadline shared between a channel and the reader under its buffers: reads wait at most
/// until it, whatever the per-read timeout.
#[derive(Clone)]
pub(crate) struct Deadline {
    base: Instant,
    /// Nanoseconds after `base`; `u64::MAX`: none.
    at: Arc<AtomicU64>,
}

impl Deadline {
    pub(crate) fn new() -> Self {
        Deadline {
            base: Instant::now(),
            at: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    pub(crate) fn set(&self, at: Option<Instant>) {
        let nanos = at.map_or(u64::MAX, |at| {
            u64::try_from(at.saturating_duration_since(self.base).as_nanos())
                .unwrap_or(u64::MAX - 1)
        });
        self.at.store(nanos, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> Option<Instant> {
        match self.at.load(Ordering::Relaxed) {
            u64::MAX => None,
            n => Some(self.base + Duration::from_nanos(n)),
        }
    }
}

/// A socket's reads, each bounded by the read timeout and by the [`Deadline`].
pub(crate) struct DeadlineReader {
    stream: TcpStream,
    read_timeout: Duration,
    current: Duration,
    deadline: Deadline,
}

impl DeadlineReader {
    pub(crate) fn new(stream: TcpStream, read_timeout: Duration, deadline: Deadline) -> Self {
        DeadlineReader {
            stream,
            read_timeout,
            current: read_timeout,
            deadline,
        }
    }
}

pub(crate) fn deadline_passed() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, DeadlinePassed)
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let wait = match self.deadline.get() {
            None => self.read_timeout,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(deadline_passed());
                }
                left.min(self.read_timeout)
            }
        };
        if wait != self.current {
            self.stream.set_read_timeout(Some(wait))?;
            self.current = wait;
        }
        self.stream.read(buf).map_err(|e| {
            let timed_out = matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            );
            match self.deadline.get() {
                Some(at) if timed_out && Instant::now() >= at => deadline_passed(),
                _ => e,
            }
        })
    }
}

/// Which end of the handshake this side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Connected: speaks first.
    Initiator,
    /// Accepted.
    Responder,
}

/// The clear preamble: magic, version, mode.
fn preamble(magic: &[u8; 8], mode: u32) -> [u8; PREAMBLE_BYTES] {
    let mut out = [0u8; PREAMBLE_BYTES];
    out[..8].copy_from_slice(magic);
    out[8..12].copy_from_slice(&WIRE_VERSION.to_le_bytes());
    out[12..].copy_from_slice(&mode.to_le_bytes());
    out
}

/// A plaintext party's preamble (tests that script a raw peer).
#[cfg(test)]
pub(crate) fn plaintext_preamble() -> [u8; PREAMBLE_BYTES] {
    preamble(super::hello::MAGIC_2P, 0)
}

/// What a party sees of the dealer before authentication, for errors.
pub(crate) const TO_DEALER: Service = Service {
    magic: b"comet-dl",
    peer: "the dealer",
    flag: "--insecure-plaintext",
};

/// What the dealer sees of a party before authentication, for errors.
pub(crate) const FROM_PARTY: Service = Service {
    magic: b"comet-dl",
    peer: "the party",
    flag: "--insecure-plaintext",
};

/// Reads exactly `buf.len()` bytes by `deadline`, however the peer trickles them.
fn read_exact_by(stream: &TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    // silence is a plain timeout (no message at all); bytes trickled too slowly, the deadline
    let late = |got: usize| match got {
        0 => io::Error::from(io::ErrorKind::TimedOut),
        _ => deadline_passed(),
    };
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late(got));
        }
        stream.set_read_timeout(Some(left))?;
        match (&*stream).read(&mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(late(got));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What the handshake is for, in error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Service {
    /// The preamble's magic.
    pub magic: &'static [u8; 8],
    /// `the peer`, `the dealer`, `the party`.
    pub peer: &'static str,
    /// The flag that turns encryption off, for messages.
    pub flag: &'static str,
}

/// A handshake error: an IO error (classified by the caller) or a refusal, worded.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// Reading or writing failed (a passed deadline carries [`DeadlinePassed`]).
    Io(io::Error),
    /// Not a Comet peer, another version, another mode, a malformed message.
    Refused(String),
    /// The Noise handshake failed to authenticate: the keys differ (or a man in the
    /// middle altered it).
    KeyMismatch(String),
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

impl HandshakeError {
    /// As a channel error of the handshake phase.
    pub(crate) fn into_channel(self, timeout: Duration) -> ChannelError {
        match self {
            HandshakeError::Io(e) if is::<DeadlinePassed>(&e) => ChannelError::CallTimeout {
                limit: timeout,
                during: Phase::Handshake,
            },
            HandshakeError::Io(e) => ChannelError::from_read(e, Phase::Handshake, timeout),
            HandshakeError::Refused(what) => ChannelError::Handshake { what },
            HandshakeError::KeyMismatch(what) => ChannelError::KeyMismatch { what },
        }
    }
}

/// What a connection is protected by, for [`establish`].
pub(crate) enum Noise<'a> {
    /// No encryption.
    Plaintext,
    /// `NNpsk0` with this key.
    Psk(&'a ChannelKey),
    /// `NK`, the initiator pinning the responder's key.
    Pinned(&'a DealerPublicKey),
    /// `NK`, the responder holding the key.
    Holder(&'a DealerKeypair),
    /// `KK`, the initiator holding `own` and pinning `dealer`.
    Mutual {
        /// The initiator's key pair.
        own: &'a DealerKeypair,
        /// The responder's pinned key.
        dealer: &'a DealerPublicKey,
    },
    /// `KK`, the responder holding `own` and accepting any of `peers`.
    HolderPinning {
        /// The responder's key pair.
        own: &'a DealerKeypair,
        /// The initiators' pinned keys.
        peers: &'a [DealerPublicKey],
    },
}

impl Noise<'_> {
    fn mode(&self) -> u32 {
        match self {
            Noise::Plaintext => 0,
            Noise::Mutual { .. } | Noise::HolderPinning { .. } => 2,
            _ => 1,
        }
    }
}

/// What [`establish_identified`] established.
pub(crate) struct Established {
    /// The records' keys, `None` in plaintext.
    pub keys: Option<Keys>,
    /// With [`Noise::HolderPinning`]: the index in `peers` of the key the initiator proved.
    pub peer: Option<usize>,
}

/// Swaps preambles and runs the handshake on `stream`, all within `timeout`; the keys of
/// the records, or `None` in plaintext.
pub(crate) fn establish(
    stream: &TcpStream,
    role: Role,
    service: Service,
    noise: Noise<'_>,
    timeout: Duration,
) -> Result<Option<Keys>, HandshakeError> {
    establish_identified(stream, role, service, noise, timeout).map(|e| e.keys)
}

/// As [`establish`], also telling which pinned initiator key was proved.
pub(crate) fn establish_identified(
    stream: &TcpStream,
    role: Role,
    service: Service,
    noise: Noise<'_>,
    timeout: Duration,
) -> Result<Established, HandshakeError> {
    let deadline = Instant::now() + timeout;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(timeout))?;
    let ours = preamble(service.magic, noise.mode());
    (&*stream).write_all(&ours)?;
    let mut theirs = [0u8; PREAMBLE_BYTES];
    read_exact_by(stream, &mut theirs, deadline)?;
    check_preamble(&theirs, &ours, service)?;
    let mut prologue = Vec::with_capacity(2 * PREAMBLE_BYTES);
    let (first, second) = match role {
        Role::Initiator => (&ours, &theirs),
        Role::Responder => (&theirs, &ours),
    };
    prologue.extend_from_slice(first);
    prologue.extend_from_slice(second);
    let build = |pattern: &str, hs: Result<Builder<'_>, snow::Error>| {
        hs.and_then(|b| b.prologue(&prologue))
            .and_then(|b| match role {
                Role::Initiator => b.build_initiator(),
                Role::Responder => b.build_responder(),
            })
            .map_err(|e| HandshakeError::Refused(format!("cannot start {pattern}: {e}")))
    };
    let mutual = || builder(DEALER_MUTUAL_NOISE);
    let (hs, peer) = match noise {
        Noise::Plaintext => {
            return Ok(Established {
                keys: None,
                peer: None,
            });
        }
        Noise::HolderPinning { own, peers } => {
            let candidates = (peers.iter())
                .map(|k| {
                    let b = mutual()
                        .local_private_key(&own.private)
                        .and_then(|b| b.remote_public_key(&k.0));
                    build(DEALER_MUTUAL_NOISE, b)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (hs, i) = respond_any(stream, candidates, service, deadline)?;
            (hs, Some(i))
        }
        noise => {
            let (pattern, b) = match noise {
                Noise::Psk(k) => (PARTY_NOISE, builder(PARTY_NOISE).psk(0, &k.0)),
                Noise::Pinned(k) => (DEALER_NOISE, builder(DEALER_NOISE).remote_public_key(&k.0)),
                Noise::Holder(k) => (
                    DEALER_NOISE,
                    builder(DEALER_NOISE).local_private_key(&k.private),
                ),
                Noise::Mutual { own, dealer } => (
                    DEALER_MUTUAL_NOISE,
                    mutual()
                        .local_private_key(&own.private)
                        .and_then(|b| b.remote_public_key(&dealer.0)),
                ),
                Noise::Plaintext | Noise::HolderPinning { .. } => unreachable!("matched above"),
            };
            let hs = build(pattern, b)?;
            let hs = match role {
                Role::Initiator => initiate(stream, hs, service, deadline)?,
                Role::Responder => respond(stream, hs, service, deadline)?,
            };
            (hs, None)
        }
    };
    let keys = hs
        .into_stateless_transport_mode()
        .map_err(|e| HandshakeError::Refused(format!("the handshake did not complete: {e}")))?;
    Ok(Established {
        keys: Some(Arc::new(keys)),
        peer,
    })
}

fn check_preamble(
    theirs: &[u8; PREAMBLE_BYTES],
    ours: &[u8; PREAMBLE_BYTES],
    service: Service,
) -> Result<(), HandshakeError> {
    let peer = service.peer;
    if theirs[..8] != ours[..8] {
        return Err(HandshakeError::Refused(format!(
            "{peer} is not a Comet {} (its first bytes are {:?}): a foreign program, a port \
             scan, or the wrong address?",
            match service.magic {
                b"comet-dl" => "dealer service",
                _ => "party",
            },
            String::from_utf8_lossy(&theirs[..8])
        )));
    }
    let version = u32::from_le_bytes(theirs[8..12].try_into().expect("4 bytes"));
    if version != WIRE_VERSION {
        return Err(HandshakeError::Refused(format!(
            "{peer} speaks wire version {version}, this side {WIRE_VERSION}: run the same Comet \
             release on both sides"
        )));
    }
    let (mine, its) = (ours[12..] != [0; 4], theirs[12..] != [0; 4]);
    let flag = service.flag;
    match (mine, its) {
        (true, false) => Err(HandshakeError::Refused(format!(
            "{peer} runs without encryption ({flag}) and this side requires an encrypted \
             channel: give {flag} to both sides or to neither"
        ))),
        (false, true) => Err(HandshakeError::Refused(format!(
            "this side runs without encryption ({flag}) and {peer} requires an encrypted \
             channel: give {flag} to both sides or to neither"
        ))),
        _ if theirs[12..] == [2, 0, 0, 0] && ours[12..] == [1, 0, 0, 0] => {
            Err(HandshakeError::Refused(match peer {
                "the dealer" => "the dealer authenticates the parties \
                    (it pins their keys with --party-key): give this party its key, --key FILE \
                    (of `comet keygen`), and pin its public half at the dealer"
                    .to_string(),
                _ => format!(
                    "{peer} authenticates with a party key (--key), and this dealer pins no \
                     party keys (it runs with --any-party): pin the party's public key at the \
                     dealer with --party-key P=KEY, or run the party without --key"
                ),
            }))
        }
        _ if theirs[12..] == [1, 0, 0, 0] && ours[12..] == [2, 0, 0, 0] => {
            Err(HandshakeError::Refused(match peer {
                "the dealer" => "this party authenticates with its key (--key), and the dealer \
                    pins no party keys (it runs with --any-party): pin this party's public key \
                    at the dealer with --party-key P=KEY, or run without --key"
                    .to_string(),
                _ => format!(
                    "{peer} does not authenticate with a key of its own, and this dealer \
                     accepts only the parties whose keys it pins (--party-key): give the party \
                     --key FILE (of `comet keygen`) and pin its public half here"
                ),
            }))
        }
        _ if theirs[12..] != ours[12..] => Err(HandshakeError::Refused(format!(
            "{peer} asks for an unknown channel mode"
        ))),
        _ => Ok(()),
    }
}

/// The refusal a responder sends when the initiator's first message fails authentication:
/// a record length of zero (never a valid handshake message). Unauthenticated: it only
/// turns a silent close into a clear error.
const KEY_ALERT: [u8; 2] = [0, 0];

fn send_message(stream: &TcpStream, hs: &mut HandshakeState) -> Result<(), HandshakeError> {
    let mut buf = [0u8; 2 + HANDSHAKE_MESSAGE_BYTES];
    let n = hs
        .write_message(&[], &mut buf[2..])
        .map_err(|e| HandshakeError::Refused(format!("cannot write the handshake: {e}")))?;
    buf[..2].copy_from_slice(&(n as u16).to_le_bytes());
    (&*stream).write_all(&buf[..2 + n])?;
    Ok(())
}

/// Reads a handshake message of exactly [`HANDSHAKE_MESSAGE_BYTES`]; `None` for the alert.
fn read_message(
    stream: &TcpStream,
    service: Service,
    deadline: Instant,
) -> Result<Option<[u8; HANDSHAKE_MESSAGE_BYTES]>, HandshakeError> {
    let mut len = [0u8; 2];
    read_exact_by(stream, &mut len, deadline)?;
    match usize::from(u16::from_le_bytes(len)) {
        0 => Ok(None),
        HANDSHAKE_MESSAGE_BYTES => {
            let mut msg = [0u8; HANDSHAKE_MESSAGE_BYTES];
            read_exact_by(stream, &mut msg, deadline)?;
            Ok(Some(msg))
        }
        n => Err(HandshakeError::Refused(format!(
            "{} sent a handshake message of {n} bytes, not {HANDSHAKE_MESSAGE_BYTES}",
            service.peer
        ))),
    }
}

fn initiate(
    stream: &TcpStream,
    mut hs: HandshakeState,
    service: Service,
    deadline: Instant,
) -> Result<HandshakeState, HandshakeError> {
    send_message(stream, &mut hs)?;
    let mismatch = |what: &str| {
        HandshakeError::KeyMismatch(format!(
            "{} {what}: {}",
            service.peer,
            match service.magic {
                b"comet-dl" =>
                    "is this the dealer whose public key --dealer-key gives, and \
                    does it pin this party's key (--party-key) for this party index?",
                _ =>
                    "both parties must hold the two halves of the same dealt session (material \
                      files or dealer session)",
            }
        ))
    };
    let Some(msg) = read_message(stream, service, deadline)? else {
        return Err(mismatch("could not authenticate this side's key exchange"));
    };
    let mut payload = [0u8; HANDSHAKE_MESSAGE_BYTES];
    hs.read_message(&msg, &mut payload)
        .map_err(|_| mismatch("answered with a key exchange that failed authentication"))?;
    Ok(hs)
}

/// The responder of `KK` against several pinned initiator keys: the first message is tried
/// against each candidate state (one per key); the one that authenticates it answers.
fn respond_any(
    stream: &TcpStream,
    candidates: Vec<HandshakeState>,
    service: Service,
    deadline: Instant,
) -> Result<(HandshakeState, usize), HandshakeError> {
    let Some(msg) = read_message(stream, service, deadline)? else {
        return Err(HandshakeError::Refused(format!(
            "{} sent an empty handshake message",
            service.peer
        )));
    };
    let mut payload = [0u8; HANDSHAKE_MESSAGE_BYTES];
    for (i, mut hs) in candidates.into_iter().enumerate() {
        if hs.read_message(&msg, &mut payload).is_ok() {
            send_message(stream, &mut hs)?;
            return Ok((hs, i));
        }
    }
    let _ = (&*stream).write_all(&KEY_ALERT);
    Err(HandshakeError::KeyMismatch(format!(
        "{}'s key exchange failed authentication: its key is none of the party keys this \
         dealer pins (--party-key), or it pins another dealer public key, or the message was \
         altered; nothing is dealt to it",
        service.peer
    )))
}

fn respond(
    stream: &TcpStream,
    mut hs: HandshakeState,
    service: Service,
    deadline: Instant,
) -> Result<HandshakeState, HandshakeError> {
    let Some(msg) = read_message(stream, service, deadline)? else {
        return Err(HandshakeError::Refused(format!(
            "{} sent an empty handshake message",
            service.peer
        )));
    };
    let mut payload = [0u8; HANDSHAKE_MESSAGE_BYTES];
    if hs.read_message(&msg, &mut payload).is_err() {
        let _ = (&*stream).write_all(&KEY_ALERT);
        return Err(HandshakeError::KeyMismatch(format!(
            "{}'s key exchange failed authentication: {}",
            service.peer,
            match service.magic {
                b"comet-dl" =>
                    "it pins another dealer public key (--dealer-key), or the message was altered",
                _ =>
                    "it holds another session's key (material of another dealt session?), or \
                      the message was altered",
            }
        )));
    }
    send_message(stream, &mut hs)?;
    Ok(hs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_appear_in_debug_output() {
        let k = ChannelKey::from_bytes([0xab; 32]);
        let s = format!("{k:?} {:?}", Security::Psk(k.clone()));
        assert!(!s.contains("ab") && !s.contains("171"), "{s}");
        let pair = DealerKeypair::generate().unwrap();
        let private = hex(&pair.private);
        let s = format!("{pair:?} {:?}", DealerIdentity::Key(pair.clone()));
        assert!(!s.contains(&private[..16]), "{s}");
        assert!(s.contains(&pair.public().to_string()), "{s}");
        // a party's key pair, at the dealer (pinned public halves) and at the party
        let party = DealerKeypair::generate().unwrap();
        let party_private = hex(&party.private);
        let pinning = DealerIdentity::Pinning {
            key: pair.clone(),
            parties: vec![PartyKey {
                party: 1,
                key: party.public(),
            }],
        };
        let mutual = DealerAuth::Mutual {
            dealer: pair.public(),
            own: party.clone(),
        };
        let s = format!("{pinning:?} {mutual:?}");
        assert!(
            !s.contains(&private[..16]) && !s.contains(&party_private[..16]),
            "{s}"
        );
        assert!(s.contains(&party.public().to_string()), "{s}");
    }

    #[test]
    fn party_keys_parse_with_their_index() {
        let k = DealerKeypair::generate().unwrap().public();
        let p = PartyKey::parse(&format!("1={k}")).unwrap();
        assert_eq!((p.party, p.key), (1, k));
        for bad in [format!("{k}"), format!("2={k}"), "0=zz".to_string()] {
            let e = PartyKey::parse(&bad).unwrap_err();
            assert!(
                e.contains("party") || e.contains("neither 64 hex digits"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_key_file_is_private_never_overwritten_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dealer.key");
        let pair = DealerKeypair::generate().unwrap();
        pair.write_new(&path).unwrap();
        assert!(pair.write_new(&path).is_err());
        let back = DealerKeypair::read(&path).unwrap();
        assert_eq!((back.private, back.public), (pair.private, pair.public));
        let parsed = DealerPublicKey::parse(path.to_str().unwrap()).unwrap();
        assert_eq!(parsed, pair.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = DealerKeypair::read(&path).unwrap_err();
            assert!(e.contains("readable by others"), "{e}");
        }
    }
}
