//! `comet._native`: the Python module's Rust half. Each function calls the same library
//! functions as the CLI (`comet_compiler::compile`, `comet_compiler::inspect`, the `comet`
//! library's in-process run and party roles, `deal_files`), without a subprocess; every
//! failure is a `comet.CometError` carrying the library's message. `comet/__init__.py`
//! (in `pysrc/`) turns the JSON strings returned here into dicts.
//!
//! Long calls (compiling, running, dealing) release the GIL, so that the two parties of a
//! two-process run can also be two Python threads.

use comet::run::{RunArgs, check_interface, deal_files, in_process, load_plan};
use comet_compiler::inspect::{self, InspectOptions, NetProfile};
use comet_compiler::{CompileError, Options};
use comet_ir::{ApproxConfig, Comparison, Program};
use numpy::IntoPyArray;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyList;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

create_exception!(
    _native,
    CometError,
    PyException,
    "A Comet failure: the message names the place and what was expected."
);

fn err(msg: impl std::fmt::Display) -> PyErr {
    CometError::new_err(msg.to_string())
}

/// A compiled protocol plan (`comet compile -o PLAN`).
#[pyclass(module = "comet._native", frozen)]
struct Plan {
    program: Arc<Program>,
    /// Where it was loaded from or last saved to (names it in reports).
    name: String,
}

#[pymethods]
impl Plan {
    /// Reads a plan file (JSON, as written by `comet compile -o` or `Plan.save`).
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Plan> {
        let program = load_plan(&path).map_err(err)?;
        Ok(Plan {
            program: Arc::new(program),
            name: path.display().to_string(),
        })
    }

    /// Writes the plan file (JSON, versioned), as `comet compile -o PATH` does.
    fn save(&self, path: PathBuf) -> PyResult<()> {
        let text = comet_ir::plan::write_plan_json(&self.program).map_err(err)?;
        std::fs::write(&path, text)
            .map_err(|e| err(format!("cannot write `{}`: {e}", path.display())))
    }

    /// The model's name.
    #[getter]
    fn model(&self) -> String {
        self.program.info.name.clone()
    }

    /// The name reports give the plan: its file, or `<model>.plan` before it is saved.
    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    /// The plan's text form (`comet show PLAN`); `emit="ir"`: the graph only.
    #[pyo3(signature = (emit = "plan"))]
    fn text(&self, emit: &str) -> PyResult<String> {
        match emit {
            "plan" => Ok(comet_ir::print::print_plan(&self.program)),
            "ir" => Ok(comet_ir::print::print_graph(&self.program)),
            other => Err(err(format!("emit: expected `plan` or `ir`, not `{other}`"))),
        }
    }

    /// The plan file's JSON text.
    fn to_json(&self) -> PyResult<String> {
        comet_ir::plan::write_plan_json(&self.program).map_err(err)
    }

    fn __repr__(&self) -> String {
        format!(
            "Plan(model={:?}, approx={:?}, comparison={:?}, nodes={})",
            self.program.info.name,
            self.program.options.approx.to_string(),
            self.program.options.comparison,
            self.program.graph.len()
        )
    }
}

/// A plan given as a `Plan` or a path to a plan file.
fn plan_of(plan: &Bound<'_, PyAny>) -> PyResult<(Arc<Program>, String)> {
    if let Ok(p) = plan.cast::<Plan>() {
        let p = p.get();
        return Ok((p.program.clone(), p.name.clone()));
    }
    let path: PathBuf = plan
        .extract()
        .map_err(|_| err("plan: expected a comet.Plan or the path of a plan file"))?;
    let program = load_plan(&path).map_err(err)?;
    Ok((Arc::new(program), path.display().to_string()))
}

/// Compiles a `.model` file to a plan (`comet compile MODEL`): every pass, with the
/// verifier if `verify`.
#[pyfunction]
#[pyo3(signature = (model_path, *, approx = "lut", comparison = "fss", sparsity = "off",
                    kv_openings = "cached", verify = false))]
