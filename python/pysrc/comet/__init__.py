"""Comet from Python: compile a ``.model`` file to a protocol plan, inspect its costs, and
run it for two parties on secret shares, in this process or as one party over TCP.

The functions call Comet's Rust library directly (the same code as the ``comet`` CLI);
every failure raises :class:`CometError` with the library's message.

>>> import comet
>>> plan = comet.compile("examples/glassllm.model")
>>> comet.inspect(plan, prompt=128, generate=16, net="wan")["generation"]["online_bytes"]
>>> out = comet.run(plan, weights="models/glassllm-en/model.safetensors",
...                 prompt="Once upon a time", generate=16)
>>> out["text"], out["tokens"], out["logits"][0].shape
"""

import json as _json
import os as _os

from ._native import CometError, Plan
from . import _native

__all__ = ["CometError", "Plan", "import_model", "compile", "load", "inspect", "run", "deal",
           "dealer", "keygen"]


def import_model(folder, out=None, *, name=None):
    """Write a ``.model`` file from a Hugging Face folder (``comet import``): its
    ``config.json``, with the tensor names and shapes checked against the checkpoint's
    headers when the folder holds one. Returns ``{"source", "model_type", "weights",
    "checked"}``; with ``out``, also writes the source there (never over a file)."""
    source, model_type, weights, checked = _native.import_folder(_os.fspath(folder),
                                                                 name=name)
    if out is not None:
        if _os.path.exists(out):
            raise CometError(f"`{_os.fspath(out)}` exists: import_model does not overwrite files")
        with open(out, "x", encoding="utf-8") as f:
            f.write(source)
    return {"source": source, "model_type": model_type, "weights": weights,
            "checked": checked}


def compile(model_path, *, approx="lut", comparison="fss", sparsity="off",
            kv_openings="cached", verify=False):
    """Compile a ``.model`` file to a :class:`Plan` (``comet compile``).

    ``approx``: a profile (``lut``, ``exact``, ``pcf``, ``puma``, ...) or ``kind=profile``
    pairs; ``comparison``: ``fss`` or ``gmw``; ``sparsity``: ``off`` or ``ffn[:...]``;
    ``kv_openings``: ``cached`` or ``reopened``.
    """
    return _native.compile(str(model_path), approx=approx, comparison=comparison,
                           sparsity=sparsity, kv_openings=kv_openings, verify=verify)


def load(path):
    """Read a plan file (``comet compile -o``, :meth:`Plan.save`)."""
    return Plan.load(str(path))


def _plan(plan):
    if isinstance(plan, (str, _os.PathLike)):
        return _os.fspath(plan)
    return plan


def inspect(plan, *, prompt=128, generate=1, net="lan", compute_rate=None,
            weight_bound=None, compare=None, leakage=False, svg=None):
    """The cost report of ``comet inspect --json`` as a dict (the same fields).

    ``plan`` and ``compare``: a :class:`Plan` or a plan file's path. With ``compare``, the
    dict has ``this``, ``other`` and ``ratios``; with ``leakage=True``, what the plan
    reveals. ``svg``: also write the bar charts of ``comet inspect --svg`` to this file.
    """
    kw = {}
    if compute_rate is not None:
        kw["compute_rate"] = compute_rate
    if weight_bound is not None:
        kw["weight_bound"] = weight_bound
    text = _native.inspect_json(
        _plan(plan), prompt=prompt, generate=generate, net=net,
        compare=None if compare is None else _plan(compare), leakage=leakage,
        svg=None if svg is None else str(svg), **kw)
    return _json.loads(text)


