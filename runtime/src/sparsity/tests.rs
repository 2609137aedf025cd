//! Predictors, calibration, masked runs and the predictor file on a small hand-built
//! OPT-like model (token and position tables, pre-LN ReLU FFNs with biases, tied head).

use super::calibrate::{EvalSet, masked_logits, random_sequences};
use super::synthetic::{SyntheticOptions, relu_model_weights};
use super::*;
use crate::plain::{Cache, Hook, eval, eval_with_hook};
use comet_ir::{
    Dim, DimEnv, Domain, Elem, InputInfo, Node, NodeId, Op, OutputInfo, Party, Scope, ValueType,
    WeightInfo,
};
use ndarray::{ArrayViewD, IxDyn};

const V: i64 = 40;
const POS: i64 = 12;

struct Builder {
    p: Program,
}

impl Builder {
    fn ty(elem: Elem, shape: Vec<Dim>) -> ValueType {
        ValueType::new(elem, shape, Domain::Arith)
    }

    fn in_domain(mut t: ValueType, d: Domain) -> ValueType {
        t.domain = d;
        t
    }

    fn scope(layer: Option<u32>) -> Scope {
        Scope {
            path: layer.map_or(String::new(), |l| format!("layer.{l}")),
            layer,
            origin: String::new(),
        }
    }

    fn weight(&mut self, name: &str, shape: &[i64], layer: Option<u32>) -> NodeId {
        self.p.info.weights.push(WeightInfo {
            name: name.into(),
            tensor: name.into(),
            shape: shape.iter().map(|&n| n as u64).collect(),
            transposed: false,
            party: Party::Server,
        });
        let ty = Self::in_domain(
            Self::ty(
                Elem::Fixed { scale: 16 },
                shape.iter().map(|&n| Dim::constant(n)).collect(),
            ),
            Domain::Private(Party::Server),
        );
        let op = Op::Weight { name: name.into() };
        self.p.graph.add(op, &[], ty, Self::scope(layer))
    }

    /// A fixed-point `[seq, width]` node.
    fn op(&mut self, op: Op, args: &[NodeId], width: i64, layer: Option<u32>) -> NodeId {
        let ty = Self::ty(
            Elem::Fixed { scale: 16 },
            vec![Dim::SEQ, Dim::constant(width)],
        );
        self.p.graph.add(op, args, ty, Self::scope(layer))
    }
}

