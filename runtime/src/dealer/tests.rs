//! The dealer's triples are correct, deterministic, drawn from the party seeds, and only
//! the corrections are counted.

use ndarray::ArrayD;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::*;
use crate::protocols::ring_ops;
use comet_ir::NodeId;

fn sum(a: &ArrayD<u64>, b: &ArrayD<u64>) -> ArrayD<u64> {
    ring_ops::add(a.view(), b.view())
}

#[test]
fn triples_multiply_and_only_corrections_are_counted() {
    let mut d = Dealer::from_u64(1);
    let [m0, m1] = d.beaver_mul(&[3, 4], &[4]);
    let (a, b, c) = (sum(&m0.a, &m1.a), sum(&m0.b, &m1.b), sum(&m0.c, &m1.c));
    assert_eq!(c, ring_ops::mul(a.view(), b.view()));
    assert_eq!(d.offline_bytes(), 8 * 12);
    let [s0, s1] = d.square(&[5]);
    let a = sum(&s0.a, &s1.a);
    assert_eq!(sum(&s0.c, &s1.c), ring_ops::mul(a.view(), a.view()));
    assert_eq!(d.offline_bytes(), 8 * (12 + 5));
    let [t0, t1] = d.beaver_matmul(&[2, 3], &[3, 4]);
    let (a, b) = (sum(&t0.a, &t1.a), sum(&t0.b, &t1.b));
    assert_eq!(
        sum(&t0.c, &t1.c),
        crate::ring::matmul_batched(a.view(), b.view()).unwrap()
    );
    assert_eq!(d.offline_bytes(), 8 * (12 + 5 + 8));
}

#[test]
fn fixed_masks_are_free_and_calls_pay_the_correction() {
    let mut d = Dealer::from_u64(2);
    let (mask, [b0, b1]) = d.fixed_mask(NodeId::from_index(0), &[3, 4]);
    assert_eq!(d.offline_bytes(), 0);
    let [m0, m1] = d.fixed_matmul(&mask, &[5, 3]);
    let (a, b) = (sum(&m0.a, &m1.a), sum(&b0.expand(), &b1.expand()));
    assert_eq!(
        sum(&m0.c, &m1.c),
        crate::ring::matmul_batched(a.view(), b.view()).unwrap()
    );
    assert_eq!(d.offline_bytes(), 8 * 20);
}

#[test]
fn drelu_counts_key_bytes_and_headers_apart() {
    let mut d = Dealer::from_u64(3);
    let [k0, k1] = d.drelu(7);
    assert_eq!(d.offline_bytes(), 2 * 7 * 1536);
    assert_eq!(d.header_bytes(), 2 * 42, "party, width, count, seed");
    assert_eq!((k0.key.party(), k1.key.party(), k0.key.len()), (0, 1, 7));
    assert!(!format!("{k0:?}").contains("seed"));
}

#[test]
fn boolean_material_correlates_and_only_corrections_are_counted() {
    let mut d = Dealer::from_u64(5);
    let [t0, t1] = d.bit_triples(3, 12);
    for i in 0..3 {
        assert_eq!(t0.c[i] ^ t1.c[i], (t0.a[i] ^ t1.a[i]) & (t0.b[i] ^ t1.b[i]));
        assert_eq!((t0.a[i] | t1.b[i]) >> 12, 0, "12 lanes only");
    }
    assert_eq!(d.offline_bytes(), 3 * 2);
    let [g0, g1] = d.gmw_drelu(4);
    for i in 0..4 {
        let ab = g0.input_mask[i] & g1.input_mask[i];
        assert_eq!(g0.input_c[i] ^ g1.input_c[i], ab);
        for (l0, l1) in g0.levels.iter().zip(&g1.levels) {
            let a = l0.a[i] ^ l1.a[i];
            assert_eq!(l0.c_g[i] ^ l1.c_g[i], a & (l0.b_g[i] ^ l1.b_g[i]));
            assert_eq!(l0.c_p[i] ^ l1.c_p[i], a & (l0.b_p[i] ^ l1.b_p[i]));
        }
    }
    assert_eq!(d.offline_bytes(), 6 + 4 * 23);
    let [b0, b1] = d.b2a(5);
    for i in 0..5 {
        assert_eq!(b0.rho[i].wrapping_add(b1.rho[i]), b0.r[i] ^ b1.r[i]);
    }
    assert_eq!(d.offline_bytes(), 6 + 92 + 8 * 5);
    let [m0, m1] = d.bit_mux(&[2, 1], &[2, 3]);
    let r = ndarray::Zip::from(&m0.r)
        .and(&m1.r)
        .map_collect(|a, b| a ^ b);
    assert_eq!(sum(&m0.rho, &m1.rho), r);
    let ra = ring_ops::mul(r.view(), sum(&m0.a, &m1.a).view());
    assert_eq!(sum(&m0.c, &m1.c), ra);
    assert_eq!(d.offline_bytes(), 6 + 92 + 40 + 8 * (2 + 6));
}

