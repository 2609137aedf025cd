//! The TCP channel between two processes: one listens and accepts one peer, the other
//! connects (with retries, so that the two may be started in any order).

use super::frame::{FrameError, Received, read_message};
use super::hello::{HELLO_BYTES, MAGIC_2P};
use super::secure::{
    self, Deadline, DeadlinePassed, DeadlineReader, Keys, Noise, RECORD_OVERHEAD_BYTES, Role,
    SecureReader, Security, Service, is,
};
use super::session::{Link, Session};
use super::writer::Writer;
use super::{Channel, ChannelError, ChannelStats, Hello, Phase};
use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Read buffer: frame headers and small messages arrive in one system call.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// How often a listener waiting for its peer looks again.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// Limits of a TCP channel: every wait is bounded, so a dead or stalled peer is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpOptions {
    /// The longest silence from the peer while waiting for its message.
    pub read_timeout: Duration,
    /// The longest time the peer may take none of this party's bytes.
    pub write_timeout: Duration,
    /// The largest frame, in payload bytes: a longer message is sent as several frames,
    /// and a frame the peer announces longer is [`ChannelError::Malformed`]. Also bounds
    /// the memory one frame can claim before its bytes arrive.
    pub max_frame_bytes: u64,
    /// The largest message (all its frames) accepted from the peer, in bytes.
    pub max_message_bytes: u64,
    /// How many times [`TcpChannel::connect`] tries before giving up.
    pub connect_attempts: u32,
    /// The pause between two connection attempts.
    pub connect_retry_delay: Duration,
    /// The longest [`TcpChannel::connect`] tries, all attempts together.
    pub connect_timeout: Duration,
    /// The longest [`TcpListenerHandle::accept`] waits for the peer.
    pub accept_timeout: Duration,
    /// The longest one exchange (or the hello) may take in all, however the peer trickles
    /// its bytes: `read_timeout` bounds each read, this the whole message.
    pub call_timeout: Duration,
    /// The longest the preamble and key exchange of a new connection may take, before
    /// anything is authenticated.
    pub handshake_timeout: Duration,
}

/// What a party sees of the other's connection before authentication, for errors.
const PARTY_SERVICE: Service = Service {
    magic: MAGIC_2P,
    peer: "the peer",
    flag: "--insecure-plaintext",
};

