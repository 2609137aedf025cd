"""Small Hugging Face-style checkpoint folders for the tests, written with numpy and the
standard library only: ``config.json``, ``model.safetensors`` (the real tensor names,
random f32 weights) and ``tokenizer.json`` (a BERT WordPiece tokenizer over a fixed
vocabulary)."""

import json
import struct
from pathlib import Path

import numpy as np

# [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, then words and continuations
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat",
         "dog", "log", "and", "a", "bird", "in", "hand", "sun", "fox", "##s", "##ed", "."]


def write_safetensors(path, tensors):
    """``tensors``: name → float32 array, in the safetensors layout (a little-endian u64
    header length, the JSON header, then the data)."""
    header, data, offset = {}, [], 0
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        data.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(data))


def wordpiece_tokenizer():
    """A BERT tokenizer.json: lower-casing normalizer, BERT pre-tokenizer, WordPiece with
    ``##`` continuations, ``[CLS] … [SEP]`` added, special tokens matched in the text."""
    vocab = {w: i for i, w in enumerate(WORDS)}
    added = [{"id": i, "content": w, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, w in enumerate(WORDS[:5])]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": True,
                       "handle_chinese_chars": True, "strip_accents": None,
                       "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]",
                  "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                  "vocab": vocab},
    }


def bert_masked_lm(folder, *, d=16, ff=24, layers=2, heads=4, positions=32, seed=0):
    """A ``BertForMaskedLM`` folder as recent transformers saves it (``LayerNorm.weight``
    and ``.bias``; the decoder weight stored beside the word embeddings it is tied to).
    Returns the folder, the config and the tensors."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = len(WORDS)
    config = {"architectures": ["BertForMaskedLM"], "model_type": "bert",
              "hidden_act": "gelu", "hidden_size": d, "intermediate_size": ff,
              "layer_norm_eps": 1e-12, "max_position_embeddings": positions,
              "num_attention_heads": heads, "num_hidden_layers": layers,
              "position_embedding_type": "absolute", "type_vocab_size": 2,
              "vocab_size": vocab, "pad_token_id": 0}
    rng = np.random.default_rng(seed)

    def small(*shape):
        return (0.4 * rng.uniform(-1, 1, shape)).astype(np.float32)

    def scale(n):
        return (1 + 0.1 * rng.uniform(-1, 1, n)).astype(np.float32)

    t = {
        "bert.embeddings.word_embeddings.weight": small(vocab, d),
        "bert.embeddings.position_embeddings.weight": small(positions, d),
        "bert.embeddings.token_type_embeddings.weight": small(2, d),
        "bert.embeddings.LayerNorm.weight": scale(d),
        "bert.embeddings.LayerNorm.bias": small(d),
    }
    for i in range(layers):
        p = f"bert.encoder.layer.{i}"
        for name in ("query", "key", "value"):
            t[f"{p}.attention.self.{name}.weight"] = small(d, d)
            t[f"{p}.attention.self.{name}.bias"] = small(d)
        t[f"{p}.attention.output.dense.weight"] = small(d, d)
        t[f"{p}.attention.output.dense.bias"] = small(d)
        t[f"{p}.attention.output.LayerNorm.weight"] = scale(d)
        t[f"{p}.attention.output.LayerNorm.bias"] = small(d)
        t[f"{p}.intermediate.dense.weight"] = small(ff, d)
        t[f"{p}.intermediate.dense.bias"] = small(ff)
        t[f"{p}.output.dense.weight"] = small(d, ff)
        t[f"{p}.output.dense.bias"] = small(d)
        t[f"{p}.output.LayerNorm.weight"] = scale(d)
        t[f"{p}.output.LayerNorm.bias"] = small(d)
    t["cls.predictions.transform.dense.weight"] = small(d, d)
    t["cls.predictions.transform.dense.bias"] = small(d)
    t["cls.predictions.transform.LayerNorm.weight"] = scale(d)
    t["cls.predictions.transform.LayerNorm.bias"] = small(d)
    t["cls.predictions.bias"] = small(vocab)
    t["cls.predictions.decoder.weight"] = t["bert.embeddings.word_embeddings.weight"]
    (folder / "config.json").write_text(json.dumps(config))
    write_safetensors(folder / "model.safetensors", t)
    (folder / "tokenizer.json").write_text(json.dumps(wordpiece_tokenizer()))
    return folder, config, t


def bert_reference_logits(config, t, ids):
    """``BertForMaskedLM``'s logits ``[positions, vocab]`` in float64 (token types 0),
    written from transformers' modules: post-LN layers, exact GeLU, tied decoder."""
    import math
    erf = np.vectorize(math.erf)
    eps, heads = config["layer_norm_eps"], config["num_attention_heads"]
    w = {k: v.astype(np.float64) for k, v in t.items()}

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[p + ".weight"] + w[p + ".bias"]

    def dense(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    def gelu(x):
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))

    n = len(ids)
    e = "bert.embeddings"
    x = (w[f"{e}.word_embeddings.weight"][ids] + w[f"{e}.position_embeddings.weight"][:n]
         + w[f"{e}.token_type_embeddings.weight"][0])
    x = ln(x, f"{e}.LayerNorm")
    d = x.shape[1]
    hd = d // heads
    for i in range(config["num_hidden_layers"]):
        p = f"bert.encoder.layer.{i}"
        q, k, v = (dense(x, f"{p}.attention.self.{m}").reshape(n, heads, hd).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        o = (s / s.sum(-1, keepdims=True)) @ v
        a = dense(o.transpose(1, 0, 2).reshape(n, d), f"{p}.attention.output.dense")
        x = ln(x + a, f"{p}.attention.output.LayerNorm")
        f = dense(gelu(dense(x, f"{p}.intermediate.dense")), f"{p}.output.dense")
        x = ln(x + f, f"{p}.output.LayerNorm")
    h = ln(gelu(dense(x, "cls.predictions.transform.dense")), "cls.predictions.transform.LayerNorm")
    return h @ w["bert.embeddings.word_embeddings.weight"].T + w["cls.predictions.bias"]


def _bytes_to_unicode():
    """GPT-2's map from bytes to printable characters (byte-level BPE)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# merges of a tiny byte-level BPE, in rank order ("Ġ" is the space)
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("a", "t"), ("Ġ", "c"), ("Ġc", "at"),
          ("Ġ", "s"), ("Ġs", "at"), ("o", "n"), ("Ġ", "on"), ("n", "ce"), ("c", "e"),
          ("u", "p"), ("Ġ", "up"), ("i", "me"), ("m", "e"), ("Ġt", "ime")]


def byte_level_bpe_tokenizer():
    """A GPT-2-style byte-level BPE tokenizer.json: the 256 byte symbols, ``MERGES``, and
    ``<|endoftext|>``."""
    symbols = list(_bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    merges = []
    for a, b in MERGES:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
        merges.append(f"{a} {b}")
    eot = len(vocab)
    vocab["<|endoftext|>"] = eot
    level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": True}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": True,
                          "special": True}],
        "normalizer": None, "pre_tokenizer": level,
        "post_processor": dict(level, trim_offsets=False), "decoder": level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                  "merges": merges},
    }


def gpt2(folder, *, d=16, layers=2, heads=4, positions=32, seed=0):
    """A GPT-2 folder as the Hub's ``model.safetensors`` names it (Conv1D layout
    ``[in, out]``, no ``transformer.`` prefix) with a byte-level BPE tokenizer.json.
    Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = byte_level_bpe_tokenizer()
    vocab = len(tokenizer["model"]["vocab"])
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
              "activation_function": "gelu_new", "n_embd": d, "n_head": heads,
              "n_layer": layers, "n_positions": positions, "n_ctx": positions,
              "n_inner": None, "layer_norm_epsilon": 1e-5, "vocab_size": vocab}
    rng = np.random.default_rng(seed)

    def small(*shape):
        return (0.4 * rng.uniform(-1, 1, shape)).astype(np.float32)

    def scale(n):
        return (1 + 0.1 * rng.uniform(-1, 1, n)).astype(np.float32)

    t = {"wte.weight": small(vocab, d), "wpe.weight": small(positions, d),
         "ln_f.weight": scale(d), "ln_f.bias": small(d)}
    for i in range(layers):
        h = f"h.{i}"
        t.update({
            f"{h}.ln_1.weight": scale(d), f"{h}.ln_1.bias": small(d),
            f"{h}.attn.c_attn.weight": small(d, 3 * d), f"{h}.attn.c_attn.bias": small(3 * d),
            f"{h}.attn.c_proj.weight": small(d, d), f"{h}.attn.c_proj.bias": small(d),
            f"{h}.ln_2.weight": scale(d), f"{h}.ln_2.bias": small(d),
            f"{h}.mlp.c_fc.weight": small(d, 4 * d), f"{h}.mlp.c_fc.bias": small(4 * d),
            f"{h}.mlp.c_proj.weight": small(4 * d, d), f"{h}.mlp.c_proj.bias": small(d),
        })
    (folder / "config.json").write_text(json.dumps(config))
    write_safetensors(folder / "model.safetensors", t)
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    return folder


if __name__ == "__main__":
    # python3 python/tests/hf_folders.py DIR: writes DIR/tiny-gpt2 and DIR/tiny-bert
    import sys
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    print(gpt2(out / "tiny-gpt2"))
    print(bert_masked_lm(out / "tiny-bert")[0])
