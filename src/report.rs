//! What `comet run` prints: a readable summary (measured beside estimated, per call) or
//! one JSON object for scripts.

use crate::generate::Call;

/// Bits as a human-readable byte count.
pub fn bytes(bits: u64) -> String {
    let b = bits as f64 / 8.0;
    const K: f64 = 1024.0;
    match b {
        b if b >= K * K * K => format!("{:.2} GiB", b / (K * K * K)),
        b if b >= K * K => format!("{:.2} MiB", b / (K * K)),
        b if b >= K => format!("{:.1} KiB", b / K),
        b => format!("{b} B"),
    }
}

/// The text a run prints: the generated tokens decoded, or for an encoder the prompt with
/// each mask token replaced by its prediction (the predictions decoded when the prompt has
/// no mask).
#[derive(Debug, Default)]
pub struct Text {
    /// The text, when a tokenizer is at hand.
    pub text: Option<String>,
    /// An encoder's predictions at the prompt's mask tokens.
    pub masks: Vec<Fill>,
}

/// An encoder's prediction at one mask token of the prompt.
#[derive(Debug)]
pub struct Fill {
    /// The position in the prompt.
    pub position: usize,
    /// The predicted token.
    pub token: u64,
    /// The predicted token decoded.
    pub text: String,
}

/// How the run was made, for the summary's header and the JSON.
pub struct RunInfo {
    /// `in-process` or `party N over TCP`.
    pub mode: String,
    /// Whether offline figures are this party's material file (two processes) rather
    /// than the whole dealer's.
    pub material_read: bool,
    /// Setup bits (shuffles, fixed operands opened once), both parties.
    pub setup_bits: u64,
    /// Dealer bits of the setup (a sparse plan's shuffle corrections).
    pub setup_offline_bits: u64,
    /// Wall time of the calls, seconds.
    pub seconds: f64,
    /// An encoder's run (one call, a token predicted per position): the prompt, for the
    /// party that holds it (`None` for a decoder, and for the server).
    pub encoder_prompt: Option<Vec<u64>>,
}

/// The readable summary.
pub fn print_summary(tokens: &[u64], text: &Text, calls: &[Call], info: &RunInfo) {
    let ids: Vec<String> = tokens.iter().map(u64::to_string).collect();
    if tokens.is_empty() {
        println!(
            "served {} calls ({}); the client holds the tokens",
            calls.len(),
            info.mode
        );
    } else if info.encoder_prompt.is_some() {
        println!(
            "predicted, one token per position ({}): {}",
            info.mode,
            ids.join(",")
        );
    } else {
        println!("generated ({}): {}", info.mode, ids.join(","));
    }
    for m in &text.masks {
        println!("mask at position {}: {} {:?}", m.position, m.token, m.text);
    }
    if let Some(t) = &text.text {
        println!("text: {t:?}");
    }
    let dealer = if info.material_read {
        "material read"
    } else {
        "dealer"
    };
    println!(
        "{:<18} {:>12} {:>12} {:>7} {:>7} {:>14} {:>12}",
        "call", "online", "(estimate)", "rounds", "(est.)", dealer, "(est., both)"
    );
    for c in calls {
        let (on, r, off) = c.estimated;
        let m = &c.measured;
        let name = format!("seq {}, past {}", c.env.seq, c.env.past);
        println!(
            "{name:<18} {:>12} {:>12} {:>7} {:>7} {:>14} {:>12}",
            bytes(m.online_bits),
            bytes(on),
            m.rounds,
            r,
            bytes(m.offline_bits),
            bytes(off)
        );
    }
    refill_lines(calls);
    let online_exact = calls.iter().all(|c| {
        (c.measured.online_bits, c.measured.rounds) == (c.estimated.0, c.estimated.1 + extra(c))
    });
    let offline_exact = calls
        .iter()
        .all(|c| c.measured.offline_bits == c.estimated.2);
    let shuffles = match info.setup_offline_bits {
        0 => String::new(),
        b => format!(", dealer {} (the block shuffles' corrections)", bytes(b)),
    };
    println!(
        "setup (once per session): {} online{shuffles}; wall time {:.2} s",
        bytes(info.setup_bits),
        info.seconds
    );
    let yes = |b: bool| if b { "yes" } else { "NO" };
    if info.material_read {
        println!(
            "measured online bytes and rounds = estimate for every call: {}  (material: this \
             party's share of the estimate; both files together equal it)",
            yes(online_exact)
        );
    } else {
        println!(
            "measured = estimated for every call (online, rounds, dealer): {}",
            yes(online_exact && offline_exact)
        );
    }
}

/// The naive KV refill's exchanges in a call (0 merged): its rounds beyond the plan's.
fn extra(c: &Call) -> u64 {
    c.measured.kv_total().exchanges
}

/// A head-sparse plan's KV refill per call, summed over the attentions.
fn refill_lines(calls: &[Call]) {
    if calls.iter().all(|c| c.measured.kv_total().rows == 0) {
        return;
    }
    println!(
        "KV refill per call (head-sparse attention; rows opened by each cache product, \
         summed over the layers): rows, missed rows among them, miss requests, the missed \
         rows' bytes (K and V, both parties; in the online bytes above), extra rounds (the \
         naive refill's; 0 merged, the measured rounds above include them)"
    );
    for c in calls {
        let t = c.measured.kv_total();
        println!(
            "  seq {}, past {}: {} rows, {} missed, {} miss requests, {} refill, {} extra rounds",
            c.env.seq,
            c.env.past,
            t.rows,
            t.missed,
            t.requests,
            bytes(t.missed_bits),
            t.exchanges
        );
    }
}

/// The JSON object: `tokens`, `text`, `mode`, per-call figures; for an encoder also
/// `masks` (position, token and text of each mask's prediction).
pub fn json(tokens: &[u64], text: &Text, calls: &[Call], info: &RunInfo) -> String {
    let offline_key = if info.material_read {
        "material_bits_read"
    } else {
        "offline_bits"
    };
    let calls: Vec<serde_json::Value> = calls
        .iter()
        .map(|c| {
            let m = &c.measured;
            let mut measured = serde_json::json!({
                "online_bits": m.online_bits, "rounds": m.rounds, "setup_bits": m.setup_bits,
            });
            measured[offline_key] = m.offline_bits.into();
            let t = m.kv_total();
            if t.rows > 0 {
                measured["kv_refill"] = serde_json::json!({
                    "rows": t.rows, "missed_rows": t.missed, "miss_requests": t.requests,
                    "extra_rounds": t.exchanges, "refill_bits": t.missed_bits,
                });
            }
            serde_json::json!({
                "seq": c.env.seq, "past": c.env.past,
                "measured": measured,
                "estimated": {"online_bits": c.estimated.0, "rounds": c.estimated.1, "offline_bits": c.estimated.2},
            })
        })
        .collect();
    let mut out = serde_json::json!({
        "tokens": tokens, "text": text.text, "mode": info.mode,
        "setup_bits": info.setup_bits, "setup_offline_bits": info.setup_offline_bits, "seconds": info.seconds, "calls": calls,
    });
    if info.encoder_prompt.is_some() {
        let masks: Vec<serde_json::Value> = (text.masks.iter())
            .map(|m| serde_json::json!({"position": m.position, "token": m.token, "text": m.text}))
            .collect();
        out["masks"] = masks.into();
    }
    out.to_string()
}