#[test]
fn party_masks_come_from_the_party_seed() {
    let mut d = Dealer::from_u64(4);
    let seed0 = d.party_seed(0);
    let [m0, _] = d.beaver_mul(&[2], &[1]);
    let mut s = ChaCha12Rng::from_seed(seed0);
    let drawn: Vec<u64> = (0..2 + 1 + 2).map(|_| s.next_u64()).collect();
    let mine: Vec<u64> = m0.a.iter().chain(&m0.b).chain(&m0.c).copied().collect();
    assert_eq!(
        mine, drawn,
        "party 0 can expand its whole triple from its seed"
    );
    let again = Dealer::from_u64(4).beaver_mul(&[2], &[1]);
    assert_eq!(again[0], m0, "deterministic");
}

#[test]
fn shuffles_and_block_products_count_their_corrections() {
    let mut d = SessionDealer::from_u64(6);
    let w = comet_ir::NodeId::from_index(1);
    let [Some(b0), Some(b1)] = d.fixed_mask(w, &[6, 4], None).unwrap() else {
        panic!("both halves")
    };
    d.shuffle(0, 5, 3).unwrap();
    assert_eq!(d.offline_bytes(), 2 * 8 * 15, "one Δ per step");
    d.shuffle(0, 5, 2).unwrap();
    assert_eq!(d.offline_bytes(), 240 + 2 * 8 * 10);
    let [Some(m0), Some(m1)] = d.block_matmul(w, 3, 2).unwrap() else {
        panic!("both halves")
    };
    assert_eq!(
        d.offline_bytes(),
        400 + 8 * 3 * 3 * 4,
        "C is [seq, ff/block, d]"
    );
    let (a, b) = (sum(&m0.a, &m1.a), sum(&b0.expand(), &b1.expand()));
    let c = sum(&m0.c, &m1.c);
    for blk in 0..3 {
        let rows = blk * 2..blk * 2 + 2;
        let p = crate::ring::matmul(
            a.slice(ndarray::s![.., rows.clone()])
                .into_dimensionality()
                .unwrap(),
            b.slice(ndarray::s![rows, ..])
                .into_dimensionality()
                .unwrap(),
        );
        assert_eq!(c.slice(ndarray::s![.., blk, ..]), p);
    }
    let shape = |e: MaterialError| matches!(e, MaterialError::Shape(_));
    assert!(
        shape(d.block_matmul(w, 3, 4).unwrap_err()),
        "4 does not divide 6"
    );
    assert!(
        shape(d.shuffle(0, 6, 1).unwrap_err()),
        "permutation 0 has 5 rows"
    );
    let none = d.block_matmul(comet_ir::NodeId::from_index(2), 3, 2);
    assert!(matches!(none, Err(MaterialError::NoFixedMask(_))));
}

#[test]
fn a_replay_refuses_a_permutation_at_another_size() {
    let d = SessionDealer::from_u64(7);
    let mut r = PartyReplay::new(0, d.party_seed(0), [0; 32], Box::new(std::io::empty()));
    r.shuffle(4, 3, 0).unwrap();
    let e = r.shuffle(4, 2, 0).unwrap_err().to_string();
    assert!(e.contains("drawn for 3 rows, used for 2"), "{e}");
}

mod files {
    use super::super::file::{self, MaterialHeader};
    use super::super::*;
    use comet_ir::{DimEnv, NodeId};
    use std::path::Path;

    type Flat = [Option<Vec<u64>>; 2];

    fn flat(arrays: &[&ndarray::ArrayD<u64>]) -> Vec<u64> {
        arrays.iter().flat_map(|a| a.iter().copied()).collect()
    }

