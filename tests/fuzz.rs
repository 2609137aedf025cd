//! Bounded structured-mutation fuzzing on the stable toolchain, in `cargo test`: seeded
//! mutations of the seeds in `tests/fuzz_corpus/` (and of seeds built here from them) for
//! each input surface, each input run through the code that reads it. Every input must give
//! `Ok` or an error — a panic anywhere (caught, with its input's number) fails the test —
//! and the run stays within a memory bound. Each test prints its tally (inputs tried, Ok,
//! errors, panics) with `--nocapture`; `COMET_FUZZ_SCALE=N` multiplies the number of
//! inputs, `COMET_FUZZ_SEED=S` changes the seed.
//!
//! Surfaces: the `.model` parser (then `lower`, and the whole compiler on some), plan JSON
//! (loaded, checked by the client's reveal policy, evaluated in plaintext and by two parties
//! when small), material files (header and trailer, then the body replayed by a two-party
//! call), predictor files (as a sparse plan's weights, then run), and every message of a
//! two-party session (setup exchanges, shuffles and rounds: the peer's message altered,
//! truncated or extended, dense and sparse plans).

mod common;

use comet_ir::{DimEnv, Elem, Program};
use comet_runtime::dealer::{PartyReplay, UsedList, file, plan_digest};
use comet_runtime::interp::{RemoteParty, deal_to_files};
use comet_runtime::transport::{Channel, ChannelError, ChannelStats, Hello, MemChannel, mem_pair};
use ndarray::{ArrayD, Dimension, IxDyn};
use serde_json::Value;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

// ---- the mutator ----

/// splitmix64: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

/// Integers at the edges: zero, small, powers of two, the type limits.
const INTERESTING: [u64; 22] = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    16,
    63,
    64,
    65,
    255,
    256,
    65535,
    1 << 31,
    u32::MAX as u64,
    1 << 32,
    1 << 40,
    1 << 53,
    i64::MAX as u64,
    1 << 63,
    u64::MAX,
];

const INTERESTING_TEXT: [&str; 16] = [
    "0",
    "-1",
    "1",
    "64",
    "65",
    "4294967296",
    "18446744073709551615",
    "99999999999999999999999",
    "1e308",
    "-1e308",
    "NaN",
    "inf",
    "0.5",
    "[",
    "}",
    "",
];

/// One to four byte-level edits.
fn mutate_bytes(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(8) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = [0, 0xff, 0x7f, 0x80, b'9', b'-', b'"'][rng.below(7)];
            }
            2 => {
                let word = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let n = [1, 2, 4, 8][rng.below(4)];
                for (k, byte) in word[..n].iter().enumerate() {
                    if let Some(x) = b.get_mut(at + k) {
                        *x = *byte;
                    }
                }
            }
            3 => {
                let n = 1 + rng.below(16);
                let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at..at, junk);
            }
            4 if !b.is_empty() => {
                let end = (at + 1 + rng.below(32)).min(b.len());
                b.drain(at.min(end)..end);
            }
            5 if !b.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                let piece = b[at.min(end)..end].to_vec();
                let to = rng.below(b.len() + 1);
                b.splice(to..to, piece);
            }
            6 => b.truncate(rng.below(b.len() + 1)),
            _ => {}
        }
    }
    b
}

/// Text: byte edits, a number replaced by an edge value, or lines deleted, doubled or
/// swapped.
fn mutate_text(rng: &mut Rng, s: &str) -> String {
    match rng.below(4) {
        0 => String::from_utf8_lossy(&mutate_bytes(rng, s.as_bytes())).into_owned(),
        1 => {
            let digits: Vec<usize> = (s.char_indices())
                .filter(|(_, c)| c.is_ascii_digit())
                .map(|(i, _)| i)
                .collect();
            if digits.is_empty() {
                return s.to_string();
            }
            let start = digits[rng.below(digits.len())];
            let end = s[start..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(s.len(), |e| start + e);
            let with = INTERESTING_TEXT[rng.below(INTERESTING_TEXT.len())];
            format!("{}{with}{}", &s[..start], &s[end..])
        }
        _ => {
            let mut lines: Vec<&str> = s.lines().collect();
            if lines.is_empty() {
                return s.to_string();
            }
            let i = rng.below(lines.len());
            match rng.below(3) {
                0 => {
                    lines.remove(i);
                }
                1 => lines.insert(i, lines[rng.below(lines.len())]),
                _ => {
                    let j = rng.below(lines.len());
                    lines.swap(i, j);
                }
            }
            lines.join("\n")
        }
    }
}

/// Every value of a JSON document, by path, to pick one.
fn count_values(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_values).sum(),
        Value::Object(o) => o.values().map(count_values).sum(),
        _ => 0,
    }
}

