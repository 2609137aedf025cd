//! `comet calibrate MODEL --heads`: the head predictor of every attention (a linear score
//! per KV group on the attention's input, fit by ridge regression to the groups'
//! contributions on the sample tokens), each layer's threshold for the target group
//! recall, the per-layer report, and with `--curve` the greedy tokens against the dense
//! model and the KV misses per recall.
//!
//! Definitions: `comet_runtime::sparsity::heads` (module docs). The model runs in f64 on
//! its semantic-stage program.

use crate::calibrate::{CalibrateArgs, eval_prompts, samples};
use comet_runtime::sparsity::TokenModel;
use comet_runtime::sparsity::heads::{
    HeadLayerReport, HeadMode, HeadStats, attentions, calibrate_heads, capture_heads,
    compare_heads, greedy_heads,
};
use std::fmt::Write as _;

/// Recall targets of the curve.
const RECALLS: [f64; 6] = [0.8, 0.9, 0.95, 0.99, 0.999, 1.0];

/// Everything `comet calibrate --heads` prints.
pub fn report(args: &CalibrateArgs, model: &TokenModel) -> Result<String, String> {
    if !(0.0..1.0).contains(&args.head_sparsity) {
        return Err(format!(
            "--head-sparsity must be in [0, 1), not {}",
            args.head_sparsity
        ));
    }
    let atts = attentions(model).map_err(|e| e.to_string())?;
    let a0 = &atts[0];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model `{}`: {} attentions, {} query heads in {} KV groups of {} (head dim {}, d {})",
        model.program.info.name,
        atts.len(),
        a0.heads,
        a0.kv_heads,
        a0.groups(),
        a0.hd,
        a0.d
    );
    let (seqs, how) = samples(args, model)?;
    let tokens: usize = seqs.iter().map(Vec::len).sum();
    let _ = writeln!(
        out,
        "calibration: {} sequences, {tokens} tokens ({how}); active group: contribution \
         ‖merged_g · W_O,g‖ > τ, τ per layer the {:.0}% quantile on the samples",
        seqs.len(),
        100.0 * args.head_sparsity
    );
    let cap = capture_heads(model, &atts, &seqs).map_err(|e| e.to_string())?;
    let (pred, reports) =
        calibrate_heads(&atts, &cap, args.head_sparsity, args.recall).map_err(|e| e.to_string())?;
    let _ = writeln!(out, "\nper layer, target group recall {}:", args.recall);
    out.push_str(&table(&reports));
    if let Some(path) = &args.out {
        let bytes = pred.to_bytes(&model.program.info.name, args.recall);
        std::fs::write(path, bytes)
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        let _ = writeln!(
            out,
            "\nwrote {} (compile with --sparsity heads:recall={},density={})",
            path.display(),
            args.recall,
            reports
                .iter()
                .map(|r| format!("{:.3}", 1.0 - r.predicted_sparsity))
                .collect::<Vec<_>>()
                .join("/")
        );
    }
    if !args.curve {
        return Ok(out);
    }
    let eval = eval_prompts(args, model)?;
    let (dense, _) = greedy_heads(
        model,
        &atts,
        &eval.prompts,
        eval.steps,
        None,
        HeadMode::Dense,
    )
    .map_err(|e| e.to_string())?;
    let _ = writeln!(
        out,
        "\ngreedy tokens vs the dense f64 model ({}, {} tokens each; missed K/V rows are \
         refilled before they are read, so a masked group only contributes zero):",
        eval.how, eval.steps
    );
    if let Some(r) = &eval.reference {
        let same = (dense.iter().zip(r))
            .map(|(a, b)| a.iter().zip(b).take_while(|(x, y)| x == y).count())
            .sum::<usize>();
        let _ = writeln!(
            out,
            "(the dense f64 run matches the reference file's greedy tokens on {same}/{})",
            r.iter().map(Vec::len).sum::<usize>()
        );
    }
    let _ = writeln!(
        out,
        "{:>8}  {:>7} {:>9} {:>10} {:>14} {:>14} {:>13}",
        "recall", "sample", "eval", "greedy", "decode groups", "missed rows", "miss requests"
    );
    let _ = writeln!(
        out,
        "{:>8}  {:>7} {:>9} {:>10} {:>14} {:>14} {:>13}",
        "target", "skip", "recall", "matched", "active/step", "per step", "per step"
    );
    for &t in &RECALLS {
        let (p, reps) =
            calibrate_heads(&atts, &cap, args.head_sparsity, t).map_err(|e| e.to_string())?;
        let skip = reps.iter().map(|r| r.predicted_sparsity).sum::<f64>() / reps.len() as f64;
        let agr = compare_heads(model, &atts, &eval.prompts, &dense, &p, HeadMode::Predicted)
            .map_err(|e| e.to_string())?;
        let (act, miss, req) = decode_means(&agr.stats);
        let _ = writeln!(
            out,
            "{:>8}  {:>6.1}% {:>9.3} {:>6}/{:<3} {:>14.2} {:>14.2} {:>13.2}",
            t,
            100.0 * skip,
            agr.stats.recall(),
            agr.matched.iter().sum::<usize>(),
            agr.steps * agr.matched.len(),
            act,
            miss,
            req
        );
    }
    let oracle = compare_heads(model, &atts, &eval.prompts, &dense, &pred, HeadMode::Oracle)
        .map_err(|e| e.to_string())?;
    let (act, miss, req) = decode_means(&oracle.stats);
    let _ = writeln!(
        out,
        "{:>8}  {:>6.1}% {:>9.3} {:>6}/{:<3} {:>14.2} {:>14.2} {:>13.2}",
        "oracle",
        100.0 * args.head_sparsity,
        1.0,
        oracle.matched.iter().sum::<usize>(),
        oracle.steps * oracle.matched.len(),
        act,
        miss,
        req
    );
    let _ = writeln!(
        out,
        "(decode steps only: groups active over all layers of {} groups; missed rows = \
         (layer, group, position) K/V rows a refill recomputes; a miss request = one (layer, \
         group) with missed rows: a naive refill pays one round each, the merged refill none)",
        atts.iter().map(|a| a.kv_heads).sum::<u64>()
    );
    Ok(out)
}