fn compile(
    py: Python<'_>,
    model_path: PathBuf,
    approx: &str,
    comparison: &str,
    sparsity: &str,
    kv_openings: &str,
    verify: bool,
) -> PyResult<Plan> {
    let approx: ApproxConfig = approx.parse().map_err(|e| err(format!("approx: {e}")))?;
    let comparison = match comparison {
        "fss" => Comparison::Fss,
        "gmw" => Comparison::Gmw,
        other => {
            return Err(err(format!(
                "comparison: expected `fss` or `gmw`, not `{other}`"
            )));
        }
    };
    let sparsity = comet_compiler::passes::sparsify::parse_spec(sparsity)
        .map_err(|e| err(format!("sparsity: {e}")))?;
    let cache_openings = match kv_openings {
        "cached" => true,
        "reopened" => false,
        other => {
            return Err(err(format!(
                "kv_openings: expected `cached` or `reopened`, not `{other}`"
            )));
        }
    };
    let opts = Options {
        verify: verify || cfg!(debug_assertions),
        print_after: None,
        comparison,
        approx,
        sparsity,
        cache_openings,
        ..Options::default()
    };
    let source = std::fs::read_to_string(&model_path)
        .map_err(|e| err(format!("cannot read model `{}`: {e}", model_path.display())))?;
    let name = model_path.display().to_string();
    let compiled = py
        .detach(|| comet_compiler::compile(&source, &name, &opts))
        .map_err(|e| match e {
            CompileError::Source(d) => err(d.render_plain()),
            other => err(other),
        })?;
    let program = compiled.program;
    let name = format!("{}.plan", program.info.name);
    Ok(Plan {
        program: Arc::new(program),
        name,
    })
}

/// `comet inspect PLAN [--compare OTHER] [--leakage] [--svg FILE] --json`: the report as
/// JSON text.
#[pyfunction]
#[pyo3(signature = (plan, *, prompt = 128, generate = 1, net = "lan",
                    compute_rate = inspect::DEFAULT_COMPUTE_RATE,
                    weight_bound = comet_compiler::range::DEFAULT_WEIGHT_BOUND,
                    compare = None, leakage = false, svg = None))]
#[allow(clippy::too_many_arguments)]
fn inspect_json(
    plan: &Bound<'_, PyAny>,
    prompt: u64,
    generate: u64,
    net: &str,
    compute_rate: f64,
    weight_bound: f64,
    compare: Option<&Bound<'_, PyAny>>,
    leakage: bool,
    svg: Option<PathBuf>,
) -> PyResult<String> {
    let (program, name) = plan_of(plan)?;
    if leakage {
        if compare.is_some() || svg.is_some() {
            return Err(err("leakage=True: compare and svg do not apply"));
        }
        let report = inspect::leakage::leakage(&program, &name);
        return Ok(inspect::to_json(&report));
    }
    let net: NetProfile = net.parse().map_err(|e| err(format!("net: {e}")))?;
    let opts = InspectOptions {
        prompt,
        generate,
        net,
        compute_rate,
        weight_bound,
    };
    let this = inspect::report(&program, &name, &opts).map_err(err)?;
    let (json, plot) = match compare {
        None => (
            inspect::to_json(&this),
            svg.as_ref().map(|_| inspect::svg(&this)),
        ),
        Some(other) => {
            let (other, other_name) = plan_of(other)?;
            let other = inspect::report(&other, &other_name, &opts).map_err(err)?;
            let both = inspect::compare(this, other);
            (
                inspect::to_json(&both),
                svg.as_ref().map(|_| inspect::svg_compare(&both)),
            )
        }
    };
    if let (Some(path), Some(plot)) = (svg, plot) {
        let plot = plot.map_err(err)?;
        std::fs::write(&path, plot)
            .map_err(|e| err(format!("cannot write `{}`: {e}", path.display())))?;
    }
    Ok(json)
}

/// `run`'s prompt: text or token ids.
#[derive(FromPyObject)]
enum Prompt {
    Text(String),
    Ids(Vec<u64>),
}

fn addr(what: &str, a: Option<String>) -> PyResult<Option<SocketAddr>> {
    a.map(|a| {
        a.parse().map_err(|e| {
            err(format!(
                "{what}: `{a}` is not an address such as 127.0.0.1:7070 ({e})"
            ))
        })
    })
    .transpose()
}

/// The combinations `comet run`'s argument parser refuses.
fn check_roles(a: &RunArgs) -> Result<(), String> {
    let party_only = [
        ("listen", a.listen.is_some()),
        ("connect", a.connect.is_some()),
        ("material", a.material.is_some()),
        ("dealer", a.dealer.is_some()),
        ("insecure_plaintext", a.insecure_plaintext),
    ];
    if a.party.is_none()
        && let Some((name, _)) = party_only.iter().find(|(_, set)| *set)
    {
        return Err(format!(
            "{name} applies to one party of a two-process run: give party=0 or party=1"
        ));
    }
    if a.listen.is_some() && a.connect.is_some() {
        return Err("give listen (this party waits) or connect, not both".into());
    }
    if a.material.is_some() && a.dealer.is_some() {
        return Err("give material (a file of comet.deal) or dealer, not both".into());
    }
    if a.dealer.is_none() && (a.prompt_len.is_some() || a.dealer_key.is_some()) {
        return Err("prompt_len and dealer_key apply with dealer=ADDR only".into());
    }
    if a.key.is_some() && a.dealer_key.is_none() {
        return Err("key (this party's key file) needs dealer_key".into());
    }
    if a.prompt_len == Some(0) {
        return Err("prompt_len must be at least 1".into());
    }
    Ok(())
}

