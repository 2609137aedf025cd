//! The TCP channel over loopback (127.0.0.1, ports chosen by the OS): large simultaneous
//! messages, the same figures as in memory, and every failure bounded in time.

use super::secure;
use super::tests::{both, expected, message, script, script_stats};
use super::*;
use comet_ir::Party;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Options with waits short enough for tests and long enough for a loaded machine.
fn quick() -> TcpOptions {
    TcpOptions {
        read_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(10),
        connect_attempts: 20,
        connect_retry_delay: Duration::from_millis(50),
        connect_timeout: Duration::from_secs(5),
        accept_timeout: Duration::from_secs(5),
        ..TcpOptions::default()
    }
}

/// A connected pair over loopback in plaintext (the frame layer's tests):
/// (listener's end, connector's end).
pub(super) fn tcp_pair(opts: &TcpOptions) -> (TcpChannel, TcpChannel) {
    tcp_pair_with(opts, &Security::InsecurePlaintext)
}

/// A connected pair over loopback protected by `security`.
pub(super) fn tcp_pair_with(opts: &TcpOptions, security: &Security) -> (TcpChannel, TcpChannel) {
    let (handle, addr) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let (server, client) = both(
        || handle.accept(opts, security),
        || TcpChannel::connect(addr, opts, security),
    );
    (server.unwrap(), client.unwrap())
}

#[test]
fn fifty_megabytes_both_ways_at_once_do_not_deadlock() {
    let (mut a, mut b) = tcp_pair(&quick());
    let big = 50 << 20;
    let run = |ch: &mut TcpChannel, party: u8| {
        let empty = ch.exchange(&[]).unwrap();
        let large = ch.exchange(&message(party, 1, big)).unwrap();
        (empty, large)
    };
    let ((ea, la), (eb, lb)) = both(|| run(&mut a, 0), || run(&mut b, 1));
    assert!(ea.is_empty() && eb.is_empty());
    assert!(la == message(1, 1, big) && lb == message(0, 1, big));
    for (me, peer) in [(&a, &b), (&b, &a)] {
        let (m, p) = (me.stats().online, peer.stats().online);
        assert_eq!((m.rounds, m.payload_bytes_sent), (2, big as u64));
        assert_eq!(m.payload_bytes_sent, p.payload_bytes_received);
        assert_eq!(m.wire_bytes_sent, big as u64 + 2 * FRAME_HEADER_BYTES);
    }
}

#[test]
fn tcp_gives_the_same_messages_and_figures_as_memory() {
    let (mut a, mut b) = tcp_pair(&quick());
    let (got_a, got_b) = both(|| script(&mut a, 0), || script(&mut b, 1));
    assert_eq!((got_a, got_b), (expected(0), expected(1)));
    assert_eq!((a.stats(), b.stats()), (script_stats(0), script_stats(1)));
    let (mut ma, mut mb) = mem_pair();
    both(|| script(&mut ma, 0), || script(&mut mb, 1));
    assert_eq!((ma.stats(), mb.stats()), (a.stats(), b.stats()));
}

#[test]
fn peer_dropping_mid_run_is_disconnected_within_the_timeout() {
    let (mut a, mut b) = tcp_pair(&quick());
    let start = Instant::now();
    let (r, ()) = both(
        || {
            (0..3)
                .map(|_| a.exchange(&[1; 100_000]).map(|_| ()))
                .collect::<Vec<_>>()
        },
        move || {
            b.exchange(&[2; 100_000]).unwrap();
            b.exchange(&[2; 100_000]).unwrap();
        },
    );
    assert!(r[0].is_ok() && r[1].is_ok());
    let err = r[2].as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            ChannelError::Disconnected {
                during: Phase::Round(3)
            }
        ),
        "{err}"
    );
    assert_eq!(err.to_string(), "peer disconnected during round 3");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn stalled_peer_times_out_within_a_second() {
    let opts = TcpOptions {
        read_timeout: Duration::from_millis(300),
        ..quick()
    };
    let (mut a, b) = tcp_pair(&opts);
    let start = Instant::now();
    let err = a.exchange(b"are you there?").unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            err,
            ChannelError::Timeout {
                during: Phase::Round(1),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("is it running?"));
    drop(b);
}

