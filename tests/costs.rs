//! Hand-derived costs of small graphs, checked against the compiled plan.
//!
//! Conventions (PROTOCOLS.md): l = 64 ring bits; online bits are both parties together;
//! offline bits are what the dealer sends; a DReLU key is 12,288 bits per element and
//! party (a 63-bit DCF with a Z_2^64 payload: 63·(128 + 64) + 126 control bits rounded to
//! 16 bytes, + 64: 1,536 bytes). Every expected figure is derived in a comment from those
//! formulas, not read off the compiler. Comparisons work on the whole ring here
//! (`narrow_comparisons: false`): the widths the range analysis proves, and their
//! savings, are derived in `tests/narrow_comparisons.rs`.

use comet_compiler::{Options, compile};
use comet_ir::poly::Poly;
use comet_ir::{Comparison, DimEnv, Program};

fn plan(src: &str, comparison: Comparison) -> Program {
    plan_with(src, comparison, true)
}

/// [`plan`], with the KV-cache products opening each cached row once (`cache_openings`,
/// the default) or re-opening the whole cache in every call. Truncations are local, as
/// the derivations below assume (`--faithful-trunc never`);
/// [`faithful_truncation_after_a_matmul`] derives a faithful one's cost.
fn plan_with(src: &str, comparison: Comparison, cache_openings: bool) -> Program {
    let opts = Options {
        verify: true,
        comparison,
        cache_openings,
        narrow_comparisons: false,
        truncation: None,
        ..Default::default()
    };
    match compile(src, "test.model", &opts) {
        Ok(c) => c.program,
        Err(comet_compiler::CompileError::Source(d)) => panic!("{}", d.render_plain()),
        Err(e) => panic!("{e}"),
    }
}

/// (rounds after merging, rounds before merging, online bits, offline bits) of one call.
fn totals(p: &Program, env: DimEnv) -> (i128, i128, i128, i128) {
    let costs = p.analyses.costs.as_ref().expect("costed");
    let sum = |f: fn(&comet_ir::cost::NodeCost) -> &Poly| -> i128 {
        costs.iter().map(|(_, c)| f(c).eval(env)).sum()
    };
    let merged = comet_compiler::passes::schedule::total_rounds(p).eval(env);
    (
        merged,
        sum(|c| &c.rounds),
        sum(|c| &c.online_bits),
        sum(|c| &c.offline_bits),
    )
}

const DCF: i128 = 12288;
/// Sign-select key bytes per element, both parties: a 1-bit DCF on 63 bits each (16·56 +
/// 14 + 16 = 926 bytes), and party 1's corrections of ρ and ρ·s (16 bytes).
const SIGN_SELECT: i128 = 2 * (16 * 56 + 14 + 16) + 16;

const MATMUL: &str =
    "model m { dim seq, past; input x: fixed[seq, 4] from client; weight w: [4, 3];
    output y = matmul(x, w) to client; }";

#[test]
fn fixed_weight_matmul() {
    let p = plan(MATMUL, Comparison::Fss);
    for seq in [1u64, 5, 128] {
        let s = seq as i128;
        // share x, share w: free. fixed matmul [seq,4]·[4,3] with the server's weight (a
        // one-sided operand): 1 round, the client alone sends its share of X under its
        // mask: 64·(4s) = 256s online; dealer sends the C correction 64·3s = 192s.
        // trunc: local. reveal [seq,3] to the client: 1 round, 64·3s = 192s.
        let expected = (2, 2, 256 * s + 192 * s, 192 * s);
        assert_eq!(totals(&p, DimEnv { seq, past: 0 }), expected, "seq = {seq}");
    }
}

/// `--faithful-trunc auto`: x is a client input, so nothing bounds the product and its
/// truncation is faithful, with the exact gate (`--faithful-gate exact`).
#[test]
fn faithful_truncation_after_a_matmul() {
    let opts = Options {
        verify: true,
        truncation: Some(comet_ir::TruncationPolicy {
            gate: comet_ir::FaithfulGate::Exact,
            ..comet_compiler::passes::faithful_trunc::default_policy()
        }),
        ..Default::default()
    };
    let p = compile(MATMUL, "test.model", &opts).unwrap().program;
    for seq in [1u64, 5, 128] {
        let s = seq as i128;
        // as fixed_weight_matmul, plus the faithful truncation of [seq, 3] by 16 bits:
        // 1 round; both open x + r + 2^62, 2·64·3s = 384s; dealer per element a 16-bit DCF
        // per party (24·16 + ⌈32/8⌉ + 8 = 396 bytes) and party 1's share of msb(r) (8):
        // 8·800·3s = 19,200s bits.
        let expected = (3, 3, 256 * s + 384 * s + 192 * s, 192 * s + 19_200 * s);
        assert_eq!(totals(&p, DimEnv { seq, past: 0 }), expected, "seq = {seq}");
    }
}

