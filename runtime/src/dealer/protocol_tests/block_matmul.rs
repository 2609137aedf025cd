//! The block-sparse product by a fixed operand, with dealt material.

use comet_ir::NodeId;
use ndarray::{Array2, ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::dealer::Dealer;
use crate::protocols::block_matmul::*;
use crate::protocols::driver::{round, run_two_party, setup_round};
use crate::protocols::fixed;
use crate::protocols::share::{reconstruct, split};
use crate::protocols::{PartyId, Share};
use crate::ring;

const BLOCK: usize = 3;

fn tensor(r: &mut ChaCha12Rng, shape: &[usize]) -> ArrayD<u64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || r.next_u64())
}

/// Runs setup and one product as both parties (`route`: forced, or `finish`'s choice);
/// the opened `Y` and the online bytes each party sent.
fn run(
    h: &ArrayD<u64>,
    w: &ArrayD<u64>,
    mask: &Array2<bool>,
    route: Option<bool>,
) -> (ArrayD<u64>, [u64; 2]) {
    let mut r = ChaCha12Rng::seed_from_u64(7);
    let mut d = Dealer::from_u64(7);
    let (fm, [b0, b1]) = d.fixed_mask(NodeId::from_index(0), w.shape());
    let [m0, m1] = d.block_matmul(&fm, h.shape()[0], BLOCK);
    let ((h0, h1), (w0, w1)) = (split(h, &mut r), split(w, &mut r));
    let party = |p: PartyId, b, w: Share, h: Share, m| {
        move |ch: &mut crate::transport::MemChannel| {
            let (st, msg) = fixed::setup_start(p, &w, b);
            let w = fixed::setup_finish(st, &setup_round(ch, &msg).unwrap()).unwrap();
            let (st, msg) = start(p, &h, mask.view(), BLOCK, m);
            let peer = round(ch, &msg).unwrap();
            match route {
                None => finish(st, &w, &peer).unwrap(),
                Some(per_block) => finish_route(st, &w, &peer, per_block).unwrap(),
            }
        }
    };
    let (a, b) = run_two_party(party(0, b0, w0, h0, m0), party(1, b1, w1, h1, m1));
    let sent = [&a, &b].map(|x| x.stats.online.payload_bytes_sent);
    (reconstruct(&a.output, &b.output), sent)
}

/// The plaintext masked product, by the definition.
fn plain(h: &ArrayD<u64>, w: &ArrayD<u64>, mask: &Array2<bool>) -> ArrayD<u64> {
    let (seq, d) = (h.shape()[0], w.shape()[1]);
    ArrayD::from_shape_fn(IxDyn(&[seq, d]), |ix| {
        let (t, j) = (ix[0], ix[1]);
        let mut s = 0u64;
        for ((_, b), _) in mask.indexed_iter().filter(|(tb, on)| tb.0 == t && **on) {
            for i in b * BLOCK..(b + 1) * BLOCK {
                s = s.wrapping_add(h[[t, i]].wrapping_mul(w[[i, j]]));
            }
        }
        s
    })
}

#[test]
fn both_routes_give_the_masked_product() {
    let mut r = ChaCha12Rng::seed_from_u64(41);
    for (seq, ff, d) in [(5, 12, 7), (9, 6, 3), (1, 15, 4)] {
        let (h, w) = (tensor(&mut r, &[seq, ff]), tensor(&mut r, &[ff, d]));
        let mask =
            Array2::from_shape_simple_fn((seq, ff / BLOCK), || r.next_u64().is_multiple_of(3));
        let active = mask.iter().filter(|on| **on).count();
        let want = plain(&h, &w, &mask);
        for route in [None, Some(true), Some(false)] {
            let (y, sent) = run(&h, &w, &mask, route);
            assert_eq!(y, want, "{seq}×{ff}·{ff}×{d}, route {route:?}");
            assert_eq!(sent, [8 * (active * BLOCK) as u64; 2]);
        }
    }
}

#[test]
fn an_all_ones_mask_is_the_dense_product() {
    let mut r = ChaCha12Rng::seed_from_u64(42);
    let (h, w) = (tensor(&mut r, &[4, 9]), tensor(&mut r, &[9, 5]));
    let dense = ring::matmul_batched(h.view(), w.view()).unwrap();
    for route in [Some(true), Some(false)] {
        assert_eq!(
            run(&h, &w, &Array2::from_elem((4, 3), true), route).0,
            dense
        );
    }
}

#[test]
fn an_all_zero_mask_gives_zeros_and_sends_nothing() {
    let mut r = ChaCha12Rng::seed_from_u64(43);
    let (h, w) = (tensor(&mut r, &[3, 6]), tensor(&mut r, &[6, 2]));
    let (y, sent) = run(&h, &w, &Array2::from_elem((3, 2), false), None);
    assert_eq!((y, sent), (ArrayD::zeros(IxDyn(&[3, 2])), [0, 0]));
}

#[test]
fn a_wrong_sized_message_is_an_error_and_state_is_redacted() {
    let mut d = Dealer::from_u64(44);
    let (fm, [b0, _]) = d.fixed_mask(NodeId::from_index(0), &[6, 2]);
    let [m0, _] = d.block_matmul(&fm, 2, BLOCK);
    let zeros = |shape: &[usize]| Share(ArrayD::zeros(IxDyn(shape)));
    let (st, _) = fixed::setup_start(0, &zeros(&[6, 2]), b0);
    let w = fixed::setup_finish(st, &[0; 12]).unwrap();
    let mask = Array2::from_shape_vec((2, 2), vec![true, false, true, true]).unwrap();
    let (st, msg) = start(0, &zeros(&[2, 6]), mask.view(), BLOCK, m0);
    assert_eq!(msg.len(), 3 * BLOCK);
    let text = format!("{st:?}");
    assert!(text.contains("active_blocks: 3"), "{text}");
    assert!(finish(st, &w, &[0; 8]).is_err());
}
