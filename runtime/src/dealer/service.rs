//! The dealer service (docs/runtime.md, "Dealer service"): a third process that deals
//! each session's material as the two parties reach each call, and streams each party's
//! half into its socket, so that no material file is ever written.
//!
//! **Pairing.** The dealer serves sessions one after another. It accepts connections until
//! it holds one party 0 and one party 1 for its plan (another plan, a malformed hello or a
//! party index already taken is refused with a reason, and the dealer keeps waiting), then
//! draws a fresh session id and master seed from the OS and grants both parties their
//! seeds and that id. The parties then run their own handshake
//! ([`Hello`](crate::transport::Hello)), which already compares plan digest and session
//! id: if the dealer paired a party with another party's peer (two pairs starting at
//! once), the two ids differ and both parties stop before any exchange. We chose this over
//! "party 1 gets a session id and passes it to party 0" because it needs no message between
//! the parties before their handshake, lets them start in any order, and keeps every
//! check in the handshakes that exist already. A party left alone waits at most
//! `accept_timeout` for its partner, then is refused.
//!
//! **Binding.** The material of a session exists only on its two connections: the grant
//! carries the plan digest, the session id and the seeds of the party that connected as
//! that index. Each call is requested by both parties with (session id, call index, `seq`,
//! `past`); the dealer deals call `k` only when both asked for call `k` of this session at
//! the same sizes, `k` following `k − 1`: a repeated, skipped or mismatched call, or a
//! request for another session, stops the session with the reason sent to both parties.
//! Material is never dealt twice and a session's seeds never serve another session.
//!
//! **Bounded working set.** Each party's bytes go into its socket as they are dealt, in
//! chunks of at most [`CHUNK_BYTES`]: a party that reads slowly slows the dealer down (TCP
//! backpressure) instead of making it buffer. (The dealer still draws one call's material
//! at a time in memory, as the interpreter's material generation does.)

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use comet_ir::DimEnv;
use rand::TryRng;

use super::wire::{
    self, CallRequest, DealerError, Grant, HELLO_BYTES, PartyHello, Side, hex, read_request,
};
use super::{PartySeed, SessionDealer};
use crate::transport::secure::{
    self, FROM_PARTY, Noise, Role, SecureReader, SecureWriter, SharedWriter,
};
use crate::transport::{DealerIdentity, PartyKey, TcpOptions};

/// Body bytes the dealer collects per party before sending them as one chunk.
pub const CHUNK_BYTES: usize = 64 << 10;

/// How often a dealer waiting for parties looks again.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// The default cap on a call's `seq + past`.
pub const DEFAULT_MAX_TOKENS: u64 = 1 << 16;

/// Deals one call into the session's recording dealer: `(env, dealer, set_up)` to the
/// call's and the setup's offline bytes ([`crate::interp::deal_call`] for a plan).
pub type DealCall<'a> =
    dyn FnMut(DimEnv, &mut SessionDealer, bool) -> Result<(u64, u64), String> + 'a;

/// What the service tells its caller as it goes (progress output).
#[derive(Debug)]
pub enum Event<'a> {
    /// A connection was refused (it was told why).
    Refused {
        /// Who connected.
        peer: SocketAddr,
        /// Why.
        reason: &'a str,
    },
    /// A party joined first and waits for its partner.
    Joined {
        /// Its index.
        party: u8,
        /// Its address.
        peer: SocketAddr,
    },
    /// Both parties are there: the session starts.
    Paired {
        /// The session id.
        session: &'a [u8; 32],
        /// Party 0's and party 1's addresses.
        peers: [SocketAddr; 2],
    },
    /// A call was dealt and streamed.
    Call(&'a CallReport),
}

/// One call as the dealer served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallReport {
    /// The call's index in its session.
    pub call: u64,
    /// Its sizes.
    pub env: DimEnv,
    /// Offline bytes of the call, both parties (the plan's `offline_bits / 8`).
    pub offline_bytes: u64,
    /// Offline bytes of the session's setup dealt with this call (the first only).
    pub setup_bytes: u64,
    /// Body bytes streamed to party 0 and party 1 for this call (DReLU key headers
    /// included).
    pub streamed: [u64; 2],
}

/// One session as the dealer served it.
#[derive(Debug)]
pub struct SessionReport {
    /// The session id.
    pub session: [u8; 32],
    /// The calls dealt, in order.
    pub calls: Vec<CallReport>,
    /// How it ended: `Ok` when both parties closed after the same call.
    pub outcome: Result<(), DealerError>,
    /// Wall time from pairing to the end.
    pub elapsed: Duration,
}