/// The default plan: the same truncation with the stochastic gate.
#[test]
fn stochastic_truncation_after_a_matmul() {
    let opts = Options {
        verify: true,
        ..Default::default()
    };
    let p = compile(MATMUL, "test.model", &opts).unwrap().program;
    for seq in [1u64, 5, 128] {
        let s = seq as i128;
        // as fixed_weight_matmul, plus the truncation of [seq, 3]: 1 round; both open
        // x + r + 2^62, 2·64·3s = 384s; the dealer sends party 1 its shares of ⌊r/2^16⌋
        // and msb(r), 2·64·3s = 384s bits.
        let expected = (3, 3, 256 * s + 384 * s + 192 * s, 192 * s + 384 * s);
        assert_eq!(totals(&p, DimEnv { seq, past: 0 }), expected, "seq = {seq}");
    }
}

/// The default plan with its truncation's input width set by hand, as a range analysis
/// would: the opening is packed at that width.
#[test]
fn stochastic_truncation_at_a_width() {
    let opts = Options {
        verify: true,
        ..Default::default()
    };
    let mut p = compile(MATMUL, "test.model", &opts).unwrap().program;
    let ids: Vec<_> = (p.graph.ids())
        .filter(|&id| matches!(p.graph.node(id).op, comet_ir::Op::StochasticTrunc { .. }))
        .collect();
    assert_eq!(ids.len(), 1, "one truncation");
    p.graph.node_mut(ids[0]).cmp_width = Some(21);
    comet_compiler::passes::cost::run(&mut p);
    comet_ir::verify::verify(&p).expect("valid");
    for seq in [1u64, 5, 128] {
        let s = seq as i128;
        // as stochastic_truncation_after_a_matmul, but each party sends its 3s openings
        // at 21 bits, ⌈63s/8⌉ bytes: online 2·8·⌈63s/8⌉ instead of 384s (seq 1: 8 bytes,
        // 128 bits; seq 5: 40 bytes, 640 bits; seq 128: 1,008 bytes, 16,128 bits); the
        // dealer's shares are 64-bit whatever the width, 384s.
        let opened = 16 * ((63 * s + 7) / 8);
        let expected = (3, 3, 256 * s + opened + 192 * s, 192 * s + 384 * s);
        assert_eq!(totals(&p, DimEnv { seq, past: 0 }), expected, "seq = {seq}");
    }
}

const TWO_SECRETS: &str =
    "model m { dim seq, past; input x: fixed[seq, 4] from client; weight w: [4, 4];
    weight v: [4, 4]; let a = matmul(x, w); let b = matmul(x, v); output y = a * b to client; }";

#[test]
fn independent_matmuls_share_a_round_and_beaver_mul_follows() {
    let p = plan(TWO_SECRETS, Comparison::Fss);
    let s = 3i128;
    // round 1: both fixed matmuls (independent: merged; one-sided, the client sends),
    // each 64·4s = 256s online, 64·4s = 256s dealer. round 2: Beaver a·b on [s,4]: opens
    // a − α and b − β, 2·64·(4s + 4s) = 1024s; dealer 64·4s = 256s. round 3: reveal
    // 64·4s = 256s. before merging: 1 + 1 + 1 + 1 = 4 rounds.
    let expected = (3, 4, 256 * s * 2 + 1024 * s + 256 * s, 256 * s * 3);
    assert_eq!(totals(&p, DimEnv { seq: 3, past: 0 }), expected);
}

#[test]
fn dcf_key_size_is_what_the_runtime_sends() {
    // 63 levels of (λ = 128 seed bits + l = 64 value bits), 126 control bits → 16 bytes,
    // and the final 64-bit correction
    assert_eq!(DCF, 8 * (63 * (128 + 64) / 8 + 16 + 8));
    assert_eq!(comet_compiler::cost::DCF_KEY_BITS as i128, DCF);
    assert_eq!(
        comet_runtime::fss::DRELU_KEY_BYTES_PER_ELEMENT as i128 * 8,
        DCF
    );
}

