//! `comet bench runtime`: the runtime benchmark. Prints one table (or, with `--json`, one
//! JSON object) with
//! - the share matmul of the fixed-weight protocol, one party, against `ndarray`'s f64
//!   `dot` of the same shape ([`matmul`]);
//! - one decode step of GPT-2 small with random weights and a 128-token KV cache, both
//!   parties and the dealer in one process, and over loopback TCP with material files
//!   ([`scenario`]): the session's first call (with the once-per-session setup) and a
//!   second, steady-state decode step; time, measured and estimated bytes and rounds,
//!   and peak resident memory.
//!
//! Each part runs in a child process (this binary, `--only PART`) that prints one JSON
//! line, so that each reports its own peak memory (`VmHWM`, reset before each call through
//! `/proc/self/clear_refs`); the parent collects them and prints the table.

mod matmul;
mod model;
mod scenario;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::report::bytes;

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
    /// Tokens in the KV cache before the first decode step (default: 128; with --quick, 8).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    past: Option<u64>,
    /// Seed of the random weights, KV cache, matrices and dealer.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run one part in this process and print its figures as one JSON line (the
    /// benchmark runs each part this way, in a child process of its own).
    #[arg(long, value_enum, value_name = "PART")]
    only: Option<Part>,
    /// The folder of the TCP session's material files (parts `deal`, `party0`, `party1`).
    #[arg(long, value_name = "DIR", hide = true)]
    dir: Option<PathBuf>,
    /// Where party 0 listens (part `party1`).
    #[arg(long, value_name = "ADDR", hide = true)]
    connect: Option<SocketAddr>,
}

impl RuntimeArgs {
    fn past(&self) -> u64 {
        self.past.unwrap_or(if self.quick { 8 } else { 128 })
    }

    fn reps(&self) -> usize {
        self.reps.unwrap_or(if self.quick { 3 } else { 5 }) as usize
    }

    fn dir(&self) -> Result<&Path, String> {
        self.dir
            .as_deref()
            .ok_or_else(|| "this part needs --dir".into())
    }
}

/// A part of the benchmark.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// The share and f64 matmuls.
    Matmul,
    /// The decode steps with both parties and the dealer in one process.
    Inprocess,
    /// The dealer of the TCP session (writes the material files to --dir).
    #[value(hide = true)]
    Deal,
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
            Part::Deal => "deal",
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
        Part::Deal => scenario::deal(args, args.dir()?),
        Part::Party0 => scenario::party(args, 0, args.dir()?, None),
        Part::Party1 => scenario::party(args, 1, args.dir()?, args.connect),
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

/// This process's peak and current resident memory, from `/proc/self/status`.
mod mem {
    fn field(name: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        (status.lines())
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Peak resident bytes since the start or the last [`reset_peak`] (`VmHWM`).
    pub fn peak() -> u64 {
        field("VmHWM")
    }

    /// Resident bytes now (`VmRSS`).
    pub fn rss() -> u64 {
        field("VmRSS")
    }

    /// CPU time this process used so far, all threads, user and system (`/proc/self/stat`,
    /// in ticks of 1/100 s).
    pub fn cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // the fields after the command name (which is in parentheses): utime is the 14th
        // field of the line, stime the 15th
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = (rest.split_whitespace())
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        f.get(11)
            .zip(f.get(12))
            .map_or(0.0, |(u, s)| (u + s) as f64 / 100.0)
    }

    /// Resets the peak to the current resident size (Linux: `5` to `clear_refs`).
    pub fn reset_peak() {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }

    /// Returns the allocator's free memory to the system (glibc's `malloc_trim`), so that
    /// a later peak counts what is in use rather than what was freed and kept.
    pub fn trim() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            unsafe extern "C" {
                fn malloc_trim(pad: usize) -> i32;
            }
            // SAFETY: glibc's malloc_trim only releases free pages of the allocator's
            // arenas; it has no preconditions.
            unsafe {
                malloc_trim(0);
            }
        }
    }
}

