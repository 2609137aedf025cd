"""The Python package on the shipped model: compile, inspect, run in one process and as two
parties over TCP, against the model's own reference (models/glassllm-en) and the CLI."""

import json
import os
import socket
import subprocess
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import comet
from hf_folders import bert_masked_lm, bert_reference_logits, WORDS

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "glassllm.model"
WEIGHTS = ROOT / "models" / "glassllm-en" / "model.safetensors"
TOKENIZER = ROOT / "models" / "glassllm-en" / "tokenizer.json"
REFERENCE = json.loads((ROOT / "models" / "glassllm-en" / "reference-greedy.json").read_text())
CASE = next(c for c in REFERENCE["cases"] if c["prompt"] == "Once upon a time")


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    """The list of used material files goes to a temporary folder, never the user's."""
    monkeypatch.setenv("COMET_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture(scope="module")
def plan():
    return comet.compile(MODEL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_measured_equals_estimate(out, dealer_key="offline_bits"):
    assert out["calls"], out
    for c in out["calls"]:
        m, e = c["measured"], c["estimated"]
        assert (m["online_bits"], m["rounds"]) == (e["online_bits"], e["rounds"]), c
        if dealer_key == "offline_bits":
            assert m["offline_bits"] == e["offline_bits"], c


def test_compile_and_plan_file_round_trip(plan, tmp_path):
    assert isinstance(plan, comet.Plan)
    assert plan.model == "glassllm"
    assert "glassllm" in repr(plan)
    path = tmp_path / "g.plan"
    plan.save(path)
    back = comet.load(path)
    assert back.text() == plan.text()
    assert back.text("ir") == plan.text("ir")
    assert back.name == str(path)
    assert json.loads(back.to_json()) == json.loads(path.read_text())
    gmw = comet.compile(MODEL, comparison="gmw", approx="exact")
    assert "Gmw" in repr(gmw) and gmw.text() != plan.text()


def test_inspect_has_the_figures_of_the_cli(plan, tmp_path):
    r = comet.inspect(plan, prompt=32, generate=4, net="wan")
    assert r["model"] == "glassllm"
    assert r["settings"]["prompt"] == 32 and r["settings"]["net"]["name"] == "wan"
    assert r["generation"]["calls"] == 4 and r["decode_steps"]["calls"] == 3
    assert (r["last_decode"]["seq"], r["last_decode"]["past"]) == (1, 34)
    pre = r["prefill"]
    assert sum(row["online_bits"] for row in pre["by_layer"]) == pre["totals"]["online_bits"]
    assert pre["totals"]["online_bytes"] == pre["totals"]["online_bits"] / 8
    # the same report as `comet inspect --json` of the same plan file
    path = tmp_path / "g.plan"
    plan.save(path)
    binary = os.environ.get("COMET_BIN")
    if binary is None:
        pytest.skip("COMET_BIN (the comet binary) not set: .ci/run sets it")
    cli = subprocess.run(
        [binary, "inspect", str(path), "--prompt", "32", "--generate", "4", "--net", "wan",
         "--json"], capture_output=True, text=True, check=True)
    assert comet.inspect(path, prompt=32, generate=4, net="wan") == json.loads(cli.stdout)


def test_inspect_compare_leakage_and_svg(plan, tmp_path):
    exact = comet.compile(MODEL, approx="exact")
    c = comet.inspect(plan, compare=exact, prompt=16)
    assert set(c) == {"this", "other", "ratios"}
    assert c["other"]["approx"] == "exact"
    ratio = c["this"]["prefill"]["totals"]["online_bits"] / c["other"]["prefill"]["totals"]["online_bits"]
    assert c["ratios"]["prefill"]["online_bits"] == pytest.approx(ratio)
    leak = comet.inspect(plan, leakage=True)
    assert leak["plan"] == plan.name
    svg = tmp_path / "cmp.svg"
    comet.inspect(plan, compare=exact, prompt=16, svg=svg)
    texts = [t.text.strip() for t in ET.parse(svg).iter("{http://www.w3.org/2000/svg}text")]
    assert "prefill (seq 16, past 0): online bytes per layer" in texts
    assert "prefill (seq 16, past 0): dealer bytes per op kind" in texts


def test_run_in_process_matches_the_reference(plan):
    n = len(CASE["greedy_ids"])
    out = comet.run(plan, weights=WEIGHTS, tokenizer=TOKENIZER, prompt=CASE["prompt"],
                    generate=n)
    assert out["tokens"] == CASE["greedy_ids"]
    assert out["text"] == CASE["greedy_text"]
    assert out["mode"] == "two parties in one process"
    assert_measured_equals_estimate(out)
    logits = out["logits"]
    assert len(logits) == n
    assert isinstance(logits[0], np.ndarray) and logits[0].dtype == np.float64
    assert logits[0].shape == (len(CASE["prompt_ids"]), 1024)
    assert all(l.shape == (1, 1024) for l in logits[1:])
    # the tokens are the logits' argmax; the prefill's last row is the reference's
    assert [int(l[-1].argmax()) for l in logits] == out["tokens"]
    ref = np.array(CASE["last_logits"])
    assert np.max(np.abs(logits[0][-1] - ref)) < 0.05
    # token ids as the prompt, weights as the folder (tokenizer.json beside them)
    ids = comet.run(plan, weights=WEIGHTS.parent, prompt=CASE["prompt_ids"], generate=3)
    assert ids["tokens"] == CASE["greedy_ids"][:3]
    assert ids["text"] == comet.run(plan, weights=WEIGHTS, prompt=CASE["prompt"],
                                    generate=3)["text"]


def test_two_parties_over_tcp(plan, tmp_path):
    n = 4
    dealt = comet.deal(plan, tmp_path / "mat", prompt_len=len(CASE["prompt_ids"]), generate=n)
    assert [Path(p).name for p in dealt["paths"]] == ["party0.mat", "party1.mat"]
    assert len(dealt["bytes_per_call"]) == n
    addr = f"127.0.0.1:{free_port()}"
    server = {}

    def serve():
        try:
            server["out"] = comet.run(plan, party=0, listen=addr, weights=WEIGHTS,
                                      material=dealt["paths"][0], timeout=120)
        except Exception as e:  # reported by the main thread
            server["error"] = e

    t = threading.Thread(target=serve)
    t.start()
    client = comet.run(plan, party=1, connect=addr, material=dealt["paths"][1],
                       tokenizer=TOKENIZER, prompt=CASE["prompt"], timeout=120)
    t.join(300)
    assert not t.is_alive(), "the server ended"
    assert "error" not in server, server.get("error")
    assert client["tokens"] == CASE["greedy_ids"][:n]
    assert client["text"] == CASE["greedy_text"][:len(client["text"])]
    assert len(client["logits"]) == n
    assert server["out"]["tokens"] == [] and server["out"]["logits"] == []
    assert server["out"]["mode"] == "party 0 over TCP"
    for side in (client, server["out"]):
        assert_measured_equals_estimate(side, dealer_key="material_bits_read")
    # a material file is used once
    with pytest.raises(comet.CometError, match="used"):
        comet.run(plan, party=1, connect=addr, material=dealt["paths"][1],
                  prompt=CASE["prompt_ids"], timeout=5)


def test_three_roles_with_the_dealer_service(plan, tmp_path):
    """The dealer service, the server and the client as three threads of this process,
    every channel authenticated by keys from comet.keygen; the dealer streams each call's
    material as the parties reach it."""
    dealer_pub = comet.keygen(tmp_path / "dealer.key")
    server_pub = comet.keygen(tmp_path / "server.key")
    client_pub = comet.keygen(tmp_path / "client.key")
    assert len(dealer_pub) == 64 and (tmp_path / "dealer.pub").read_text().strip() == dealer_pub
    assert len({dealer_pub, server_pub, client_pub}) == 3
    with pytest.raises(comet.CometError, match="exists"):
        comet.keygen(tmp_path / "dealer.key")
    n = 3
    dealer_addr, party_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    results = {}

    def role(name, f):
        try:
            results[name] = f()
        except Exception as e:  # reported by the main thread
            results[name] = e

    threads = [
        threading.Thread(target=role, args=("dealer", lambda: comet.dealer(
            plan, dealer_addr, key=tmp_path / "dealer.key",
            party_keys={0: tmp_path / "server.pub", 1: client_pub}, timeout=120))),
        threading.Thread(target=role, args=("server", lambda: comet.run(
            plan, party=0, listen=party_addr, weights=WEIGHTS, dealer=dealer_addr,
            dealer_key=dealer_pub, key=tmp_path / "server.key",
            prompt_len=len(CASE["prompt_ids"]), generate=n, timeout=120))),
    ]
    for t in threads:
        t.start()
    client = comet.run(plan, party=1, connect=party_addr, dealer=dealer_addr,
                       dealer_key=tmp_path / "dealer.pub", key=tmp_path / "client.key",
                       tokenizer=TOKENIZER, prompt=CASE["prompt"], generate=n, timeout=120)
    for t in threads:
        t.join(300)
        assert not t.is_alive()
    for name in ("dealer", "server"):
        assert not isinstance(results[name], Exception), (name, results[name])
    assert client["tokens"] == CASE["greedy_ids"][:n]
    assert client["mode"] == f"party 1 over TCP, material from the dealer at {dealer_addr}"
    server = results["server"]
    assert server["tokens"] == []
    for side in (client, server):
        assert_measured_equals_estimate(side, dealer_key="material_bits_read")
    [session] = results["dealer"]
    assert session["ok"] and session["error"] is None, session
    assert [(c["seq"], c["past"]) for c in session["calls"]] == \
        [(c["seq"], c["past"]) for c in client["calls"]]
    for c, mine, theirs in zip(session["calls"], client["calls"], server["calls"]):
        # the dealer dealt the plan's estimate, and each party read its half of it
        assert c["offline_bits"] == c["estimated_offline_bits"] == mine["estimated"]["offline_bits"]
        assert (mine["measured"]["material_bits_read"] + theirs["measured"]["material_bits_read"]
                == c["offline_bits"])


def test_dealer_arguments_are_checked(plan, tmp_path):
    with pytest.raises(comet.CometError, match="key: the dealer's key file"):
        comet.dealer(plan, "127.0.0.1:0")
    with pytest.raises(comet.CometError, match="insecure_plaintext: key and party_keys"):
        comet.dealer(plan, "127.0.0.1:0", key=tmp_path / "d.key", insecure_plaintext=True)
    with pytest.raises(comet.CometError, match="party_keys"):
        comet.dealer(plan, "127.0.0.1:0", key=tmp_path / "d.key", party_keys={0: "zz"})
    with pytest.raises(comet.CometError, match="none is pinned for party 1"):
        comet.dealer(plan, "127.0.0.1:0", key=tmp_path / "d.key",
                     party_keys={0: comet.keygen(tmp_path / "p.key")})
    with pytest.raises(comet.CometError, match="sessions must be at least 1"):
        comet.dealer(plan, "127.0.0.1:0", insecure_plaintext=True, sessions=0)


def test_a_bert_masked_lm_folder_end_to_end(tmp_path):
    """A BertForMaskedLM folder (written here: real tensor names, random weights, a
    WordPiece tokenizer.json) imported, compiled and run on text with a [MASK]: one call,
    a prediction per position (numpy's float64 reference where its lead is clear), the
    mask filled, measured = estimated; in one process and as two parties over TCP."""
    folder, config, tensors = bert_masked_lm(tmp_path / "tiny-bert", seed=3)
    imported = comet.import_model(folder, tmp_path / "bert.model")
    assert imported["model_type"] == "bert" and imported["checked"]
    assert "output logits to client" in imported["source"]
    with pytest.raises(comet.CometError, match="exists"):
        comet.import_model(folder, tmp_path / "bert.model")
    plan = comet.compile(tmp_path / "bert.model")
    text = "the cat [MASK] on the mat"
    out = comet.run(plan, weights=folder, prompt=text)
    ids = [2, 5, 6, 4, 8, 5, 9, 3]       # [CLS] the cat [MASK] on the mat [SEP]
    assert len(out["tokens"]) == len(ids)
    [logits] = out["logits"]
    assert logits.shape == (len(ids), len(WORDS))
    assert [int(r.argmax()) for r in logits] == out["tokens"]
    assert_measured_equals_estimate(out)
    assert len(out["calls"]) == 1 and (out["calls"][0]["seq"], out["calls"][0]["past"]) == (8, 0)
    [mask] = out["masks"]
    assert mask["position"] == 3 and mask["token"] == out["tokens"][3]
    # decoding skips the special tokens; a lone token decodes to itself
    assert mask["text"] == ("" if mask["token"] < 5 else WORDS[mask["token"]])
    ref = bert_reference_logits(config, tensors, ids)
    assert np.max(np.abs(logits - ref)) < 0.1, np.max(np.abs(logits - ref))
    clear = 0
    for i, row in enumerate(ref):
        top = np.sort(row)[-2:]
        if top[1] - top[0] > 0.05:
            assert out["tokens"][i] == int(row.argmax()), i
            clear += 1
    assert clear >= len(ids) // 2
    with pytest.raises(comet.CometError, match="has no KV cache"):
        comet.run(plan, weights=folder, prompt=text, generate=4)
    with pytest.raises(comet.CometError, match="has no KV cache"):
        comet.deal(plan, tmp_path / "m2", prompt_len=8, generate=4)

    # two parties over TCP: the server has the weights, the client the text
    dealt = comet.deal(plan, tmp_path / "mat", prompt_len=len(ids))
    assert len(dealt["bytes_per_call"]) == 1
    addr = f"127.0.0.1:{free_port()}"
    server = {}

    def serve():
        try:
            server["out"] = comet.run(plan, party=0, listen=addr, weights=folder,
                                      material=dealt["paths"][0], timeout=120)
        except Exception as e:  # reported by the main thread
            server["error"] = e

    t = threading.Thread(target=serve)
    t.start()
    client = comet.run(plan, party=1, connect=addr, material=dealt["paths"][1],
                       tokenizer=folder / "tokenizer.json", prompt=text, timeout=120)
    t.join(300)
    assert "error" not in server, server.get("error")
    assert server["out"]["tokens"] == [] and server["out"]["logits"] == []
    for side in (client, server["out"]):
        assert_measured_equals_estimate(side, dealer_key="material_bits_read")
    [remote] = client["logits"]
    assert np.max(np.abs(remote - ref)) < 0.1
    assert client["masks"][0]["token"] == client["tokens"][3]


def test_errors_raise_with_the_librarys_message(plan, tmp_path):
    with pytest.raises(comet.CometError, match="cannot read model `.*nope.model`"):
        comet.compile(tmp_path / "nope.model")
    bad = tmp_path / "bad.model"
    bad.write_text("model broken {\n  this is not a model\n}\n")
    with pytest.raises(comet.CometError, match="bad.model"):
        comet.compile(bad)
    with pytest.raises(comet.CometError, match="approx"):
        comet.compile(MODEL, approx="no-such-profile")
    with pytest.raises(comet.CometError, match="comparison: expected `fss` or `gmw`"):
        comet.compile(MODEL, comparison="yao")
    with pytest.raises(comet.CometError, match="cannot load plan"):
        comet.load(bad)
    with pytest.raises(comet.CometError, match="at least one token"):
        comet.inspect(plan, prompt=0)
    with pytest.raises(comet.CometError, match="net"):
        comet.inspect(plan, net="carrier-pigeon")
    with pytest.raises(comet.CometError, match="cannot write"):
        comet.inspect(plan, svg=tmp_path / "missing-dir" / "x.svg")
    with pytest.raises(comet.CometError, match="give the checkpoint with --weights"):
        comet.run(plan, prompt=CASE["prompt_ids"])
    with pytest.raises(comet.CometError, match="not below the vocabulary"):
        comet.run(plan, weights=WEIGHTS, prompt=[41, 100000])
    with pytest.raises(comet.CometError, match="give the prompt"):
        comet.run(plan, weights=WEIGHTS)
    with pytest.raises(comet.CometError, match="party: expected 0"):
        comet.run(plan, party=2)
    with pytest.raises(comet.CometError, match="give party=0 or party=1"):
        comet.run(plan, weights=WEIGHTS, prompt=[41], listen="127.0.0.1:7070")
    with pytest.raises(comet.CometError, match="not an address"):
        comet.run(plan, party=1, connect="localhost")
    with pytest.raises(comet.CometError, match="--party needs --material"):
        comet.run(plan, party=1, connect="127.0.0.1:9", prompt=[41])
    with pytest.raises(comet.CometError, match="plan: expected a comet.Plan"):
        comet.inspect(42)
