//! Table lookups ([`crate::protocols::lut`]) with the dealer's keys: the reconstructed
//! output is the fixed-point backend's entry at ⌊x·2^q⌋ mod 2^n or one index below (the
//! carry lost between the index shares), and the bytes sent and dealt are the formula's.

use comet_ir::TableFn;
use comet_ir::table::{entries, index_fixed};
use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::both;
use crate::dealer::{Dealer, LutMaterial};
use crate::fss::LutKey;
use crate::protocols::driver::{PartyRun, round_bytes};
use crate::protocols::lut::{self, Table};
use crate::protocols::{PartyId, Share, Step};
use crate::transport::MemChannel;

/// The plan's scale: the table's entries are at 16 fractional bits.
const OUT_SCALE: u32 = 16;

/// One lookup of `func` on `bits`-bit indices of `frac` fractional bits, run by both
/// parties on their shares of `x` (at `scale`).
fn run(
    p: PartyId,
    ch: &mut MemChannel,
    (x, m): (Share, LutMaterial),
    (func, bits, frac, scale): (TableFn, u32, u32, u32),
) -> Share {
    let table = Table::new(func, bits, frac, OUT_SCALE);
    let (st, msg) = lut::start(p, &x, scale, table, m);
    let Step::Next(st, msg) = lut::step(st, &round_bytes(ch, &msg).unwrap()).unwrap() else {
        panic!("a lookup has two rounds");
    };
    match lut::step(st, &round_bytes(ch, &msg).unwrap()).unwrap() {
        Step::Done(y) => y,
        Step::Next(..) => panic!("a lookup has two rounds"),
    }
}

/// Fixed-point inputs at `scale`: zero, ±1 ulp, the wrap ends ±T = ±2^(n−1−q) and their
/// neighbours, values far outside the table, then uniform values in [−2T, 2T).
fn inputs(count: usize, bits: u32, frac: u32, scale: u32, rng: &mut ChaCha12Rng) -> Vec<u64> {
    let t = 1i64 << (bits - 1 + scale - frac);
    let ulp = 1i64 << (scale - frac);
    let edges = [
        0,
        1,
        -1,
        t,
        -t,
        t - 1,
        -t - 1,
        t - ulp,
        ulp - t,
        7 * t,
        i64::MIN,
    ];
    let mut v: Vec<u64> = edges.iter().map(|&e| e as u64).collect();
    while v.len() < count {
        let r = (rng.next_u64() % (4 * t as u64)) as i64 - 2 * t;
        v.push(r as u64);
    }
    v
}

/// Both parties' shares of `x`: party 0's uniform, party 1's the difference.
fn share(x: &[u64], rng: &mut ChaCha12Rng) -> [Share; 2] {
    let x0: Vec<u64> = x.iter().map(|_| rng.next_u64()).collect();
    let x1: Vec<u64> = x.iter().zip(&x0).map(|(a, b)| a.wrapping_sub(*b)).collect();
    [x0, x1].map(|v| Share(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).unwrap()))
}

/// Per party: ⌈count·n/8⌉ bytes in round 1 (the indices packed at n bits), 8 per element
/// in round 2, in 2 rounds.
fn assert_traffic<T>(runs: [&PartyRun<T>; 2], count: usize, bits: u32) {
    for r in runs {
        let s = r.stats.online;
        assert_eq!(s.rounds, 2);
        assert_eq!(
            s.payload_bytes_sent as usize,
            (count * bits as usize).div_ceil(8) + 8 * count,
            "n = {bits}"
        );
    }
}