/// `comet run PLAN ... --json`, in this process: both parties (`party=None`) or one
/// (`party=0|1`, over TCP). Returns the `--json` object's text and the logits this side
/// received, one array `[positions, vocab]` per call.
#[pyfunction]
#[pyo3(signature = (plan, *, weights = None, tokenizer = None, prompt = None, generate = None,
                    temperature = 0.0, sample_seed = 0, seed = None, predictor = None,
                    party = None, listen = None, connect = None, material = None,
                    dealer = None, dealer_key = None, key = None, prompt_len = None,
                    timeout = 60.0, call_timeout = 600.0, insecure_plaintext = false,
                    accept_leakage = "none"))]
#[allow(clippy::too_many_arguments)]
fn run_json<'py>(
    py: Python<'py>,
    plan: &Bound<'py, PyAny>,
    weights: Option<PathBuf>,
    tokenizer: Option<PathBuf>,
    prompt: Option<Prompt>,
    generate: Option<usize>,
    temperature: f64,
    sample_seed: u64,
    seed: Option<u64>,
    predictor: Option<PathBuf>,
    party: Option<u8>,
    listen: Option<String>,
    connect: Option<String>,
    material: Option<PathBuf>,
    dealer: Option<String>,
    dealer_key: Option<String>,
    key: Option<PathBuf>,
    prompt_len: Option<u64>,
    timeout: f64,
    call_timeout: f64,
    insecure_plaintext: bool,
    accept_leakage: &str,
) -> PyResult<(String, Bound<'py, PyList>)> {
    let (program, name) = plan_of(plan)?;
    if let Some(p) = party
        && p > 1
    {
        return Err(err(format!(
            "party: expected 0 (the server) or 1 (the client), not {p}"
        )));
    }
    if generate == Some(0) {
        return Err(err("generate must be at least 1"));
    }
    let (prompt_ids, prompt) = match prompt {
        None => (None, None),
        Some(Prompt::Text(t)) => (None, Some(t)),
        Some(Prompt::Ids(ids)) => (Some(ids), None),
    };
    let args = RunArgs {
        plan: PathBuf::from(name),
        weights,
        predictor,
        head_predictor: None,
        kv_refill: comet::run::KvRefill::Merged,
        prompt_ids,
        prompt,
        tokenizer,
        generate,
        temperature,
        sample_seed,
        seed,
        json: true,
        check_plain: false,
        quiet: true,
        party,
        listen: addr("listen", listen)?,
        connect: addr("connect", connect)?,
        material,
        dealer,
        prompt_len,
        timeout,
        call_timeout,
        dealer_key,
        key,
        insecure_plaintext,
        accept_leakage: accept_leakage
            .parse()
            .map_err(|e| err(format!("accept_leakage: {e}")))?,
    };
    check_roles(&args).map_err(err)?;
    let (json, logits) = py
        .detach(|| -> Result<_, String> {
            check_interface(&program)?;
            let (tokens, calls, tokenizer, info) = match args.party {
                None => in_process(&program, &args)?,
                Some(_) => comet::remote::party(&program, &args)?,
            };
            let text = comet::run::text(&tokens, tokenizer.as_ref(), &info)?;
            let json = comet::report::json(&tokens, &text, &calls, &info);
            let logits: Vec<_> = calls.into_iter().filter_map(|c| c.logits).collect();
            Ok((json, logits))
        })
        .map_err(err)?;
    let arrays = PyList::empty(py);
    for l in logits {
        arrays.append(l.into_pyarray(py))?;
    }
    Ok((json, arrays))
}

/// `comet deal PLAN --out OUT --prompt-len N [--generate M]`: the material files of one
/// session (an encoder's plan: one call). Returns the two files' paths and the bytes dealt
/// per call (both parties).
#[pyfunction]
#[pyo3(signature = (plan, out, *, prompt_len, generate = None))]
fn deal(
    py: Python<'_>,
    plan: &Bound<'_, PyAny>,
    out: PathBuf,
    prompt_len: u64,
    generate: Option<usize>,
) -> PyResult<(Vec<PathBuf>, Vec<u64>)> {
    let (program, _) = plan_of(plan)?;
    if prompt_len == 0 || generate == Some(0) {
        return Err(err("prompt_len and generate must be at least 1"));
    }
    let calls = comet::generate::session_calls(&program, prompt_len, generate).map_err(err)?;
    let dealt = py
        .detach(|| deal_files(&program, &calls, &out, |_, _| {}))
        .map_err(err)?;
    Ok((dealt.paths.to_vec(), dealt.per_call))
}

