//! The dealer service over loopback: each party's replay reads exactly its half of the
//! material the dealer drew (the triples multiply, across chunk boundaries and calls), and
//! calls out of order, repeated or at other sizes are refused to both parties.

use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use comet_ir::DimEnv;

use super::service::Event;
use super::*;
use crate::protocols::ring_ops;
use crate::transport::{DealerAuth, DealerIdentity, DealerKeypair, TcpOptions};

const DIGEST: [u8; 32] = [5; 32];

/// The dealer's key pair of these tests.
fn key() -> &'static DealerKeypair {
    static KEY: std::sync::OnceLock<DealerKeypair> = std::sync::OnceLock::new();
    KEY.get_or_init(|| DealerKeypair::generate().unwrap())
}

/// A party's side: the dealer's public key pinned.
fn pinned() -> DealerAuth {
    DealerAuth::Pinned(key().public())
}

fn opts() -> TcpOptions {
    let t = Duration::from_secs(10);
    TcpOptions {
        read_timeout: t,
        write_timeout: t,
        accept_timeout: t,
        connect_timeout: t,
        ..TcpOptions::default()
    }
}

/// Per call: a triple big enough to span several chunks (`[n]·[n]`), and a DReLU batch.
fn sizes(env: DimEnv) -> usize {
    20_000 + 1000 * env.seq as usize
}

fn deal(env: DimEnv, d: &mut SessionDealer, _set_up: bool) -> Result<(u64, u64), String> {
    let before = d.offline_bytes();
    let n = sizes(env);
    d.triple(Product::Elementwise, &[n], &[n])
        .map_err(|e| e.to_string())?;
    d.drelu(3, 64).map_err(|e| e.to_string())?;
    Ok((d.offline_bytes() - before, 0))
}

type DealFn = fn(DimEnv, &mut SessionDealer, bool) -> Result<(u64, u64), String>;

/// Serves one session on a thread; returns the address and the report's handle.
fn serve(deal: DealFn) -> (String, thread::JoinHandle<SessionReport>) {
    let (addr, h, _) = serve_watched(deal);
    (addr, h)
}

/// As [`serve`], with a receiver of the parties that joined first.
fn serve_watched(deal: DealFn) -> (String, thread::JoinHandle<SessionReport>, Receiver<u8>) {
    let service = DealerService::bind(
        "127.0.0.1:0",
        DIGEST,
        &opts(),
        DealerIdentity::Key(key().clone()),
    )
    .unwrap();
    let addr = service.local_addr().to_string();
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let mut deal = deal;
        let mut on = |e: Event<'_>| {
            if let Event::Joined { party, .. } = e {
                let _ = tx.send(party);
            }
        };
        service.serve_session(&mut deal, &mut on).unwrap()
    });
    (addr, h, rx)
}

type Triple = (
    ndarray::ArrayD<u64>,
    ndarray::ArrayD<u64>,
    ndarray::ArrayD<u64>,
);

/// Party `p` runs `calls`, replaying each call's triple; its triples' shares.
fn party(addr: String, p: u8, calls: Vec<DimEnv>) -> Result<Vec<Triple>, DealerError> {
    party_as(addr, p, calls, &pinned())
}

/// As [`party`], authenticated by `auth`.
fn party_as(
    addr: String,
    p: u8,
    calls: Vec<DimEnv>,
    auth: &DealerAuth,
) -> Result<Vec<Triple>, DealerError> {
    let (mut stream, mut replay) = DealerStream::connect(&addr, p, DIGEST, &opts(), auth)?;
    let mut out = Vec::new();
    for env in calls {
        stream.begin_call(env)?;
        let n = sizes(env);
        let t = replay.triple(Product::Elementwise, &[n], &[n]);
        let t = t.map_err(|e| DealerError::Protocol(e.to_string()))?;
        replay
            .drelu(3, 64)
            .map_err(|e| DealerError::Protocol(e.to_string()))?;
        let [a, b] = t;
        let m = a.or(b).expect("this party's share");
        out.push((m.a, m.b, m.c));
        stream.end_call()?;
    }
    Ok(out)
}