    /// Drives a source through one of each kind of material, as a session would; each
    /// party's material flattened.
    fn drive(d: &mut dyn Deal) -> Vec<Flat> {
        let w = NodeId::from_index(3);
        let mut out: Vec<Flat> = Vec::new();
        let m = d.fixed_mask(w, &[4, 3], Some(0)).unwrap();
        out.push(m.map(|m| m.map(|m| flat(&[&m.expand()]))));
        let t = d.triple(Product::MatMul, &[2, 4], &[4, 5]).unwrap();
        out.push(t.map(|m| m.map(|m| flat(&[&m.a, &m.b, &m.c]))));
        let s = d.square(&[3]).unwrap();
        out.push(s.map(|m| m.map(|m| flat(&[&m.a, &m.c]))));
        let f = d.fixed_call(w, Product::MatMul, &[2, 4]).unwrap();
        out.push(f.map(|m| m.map(|m| flat(&[&m.a, &m.c]))));
        let bytes = |m: DreluMaterial| m.key.to_bytes().into_iter().map(u64::from).collect();
        for bits in [64, 20] {
            let k = d.drelu(5, bits).unwrap();
            out.push(k.map(|m| m.map(bytes)));
        }
        let lut_bytes = |m: LutMaterial| m.to_bytes().into_iter().map(u64::from).collect();
        for (count, bits) in [(5, 12), (3, 1)] {
            let k = d.lut(count, bits).unwrap();
            out.push(k.map(|m| m.map(lut_bytes)));
        }
        let seed = d.share_seed().map(u64::from).to_vec();
        out.push([Some(seed.clone()), Some(seed)]);
        let e = d.triple(Product::Elementwise, &[2, 3], &[3]).unwrap();
        out.push(e.map(|m| m.map(|m| flat(&[&m.a, &m.b, &m.c]))));
        let t = d.bit_triples(5, 13).unwrap();
        out.push(t.map(|m| m.map(|m| [m.a, m.b, m.c].concat())));
        let g = d.gmw_drelu(4).unwrap();
        out.push(g.map(|m| m.map(gmw_flat)));
        let b = d.b2a(3).unwrap();
        out.push(b.map(|m| m.map(|m| [m.r, m.rho].concat())));
        let x = d.bit_mux(&[2, 1], &[2, 3]).unwrap();
        out.push(x.map(|m| m.map(|m| flat(&[&m.r, &m.rho, &m.a, &m.c]))));
        for (perm, rows, k) in [(7, 3, 2), (8, 5, 1), (7, 3, 4)] {
            let s = d.shuffle(perm, rows, k).unwrap();
            out.push(s.map(|m| m.map(shuffle_flat)));
        }
        let b = d.block_matmul(w, 2, 2).unwrap();
        out.push(b.map(|m| m.map(|m| flat(&[&m.a, &m.c]))));
        // the last one spans two batches of the streaming dealer
        let two_batches = crate::protocols::trunc_stochastic::BATCH + 3;
        for (n, bits, width) in [
            (5, 16, 64),
            (2, 62, 64),
            (two_batches, 12, 64),
            (7, 16, 20),
            (two_batches, 12, 37),
        ] {
            let t = d.stochastic_trunc(n, bits, width).unwrap();
            out.push(t.map(|m| m.map(|m| m.words())));
        }
        out
    }

    fn shuffle_flat(m: ShuffleMaterial) -> Vec<u64> {
        let mut v = vec![u64::from(m.party)];
        for step in m.steps {
            match step {
                ShuffleStep::Permuter { pi, delta } => {
                    v.extend(pi.iter().map(|&i| u64::from(i)));
                    v.extend(delta.iter());
                }
                ShuffleStep::Masker { a, b } => v.extend(flat(&[&a, &b])),
            }
        }
        v
    }

    fn gmw_flat(m: GmwDreluMaterial) -> Vec<u64> {
        let mut v = [m.input_mask, m.input_c].concat();
        for l in m.levels {
            v.extend([l.a, l.b_g, l.b_p, l.c_g, l.c_p].concat());
        }
        v
    }