const RELU_LAYER: &str =
    "model m { dim seq, past; input x: fixed[seq, 4] from client; weight w: [4, 3];
    output y = relu(matmul(x, w)) to client; }";

#[test]
fn relu_layer() {
    let p = plan(RELU_LAYER, Comparison::Fss);
    let s = 5i128;
    // fixed matmul (one-sided): 1 round, 64·4s = 256s online, 64·3s = 192s dealer.
    // relu = select(drelu(x), x), fused (pass fuse-selects) into one sign select on
    // n = 3s = 15 elements: 2 rounds; each party sends x + r (8n bytes), then the bits e
    // packed eight to a byte (⌈15/8⌉ = 2 bytes): 2·8·(120 + 2) = 1952 online; dealer
    // SIGN_SELECT = 926 + 942 bytes per element.
    // reveal to the client: 1 round, 64·3s = 192s.
    let expected = (
        4,
        4,
        (256 + 192) * s + 1952,
        192 * s + 8 * SIGN_SELECT * 3 * s,
    );
    assert_eq!(totals(&p, DimEnv { seq: 5, past: 0 }), expected);
}

#[test]
fn sign_select_key_size_is_what_the_runtime_sends() {
    assert_eq!(
        comet_compiler::cost::sign_select_key_bytes(64) as i128,
        SIGN_SELECT
    );
    assert_eq!(SIGN_SELECT, 1868);
}

#[test]
fn relu_layer_with_gmw_comparisons() {
    let p = plan(RELU_LAYER, Comparison::Gmw);
    let s = 5i128;
    // as above, but the DReLU is the GMW carry circuit on n = 3s elements: 7 rounds,
    // 2·GMW_BITS·n online, GMW_DEALER·n dealer; its bits are XOR-shared, so the select
    // opens b ⊕ r (eight to a byte: ⌈15/8⌉ = 2 bytes) and x − a: 2·(8·2 + 64·n) = 384s +
    // 32 online, and the dealer sends the daBit's and r·a's corrections, 64·(n + n) = 384s.
    let online = (256 + 2 * GMW_BITS * 3 + 384 + 192) * s + 32;
    let offline = (192 + GMW_DEALER * 3 + 384) * s;
    assert_eq!(
        totals(&p, DimEnv { seq: 5, past: 0 }),
        (10, 10, online, offline)
    );
}

/// The GMW DReLU (`comet_runtime::protocols::gmw`): 63 generate bits from the parties'
/// private words (one opened bit per party each), then 6 tree levels of 31, 16, 8, 4, 2, 1
/// pairs, each pair opening 3 bits per party (2 for the lowest), every round's bits
/// padded to bytes per element; one dealer bit per AND gate (63, then 2 per pair but 1 for
/// the lowest), padded to bytes per element.
const GMW_BITS: i128 = 8 * (8 + 12 + 6 + 3 + 2 + 1 + 1);
const GMW_DEALER: i128 = 8 * 23;

#[test]
fn gmw_circuit_size_is_what_the_runtime_sends() {
    use comet_compiler::cost::{
        GMW_DRELU_AND_GATES, GMW_DRELU_BITS_PER_PARTY, GMW_DRELU_BYTES_PER_ROUND,
        GMW_DRELU_OFFLINE_BITS, GMW_DRELU_ROUNDS,
    };
    use comet_runtime::protocols::gmw;
    let bits: Vec<u32> = (0..gmw::ROUNDS).map(gmw::opened_bits).collect();
    assert_eq!(bits, [63, 31 * 3 - 1, 16 * 3 - 1, 23, 11, 5, 2]);
    let bytes: Vec<i64> = bits.iter().map(|b| i64::from(b.div_ceil(8))).collect();
    assert_eq!(bytes, GMW_DRELU_BYTES_PER_ROUND);
    assert_eq!(GMW_DRELU_ROUNDS, gmw::ROUNDS as i64);
    assert_eq!(GMW_DRELU_BITS_PER_PARTY as i128, GMW_BITS);
    assert_eq!(
        GMW_DRELU_BITS_PER_PARTY,
        8 * gmw::MESSAGE_BYTES_PER_ELEMENT as i64
    );
    assert_eq!(GMW_DRELU_AND_GATES, i64::from(gmw::AND_GATES_PER_ELEMENT));
    assert_eq!(GMW_DRELU_OFFLINE_BITS as i128, GMW_DEALER);
    assert_eq!(
        GMW_DRELU_OFFLINE_BITS,
        8 * gmw::CORRECTION_BYTES_PER_ELEMENT as i64
    );
}