/// `layers` pre-LN ReLU FFN blocks of width `ff` on `d`-wide embeddings (no attention).
fn tiny(d: i64, ff: i64, layers: u32) -> Program {
    let mut b = Builder {
        p: Program::default(),
    };
    b.p.info.name = "tiny".into();
    b.p.info.inputs.push(InputInfo {
        name: "tokens".into(),
        elem: Elem::Index,
        shape: vec![Dim::SEQ],
        party: Party::Client,
    });
    b.p.info.outputs.push(OutputInfo {
        name: "logits".into(),
        party: Party::Client,
    });
    let tokens = b.p.graph.add(
        Op::Input {
            name: "tokens".into(),
            party: Party::Client,
        },
        &[],
        Builder::in_domain(
            Builder::ty(Elem::Index, vec![Dim::SEQ]),
            Domain::Private(Party::Client),
        ),
        Builder::scope(None),
    );
    let pos = b.p.graph.add(
        Op::Positions { offset: 0 },
        &[],
        Builder::in_domain(Builder::ty(Elem::Index, vec![Dim::SEQ]), Domain::Public),
        Builder::scope(None),
    );
    let e = b.weight("embed", &[V, d], None);
    let pe = b.weight("pos", &[POS, d], None);
    let x0 = b.op(Op::Embed, &[tokens, e], d, None);
    let p0 = b.op(Op::Embed, &[pos, pe], d, None);
    b.p.graph.node_mut(p0).ty.domain = Domain::Private(Party::Server);
    let mut x = b.op(Op::Add, &[x0, p0], d, None);
    for l in 0..layers {
        let at = Some(l);
        let g = b.weight(&format!("layer.{l}.ln_g"), &[d], at);
        let bb = b.weight(&format!("layer.{l}.ln_b"), &[d], at);
        let w1 = b.weight(&format!("layer.{l}.w1"), &[d, ff], at);
        let b1 = b.weight(&format!("layer.{l}.b1"), &[ff], at);
        let w2 = b.weight(&format!("layer.{l}.w2"), &[ff, d], at);
        let b2 = b.weight(&format!("layer.{l}.b2"), &[d], at);
        let h = b.op(Op::LayerNorm { eps: 1e-5 }, &[x, g, bb], d, at);
        let m = b.op(Op::MatMul, &[h, w1], ff, at);
        let a = b.op(Op::Add, &[m, b1], ff, at);
        let r = b.op(
            Op::Unary {
                func: UnaryFn::Relu,
            },
            &[a],
            ff,
            at,
        );
        let down = b.op(Op::MatMul, &[r, w2], d, at);
        let f = b.op(Op::Add, &[down, b2], d, at);
        x = b.op(Op::Add, &[x, f], d, at);
    }
    let g = b.weight("lnf_g", &[d], None);
    let bb = b.weight("lnf_b", &[d], None);
    let h = b.op(Op::LayerNorm { eps: 1e-5 }, &[x, g, bb], d, None);
    let et = b.p.graph.add(
        Op::Transpose,
        &[e],
        Builder::in_domain(
            Builder::ty(
                Elem::Fixed { scale: 16 },
                vec![Dim::constant(d), Dim::constant(V)],
            ),
            Domain::Private(Party::Server),
        ),
        Builder::scope(None),
    );
    let logits = b.op(Op::MatMul, &[h, et], V, None);
    let open = b.op(Op::Reveal { to: Party::Client }, &[logits], V, None);
    b.p.graph.node_mut(open).ty.domain = Domain::Private(Party::Client);
    let out = b.op(
        Op::Output {
            name: "logits".into(),
            party: Party::Client,
        },
        &[open],
        V,
        None,
    );
    b.p.graph.node_mut(out).ty.domain = Domain::Private(Party::Client);
    comet_ir::verify(&b.p).unwrap_or_else(|e| panic!("{e}"));
    b.p
}

fn synthetic(p: &Program) -> Weights {
    let opts = SyntheticOptions {
        cluster: 8,
        ..SyntheticOptions::default()
    };
    relu_model_weights(p, &opts).unwrap_or_else(|e| panic!("{e}"))
}

fn opts(block: usize, rank: usize) -> PredictorOptions {
    PredictorOptions {
        block,
        rank,
        score: Score::Max,
        svd: svd::SvdOptions::default(),
    }
}

/// The tiny model, its synthetic weights and the capture of 16 random sequences of 12.
fn setup() -> (Program, Weights) {
    let p = tiny(32, 128, 2);
    let w = synthetic(&p);
    (p, w)
}

#[test]
fn the_synthetic_model_is_about_90_percent_sparse_in_clusters() {
    let (p, w) = setup();
    let m = TokenModel::new(&p, &w).unwrap();
    assert_eq!((m.vocab, m.max_len, m.ffns.len()), (40, Some(12), 2));
    let cap = capture(&m, &random_sequences(40, 16, 12, 5)).unwrap();
    assert_eq!(cap.tokens(), 192);
    for (k, h) in cap.hidden.iter().enumerate() {
        let zeros = h.iter().filter(|v| **v == 0.0).count() as f64 / h.len() as f64;
        assert!(
            (0.85..0.95).contains(&zeros),
            "FFN {k}: neuron sparsity {zeros}"
        );
        // blocks of one cluster (8) are inactive nearly as often as single neurons
        let blocks = block_max(h.view(), 8, f64::abs);
        let inactive = blocks.iter().filter(|v| **v == 0.0).count() as f64 / blocks.len() as f64;
        assert!(inactive > 0.8, "FFN {k}: block sparsity {inactive}");
    }
}

#[test]
fn svd_factors_reproduce_the_projection_at_full_rank() {
    let (p, w) = setup();
    let m = TokenModel::new(&p, &w).unwrap();
    let pred = Predictor::from_weights(&p, &m.ffns, &w, &opts(8, 32)).unwrap();
    let w1 = matrix(&w, "layer.0.w1", (32, 128)).unwrap();
    let err = (&pred.ffns[0].p1.dot(&pred.ffns[0].p2) - &w1)
        .iter()
        .fold(0.0f64, |a, v| a.max(v.abs()));
    assert!(err < 1e-9, "{err}");
    assert_eq!(pred.ffns[0].bias[0], w["layer.0.b1"][[0]]);
}