/// `comet dealer PLAN --listen ADDR ...`: the dealer service, in this process, until it has
/// served `sessions` sessions (releasing the GIL meanwhile). `party_keys`: `(party,
/// public key or .pub file)` pairs it pins. Returns one JSON object per session: its id,
/// whether it ended well, its calls (sizes, bytes streamed to each party, bytes dealt and
/// the plan's estimate) and its wall time.
#[pyfunction]
#[pyo3(signature = (plan, listen, *, key = None, party_keys = Vec::new(), any_party = false,
                    sessions = 1, timeout = 300.0,
                    max_tokens = comet_runtime::dealer::service::DEFAULT_MAX_TOKENS,
                    mask_cache = comet_runtime::dealer::service::DEFAULT_MASK_BUDGET >> 20,
                    insecure_plaintext = false, quiet = true))]
#[allow(clippy::too_many_arguments)]
fn dealer(
    py: Python<'_>,
    plan: &Bound<'_, PyAny>,
    listen: String,
    key: Option<PathBuf>,
    party_keys: Vec<(u8, String)>,
    any_party: bool,
    sessions: u64,
    timeout: f64,
    max_tokens: u64,
    mask_cache: u64,
    insecure_plaintext: bool,
    quiet: bool,
) -> PyResult<Vec<String>> {
    let (program, name) = plan_of(plan)?;
    if sessions == 0 {
        return Err(err("sessions must be at least 1"));
    }
    if insecure_plaintext && (key.is_some() || !party_keys.is_empty()) {
        return Err(err("insecure_plaintext: key and party_keys do not apply"));
    }
    if !insecure_plaintext && key.is_none() {
        return Err(err(
            "key: the dealer's key file (created if missing; comet.keygen) is required \
             unless insecure_plaintext=True",
        ));
    }
    if any_party && !party_keys.is_empty() {
        return Err(err("give party_keys or any_party=True, not both"));
    }
    let party_key = (party_keys.iter())
        .map(|(p, k)| {
            comet_runtime::transport::PartyKey::parse(&format!("{p}={k}"))
                .map_err(|e| err(format!("party_keys: {e}")))
        })
        .collect::<PyResult<Vec<_>>>()?;
    let args = comet::dealer::DealerArgs {
        plan: PathBuf::from(name),
        listen,
        sessions: Some(sessions),
        timeout,
        max_tokens,
        mask_cache,
        key,
        party_key,
        any_party,
        insecure_plaintext,
        quiet,
    };
    let reports = py
        .detach(|| comet::dealer::serve(&program, &args))
        .map_err(err)?;
    let estimate = |env| comet::generate::estimate(&program, env).2;
    Ok(reports
        .iter()
        .map(|r| {
            let calls: Vec<serde_json::Value> = (r.calls.iter())
                .map(|c| {
                    serde_json::json!({
                        "seq": c.env.seq, "past": c.env.past,
                        "streamed_bytes": c.streamed,
                        "offline_bits": 8 * c.offline_bytes,
                        "estimated_offline_bits": estimate(c.env),
                        "setup_bits": 8 * c.setup_bytes,
                    })
                })
                .collect();
            let session: String = r.session.iter().map(|b| format!("{b:02x}")).collect();
            serde_json::json!({
                "session": session,
                "ok": r.outcome.is_ok(),
                "error": r.outcome.as_ref().err().map(|e| e.to_string()),
                "calls": calls,
                "seconds": r.elapsed.as_secs_f64(),
            })
            .to_string()
        })
        .collect())
}

/// `comet import DIR [--name NAME]`: the `.model` source of a Hugging Face folder, its
/// `model_type`, the number of weights it reads and whether their names and shapes were
/// checked against a checkpoint in the folder.
#[pyfunction]
#[pyo3(signature = (dir, *, name = None))]
fn import_folder(dir: PathBuf, name: Option<String>) -> PyResult<(String, String, usize, bool)> {
    if !dir.is_dir() {
        return Err(err(format!(
            "`{}` is not a folder: give a Hugging Face checkpoint folder with config.json",
            dir.display()
        )));
    }
    let i = comet_compiler::import::import_dir(&dir, name.as_deref()).map_err(err)?;
    Ok((i.source, i.model_type, i.weights, i.checked))
}

/// `comet keygen --out FILE`: a static key pair (mode 0600, never over an existing file)
/// and `FILE.pub`; returns the public key.
#[pyfunction]
fn keygen(out: PathBuf) -> PyResult<String> {
    comet::dealer::write_keypair(&out).map_err(err)
}

/// The module `comet._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CometError", m.py().get_type::<CometError>())?;
    m.add_class::<Plan>()?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(inspect_json, m)?)?;
    m.add_function(wrap_pyfunction!(run_json, m)?)?;
    m.add_function(wrap_pyfunction!(deal, m)?)?;
    m.add_function(wrap_pyfunction!(dealer, m)?)?;
    m.add_function(wrap_pyfunction!(keygen, m)?)?;
    m.add_function(wrap_pyfunction!(import_folder, m)?)?;
    Ok(())
}
