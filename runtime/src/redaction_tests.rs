//! `Debug` never shows a secret: every type holding plaintext weights or inputs, shares,
//! predictor factors, seeds or material is formatted with `{:?}` around distinctive
//! sentinel values (or the random values it holds), and none of them may appear.

use comet_ir::DimEnv;
use ndarray::{Array1, Array2, ArrayD, IxDyn};

use crate::dealer::{Dealer, MaterialHeader, PartyReplay, SessionDealer};
use crate::exec::{Cache, Evaluation};
use crate::interp::PartyInputs;
use crate::ring::{Share, XorShare};
use crate::sparsity::calibrate::Captured;
use crate::sparsity::svd::Svd;
use crate::sparsity::{Activity, FfnPredictor, Predictor, Score};

const F: f64 = 424_242.437_5; // exact in binary, prints as 424242.4375
const U: u64 = 0x1234_5678_9abc_def1;
const SEED: [u8; 32] = [0xa7; 32];

/// Every way a sentinel could be printed.
fn forbidden() -> Vec<String> {
    vec![
        "424242".into(),
        U.to_string(),
        format!("{U:x}"),
        "167, 167".into(), // the seed's bytes in decimal
        "a7a7".into(),
    ]
}

fn assert_redacted(what: &str, text: &str, extra: &[u64]) {
    for s in forbidden() {
        assert!(!text.contains(&s), "{what} shows `{s}`: {text}");
    }
    for v in extra {
        assert!(!text.contains(&v.to_string()), "{what} shows {v}: {text}");
    }
}

#[test]
fn debug_never_shows_a_secret() {
    let f2 = || Array2::from_elem((2, 3), F);
    let fd = || ArrayD::from_elem(IxDyn(&[2, 3]), F);
    let ud = || ArrayD::from_elem(IxDyn(&[2, 3]), U);
    let mut inputs = PartyInputs::default();
    inputs.inputs.insert("tokens".into(), fd());
    inputs.weights.insert("w".into(), fd());
    assert_redacted("PartyInputs", &format!("{inputs:?}"), &[]);
    let mut shares: Cache<u64> = Cache::new();
    shares.set(0, ud());
    assert_redacted("fixed::Cache", &format!("{shares:?}"), &[]);
    let mut plain: Cache<f64> = Cache::new();
    plain.set(0, fd());
    assert_redacted("plain::Cache", &format!("{plain:?}"), &[]);
    assert_redacted("Share", &format!("{:?}", Share(ud())), &[]);
    assert_redacted("XorShare", &format!("{:?}", XorShare(ud())), &[]);
    let ffn = FfnPredictor {
        p1: f2(),
        p2: f2(),
        bias: Array1::from_elem(3, F),
        threshold: 0.5,
        tau: 0.0,
    };
    assert_redacted("FfnPredictor", &format!("{ffn:?}"), &[]);
    let predictor = Predictor {
        model: "m".into(),
        block: 1,
        rank: 2,
        score: Score::Sum,
        target_recall: 0.9,
        activity: Activity::Nonzero,
        input: comet_ir::ffn::PredictorInput::Ffn,
        ffns: vec![ffn],
    };
    assert_redacted("Predictor", &format!("{predictor:?}"), &[]);
    let svd = Svd {
        u: f2(),
        s: Array1::from_elem(2, F),
        vt: f2(),
    };
    assert_redacted("Svd", &format!("{svd:?}"), &[]);
    let captured = Captured {
        x: vec![f2()],
        attention: vec![Some(f2())],
        hidden: vec![f2()],
    };
    assert_redacted("Captured", &format!("{captured:?}"), &[]);
    let mut eval: Evaluation<u64> = Evaluation::default();
    eval.outputs.insert("logits".into(), fd());
    eval.values.insert(comet_ir::NodeId::from_index(0), ud());
    assert_redacted("Evaluation", &format!("{eval:?}"), &[]);
    let calls = vec![DimEnv { seq: 1, past: 0 }];
    let header = MaterialHeader::new(0, [1; 32], SEED, calls, SEED, SEED);
    assert_redacted("MaterialHeader", &format!("{header:?}"), &[]);
    let replay = PartyReplay::new(0, SEED, SEED, Box::new(std::io::empty()));
    assert_redacted("PartyReplay", &format!("{replay:?}"), &[]);
    // dealers and their material: none of the values they hold
    let mut dealer = Dealer::new(SEED);
    let [m0, m1] = dealer.beaver_mul(&[4], &[4]);
    let values: Vec<u64> = [&m0, &m1]
        .iter()
        .flat_map(|m| m.a.iter().chain(m.b.iter()).chain(m.c.iter()).copied())
        .filter(|v| *v > 1 << 20) // a short number could appear by chance
        .collect();
    assert!(!values.is_empty());
    let text = format!("{dealer:?} {m0:?} {m1:?}");
    assert_redacted("Dealer and TripleMaterial", &text, &values);
    // sign-select keys: none of their serialized words (seed, corrections) shows
    let [k0, k1] = dealer.sign_select(3, 64, false);
    let words: Vec<u64> = [k0.to_bytes(), k1.to_bytes()]
        .iter()
        .flat_map(|b| {
            b.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        })
        .filter(|v| *v > 1 << 20)
        .collect();
    assert!(!words.is_empty());
    let text = format!("{k0:?} {k1:?}");
    assert_redacted("SignSelectMaterial", &text, &words);
    let session = SessionDealer::new(SEED);
    let seeds: Vec<u64> = [session.party_seed(0), session.common_seed()]
        .iter()
        .map(|s| u64::from_le_bytes(s[..8].try_into().unwrap()))
        .collect();
    assert_redacted("SessionDealer", &format!("{session:?}"), &seeds);
}
