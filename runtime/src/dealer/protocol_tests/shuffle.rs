//! The oblivious row shuffle, with dealt material.

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::dealer::{Deal, SessionDealer};
use crate::protocols::driver::{round, run_two_party};
use crate::protocols::share::{reconstruct, split};
use crate::protocols::shuffle::*;
use crate::protocols::{PartyId, Share};

/// Runs both steps as both parties; the opened output and the bytes each party sent.
fn shuffle(v: &ArrayD<u64>, m: [ShuffleMaterial; 2]) -> (ArrayD<u64>, [u64; 2]) {
    let (v0, v1) = split(v, &mut ChaCha12Rng::seed_from_u64(5));
    let [m0, m1] = m;
    let run = |p: PartyId, v: Share, m: ShuffleMaterial| {
        move |ch: &mut crate::transport::MemChannel| {
            let mut v = v;
            for step in 0..2 {
                let (st, msg) = start_step(p, step, &v, &m);
                v = finish_step(st, &round(ch, &msg).unwrap()).unwrap();
            }
            v
        }
    };
    let (a, b) = run_two_party(run(0, v0, m0), run(1, v1, m1));
    let sent = [&a, &b].map(|r| r.stats.online.payload_bytes_sent);
    (reconstruct(&a.output, &b.output), sent)
}

fn pair(m: [Option<ShuffleMaterial>; 2]) -> [ShuffleMaterial; 2] {
    m.map(|m| m.expect("the dealer knows both"))
}

fn matrix(r: &mut ChaCha12Rng, rows: usize, k: usize) -> ArrayD<u64> {
    ArrayD::from_shape_simple_fn(IxDyn(&[rows, k]), || r.next_u64())
}

#[test]
fn the_shuffle_applies_pi1_after_pi0() {
    let mut r = ChaCha12Rng::seed_from_u64(31);
    let mut d = SessionDealer::from_u64(31);
    for (rows, k) in [(7, 3), (1, 4), (16, 1)] {
        let v = matrix(&mut r, rows, k);
        let m = pair(d.shuffle(rows as u32, rows, k).unwrap());
        let pis = [0, 1].map(|p| m[p].permutation().unwrap().to_vec());
        let (out, sent) = shuffle(&v, m);
        assert_eq!(out, apply(&pis[1], &apply(&pis[0], &v)));
        assert_eq!(
            sent,
            [8 * (rows * k) as u64; 2],
            "one masked matrix per step"
        );
    }
}

#[test]
fn one_perm_id_is_one_permutation_with_fresh_masks() {
    let mut r = ChaCha12Rng::seed_from_u64(32);
    let mut d = SessionDealer::from_u64(32);
    let (rows, k) = (12, 2);
    let first = pair(d.shuffle(3, rows, k).unwrap());
    let other = pair(d.shuffle(4, rows, k).unwrap());
    let second = pair(d.shuffle(3, rows, 5).unwrap());
    let pi = |m: &[ShuffleMaterial; 2], p: usize| m[p].permutation().unwrap().to_vec();
    assert_eq!(
        (pi(&first, 0), pi(&first, 1)),
        (pi(&second, 0), pi(&second, 1))
    );
    assert_ne!(
        pi(&first, 0),
        pi(&other, 0),
        "another id, another permutation"
    );
    let v = matrix(&mut r, rows, 5);
    let w = ArrayD::from_shape_fn(IxDyn(&[rows, 5]), |i| (i[0] * 100 + i[1]) as u64);
    let expect = |v| apply(&pi(&first, 1), &apply(&pi(&first, 0), v));
    assert_eq!(shuffle(&v, second.clone()).0, expect(&v));
    assert_eq!(shuffle(&w, second).0, expect(&w));
    let err = d.shuffle(3, rows + 1, k).unwrap_err().to_string();
    assert!(err.contains("drawn for 12 rows"), "{err}");
}

#[test]
fn permutations_are_permutations_and_not_the_identity() {
    let mut d = SessionDealer::from_u64(33);
    let m = pair(d.shuffle(0, 50, 1).unwrap());
    for half in &m {
        let mut pi = half.permutation().unwrap().to_vec();
        assert_ne!(pi, (0..50).collect::<Vec<u32>>());
        pi.sort_unstable();
        assert_eq!(pi, (0..50).collect::<Vec<u32>>());
    }
    let text = format!("{:?}", m[0]);
    assert_eq!(text, "ShuffleMaterial { party: 0, shape: [50, 1], .. }");
}

#[test]
fn a_wrong_sized_message_is_an_error() {
    let mut d = SessionDealer::from_u64(34);
    let [m0, m1] = pair(d.shuffle(0, 3, 2).unwrap());
    let v = Share(ArrayD::zeros(IxDyn(&[3, 2])));
    let (st, msg) = start_step(0, 0, &v, &m0);
    assert!(msg.is_empty());
    assert!(finish_step(st, &[0; 5]).is_err());
    let (st, msg) = start_step(1, 0, &v, &m1);
    assert_eq!(msg.len(), 6);
    assert!(finish_step(st, &[0]).is_err());
}
