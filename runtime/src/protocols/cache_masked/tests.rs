//! The head-masked cache product against the plaintext product, over calls whose masks
//! leave rows waiting, merged and naive.

use super::*;
use crate::dealer::Dealer;
use crate::protocols::cache_matmul::testing;
use crate::protocols::cache_matmul::{KvMasks, deal};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

fn prior(k: &Option<Kept>) -> Option<Prior<'_>> {
    k.as_ref().map(|k| Prior {
        opened: &k.opened,
        valid: &k.valid,
        own: Some(&k.own),
    })
}

/// Calls of `q · view(k)ᵀ` with 2 KV groups of 2 query heads: a prefill of 3 tokens where
/// group 1 is never active, then decode steps with masks (group 0, group 1), (group 1),
/// (none). Each active pair equals the plaintext product, each inactive one is 0, and
/// group 1's rows are opened only when it is first active: the missed rows travel in the
/// product's round (merged) or in one exchange per group (naive).
fn calls(naive: bool) -> Vec<Refill> {
    let mut rng = ChaCha12Rng::seed_from_u64(11);
    let mut dealer = Dealer::from_u64(5);
    let mut kv = KvMasks::default();
    let op = CacheProduct {
        slot: 2,
        transpose: true,
        groups: 2,
    };
    let (hkv, k) = (2, 4);
    let masks: [&[[bool; 2]]; 4] = [
        &[[true, false], [false, false], [true, false]],
        &[[true, true]],
        &[[false, true]],
        &[[false, false]],
    ];
    let mut cache: Option<ArrayD<u64>> = None;
    let mut kept: [Option<Kept>; 2] = [None, None];
    let mut counts = Vec::new();
    for mask in masks {
        let seq = mask.len();
        let mask = Array2::from_shape_fn((seq, hkv), |(t, g)| mask[t][g]);
        let call = testing::call(
            &mut rng,
            (&mut dealer, &mut kv),
            op,
            cache.as_ref(),
            [hkv, seq, k],
        );
        let [m0, m1] = call.material;
        let [x0, x1] = call.shares;
        let (mut s0, msg0) = start(
            0,
            op,
            [&x0[0], &x0[1], &x0[2]],
            mask.view(),
            prior(&kept[0]),
            m0,
            naive,
        )
        .unwrap();
        let (mut s1, msg1) = start(
            1,
            op,
            [&x1[0], &x1[1], &x1[2]],
            mask.view(),
            prior(&kept[1]),
            m1,
            naive,
        )
        .unwrap();
        // the naive refill's exchanges
        let (r0, r1) = (s0.refill_messages(), s1.refill_messages());
        assert_eq!(r0.len(), r1.len());
        s0.accept_refills(&r1).unwrap();
        s1.accept_refills(&r0).unwrap();
        let active = mask.iter().filter(|a| **a).count();
        assert_eq!(
            s0.parts()[0],
            active * 2 * k,
            "x opened at the active pairs only"
        );
        let (z0, k0, r0) = finish(s0, &msg1).unwrap();
        let (z1, k1, r1) = finish(s1, &msg0).unwrap();
        assert_eq!(r0, r1);
        assert_eq!(
            k0.opened, k1.opened,
            "both parties hold the same opened rows"
        );
        assert_eq!(k0.valid, k1.valid);
        let z = ring_ops::add(z0.0.view(), z1.0.view());
        for h in 0..hkv * 2 {
            for t in 0..seq {
                let got = z.slice(s![h, t, ..]);
                match mask[[t, h / 2]] {
                    true => assert_eq!(got, call.want.slice(s![h, t, ..]), "head {h}, token {t}"),
                    false => assert!(got.iter().all(|v| *v == 0), "head {h}, token {t}"),
                }
            }
        }
        counts.push(r0);
        kept = [Some(k0), Some(k1)];
        cache = Some(call.c);
    }
    let waiting = |k: &Kept| k.valid.iter().filter(|v| !**v).count();
    // group 0's rows 4 and 5, group 1's row 5: written while their group was inactive
    assert_eq!(waiting(kept[0].as_ref().unwrap()), 3);
    counts
}

#[test]
fn merged_refill_opens_missed_rows_in_the_products_round() {
    let counts = calls(false);
    // prefill: group 0's 3 rows; step 1: group 0's new row, group 1's 3 missed rows and
    // its new row; step 2: group 1's new row; step 3: none
    let rows: Vec<u64> = counts.iter().map(|c| c.rows).collect();
    assert_eq!(rows, [3, 5, 1, 0]);
    let missed: Vec<u64> = counts.iter().map(|c| c.missed).collect();
    assert_eq!(missed, [0, 3, 0, 0]);
    assert_eq!(counts[1].requests, 1);
    assert!(
        counts.iter().all(|c| c.exchanges == 0),
        "merged: no extra round"
    );
}

#[test]
fn naive_refill_pays_an_exchange_per_miss_request() {
    let counts = calls(true);
    let exchanges: Vec<u64> = counts.iter().map(|c| c.exchanges).collect();
    assert_eq!(exchanges, [0, 1, 0, 0]);
    let rows: Vec<u64> = counts.iter().map(|c| c.rows).collect();
    assert_eq!(rows, [3, 5, 1, 0], "the same rows as merged");
}

#[test]
fn a_mask_of_the_wrong_shape_is_refused() {
    let mut dealer = Dealer::from_u64(1);
    let mut kv = KvMasks::default();
    let op = CacheProduct {
        slot: 0,
        transpose: false,
        groups: 1,
    };
    let [m0, _] = deal(&mut dealer, &mut kv, op, &[2, 1, 1], &[2, 1, 3], &[2, 1, 3]).unwrap();
    let zero = |s: &[usize]| Share(ArrayD::zeros(IxDyn(s)));
    let (x, c, new) = (zero(&[2, 1, 1]), zero(&[2, 1, 3]), zero(&[2, 1, 3]));
    let mask = Array2::from_elem((1, 3), true);
    let e = start(0, op, [&x, &c, &new], mask.view(), None, m0, false).unwrap_err();
    assert!(
        e.contains("head mask [1, 3]") && e.contains("expected [1, 2]"),
        "{e}"
    );
}