impl Default for TcpOptions {
    /// 60 s read and write timeouts, frames of 64 MiB, messages of 4 GiB, 50 connection
    /// attempts 100 ms apart within 30 s, 60 s to accept, 10 min per exchange, 10 s for
    /// a new connection's handshake.
    fn default() -> Self {
        TcpOptions {
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            max_frame_bytes: 64 << 20,
            max_message_bytes: 4 << 30,
            connect_attempts: 50,
            connect_retry_delay: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(30),
            accept_timeout: Duration::from_secs(60),
            call_timeout: Duration::from_secs(600),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl TcpOptions {
    /// Refuses options that cannot work: zero timeouts (the OS reads zero as "never")
    /// and zero attempts.
    pub fn validate(&self) -> Result<(), ChannelError> {
        let durations = [
            ("read_timeout", self.read_timeout),
            ("write_timeout", self.write_timeout),
            ("connect_timeout", self.connect_timeout),
            ("accept_timeout", self.accept_timeout),
            ("call_timeout", self.call_timeout),
            ("handshake_timeout", self.handshake_timeout),
        ];
        let zero = durations
            .iter()
            .find(|(_, d)| d.is_zero())
            .map(|(name, _)| *name);
        let what = match zero {
            Some(name) => format!("`{name}` is zero; give it a positive duration"),
            None if self.connect_attempts == 0 => "`connect_attempts` is zero".to_string(),
            None => return Ok(()),
        };
        Err(ChannelError::InvalidOptions { what })
    }
}

/// A bound listening socket, before its peer has connected: binding first tells the
/// caller the address (port 0 lets the OS choose) before it waits for the peer.
pub struct TcpListenerHandle {
    listener: TcpListener,
    addr: SocketAddr,
}

impl TcpListenerHandle {
    /// Binds `addr`; returns the handle and the address actually bound.
    pub fn bind(addr: impl ToSocketAddrs) -> Result<(Self, SocketAddr), ChannelError> {
        let listener = TcpListener::bind(addr).map_err(|e| io_error("binding", e))?;
        let addr = listener.local_addr().map_err(|e| io_error("binding", e))?;
        Ok((TcpListenerHandle { listener, addr }, addr))
    }

    /// Waits at most `opts.accept_timeout` for one peer that completes the preamble and
    /// key exchange of `security`, and makes the channel to it. A connection that fails
    /// them (a port scan, a foreign program, garbage, another key) is dropped and the
    /// listener keeps waiting for the real peer; if none comes, the error names the last
    /// refusal.
    pub fn accept(
        self,
        opts: &TcpOptions,
        security: &Security,
    ) -> Result<TcpChannel, ChannelError> {
        self.accept_reporting(opts, security, &mut |_, _| {})
    }

    /// [`accept`](Self::accept), telling `on_refused` of each connection refused.
    pub fn accept_reporting(
        self,
        opts: &TcpOptions,
        security: &Security,
        on_refused: &mut dyn FnMut(SocketAddr, &ChannelError),
    ) -> Result<TcpChannel, ChannelError> {
        opts.validate()?;
        let start = Instant::now();
        let (mut refused, mut last) = (0u64, String::new());
        loop {
            let left = opts.accept_timeout.saturating_sub(start.elapsed());
            let stream = match self.accept_within(left) {
                Ok(stream) => stream,
                Err(ChannelError::NoPeer { .. }) => {
                    let refused = match refused {
                        0 => String::new(),
                        n => format!("; refused {n} connection(s), the last from {last}"),
                    };
                    return Err(ChannelError::NoPeer {
                        addr: self.addr,
                        waited: opts.accept_timeout,
                        refused,
                    });
                }
                Err(e) => return Err(e),
            };
            let peer = stream.peer_addr().map_err(|e| io_error("accepting", e))?;
            match TcpChannel::establish(stream, opts, security, Role::Responder) {
                Ok(ch) => return Ok(ch),
                Err(e) => {
                    on_refused(peer, &e);
                    refused += 1;
                    last = format!("{peer}: {e}");
                }
            }
        }
    }

    /// The first connection within `limit`, polling a non-blocking listener.
    fn accept_within(&self, limit: Duration) -> Result<TcpStream, ChannelError> {
        let fail = |e| io_error(&format!("accepting on {}", self.addr), e);
        self.listener.set_nonblocking(true).map_err(fail)?;
        let start = Instant::now();
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => return Ok(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(e)),
            }
            if start.elapsed() >= limit {
                return Err(ChannelError::NoPeer {
                    addr: self.addr,
                    waited: limit,
                    refused: String::new(),
                });
            }
            std::thread::sleep(ACCEPT_POLL.min(limit.saturating_sub(start.elapsed())));
        }
    }
}

/// A channel over one TCP connection.
///
/// Frames are written on a thread of the channel's own while the caller reads the peer's
/// (see the `writer` module), so both parties can send messages of any size at once.
/// `TCP_NODELAY` is set: a round's message leaves at once.
pub struct TcpChannel {
    session: Session<TcpLink>,
    peer: SocketAddr,
}

impl TcpChannel {
    /// Listens on `addr` and accepts one peer: [`TcpListenerHandle::bind`] then
    /// [`accept`](TcpListenerHandle::accept).
    pub fn listen(
        addr: impl ToSocketAddrs,
        opts: &TcpOptions,
        security: &Security,
    ) -> Result<Self, ChannelError> {
        opts.validate()?;
        TcpListenerHandle::bind(addr)?.0.accept(opts, security)
    }

    /// Connects to the party listening on `addr`, retrying `opts.connect_attempts` times
    /// `opts.connect_retry_delay` apart, within `opts.connect_timeout` in all, then runs
    /// the preamble and key exchange of `security` (not retried: a refusal is final).
    pub fn connect(
        addr: impl ToSocketAddrs,
        opts: &TcpOptions,
        security: &Security,
    ) -> Result<Self, ChannelError> {
        let stream = connect_stream(addr, opts)?;
        Self::establish(stream, opts, security, Role::Initiator)
    }

    /// Runs the preamble and the key exchange on a new connection.
    fn establish(
        stream: TcpStream,
        opts: &TcpOptions,
        security: &Security,
        role: Role,
    ) -> Result<Self, ChannelError> {
        stream
            .set_nonblocking(false)
            .map_err(|e| io_error("setting up", e))?;
        let noise = match security {
            Security::Psk(k) => Noise::Psk(k),
            Security::InsecurePlaintext => Noise::Plaintext,
        };
        let limit = opts.handshake_timeout;
        let keys = secure::establish(&stream, role, PARTY_SERVICE, noise, limit)
            .map_err(|e| e.into_channel(limit))?;
        Self::over(stream, opts, keys)
    }