/// Applies `f` to the `n`-th value in pre-order; whether there was one.
fn edit_nth(v: &mut Value, n: &mut usize, f: &mut dyn FnMut(&mut Value)) -> bool {
    if *n == 0 {
        f(v);
        return true;
    }
    *n -= 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| edit_nth(x, n, f)),
        Value::Object(o) => o.values_mut().any(|x| edit_nth(x, n, f)),
        _ => false,
    }
}

/// One to three structural edits of a JSON document: a value replaced by an edge number,
/// another value of the document, null, or a string; a key removed; an array element
/// removed or doubled.
fn mutate_json(rng: &mut Rng, doc: &mut Value, donors: &[Value]) {
    for _ in 0..1 + rng.below(3) {
        let mut n = rng.below(count_values(doc));
        let (kind, pick, k) = (rng.below(6), rng.next() as usize, rng.below(5));
        edit_nth(doc, &mut n, &mut |v| match (kind, &mut *v) {
            (0, _) => *v = Value::from(INTERESTING[pick % INTERESTING.len()]),
            (1, _) => *v = Value::from(-((pick % 3) as i64) - 1),
            (2, _) => *v = donors[pick % donors.len()].clone(),
            (3, Value::Object(o)) if !o.is_empty() => {
                let key = o.keys().nth(pick % o.len()).cloned().unwrap_or_default();
                o.remove(&key);
            }
            (3, Value::Array(a)) if !a.is_empty() => {
                let i = pick % a.len();
                if k % 2 == 0 {
                    a.remove(i);
                } else {
                    let x = a[i].clone();
                    a.insert(i, x);
                }
            }
            (4, Value::Number(_)) => *v = serde_json::json!([0.0, 1e300, -1e300, 0.5, 1e-300][k]),
            (5, _) => *v = Value::Null,
            _ => *v = Value::from(INTERESTING_TEXT[pick % INTERESTING_TEXT.len()]),
        });
    }
}

/// Some values of `doc` to transplant (every 50th in pre-order, at most 200).
fn donors_of(doc: &Value) -> Vec<Value> {
    fn walk(v: &Value, k: &mut usize, out: &mut Vec<Value>) {
        if (*k).is_multiple_of(50) && out.len() < 200 {
            out.push(v.clone());
        }
        *k += 1;
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, k, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, k, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, &mut 0, &mut out);
    out.push(Value::Null);
    out
}

// ---- the harness ----

/// Set while a surface runs its inputs: panics are then recorded (the first of an input,
/// from any of its threads) instead of printed. One surface runs at a time ([`SERIAL`]).
static IN_FUZZ: AtomicBool = AtomicBool::new(false);
static PANIC: Mutex<Option<String>> = Mutex::new(None);
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the surfaces one at a time, their setup included (the panic hook is global).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs the hook once: panics inside a surface's inputs are recorded for its tally;
/// any other panic (a failed assertion of the test) goes to the default hook.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_FUZZ.load(Ordering::SeqCst) {
                return default(info);
            }
            let at = info
                .location()
                .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let mut p = PANIC.lock().unwrap_or_else(|e| e.into_inner());
            p.get_or_insert(format!("{msg}{at}"));
        }));
    });
}