/// Bytes of fixed masks a session keeps expanded by default: with one item of material at
/// a time, the dealer stays within 1 GiB whatever the model.
pub const DEFAULT_MASK_BUDGET: u64 = 512 << 20;

/// The dealer service, bound to its address and plan.
pub struct DealerService {
    listener: TcpListener,
    addr: SocketAddr,
    plan_digest: [u8; 32],
    opts: TcpOptions,
    identity: DealerIdentity,
    max_tokens: u64,
    mask_budget: u64,
}

impl fmt::Debug for DealerService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DealerService")
            .field("addr", &self.addr)
            .field("plan_digest", &hex(&self.plan_digest[..8]))
            .finish_non_exhaustive()
    }
}

/// One party's connection, once its hello was accepted.
struct Conn {
    reader: SecureReader<TcpStream>,
    writer: SharedWriter,
    peer: SocketAddr,
    side: Side,
    /// Set when a write failed midway: nothing more may be written.
    broken: bool,
}

impl DealerService {
    /// Binds `addr` (port 0: the OS chooses) for the plan of digest `plan_digest`; every
    /// wait on a party is bounded by `opts` (`read_timeout`, `write_timeout`, and
    /// `accept_timeout` for a party waiting for its partner; `handshake_timeout` for a new
    /// connection's preamble, key exchange and hello). Each connection runs Noise `NK`
    /// with `identity`'s key, or `KK` when it pins the parties' keys (then a party whose
    /// key is not pinned, or that asks for another index than its key's, is refused before
    /// anything is dealt), or plaintext if both sides say so.
    ///
    /// # Errors
    /// If the options are invalid or the address cannot be bound.
    pub fn bind(
        addr: impl ToSocketAddrs,
        plan_digest: [u8; 32],
        opts: &TcpOptions,
        identity: DealerIdentity,
    ) -> Result<DealerService, DealerError> {
        opts.validate()
            .map_err(|e| DealerError::Protocol(e.to_string()))?;
        let io = |e| DealerError::Io {
            doing: "binding the dealer's address".into(),
            source: e,
        };
        let listener = TcpListener::bind(addr).map_err(io)?;
        let addr = listener.local_addr().map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        Ok(DealerService {
            listener,
            addr,
            plan_digest,
            opts: opts.clone(),
            identity,
            max_tokens: DEFAULT_MAX_TOKENS,
            mask_budget: DEFAULT_MASK_BUDGET,
        })
    }

    /// Refuses calls whose `seq + past` exceeds `max_tokens` (default
    /// [`DEFAULT_MAX_TOKENS`]), so that no request makes the dealer draw absurd material.
    pub fn with_max_tokens(mut self, max_tokens: u64) -> DealerService {
        self.max_tokens = max_tokens;
        self
    }