const SOFTMAX_ROW: &str =
    "model m { dim seq, past; input x: fixed[seq, 4] from client; weight w: [4, 8];
    output p = softmax(matmul(x, w)) to client; }";

/// One row of 8 scores (seq = 1), through the `exact` recipes:
/// - fixed matmul [1,4]·[4,8] (one-sided): 1 round, 64·4 = 256 online, 64·8 = 512
///   dealer.
/// - row_max over t = 8: ⌈log2 8⌉ = 3 levels of one sign select each: 6 rounds; t − 1 = 7
///   pairs, each party opening 64 bits per pair and per level its bits e in whole bytes
///   (4, 2, 1 pairs: 3 bytes): online 2·(7·64 + 3·8) = 944; dealer 7·8·SIGN_SELECT.
/// - the exp's clip stays DReLU then mux: its y (the squarings) is ready long after x.
/// - exp on 8 values: DReLU(d + 14) (1024 online, 8·2·DCF dealer) beside the
///   first of 8 squarings (each 2·64·8 = 1024 online, 64·8 = 512 dealer), then the
///   clip's select, whose bit's lowest bit is an XOR share (the 8 bits in one byte and
///   64 bits per value opened, 2·(8 + 512) = 1040; dealer 64·(8 + 8) = 1024): 9 rounds (10
///   unmerged); online 1024 + 8192 + 1040 = 10256; dealer 8·2·DCF + 4096 + 1024.
/// - reciprocal of the row sum (one value): exp of 1 − 2z as above on 1 element (online
///   128 + 8·128 + 144 = 1296, the bit padded to a byte; dealer 2·DCF + 8·64 + 128; 9 rounds, 10
///   unmerged), then 10 Newton steps of 2 sequential Beaver products of 1×1 values
///   (each 2·64·2 = 256 online, 64 dealer): 20 rounds, 5120 online, 1280 dealer.
/// - e · r: Beaver with broadcasting, opens 8 + 1 values: 2·64·9 = 1152 online, 64·8 =
///   512 dealer, 1 round.
/// - reveal [1,8] to the client: 64·8 = 512 online, 1 round.
#[test]
fn one_softmax_row() {
    let p = plan(SOFTMAX_ROW, Comparison::Fss);
    let rounds = 1 + 6 + 9 + (9 + 20) + 1 + 1;
    let unmerged = 1 + 6 + 10 + (10 + 20) + 1 + 1;
    let online = 256 + 944 + 10256 + 1296 + 5120 + 1152 + 512;
    let offline =
        512 + 7 * 8 * SIGN_SELECT + (16 * DCF + 4096 + 1024) + (2 * DCF + 640) + 1280 + 512;
    assert_eq!(
        totals(&p, DimEnv { seq: 1, past: 0 }),
        (rounds, unmerged, online, offline)
    );
}