fn scale() -> usize {
    std::env::var("COMET_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn seed(surface: u64) -> u64 {
    let base: u64 = std::env::var("COMET_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(13);
    base.wrapping_mul(1_000_003).wrapping_add(surface)
}

/// What a surface's inputs gave.
#[derive(Default)]
struct Tally {
    tried: usize,
    ok: usize,
    errors: usize,
    /// Inputs read but not run further (too large for the memory bound).
    skipped: usize,
    panics: Vec<String>,
}

enum Outcome {
    Ok,
    Err,
    Skipped,
}

/// Runs `n` inputs of `one`; fails on any panic, naming the inputs.
fn fuzz(name: &str, n: usize, surface: u64, mut one: impl FnMut(&mut Rng, usize) -> Outcome) {
    quiet_panics();
    let mut rng = Rng(seed(surface));
    let mut t = Tally::default();
    let start = Instant::now();
    for i in 0..n {
        t.tried += 1;
        IN_FUZZ.store(true, Ordering::SeqCst);
        let outcome = catch_unwind(AssertUnwindSafe(|| one(&mut rng, i)));
        IN_FUZZ.store(false, Ordering::SeqCst);
        match outcome {
            Ok(Outcome::Ok) => t.ok += 1,
            Ok(Outcome::Err) => t.errors += 1,
            Ok(Outcome::Skipped) => t.skipped += 1,
            Err(_) => {
                let what = PANIC.lock().unwrap_or_else(|e| e.into_inner()).take();
                let what = what.unwrap_or_default();
                t.panics
                    .push(format!("input {i} (seed {}): {what}", seed(surface)));
            }
        }
    }
    let peak = peak_rss_mib();
    eprintln!(
        "fuzz {name}: {} inputs in {:.1}s: {} ok, {} errors, {} read but not run (too large), \
         {} panics; peak RSS {peak} MiB",
        t.tried,
        start.elapsed().as_secs_f64(),
        t.ok,
        t.errors,
        t.skipped,
        t.panics.len()
    );
    assert!(
        t.panics.is_empty(),
        "{name}: panics:\n{}",
        t.panics.join("\n")
    );
    assert!(peak < 2048, "{name}: peak RSS {peak} MiB");
    // the seeds themselves must pass: a surface that refuses everything tests nothing
    assert!(t.ok > 0, "{name}: no input was accepted");
}

/// The process's peak resident memory in MiB (Linux; 0 elsewhere).
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib / 1024)
}

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(corpus(name)).unwrap()
}

fn load(name: &str) -> Program {
    comet_ir::plan::read_plan_json(&read(name)).unwrap()
}

const ENV: DimEnv = DimEnv { seq: 2, past: 0 };

/// Elements every node of `p` holds at `env`, if it fits in `u64`.
fn total_elements(p: &Program, env: DimEnv) -> Option<u64> {
    let mut total = 0u64;
    for id in p.graph.ids() {
        let mut n = 1u64;
        for d in &p.graph.node(id).ty.shape {
            n = n.checked_mul(d.try_eval(env).ok()?)?;
        }
        total = total.checked_add(n)?;
    }
    for w in &p.info.weights {
        let n = w.shape.iter().try_fold(1u64, |a, d| a.checked_mul(*d))?;
        total = total.checked_add(n)?;
    }
    Some(total)
}

/// The memory bound of a run: 2^18 elements over all nodes and weights.
const MAX_ELEMENTS: u64 = 1 << 18;

/// Arrays by name (weights, inputs).
type Arrays = HashMap<String, ArrayD<f64>>;

/// Deterministic weights of the declared shapes, and inputs at `env` (token ids 0..4).
fn sources(p: &Program, env: DimEnv) -> Option<(Arrays, Arrays)> {
    let mut weights = HashMap::new();
    for w in &p.info.weights {
        let shape: Vec<usize> = w.shape.iter().map(|d| *d as usize).collect();
        let a = ArrayD::from_shape_fn(IxDyn(&shape), |i| {
            let k: usize = i.slice().iter().sum();
            ((k % 7) as f64 - 3.0) * 0.05
        });
        weights.insert(w.name.clone(), a);
    }
    let mut inputs = HashMap::new();
    for i in &p.info.inputs {
        let shape = (i.shape.iter())
            .map(|d| d.try_eval(env).ok().map(|n| n as usize))
            .collect::<Option<Vec<usize>>>()?;
        let a = ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
            let k: usize = ix.slice().iter().sum();
            match i.elem {
                Elem::Index => (k % 4) as f64,
                _ => 0.1 * (k % 5) as f64,
            }
        });
        inputs.insert(i.name.clone(), a);
    }
    Some((weights, inputs))
}