    /// Keeps at most `bytes` of the fixed operands' masks expanded per session (default
    /// [`DEFAULT_MASK_BUDGET`]); the rest is re-derived at each call
    /// ([`SessionDealer::with_mask_budget`]). It bounds the dealer's resident memory
    /// whatever the model; a larger budget spends less time per call.
    pub fn with_mask_budget(mut self, bytes: u64) -> DealerService {
        self.mask_budget = bytes;
        self
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the next pair of parties and serves their session to its end, dealing
    /// each call with `deal`; `on` hears of refusals, the pairing and each call. A failed
    /// session (a party stalled, vanished or asked for the wrong call) is reported in the
    /// returned [`SessionReport::outcome`], after both parties were told why.
    ///
    /// # Errors
    /// Only if the listener itself fails.
    pub fn serve_session(
        &self,
        deal: &mut DealCall<'_>,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<SessionReport, DealerError> {
        let mut conns = self.pair(on)?;
        let start = Instant::now();
        let mut calls = Vec::new();
        let (session, outcome) = match new_session() {
            Ok((session, master)) => {
                let peers = [conns[0].peer, conns[1].peer];
                on(Event::Paired {
                    session: &session,
                    peers,
                });
                let outcome = self.run(&mut conns, session, master, deal, &mut calls, on);
                (session, outcome)
            }
            Err(e) => ([0; 32], Err(e)),
        };
        if let Err(e) = &outcome {
            for c in conns.iter_mut().filter(|c| !c.broken) {
                let _ = wire::write_refused(&mut c.writer, &format!("session stopped: {e}"));
            }
        }
        Ok(SessionReport {
            session,
            calls,
            outcome,
            elapsed: start.elapsed(),
        })
    }

    /// Accepts connections until one party 0 and one party 1 of this plan are there.
    fn pair(&self, on: &mut dyn FnMut(Event<'_>)) -> Result<[Conn; 2], DealerError> {
        let mut slots: [Option<Conn>; 2] = [None, None];
        let mut since = Instant::now();
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if let Some((party, conn)) = self.admit(stream, peer, &slots, on) {
                        if slots.iter().all(Option::is_none) {
                            since = Instant::now();
                            on(Event::Joined { party, peer });
                        }
                        slots[usize::from(party)] = Some(conn);
                    }
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock) => {
                    std::thread::sleep(ACCEPT_POLL)
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted) => {}
                Err(e) => {
                    return Err(DealerError::Io {
                        doing: format!("accepting on {}", self.addr),
                        source: e,
                    });
                }
            }
            if let [Some(_), Some(_)] = &slots {
                let [a, b] = slots;
                return Ok([a, b].map(|c| c.unwrap_or_else(|| unreachable!("both filled"))));
            }
            self.expire(&mut slots, since, on);
        }
    }

    /// Refuses a party that waited longer than `accept_timeout` for its partner.
    fn expire(&self, slots: &mut [Option<Conn>; 2], since: Instant, on: &mut dyn FnMut(Event<'_>)) {
        if since.elapsed() < self.opts.accept_timeout {
            return;
        }
        for (p, slot) in slots.iter_mut().enumerate() {
            if let Some(mut c) = slot.take() {
                let reason = format!(
                    "party {} did not connect to the dealer within {:?}",
                    1 - p,
                    self.opts.accept_timeout
                );
                let _ = wire::write_refused(&mut c.writer, &reason);
                on(Event::Refused {
                    peer: c.peer,
                    reason: &reason,
                });
            }
        }
    }

    /// Reads a new connection's hello; the connection if it may join, else `None` (it was
    /// refused, and told why when it speaks our protocol).
    fn admit(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        slots: &[Option<Conn>; 2],
        on: &mut dyn FnMut(Event<'_>),
    ) -> Option<(u8, Conn)> {
        let (mut reader, mut writer, pinned) = match self.secure(&stream, peer) {
            Ok(halves) => halves,
            Err(reason) => {
                on(Event::Refused {
                    peer,
                    reason: &reason,
                });
                return None;
            }
        };
        let result = self.read_hello(&mut reader, peer);
        let (reason, tell) = match result {
            Ok(hello) => match self.check_hello(&hello, pinned, slots) {
                Ok(()) => {
                    return Some((hello.party, self.conn(reader, writer, peer, hello.party)));
                }
                Err(reason) => (reason, true),
            },
            Err((reason, tell)) => (reason, tell),
        };
        if tell {
            let _ = wire::write_refused(&mut writer, &reason);
        }
        on(Event::Refused {
            peer,
            reason: &reason,
        });
        None
    }

    /// The preamble and key exchange of a new connection, within the handshake timeout:
    /// its reading and writing halves and, when the dealer pins the parties' keys, the
    /// pinned key it proved; or why it was refused.
    fn secure(
        &self,
        stream: &TcpStream,
        peer: SocketAddr,
    ) -> Result<(SecureReader<TcpStream>, SharedWriter, Option<PartyKey>), String> {
        let setup = |e: io::Error| format!("{peer}: {e}");
        stream.set_nonblocking(false).map_err(setup)?;
        let keys: Vec<_>;
        let noise = match &self.identity {
            DealerIdentity::Key(k) => Noise::Holder(k),
            DealerIdentity::Pinning { key, parties } => {
                keys = parties.iter().map(|p| p.key).collect();
                Noise::HolderPinning {
                    own: key,
                    peers: &keys,
                }
            }
            DealerIdentity::InsecurePlaintext => Noise::Plaintext,
        };
        let limit = self.opts.handshake_timeout;
        let done = secure::establish_identified(stream, Role::Responder, FROM_PARTY, noise, limit)
            .map_err(|e| format!("{peer}: {}", e.into_channel(limit)))?;
        let pinned = match (&self.identity, done.peer) {
            (DealerIdentity::Pinning { parties, .. }, Some(i)) => parties.get(i).copied(),
            _ => None,
        };
        let keys = done.keys;
        stream
            .set_read_timeout(Some(
                self.opts.handshake_timeout.min(self.opts.read_timeout),
            ))
            .map_err(setup)?;
        stream
            .set_write_timeout(Some(self.opts.write_timeout))
            .map_err(setup)?;
        let reader = SecureReader::new(stream.try_clone().map_err(setup)?, keys.clone());
        let writer = SecureWriter::new(
            stream.try_clone().map_err(setup)?,
            keys,
            self.opts.write_timeout,
        );
        Ok((reader, SharedWriter::new(writer), pinned))
    }

    /// A hello read with its exact size within the handshake timeout; on failure the
    /// reason and whether the peer speaks our protocol (and may be told).
    fn read_hello(
        &self,
        reader: &mut SecureReader<TcpStream>,
        peer: SocketAddr,
    ) -> Result<PartyHello, (String, bool)> {
        let mut b = [0u8; HELLO_BYTES];
        reader.read_exact(&mut b).map_err(|e| {
            (
                format!(
                    "no hello from {peer} within {:?}: {e}",
                    self.opts.handshake_timeout.min(self.opts.read_timeout)
                ),
                false,
            )
        })?;
        PartyHello::decode(&b).map_err(|what| (format!("{peer}: {what}"), true))
    }

    /// Whether a party with `hello`, which proved the pinned key `pinned` (if the dealer
    /// pins keys), may join the waiting slots.
    fn check_hello(
        &self,
        hello: &PartyHello,
        pinned: Option<PartyKey>,
        slots: &[Option<Conn>; 2],
    ) -> Result<(), String> {
        match (&self.identity, pinned) {
            (DealerIdentity::Pinning { .. }, Some(k)) if k.party != hello.party => {
                return Err(format!(
                    "the key {} is pinned for party {}, and its holder asked for party {}'s \
                     slot: each party connects as the index its key is pinned for",
                    k.key, k.party, hello.party
                ));
            }
            (DealerIdentity::Pinning { .. }, None) => {
                return Err("no pinned party key was proved".to_string());
            }
            _ => {}
        }
        if hello.plan_digest != self.plan_digest {
            return Err(format!(
                "this dealer serves plan {}, and party {} runs plan {}: start the dealer with \
                 that plan, or run the dealer's plan",
                hex(&self.plan_digest),
                hello.party,
                hex(&hello.plan_digest)
            ));
        }
        let p = usize::from(hello.party);
        if let Some(c) = &slots[p] {
            return Err(format!(
                "party {p} is already connected to this dealer (from {}) and waits for party \
                 {}: each party connects once per session; was party {p} started twice?",
                c.peer,
                1 - p
            ));
        }
        Ok(())
    }

    fn conn(
        &self,
        reader: SecureReader<TcpStream>,
        writer: SharedWriter,
        peer: SocketAddr,
        party: u8,
    ) -> Conn {
        let _ = reader_stream(&reader).set_read_timeout(Some(self.opts.read_timeout));
        Conn {
            reader,
            writer,
            peer,
            side: Side {
                who: format!("party {party}"),
                read_timeout: self.opts.read_timeout,
                write_timeout: self.opts.write_timeout,
            },
            broken: false,
        }
    }

    /// Grants the session to both parties and serves its calls until both close.
    fn run(
        &self,
        conns: &mut [Conn; 2],
        session: [u8; 32],
        master: PartySeed,
        deal: &mut DealCall<'_>,
        calls: &mut Vec<CallReport>,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), DealerError> {
        let dealer = (SessionDealer::new(master))
            .with_mask_budget(self.mask_budget)
            .streaming();
        for (p, c) in (0u8..).zip(conns.iter_mut()) {
            let grant = Grant {
                plan_digest: self.plan_digest,
                session,
                seed: dealer.party_seed(p),
                common: dealer.common_seed(),
            };
            (wire::write_session(&mut c.writer, &grant))
                .map_err(|e| c.side.write_error(e, "granting the session"))?;
        }
        let sinks = clone_sinks(conns)?;
        let boxed = sinks.clone().map(|s| Box::new(s) as Box<dyn Write + Send>);
        let mut dealer = dealer.recording(boxed);
        for k in 0.. {
            let Some(env) = self.requests(conns, session, k)? else {
                return Ok(());
            };
            let report = serve_call(&sinks, conns, &mut dealer, deal, k, env)?;
            on(Event::Call(&report));
            calls.push(report);
        }
        Ok(())
    }

    /// Both parties' requests for call `k`: their common sizes, or `None` if both closed.
    fn requests(
        &self,
        conns: &mut [Conn; 2],
        session: [u8; 32],
        k: u64,
    ) -> Result<Option<DimEnv>, DealerError> {
        let mut reqs = [None, None];
        for (p, c) in conns.iter_mut().enumerate() {
            let doing = format!("waiting for party {p}'s request for call {k}");
            reqs[p] = read_request(&mut c.reader).map_err(|e| e.at(&c.side, &doing))?;
            if let Some(r) = &reqs[p] {
                self.check_request(p, r, session, k)?;
            }
        }
        match reqs {
            [None, None] => Ok(None),
            [Some(r), None] | [None, Some(r)] => {
                let asked = usize::from(reqs[0].is_none());
                Err(DealerError::Protocol(format!(
                    "party {} ended its session after {k} calls, while party {asked} asked for \
                     call {} (seq {}, past {}): both must run the same calls",
                    1 - asked,
                    r.call,
                    r.env.seq,
                    r.env.past
                )))
            }
            [Some(a), Some(b)] if a.env != b.env => Err(DealerError::Protocol(format!(
                "the parties asked for call {k} at different sizes: party 0 at seq {}, past {}, \
                 party 1 at seq {}, past {}: both must run the same calls (prompt length and \
                 tokens)",
                a.env.seq, a.env.past, b.env.seq, b.env.past
            ))),
            [Some(a), Some(_)] => Ok(Some(a.env)),
        }
    }

    /// Party `p`'s request must be for call `k` of `session`, at sizes within the cap.
    fn check_request(
        &self,
        p: usize,
        r: &CallRequest,
        session: [u8; 32],
        k: u64,
    ) -> Result<(), DealerError> {
        let what = if r.session != session {
            format!(
                "party {p} asked for call {} of session {}, on the connection of session {}: \
                 material of another session is never dealt",
                r.call,
                hex(&r.session[..8]),
                hex(&session[..8])
            )
        } else if r.call < k {
            format!(
                "party {p} asked for call {} again, and its material was dealt already (the \
                 session's next call is {k}): material is never dealt twice",
                r.call
            )
        } else if r.call > k {
            format!(
                "party {p} asked for call {}, and the session's next call is {k}: calls are \
                 dealt in order, each once",
                r.call
            )
        } else if r.env.seq == 0 || r.env.seq.saturating_add(r.env.past) > self.max_tokens {
            format!(
                "party {p} asked for call {k} at seq {}, past {}: a call has 1 to {} tokens \
                 (seq + past)",
                r.env.seq, r.env.past, self.max_tokens
            )
        } else {
            return Ok(());
        };
        Err(DealerError::Protocol(what))
    }
}

/// The socket under a reader, to set its timeout.
fn reader_stream(r: &SecureReader<TcpStream>) -> &TcpStream {
    r.get_ref()
}

/// A fresh session id and master seed from the operating system.
fn new_session() -> Result<([u8; 32], PartySeed), DealerError> {
    let (mut session, mut master) = ([0u8; 32], [0u8; 32]);
    let mut os = rand::rngs::SysRng;
    for b in [&mut session, &mut master] {
        os.try_fill_bytes(b).map_err(|e| DealerError::Io {
            doing: "drawing the session's randomness from the OS".into(),
            source: io::Error::other(e.to_string()),
        })?;
    }
    Ok((session, master))
}

/// Deals call `k` at `env` into the sinks and ends it on both streams.
fn serve_call(
    sinks: &[ChunkSink; 2],
    conns: &mut [Conn; 2],
    dealer: &mut SessionDealer,
    deal: &mut DealCall<'_>,
    k: u64,
    env: DimEnv,
) -> Result<CallReport, DealerError> {
    for s in sinks {
        s.begin(k)?;
    }
    let dealt = deal(env, dealer, k > 0).map_err(|e| {
        DealerError::Protocol(format!(
            "cannot deal call {k} (seq {}, past {}): {e}",
            env.seq, env.past
        ))
    });
    // a party's failed stream stops the session before the other is told the call ended;
    // every failed stream is marked, so that the refusal is not written into a stalled one
    let mut failed = Ok(());
    for (p, s) in sinks.iter().enumerate() {
        if let Err(e) = s.check() {
            conns[p].broken = true;
            failed = failed.and(Err(e));
        }
    }
    failed?;
    let (offline_bytes, setup_bytes) = dealt?;
    let mut streamed = [0; 2];
    for (p, s) in sinks.iter().enumerate() {
        streamed[p] = s.end(k).inspect_err(|_| conns[p].broken = true)?;
    }
    Ok(CallReport {
        call: k,
        env,
        offline_bytes,
        setup_bytes,
        streamed,
    })
}

fn clone_sinks(conns: &[Conn; 2]) -> Result<[ChunkSink; 2], DealerError> {
    let sink = |c: &Conn| -> Result<ChunkSink, DealerError> {
        Ok(ChunkSink(Arc::new(Mutex::new(Chunker {
            stream: c.writer.clone(),
            side: c.side.clone(),
            buf: Vec::with_capacity(CHUNK_BYTES),
            call: 0,
            call_bytes: 0,
            failed: None,
        }))))
    };
    Ok([sink(&conns[0])?, sink(&conns[1])?])
}

/// One party's sink for [`SessionDealer::recording`]: body bytes, sent in chunks of
/// [`CHUNK_BYTES`] into the party's socket. Shared with the service, which ends each call.
#[derive(Clone)]
struct ChunkSink(Arc<Mutex<Chunker>>);

struct Chunker {
    stream: SharedWriter,
    side: Side,
    buf: Vec<u8>,
    call: u64,
    call_bytes: u64,
    /// The first write error: later writes fail at once.
    failed: Option<DealerError>,
}

impl ChunkSink {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Chunker) -> Result<T, DealerError>,
    ) -> Result<T, DealerError> {
        let mut c = (self.0.lock()).map_err(|_| {
            DealerError::Protocol("a party's stream failed in another thread".into())
        })?;
        f(&mut c)
    }

    /// Tells the party that call `call` starts (both requests agreed).
    fn begin(&self, call: u64) -> Result<(), DealerError> {
        self.with(|c| {
            c.call = call;
            c.call_bytes = 0;
            let doing = format!("starting call {call}'s material");
            (wire::write_start(&mut c.stream, call)).map_err(|e| c.side.write_error(e, &doing))
        })
    }

    /// The first write error of the call, if any.
    fn check(&self) -> Result<(), DealerError> {
        self.with(|c| c.failed.take().map_or(Ok(()), Err))
    }

    /// Sends what is buffered and the end of call `call`; the call's body bytes.
    fn end(&self, call: u64) -> Result<u64, DealerError> {
        self.with(|c| {
            c.send()?;
            let doing = format!("ending call {call}'s material");
            (wire::write_end(&mut c.stream, call, c.call_bytes))
                .map_err(|e| c.side.write_error(e, &doing))?;
            Ok(c.call_bytes)
        })
    }
}