/// [`one_softmax_row`] with GMW comparisons (GMW_BITS, GMW_DEALER per DReLU element;
/// a select node on XOR bits opens its bits eight to a byte and 64 bits per value, a row
/// maximum's level a byte per bit; the dealer sends 64 bits per bit and per output):
/// - fixed matmul: 1 round, 256 online, 512 dealer.
/// - row_max over t = 8: 3 levels of (DReLU 7 rounds, select 1 round): 24 rounds; 7 pairs:
///   online 7·(2·GMW_BITS + 2·(8 + 64)); dealer 7·(GMW_DEALER + 128).
/// - exp on 8 values: DReLU(d + 14) (7 rounds: 8·2·GMW_BITS online, 8·GMW_DEALER
///   dealer) beside 8 squarings (8 rounds, 8192 online, 4096 dealer), then the clip's
///   select (2·(8 + 512) = 1040 online, 64·16 = 1024 dealer): 9 rounds, 7 + 8 + 1 = 16
///   unmerged.
/// - reciprocal: exp on 1 element as above (2·GMW_BITS + 1024 + 144 online;
///   GMW_DEALER + 512 + 128 dealer; 9 rounds, 16 unmerged), then 10 Newton steps (20
///   rounds, 5120 online, 1280 dealer).
/// - e · r: 1152 online, 512 dealer; reveal 512 online.
#[test]
fn one_softmax_row_with_gmw_comparisons() {
    let p = plan(SOFTMAX_ROW, Comparison::Gmw);
    let rounds = 1 + 24 + 9 + (9 + 20) + 1 + 1;
    let unmerged = 1 + 24 + 16 + (16 + 20) + 1 + 1;
    let online = 256
        + 7 * (2 * GMW_BITS + 144)
        + (16 * GMW_BITS + 8192 + 1040)
        + (2 * GMW_BITS + 1024 + 144 + 5120)
        + 1152
        + 512;
    let offline = 512
        + 7 * (GMW_DEALER + 128)
        + (8 * GMW_DEALER + 4096 + 1024)
        + (GMW_DEALER + 512 + 128 + 1280)
        + 512;
    assert_eq!(
        totals(&p, DimEnv { seq: 1, past: 0 }),
        (rounds, unmerged, online, offline)
    );
}

const ONE_HEAD: &str = "model m { dim seq, past; input x: fixed[seq, 4] from client;
    weight wq: [4, 4]; weight wk: [4, 4]; weight wv: [4, 4]; weight wo: [4, 4];
    output y = attention(x, wq, wk, wv, wo, heads = 1) to client; }";

/// One head of width 4, a decode step (seq = 1) with 3 cached positions (t = 4 keys):
/// - q, k, v projections: 3 fixed matmuls [1,4]·[4,4] in the same round, one-sided (the
///   client sends 64·4): 3 × (256 online, 64·4 = 256 dealer).
/// - scores q·kᵀ with the cache (`cache_matmul`): [1,1,4]·[1,4,4]ᵀ opens q (4 values)
///   and the one new key row (4): 2·64·8 = 1024 online (the 3 cached rows were opened
///   when written), 64·4 = 256 dealer, 1 round. Re-opening the cache in a Beaver product
///   instead opens 4 + 16 values: 2560. Scale by 1/2 and the causal mask are local.
/// - softmax over t = 4 keys: row_max 2 levels of sign selects (4 rounds; 3 pairs, 2 + 1
///   per level: 2·(3·64 + 2·8) = 416 online, 3·8·SIGN_SELECT dealer); exp on 4 values
///   (512 + 8·512 + 2·(8 + 64·4) = 5136 online, the clip's select opening its 4 bits in
///   a byte; 4·2·DCF + 8·256 + 64·8 dealer; 9 rounds, 10 unmerged); the reciprocal of
///   one row sum (6416 online, 2·DCF + 1920 dealer, 29 rounds, 30 unmerged, as in
///   `one_softmax_row`); e·r opens 4 + 1: 640 online, 256 dealer, 1 round.
/// - mix p·v with the cache: [1,1,4]·[1,4,4] opens p (4) and the new value row (4):
///   2·64·8 = 1024 online (Beaver, re-opened: 2·64·(4 + 16) = 2560), 256 dealer.
/// - output projection, fixed: 256 online, 256 dealer. Reveal [1,4]: 256 online.
#[test]
fn one_attention_head_decode_step() {
    let rounds = 1 + 1 + 4 + 9 + 29 + 1 + 1 + 1 + 1;
    let unmerged = 3 + 1 + 4 + 10 + 30 + 1 + 1 + 1 + 1;
    let offline =
        3 * 256 + 256 + 3 * 8 * SIGN_SELECT + (8 * DCF + 2560) + (2 * DCF + 1920) + 3 * 256;
    for (cached, cache_products) in [(true, 1024 + 1024), (false, 2560 + 2560)] {
        let p = plan_with(ONE_HEAD, Comparison::Fss, cached);
        let online = 3 * 256 + 416 + 5136 + 6416 + 640 + 256 + 256 + cache_products;
        assert_eq!(
            totals(&p, DimEnv { seq: 1, past: 3 }),
            (rounds, unmerged, online, offline),
            "cache openings: {cached}"
        );
    }
}