// ---- surfaces ----

#[test]
fn fuzz_model_parser() {
    let _serial = serial();
    let seeds: Vec<String> = ["tiny.model", "mlp.model"]
        .iter()
        .map(|s| read(s))
        .collect();
    let opts = comet_compiler::Options::default();
    fuzz("model", 3000 * scale(), 1, |rng, i| {
        let k = rng.below(seeds.len());
        let text = mutate_text(rng, &seeds[k]);
        let Ok(ast) = comet_compiler::front::parse::parse_model(&text) else {
            return Outcome::Err;
        };
        if comet_compiler::passes::lower::lower(&ast).is_err() {
            return Outcome::Err;
        }
        // every 16th accepted model goes through the whole compiler
        if i % 16 == 0 && comet_compiler::compile(&text, "fuzz.model", &opts).is_err() {
            return Outcome::Err;
        }
        Outcome::Ok
    });
}

#[test]
fn fuzz_plan_json() {
    let _serial = serial();
    let seeds: Vec<(Value, Vec<Value>)> = ["mlp.plan", "mlp-sparse.plan"]
        .iter()
        .map(|s| {
            let v: Value = serde_json::from_str(&read(s)).unwrap();
            let d = donors_of(&v);
            (v, d)
        })
        .collect();
    fuzz("plan", 3000 * scale(), 2, |rng, i| {
        let (seed, donors) = &seeds[rng.below(seeds.len())];
        let text = if rng.one_in(4) {
            let t = serde_json::to_string(seed).unwrap();
            String::from_utf8_lossy(&mutate_bytes(rng, t.as_bytes())).into_owned()
        } else {
            let mut v = seed.clone();
            mutate_json(rng, &mut v, donors);
            serde_json::to_string(&v).unwrap()
        };
        let Ok(p) = comet_ir::plan::read_plan_json(&text) else {
            return Outcome::Err;
        };
        let _ = comet_ir::exposure::check_client(&p, Default::default());
        let _ = comet_ir::exposure::least_acceptance(&p);
        if total_elements(&p, ENV).is_none_or(|n| n > MAX_ELEMENTS) {
            return Outcome::Skipped;
        }
        let Some((weights, inputs)) = sources(&p, ENV) else {
            return Outcome::Err;
        };
        let mut cache = comet_runtime::plain::Cache::new();
        let plain = comet_runtime::plain::eval(&p, &inputs, &weights, ENV, &mut cache);
        // every 4th loaded plan also runs for two parties (dense: a sparse plan needs a
        // predictor's weights, see `fuzz_predictor_files`)
        if i % 4 == 0 && p.options.sparsity.is_none() {
            let two = comet_runtime::interp::run_in_process(&p, &inputs, &weights, ENV, 7);
            if two.is_err() {
                return Outcome::Err;
            }
        }
        match plain {
            Ok(_) => Outcome::Ok,
            Err(_) => Outcome::Err,
        }
    });
}

/// A session of `program` dealt into a fresh folder: its two files' bytes.
fn dealt(program: &Program, dir: &Path, calls: &[DimEnv]) -> [Vec<u8>; 2] {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    deal_to_files(program, calls, dir, [3; 32], [4; 32], |_, _| {}).unwrap();
    [0, 1].map(|p| std::fs::read(dir.join(format!("party{p}.mat"))).unwrap())
}

/// Opens material `bytes` of party `p` for `program` (written to `path`) and marks it used
/// in a fresh list under `scratch`: its replay.
fn replay_of(
    program: &Program,
    bytes: &[u8],
    p: u8,
    path: &Path,
    scratch: &Path,
) -> Result<PartyReplay, String> {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(file::used_marker(path));
    std::fs::write(path, bytes).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let _ = std::fs::remove_dir_all(scratch);
    let used = UsedList::at(scratch).map_err(|e| e.to_string())?;
    let v = file::open(path, p, &plan_digest(program), &used).map_err(|e| e.to_string())?;
    let (_, replay) = v.mark_used(&used).map_err(|e| e.to_string())?;
    Ok(replay)
}