#[test]
fn calibration_reaches_the_target_recall_with_the_largest_threshold() {
    let (p, w) = setup();
    let m = TokenModel::new(&p, &w).unwrap();
    let cap = capture(&m, &random_sequences(40, 16, 12, 5)).unwrap();
    // 16 clusters of 8: rank 16 sees them all
    let pred = Predictor::from_weights(&p, &m.ffns, &w, &opts(8, 16)).unwrap();
    let cal = Calibration::new(&m, &pred, &cap).unwrap();
    for target in [0.8, 0.9, 0.95, 0.99, 1.0] {
        let reports = cal.solve(Activity::Nonzero, target).unwrap();
        for r in &reports {
            assert!(r.recall >= target, "{target}: {r:?}");
            // any larger threshold (the next score up) misses the target
            let up = cal.report(r.ffn, r.tau, next_up(r.threshold));
            assert!(up.recall < target, "{target}: δ is not the largest: {up:?}");
            assert!((0.8..0.95).contains(&r.true_block_sparsity), "{r:?}");
        }
        if target <= 0.95 {
            assert!(
                reports.iter().all(|r| r.predicted_block_sparsity > 0.6),
                "{target}: {reports:?}"
            );
        }
    }
    let bad = cal.solve(Activity::Nonzero, 1.5).unwrap_err().to_string();
    assert!(
        bad.contains("target recall must be in (0, 1], not 1.5"),
        "{bad}"
    );
    let bad = cal
        .solve(Activity::Magnitude(1.0), 0.9)
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("neuron sparsity must be in [0, 1), not 1"),
        "{bad}"
    );
}

fn next_up(x: f64) -> f64 {
    // the smallest f64 above x
    f64::from_bits(if x >= 0.0 {
        x.to_bits() + 1
    } else {
        x.to_bits() - 1
    })
}

#[test]
fn magnitude_activity_sets_the_neuron_sparsity() {
    let (p, w) = setup();
    let m = TokenModel::new(&p, &w).unwrap();
    let cap = capture(&m, &random_sequences(40, 8, 12, 6)).unwrap();
    let pred = Predictor::from_weights(&p, &m.ffns, &w, &opts(4, 16)).unwrap();
    let cal = Calibration::new(&m, &pred, &cap).unwrap();
    for s in [0.92, 0.95, 0.99] {
        for r in cal.solve(Activity::Magnitude(s), 0.9).unwrap() {
            assert!(
                (r.true_neuron_sparsity - s).abs() < 2.0 / (96.0 * 128.0) + 1e-12,
                "{s}: {r:?}"
            );
            assert!(r.tau > 0.0);
        }
    }
}

/// A dense run, and runs masking nothing that matters, give the dense logits exactly;
/// masking everything changes them.
#[test]
fn masked_runs_skip_exactly_the_inactive_blocks() {
    let (p, w) = setup();
    let m = TokenModel::new(&p, &w).unwrap();
    let cap = capture(&m, &random_sequences(40, 16, 12, 5)).unwrap();
    let mut pred = Predictor::from_weights(&p, &m.ffns, &w, &opts(8, 16)).unwrap();
    let reports = calibrate(&m, &mut pred, &cap, Activity::Nonzero, 0.9).unwrap();
    assert!(reports.iter().all(|r| r.recall >= 0.9));
    let set = EvalSet::new(&m, random_sequences(40, 3, 4, 9), 6).unwrap();

    let oracle = set.compare(&m, Some(&pred), MaskMode::Oracle).unwrap();
    // inactive ReLU blocks are exact zeros: skipping them changes nothing
    assert_eq!(oracle.max_logits_error, 0.0);
    assert_eq!(oracle.total_matched(), 18);
    assert_eq!(oracle.stats.recall(), 1.0);
    assert!(oracle.stats.skipped() > 0.7, "{:?}", oracle.stats);

    let off = set.compare(&m, Some(&pred), MaskMode::AllOff).unwrap();
    assert!(off.max_logits_error > 0.1 * off.max_logits, "{off:?}");
    assert_eq!(off.stats.skipped(), 1.0);

    let predicted = set.compare(&m, Some(&pred), MaskMode::Predicted).unwrap();
    assert!(predicted.stats.skipped() > 0.5, "{:?}", predicted.stats);
    assert!(predicted.stats.recall() > 0.8, "{:?}", predicted.stats);
    assert!(predicted.max_logits_error < off.max_logits_error);

    // with every block predicted active the run is the dense one
    let mut all = pred.clone();
    all.ffns
        .iter_mut()
        .for_each(|f| f.threshold = f64::NEG_INFINITY);
    let dense = set.compare(&m, Some(&all), MaskMode::Predicted).unwrap();
    assert_eq!(dense.max_logits_error, 0.0);
    assert_eq!(dense.stats.skipped(), 0.0);
}