/// Accepts on a fresh port while a raw socket writes `bytes` and reads nothing, then
/// sends `msg` in one exchange, which must fail.
fn exchange_with_raw_peer(bytes: &[u8], msg: &[u8], opts: &TcpOptions) -> ChannelError {
    let (handle, addr) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let (release, released) = mpsc::channel::<()>();
    let raw = move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&super::secure::plaintext_preamble()).unwrap();
        s.write_all(bytes).unwrap();
        let _ = released.recv_timeout(Duration::from_secs(5));
    };
    let (err, ()) = both(
        || {
            let plain = Security::InsecurePlaintext;
            let err = handle
                .accept(opts, &plain)
                .unwrap()
                .exchange(msg)
                .unwrap_err();
            release.send(()).unwrap();
            err
        },
        raw,
    );
    err
}

#[test]
fn huge_announced_length_is_malformed() {
    let err = exchange_with_raw_peer(&u64::MAX.to_le_bytes(), b"hi", &quick());
    assert!(
        matches!(
            err,
            ChannelError::Malformed {
                during: Phase::Round(1),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("more than the maximum"), "{err}");
}

#[test]
fn foreign_bytes_are_malformed() {
    let mut bytes = 4u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[9; 13]);
    let err = exchange_with_raw_peer(&bytes, b"hi", &quick());
    assert!(err.to_string().contains("unknown kind 9"), "{err}");
}

#[test]
fn peer_that_stops_reading_is_a_send_timeout() {
    let opts = TcpOptions {
        write_timeout: Duration::from_millis(300),
        ..quick()
    };
    let peers_frame = super::frame::encode_header(Phase::Round(1), 0);
    let start = Instant::now();
    let err = exchange_with_raw_peer(&peers_frame, &message(0, 1, 64 << 20), &opts);
    // The kernel takes some megabytes before writes stall; then 300 ms without progress.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            err,
            ChannelError::SendTimeout {
                during: Phase::Round(1),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("is it still reading?"));
}

/// A loopback address nobody listens on (the OS chose the port, then it was released).
fn unused_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn connect_retries_until_a_late_listener_starts() {
    // The port is released and bound again 300 ms later; in the rare case that another
    // program takes it meanwhile, try again with a fresh one.
    for _ in 0..3 {
        let addr = unused_addr();
        let start = Instant::now();
        let (client, server) = both(
            || TcpChannel::connect(addr, &quick(), &Security::InsecurePlaintext),
            || {
                std::thread::sleep(Duration::from_millis(300));
                TcpListenerHandle::bind(addr)
                    .map(|(h, _)| h.accept(&quick(), &Security::InsecurePlaintext))
            },
        );
        let Ok(server) = server else { continue };
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        assert!(start.elapsed() >= Duration::from_millis(250));
        let (x, y) = both(
            || client.exchange(b"c").unwrap(),
            || server.exchange(b"s").unwrap(),
        );
        assert_eq!((x, y), (b"s".to_vec(), b"c".to_vec()));
        return;
    }
    panic!("could not bind a released loopback port in three tries");
}

#[test]
fn connect_gives_up_with_a_clear_error_when_nobody_listens() {
    let opts = TcpOptions {
        connect_attempts: 3,
        connect_retry_delay: Duration::from_millis(50),
        ..quick()
    };
    let start = Instant::now();
    let plain = Security::InsecurePlaintext;
    let err = TcpChannel::connect(unused_addr(), &opts, &plain)
        .err()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(err, ChannelError::Connect { attempts: 3, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("after 3 attempt(s)") && text.contains("listening"),
        "{text}"
    );
}

#[test]
fn accept_gives_up_when_nobody_connects() {
    let opts = TcpOptions {
        accept_timeout: Duration::from_millis(200),
        ..quick()
    };
    let (handle, addr) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    let err = handle
        .accept(&opts, &Security::InsecurePlaintext)
        .err()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(err, ChannelError::NoPeer { addr: a, .. } if a == addr),
        "{err}"
    );
}

#[test]
fn handshake_over_tcp_accepts_a_match_and_refuses_a_mismatch() {
    let (mut a, mut b) = tcp_pair(&quick());
    let (pa, pb) = both(
        || a.handshake(&Hello::new(Party::Server, [1; 32], [2; 32])),
        || b.handshake(&Hello::new(Party::Client, [1; 32], [2; 32])),
    );
    assert_eq!(
        (pa.unwrap().party, pb.unwrap().party),
        (Party::Client, Party::Server)
    );
    let (mut a, mut b) = tcp_pair(&quick());
    let (ea, _) = both(
        || {
            a.handshake(&Hello::new(Party::Server, [1; 32], [2; 32]))
                .unwrap_err()
        },
        || {
            b.handshake(&Hello::new(Party::Client, [5; 32], [2; 32]))
                .unwrap_err()
        },
    );
    assert!(ea.to_string().contains("plan digest differs"), "{ea}");
    assert_eq!(a.stats(), ChannelStats::default());
}

#[test]
fn unusable_options_are_refused_up_front() {
    let opts = TcpOptions {
        read_timeout: Duration::ZERO,
        ..quick()
    };
    let plain = Security::InsecurePlaintext;
    let err = TcpChannel::connect("127.0.0.1:1", &opts, &plain)
        .err()
        .unwrap();
    assert!(err.to_string().contains("`read_timeout` is zero"), "{err}");
}

/// Loopback figures for the report: `cargo test --release -p comet-runtime
/// transport::tcp_tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a check"]
fn throughput_of_a_100_megabyte_exchange() {
    let encrypted = Security::Psk(ChannelKey::from_bytes([1; 32]));
    for (name, security) in [
        ("plaintext", Security::InsecurePlaintext),
        ("noise", encrypted),
    ] {
        let (mut a, mut b) = tcp_pair_with(&quick(), &security);
        let big = 100 << 20;
        let (ma, mb) = (message(0, 1, big), message(1, 1, big));
        for _ in 0..3 {
            let start = Instant::now();
            both(|| a.exchange(&ma).unwrap(), || b.exchange(&mb).unwrap());
            let s = start.elapsed().as_secs_f64();
            println!(
                "{name}: 100 MiB each way: {:.1} ms, {:.0} MiB/s per direction",
                s * 1e3,
                100.0 / s
            );
        }
        let rounds = 2000;
        let start = Instant::now();
        both(
            || (0..rounds).for_each(|_| drop(a.exchange(&[0; 64]).unwrap())),
            || (0..rounds).for_each(|_| drop(b.exchange(&[0; 64]).unwrap())),
        );
        println!(
            "{name}: 64-byte rounds: {:.1} µs each",
            start.elapsed().as_secs_f64() * 1e6 / rounds as f64
        );
    }
}

#[test]
fn a_message_longer_than_a_frame_travels_as_several_frames() {
    let opts = TcpOptions {
        max_frame_bytes: 1000,
        ..quick()
    };
    let (mut a, mut b) = tcp_pair(&opts);
    let long = 10_500;
    let run = |ch: &mut TcpChannel, party: u8| ch.exchange(&message(party, 1, long)).unwrap();
    let (la, lb) = both(|| run(&mut a, 0), || run(&mut b, 1));
    assert!(la == message(1, 1, long) && lb == message(0, 1, long));
    let m = a.stats().online;
    // 11 frames: ten of 1,000 bytes and one of 500
    assert_eq!(m.wire_bytes_sent, long as u64 + 11 * FRAME_HEADER_BYTES);
    assert_eq!(m.wire_bytes_received, m.wire_bytes_sent);
}

#[test]
fn a_message_longer_than_the_message_cap_is_refused() {
    let small = TcpOptions {
        max_frame_bytes: 1000,
        max_message_bytes: 5000,
        ..quick()
    };
    let (mut a, mut b) = tcp_pair(&small);
    let run = |ch: &mut TcpChannel, party: u8| ch.exchange(&message(party, 1, 6000));
    let (ra, rb) = both(|| run(&mut a, 0), || run(&mut b, 1));
    for r in [ra, rb] {
        let e = r
            .expect_err("6,000 bytes are over the 5,000-byte cap")
            .to_string();
        assert!(e.contains("maximum of 5000 bytes"), "{e}");
    }
}

// ---- the encrypted channel (Noise NNpsk0) and hostile peers ----

fn psk(b: u8) -> Security {
    Security::Psk(ChannelKey::from_bytes([b; 32]))
}

#[test]
fn encrypted_channel_gives_the_same_messages_and_payload_figures() {
    let (mut a, mut b) = tcp_pair_with(&quick(), &psk(7));
    assert!(a.is_encrypted() && b.is_encrypted());
    let (got_a, got_b) = both(|| script(&mut a, 0), || script(&mut b, 1));
    assert_eq!((got_a, got_b), (expected(0), expected(1)));
    let records = |lens: &mut dyn Iterator<Item = usize>| -> u64 {
        lens.map(|n| secure::records(n as u64 + FRAME_HEADER_BYTES))
            .sum()
    };
    for (ch, party) in [(&a, 0usize), (&b, 1)] {
        let (s, plain) = (ch.stats(), script_stats(party as u8));
        for (t, p) in [(s.online, plain.online), (s.setup, plain.setup)] {
            assert_eq!(
                (t.rounds, t.payload_bytes_sent, t.payload_bytes_received),
                (p.rounds, p.payload_bytes_sent, p.payload_bytes_received)
            );
        }
        // each message's frames in records of at most 65,519 bytes, 18 bytes each
        let sent = records(&mut super::tests::SIZES.iter().map(|n| n * (1 + party)));
        let got = records(&mut super::tests::SIZES.iter().map(|n| n * (2 - party)));
        let overhead = secure::RECORD_OVERHEAD_BYTES;
        assert_eq!(sent, 6 + party as u64);
        assert_eq!(
            s.online.wire_bytes_sent,
            plain.online.wire_bytes_sent + sent * overhead
        );
        assert_eq!(
            s.online.wire_bytes_received,
            plain.online.wire_bytes_received + got * overhead
        );
        assert_eq!(
            s.setup.wire_bytes_sent,
            plain.setup.wire_bytes_sent + overhead
        );
    }
}

#[test]
fn a_large_encrypted_message_is_split_into_records_and_counted() {
    let (mut a, mut b) = tcp_pair_with(&quick(), &psk(7));
    let big = 5 << 20;
    let run = |ch: &mut TcpChannel, party: u8| ch.exchange(&message(party, 1, big)).unwrap();
    let (la, lb) = both(|| run(&mut a, 0), || run(&mut b, 1));
    assert!(la == message(1, 1, big) && lb == message(0, 1, big));
    let framed = big as u64 + FRAME_HEADER_BYTES;
    let records = framed.div_ceil(secure::RECORD_PLAINTEXT_BYTES as u64);
    assert_eq!(records, 81);
    let t = a.stats().online;
    assert_eq!(t.payload_bytes_sent, big as u64);
    assert_eq!(
        t.wire_bytes_sent,
        framed + records * secure::RECORD_OVERHEAD_BYTES
    );
}

#[test]
fn a_wrong_key_is_a_clear_error_on_both_sides_within_the_timeout() {
    let opts = TcpOptions {
        accept_timeout: Duration::from_millis(1500),
        ..quick()
    };
    let (handle, addr) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    let (server, client) = both(
        || handle.accept(&opts, &psk(1)).err().unwrap(),
        || TcpChannel::connect(addr, &opts, &psk(2)).err().unwrap(),
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(client, ChannelError::KeyMismatch { .. }),
        "{client}"
    );
    assert!(
        client.to_string().contains("same dealt session"),
        "{client}"
    );
    let text = server.to_string();
    assert!(matches!(server, ChannelError::NoPeer { .. }), "{server}");
    assert!(
        text.contains("refused 1 connection") && text.contains("failed authentication"),
        "{text}"
    );
}

#[test]
fn plaintext_against_encrypted_is_refused_on_both_sides() {
    let (handle, addr) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let opts = TcpOptions {
        accept_timeout: Duration::from_millis(800),
        ..quick()
    };
    let (server, client) = both(
        || handle.accept(&opts, &psk(1)).err().unwrap(),
        || {
            TcpChannel::connect(addr, &opts, &Security::InsecurePlaintext)
                .err()
                .unwrap()
        },
    );
    let c = client.to_string();
    assert!(
        c.contains("this side runs without encryption") && c.contains("--insecure-plaintext"),
        "{c}"
    );
    assert!(
        server
            .to_string()
            .contains("the peer runs without encryption"),
        "{server}"
    );
}

/// A man in the middle between a connector and a listener that flips one byte of the
/// connector's stream at offset `at` (counted from the connection's start).
fn flipping_proxy(target: SocketAddr, at: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (from, _) = l.accept().unwrap();
        let to = TcpStream::connect(target).unwrap();
        let (mut from_r, mut to_w) = (from.try_clone().unwrap(), to.try_clone().unwrap());
        std::thread::spawn(move || {
            use std::io::Read;
            let (mut seen, mut buf) = (0usize, vec![0u8; 1 << 16]);
            loop {
                let n = match from_r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if (seen..seen + n).contains(&at) {
                    buf[at - seen] ^= 0x01;
                }
                seen += n;
                if to_w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to_w.shutdown(std::net::Shutdown::Write);
        });
        let (mut to_r, mut from_w) = (to, from);
        let _ = std::io::copy(&mut to_r, &mut from_w);
    });
    addr
}