#[test]
fn a_lookup_reads_the_fixed_backends_entry_at_the_floor_or_one_below() {
    let cases = [
        (TableFn::GeluGap, 8, 4, 16, 200),
        (TableFn::SiluGap, 12, 6, 16, 301),
        (TableFn::ExpNeg, 13, 8, 16, 256),
        (TableFn::GeluGap, 10, 6, 32, 150),
        (TableFn::ExpNeg, 5, 2, 3, 64),
        (TableFn::SiluGap, 9, 9, 9, 120),
    ];
    for (k, &(func, bits, frac, scale, count)) in cases.iter().enumerate() {
        let mut rng = ChaCha12Rng::seed_from_u64(40 + k as u64);
        let x = inputs(count, bits, frac, scale, &mut rng);
        let mut d = Dealer::from_u64(50 + k as u64);
        let [m0, m1] = d.lut(count, bits);
        let [x0, x1] = share(&x, &mut rng);
        let case = (func, bits, frac, scale);
        let (p0, p1) = both([(x0, m0), (x1, m1)], |p, ch, xm| run(p, ch, xm, case));
        let t = entries(func, bits, frac, OUT_SCALE);
        let mask = (1usize << bits) - 1;
        let (mut at_floor, mut below) = (0, 0);
        for (i, (&xi, (a, b))) in x
            .iter()
            .zip(p0.output.0.iter().zip(&p1.output.0))
            .enumerate()
        {
            let y = a.wrapping_add(*b);
            let f = index_fixed(xi, scale, frac, bits);
            let g = f.wrapping_sub(1) & mask;
            assert!(
                y == t[f] || y == t[g],
                "{case:?} element {i} (x = {}): {y} is neither T[{f}] = {} nor T[{g}] = {}",
                xi as i64,
                t[f],
                t[g]
            );
            at_floor += usize::from(y == t[f] && t[f] != t[g]);
            below += usize::from(y == t[g] && t[f] != t[g]);
        }
        if scale > frac {
            assert!(at_floor > 0 && below > 0, "{case:?}: {at_floor} / {below}");
        } else {
            assert_eq!(below, 0, "{case:?}: no shift, no lost carry");
        }
        assert_traffic([&p0, &p1], count, bits);
        let key = LutKey::element_bytes(bits);
        assert_eq!(d.offline_bytes(), (2 * count * key) as u64, "{case:?}");
        assert_eq!(d.header_bytes(), 2 * 42, "one batch, a header per party");
    }
}

#[test]
fn a_lookup_of_several_batches_and_of_none() {
    let (func, bits, frac, scale) = (TableFn::ExpNeg, 6, 3, 12);
    let count = lut::LUT_BATCH + 5;
    let mut rng = ChaCha12Rng::seed_from_u64(61);
    let x = inputs(count, bits, frac, scale, &mut rng);
    let mut d = Dealer::from_u64(62);
    let [m0, m1] = d.lut(count, bits);
    assert_eq!(d.header_bytes(), 2 * 2 * 42, "two batches per party");
    let [x0, x1] = share(&x, &mut rng);
    let case = (func, bits, frac, scale);
    let (p0, p1) = both([(x0, m0), (x1, m1)], |p, ch, xm| run(p, ch, xm, case));
    let t = entries(func, bits, frac, OUT_SCALE);
    for (i, &xi) in x.iter().enumerate() {
        let y = p0.output.0[i].wrapping_add(p1.output.0[i]);
        let f = index_fixed(xi, scale, frac, bits);
        assert!(y == t[f] || y == t[f.wrapping_sub(1) & 63], "element {i}");
    }
    assert_traffic([&p0, &p1], count, bits);
    let [e0, e1] = d.lut(0, bits);
    let empty = share(&[], &mut rng);
    let [s0, s1] = empty;
    let (q0, q1) = both([(s0, e0), (s1, e1)], |p, ch, xm| run(p, ch, xm, case));
    assert_eq!(q0.output.len() + q1.output.len(), 0);
}

#[test]
fn a_peer_message_of_the_wrong_size_is_an_error() {
    let mut d = Dealer::from_u64(70);
    let [m0, _] = d.lut(3, 12);
    let x = Share(ArrayD::zeros(IxDyn(&[3])));
    let table = Table::new(TableFn::GeluGap, 12, 6, OUT_SCALE);
    let (st, msg) = lut::start(0, &x, 16, table.clone(), m0.clone());
    assert_eq!(msg.len(), 5, "3 × 12 bits packed: 36 bits in 5 bytes");
    assert!(lut::step(st, &[0; 4]).is_err(), "a short index message");
    let (st, msg) = lut::start(0, &x, 16, table, m0);
    let Ok(Step::Next(st, _)) = lut::step(st, &msg) else {
        panic!("round 2 follows");
    };
    assert!(
        lut::step(st, &[0; 16]).is_err(),
        "two values for three gates"
    );
}