/// The hook's masked value is what users read: masking one FFN's hidden neurons by hand
/// through a hook equals the predicted-mask machinery's count of zeroed blocks.
#[test]
fn a_hook_replaces_values_and_a_wrong_shape_is_an_error() {
    struct Zero(NodeId, bool);
    impl Hook for Zero {
        fn after(&mut self, id: NodeId, _: &Node, v: ArrayViewD<f64>) -> Option<ArrayD<f64>> {
            if id != self.0 {
                return None;
            }
            Some(if self.1 {
                ArrayD::zeros(IxDyn(&[1, 1]))
            } else {
                v.mapv(|_| 0.0)
            })
        }
    }
    let (p, w) = setup();
    let m = TokenModel::new(&p, &w).unwrap();
    let tokens = HashMap::from([(
        "tokens".to_string(),
        ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.0, 2.0, 3.0]).unwrap(),
    )]);
    let env = DimEnv { seq: 3, past: 0 };
    let dense = eval(&p, &tokens, &w, env, &mut Cache::new()).unwrap();
    // zeroing both FFNs' hidden values = the FFNs contribute their down bias only
    let mut hook0 = Zero(m.ffns[0].hidden, false);
    let once = eval_with_hook(&p, &tokens, &w, env, &mut Cache::new(), &mut hook0).unwrap();
    assert_ne!(once["logits"], dense["logits"]);
    let mut bad = Zero(m.ffns[1].hidden, true);
    let e = eval_with_hook(&p, &tokens, &w, env, &mut Cache::new(), &mut bad).unwrap_err();
    assert!(
        e.to_string()
            .contains("a hook replaced the value of shape [3, 128] by one of shape [1, 1]"),
        "{e}"
    );
}

#[test]
fn calibration_inputs_of_the_wrong_shape_are_errors() {
    let (p, w) = setup();
    let m = TokenModel::new(&p, &w).unwrap();
    let e = capture(&m, &[vec![1, 2], vec![3, 40]])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "calibration sample 1, token 1: id 40 is outside the vocabulary [0, 40)"
    );
    let e = capture(&m, &[vec![]]).unwrap_err().to_string();
    assert_eq!(e, "calibration sample 0 is empty");
    let e = capture(&m, &[vec![1; 13]]).unwrap_err().to_string();
    assert_eq!(
        e,
        "calibration sample 0 has 13 tokens, the model has positions for 12"
    );
    let e = capture(&m, &[]).unwrap_err().to_string();
    assert_eq!(e, "no calibration samples");
    let e = EvalSet::new(&m, vec![vec![1; 8]], 6)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("evaluation prompt 0 has 8 tokens"), "{e}");
}

#[test]
fn options_out_of_range_are_errors() {
    let (p, w) = setup();
    let m = TokenModel::new(&p, &w).unwrap();
    let e = Predictor::from_weights(&p, &m.ffns, &w, &opts(8, 33)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "rank 33 must be between 1 and min(d, ff) = 32 (layer 0: W_act `layer.0.w1` is [32, 128])"
    );
    let e = Predictor::from_weights(&p, &m.ffns, &w, &opts(129, 8)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "block size 129 must be between 1 and the FFN width 128 (layer 0)"
    );
    let e = Predictor::from_weights(&p, &m.ffns, &w, &opts(0, 8)).unwrap_err();
    assert!(e.to_string().starts_with("block size 0 must be"));
}