/// A child process running `part`.
fn child(args: &RuntimeArgs, part: Part) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut c = Command::new(exe);
    c.args(["bench", "runtime", "--only", part.name()]);
    c.args(["--seed", &args.seed.to_string()]);
    c.args(["--past", &args.past().to_string()]);
    c.args(["--reps", &args.reps().to_string()]);
    if args.quick {
        c.arg("--quick");
    }
    if let Some(m) = &args.model {
        c.arg("--model").arg(m);
    }
    if let Some(d) = &args.dir {
        c.arg("--dir").arg(d);
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

/// The TCP session: the dealer, then party 0 (which prints its address) and party 1.
fn run_tcp(args: &RuntimeArgs) -> Result<Value, String> {
    let dir = std::env::temp_dir().join(format!("comet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let args = RuntimeArgs {
        dir: Some(dir.clone()),
        ..args.clone()
    };
    let result = (|| {
        eprintln!("-- TCP: the dealer writes the material files");
        let deal = run_child("the dealer", child(&args, Part::Deal)?)?;
        eprintln!("-- TCP: party 0 and party 1, one process each, over 127.0.0.1");
        let (mut p0, out0) = spawn("party 0", child(&args, Part::Party0)?)?;
        let mut out0 = BufReader::new(out0);
        let mut first = String::new();
        let _ = out0.read_line(&mut first);
        let Some(addr) = first.trim().strip_prefix("listening ") else {
            let _ = p0.kill();
            let _ = p0.wait();
            return Err("party 0 did not start listening (its messages are above)".into());
        };
        let mut c1 = child(&args, Part::Party1)?;
        c1.args(["--connect", addr]);
        let p1 = run_child("party 1", c1);
        // a party 0 still running after party 1 failed is stopped: party 1's failure is
        // the one to report; a party 0 that ended first is the cause
        if p1.is_err() && matches!(p0.try_wait(), Ok(None)) {
            let _ = p0.kill();
            let _ = p0.wait();
            return Err(p1.expect_err("checked"));
        }
        let p0 = collect("party 0", p0, out0);
        Ok(json!({ "deal": deal, "party0": p0?, "party1": p1? }))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Every part, each in a child process; then the table or the JSON.
fn run_all(args: &RuntimeArgs) -> Result<(), String> {
    let machine = machine();
    eprintln!("machine: {}", machine_line(&machine));
    eprintln!("-- share matmul, all cores, then one thread");
    let matmul = run_child("the matmul part", child(args, Part::Matmul)?)?;
    let mut one = child(args, Part::Matmul)?;
    one.env("RAYON_NUM_THREADS", "1");
    let matmul_1t = run_child("the matmul part (one thread)", one)?;
    let rows = matmul_rows(&matmul, &matmul_1t);
    eprintln!("-- decode steps, both parties and the dealer in one process");
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
        "past": args.past(),
        "reps": args.reps(),
        "matmul": rows,
        "inprocess": as_value(&in_process, &mut failures),
        "tcp": as_value(&tcp, &mut failures),
    });
    let report = with_goals(report);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", render(&report));
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

fn machine_line(m: &Value) -> String {
    format!(
        "{}, {} cores (available_parallelism), {:.1} GiB RAM ({:.1} GiB available), {} build; \
         load average {:.2} at the start",
        m["cpu"].as_str().unwrap_or("?"),
        u(&m["cores"]),
        u(&m["memory_bytes"]) as f64 / (1u64 << 30) as f64,
        u(&m["memory_available_bytes"]) as f64 / (1u64 << 30) as f64,
        m["build"].as_str().unwrap_or("?"),
        f(&m["load_average_1min"])
    )
}

/// The goals.
const MATMUL_RATIO_GOAL: f64 = 4.0;
const DECODE_SECONDS_GOAL: f64 = 2.0;
const PEAK_BYTES_GOAL: u64 = 8_000_000_000;

/// Adds `goals`: whether each of the goals was met, judged on the all-core share
/// matmul, the steady-state decode step over TCP (the client's time), and the largest
/// peak of a process of that run.
fn with_goals(mut report: Value) -> Value {
    let rows = report["matmul"].as_array().cloned().unwrap_or_default();
    let worst = rows.iter().map(|r| f(&r["ratio"])).fold(0.0, f64::max);
    let worst_1t = rows.iter().map(|r| f(&r["ratio_1t"])).fold(0.0, f64::max);
    let tcp = &report["tcp"];
    let steady = tcp["party1"]["calls"][1]["seconds"].as_f64();
    let peaks = |v: &Value| -> Option<u64> {
        let calls = v["calls"].as_array()?;
        let p = calls.iter().map(|c| u(&c["peak_bytes"])).max()?;
        Some(p.max(u(&v["peak_bytes_before_calls"])))
    };
    let tcp_peak = [peaks(&tcp["party0"]), peaks(&tcp["party1"])]
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .map(|v| v.into_iter().max().unwrap_or(0));
    let inprocess_peak = peaks(&report["inprocess"]);
    report["goals"] = json!({
        "matmul_ratio_max": worst,
        "matmul_ratio_1t_max": worst_1t,
        "matmul_within_4x": !rows.is_empty() && worst <= MATMUL_RATIO_GOAL,
        "decode_seconds_tcp_steady": steady,
        "decode_under_2s": steady.is_some_and(|s| s < DECODE_SECONDS_GOAL),
        "peak_bytes_tcp_party_max": tcp_peak,
        "peak_bytes_inprocess": inprocess_peak,
        "peak_under_8gb_per_party": tcp_peak.is_some_and(|p| p < PEAK_BYTES_GOAL),
        "peak_under_8gb_inprocess": inprocess_peak.is_some_and(|p| p < PEAK_BYTES_GOAL),
    });
    report
}

fn ms(s: f64) -> String {
    match s {
        s if s >= 1.0 => format!("{s:.2} s"),
        s if s >= 1e-3 => format!("{:.1} ms", s * 1e3),
        s => format!("{:.1} µs", s * 1e6),
    }
}

fn gb(b: u64) -> String {
    format!("{:.2} GB", b as f64 / 1e9)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

/// The table.
fn render(r: &Value) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let empty = Vec::new();
    let _ = writeln!(o, "machine: {}", machine_line(&r["machine"]));
    let rows = r["matmul"].as_array().unwrap_or(&empty);
    let threads = rows.first().map_or(0, |x| u(&x["threads"]));
    let _ = writeln!(
        o,
        "\nshare matmul, one party's fixed-weight product C_p + E·B_p + (A_p + E)·F (weights \
         set up, packed: two ring products), against ndarray f64 dot (1 thread); median of {} \
         after a warm-up; 1 product: one of the two ring products alone; ratio: share / \
         f64; per core: share on 1 thread / f64; best: fastest share / fastest f64",
        u(&r["reps"])
    );
    let _ = writeln!(
        o,
        "{:<20} {:<26} {:>11} {:>12} {:>12} {:>10} {:>7} {:>9} {:>9}",
        "shape",
        "in GPT-2 small",
        "1 product",
        format!("share, {threads} thr"),
        "share, 1 thr",
        "f64",
        "ratio",
        "per core",
        "best"
    );
    for x in rows {
        let shape = format!(
            "{}×{} · {}×{}",
            u(&x["m"]),
            u(&x["k"]),
            u(&x["k"]),
            u(&x["n"])
        );
        let _ = writeln!(
            o,
            "{shape:<20} {:<26} {:>11} {:>12} {:>12} {:>10} {:>6.2}× {:>8.2}× {:>8.2}×",
            x["what"].as_str().unwrap_or(""),
            ms(f(&x["one_product_s"])),
            ms(f(&x["share_s"])),
            ms(f(&x["share_1t_s"])),
            ms(f(&x["f64_s"])),
            f(&x["ratio"]),
            f(&x["ratio_1t"]),
            f(&x["ratio_best"])
        );
    }
    let ip = &r["inprocess"];
    let tcp = &r["tcp"];
    let _ = writeln!(
        o,
        "\ndecode step of {} with random weights, KV cache of {} tokens: the session's first \
         call (with the once-per-session setup), then the next decode step",
        r["model"].as_str().unwrap_or("?"),
        u(&r["past"])
    );
    let row = |o: &mut String, cells: [&str; 11]| {
        let [
            run,
            call,
            time,
            cpu,
            online,
            rounds,
            dealer,
            setup,
            exact,
            before,
            peak,
        ] = cells;
        let _ = writeln!(
            o,
            "{run:<23} {call:<17} {time:>8} {cpu:>8} {online:>10} {rounds:>6} {dealer:>10} \
             {setup:>9} {exact:>5} {before:>8} {peak:>8}"
        );
    };
    row(
        &mut o,
        [
            "run", "call", "time", "cpu", "online", "rounds", "dealer", "setup", "= est", "mem",
            "peak",
        ],
    );
    let call_name = |k: usize, c: &Value| {
        format!(
            "{}: past {}{}",
            k + 1,
            u(&c["past"]),
            if k == 0 { " +setup" } else { "" }
        )
    };
    let calls_of = |v: &Value| v["calls"].as_array().cloned().unwrap_or_default();
    // the dealer's bits of call `k` (in process: measured; over TCP: the two files' parts)
    let call_rows = |o: &mut String, label: &str, v: &Value, offline: &dyn Fn(usize) -> u64| {
        if let Some(e) = v["error"].as_str() {
            let _ = writeln!(o, "{label:<23} failed: {e}");
            return;
        }
        for (k, c) in calls_of(v).iter().enumerate() {
            let (m, est) = (&c["measured"], &c["estimated"]);
            let exact = u(&m["online_bits"]) == u(&est["online_bits"])
                && u(&m["rounds"]) == u(&est["rounds"])
                && offline(k) == u(&est["offline_bits"]);
            let setup = u(&m["setup_bits"]);
            row(
                o,
                [
                    label,
                    &call_name(k, c),
                    &ms(f(&c["seconds"])),
                    &ms(f(&c["cpu_seconds"])),
                    &bytes(u(&m["online_bits"])),
                    &u(&m["rounds"]).to_string(),
                    &bytes(offline(k)),
                    &if setup > 0 { bytes(setup) } else { "-".into() },
                    yes(exact),
                    &gb(u(&c["rss_before_trimmed_bytes"])),
                    &gb(u(&c["peak_bytes"])),
                ],
            );
        }
    };
    // the plan's estimate at each call's sizes (the same for every run)
    let estimated = [ip, &tcp["party1"], &tcp["party0"]]
        .into_iter()
        .map(calls_of)
        .find(|c| !c.is_empty())
        .unwrap_or_default();
    for (k, c) in estimated.iter().enumerate() {
        let e = &c["estimated"];
        row(
            &mut o,
            [
                "plan's estimate",
                &call_name(k, c),
                "",
                "",
                &bytes(u(&e["online_bits"])),
                &u(&e["rounds"]).to_string(),
                &bytes(u(&e["offline_bits"])),
                "",
                "",
                "",
                "",
            ],
        );
    }
    let ip_calls = calls_of(ip);
    call_rows(&mut o, "in process, 2 parties", ip, &|k| {
        u(&ip_calls[k]["measured"]["offline_bits"])
    });
    if let Some(e) = tcp["error"].as_str() {
        let _ = writeln!(o, "{:<23} failed: {e}", "TCP loopback");
    } else {
        let (c0, c1) = (calls_of(&tcp["party0"]), calls_of(&tcp["party1"]));
        let both = |k: usize| {
            u(&c0[k]["measured"]["offline_bits"]) + u(&c1[k]["measured"]["offline_bits"])
        };
        call_rows(&mut o, "TCP, party 1 (client)", &tcp["party1"], &both);
        call_rows(&mut o, "TCP, party 0 (server)", &tcp["party0"], &both);
        for (k, c) in calls_of(&tcp["deal"]).iter().enumerate() {
            let exact = u(&c["dealt_bits"]) == u(&c["estimated_bits"]);
            let peak = match k {
                0 => gb(u(&tcp["deal"]["peak_bytes"])),
                _ => String::new(),
            };
            row(
                &mut o,
                [
                    "TCP, dealer (files)",
                    &call_name(k, c),
                    &ms(f(&c["seconds"])),
                    "",
                    "-",
                    "-",
                    &bytes(u(&c["dealt_bits"])),
                    "-",
                    yes(exact),
                    "",
                    &peak,
                ],
            );
        }
    }
    let _ = writeln!(
        o,
        "time: wall clock, the client's over TCP; in process it includes the dealer. cpu: the \
         process's CPU time during the call (all threads). mem: resident memory before the \
         call (freed memory returned); peak: the process's peak resident memory during the \
         call. In process: both parties and the dealer; over TCP: one party per process; the \
         dealer's peak is that of dealing both calls."
    );
    let g = &r["goals"];
    let _ = writeln!(
        o,
        "\n{}goals: share matmul within 4× of f64: {} (worst {:.2}×; per core {:.2}×); decode \
         step under 2 s on {} cores: {} ({} over TCP, steady state); peak memory under 8 GB: per \
         party {} ({}), in process {} ({})",
        match r["quick"].as_bool() {
            Some(true) => "(--quick: the goals are GPT-2 small's; figures of the tiny model) ",
            _ => "",
        },
        yes(g["matmul_within_4x"].as_bool().unwrap_or(false)),
        f(&g["matmul_ratio_max"]),
        f(&g["matmul_ratio_1t_max"]),
        u(&r["machine"]["cores"]),
        yes(g["decode_under_2s"].as_bool().unwrap_or(false)),
        g["decode_seconds_tcp_steady"]
            .as_f64()
            .map_or("-".into(), ms),
        yes(g["peak_under_8gb_per_party"].as_bool().unwrap_or(false)),
        g["peak_bytes_tcp_party_max"]
            .as_u64()
            .map_or("-".into(), gb),
        yes(g["peak_under_8gb_inprocess"].as_bool().unwrap_or(false)),
        g["peak_bytes_inprocess"].as_u64().map_or("-".into(), gb),
    );
    o
}
