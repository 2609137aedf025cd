//! The TCP channel between two processes: one listens and accepts one peer, the other
//! connects (with retries, so that the two may be started in any order).

use super::frame::{FrameError, Received, read_message};
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
}

impl Default for TcpOptions {
    /// 60 s read and write timeouts, frames of 64 MiB, messages of 4 GiB, 50 connection
    /// attempts 100 ms apart within 30 s, 60 s to accept.
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

    /// Waits at most `opts.accept_timeout` for one peer and makes the channel to it.
    pub fn accept(self, opts: &TcpOptions) -> Result<TcpChannel, ChannelError> {
        opts.validate()?;
        let stream = self.accept_within(opts.accept_timeout)?;
        TcpChannel::over(stream, opts)
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
    pub fn listen(addr: impl ToSocketAddrs, opts: &TcpOptions) -> Result<Self, ChannelError> {
        opts.validate()?;
        TcpListenerHandle::bind(addr)?.0.accept(opts)
    }

    /// Connects to the party listening on `addr`, retrying `opts.connect_attempts` times
    /// `opts.connect_retry_delay` apart, within `opts.connect_timeout` in all.
    pub fn connect(addr: impl ToSocketAddrs, opts: &TcpOptions) -> Result<Self, ChannelError> {
        let stream = connect_stream(addr, opts)?;
        Self::over(stream, opts)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// A channel over a connected `stream`, configured by `opts`.
    fn over(stream: TcpStream, opts: &TcpOptions) -> Result<Self, ChannelError> {
        let peer = stream.peer_addr().map_err(|e| io_error("setting up", e))?;
        let link =
            TcpLink::new(stream, opts).map_err(|e| io_error(&format!("setting up {peer}"), e))?;
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
}

/// The connection's two halves: the caller reads, the writer thread writes.
struct TcpLink {
    reader: BufReader<TcpStream>,
    writer: Writer,
    read_timeout: Duration,
    write_timeout: Duration,
    max_frame_bytes: u64,
    max_message_bytes: u64,
}

impl TcpLink {
    /// Sets the socket options and starts the writer thread.
    fn new(stream: TcpStream, opts: &TcpOptions) -> io::Result<Self> {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(opts.read_timeout))?;
        stream.set_write_timeout(Some(opts.write_timeout))?;
        Ok(TcpLink {
            writer: Writer::spawn(&stream, opts.max_frame_bytes)?,
            reader: BufReader::with_capacity(READ_BUFFER_BYTES, stream),
            read_timeout: opts.read_timeout,
            write_timeout: opts.write_timeout,
            max_frame_bytes: opts.max_frame_bytes,
            max_message_bytes: opts.max_message_bytes,
        })
    }
}

impl Link for TcpLink {
    fn frame_bytes(&self) -> u64 {
        self.max_frame_bytes
    }

    fn swap(&mut self, phase: Phase, msg: &[u8]) -> Result<Received, ChannelError> {
        let write_error = |e| ChannelError::from_write(e, phase, self.write_timeout);
        self.writer.start(phase, msg).map_err(write_error)?;
        let (frame, message) = (self.max_frame_bytes, self.max_message_bytes);
        let received = read_message(&mut self.reader, frame, message).map_err(|e| match e {
            FrameError::Io(e) => ChannelError::from_read(e, phase, self.read_timeout),
            FrameError::Malformed(what) => ChannelError::Malformed {
                what,
                during: phase,
            },
        })?;
        self.writer.finish().map_err(write_error)?;
        Ok(received)
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
