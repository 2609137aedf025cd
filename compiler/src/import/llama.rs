//! The LLaMA family: `model_type` `llama`, `mistral` and `qwen2` (transformers'
//! `LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM`).
//!
//! Pre-norm RMSNorm decoder: RoPE in HF's `rotate_half` form (`rope = half`) with base
//! `rope_theta`, grouped-query attention (`num_key_value_heads`), a SwiGLU FFN, a final
//! RMSNorm and a head tied to the embedding or `lm_head.weight`. Biases on q/k/v for
//! `qwen2`, on q/k/v/o for `llama` with `attention_bias`. Every projection is an
//! `nn.Linear` stored `[out, in]`, so declared `transposed`. The output is
//! `examples/llama2-7b.model` (untied) or `examples/smollm-135m.model` (tied) with the
//! config's numbers.

use super::{Config, ImportError, Tensors, number};
use std::fmt::Write;

/// The `.model` source of a LLaMA-family config.
pub(super) fn generate(
    c: &Config,
    model_type: &str,
    _tensors: &Tensors,
    name: &str,
) -> Result<String, ImportError> {
    let vocab = c.int("vocab_size")?;
    let d = c.int("hidden_size")?;
    let ff = c.int("intermediate_size")?;
    let layers = c.int("num_hidden_layers")?;
    let heads = c.int("num_attention_heads")?;
    let kv_heads = c.int_opt("num_key_value_heads")?.unwrap_or(heads);
    let hd = c.head_dim(d, heads, "num_attention_heads")?;
    if !heads.is_multiple_of(kv_heads) {
        return Err(c.unsupported(
            "num_key_value_heads",
            &format!("grouped-query attention needs it to divide num_attention_heads ({heads})"),
        ));
    }
    if let Some(h) = c.int_opt("head_dim")?
        && h != hd
    {
        return Err(c.unsupported(
            "head_dim",
            &format!("Comet's attention uses hidden_size / num_attention_heads = {hd}"),
        ));
    }
    if c.activation("hidden_act", "silu")? != "silu" {
        return Err(c.unsupported(
            "hidden_act",
            "the LLaMA family's gated FFN is imported with silu only",
        ));
    }
    c.absent(
        "rope_scaling",
        "RoPE scaling (linear, dynamic, YaRN, llama3) is not supported: only plain RoPE with \
         base rope_theta",
    )?;
    if c.number_or("partial_rotary_factor", 1.0)? != 1.0 {
        return Err(c.unsupported("partial_rotary_factor", "RoPE rotates whole heads"));
    }
    c.require_bool(
        "mlp_bias",
        false,
        false,
        "biases in the FFN are not supported",
    )?;
    match model_type {
        "mistral" => c.absent(
            "sliding_window",
            "sliding-window attention is not supported (Comet attends to the whole cache); \
             while prompt and generation together stay within the window it equals full \
             attention, so a copy of config.json with `\"sliding_window\": null` imports",
        )?,
        "qwen2" => c.require_bool(
            "use_sliding_window",
            false,
            false,
            "sliding-window attention is not supported (Comet attends to the whole cache)",
        )?,
        _ => {}
    }
    let eps = c.number_or("rms_norm_eps", 1e-6)?;
    let theta = c.number_or("rope_theta", 10000.0)?;
    let tied = c.bool_or("tie_word_embeddings", false)?;
    let (q_bias, o_bias) = match model_type {
        "qwen2" => (true, false),
        "llama" => {
            let b = c.bool_or("attention_bias", false)?;
            (b, b)
        }
        _ => (false, false),
    };

    let eps = number(eps);
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "// Imported by `comet import` from a Hugging Face `{model_type}` config:\n\
         //   hidden_size {d}, intermediate_size {ff}, num_hidden_layers {layers},\n\
         //   num_attention_heads {heads}, num_key_value_heads {kv_heads}, rms_norm_eps {eps},\n\
         //   rope_theta {}, vocab_size {vocab}, tie_word_embeddings {tied}.\n\
         //\n\
         // Pre-norm RMSNorm decoder, rotary positions in HF's rotate_half form (`rope = half`),\n\
         // {} causal attention with a KV cache, SwiGLU FFN, {}.\n\
         // Layout: PyTorch nn.Linear stores [out, in]; every projection is `transposed`.",
        number(theta),
        if kv_heads == heads {
            "multi-head".to_string()
        } else {
            format!(
                "grouped-query ({} query heads per KV head)",
                heads / kv_heads
            )
        },
        if tied {
            "lm head tied to the token embedding"
        } else {
            "untied lm head `lm_head.weight`"
        },
    );
    let _ = writeln!(w, "model {name} {{");
    let _ = writeln!(w, "  format ring = 64, frac = 16;\n");
    let _ = writeln!(
        w,
        "  dim vocab = {vocab}, d = {d}, ff = {ff}, n_layers = {layers};"
    );
    let _ = writeln!(
        w,
        "  dim heads = {heads}, kv_heads = {kv_heads}, hd = d / heads;   // hd = {hd}"
    );
    let _ = writeln!(w, "  dim seq, past;\n");
    let _ = writeln!(w, "  input tokens: token[seq] from client;\n");
    let _ = writeln!(
        w,
        "  weight tok_emb: [vocab, d] = \"model.embed_tokens.weight\";"
    );
    let _ = writeln!(w, "  weight norm_f: [d]         = \"model.norm.weight\";");
    if !tied {
        let _ = writeln!(
            w,
            "  weight lm_head: [d, vocab] = \"lm_head.weight\" transposed;"
        );
    }
    let p = "model.layers.{i}";
    let _ = writeln!(w, "\n  block layer[i](x) {{");
    let _ = writeln!(w, "    weight g1: [d] = \"{p}.input_layernorm.weight\";");
    for (v, shape, t) in [
        ("wq", "[d, heads * hd]   ", "q_proj"),
        ("wk", "[d, kv_heads * hd]", "k_proj"),
        ("wv", "[d, kv_heads * hd]", "v_proj"),
        ("wo", "[heads * hd, d]   ", "o_proj"),
    ] {
        let _ = writeln!(
            w,
            "    weight {v}: {shape} = \"{p}.self_attn.{t}.weight\" transposed;"
        );
    }
    if q_bias {
        for (v, shape, t) in [
            ("bq", "[heads * hd]", "q_proj"),
            ("bk", "[kv_heads * hd]", "k_proj"),
            ("bv", "[kv_heads * hd]", "v_proj"),
        ] {
            let _ = writeln!(w, "    weight {v}: {shape} = \"{p}.self_attn.{t}.bias\";");
        }
    }
    if o_bias {
        let _ = writeln!(w, "    weight bo: [d] = \"{p}.self_attn.o_proj.bias\";");
    }
    let _ = writeln!(
        w,
        "    weight g2: [d] = \"{p}.post_attention_layernorm.weight\";"
    );
    for (v, shape, t) in [
        ("w_gate", "[d, ff]", "gate_proj"),
        ("w_up", "[d, ff]  ", "up_proj"),
        ("w_down", "[ff, d]", "down_proj"),
    ] {
        let _ = writeln!(
            w,
            "    weight {v}: {shape} = \"{p}.mlp.{t}.weight\" transposed;"
        );
    }
    let mut biases = String::new();
    if q_bias {
        biases.push_str("bq = bq, bk = bk, bv = bv, ");
    }
    if o_bias {
        biases.push_str("bo = bo, ");
    }
    let _ = writeln!(w, "\n    let h = rms_norm(x, g1, eps = {eps});");
    let _ = writeln!(
        w,
        "    let a = attention(h, wq, wk, wv, wo, heads = heads, kv_heads = kv_heads, {biases}\n\
         \x20                     rope = half, rope_base = {}, causal = true, cache = true);",
        number(theta)
    );
    let _ = writeln!(w, "    let x1 = x + a;");
    let _ = writeln!(w, "    let h2 = rms_norm(x1, g2, eps = {eps});");
    let _ = writeln!(
        w,
        "    let f = linear(silu(linear(h2, w_gate)) * linear(h2, w_up), w_down);   // SwiGLU"
    );
    let _ = writeln!(w, "    return x1 + f;\n  }}\n");
    let _ = writeln!(
        w,
        "  let h = repeat layer[0..n_layers](embed(tokens, tok_emb));"
    );
    let head = if tied {
        "transpose(tok_emb)"
    } else {
        "lm_head"
    };
    let _ = writeln!(
        w,
        "  let logits = matmul(rms_norm(h, norm_f, eps = {eps}), {head});   // [seq, vocab]"
    );
    let _ = writeln!(w, "  output logits to client;\n}}");
    Ok(s)
}