    /// The half of `full` that belongs to `party`, as a replay must produce it.
    fn half(full: &[Flat], party: usize) -> Vec<Flat> {
        full.iter()
            .map(|pair| {
                if pair[0] == pair[1] {
                    return pair.clone(); // the common seed: both parties know it
                }
                let mut h: Flat = [None, None];
                h[party] = pair[party].clone();
                h
            })
            .collect()
    }

    fn deal_to(dir: &Path, digest: [u8; 32]) -> Vec<Flat> {
        deal_with(dir, digest, drive)
    }

    /// A session dealt by `f` into `party0.mat` and `party1.mat` under `dir`.
    fn deal_with(dir: &Path, digest: [u8; 32], f: fn(&mut dyn Deal) -> Vec<Flat>) -> Vec<Flat> {
        let calls = vec![DimEnv { seq: 2, past: 0 }];
        let dealer = SessionDealer::from_u64(9);
        let paths = [dir.join("party0.mat"), dir.join("party1.mat")];
        let sinks = [0u8, 1].map(|p| {
            let h = MaterialHeader::new(
                p,
                digest,
                [7; 32],
                calls.clone(),
                dealer.party_seed(p),
                dealer.common_seed(),
            );
            Box::new(file::create(&paths[usize::from(p)], &h).unwrap())
                as Box<dyn std::io::Write + Send>
        });
        let mut dealer = dealer.recording(sinks);
        let full = f(&mut dealer);
        dealer.finish().unwrap();
        for p in &paths {
            file::seal(p).unwrap();
        }
        full
    }

    #[test]
    fn a_replayed_file_gives_the_dealers_material() {
        let dir = tempfile::tempdir().unwrap();
        let full = deal_to(dir.path(), [1; 32]);
        for p in 0..2u8 {
            let path = dir.path().join(format!("party{p}.mat"));
            let (header, mut replay) = open_fresh(&path, p, &[1; 32]);
            assert_eq!(header.calls, vec![DimEnv { seq: 2, past: 0 }]);
            assert_eq!(drive(&mut replay), half(&full, usize::from(p)), "party {p}");
            assert!(
                !replay.has_leftover().unwrap(),
                "party {p} used the whole body"
            );
            assert!(!format!("{header:?}{replay:?}").contains("seed: ["));
        }
    }

    #[test]
    fn the_replays_count_what_the_dealer_counts() {
        let dir = tempfile::tempdir().unwrap();
        deal_to(dir.path(), [1; 32]);
        let mut dealer = SessionDealer::from_u64(9);
        drive(&mut dealer);
        let replayed: u64 = (0..2u8)
            .map(|p| {
                let path = dir.path().join(format!("party{p}.mat"));
                let (_, mut replay) = open_fresh(&path, p, &[1; 32]);
                drive(&mut replay);
                replay.offline_bytes()
            })
            .sum();
        assert_eq!(replayed, dealer.offline_bytes());
    }

    /// Opens `path` as party `p` with a fresh list of used material, and marks it used.
    fn open_fresh(path: &Path, p: u8, digest: &[u8; 32]) -> (MaterialHeader, PartyReplay) {
        let state = tempfile::tempdir().unwrap();
        let used = UsedList::at(state.path()).unwrap();
        let verified = file::open(path, p, digest, &used).unwrap();
        verified.mark_used(&used).unwrap()
    }