    /// Bounds the messages the peer may send from now on: at most `setup_bytes` in a setup
    /// exchange and `round_bytes` in a round (the caller derives them from the plan; the
    /// options' `max_message_bytes` stays the upper bound).
    pub fn limit_messages(&mut self, setup_bytes: u64, round_bytes: u64) {
        self.session
            .link_mut()
            .limit_messages(setup_bytes, round_bytes);
    }

    /// Whether the channel is encrypted and authenticated.
    pub fn is_encrypted(&self) -> bool {
        self.session.link().keys_present()
    }

    /// The bytes the channel's read buffers hold (tests of bounded memory).
    #[cfg(test)]
    pub(crate) fn read_buffer_capacity(&self) -> usize {
        self.session.link().read_buffer_capacity()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// A channel over a connected `stream` whose handshake gave `keys`.
    fn over(
        stream: TcpStream,
        opts: &TcpOptions,
        keys: Option<Keys>,
    ) -> Result<Self, ChannelError> {
        let peer = stream.peer_addr().map_err(|e| io_error("setting up", e))?;
        let link = TcpLink::new(stream, opts, keys)
            .map_err(|e| io_error(&format!("setting up {peer}"), e))?;
        Ok(TcpChannel {
            session: Session::new(link),
            peer,
        })
    }
}

impl Channel for TcpChannel {
    fn exchange(&mut self, msg: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.session.exchange(msg)
    }

    fn exchange_setup(&mut self, msg: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.session.exchange_setup(msg)
    }

    fn handshake(&mut self, hello: &Hello) -> Result<Hello, ChannelError> {
        self.session.handshake(hello)
    }

    fn stats(&self) -> ChannelStats {
        self.session.stats()
    }

    fn reset_stats(&mut self) {
        self.session.reset_stats()
    }

    fn limit_messages(&mut self, setup_bytes: u64, round_bytes: u64) {
        TcpChannel::limit_messages(self, setup_bytes, round_bytes)
    }
}

/// The connection's two halves: the caller reads, the writer thread writes.
struct TcpLink {
    reader: SecureReader<BufReader<DeadlineReader>>,
    writer: Writer,
    deadline: Deadline,
    sealed: bool,
    read_timeout: Duration,
    write_timeout: Duration,
    call_timeout: Duration,
    max_frame_bytes: u64,
    max_message_bytes: u64,
    /// The largest message accepted in a setup exchange and in a round.
    caps: (u64, u64),
}

impl TcpLink {
    /// Sets the socket options and starts the writer thread.
    fn new(stream: TcpStream, opts: &TcpOptions, keys: Option<Keys>) -> io::Result<Self> {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(opts.read_timeout))?;
        stream.set_write_timeout(Some(opts.write_timeout))?;
        let deadline = Deadline::new();
        let raw = DeadlineReader::new(stream.try_clone()?, opts.read_timeout, deadline.clone());
        Ok(TcpLink {
            writer: Writer::spawn(&stream, opts.max_frame_bytes, keys.clone())?,
            sealed: keys.is_some(),
            reader: SecureReader::new(BufReader::with_capacity(READ_BUFFER_BYTES, raw), keys),
            deadline,
            read_timeout: opts.read_timeout,
            write_timeout: opts.write_timeout,
            call_timeout: opts.call_timeout,
            max_frame_bytes: opts.max_frame_bytes,
            max_message_bytes: opts.max_message_bytes,
            caps: (opts.max_message_bytes, opts.max_message_bytes),
        })
    }

    fn limit_messages(&mut self, setup_bytes: u64, round_bytes: u64) {
        let max = self.max_message_bytes;
        self.caps = (setup_bytes.min(max), round_bytes.min(max));
    }

    fn keys_present(&self) -> bool {
        self.sealed
    }

    #[cfg(test)]
    fn read_buffer_capacity(&self) -> usize {
        self.reader.buffer_capacity() + self.reader_inner_capacity()
    }

    #[cfg(test)]
    fn reader_inner_capacity(&self) -> usize {
        READ_BUFFER_BYTES
    }

