//! `comet bench runtime`: the runtime benchmark. Prints one table (or, with `--json`, one
//! JSON object) with
//! - the share matmul of the fixed-weight protocol, one party, against `ndarray`'s f64
//!   `dot` of the same shape ([`matmul`]);
//! - a session of GPT-2 small with random weights at its real shape, from an empty KV
//!   cache: a prefill of `--prefill` tokens (128) that carries the once-per-session
//!   setup, then `--steps` decode steps (8); both parties and the dealer
//!   in one process, and as three processes over loopback TCP (the dealer service and one
//!   process per party) ([`scenario`]); per call: time, CPU, measured and estimated bytes
//!   and rounds, the setup's time, and peak resident memory per process.
//!
//! Each part runs in a child process (this binary, `--only PART`) that prints one JSON
//! line, so that each reports its own peak memory (`VmHWM`, reset before each call through
//! `/proc/self/clear_refs`); the parent collects them and prints the table.

mod matmul;
mod mem;
mod model;
mod render;
mod scenario;

pub use model::random_weight_stats;

use clap::{Args, Subcommand, ValueEnum};
use comet_runtime::dealer::service::DEFAULT_MASK_BUDGET;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Arguments of `comet bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// The runtime benchmark: share matmul against f64, and a GPT-2-small decode step
    /// with a 128-token KV cache in one process and over loopback TCP, with peak memory.
    Runtime(RuntimeArgs),
    /// The approximation profiles: accuracy on the shipped model, costs on GPT-2 and BERT,
    /// and pcf against exact (estimates and, with `--runtime`, a 2PC run).
    Approx(crate::bench_approx::BenchApproxArgs),
    /// Dense against block-sparse FFNs in two-party runs: a synthetic OPT-style ReLU
    /// model with realistic sparsity, and the shipped model's agreement-vs-sparsity curve.
    Sparsity(crate::bench_sparsity::BenchSparsityArgs),
    /// Decode steps with the KV cache's rows opened once against re-opened every call, on
    /// the shipped model at several context lengths (bytes, rounds, time, tokens).
    Kv(crate::bench_kv::BenchKvArgs),
    /// Decode steps with dense against head-sparse attention on the shipped model (or a
    /// synthetic one with realistic head sparsity) at several context lengths (bytes,
    /// rounds, time, groups active, tokens).
    Heads(crate::bench_heads::BenchHeadsArgs),
}

/// Arguments of `comet bench runtime`.
#[derive(Args, Clone)]
pub struct RuntimeArgs {
    /// A small configuration for tests: GPT-2's architecture at tiny sizes (d 32, 2 layers,
    /// vocabulary 96), a KV cache of 8 tokens, tiny matmul shapes, 3 repetitions.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object (stable field names) instead of the table.
    #[arg(long)]
    json: bool,
    /// Timed repetitions of each matmul, after one warm-up; the median is reported
    /// (default: 5; with --quick, 3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    reps: Option<u64>,
    /// The `.model` file of the decode step (default: examples/gpt2.model, built in; with
    /// --quick, the same at tiny sizes).
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Tokens of the session's first call, the prefill, into an empty KV cache (default:
    /// 128; with --quick, 8). The cache is filled by the protocol itself, so that each
    /// cached row is opened under its mask as in a real session (`cache_matmul`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    prefill: Option<u64>,
    /// Decode steps after the prefill (default: 8; with --quick, 2).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    steps: Option<u64>,
    /// Seed of the random weights, KV cache, matrices and dealer.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// MiB of the weights' masks the dealer service keeps expanded (as `comet dealer
    /// --mask-cache`; the rest is re-derived at every call).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MASK_BUDGET >> 20)]
    pub(crate) mask_cache: u64,
    /// The approximation profiles of the plan, as `comet compile --approx` takes them
    /// (default: lut, as `comet compile`).
    #[arg(long, value_name = "PROFILES", default_value = "lut")]
    pub(crate) approx: comet_ir::ApproxConfig,
    /// Run one part in this process and print its figures as one JSON line (the
    /// benchmark runs each part this way, in a child process of its own).
    #[arg(long, value_enum, value_name = "PART")]
    only: Option<Part>,
    /// The dealer service's address (parts `party0`, `party1`).
    #[arg(long, value_name = "ADDR", hide = true)]
    dealer: Option<String>,
    /// Where party 0 listens (part `party1`).
    #[arg(long, value_name = "ADDR", hide = true)]
    connect: Option<SocketAddr>,
}

impl RuntimeArgs {
    fn reps(&self) -> usize {
        self.reps.unwrap_or(if self.quick { 3 } else { 5 }) as usize
    }

    fn prefill(&self) -> u64 {
        self.prefill.unwrap_or(if self.quick { 8 } else { 128 })
    }

    fn steps(&self) -> u64 {
        self.steps.unwrap_or(if self.quick { 2 } else { 8 })
    }

    /// The session's calls.
    fn calls(&self) -> Vec<comet_ir::DimEnv> {
        model::call_envs(self.prefill(), self.steps())
    }

