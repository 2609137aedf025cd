//! GPT-2: `model_type` `gpt2` (transformers' `GPT2LMHeadModel`).
//!
//! Pre-LN decoder with learned positions (`wpe`), a fused `c_attn` (Q | K | V columns),
//! `Conv1D` weights stored `[in, out]` (nothing `transposed`), a GeLU MLP of `n_inner`
//! (default 4 · `n_embd`) and a head tied to `wte` (or `lm_head.weight`). The output is
//! `examples/gpt2.model` with the config's numbers. Hub checkpoints name tensors without
//! a prefix (`wte.weight`); one saved from `GPT2LMHeadModel` adds `transformer.`: the
//! names are taken from the checkpoint.

use super::{Config, ImportError, Tensors, number};
use std::fmt::Write;

/// The `.model` source of a GPT-2 config.
pub(super) fn generate(c: &Config, tensors: &Tensors, name: &str) -> Result<String, ImportError> {
    let vocab = c.int("vocab_size")?;
    let n_ctx = match c.int_opt("n_positions")? {
        Some(n) => n,
        None => c.int("n_ctx")?,
    };
    let d = c.int("n_embd")?;
    let heads = c.int("n_head")?;
    let hd = c.head_dim(d, heads, "n_head")?;
    let layers = c.int("n_layer")?;
    let inner = c.int_opt("n_inner")?;
    let eps = number(c.number_or("layer_norm_epsilon", 1e-5)?);
    let act = c.activation("activation_function", "gelu_new")?;
    let tied = c.bool_or("tie_word_embeddings", true)?;
    c.require_bool(
        "scale_attn_weights",
        true,
        true,
        "attention scores are always scaled by 1/sqrt(head dim)",
    )?;
    c.require_bool(
        "scale_attn_by_inverse_layer_idx",
        false,
        false,
        "per-layer score scaling is not supported",
    )?;
    c.require_bool(
        "add_cross_attention",
        false,
        false,
        "cross-attention is not supported",
    )?;
    let prefix = if tensors.has("wte.weight") == Some(false)
        && tensors.has("transformer.wte.weight") == Some(true)
    {
        "transformer."
    } else {
        ""
    };

    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "// Imported by `comet import` from a Hugging Face `gpt2` config:\n\
         //   n_embd {d}, n_head {heads}, n_layer {layers}, n_inner {}, n_positions {n_ctx},\n\
         //   vocab_size {vocab}, layer_norm_epsilon {eps}, activation {act}.\n\
         //\n\
         // Pre-LN decoder, learned positions, fused c_attn (columns q | k | v), {}.\n\
         // Layout: GPT-2's Conv1D stores [in, out], Comet's own convention: nothing is\n\
         // `transposed`.",
        inner.map_or("null (4 · n_embd)".to_string(), |n| n.to_string()),
        if tied {
            "lm head tied to `wte`"
        } else {
            "untied lm head `lm_head.weight`"
        }
    );
    let _ = writeln!(w, "model {name} {{");
    let _ = writeln!(w, "  format ring = 64, frac = 16;\n");
    let _ = writeln!(w, "  dim vocab = {vocab}, n_ctx = {n_ctx};");
    let _ = writeln!(
        w,
        "  dim d = {d}, heads = {heads}, hd = d / heads;  // hd = {hd}"
    );
    match inner {
        None => {
            let _ = writeln!(w, "  dim ff = 4 * d;");
        }
        Some(n) => {
            let _ = writeln!(w, "  dim ff = {n};");
        }
    }
    let _ = writeln!(w, "  dim n_layers = {layers};");
    let _ = writeln!(w, "  dim seq, past;\n");
    let _ = writeln!(w, "  input tokens: token[seq] from client;\n");
    let _ = writeln!(w, "  weight wte: [vocab, d] = \"{prefix}wte.weight\";");
    let _ = writeln!(w, "  weight wpe: [n_ctx, d] = \"{prefix}wpe.weight\";");
    let _ = writeln!(w, "  weight lnf_g: [d] = \"{prefix}ln_f.weight\";");
    let _ = writeln!(w, "  weight lnf_b: [d] = \"{prefix}ln_f.bias\";");
    if !tied {
        let _ = writeln!(
            w,
            "  weight lm_head: [d, vocab] = \"lm_head.weight\" transposed;"
        );
    }
    let h = format!("{prefix}h.{{i}}");
    let _ = writeln!(
        w,
        r#"
  block attn[i](x) {{
    weight w_qkv: [d, 3 * d] = "{h}.attn.c_attn.weight";
    weight b_qkv: [3 * d]    = "{h}.attn.c_attn.bias";
    weight w_o: [d, d]       = "{h}.attn.c_proj.weight";
    weight b_o: [d]          = "{h}.attn.c_proj.bias";

    let qkv = linear(x, w_qkv, b_qkv);                             // [seq, 3d]
    let q = split_heads(slice(qkv, 0, d), heads);                  // [heads, seq, hd]
    let k = kv_cache(split_heads(slice(qkv, d, 2 * d), heads));    // [heads, past + seq, hd]
    let v = kv_cache(split_heads(slice(qkv, 2 * d, 3 * d), heads));
    let s = matmul(q, transpose(k)) / sqrt(hd);                    // [heads, seq, past + seq]
    let p = softmax(causal_mask(s));
    let o = merge_heads(matmul(p, v));                             // [seq, d]
    return linear(o, w_o, b_o);
  }}

  block mlp[i](x) {{
    weight w_fc: [d, ff]   = "{h}.mlp.c_fc.weight";
    weight b_fc: [ff]      = "{h}.mlp.c_fc.bias";
    weight w_proj: [ff, d] = "{h}.mlp.c_proj.weight";
    weight b_proj: [d]     = "{h}.mlp.c_proj.bias";
    return linear({act}(linear(x, w_fc, b_fc)), w_proj, b_proj);
  }}

  block layer[i](x) {{
    weight ln1_g: [d] = "{h}.ln_1.weight";
    weight ln1_b: [d] = "{h}.ln_1.bias";
    weight ln2_g: [d] = "{h}.ln_2.weight";
    weight ln2_b: [d] = "{h}.ln_2.bias";
    let x1 = x + attn[i](layer_norm(x, ln1_g, ln1_b, eps = {eps}));
    return x1 + mlp[i](layer_norm(x1, ln2_g, ln2_b, eps = {eps}));
  }}

  let x0 = embed(tokens, wte) + embed(positions(), wpe);      // [seq, d]
  let h = repeat layer[0..n_layers](x0);"#
    );
    let head = if tied { "transpose(wte)" } else { "lm_head" };
    let _ = writeln!(
        w,
        "  let logits = matmul(layer_norm(h, lnf_g, lnf_b, eps = {eps}), {head});   // [seq, vocab]"
    );
    let _ = writeln!(w, "  output logits to client;\n}}");
    Ok(s)
}