#[test]
fn debug_output_hides_the_keys() {
    let [m0, _] = Dealer::from_u64(71).lut(2, 8);
    let x = Share(ArrayD::zeros(IxDyn(&[2])));
    let shown = format!("{m0:?}");
    assert!(
        shown.contains("gates: 2") && !shown.contains('['),
        "{shown}"
    );
    let (st, _) = lut::start(0, &x, 16, Table::new(TableFn::ExpNeg, 8, 4, 16), m0);
    let shown = format!("{st:?}");
    assert!(
        shown.contains("round: 1") && !shown.contains("LutKey"),
        "{shown}"
    );
}

mod material {
    use std::io::Cursor;

    use super::super::super::file::{self, MaterialHeader};
    use super::*;
    use crate::dealer::{Deal, MaterialError, PartyReplay, SessionDealer};
    use comet_ir::DimEnv;

    /// Deals `lut(count, bits)` for `nodes` into recorded bodies (and the dealt keys).
    fn recorded(nodes: &[(usize, u32)]) -> (Vec<[LutMaterial; 2]>, [Vec<u8>; 2]) {
        let sinks = [
            super::super::super::tests::Kept::default(),
            Default::default(),
        ];
        let boxed = sinks
            .clone()
            .map(|s| Box::new(s) as Box<dyn std::io::Write + Send>);
        let mut d = SessionDealer::from_u64(80).recording(boxed);
        let dealt = (nodes.iter())
            .map(|&(n, bits)| d.lut(n, bits).unwrap().map(Option::unwrap))
            .collect();
        d.finish().unwrap();
        (dealt, sinks.map(|s| s.0.lock().unwrap().clone()))
    }

    fn replay(party: u8, body: Vec<u8>) -> PartyReplay {
        let seed = SessionDealer::from_u64(80).party_seed(party);
        PartyReplay::new(party, seed, [0; 32], Box::new(Cursor::new(body)))
    }

    #[test]
    fn replayed_keys_are_the_dealt_keys_and_compute_the_table() {
        let nodes = [(7, 12), (4, 13)];
        let (dealt, bodies) = recorded(&nodes);
        let per_party = |p: u8| {
            let mut r = replay(p, bodies[usize::from(p)].clone());
            let ms: Vec<LutMaterial> = (nodes.iter())
                .map(|&(n, bits)| r.lut(n, bits).unwrap()[usize::from(p)].take().unwrap())
                .collect();
            assert!(!r.has_leftover().unwrap(), "party {p} read its whole body");
            let key = |n, b| (n * LutKey::element_bytes(b)) as u64;
            assert_eq!(r.offline_bytes(), key(7, 12) + key(4, 13), "headers apart");
            ms
        };
        let [r0, r1] = [per_party(0), per_party(1)];
        for (k, pair) in dealt.iter().enumerate() {
            assert_eq!(pair[0], r0[k], "party 0, node {k}");
            assert_eq!(pair[1], r1[k], "party 1, node {k}");
        }
        // the replayed keys look a table up
        let case = (TableFn::GeluGap, 12, 6, 16);
        let x: Vec<u64> = [-3.0f64, -0.5, 0.0, 0.25, 1.0, 2.5, 40.0]
            .iter()
            .map(|v| (v * 65536.0) as i64 as u64)
            .collect();
        let [x0, x1] = share(&x, &mut ChaCha12Rng::seed_from_u64(81));
        let [m0, m1] = [r0[0].clone(), r1[0].clone()];
        let (p0, p1) = both([(x0, m0), (x1, m1)], |p, ch, xm| run(p, ch, xm, case));
        let t = entries(case.0, 12, 6, OUT_SCALE);
        for (i, &xi) in x.iter().enumerate() {
            let y = p0.output.0[i].wrapping_add(p1.output.0[i]);
            let f = index_fixed(xi, 16, 6, 12);
            assert!(y == t[f] || y == t[f.wrapping_sub(1) & 4095], "element {i}");
        }
    }

