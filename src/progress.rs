//! Progress bars on stderr for the long parts of a run (the session's setup, a call's
//! rounds, generation, dealing), drawn by `indicatif` only when stderr is a terminal, and
//! never with `--quiet` or `--json`. They report what the runtime's progress callback
//! ([`comet_runtime::interp::RunOptions::progress`]) and the CLI's loops say; the lines the
//! commands print are unchanged.

use comet_runtime::interp::{Progress, ProgressFn};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::{Arc, Mutex};

/// The bars of one command, or none.
#[derive(Clone)]
pub struct Bars {
    multi: Option<MultiProgress>,
}

/// The runtime's bars: the setup's, and the current call's rounds.
#[derive(Default)]
struct RuntimeBars {
    setup: Option<ProgressBar>,
    rounds: Option<ProgressBar>,
}

impl Bars {
    /// Bars on stderr unless `quiet` (they stay hidden when stderr is not a terminal).
    pub fn new(quiet: bool) -> Bars {
        let multi = (!quiet).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Bars { multi }
    }

    fn add(&self, len: u64, template: &str) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        Some(multi.add(ProgressBar::new(len).with_style(style)))
    }

    /// A bar counting `n` items (`what`: "tokens", "calls dealt").
    pub fn counter(&self, n: u64, what: &str) -> Option<ProgressBar> {
        let template = format!("{{bar:30}} {{pos}}/{{len}} {what} [{{elapsed}}, eta {{eta}}]");
        self.add(n, &template)
    }

    /// The runtime's callback for party `party`: a bar for the setup (bytes of `W − B`
    /// opened) and one for the current call's rounds.
    pub fn runtime(&self, party: u8) -> Option<ProgressFn> {
        self.multi.as_ref()?;
        let state = Arc::new(Mutex::new(RuntimeBars::default()));
        let bars = self.clone();
        Some(Arc::new(move |p: u8, event: Progress| {
            if p != party {
                return;
            }
            if let Ok(mut s) = state.lock() {
                bars.update(&mut s, event);
            }
        }))
    }

    fn update(&self, s: &mut RuntimeBars, event: Progress) {
        match event {
            Progress::Setup {
                done,
                total,
                bytes,
                total_bytes,
            } => {
                let bar = s.setup.get_or_insert_with(|| {
                    let t = "setup: opening W − B {bar:30} {bytes}/{total_bytes} {msg} [{elapsed}]";
                    self.add(total_bytes, t).unwrap_or_else(ProgressBar::hidden)
                });
                bar.set_position(bytes);
                bar.set_message(format!("({done}/{total} operands)"));
                if done == total {
                    bar.finish_and_clear();
                }
            }
            Progress::Round { done, total } => {
                if done == 1 {
                    if let Some(old) = s.rounds.take() {
                        old.finish_and_clear();
                    }
                    let t = "call: round {pos}/{len} {bar:30} [{elapsed}]";
                    s.rounds = Some(self.add(total, t).unwrap_or_else(ProgressBar::hidden));
                }
                if let Some(bar) = &s.rounds {
                    bar.set_position(done);
                    if done == total {
                        bar.finish_and_clear();
                    }
                }
            }
        }
    }
}