#[test]
fn each_party_replays_its_half_of_the_streamed_material() {
    let (addr, dealer) = serve(deal);
    let calls = vec![DimEnv { seq: 6, past: 0 }, DimEnv { seq: 1, past: 6 }];
    let (a, c) = (addr.clone(), calls.clone());
    let p0 = thread::spawn(move || party(a, 0, c));
    let p1 = party(addr, 1, calls).unwrap();
    let p0 = p0.join().unwrap().unwrap();
    let report = dealer.join().unwrap();
    report.outcome.unwrap();
    assert_eq!(report.calls.len(), 2);
    for ((a0, b0, c0), (a1, b1, c1)) in p0.iter().zip(&p1) {
        let a = ring_ops::add(a0.view(), a1.view());
        let b = ring_ops::add(b0.view(), b1.view());
        assert_eq!(
            ring_ops::add(c0.view(), c1.view()),
            ring_ops::mul(a.view(), b.view())
        );
    }
    let first = &report.calls[0];
    assert_eq!(first.offline_bytes, 8 * 26_000 + 2 * 3 * 1536);
    assert!(
        first.streamed[1] > 8 * 26_000,
        "party 1 gets the corrections"
    );
}

/// Party 0 asks for `first`, then `second`; party 1 for calls 0 and 1. The errors of both.
fn out_of_order(first: u64, second: u64) -> [String; 2] {
    let (addr, dealer) = serve(|_, _, _| Ok((0, 0)));
    let env = DimEnv { seq: 2, past: 0 };
    let next = DimEnv { seq: 1, past: 2 };
    let a = addr.clone();
    let p0 = thread::spawn(move || -> Result<(), DealerError> {
        let (mut s, _replay) = DealerStream::connect(&a, 0, DIGEST, &opts(), &pinned())?;
        s.begin_call_at(first, env)?;
        s.end_call()?;
        s.begin_call_at(second, next)?;
        s.end_call().map(|_| ())
    });
    let p1 = (|| -> Result<(), DealerError> {
        let (mut s, _replay) = DealerStream::connect(&addr, 1, DIGEST, &opts(), &pinned())?;
        for e in [env, next] {
            s.begin_call(e)?;
            s.end_call()?;
        }
        Ok(())
    })();
    let p0 = p0.join().unwrap();
    let report = dealer.join().unwrap();
    assert!(report.outcome.is_err());
    [p0.unwrap_err().to_string(), p1.unwrap_err().to_string()]
}

#[test]
fn calls_out_of_order_or_repeated_are_refused_to_both_parties() {
    for (first, second, expected) in [
        (
            1,
            2,
            "party 0 asked for call 1, and the session's next call is 0",
        ),
        (0, 0, "party 0 asked for call 0 again"),
        (
            0,
            2,
            "party 0 asked for call 2, and the session's next call is 1",
        ),
    ] {
        for e in out_of_order(first, second) {
            assert!(
                e.contains("the dealer refused") && e.contains(expected),
                "{e}"
            );
        }
    }
}

#[test]
fn a_party_index_used_twice_or_another_plan_is_refused() {
    let (addr, _dealer, joined) = serve_watched(|_, _, _| Ok((0, 0)));
    let a = addr.clone();
    let first =
        thread::spawn(move || DealerStream::connect(&a, 0, DIGEST, &opts(), &pinned()).map(|_| ()));
    assert_eq!(joined.recv_timeout(Duration::from_secs(10)), Ok(0));
    let twice = DealerStream::connect(&addr, 0, DIGEST, &opts(), &pinned()).unwrap_err();
    assert!(
        twice.to_string().contains("party 0 is already connected"),
        "{twice}"
    );
    let other = DealerStream::connect(&addr, 1, [6; 32], &opts(), &pinned()).unwrap_err();
    assert!(
        other.to_string().contains("this dealer serves plan"),
        "{other}"
    );
    // the first party 0 is still paired with the next party 1
    let (s1, _) = DealerStream::connect(&addr, 1, DIGEST, &opts(), &pinned()).unwrap();
    first.join().unwrap().unwrap();
    assert!(!format!("{s1:?}").contains("seed"));
}

#[test]
fn a_party_pinning_another_dealer_key_is_refused_on_both_sides() {
    let service = DealerService::bind(
        "127.0.0.1:0",
        DIGEST,
        &opts(),
        DealerIdentity::Key(key().clone()),
    )
    .unwrap();
    let addr = service.local_addr().to_string();
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let mut on = |e: Event<'_>| {
            if let Event::Refused { reason, .. } = e {
                let _ = tx.send(reason.to_string());
            }
        };
        // the service keeps waiting after refusing: it is given up with the test
        let _ = service.serve_session(&mut deal, &mut on);
    });
    let other = DealerAuth::Pinned(DealerKeypair::generate().unwrap().public());
    let start = std::time::Instant::now();
    let err = DealerStream::connect(&addr, 0, DIGEST, &opts(), &other)
        .unwrap_err()
        .to_string();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(err.contains("not the one of the pinned key"), "{err}");
    let refused = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(refused.contains("failed authentication"), "{refused}");
    let plain = DealerStream::connect(&addr, 0, DIGEST, &opts(), &DealerAuth::InsecurePlaintext)
        .unwrap_err()
        .to_string();
    assert!(plain.contains("requires an encrypted channel"), "{plain}");
    drop(h);
}