    #[test]
    fn files_that_do_not_fit_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let used = UsedList::at(state.path()).unwrap();
        deal_to(dir.path(), [1; 32]);
        let p0 = dir.path().join("party0.mat");
        let p1 = dir.path().join("party1.mat");
        let err = |r: Result<_, MaterialError>| r.map(|_| ()).unwrap_err().to_string();
        let e = err(file::open(&p0, 1, &[1; 32], &used));
        assert!(
            e.contains("party 0's material") && e.contains("runs party 1"),
            "{e}"
        );
        let e = err(file::open(&p0, 0, &[2; 32], &used));
        assert!(e.contains("dealt for plan 0101"), "{e}");
        let v = file::open(&p0, 0, &[1; 32], &used).unwrap();
        // checked but not marked: it can be opened again until marked used
        assert!(file::open(&p0, 0, &[1; 32], &used).is_ok());
        v.mark_used(&used).unwrap();
        let e = err(file::open(&p0, 0, &[1; 32], &used));
        assert!(e.contains("already used"), "{e}");
        // a flipped body byte, a cut file, a foreign file
        let mut bytes = std::fs::read(&p1).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&p1, &bytes).unwrap();
        let e = err(file::open(&p1, 1, &[1; 32], &used));
        assert!(e.contains("SHA-256 does not match"), "{e}");
        std::fs::write(&p1, &bytes[..last]).unwrap();
        let e = err(file::open(&p1, 1, &[1; 32], &used));
        assert!(e.contains("truncated"), "{e}");
        std::fs::write(&p1, b"{\"format\": \"comet-plan\"}").unwrap();
        let e = err(file::open(&p1, 1, &[1; 32], &used));
        assert!(e.contains("not a Comet material file"), "{e}");
        assert!(
            !file::used_marker(&p1).exists(),
            "refused files are not burned"
        );
    }

    /// Byte offsets in a material file's header (version 5).
    const SEED_AT: usize = 8 + 4 + 1 + 2 * 32;
    const SEQ_AT: usize = 8 + 4 + 1 + 4 * 32 + 8 + 4;

    /// Recomputes a file's SHA-256 trailer after an edit (what a forger would do).
    fn rehash(bytes: &mut [u8]) {
        use sha2::Digest;
        let n = bytes.len() - 32;
        let sha: [u8; 32] = sha2::Sha256::digest(&bytes[..n]).into();
        bytes[n..].copy_from_slice(&sha);
    }

    #[test]
    fn a_flipped_seed_byte_in_the_header_is_refused_and_leaves_the_file_unused() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let used = UsedList::at(state.path()).unwrap();
        deal_to(dir.path(), [1; 32]);
        let p1 = dir.path().join("party1.mat");
        let mut bytes = std::fs::read(&p1).unwrap();
        bytes[SEED_AT] ^= 1;
        std::fs::write(&p1, &bytes).unwrap();
        let e = file::open(&p1, 1, &[1; 32], &used).unwrap_err().to_string();
        assert!(e.contains("SHA-256 does not match"), "{e}");
        assert!(!file::used_marker(&p1).exists());
        assert_eq!(
            std::fs::read_dir(state.path()).unwrap().count(),
            0,
            "nothing used"
        );
    }

    #[test]
    fn a_forged_seq_is_refused_quickly_and_a_rehashed_one_changes_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let used = UsedList::at(state.path()).unwrap();
        deal_to(dir.path(), [1; 32]);
        let p0 = dir.path().join("party0.mat");
        let genuine = file::open(&p0, 0, &[1; 32], &used)
            .unwrap()
            .header()
            .session;
        let mut bytes = std::fs::read(&p0).unwrap();
        bytes[SEQ_AT..SEQ_AT + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        std::fs::write(&p0, &bytes).unwrap();
        let start = std::time::Instant::now();
        let e = file::open(&p0, 0, &[1; 32], &used).unwrap_err().to_string();
        assert!(e.contains("SHA-256 does not match"), "{e}");
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        // with its digest recomputed the file reads, but its session id is no longer its
        // other half's: the peers' handshake refuses it before any call
        rehash(&mut bytes);
        std::fs::write(&p0, &bytes).unwrap();
        let v = file::open(&p0, 0, &[1; 32], &used).unwrap();
        assert_eq!(v.header().calls[0].seq, 1 << 40);
        assert_ne!(v.header().session, genuine);
        // sizes that overflow are refused outright
        bytes[SEQ_AT..SEQ_AT + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        rehash(&mut bytes);
        std::fs::write(&p0, &bytes).unwrap();
        let e = file::open(&p0, 0, &[1; 32], &used).unwrap_err().to_string();
        assert!(e.contains("not the sizes of a call"), "{e}");
        assert_eq!(
            std::fs::read_dir(state.path()).unwrap().count(),
            0,
            "nothing used"
        );
    }

    #[test]
    fn a_copy_or_a_renamed_file_of_used_material_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let used = UsedList::at(state.path()).unwrap();
        deal_to(dir.path(), [1; 32]);
        let p0 = dir.path().join("party0.mat");
        let copy = dir.path().join("copy.mat");
        std::fs::copy(&p0, &copy).unwrap();
        let v = file::open(&p0, 0, &[1; 32], &used).unwrap();
        v.mark_used(&used).unwrap();
        let e = file::open(&copy, 0, &[1; 32], &used)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already used"), "{e}");
        let renamed = dir.path().join("renamed.mat");
        std::fs::rename(&p0, &renamed).unwrap();
        let e = file::open(&renamed, 0, &[1; 32], &used)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already used"), "{e}");
        // two processes that both checked the copy and the original: one claim wins
        let state2 = tempfile::tempdir().unwrap();
        let used2 = UsedList::at(state2.path()).unwrap();
        let a = file::open(&renamed, 0, &[1; 32], &used2);
        let b = file::open(&copy, 0, &[1; 32], &used2);
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a.mark_used(&used2).is_ok());
        let e = b.mark_used(&used2).unwrap_err().to_string();
        assert!(e.contains("already used"), "{e}");
    }

    #[test]
    fn material_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        deal_to(dir.path(), [1; 32]);
        let p0 = dir.path().join("party0.mat");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p0).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        let before = std::fs::read(&p0).unwrap();
        let h = MaterialHeader::new(0, [1; 32], [2; 32], vec![], [3; 32], [4; 32]);
        let e = file::create(&p0, &h).unwrap_err().to_string();
        assert!(
            e.contains("exists") && e.contains("never overwrites"),
            "{e}"
        );
        assert_eq!(std::fs::read(&p0).unwrap(), before, "unchanged");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let state = dir.path().join("state/deep");
            UsedList::at(&state).unwrap();
            let mode = std::fs::metadata(&state).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        }
    }

    #[test]
    fn a_replay_of_drelu_keys_of_another_width_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        deal_with(dir.path(), [1; 32], |d| {
            d.drelu(4, 20).unwrap();
            vec![]
        });
        let p0 = dir.path().join("party0.mat");
        let (_, mut replay) = open_fresh(&p0, 0, &[1; 32]);
        let e = replay.drelu(4, 40).unwrap_err();
        assert!(matches!(e, MaterialError::Corrupt(_)), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("expected the 40-bit DReLU keys of party 0 for 4 gates, found 20-bit keys"),
            "{e}"
        );
    }

    #[test]
    fn a_replay_that_runs_out_says_so() {
        let dir = tempfile::tempdir().unwrap();
        deal_to(dir.path(), [1; 32]);
        let p1 = dir.path().join("party1.mat");
        let (_, mut replay) = open_fresh(&p1, 1, &[1; 32]);
        drive(&mut replay);
        let e = replay.drelu(3, 64).unwrap_err().to_string();
        assert!(e.contains("ends at body byte"), "{e}");
    }
}