#[test]
fn the_predictor_file_round_trips() {
    let (p, w) = setup();
    let m = TokenModel::new(&p, &w).unwrap();
    let cap = capture(&m, &random_sequences(40, 4, 12, 5)).unwrap();
    let mut pred = Predictor::from_weights(&p, &m.ffns, &w, &opts(8, 16)).unwrap();
    calibrate(&m, &mut pred, &cap, Activity::Magnitude(0.5), 0.95).unwrap();
    let bytes = pred.to_bytes(&m.ffns);
    let back = Predictor::from_bytes(&bytes, "`x`", "tiny", &m.ffns).unwrap();
    assert_eq!(back, pred);
}

fn file_error(bytes: &[u8], program: &Program) -> String {
    let ffns = comet_ir::ffn::find_ffns(program);
    Predictor::from_bytes(bytes, "`p.safetensors`", &program.info.name, &ffns)
        .unwrap_err()
        .to_string()
}

/// Re-serializes `bytes` with one tensor dropped or replaced, and metadata edited.
fn edit(
    bytes: &[u8],
    drop: &str,
    replace: Option<(&str, Vec<usize>)>,
    meta: &[(&str, &str)],
) -> Vec<u8> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let mut m = header.metadata().clone().unwrap();
    for (k, v) in meta {
        m.insert(k.to_string(), v.to_string());
    }
    let zeros = vec![0u8; 8 * 4096];
    let mut views = Vec::new();
    for (name, view) in file.tensors() {
        if name == drop {
            continue;
        }
        match &replace {
            Some((n, shape)) if *n == name => {
                let len = 8 * shape.iter().product::<usize>();
                let v = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F64,
                    shape.clone(),
                    &zeros[..len],
                )
                .unwrap();
                views.push((name, v));
            }
            _ => views.push((name, view)),
        }
    }
    safetensors::serialize(views, Some(m)).unwrap()
}

#[test]
fn a_predictor_file_that_does_not_fit_the_model_is_a_clear_error() {
    let (p, w) = setup();
    let m = TokenModel::new(&p, &w).unwrap();
    let pred = Predictor::from_weights(&p, &m.ffns, &w, &opts(8, 16)).unwrap();
    let bytes = pred.to_bytes(&m.ffns);

    // wrong FFN count: a model with three layers
    let e = file_error(&bytes, &tiny(32, 128, 3));
    assert_eq!(
        e,
        "predictor file `p.safetensors`: it has predictors for 2 FFNs (metadata `ffns`), \
         model `tiny` has 3"
    );
    // wrong shapes: a model with another width d
    let e = file_error(&bytes, &tiny(24, 128, 2));
    assert_eq!(
        e,
        "predictor file `p.safetensors`: tensor `ffn.0.p1` has shape [32, 16], the model \
         needs [24, 16]"
    );
    let e = file_error(&bytes, &tiny(32, 96, 2));
    assert!(
        e.contains("tensor `ffn.0.p2` has shape [16, 128], the model needs [16, 96]"),
        "{e}"
    );
    // a missing tensor
    let e = file_error(&edit(&bytes, "ffn.1.p2", None, &[]), &p);
    assert_eq!(
        e,
        "predictor file `p.safetensors`: tensor `ffn.1.p2` is missing (expected shape [16, 128])"
    );
    // a rank that differs between layers
    let e = file_error(&edit(&bytes, "", Some(("ffn.1.p1", vec![32, 8])), &[]), &p);
    assert!(
        e.contains("tensor `ffn.1.p1` has shape [32, 8], the model needs [32, 16]"),
        "{e}"
    );
    let e = file_error(
        &edit(&bytes, "", Some(("ffn.0.threshold", vec![2])), &[]),
        &p,
    );
    assert!(
        e.contains("tensor `ffn.0.threshold` has shape [2], the model needs [1]"),
        "{e}"
    );
    // metadata
    let e = file_error(&edit(&bytes, "", None, &[("format", "x")]), &p);
    assert!(
        e.contains("metadata `format` is `x`, expected `comet-sparsity-predictor`"),
        "{e}"
    );
    let e = file_error(&edit(&bytes, "", None, &[("ffn.1.weight", "other.w1")]), &p);
    assert!(
        e.contains(
            "FFN 1 was derived from weight `other.w1` (metadata `ffn.1.weight`), but the \
                    model's FFN 1 (layer 1) projects with `layer.1.w1`"
        ),
        "{e}"
    );
    let e = file_error(&edit(&bytes, "", None, &[("block", "0")]), &p);
    assert!(e.contains("block size 0 (metadata `block`)"), "{e}");
    // not a predictor file, not a safetensors file
    let e = file_error(
        &safetensors::serialize(
            Vec::<(String, safetensors::tensor::TensorView)>::new(),
            None,
        )
        .unwrap(),
        &p,
    );
    assert!(
        e.contains("no metadata `format` = `comet-sparsity-predictor`"),
        "{e}"
    );
    let e = file_error(b"not a file", &p);
    assert!(
        e.starts_with("predictor file `p.safetensors`: not a safetensors file"),
        "{e}"
    );
}

