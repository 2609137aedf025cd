//! BERT: `model_type` `bert`, as an encoder with its masked-LM head (transformers'
//! `BertForMaskedLM`) or with its pooler (`BertModel`).
//!
//! Word + position + token-type embeddings, then LayerNorm; post-LN layers with
//! bidirectional attention and no KV cache; GeLU FFN. The head is chosen by the
//! checkpoint: when it holds `cls.predictions.bias` (a `BertForMaskedLM` or
//! `BertForPreTraining` file), the masked-LM head is the output, `logits` `[seq, vocab]`:
//! `cls.predictions.transform` (dense, the config's activation, LayerNorm), then the
//! decoder, tied to the word embeddings (or `cls.predictions.decoder.weight` when
//! `tie_word_embeddings` is false), plus `cls.predictions.bias`; `comet run` then runs it
//! as one call and reads a prediction per position. Otherwise (a `BertModel` file, or a
//! folder without weights) the pooler is the output (the first token's hidden state
//! through dense + tanh, `pooled`): that is `examples/bert-base.model` with the config's
//! numbers. Inputs: `tokens` and `segments` (token type ids). `nn.Linear` weights are
//! stored `[out, in]`, so declared `transposed`. Names are taken from the checkpoint:
//! with or without the `bert.` prefix (`BertForPreTraining`/`BertForMaskedLM` or
//! `BertModel`), and LayerNorm parameters as `gamma`/`beta` (the Hub's original files) or
//! `weight`/`bias` (files re-saved by recent transformers).

use super::{Config, ImportError, Tensors, number};
use std::fmt::Write;