#[test]
fn a_flipped_byte_in_a_round_is_an_authentication_error_never_wrong_output() {
    let (handle, target) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    // preamble 16 + handshake 2 + 48, then the hello's record (2 + 17 + 77 + 16), then
    // round 1's record: flip a byte of its payload
    let at = 16 + 50 + (2 + 17 + 77 + 16) + 2 + 17 + 10;
    let proxy = flipping_proxy(target, at);
    let hello = |p| Hello::new(p, [1; 32], [2; 32]);
    let start = Instant::now();
    let (server, client) = both(
        || {
            let mut ch = handle.accept(&quick(), &psk(3)).unwrap();
            ch.handshake(&hello(Party::Server)).unwrap();
            ch.exchange(&[5; 100])
        },
        || {
            let mut ch = TcpChannel::connect(proxy, &quick(), &psk(3)).unwrap();
            ch.handshake(&hello(Party::Client)).unwrap();
            let r = ch.exchange(&[6; 100]);
            drop(ch);
            r
        },
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    let err = server.expect_err("the altered round must not be accepted");
    assert!(
        matches!(
            err,
            ChannelError::Tampered {
                during: Phase::Round(1)
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("failed authentication"), "{err}");
    // the client got the server's round (not altered) or saw the server go away
    let _ = client;
}

#[test]
fn a_flipped_byte_in_the_key_exchange_is_refused() {
    let (handle, target) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let proxy = flipping_proxy(target, 16 + 2 + 5);
    let opts = TcpOptions {
        accept_timeout: Duration::from_millis(1500),
        ..quick()
    };
    let (server, client) = both(
        || handle.accept(&opts, &psk(3)).err().unwrap(),
        || TcpChannel::connect(proxy, &opts, &psk(3)).err().unwrap(),
    );
    assert!(
        matches!(client, ChannelError::KeyMismatch { .. }),
        "{client}"
    );
    assert!(
        server.to_string().contains("refused 1 connection"),
        "{server}"
    );
}

/// A raw peer that connects to `addr` and writes `bytes`, then waits.
fn raw_peer(addr: SocketAddr, bytes: Vec<u8>, hold: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.write_all(&bytes);
            std::thread::sleep(hold);
        }
    })
}