/// A sink that keeps what is written, for a test to read back.
#[derive(Clone, Default)]
pub(super) struct Kept(pub(super) std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Kept {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_large_drelu_is_dealt_and_replayed_in_batches_and_a_streaming_dealer_keeps_none() {
    use crate::protocols::drelu::DRELU_BATCH;
    let n = 2 * DRELU_BATCH + 3;
    let deal = |streaming: bool| {
        let sinks = [Kept::default(), Kept::default()];
        let boxed = sinks
            .clone()
            .map(|s| Box::new(s) as Box<dyn std::io::Write + Send>);
        let mut d = SessionDealer::from_u64(11).recording(boxed);
        if streaming {
            d = d.streaming();
        }
        let m = d.drelu(n, 64).unwrap();
        (
            m,
            sinks.map(|s| s.0.lock().unwrap().clone()),
            d.header_bytes(),
        )
    };
    let (kept, bodies, headers) = deal(false);
    let (none, streamed, _) = deal(true);
    assert!(
        none.iter().all(Option::is_none),
        "a streaming dealer hands out no keys"
    );
    assert_eq!(bodies, streamed, "and records the same bytes");
    assert_eq!(
        headers,
        2 * 3 * 42,
        "three batches per party, a header each"
    );
    for p in 0..2u8 {
        let seed = SessionDealer::from_u64(11).party_seed(p);
        let body = Box::new(std::io::Cursor::new(bodies[usize::from(p)].clone()));
        let mut r = PartyReplay::new(p, seed, [0; 32], body);
        let [a, b] = r.drelu(n, 64).unwrap();
        let mine = a.or(b).unwrap();
        assert_eq!(Some(&mine), kept[usize::from(p)].as_ref(), "party {p}");
        assert_eq!(mine.key.len(), n);
        assert!(!r.has_leftover().unwrap(), "party {p} read every batch");
    }
}