/// The `.model` source of a BERT config.
pub(super) fn generate(c: &Config, tensors: &Tensors, name: &str) -> Result<String, ImportError> {
    let vocab = c.int("vocab_size")?;
    let n_pos = c.int("max_position_embeddings")?;
    let n_types = c.int("type_vocab_size")?;
    let d = c.int("hidden_size")?;
    let heads = c.int("num_attention_heads")?;
    let hd = c.head_dim(d, heads, "num_attention_heads")?;
    let ff = c.int("intermediate_size")?;
    let layers = c.int("num_hidden_layers")?;
    let eps = number(c.number_or("layer_norm_eps", 1e-12)?);
    let act = c.activation("hidden_act", "gelu")?;
    if c.str_or("position_embedding_type", "absolute")? != "absolute" {
        return Err(c.unsupported(
            "position_embedding_type",
            "only absolute (learned) positions are supported",
        ));
    }
    c.require_bool(
        "is_decoder",
        false,
        false,
        "BERT as a decoder is not supported",
    )?;
    c.require_bool(
        "add_cross_attention",
        false,
        false,
        "cross-attention is not supported",
    )?;
    let prefix = if tensors.has("bert.embeddings.word_embeddings.weight") == Some(false)
        && tensors.has("embeddings.word_embeddings.weight") == Some(true)
    {
        ""
    } else {
        "bert."
    };
    let mlm = tensors.has("cls.predictions.bias") == Some(true);
    let tied = c.bool_or("tie_word_embeddings", true)?;
    let (g, b) = if tensors.has(&format!("{prefix}embeddings.LayerNorm.gamma")) == Some(false)
        && tensors.has(&format!("{prefix}embeddings.LayerNorm.weight")) == Some(true)
    {
        ("weight", "bias")
    } else {
        ("gamma", "beta")
    };

    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "// Imported by `comet import` from a Hugging Face `bert` config:\n\
         //   hidden_size {d}, num_attention_heads {heads}, intermediate_size {ff},\n\
         //   num_hidden_layers {layers}, max_position_embeddings {n_pos}, type_vocab_size {n_types},\n\
         //   vocab_size {vocab}, layer_norm_eps {eps}, hidden_act {act}.\n\
         //\n\
         // {}\n\
         // Layout: PyTorch nn.Linear stores [out, in]; every dense layer is `transposed`.",
        match (mlm, tied) {
            (true, true) =>
                "Encoder with its masked-LM head: post-LN layers, bidirectional attention, no KV\n\
         // cache; the output is the logits of every position (dense, activation, LayerNorm,\n\
         // then the decoder tied to the word embeddings, plus `cls.predictions.bias`).\n\
         // One unpadded sequence, one call: `comet run` predicts a token per position.",
            (true, false) =>
                "Encoder with its masked-LM head: post-LN layers, bidirectional attention, no KV\n\
         // cache; the output is the logits of every position (dense, activation, LayerNorm,\n\
         // then the untied decoder `cls.predictions.decoder.weight`, plus its bias).\n\
         // One unpadded sequence, one call: `comet run` predicts a token per position.",
            (false, _) =>
                "Encoder with its pooler: post-LN layers, bidirectional attention, no KV cache;\n\
         // the output is tanh(dense(first token's hidden state)). One unpadded sequence.",
        }
    );
    let _ = writeln!(w, "model {name} {{");
    let _ = writeln!(w, "  format ring = 64, frac = 16;\n");
    let _ = writeln!(
        w,
        "  dim vocab = {vocab}, n_pos = {n_pos}, n_types = {n_types};"
    );
    let _ = writeln!(
        w,
        "  dim d = {d}, heads = {heads}, hd = d / heads, ff = {ff};   // hd = {hd}"
    );
    let _ = writeln!(w, "  dim n_layers = {layers};");
    let _ = writeln!(w, "  dim seq, past;\n");
    let _ = writeln!(
        w,
        "  input tokens: token[seq] from client;     // token ids, starting with [CLS]"
    );
    let _ = writeln!(
        w,
        "  input segments: token[seq] from client;   // token type ids: 0 for sentence A, 1 for B\n"
    );
    let e = format!("{prefix}embeddings");
    let _ = writeln!(
        w,
        r#"  weight word_emb: [vocab, d]   = "{e}.word_embeddings.weight";
  weight pos_emb: [n_pos, d]    = "{e}.position_embeddings.weight";
  weight type_emb: [n_types, d] = "{e}.token_type_embeddings.weight";
  weight emb_ln_g: [d] = "{e}.LayerNorm.{g}";
  weight emb_ln_b: [d] = "{e}.LayerNorm.{b}";"#
    );
    if mlm {
        let t = "cls.predictions.transform";
        let _ = writeln!(
            w,
            r#"  weight mlm_w: [d, d] = "{t}.dense.weight" transposed;
  weight mlm_b: [d]    = "{t}.dense.bias";
  weight mlm_ln_g: [d] = "{t}.LayerNorm.{g}";
  weight mlm_ln_b: [d] = "{t}.LayerNorm.{b}";
  weight mlm_bias: [vocab] = "cls.predictions.bias";"#
        );
        if !tied {
            let _ = writeln!(
                w,
                r#"  weight mlm_dec: [d, vocab] = "cls.predictions.decoder.weight" transposed;"#
            );
        }
    } else {
        let _ = writeln!(
            w,
            r#"  weight pool_w: [d, d] = "{prefix}pooler.dense.weight" transposed;
  weight pool_b: [d]    = "{prefix}pooler.dense.bias";"#
        );
    }
    let l = format!("{prefix}encoder.layer.{{i}}");
    let _ = writeln!(
        w,
        r#"
  block layer[i](x) {{
    weight wq: [d, d] = "{l}.attention.self.query.weight" transposed;
    weight bq: [d]    = "{l}.attention.self.query.bias";
    weight wk: [d, d] = "{l}.attention.self.key.weight" transposed;
    weight bk: [d]    = "{l}.attention.self.key.bias";
    weight wv: [d, d] = "{l}.attention.self.value.weight" transposed;
    weight bv: [d]    = "{l}.attention.self.value.bias";
    weight wo: [d, d] = "{l}.attention.output.dense.weight" transposed;
    weight bo: [d]    = "{l}.attention.output.dense.bias";
    weight ln1_g: [d] = "{l}.attention.output.LayerNorm.{g}";
    weight ln1_b: [d] = "{l}.attention.output.LayerNorm.{b}";
    weight w1: [d, ff] = "{l}.intermediate.dense.weight" transposed;
    weight b1: [ff]    = "{l}.intermediate.dense.bias";
    weight w2: [ff, d] = "{l}.output.dense.weight" transposed;
    weight b2: [d]     = "{l}.output.dense.bias";
    weight ln2_g: [d] = "{l}.output.LayerNorm.{g}";
    weight ln2_b: [d] = "{l}.output.LayerNorm.{b}";

    let a = attention(x, wq, wk, wv, wo, heads = heads,
                      bq = bq, bk = bk, bv = bv, bo = bo,
                      causal = false, cache = false);
    let x1 = layer_norm(x + a, ln1_g, ln1_b, eps = {eps});          // post-LN
    let f = linear({act}(linear(x1, w1, b1)), w2, b2);
    return layer_norm(x1 + f, ln2_g, ln2_b, eps = {eps});
  }}

  let e = embed(tokens, word_emb) + embed(positions(), pos_emb) + embed(segments, type_emb);
  let h = repeat layer[0..n_layers](layer_norm(e, emb_ln_g, emb_ln_b, eps = {eps}));"#
    );
    if mlm {
        let decoder = if tied {
            "transpose(word_emb)"
        } else {
            "mlm_dec"
        };
        let _ = writeln!(
            w,
            r#"  let t = layer_norm({act}(linear(h, mlm_w, mlm_b)), mlm_ln_g, mlm_ln_b, eps = {eps});
  let logits = matmul(t, {decoder}) + mlm_bias;                  // [seq, vocab]
  output logits to client;
}}"#
        );
    } else {
        let _ = writeln!(
            w,
            r#"  let cls = row(h, 0);                                             // [1, d]: the first position
  output pooled = tanh(linear(cls, pool_w, pool_b)) to client;     // [1, d]
}}"#
        );
    }
    Ok(s)
}
