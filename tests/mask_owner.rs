//! Which fixed operands get a one-sided mask (`comet_ir::protocol::mask_owner`): the
//! server's weights and what is computed from them locally do; a block-permuted operand,
//! whose permutation neither party knows, never does.

use comet_ir::protocol::{fixed_values, mask_owner, protocol_of};
use comet_ir::{Op, Party, Program};

fn compile(args: &str) -> Program {
    compile_model("glassllm", args)
}

fn compile_model(model: &str, args: &str) -> Program {
    let source = std::fs::read_to_string(format!("examples/{model}.model")).unwrap();
    let mut opts = comet_compiler::Options::default();
    if let Some(block) = args.strip_prefix("sparse:") {
        opts.sparsity =
            comet_compiler::passes::sparsify::parse_spec(&format!("ffn:block={block}")).unwrap();
    }
    comet_compiler::compile(&source, "glassllm.model", &opts)
        .unwrap_or_else(|e| panic!("{e}"))
        .program
}

/// The fixed operands of products with one, and whether each is block-permuted.
fn fixed_operands(p: &Program) -> Vec<(comet_ir::NodeId, bool)> {
    let fixed = fixed_values(p);
    let mut out = Vec::new();
    for id in p.graph.ids() {
        if !protocol_of(p, id, &fixed).has_fixed_operand() {
            continue;
        }
        for x in p.graph.operands(id) {
            if fixed.contains(&x) {
                let permuted = matches!(p.graph.node(x).op, Op::BlockPermute { .. });
                out.push((x, permuted));
            }
        }
    }
    out
}

#[test]
fn the_servers_weights_have_the_server_as_owner() {
    for model in ["glassllm", "gpt2", "llama2-7b"] {
        let p = compile_model(model, "");
        let ops = fixed_operands(&p);
        assert!(ops.len() > 10, "{model}: {} fixed operands", ops.len());
        for (w, _) in ops {
            assert_eq!(mask_owner(&p, w), Some(Party::Server), "{model}: {w:?}");
        }
    }
}

#[test]
fn a_block_permuted_operand_has_no_owner() {
    let p = compile("sparse:16");
    let ops = fixed_operands(&p);
    let permuted: Vec<_> = ops.iter().filter(|(_, perm)| *perm).collect();
    assert!(
        !permuted.is_empty(),
        "the sparse plan permutes its FFN weights"
    );
    for (w, perm) in &ops {
        let want = if *perm { None } else { Some(Party::Server) };
        assert_eq!(mask_owner(&p, *w), want, "{w:?}");
    }
}