    #[test]
    fn a_file_round_trip_gives_the_dealt_keys() {
        let dir = tempfile::tempdir().unwrap();
        let paths = [0u8, 1].map(|p| dir.path().join(format!("party{p}.mat")));
        let dealer = SessionDealer::from_u64(82);
        let calls = vec![DimEnv { seq: 1, past: 0 }];
        let sinks = [0u8, 1].map(|p| {
            let (seed, common) = (dealer.party_seed(p), dealer.common_seed());
            let h = MaterialHeader::new(p, [5; 32], [6; 32], calls.clone(), seed, common);
            Box::new(file::create(&paths[usize::from(p)], &h).unwrap())
                as Box<dyn std::io::Write + Send>
        });
        let mut dealer = dealer.recording(sinks);
        let dealt = dealer.lut(9, 13).unwrap();
        dealer.finish().unwrap();
        for (p, path) in paths.iter().enumerate() {
            file::seal(path).unwrap();
            let state = tempfile::tempdir().unwrap();
            let used = file::UsedList::at(state.path()).unwrap();
            let v = file::open(path, p as u8, &[5; 32], &used).unwrap();
            let (_, mut r) = v.mark_used(&used).unwrap();
            let mine = r.lut(9, 13).unwrap();
            assert_eq!(mine[p], dealt[p], "party {p}");
            assert!(mine[1 - p].is_none(), "a replay knows its own party only");
            assert!(!r.has_leftover().unwrap());
        }
    }

    /// The error of replaying `lut(n, bits)` as party `party` from a body dealt for
    /// `lut(5, 12)` to party 0.
    fn misread(party: u8, n: usize, bits: u32) -> String {
        let (_, bodies) = recorded(&[(5, 12)]);
        let e = replay(party, bodies[0].clone()).lut(n, bits).unwrap_err();
        assert!(matches!(e, MaterialError::Corrupt(_)), "{e}");
        e.to_string()
    }

    #[test]
    fn keys_of_another_width_count_or_party_are_refused_at_their_offset() {
        let e = misread(0, 5, 13);
        assert!(
            e.contains("at body byte 0: expected the 13-bit lookup-table keys of party 0 for 5 gates, found 12-bit keys of party 0 for 5 gates"),
            "{e}"
        );
        assert!(misread(0, 6, 12).contains("found 12-bit keys of party 0 for 5 gates"));
        assert!(
            misread(1, 5, 12).contains("keys of party 1 for 5 gates, found 12-bit keys of party 0")
        );
        // the second node's header is read at the offset after the first node's keys
        let (_, bodies) = recorded(&[(5, 12), (2, 8)]);
        let mut r = replay(0, bodies[0].clone());
        r.lut(5, 12).unwrap();
        let e = r.lut(2, 9).unwrap_err().to_string();
        let at = LutKey::byte_len(12, 5);
        assert!(e.contains(&format!("at body byte {at}:")), "{e}");
    }

    #[test]
    fn damaged_or_short_keys_and_bad_widths_are_errors() {
        let (_, bodies) = recorded(&[(5, 12)]);
        let mut body = bodies[0].clone();
        body.truncate(body.len() - 1);
        let e = replay(0, body).lut(5, 12).unwrap_err();
        assert!(matches!(e, MaterialError::Truncated { .. }), "{e}");
        let e = replay(0, Vec::new()).lut(5, 21).unwrap_err().to_string();
        assert!(e.contains("21-bit indices"), "{e}");
        let e = SessionDealer::from_u64(1)
            .lut(5, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("0-bit indices"), "{e}");
    }
}
