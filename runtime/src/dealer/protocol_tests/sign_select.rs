//! The fused select on a sign ([`crate::protocols::sign_select`]) with the dealer's keys:
//! the reconstructed output is `y·[x ≥ 0]`, and the bytes sent and dealt are the
//! formulas' (packed openings, padding included; `tests/protocol_costs.rs` checks the cost
//! model against the same runs).

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::both;
use crate::dealer::Dealer;
use crate::fss::sign_select::SignSelectKey;
use crate::protocols::driver::round_bytes;
use crate::protocols::sign_select::{self, SIGN_SELECT_BATCH, SignSelectMaterial};
use crate::protocols::{PartyId, Share, Step};
use crate::transport::MemChannel;

fn run(
    p: PartyId,
    ch: &mut MemChannel,
    (x, y, m): (Share, Option<Share>, SignSelectMaterial),
) -> Share {
    let (st, msg) = sign_select::start(p, &x, y.as_ref(), m);
    let Step::Next(st, msg) = sign_select::step(st, &round_bytes(ch, &msg).unwrap()).unwrap()
    else {
        panic!("a sign select has two rounds");
    };
    match sign_select::step(st, &round_bytes(ch, &msg).unwrap()).unwrap() {
        Step::Done(out) => out,
        Step::Next(..) => panic!("a sign select has two rounds"),
    }
}

fn share(v: &[u64], rng: &mut ChaCha12Rng) -> [Share; 2] {
    let a: Vec<u64> = v.iter().map(|_| rng.next_u64()).collect();
    let b: Vec<u64> = v.iter().zip(&a).map(|(v, a)| v.wrapping_sub(*a)).collect();
    [a, b].map(|v| Share(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).unwrap()))
}

/// Signed m-bit values: the edges, then uniform ones.
fn inputs(n: usize, m: u32, rng: &mut ChaCha12Rng) -> Vec<u64> {
    let top = (1i64 << (m - 1)).wrapping_sub(1);
    let mut v: Vec<u64> = [0, -1, 1, top, -top - 1]
        .iter()
        .map(|&x| x as u64)
        .collect();
    while v.len() < n {
        v.push(((rng.next_u64() << (64 - m)) as i64 >> (64 - m)) as u64);
    }
    v.truncate(n);
    v
}

#[test]
fn outputs_and_traffic_match_plaintext_and_the_formula() {
    let cases = [
        (64, true, 37),
        (64, false, 16),
        (20, false, 13),
        (20, true, 9),
        (2, false, 5),
        (64, true, 0),
    ];
    for (k, &(m, same, n)) in cases.iter().enumerate() {
        let mut rng = ChaCha12Rng::seed_from_u64(60 + k as u64);
        let x = inputs(n, m, &mut rng);
        let y: Vec<u64> = if same {
            x.clone()
        } else {
            (0..n).map(|_| rng.next_u64()).collect()
        };
        let mut d = Dealer::from_u64(70 + k as u64);
        let [m0, m1] = d.sign_select(n, m, same);
        let [x0, x1] = share(&x, &mut rng);
        let [y0, y1] = share(&y, &mut rng);
        let (y0, y1) = if same {
            (None, None)
        } else {
            (Some(y0), Some(y1))
        };
        let (p0, p1) = both([(x0, y0, m0), (x1, y1, m1)], run);
        for i in 0..n {
            let out = p0.output.0[i].wrapping_add(p1.output.0[i]);
            let want = if (x[i] << (64 - m)) as i64 >= 0 {
                y[i]
            } else {
                0
            };
            assert_eq!(out, want, "m = {m}, same = {same}, element {i}");
        }
        // per party: ⌈n·w/8⌉ (+ 8n when y ≠ x) in round 1, ⌈n/8⌉ in round 2
        let w = if same { 64 } else { m as usize };
        let sent = (n * w).div_ceil(8) + if same { 0 } else { 8 * n } + n.div_ceil(8);
        for r in [&p0, &p1] {
            assert_eq!(r.stats.online.rounds, 2);
            assert_eq!(
                r.stats.online.payload_bytes_sent as usize, sent,
                "m = {m}, n = {n}"
            );
        }
        let key = SignSelectKey::element_bytes(0, m) + SignSelectKey::element_bytes(1, m);
        assert_eq!(d.offline_bytes(), (n * key) as u64);
    }
}

#[test]
fn several_batches() {
    let n = SIGN_SELECT_BATCH + 3;
    let mut rng = ChaCha12Rng::seed_from_u64(5);
    let x = inputs(n, 64, &mut rng);
    let mut d = Dealer::from_u64(6);
    let [m0, m1] = d.sign_select(n, 64, true);
    assert_eq!(d.header_bytes(), 4 * 42, "two batches, a header per party");
    let [x0, x1] = share(&x, &mut rng);
    let (p0, p1) = both([(x0, None, m0), (x1, None, m1)], run);
    for i in [0, 1, 2, 3, SIGN_SELECT_BATCH - 1, SIGN_SELECT_BATCH, n - 1] {
        let out = p0.output.0[i].wrapping_add(p1.output.0[i]);
        assert_eq!(
            out,
            if (x[i] as i64) >= 0 { x[i] } else { 0 },
            "element {i}"
        );
    }
}

#[test]
fn a_short_peer_message_is_an_error() {
    let mut d = Dealer::from_u64(7);
    let [m0, _] = d.sign_select(4, 64, false);
    let x = Share(ArrayD::zeros(IxDyn(&[4])));
    let (st, msg) = sign_select::start(0, &x, Some(&x), m0);
    assert_eq!(msg.len(), 64);
    assert!(sign_select::step(st, &msg[..63]).is_err());
}