/// Means over the decode calls (one token): groups active, missed rows, miss requests.
fn decode_means(s: &HeadStats) -> (f64, f64, f64) {
    let steps: Vec<_> = s.steps.iter().filter(|c| c.tokens == 1).collect();
    let n = steps.len().max(1) as f64;
    (
        steps.iter().map(|c| c.active as f64).sum::<f64>() / n,
        steps.iter().map(|c| c.missed_rows as f64).sum::<f64>() / n,
        steps.iter().map(|c| c.miss_requests as f64).sum::<f64>() / n,
    )
}

/// The per-layer table.
fn table(reports: &[HeadLayerReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>7} {:>7} {:>11} {:>11} {:>10} {:>10}",
        "layer", "groups", "recall", "pred. skip", "true skip", "tau", "delta"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<10} {:>4}x{:<2} {:>7.3} {:>10.1}% {:>10.1}% {:>10.4} {:>10.4}",
            r.label,
            r.groups.0,
            r.groups.1,
            r.recall,
            100.0 * r.predicted_sparsity,
            100.0 * r.true_sparsity,
            r.tau,
            r.threshold
        );
    }
    let n = reports.len() as f64;
    let _ = writeln!(
        out,
        "{:<10} {:>7} {:>7.3} {:>10.1}% {:>10.1}%",
        "mean",
        "",
        reports.iter().map(|r| r.recall).sum::<f64>() / n,
        100.0 * reports.iter().map(|r| r.predicted_sparsity).sum::<f64>() / n,
        100.0 * reports.iter().map(|r| r.true_sparsity).sum::<f64>() / n,
    );
    out
}