/// One call of `program` at `env` by two parties over memory, from their replays; party 1's
/// channel is `wrap`ped. Party 1's outcome.
fn two_party<C: Channel + 'static>(
    program: &Program,
    replays: [PartyReplay; 2],
    weights: &Arrays,
    inputs: &Arrays,
    env: DimEnv,
    wrap: impl FnOnce(MemChannel) -> C,
) -> Result<(), String> {
    let (c0, c1) = mem_pair();
    let [r0, r1] = replays;
    let c1 = wrap(c1);
    std::thread::scope(|s| {
        let h0 = s.spawn(move || {
            let mut p0 = RemoteParty::new(program, weights, r0, c0);
            p0.call(inputs, env).map(|_| ()).map_err(|e| e.to_string())
        });
        let mut p1 = RemoteParty::new(program, &HashMap::new(), r1, c1);
        let r = p1.call(inputs, env).map(|_| ()).map_err(|e| e.to_string());
        drop(p1); // party 0 sees the channel close, if it still waits
        let r0 = h0.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        r.and(r0)
    })
}

#[test]
fn fuzz_material_files() {
    let _serial = serial();
    let program = load("mlp.plan");
    let tmp = common::temp_path("fuzz-material");
    let files = dealt(&program, &tmp.join("seed"), &[ENV]);
    let (weights, inputs) = sources(&program, ENV).unwrap();
    for p in [0u8, 1] {
        let dir = tmp.join(format!("intact-{p}"));
        std::fs::create_dir_all(&dir).unwrap();
        replay_of(
            &program,
            &files[usize::from(p)],
            p,
            &dir.join("m.mat"),
            &dir.join("used"),
        )
        .unwrap_or_else(|e| panic!("the intact file of party {p}: {e}"));
    }
    fuzz("material", 2000 * scale(), 3, |rng, i| {
        let p = rng.below(2) as u8;
        let mut bytes = mutate_bytes(rng, &files[usize::from(p)]);
        // most inputs get a valid trailer, so that the header and body are read
        if !rng.one_in(4) && bytes.len() >= 32 {
            use sha2::Digest;
            let n = bytes.len() - 32;
            let sha: [u8; 32] = sha2::Sha256::digest(&bytes[..n]).into();
            bytes[n..].copy_from_slice(&sha);
        }
        let dir = tmp.join("try");
        std::fs::create_dir_all(&dir).unwrap();
        let Ok(mutated) = replay_of(&program, &bytes, p, &dir.join("m.mat"), &dir.join("used"))
        else {
            return Outcome::Err;
        };
        // every 4th accepted file is replayed by a call, beside the other party's intact half
        if i % 4 != 0 {
            return Outcome::Ok;
        }
        let q = 1 - p;
        let other = replay_of(
            &program,
            &files[usize::from(q)],
            q,
            &dir.join("o.mat"),
            &dir.join("used-o"),
        )
        .unwrap();
        let replays = match p {
            0 => [mutated, other],
            _ => [other, mutated],
        };
        match two_party(&program, replays, &weights, &inputs, ENV, |c| c) {
            Ok(()) => Outcome::Ok,
            Err(_) => Outcome::Err,
        }
    });
}

/// The predictor of `mlp-sparse.plan`: rank 2, one FFN of 8 neurons in blocks of 4.
fn mlp_predictor() -> Vec<u8> {
    use comet_runtime::sparsity::{Activity, FfnPredictor, Predictor, Score};
    use ndarray::{Array1, Array2};
    let source = read("mlp.model");
    let ast = comet_compiler::front::parse::parse_model(&source).unwrap();
    let lowered = comet_compiler::passes::lower::lower(&ast).unwrap();
    let ffns = comet_ir::ffn::find_ffns(&lowered);
    assert_eq!(ffns.len(), 1);
    let pred = Predictor {
        model: "mlp".into(),
        block: 4,
        rank: 2,
        score: Score::Sum,
        target_recall: 0.9,
        activity: Activity::Nonzero,
        input: comet_ir::ffn::PredictorInput::Ffn,
        ffns: vec![FfnPredictor {
            p1: Array2::from_shape_fn((4, 2), |(i, j)| (i as f64 - j as f64) * 0.25),
            p2: Array2::from_shape_fn((2, 8), |(i, j)| ((i + j) % 3) as f64 * 0.5 - 0.5),
            bias: Array1::from_elem(8, 0.1),
            threshold: 0.0,
            tau: 0.0,
        }],
    };
    pred.to_bytes(&ffns)
}

