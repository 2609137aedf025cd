//! The TCP channel over loopback (127.0.0.1, ports chosen by the OS): large simultaneous
//! messages, the same figures as in memory, and every failure bounded in time.

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

/// A connected pair over loopback: (listener's end, connector's end).
fn tcp_pair(opts: &TcpOptions) -> (TcpChannel, TcpChannel) {
    let (handle, addr) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let (server, client) = both(|| handle.accept(opts), || TcpChannel::connect(addr, opts));
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
        s.write_all(bytes).unwrap();
        let _ = released.recv_timeout(Duration::from_secs(5));
    };
    let (err, ()) = both(
        || {
            let err = handle.accept(opts).unwrap().exchange(msg).unwrap_err();
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
            || TcpChannel::connect(addr, &quick()),
            || {
                std::thread::sleep(Duration::from_millis(300));
                TcpListenerHandle::bind(addr).map(|(h, _)| h.accept(&quick()))
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
    let err = TcpChannel::connect(unused_addr(), &opts).err().unwrap();
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
    let err = handle.accept(&opts).err().unwrap();
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
    let err = TcpChannel::connect("127.0.0.1:1", &opts).err().unwrap();
    assert!(err.to_string().contains("`read_timeout` is zero"), "{err}");
}

/// Loopback figures for the report: `cargo test --release -p comet-runtime
/// transport::tcp_tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a check"]
fn throughput_of_a_100_megabyte_exchange() {
    let (mut a, mut b) = tcp_pair(&quick());
    let big = 100 << 20;
    let (ma, mb) = (message(0, 1, big), message(1, 1, big));
    for _ in 0..3 {
        let start = Instant::now();
        both(|| a.exchange(&ma).unwrap(), || b.exchange(&mb).unwrap());
        let s = start.elapsed().as_secs_f64();
        println!(
            "100 MiB each way: {:.1} ms, {:.0} MiB/s per direction",
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
        "64-byte rounds: {:.1} µs each",
        start.elapsed().as_secs_f64() * 1e6 / rounds as f64
    );
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