fn layer_norm_rows(x: &Array2<f64>) -> Array2<f64> {
    let mut y = x.clone();
    for mut r in y.rows_mut() {
        let n = r.len() as f64;
        let mean = r.sum() / n;
        let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        r.mapv_inplace(|v| (v - mean) / (var + 1e-5).sqrt());
    }
    y
}

/// A one-layer model by hand: the predicted-mask run zeroes exactly the predicted-inactive
/// blocks of every token, and the all-off run leaves only the down bias.
#[test]
fn masked_logits_match_a_hand_computed_sparse_ffn() {
    let p = tiny(32, 128, 1);
    let mut w = synthetic(&p);
    // gains and biases that are not 1 and 0, so that a mix-up shows
    w.insert("layer.0.b2".into(), ArrayD::from_elem(IxDyn(&[32]), 0.3));
    let m = TokenModel::new(&p, &w).unwrap();
    let mut pred = Predictor::from_weights(&p, &m.ffns, &w, &opts(8, 8)).unwrap();
    let cap = capture(&m, &random_sequences(40, 8, 12, 2)).unwrap();
    calibrate(&m, &mut pred, &cap, Activity::Nonzero, 0.9).unwrap();
    let ids = [3u32, 17, 5, 39, 0, 22, 8];
    let mat = |n: &str| w[n].clone().into_dimensionality::<Ix2>().unwrap();
    let vec1 = |n: &str| w[n].iter().copied().collect::<Array1<f64>>();
    let (e, pe) = (mat("embed"), mat("pos"));
    let x = Array2::from_shape_fn((ids.len(), 32), |(t, j)| {
        e[[ids[t] as usize, j]] + pe[[t, j]]
    });
    let h = layer_norm_rows(&x);
    let z = h.dot(&mat("layer.0.w1")) + &vec1("layer.0.b1");
    let keep = pred.predict(0, h.view());
    let mut hidden = z.mapv(|v| v.max(0.0));
    for (t, mut row) in hidden.rows_mut().into_iter().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            if !keep[[t, j / 8]] {
                *v = 0.0;
            }
        }
    }
    let logits = |hidden: &Array2<f64>| {
        let f = hidden.dot(&mat("layer.0.w2")) + &vec1("layer.0.b2");
        layer_norm_rows(&(&x + &f)).dot(&e.t())
    };
    let max_diff = |a: &Array2<f64>, b: &Array2<f64>| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    let skipped = keep.iter().filter(|k| !**k).count();
    assert!(
        skipped > 0 && skipped < keep.len(),
        "{skipped} of {}",
        keep.len()
    );
    let (got, stats) = masked_logits(&m, &ids, Some(&pred), MaskMode::Predicted).unwrap();
    assert!(max_diff(&got, &logits(&hidden)) < 1e-9);
    assert_eq!(stats.kept[0], (keep.len() - skipped) as u64);
    let (off, _) = masked_logits(&m, &ids, Some(&pred), MaskMode::AllOff).unwrap();
    assert!(max_diff(&off, &logits(&Array2::zeros(hidden.dim()))) < 1e-9);
    let (dense, _) = masked_logits(&m, &ids, None, MaskMode::Dense).unwrap();
    assert!(max_diff(&dense, &logits(&z.mapv(|v| v.max(0.0)))) < 1e-9);
}
