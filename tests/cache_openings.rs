//! Pass `cache-openings`: every product with the KV cache of the shipped architectures
//! becomes a `cache_matmul`, and a decode step then opens each cached row zero times: the
//! difference from re-opening the cache in Beaver products is exactly the cached rows'
//! openings, 2·64 bits per cached element (both parties), derived here by hand.

use comet_compiler::{Options, compile};
use comet_ir::protocol::{Protocol, fixed_values, protocol_of};
use comet_ir::{DimEnv, Op, Program};

fn plan(name: &str, cache_openings: bool) -> Program {
    let path = format!("{}/examples/{name}.model", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).expect("example");
    let opts = Options {
        cache_openings,
        ..Default::default()
    };
    compile(&src, &path, &opts).expect("compiles").program
}

fn online_bits(p: &Program, env: DimEnv) -> i128 {
    let costs = p.analyses.costs.as_ref().expect("costed");
    costs.iter().map(|(_, c)| c.online_bits.eval(env)).sum()
}

/// (cache products, Beaver matrix products) of a plan.
fn products(p: &Program) -> (usize, usize) {
    let fixed = fixed_values(p);
    let count = |want: Protocol| {
        (p.graph.ids())
            .filter(|&id| protocol_of(p, id, &fixed) == want)
            .count()
    };
    (count(Protocol::CacheMatMul), count(Protocol::BeaverMatMul))
}

#[test]
fn every_cache_product_is_rewritten() {
    // (example, layers, query groups per cached head)
    for (name, layers, groups) in [("gpt2", 12, 1), ("smollm-135m", 30, 3), ("glassllm", 4, 2)] {
        let p = plan(name, true);
        let (cache, beaver) = products(&p);
        assert_eq!(cache, 2 * layers, "{name}: q·kᵀ and p·v per layer");
        assert_eq!(beaver, 0, "{name}: no Beaver matrix product is left");
        let mut transposed = 0;
        for id in p.graph.ids() {
            if let Op::CacheMatMul {
                transpose,
                groups: g,
                ..
            } = p.graph.node(id).op
            {
                assert_eq!(g, groups, "{name}: GQA groups");
                let c = p.graph.operands(id)[1];
                assert!(matches!(p.graph.node(c).op, Op::Concat { axis: 1 }));
                transposed += usize::from(transpose);
            }
        }
        assert_eq!(
            transposed, layers,
            "{name}: the keys' product reads them transposed"
        );
        let (cache, beaver) = products(&plan(name, false));
        assert_eq!((cache, beaver), (0, 2 * layers), "{name}, re-opened");
    }
}

/// GPT-2 small, a decode step at past P: per layer, q·kᵀ and p·v each re-open the P
/// cached rows of 12 heads × 64 in a Beaver product, 2·64·(12·64·P) bits; with cached
/// openings they are not sent. 12 layers × 2 products: 24·128·768·P bits.
#[test]
fn a_decode_step_does_not_reopen_the_cache() {
    let (cached, reopened) = (plan("gpt2", true), plan("gpt2", false));
    for past in [1u64, 128, 1024] {
        let env = DimEnv { seq: 1, past };
        let saved = online_bits(&reopened, env) - online_bits(&cached, env);
        assert_eq!(saved, 24 * 128 * 768 * i128::from(past), "past {past}");
    }
}

/// `comet bench kv --quick`: decode steps on the shipped model with the cache's rows
/// opened once and re-opened, in two-party runs: measured = estimated in every call, the
/// cached plan sends less per step at every context, and the logits agree.
#[test]
fn bench_kv_measures_both_plans() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_comet"))
        .args(["bench", "kv", "--quick", "--json"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4, "contexts 4 and 8, reopened and cached");
    for pair in rows.chunks(2) {
        let (r, c) = (&pair[0], &pair[1]);
        assert_eq!(c["kv_openings"], "cached");
        assert_eq!(r["kv_openings"], "reopened");
        for row in pair {
            assert_eq!(row["measured_is_estimate"], true, "{row}");
        }
        let online = |x: &serde_json::Value| x["online_bits_per_step"].as_u64().unwrap();
        assert!(online(c) < online(r), "{c} against {r}");
        assert_eq!(c["rounds_per_step"], r["rounds_per_step"], "same rounds");
        // both are the fixed-point computation up to the local truncations, which differ
        // with the shares: each run is within the 0.05 drift that examples_two_party.rs
        // allows from the fixed-point backend, so the two within 0.1 of each other on the
        // prefill's logits (their greedy tokens may still differ at a near tie)
        let diff = c["max_logits_diff_to_reopened"].as_f64().unwrap();
        assert!(diff < 0.1, "{c}");
    }
}
