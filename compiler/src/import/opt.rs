//! OPT: `model_type` `opt` (transformers' `OPTForCausalLM`).
//!
//! Pre-LN decoder (`do_layer_norm_before`) with learned positions offset by 2, biases on
//! every projection, a ReLU FFN of `ffn_dim`, LayerNorm eps 1e-5 (fixed in OPT's code) and
//! a head tied to the token embedding. `nn.Linear` weights are stored `[out, in]`, so
//! declared `transposed`. The output is `examples/opt-1.3b.model` with the config's
//! numbers. Hub files name tensors `decoder.…`; one re-saved from `OPTForCausalLM` uses
//! `model.decoder.…`: the names are taken from the checkpoint.

use super::{Config, ImportError, Tensors};
use std::fmt::Write;

/// The `.model` source of an OPT config.
pub(super) fn generate(c: &Config, tensors: &Tensors, name: &str) -> Result<String, ImportError> {
    let vocab = c.int("vocab_size")?;
    let d = c.int("hidden_size")?;
    let heads = c.int("num_attention_heads")?;
    let hd = c.head_dim(d, heads, "num_attention_heads")?;
    let ff = c.int("ffn_dim")?;
    let max_pos = c.int("max_position_embeddings")?;
    let layers = c.int("num_hidden_layers")?;
    let act = c.activation("activation_function", "relu")?;
    let tied = c.bool_or("tie_word_embeddings", true)?;
    c.require_bool(
        "do_layer_norm_before",
        true,
        true,
        "only pre-LN OPT (every size but 350m) is supported",
    )?;
    if let Some(p) = c.int_opt("word_embed_proj_dim")?
        && p != d
    {
        return Err(c.unsupported(
            "word_embed_proj_dim",
            &format!("the project_in / project_out layers (used when it differs from hidden_size {d}) are not supported"),
        ));
    }
    c.require_bool(
        "enable_bias",
        true,
        true,
        "OPT without biases is not supported",
    )?;
    c.require_bool(
        "layer_norm_elementwise_affine",
        true,
        true,
        "LayerNorm without scale and shift is not supported",
    )?;
    let prefix = if tensors.has("decoder.embed_tokens.weight") == Some(false)
        && tensors.has("model.decoder.embed_tokens.weight") == Some(true)
    {
        "model.decoder."
    } else {
        "decoder."
    };

    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "// Imported by `comet import` from a Hugging Face `opt` config:\n\
         //   hidden_size {d}, num_attention_heads {heads}, ffn_dim {ff}, num_hidden_layers {layers},\n\
         //   max_position_embeddings {max_pos}, vocab_size {vocab}, activation {act}.\n\
         //\n\
         // Pre-LN decoder, learned positions with OPT's offset of 2 (position p reads row p + 2),\n\
         // biases on every projection, {}.\n\
         // Layout: PyTorch nn.Linear stores [out, in]; every projection is `transposed`.",
        if tied {
            "lm head tied to the token embedding"
        } else {
            "untied lm head `lm_head.weight`"
        }
    );
    let _ = writeln!(w, "model {name} {{");
    let _ = writeln!(w, "  format ring = 64, frac = 16;\n");
    let _ = writeln!(
        w,
        "  dim vocab = {vocab}, d = {d}, heads = {heads}, hd = d / heads, ff = {ff};   // hd = {hd}"
    );
    let _ = writeln!(
        w,
        "  dim max_pos = {max_pos}, n_pos = max_pos + 2;   // OPT's position offset is 2"
    );
    let _ = writeln!(w, "  dim n_layers = {layers};");
    let _ = writeln!(w, "  dim seq, past;\n");
    let _ = writeln!(w, "  input tokens: token[seq] from client;\n");
    let _ = writeln!(
        w,
        "  weight embed_tokens: [vocab, d]    = \"{prefix}embed_tokens.weight\";"
    );
    let _ = writeln!(
        w,
        "  weight embed_positions: [n_pos, d] = \"{prefix}embed_positions.weight\";"
    );
    let _ = writeln!(
        w,
        "  weight lnf_g: [d] = \"{prefix}final_layer_norm.weight\";"
    );
    let _ = writeln!(
        w,
        "  weight lnf_b: [d] = \"{prefix}final_layer_norm.bias\";"
    );
    if !tied {
        let _ = writeln!(
            w,
            "  weight lm_head: [d, vocab] = \"lm_head.weight\" transposed;"
        );
    }
    let l = format!("{prefix}layers.{{i}}");
    let _ = writeln!(
        w,
        r#"
  block layer[i](x) {{
    weight ln1_g: [d] = "{l}.self_attn_layer_norm.weight";
    weight ln1_b: [d] = "{l}.self_attn_layer_norm.bias";
    weight wq: [d, d] = "{l}.self_attn.q_proj.weight" transposed;
    weight bq: [d]    = "{l}.self_attn.q_proj.bias";
    weight wk: [d, d] = "{l}.self_attn.k_proj.weight" transposed;
    weight bk: [d]    = "{l}.self_attn.k_proj.bias";
    weight wv: [d, d] = "{l}.self_attn.v_proj.weight" transposed;
    weight bv: [d]    = "{l}.self_attn.v_proj.bias";
    weight wo: [d, d] = "{l}.self_attn.out_proj.weight" transposed;
    weight bo: [d]    = "{l}.self_attn.out_proj.bias";
    weight ln2_g: [d] = "{l}.final_layer_norm.weight";
    weight ln2_b: [d] = "{l}.final_layer_norm.bias";
    weight w1: [d, ff] = "{l}.fc1.weight" transposed;
    weight b1: [ff]    = "{l}.fc1.bias";
    weight w2: [ff, d] = "{l}.fc2.weight" transposed;
    weight b2: [d]     = "{l}.fc2.bias";

    let h = layer_norm(x, ln1_g, ln1_b, eps = 1e-5);
    let a = attention(h, wq, wk, wv, wo, heads = heads,
                      bq = bq, bk = bk, bv = bv, bo = bo,
                      causal = true, cache = true);
    let x1 = x + a;
    let f = linear({act}(linear(layer_norm(x1, ln2_g, ln2_b, eps = 1e-5), w1, b1)), w2, b2);
    return x1 + f;
  }}

  // Position p (counting the cached tokens) reads row p + 2 of the position table.
  let x0 = embed(tokens, embed_tokens) + embed(positions(offset = 2), embed_positions);
  let h = repeat layer[0..n_layers](x0);"#
    );
    let head = if tied {
        "transpose(embed_tokens)"
    } else {
        "lm_head"
    };
    let _ = writeln!(
        w,
        "  let logits = matmul(layer_norm(h, lnf_g, lnf_b, eps = 1e-5), {head});"
    );
    let _ = writeln!(w, "  output logits to client;\n}}");
    Ok(s)
}