    fn dealer(&self) -> Result<&str, String> {
        (self.dealer.as_deref()).ok_or_else(|| "this part needs --dealer ADDR".into())
    }
}

/// A part of the benchmark.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// The share and f64 matmuls.
    Matmul,
    /// The session with both parties and the dealer in one process.
    Inprocess,
    /// The dealer service of the TCP session.
    #[value(hide = true)]
    Dealer,
    /// Party 0 of the TCP session.
    #[value(hide = true)]
    Party0,
    /// Party 1 of the TCP session.
    #[value(hide = true)]
    Party1,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Matmul => "matmul",
            Part::Inprocess => "inprocess",
            Part::Dealer => "dealer",
            Part::Party0 => "party0",
            Part::Party1 => "party1",
        }
    }
}

/// Runs the command.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    let args = match &args.what {
        What::Runtime(a) => a,
        What::Approx(a) => return crate::bench_approx::run(a),
        What::Sparsity(a) => return crate::bench_sparsity::run(a),
        What::Kv(a) => return crate::bench_kv::run(a),
        What::Heads(a) => return crate::bench_heads::run(a),
    };
    match args.only {
        Some(part) => {
            let v = run_part(args, part)?;
            println!("{}", serde_json::to_string(&v).map_err(|e| e.to_string())?);
            Ok(())
        }
        None => run_all(args),
    }
}

fn run_part(args: &RuntimeArgs, part: Part) -> Result<Value, String> {
    // if memory runs out, the kernel ends a benchmark process rather than other work
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    match part {
        Part::Matmul => {
            let mut rows = Vec::new();
            for (shape, what) in matmul::shapes(args.quick) {
                let r = matmul::measure(shape, what, args.reps(), args.seed)?;
                let (m, k, n) = r.shape;
                rows.push(json!({
                    "m": m, "k": k, "n": n, "what": r.what,
                    "share_s": r.share_s, "f64_s": r.f64_s,
                    "share_min_s": r.share_min_s, "f64_min_s": r.f64_min_s,
                    "one_product_s": r.product_s,
                }));
            }
            Ok(json!({ "threads": rayon_threads(), "rows": rows }))
        }
        Part::Inprocess => scenario::in_process(args),
        Part::Dealer => scenario::dealer(args),
        Part::Party0 => scenario::party(args, 0, args.dealer()?, None),
        Part::Party1 => scenario::party(args, 1, args.dealer()?, args.connect),
    }
}

/// The threads of rayon's global pool (the ring products' parallelism).
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(cores)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A child process running `part`.
fn child(args: &RuntimeArgs, part: Part) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut c = Command::new(exe);
    c.args(["bench", "runtime", "--only", part.name()]);
    c.args(["--seed", &args.seed.to_string()]);
    c.args(["--prefill", &args.prefill().to_string()]);
    c.args(["--steps", &args.steps().to_string()]);
    c.args(["--reps", &args.reps().to_string()]);
    c.args(["--mask-cache", &args.mask_cache.to_string()]);
    c.args(["--approx", &args.approx.to_string()]);
    if args.quick {
        c.arg("--quick");
    }
    if let Some(m) = &args.model {
        c.arg("--model").arg(m);
    }
    c.stdin(Stdio::null()).stderr(Stdio::inherit());
    Ok(c)
}

/// The JSON line a finished child printed last.
fn collect(name: &str, mut c: Child, mut out: impl Read) -> Result<Value, String> {
    let mut text = String::new();
    let read = out.read_to_string(&mut text);
    let status = c.wait().map_err(|e| format!("{name}: {e}"))?;
    read.map_err(|e| format!("{name}: reading its output: {e}"))?;
    if !status.success() {
        return Err(format!("{name} failed ({status}{})", failure_hint(&status)));
    }
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(line).map_err(|e| format!("{name}: no JSON line in its output: {e}"))
}

/// What a child's failure suggests: a SIGKILL is most likely the kernel's out-of-memory
/// killer; otherwise the child said why.
fn failure_hint(status: &std::process::ExitStatus) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(9) {
            return ": killed, most likely by the kernel for want of memory";
        }
    }
    let _ = status;
    "; its messages are above"
}

fn spawn(name: &str, mut c: Command) -> Result<(Child, std::process::ChildStdout), String> {
    let mut child = (c.stdout(Stdio::piped()).spawn()).map_err(|e| format!("{name}: {e}"))?;
    let out = child.stdout.take().expect("piped");
    Ok((child, out))
}

fn run_child(name: &str, c: Command) -> Result<Value, String> {
    let (child, out) = spawn(name, c)?;
    collect(name, child, out)
}

/// Reads a child's first line, `listening ADDR`: the address it serves on.
fn listening(
    name: &str,
    c: &mut Child,
    out: &mut BufReader<std::process::ChildStdout>,
) -> Result<String, String> {
    let mut first = String::new();
    let _ = out.read_line(&mut first);
    match first.trim().strip_prefix("listening ") {
        Some(addr) => Ok(addr.to_string()),
        None => {
            let _ = c.kill();
            let _ = c.wait();
            Err(format!(
                "{name} did not start listening (its messages are above)"
            ))
        }
    }
}