/// A safetensors file with its JSON header mutated structurally (lengths kept valid).
fn mutate_safetensors(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let donors = donors_of(&header);
    mutate_json(rng, &mut header, &donors);
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn fuzz_predictor_files() {
    let _serial = serial();
    let program = load("mlp-sparse.plan");
    let seed = mlp_predictor();
    let tmp = common::temp_path("fuzz-predictor");
    std::fs::create_dir_all(&tmp).unwrap();
    let path = tmp.join("p.pred");
    let (weights, inputs) = sources(&program, ENV).unwrap();
    fuzz("predictor", 2000 * scale(), 4, |rng, i| {
        let bytes = match rng.below(3) {
            0 => mutate_bytes(rng, &seed),
            _ => mutate_safetensors(rng, &seed),
        };
        std::fs::write(&path, &bytes).unwrap();
        let Ok(pred) = comet_runtime::sparsity::plan::plan_weights(&path, &program) else {
            return Outcome::Err;
        };
        // every 4th accepted predictor drives a two-party sparse call
        if i % 4 != 0 {
            return Outcome::Ok;
        }
        let mut w = weights.clone();
        w.extend(pred);
        match comet_runtime::interp::run_in_process(&program, &inputs, &w, ENV, 5) {
            Ok(_) => Outcome::Ok,
            Err(_) => Outcome::Err,
        }
    });
}

/// Party 1's channel, whose `target`-th received message (setup exchanges and rounds
/// counted together) is replaced by a mutation of it, as a malicious peer would send.
struct Tamper {
    inner: MemChannel,
    seen: usize,
    target: usize,
    rng: Rng,
}

impl Tamper {
    fn received(&mut self, msg: Vec<u8>) -> Vec<u8> {
        let k = self.seen;
        self.seen += 1;
        match k == self.target {
            true => mutate_bytes(&mut self.rng, &msg),
            false => msg,
        }
    }
}

impl Channel for Tamper {
    fn exchange(&mut self, msg: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let got = self.inner.exchange(msg)?;
        Ok(self.received(got))
    }

    fn exchange_setup(&mut self, msg: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let got = self.inner.exchange_setup(msg)?;
        Ok(self.received(got))
    }

    fn handshake(&mut self, hello: &Hello) -> Result<Hello, ChannelError> {
        self.inner.handshake(hello)
    }

    fn stats(&self) -> ChannelStats {
        self.inner.stats()
    }

    fn reset_stats(&mut self) {
        self.inner.reset_stats()
    }
}

#[test]
fn fuzz_session_messages() {
    let _serial = serial();
    let dense = load("mlp.plan");
    let sparse = load("mlp-sparse.plan");
    let tmp = common::temp_path("fuzz-messages");
    let pred_path = tmp.join("p.pred");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(&pred_path, mlp_predictor()).unwrap();
    let mut plans = Vec::new();
    for (name, p) in [("dense", &dense), ("sparse", &sparse)] {
        let files = dealt(p, &tmp.join(name), &[ENV]);
        let (mut weights, inputs) = sources(p, ENV).unwrap();
        if p.options.sparsity.is_some() {
            weights.extend(comet_runtime::sparsity::plan::plan_weights(&pred_path, p).unwrap());
        }
        // the messages of an untampered call: setup exchanges and rounds
        let replays = [0u8, 1].map(|q| {
            let dir = tmp.join(format!("{name}-count-{q}"));
            std::fs::create_dir_all(&dir).unwrap();
            replay_of(
                p,
                &files[usize::from(q)],
                q,
                &dir.join("m.mat"),
                &dir.join("used"),
            )
            .unwrap()
        });
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = count.clone();
        two_party(p, replays, &weights, &inputs, ENV, move |inner| {
            Counting(inner, c)
        })
        .unwrap();
        let messages = count.load(std::sync::atomic::Ordering::SeqCst);
        assert!(messages > 2, "{name}: {messages} messages");
        eprintln!("fuzz messages: the {name} call exchanges {messages} messages");
        plans.push((name, p, files, weights, inputs, messages));
    }
    fuzz("messages", 600 * scale(), 5, |rng, i| {
        let (name, p, files, weights, inputs, messages) = &plans[i % plans.len()];
        let replays = [0u8, 1].map(|q| {
            let dir = tmp.join(format!("{name}-{q}"));
            std::fs::create_dir_all(&dir).unwrap();
            replay_of(
                p,
                &files[usize::from(q)],
                q,
                &dir.join("m.mat"),
                &dir.join("used"),
            )
            .unwrap()
        });
        let target = rng.below(*messages);
        let tamper = Rng(rng.next());
        let r = two_party(p, replays, weights, inputs, ENV, move |inner| Tamper {
            inner,
            seen: 0,
            target,
            rng: tamper,
        });
        match r {
            Ok(()) => Outcome::Ok,
            Err(_) => Outcome::Err,
        }
    });
}

/// A channel that counts the messages it receives.
struct Counting(MemChannel, std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Channel for Counting {
    fn exchange(&mut self, msg: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.exchange(msg)
    }

    fn exchange_setup(&mut self, msg: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.exchange_setup(msg)
    }

    fn handshake(&mut self, hello: &Hello) -> Result<Hello, ChannelError> {
        self.0.handshake(hello)
    }

    fn stats(&self) -> ChannelStats {
        self.0.stats()
    }

    fn reset_stats(&mut self) {
        self.0.reset_stats()
    }
}

// ---- crafted inputs that panicked before (each now a clear error) ----

/// `mlp-sparse.plan` (or `mlp.plan`) with `edit` applied to its JSON.
fn crafted_plan(name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(&read(name)).unwrap();
    edit(&mut v);
    serde_json::to_string(&v).unwrap()
}

#[test]
fn a_predictor_with_block_0_and_no_ffns_is_an_error() {
    use comet_runtime::sparsity::{Activity, Predictor, Score};
    let pred = Predictor {
        model: "mlp".into(),
        block: 0,
        rank: 0,
        score: Score::Sum,
        target_recall: 0.9,
        activity: Activity::Nonzero,
        input: comet_ir::ffn::PredictorInput::Ffn,
        ffns: vec![],
    };
    let e = Predictor::from_bytes(&pred.to_bytes(&[]), "`crafted.pred`", "mlp", &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`crafted.pred`") && e.contains("block size 0"),
        "{e}"
    );
}

#[test]
fn a_block_permute_wider_than_its_axis_is_refused_at_load() {
    for block in [1u64 << 40, 1 << 63, u64::MAX] {
        let text = crafted_plan("mlp-sparse.plan", |v| {
            let nodes = v["nodes"].as_array_mut().unwrap();
            let n = (nodes.iter_mut())
                .find(|n| n["op"].get("block_permute").is_some())
                .unwrap();
            n["op"]["block_permute"]["block"] = Value::from(block);
            // the declared type padded to match, as a forger would
            n["type"]["shape"][1] = Value::from(block.min(i64::MAX as u64));
        });
        let e = comet_ir::plan::read_plan_json(&text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is wider than its axis"), "{e}");
    }
}

#[test]
fn fixed_point_scales_beyond_the_ring_are_refused_at_load() {
    for frac in [40u64, 1 << 31, u32::MAX as u64] {
        let text = crafted_plan("mlp.plan", |v| {
            v["model"]["format"]["frac"] = Value::from(frac);
            // every fixed-point type declared at that scale, as the file must say
            for n in v["nodes"].as_array_mut().unwrap() {
                if let Some(s) = n["type"]["elem"].get_mut("fixed") {
                    s["scale"] = Value::from(frac);
                }
            }
        });
        let e = comet_ir::plan::read_plan_json(&text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("more than 64 fractional bits"),
            "frac {frac}: {e}"
        );
    }
}

#[test]
fn sparsity_options_that_disagree_with_the_predictor_are_an_error() {
    let text = crafted_plan("mlp-sparse.plan", |v| {
        v["options"]["sparsity"]["ffns"][0]["blocks"] = Value::from(3);
    });
    let program = comet_ir::plan::read_plan_json(&text).unwrap();
    let tmp = common::temp_path("fuzz-crafted");
    std::fs::create_dir_all(&tmp).unwrap();
    let path = tmp.join("p.pred");
    std::fs::write(&path, mlp_predictor()).unwrap();
    let e = comet_runtime::sparsity::plan::plan_weights(&path, &program)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has 3 blocks") && e.contains("inconsistent"),
        "{e}"
    );
}

/// A `repeat` over millions of layers made the compiler inline them all (the fuzzer's
/// `.model` surface grew to 17 GiB): now an error at the range.
#[test]
fn a_repeat_over_too_many_layers_is_an_error() {
    let source = read("tiny.model").replace("n_layers = 1", "n_layers = 99999999");
    let ast = comet_compiler::front::parse::parse_model(&source).unwrap();
    let e = comet_compiler::passes::lower::lower(&ast).unwrap_err();
    let text = format!("{e:?}");
    assert!(
        text.contains("repeats the block 99999999 times; at most 4096"),
        "{text}"
    );
}

/// Tokenizer files: the shipped model's character BPE and a Hugging Face byte-level BPE
/// `tokenizer.json` (`tests/fuzz_corpus/byte-bpe-tokenizer.json`), mutated as JSON and as
/// bytes; an accepted file then encodes a mutated text and decodes random ids (ids past
/// the vocabulary must be errors).
#[test]
fn fuzz_tokenizer_files() {
    let _serial = serial();
    let shipped = format!(
        "{}/models/glassllm-en/tokenizer.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let seeds: Vec<String> = vec![
        std::fs::read_to_string(&shipped).expect("the shipped tokenizer"),
        read("byte-bpe-tokenizer.json"),
    ];
    let docs: Vec<Value> = seeds
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    let donors: Vec<Vec<Value>> = docs.iter().map(donors_of).collect();
    fuzz("tokenizer", 2000 * scale(), 6, |rng, i| {
        let k = rng.below(seeds.len());
        let text = match i % 3 {
            // every third input is a seed, unmutated: the surface's accepted inputs
            0 => seeds[k].clone(),
            1 => {
                let mut doc = docs[k].clone();
                mutate_json(rng, &mut doc, &donors[k]);
                doc.to_string()
            }
            _ => String::from_utf8_lossy(&mutate_bytes(rng, seeds[k].as_bytes())).into_owned(),
        };
        let Ok(t) = comet_runtime::tokenizer::Tokenizer::from_json(&text) else {
            return Outcome::Err;
        };
        let prompt = mutate_text(rng, "Once upon a time, hello world é 🙂");
        let _ = t.encode(&prompt);
        let ids: Vec<u64> = (0..1 + rng.below(16))
            .map(|_| rng.next() % (t.vocab_size() as u64 + 8))
            .collect();
        let decoded = t.decode(&ids);
        if ids.iter().any(|&id| id >= t.vocab_size() as u64) {
            assert!(decoded.is_err(), "an id past the vocabulary decoded");
        }
        Outcome::Ok
    });
}

/// The fuzzer's tokenizer finding: a BPE model whose continuing-subword prefix is longer
/// than a merge's second token made the `tokenizers` crate slice out of bounds.
#[test]
fn a_merge_without_the_subword_prefix_is_an_error() {
    let mut doc: Value = serde_json::from_str(&read("byte-bpe-tokenizer.json")).unwrap();
    doc["model"]["continuing_subword_prefix"] = Value::from("###");
    let Err(e) = comet_runtime::tokenizer::Tokenizer::from_json(&doc.to_string()) else {
        panic!("a merge without the prefix was accepted");
    };
    assert!(e.to_string().contains("continuing-subword prefix"), "{e}");
}