#[test]
fn a_port_scan_and_garbage_are_refused_and_the_listener_keeps_waiting_for_its_peer() {
    let (handle, addr) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let scan = raw_peer(addr, Vec::new(), Duration::ZERO);
    let http = raw_peer(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        Duration::from_millis(300),
    );
    scan.join().unwrap();
    http.join().unwrap();
    let mut refused = Vec::new();
    let (server, client) = both(
        || {
            handle.accept_reporting(&quick(), &psk(4), &mut |peer, e| {
                refused.push(format!("{peer}: {e}"))
            })
        },
        || {
            std::thread::sleep(Duration::from_millis(200));
            TcpChannel::connect(addr, &quick(), &psk(4))
        },
    );
    let (mut s, mut c) = (server.unwrap(), client.unwrap());
    let (x, y) = both(|| s.exchange(b"s").unwrap(), || c.exchange(b"c").unwrap());
    assert_eq!((x, y), (b"c".to_vec(), b"s".to_vec()));
    // the scan and the HTTP request connect from two threads: either may come first
    assert_eq!(refused.len(), 2, "{refused:?}");
    let named = |what: &str| refused.iter().filter(|r| r.contains(what)).count();
    assert_eq!(named("not a Comet party"), 1, "{refused:?}");
    assert_eq!(named("disconnected"), 1, "{refused:?}");
}