    /// The caps on a frame and on the message of `phase`: the hello has its exact size.
    fn caps_of(&self, phase: Phase) -> (u64, u64) {
        let message = match phase {
            Phase::Handshake => HELLO_BYTES as u64,
            Phase::Setup(_) => self.caps.0,
            Phase::Round(_) => self.caps.1,
        };
        (self.max_frame_bytes.min(message), message)
    }

    fn swap_by(
        &mut self,
        phase: Phase,
        msg: &[u8],
        deadline: Instant,
    ) -> Result<Received, ChannelError> {
        let call_timeout = self.call_timeout;
        let write_error = |e: io::Error| match is::<DeadlinePassed>(&e) {
            true => ChannelError::CallTimeout {
                limit: call_timeout,
                during: phase,
            },
            false => ChannelError::from_write(e, phase, self.write_timeout),
        };
        self.writer.start(phase, msg).map_err(write_error)?;
        let (frame, message) = self.caps_of(phase);
        let received = read_message(&mut self.reader, frame, message).map_err(|e| match e {
            FrameError::Io(e) if is::<DeadlinePassed>(&e) => ChannelError::CallTimeout {
                limit: call_timeout,
                during: phase,
            },
            FrameError::Io(e) => ChannelError::from_read(e, phase, self.read_timeout),
            FrameError::Malformed(what) => ChannelError::Malformed {
                what,
                during: phase,
            },
        })?;
        self.writer.finish(Some(deadline)).map_err(write_error)?;
        Ok(received)
    }
}

impl Link for TcpLink {
    fn frame_bytes(&self) -> u64 {
        self.max_frame_bytes
    }

    /// The frames, and in an encrypted channel each record's length and tag.
    fn wire_bytes(&self, payload: usize) -> u64 {
        let framed = super::frame::wire_bytes(payload, self.max_frame_bytes);
        match self.sealed {
            true => framed + secure::records(framed) * RECORD_OVERHEAD_BYTES,
            false => framed,
        }
    }

    fn swap(&mut self, phase: Phase, msg: &[u8]) -> Result<Received, ChannelError> {
        let deadline = Instant::now() + self.call_timeout;
        self.deadline.set(Some(deadline));
        let received = self.swap_by(phase, msg, deadline);
        self.deadline.set(None);
        received
    }
}

/// A TCP connection to `addr`, retrying as `opts` allow (also the dealer service's
/// client, `dealer::DealerStream`).
pub(crate) fn connect_stream(
    addr: impl ToSocketAddrs,
    opts: &TcpOptions,
) -> Result<TcpStream, ChannelError> {
    opts.validate()?;
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| io_error("resolving the address", e))?
        .collect();
    connect_with_retries(&addrs, opts)
}

/// The first connection to any of `addrs`, trying as `opts` allow.
fn connect_with_retries(
    addrs: &[SocketAddr],
    opts: &TcpOptions,
) -> Result<TcpStream, ChannelError> {
    let start = Instant::now();
    let mut attempts = 0;
    let last_error = loop {
        attempts += 1;
        let remaining = opts.connect_timeout.saturating_sub(start.elapsed());
        let error = match connect_once(addrs, remaining) {
            Ok(stream) => return Ok(stream),
            Err(e) => e,
        };
        let remaining = opts.connect_timeout.saturating_sub(start.elapsed());
        if attempts >= opts.connect_attempts || remaining <= opts.connect_retry_delay {
            break error;
        }
        std::thread::sleep(opts.connect_retry_delay);
    };
    Err(ChannelError::Connect {
        addr: describe(addrs),
        attempts,
        waited: start.elapsed(),
        source: last_error,
    })
}

/// One attempt on each address in turn, each bounded by `limit`.
fn connect_once(addrs: &[SocketAddr], limit: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::InvalidInput,
        "the address resolved to nothing",
    );
    for addr in addrs {
        match TcpStream::connect_timeout(addr, limit.max(Duration::from_millis(1))) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The addresses for an error message.
fn describe(addrs: &[SocketAddr]) -> String {
    let names: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    match names.len() {
        0 => "(no address)".into(),
        _ => names.join(" or "),
    }
}

/// An OS error outside any exchange, saying what was being done.
fn io_error(doing: &str, source: io::Error) -> ChannelError {
    ChannelError::Io {
        during: doing.to_string(),
        source,
    }
}