/// Stops a child that is still running (after another part failed).
fn stop(c: &mut Child) {
    if matches!(c.try_wait(), Ok(None)) {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The TCP session: the dealer service, party 0 (which prints its address) and party 1,
/// three processes.
fn run_tcp(args: &RuntimeArgs) -> Result<Value, String> {
    eprintln!("-- TCP: the dealer service, party 0 and party 1, one process each, over 127.0.0.1");
    let (mut d, out_d) = spawn("the dealer", child(args, Part::Dealer)?)?;
    let mut out_d = BufReader::new(out_d);
    let dealer = listening("the dealer", &mut d, &mut out_d)?;
    let mut c0 = child(args, Part::Party0)?;
    c0.args(["--dealer", &dealer]);
    let (mut p0, out0) = spawn("party 0", c0)?;
    let mut out0 = BufReader::new(out0);
    let addr = match listening("party 0", &mut p0, &mut out0) {
        Ok(a) => a,
        Err(e) => {
            stop(&mut d);
            return Err(e);
        }
    };
    let mut c1 = child(args, Part::Party1)?;
    c1.args(["--dealer", &dealer, "--connect", &addr]);
    let p1 = run_child("party 1", c1);
    // a party 0 or dealer still running after party 1 failed is stopped: party 1's
    // failure is the one to report
    if p1.is_err() {
        stop(&mut p0);
        stop(&mut d);
    }
    let p0 = collect("party 0", p0, out0);
    let dl = collect("the dealer", d, out_d);
    Ok(json!({ "dealer": dl?, "party0": p0?, "party1": p1? }))
}

/// Every part, each in a child process; then the table or the JSON.
fn run_all(args: &RuntimeArgs) -> Result<(), String> {
    let machine = machine();
    eprintln!("machine: {}", render::machine_line(&machine));
    eprintln!("-- share matmul, all cores, then one thread");
    let matmul = run_child("the matmul part", child(args, Part::Matmul)?)?;
    let mut one = child(args, Part::Matmul)?;
    one.env("RAYON_NUM_THREADS", "1");
    let matmul_1t = run_child("the matmul part (one thread)", one)?;
    let rows = matmul_rows(&matmul, &matmul_1t);
    eprintln!("-- the session, both parties and the dealer in one process");
    let in_process = run_child("the in-process part", child(args, Part::Inprocess)?);
    let tcp = run_tcp(args);
    let mut failures = Vec::new();
    let as_value = |r: &Result<Value, String>, failures: &mut Vec<String>| match r {
        Ok(v) => v.clone(),
        Err(e) => {
            failures.push(e.clone());
            json!({ "error": e })
        }
    };
    let report = json!({
        "machine": machine,
        "model": model_name(args),
        "quick": args.quick,
        "prefill": args.prefill(),
        "steps": args.steps(),
        "reps": args.reps(),
        "matmul": rows,
        "inprocess": as_value(&in_process, &mut failures),
        "tcp": as_value(&tcp, &mut failures),
    });
    let report = render::with_goals(report);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", render::render(&report));
    }
    match failures.is_empty() {
        true => Ok(()),
        false => Err(failures.join("; ")),
    }
}

fn model_name(args: &RuntimeArgs) -> String {
    match &args.model {
        Some(p) => p.display().to_string(),
        None if args.quick => format!("tiny GPT-2 ({})", model::TINY_GPT2),
        None => "gpt2 (examples/gpt2.model)".into(),
    }
}

/// The rows of both matmul runs side by side, with the ratios.
fn matmul_rows(all: &Value, one: &Value) -> Vec<Value> {
    let empty = Vec::new();
    let rows = all["rows"].as_array().unwrap_or(&empty);
    let rows_1t = one["rows"].as_array().unwrap_or(&empty);
    (rows.iter().zip(rows_1t))
        .map(|(r, r1)| {
            let (share, share_1t, dot) = (f(&r["share_s"]), f(&r1["share_s"]), f(&r["f64_s"]));
            json!({
                "m": r["m"], "k": r["k"], "n": r["n"], "what": r["what"],
                "threads": all["threads"],
                "share_s": share,
                "share_1t_s": share_1t,
                "f64_s": dot,
                "ratio": share / dot,
                "one_product_s": r["one_product_s"],
                "share_min_s": r["share_min_s"],
                "f64_min_s": r["f64_min_s"],
                "ratio_best": f(&r["share_min_s"]) / f(&r["f64_min_s"]),
                "ratio_1t": share_1t / dot,
            })
        })
        .collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = (cpuinfo.lines())
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, v)| v.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = (meminfo.lines())
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    let available = (meminfo.lines())
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: f64 =
        (load.split_whitespace().next()).map_or(f64::NAN, |l| l.parse().unwrap_or(f64::NAN));
    json!({
        "cpu": cpu,
        "cores": cores(),
        "load_average_1min": load,
        "memory_bytes": mem,
        "memory_available_bytes": available,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}