#[test]
fn a_4_gib_hello_is_refused_without_allocating() {
    // plaintext: the hello frame announces 4 GiB; its cap is the hello's exact size
    let mut bytes = (4u64 << 30).to_le_bytes().to_vec();
    bytes.extend_from_slice(&super::frame::encode_header(Phase::Handshake, 0)[8..]);
    let (handle, addr) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let peer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&secure::plaintext_preamble()).unwrap();
        s.write_all(&bytes).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    });
    let start = Instant::now();
    let mut ch = handle
        .accept(&quick(), &Security::InsecurePlaintext)
        .unwrap();
    let err = ch
        .handshake(&Hello::new(Party::Server, [1; 32], [2; 32]))
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(
            err,
            ChannelError::Malformed {
                during: Phase::Handshake,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("maximum of 77 bytes"), "{err}");
    // nothing but the fixed buffers: the 64 KiB read buffer
    assert!(
        ch.read_buffer_capacity() <= 64 << 10,
        "{}",
        ch.read_buffer_capacity()
    );
    peer.join().unwrap();
}

#[test]
fn a_trickling_peer_hits_the_call_deadline() {
    let opts = TcpOptions {
        read_timeout: Duration::from_secs(5),
        call_timeout: Duration::from_millis(600),
        ..quick()
    };
    let (handle, addr) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let peer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&secure::plaintext_preamble()).unwrap();
        // a frame of 1,000 bytes, one byte every 100 ms: each read succeeds in time
        s.write_all(&super::frame::encode_header(Phase::Round(1), 1000))
            .unwrap();
        for _ in 0..30 {
            if s.write_all(&[0]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut ch = handle.accept(&opts, &Security::InsecurePlaintext).unwrap();
    let start = Instant::now();
    let err = ch.exchange(b"hi").unwrap_err();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(
        matches!(
            err,
            ChannelError::CallTimeout {
                during: Phase::Round(1),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("trickles"), "{err}");
    peer.join().unwrap();
}

#[test]
fn a_trickled_preamble_hits_the_handshake_deadline_and_the_listener_goes_on() {
    let opts = TcpOptions {
        handshake_timeout: Duration::from_millis(400),
        accept_timeout: Duration::from_millis(1500),
        ..quick()
    };
    let (handle, addr) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let peer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        for b in secure::plaintext_preamble() {
            if s.write_all(&[b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let start = Instant::now();
    let err = handle.accept(&opts, &psk(1)).err().unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    let text = err.to_string();
    assert!(
        text.contains("refused 1 connection") && text.contains("did not complete within"),
        "{text}"
    );
    peer.join().unwrap();
}

/// A scripted peer past the handshake (plaintext, so that its frames can be forged):
/// sends `frames` after the preamble; the listener makes `calls` exchanges.
fn scripted(frames: Vec<u8>, setup: bool) -> ChannelError {
    let opts = TcpOptions {
        read_timeout: Duration::from_millis(800),
        ..quick()
    };
    let (handle, addr) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let peer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&secure::plaintext_preamble()).unwrap();
        s.write_all(&frames).unwrap();
        std::thread::sleep(Duration::from_millis(1200));
    });
    let mut ch = handle.accept(&opts, &Security::InsecurePlaintext).unwrap();
    ch.limit_messages(1000, 2000);
    let start = Instant::now();
    let err = loop {
        let r = match setup {
            true => ch.exchange_setup(b"x"),
            false => ch.exchange(b"x"),
        };
        if let Err(e) = r {
            break e;
        }
    };
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(ch.read_buffer_capacity() <= 64 << 10);
    peer.join().unwrap();
    err
}

fn frame(phase: Phase, payload: &[u8]) -> Vec<u8> {
    let mut out = super::frame::encode_header(phase, payload.len()).to_vec();
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_malicious_peer_is_refused_at_every_phase() {
    // oversized: above the plan's cap of the phase (setup 1,000, round 2,000)
    let e = scripted(frame(Phase::Setup(1), &[0; 1001]), true);
    assert!(e.to_string().contains("maximum of 1000 bytes"), "{e}");
    let e = scripted(frame(Phase::Round(1), &[0; 2001]), false);
    assert!(e.to_string().contains("maximum of 2000 bytes"), "{e}");
    // truncated: a frame announcing more than arrives, then silence
    let mut t = super::frame::encode_header(Phase::Round(1), 500).to_vec();
    t.extend_from_slice(&[1; 100]);
    let e = scripted(t, false);
    assert!(matches!(e, ChannelError::Timeout { .. }), "{e}");
    // garbage
    let e = scripted(vec![0xff; 64], false);
    assert!(matches!(e, ChannelError::Malformed { .. }), "{e}");
    // replayed: round 1's frame twice
    let mut r = frame(Phase::Round(1), b"a");
    r.extend(frame(Phase::Round(1), b"a"));
    let e = scripted(r, false);
    assert!(
        matches!(
            e,
            ChannelError::OutOfStep {
                ours: Phase::Round(2),
                theirs: Phase::Round(1)
            }
        ),
        "{e}"
    );
    // out of phase: a round where a setup exchange belongs, a handshake mid-session
    let e = scripted(frame(Phase::Round(1), b"a"), true);
    assert!(matches!(e, ChannelError::OutOfStep { .. }), "{e}");
    let e = scripted(frame(Phase::Handshake, b"a"), false);
    assert!(matches!(e, ChannelError::OutOfStep { .. }), "{e}");
}

#[test]
fn a_replayed_encrypted_record_fails_authentication() {
    // a proxy that sends the connector's first record after the handshake twice
    let (handle, target) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = l.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::Read;
        let (mut from, _) = l.accept().unwrap();
        let mut to = TcpStream::connect(target).unwrap();
        let mut back = (to.try_clone().unwrap(), from.try_clone().unwrap());
        std::thread::spawn(move || std::io::copy(&mut back.0, &mut back.1));
        let mut head = vec![0u8; 16 + 50];
        from.read_exact(&mut head).unwrap();
        to.write_all(&head).unwrap();
        let mut len = [0u8; 2];
        from.read_exact(&mut len).unwrap();
        let mut rec = vec![0u8; usize::from(u16::from_le_bytes(len))];
        from.read_exact(&mut rec).unwrap();
        for _ in 0..2 {
            to.write_all(&len).unwrap();
            to.write_all(&rec).unwrap();
        }
        let _ = std::io::copy(&mut from, &mut to);
    });
    let (server, _) = both(
        || {
            let mut ch = handle.accept(&quick(), &psk(9)).unwrap();
            let first = ch.exchange(b"s1");
            (first, ch.exchange(b"s2"))
        },
        || {
            let mut ch = TcpChannel::connect(proxy, &quick(), &psk(9)).unwrap();
            let _ = ch.exchange(b"c1");
            let _ = ch.exchange(b"c2");
        },
    );
    assert_eq!(server.0.unwrap(), b"c1".to_vec());
    let err = server.1.unwrap_err();
    assert!(matches!(err, ChannelError::Tampered { .. }), "{err}");
}