/// The parties' key pairs of the mutual-authentication tests: party 0's, party 1's.
fn party_keys() -> &'static [DealerKeypair; 2] {
    static KEYS: std::sync::OnceLock<[DealerKeypair; 2]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| [0, 1].map(|_| DealerKeypair::generate().unwrap()))
}

fn mutual(own: &DealerKeypair) -> DealerAuth {
    DealerAuth::Mutual {
        dealer: key().public(),
        own: own.clone(),
    }
}

/// A dealer pinning both parties' keys, serving one session with [`deal`]; the refusals
/// it reports come on the receiver.
fn serve_pinning() -> (String, thread::JoinHandle<SessionReport>, Receiver<String>) {
    let [k0, k1] = party_keys();
    let parties = vec![
        crate::transport::PartyKey {
            party: 0,
            key: k0.public(),
        },
        crate::transport::PartyKey {
            party: 1,
            key: k1.public(),
        },
    ];
    let identity = DealerIdentity::Pinning {
        key: key().clone(),
        parties,
    };
    let service = DealerService::bind("127.0.0.1:0", DIGEST, &opts(), identity).unwrap();
    let addr = service.local_addr().to_string();
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let mut on = |e: Event<'_>| {
            if let Event::Refused { reason, .. } = e {
                let _ = tx.send(reason.to_string());
            }
        };
        service.serve_session(&mut deal, &mut on).unwrap()
    });
    (addr, h, rx)
}

#[test]
fn a_dealer_pinning_party_keys_refuses_unknown_parties_and_deals_nothing_to_them() {
    let (addr, dealer, refused) = serve_pinning();
    let env = DimEnv { seq: 3, past: 0 };
    let intruder = DealerKeypair::generate().unwrap();
    let [k0, k1] = party_keys();

    // an unknown key, for either slot: refused at the key exchange, before its hello
    for p in [0, 1] {
        let start = std::time::Instant::now();
        let err = DealerStream::connect(&addr, p, DIGEST, &opts(), &mutual(&intruder))
            .unwrap_err()
            .to_string();
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(err.contains("does it pin this party's key"), "{err}");
        let why = refused.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            why.contains("none of the party keys this dealer pins"),
            "{why}"
        );
        assert!(why.contains("nothing is dealt to it"), "{why}");
    }
    // party 1's key asking for party 0's slot
    let err = DealerStream::connect(&addr, 0, DIGEST, &opts(), &mutual(k1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is pinned for party 1, and its holder asked for party 0"),
        "{err}"
    );
    assert!(
        refused
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .contains("pinned for party 1")
    );
    // a party without a key of its own (Noise NK): told to bring one, on both sides
    let err = DealerStream::connect(&addr, 0, DIGEST, &opts(), &pinned())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the dealer authenticates the parties"),
        "{err}"
    );
    let why = refused.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        why.contains("accepts only the parties whose keys it pins"),
        "{why}"
    );

    // the slots are still free: the real parties pair, and the session has their calls only
    let calls = vec![env];
    let (a, c) = (addr.clone(), calls.clone());
    let p0 = thread::spawn(move || party_as(a, 0, c, &mutual(&party_keys()[0])));
    let t1 = party_as(addr, 1, calls, &mutual(k1)).unwrap();
    let t0 = p0.join().unwrap().unwrap();
    let report = dealer.join().unwrap();
    report.outcome.unwrap();
    assert_eq!(report.calls.len(), 1);
    let ((a0, b0, c0), (a1, b1, c1)) = (&t0[0], &t1[0]);
    let a = ring_ops::add(a0.view(), a1.view());
    let b = ring_ops::add(b0.view(), b1.view());
    assert_eq!(
        ring_ops::add(c0.view(), c1.view()),
        ring_ops::mul(a.view(), b.view())
    );
    let _ = k0;
    assert!(
        refused.try_recv().is_err(),
        "the real parties were not refused"
    );
}

#[test]
fn a_party_with_a_key_at_a_dealer_that_pins_none_is_told_so() {
    let (addr, _dealer) = serve(deal);
    let err = DealerStream::connect(&addr, 0, DIGEST, &opts(), &mutual(&party_keys()[0]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("the dealer pins no party keys"), "{err}");
}
