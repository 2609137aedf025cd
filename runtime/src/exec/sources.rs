//! What a call reads besides its program — the caller's inputs and weights and the KV
//! cache — and the checks every backend makes on them: input names, input and weight
//! shapes at the call's [`DimEnv`], and what a `cache_read` finds.

use std::collections::HashMap;

use comet_ir::{Dim, DimEnv, Program};
use ndarray::ArrayD;

use super::{At, Cache, CacheError, ExecError};

/// Real-valued tensors by name (inputs, or weights by qualified weight name).
pub type Tensors = HashMap<String, ArrayD<f64>>;

/// A shape's sizes at `env`.
pub fn dims(shape: &[Dim], env: DimEnv) -> Vec<usize> {
    shape.iter().map(|d| d.eval(env) as usize).collect()
}

/// Checks that every name in `given` is a declared input of `program` (the first unknown
/// name in sorted order is reported).
///
/// # Errors
/// [`ExecError::UnknownInput`], listing the declared inputs.
pub fn check_input_names<'n>(
    program: &Program,
    given: impl Iterator<Item = &'n String>,
) -> Result<(), ExecError> {
    let info = &program.info;
    let mut unknown: Vec<&String> = given.filter(|n| info.input(n).is_none()).collect();
    unknown.sort();
    match unknown.first() {
        None => Ok(()),
        Some(name) => Err(ExecError::UnknownInput {
            name: (*name).clone(),
            declared: (info.inputs.iter())
                .map(|i| format!("`{}`", i.name))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Input `name` from `inputs`, checked against its `expected` shape at `env`.
///
/// # Errors
/// [`ExecError::MissingInput`] or [`ExecError::InputShape`].
pub fn input<'a>(
    inputs: &'a Tensors,
    name: &str,
    expected: Vec<usize>,
    env: DimEnv,
) -> Result<&'a ArrayD<f64>, ExecError> {
    let Some(x) = inputs.get(name) else {
        let name = name.into();
        return Err(ExecError::MissingInput { name, expected });
    };
    if x.shape() != expected.as_slice() {
        return Err(ExecError::InputShape {
            name: name.into(),
            expected,
            actual: x.shape().to_vec(),
            seq: env.seq,
            past: env.past,
        });
    }
    Ok(x)
}

/// Weight `name` as found (`w`), checked against its `expected` shape.
///
/// # Errors
/// [`ExecError::MissingWeight`] (naming its checkpoint tensor) or
/// [`ExecError::WeightShape`].
pub fn weight<'a>(
    program: &Program,
    name: &str,
    w: Option<&'a ArrayD<f64>>,
    expected: Vec<usize>,
) -> Result<&'a ArrayD<f64>, ExecError> {
    let Some(w) = w else {
        let info = program.info.weight(name);
        let tensor = info.map_or(name, |i| i.tensor.as_str()).to_string();
        let name = name.into();
        return Err(ExecError::MissingWeight { name, tensor });
    };
    if w.shape() != expected.as_slice() {
        return Err(ExecError::WeightShape {
            name: name.into(),
            expected,
            actual: w.shape().to_vec(),
        });
    }
    Ok(w)
}

/// Checks every entry of weight `name` against the bound the plan was compiled for (its
/// truncation policy's `weight_bound`, on which its truncations' failure bound and its
/// comparison widths rest), if it has one; a NaN is beyond any bound.
///
/// # Errors
/// [`ExecError::WeightBound`] with the largest entry and a bound that holds.
pub fn within_bound(program: &Program, name: &str, w: &ArrayD<f64>) -> Result<(), ExecError> {
    within_stats(program, name, w)?;
    let Some(bound) = program.options.truncation.map(|t| t.weight_bound) else {
        return Ok(());
    };
    // the entry of largest magnitude, in one pass; a NaN, once met, stays the worst
    let value = w
        .iter()
        .fold(0f64, |v, &x| match v.is_nan() || x.abs() <= v.abs() {
            true => v,
            false => x,
        });
    let worst = value.abs();
    if worst <= bound {
        return Ok(());
    }
    let tensor = program
        .info
        .weight(name)
        .map_or(name, |i| i.tensor.as_str());
    Err(ExecError::WeightBound {
        name: name.into(),
        tensor: tensor.into(),
        value,
        bound,
        suggested: 2f64.powf(worst.log2().floor() + 1.0),
    })
}

/// Checks weight `name` against the statistics the plan declares for it, if any
/// ([`comet_ir::WeightStats`], from `comet compile --weights`).
///
/// # Errors
/// [`ExecError::WeightStats`] naming the statistic exceeded.
pub fn within_stats(program: &Program, name: &str, w: &ArrayD<f64>) -> Result<(), ExecError> {
    let Some(s) = (program.options.weight_stats.as_ref()).and_then(|m| m.get(name)) else {
        return Ok(());
    };
    crate::weights::stats::check(w, s).map_err(|(what, value, bound)| {
        let tensor = program
            .info
            .weight(name)
            .map_or(name, |i| i.tensor.as_str());
        ExecError::WeightStats {
            name: name.into(),
            tensor: tensor.into(),
            what,
            value,
            bound,
        }
    })
}

/// What `cache_read { slot }` (at `at`) reads: `None` at `past = 0` (a new sequence: the
/// value is `[h, 0, k]` zeros, whatever the cache holds), else the slot's valid contents
/// of the `expected` shape `[h, past, k]`.
///
/// # Errors
/// [`ExecError::Cache`] if the slot is empty, has a hole, or has another length.
pub fn cache_read<'a, T>(
    cache: &'a Cache<T>,
    slot: u32,
    expected: &[usize],
    env: DimEnv,
    at: impl Fn() -> At,
) -> Result<Option<&'a ArrayD<T>>, ExecError> {
    let past = env.past;
    if past == 0 {
        return Ok(None);
    }
    let fail = |message: String| ExecError::Cache {
        at: at(),
        slot,
        message,
    };
    let x = cache.read(slot).map_err(|e| match e {
        CacheError::Empty { .. } => fail(format!(
            "empty, but past = {past}: run the earlier calls (prefill) with this cache first"
        )),
        CacheError::Hole { head, position, .. } => fail(format!(
            "head {head}, position {position} is not valid (a hole that was not refilled)"
        )),
    })?;
    if x.shape() != expected {
        let held = x.shape();
        return Err(fail(format!(
            "holds {held:?}, but past = {past} needs {expected:?}"
        )));
    }
    Ok(Some(x))
}
