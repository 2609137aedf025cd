//! Helpers shared by the integration tests that run the `comet` binary.
#![allow(dead_code)] // each test file uses a subset

pub mod process;
pub mod reference;
pub mod tcp;

use comet_compiler::passes::schedule::total_rounds;
use comet_ir::{DimEnv, Program};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The state directory (`COMET_STATE_DIR`: the list of used material) of the binaries
/// this test process runs: in cargo's temporary folder, one per test process, never the
/// user's home.
pub fn state_dir() -> PathBuf {
    temp_path(&format!("comet-state-{}", std::process::id()))
}

/// Runs `comet` with `args` from the workspace root.
pub fn comet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comet"))
        .args(args)
        .env("COMET_STATE_DIR", state_dir())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A path in cargo's per-test temporary folder.
pub fn temp_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// The plan's estimate for a call at `env`, every node counted densely: (online bits,
/// rounds, dealer bits).
pub fn estimate(p: &Program, env: DimEnv) -> (u64, u64, u64) {
    let costs = p.analyses.costs.as_ref().expect("costs");
    let (mut on, mut off) = (0i128, 0i128);
    for (_, c) in costs.iter() {
        on += c.online_bits.eval(env);
        off += c.offline_bits.eval(env);
    }
    (on as u64, total_rounds(p).eval(env) as u64, off as u64)
}

/// The largest error of output `y` of one call of `p` on `x`, run by the fixed-point
/// backend and by two parties in `session`, against `want`: `[(fixed point), (two
/// parties)]`. Asserts that the two-party call measures the plan's estimate.
pub fn worst_errors(
    p: &Program,
    session: &mut comet_runtime::interp::InProcess,
    x: &std::collections::HashMap<String, ndarray::ArrayD<f64>>,
    w: &std::collections::HashMap<String, ndarray::ArrayD<f64>>,
    env: DimEnv,
    want: ndarray::ArrayViewD<f64>,
) -> [f64; 2] {
    let mut cache = comet_runtime::fixed::Cache::new();
    let plain = comet_runtime::fixed::eval(p, x, w, env, &mut cache).unwrap();
    let (two_party, m) = session.call(x, env).unwrap();
    assert_eq!((m.online_bits, m.rounds, m.offline_bits), estimate(p, env));
    [&plain["y"], &two_party["y"]].map(|got| {
        (got.iter().zip(want.iter()))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max)
    })
}

/// A uniform draw in `[-scale, scale)` (53 random bits).
pub fn uniform(rng: &mut rand_chacha::ChaCha12Rng, scale: f64) -> f64 {
    use rand::Rng;
    ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0 * scale
}

/// Seeded weights of the given names and shapes, uniform in `[-scale, scale)`, drawn in
/// order from one stream.
pub fn uniform_weights(
    seed: u64,
    shapes: &[(&str, &[usize])],
    scale: f64,
) -> std::collections::HashMap<String, ndarray::ArrayD<f64>> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(seed);
    (shapes.iter())
        .map(|(name, shape)| {
            let v = ndarray::ArrayD::from_shape_simple_fn(ndarray::IxDyn(shape), || {
                uniform(&mut rng, scale)
            });
            (name.to_string(), v)
        })
        .collect()
}

/// Both parties' measured figures of a TCP call against the plan's estimate: each party
/// counts every online bit and round, and the dealer's bytes are split between them.
pub fn assert_tcp_call_measures_estimate(
    p: &Program,
    env: DimEnv,
    [m0, m1]: [&comet_runtime::interp::Measured; 2],
    what: &str,
) {
    let (on, rounds, off) = estimate(p, env);
    for m in [m0, m1] {
        assert_eq!((m.online_bits, m.rounds), (on, rounds), "{what}");
    }
    assert_eq!(m0.offline_bits + m1.offline_bits, off, "{what}: dealer");
}

/// `p` with one more node, as a hand-edited plan file would have it: a copy of the
/// `reveal` of the output `logits` to the client, revealing the same shared logits to the
/// server instead (same round and cost, so the plan stays consistent).
pub fn with_extra_reveal_to_server(mut p: Program) -> Program {
    use comet_ir::{Op, Party};
    let g = &p.graph;
    let reveal = g
        .ids()
        .find(|&id| matches!(g.node(id).op, Op::Reveal { to: Party::Client }))
        .expect("the plan reveals its logits to the client");
    let operand = g.operands(reveal)[0];
    let node = g.node(reveal).clone();
    let extra = p.graph.add(
        Op::Reveal { to: Party::Server },
        &[operand],
        comet_ir::ValueType {
            domain: comet_ir::Domain::Private(Party::Server),
            ..node.ty.clone()
        },
        node.scope.clone(),
    );
    let a = &mut p.analyses;
    if let Some(r) = a.rounds.as_mut().and_then(|r| r.get(reveal).cloned()) {
        a.rounds.as_mut().unwrap().insert(extra, r);
    }
    if let Some(c) = a.costs.as_mut().and_then(|c| c.get(reveal).cloned()) {
        a.costs.as_mut().unwrap().insert(extra, c);
    }
    comet_ir::verify(&p).expect("the edited plan is consistent");
    p
}

/// Small values for the dims the examples declare.
pub const SMALL: &[(&str, &str)] = &[
    ("vocab", "48"),
    ("n_ctx", "32"),
    ("n_pos", "32"),
    ("max_pos", "30"),
    ("d", "32"),
    ("heads", "2"),
    ("kv_heads", "2"),
    ("ff", "48"),
    ("n_layers", "2"),
];

/// The example's source with every dim of [`SMALL`] replaced (`dim a = 1, b = 2;` lists).
pub fn shrink(source: &str) -> String {
    let mut out = String::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        if !code.trim_start().starts_with("dim ") {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let body = code.trim_start()["dim ".len()..]
            .trim_end()
            .trim_end_matches(';');
        let items: Vec<String> = body
            .split(',')
            .map(|item| {
                let name = item.split('=').next().unwrap().trim();
                match SMALL.iter().find(|(n, _)| *n == name) {
                    Some((n, v)) if item.contains('=') => format!("{n} = {v}"),
                    _ => item.trim().to_string(),
                }
            })
            .collect();
        out.push_str(&format!("  dim {};\n", items.join(", ")));
    }
    out
}