impl Chunker {
    /// Sends the buffered bytes as one chunk.
    fn send(&mut self) -> Result<(), DealerError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let doing = format!("streaming call {}'s material", self.call);
        wire::write_chunk(&mut self.stream, &self.buf)
            .map_err(|e| self.side.write_error(e, &doing))?;
        self.buf.clear();
        Ok(())
    }

    fn push(&mut self, mut bytes: &[u8]) -> Result<(), DealerError> {
        while !bytes.is_empty() {
            let take = (CHUNK_BYTES - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            self.call_bytes += take as u64;
            bytes = &bytes[take..];
            if self.buf.len() == CHUNK_BYTES {
                self.send()?;
            }
        }
        Ok(())
    }
}

impl ChunkSink {
    /// Runs `f` unless an earlier write failed; its failure is kept for [`ChunkSink::check`]
    /// and fails every later write at once.
    fn guarded(&self, f: impl FnOnce(&mut Chunker) -> Result<(), DealerError>) -> io::Result<()> {
        let result = self.with(|c| {
            if let Some(e) = &c.failed {
                return Err(DealerError::Protocol(e.to_string()));
            }
            f(c).map_err(|e| {
                let message = DealerError::Protocol(e.to_string());
                c.failed = Some(e);
                message
            })
        });
        result.map_err(io::Error::other)
    }
}

impl Write for ChunkSink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.guarded(|c| c.push(bytes)).map(|()| bytes.len())
    }

    /// Chunks are sent when full, when the dealer finished an item of material (so that a
    /// party never waits for bytes the dealer holds while the dealer waits for the other
    /// party's socket), and at the end of each call.
    fn flush(&mut self) -> io::Result<()> {
        self.guarded(Chunker::send)
    }
}