def run(plan, *, weights=None, tokenizer=None, prompt=None, generate=None, temperature=0.0,
        sample_seed=0, seed=None, predictor=None, party=None, listen=None, connect=None,
        material=None, dealer=None, dealer_key=None, key=None, prompt_len=None,
        timeout=60.0, call_timeout=600.0, insecure_plaintext=False, accept_leakage="none"):
    """Generate with a plan (``comet run ... --json``).

    Without ``party``, both parties run in this process (two threads, an in-memory
    channel, an in-process dealer). With ``party=0`` (the server: ``weights``) or
    ``party=1`` (the client: ``prompt``), this process is one party talking to the other
    over TCP (``listen="127.0.0.1:7070"`` or ``connect=...``), with ``material`` from
    :func:`deal` or from a dealer service (``dealer=ADDR, dealer_key=...``).

    ``prompt``: text (encoded with ``tokenizer``, or ``tokenizer.json`` beside the
    weights) or a list of token ids. ``generate``: tokens to generate (8 by default).

    Returns a dict with the fields of ``comet run --json`` (``tokens``, ``text``,
    ``mode``, ``seconds``, ``setup_bits``, ``calls``: per call ``measured`` and
    ``estimated`` online bits, rounds and dealer bits) and ``logits``: one numpy array
    ``[positions, vocab]`` per call, as this party received it (none for the server).

    A plan without a KV cache (an encoder: BERT imported with its masked-LM head) runs
    one call over the prompt: ``tokens`` is the prediction at every position, ``text``
    the prompt with each ``[MASK]`` filled, and ``masks`` lists those predictions
    (``position``, ``token``, ``text``); ``generate`` other than 1 is an error.
    """
    def path(p):
        return None if p is None else str(p)

    if isinstance(prompt, tuple):
        prompt = list(prompt)
    text, logits = _native.run_json(
        _plan(plan), weights=path(weights), tokenizer=path(tokenizer), prompt=prompt,
        generate=generate, temperature=temperature, sample_seed=sample_seed, seed=seed,
        predictor=path(predictor), party=party, listen=listen, connect=connect,
        material=path(material), dealer=dealer, dealer_key=path(dealer_key), key=path(key),
        prompt_len=prompt_len, timeout=timeout, call_timeout=call_timeout,
        insecure_plaintext=insecure_plaintext, accept_leakage=accept_leakage)
    out = _json.loads(text)
    out["logits"] = logits
    return out


def deal(plan, out, *, prompt_len, generate=None):
    """Deal one session's material ahead of time (``comet deal``): ``out/party0.mat`` and
    ``out/party1.mat``, for a prompt of ``prompt_len`` tokens and ``generate`` tokens (8
    by default; an encoder's plan has one call). Returns ``{"paths": [...],
    "bytes_per_call": [...]}``."""
    paths, per_call = _native.deal(_plan(plan), str(out), prompt_len=prompt_len,
                                   generate=generate)
    return {"paths": [str(p) for p in paths], "bytes_per_call": list(per_call)}


def dealer(plan, listen, *, key=None, party_keys=None, any_party=False, sessions=1,
           timeout=300.0, max_tokens=None, mask_cache=None, insecure_plaintext=False,
           quiet=True):
    """Run the dealer service (``comet dealer``) in this process until it has served
    ``sessions`` sessions; both parties connect with ``run(..., party=P, dealer=listen,
    dealer_key=...)``. Blocks (without holding the GIL: run it in a thread to drive the
    parties from the same process).

    ``key``: the dealer's key file (created if missing; its public key is what the
    parties pin, see :func:`keygen`). ``party_keys``: ``{0: KEY, 1: KEY}``, each a public
    key (64 hex digits) or a ``.pub`` file, the only parties served; or
    ``any_party=True``. ``insecure_plaintext=True`` (tests only) needs neither.

    Returns one dict per session: ``session`` (hex id), ``ok``, ``error``, ``seconds``
    and ``calls``: per call ``seq``, ``past``, ``streamed_bytes`` (to party 0 and 1),
    ``offline_bits`` dealt and ``estimated_offline_bits`` (the plan's estimate).
    """
    kw = {}
    if max_tokens is not None:
        kw["max_tokens"] = max_tokens
    if mask_cache is not None:
        kw["mask_cache"] = mask_cache
    pinned = [(int(p), _os.fspath(k)) for p, k in (party_keys or {}).items()]
    reports = _native.dealer(
        _plan(plan), str(listen), key=None if key is None else _os.fspath(key),
        party_keys=pinned, any_party=any_party, sessions=sessions, timeout=timeout,
        insecure_plaintext=insecure_plaintext, quiet=quiet, **kw)
    return [_json.loads(r) for r in reports]


def keygen(out):
    """Create a static key pair (``comet keygen --out FILE``): ``out`` (mode 0600, never
    over an existing file) and ``out`` with its extension replaced by ``.pub``. Returns the public key
    (64 hex digits): a dealer's (``dealer_key=``) or a party's (``party_keys=``,
    ``key=``)."""
    return _native.keygen(_os.fspath(out))
