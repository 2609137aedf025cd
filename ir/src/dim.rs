//! Symbolic dimensions.
//!
//! A [`Dim`] is affine in the two symbolic sizes every plan keeps open: `seq` (tokens
//! processed by this call: the prompt at prefill, 1 at a decode step) and `past` (tokens
//! already in the KV cache: 0 at prefill). Everything else is a compile-time constant, so
//! `c + a·seq + b·past` is all a shape ever needs (keys are `past + seq` long).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// `c + seq·seq_coeff + past·past_coeff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Dim {
    /// Coefficient of `seq`.
    pub seq: i64,
    /// Coefficient of `past`.
    pub past: i64,
    /// Constant part.
    pub c: i64,
}

/// A shape: one [`Dim`] per axis, outermost first.
pub type Shape = Vec<Dim>;

/// The values of the symbolic dimensions for one call of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DimEnv {
    /// Tokens processed by this call.
    pub seq: u64,
    /// Tokens already cached.
    pub past: u64,
}

impl Dim {
    /// The constant `c`.
    pub const fn constant(c: i64) -> Dim {
        Dim { seq: 0, past: 0, c }
    }
    /// The symbol `seq`.
    pub const SEQ: Dim = Dim {
        seq: 1,
        past: 0,
        c: 0,
    };
    /// The symbol `past`.
    pub const PAST: Dim = Dim {
        seq: 0,
        past: 1,
        c: 0,
    };

    /// The constant value, if the dimension has no symbolic part.
    pub fn as_const(self) -> Option<i64> {
        (self.seq == 0 && self.past == 0).then_some(self.c)
    }

    /// `self · k`.
    pub fn scale(self, k: i64) -> Dim {
        Dim {
            seq: self.seq * k,
            past: self.past * k,
            c: self.c * k,
        }
    }

    /// The value for concrete `seq` and `past` (clamped at zero), saturating instead of
    /// wrapping when it does not fit in an `i64`: callers that take sizes from a file check
    /// them first with [`Dim::try_eval`].
    pub fn eval(self, env: DimEnv) -> u64 {
        self.try_eval(env).unwrap_or(i64::MAX as u64)
    }

    /// The value for concrete `seq` and `past` (clamped at zero), computed with checked
    /// arithmetic.
    ///
    /// # Errors
    /// If a term or the sum does not fit in an `i64`.
    pub fn try_eval(self, env: DimEnv) -> Result<u64, DimOverflow> {
        let overflow = || DimOverflow { dim: self, env };
        let term = |k: i64, n: u64| -> Option<i64> {
            match k {
                0 => Some(0),
                k => k.checked_mul(i64::try_from(n).ok()?),
            }
        };
        let v = term(self.seq, env.seq)
            .and_then(|a| a.checked_add(term(self.past, env.past)?))
            .and_then(|a| a.checked_add(self.c))
            .ok_or_else(overflow)?;
        Ok(v.max(0) as u64)
    }
}

impl std::ops::Add for Dim {
    type Output = Dim;

    fn add(self, o: Dim) -> Dim {
        Dim {
            seq: self.seq + o.seq,
            past: self.past + o.past,
            c: self.c + o.c,
        }
    }
}

/// A dimension that does not fit in an `i64` at a call's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("dimension `{dim}` overflows at seq = {}, past = {}", .env.seq, .env.past)]
pub struct DimOverflow {
    /// The dimension.
    pub dim: Dim,
    /// The sizes.
    pub env: DimEnv,
}

/// Number of elements of a shape for concrete symbols (saturating: see [`try_numel`]).
pub fn numel(shape: &[Dim], env: DimEnv) -> u64 {
    try_numel(shape, env).unwrap_or(u64::MAX)
}

/// Number of elements of a shape for concrete symbols, with checked arithmetic.
///
/// # Errors
/// If a dimension or the product does not fit (the product in an `i64`).
pub fn try_numel(shape: &[Dim], env: DimEnv) -> Result<u64, DimOverflow> {
    let mut n: u64 = 1;
    for d in shape {
        let v = d.try_eval(env)?;
        n = n
            .checked_mul(v)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or(DimOverflow { dim: *d, env })?;
    }
    Ok(n)
}

/// Formats a shape as `[seq, 128]`.
pub fn shape_string(shape: &[Dim]) -> String {
    let parts: Vec<String> = shape.iter().map(Dim::to_string).collect();
    format!("[{}]", parts.join(", "))
}

fn term(out: &mut Vec<String>, k: i64, name: &str) {
    match k {
        0 => {}
        1 => out.push(name.to_string()),
        _ => out.push(format!("{k}*{name}")),
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        term(&mut parts, self.past, "past");
        term(&mut parts, self.seq, "seq");
        if self.c != 0 || parts.is_empty() {
            parts.push(self.c.to_string());
        }
        f.write_str(&parts.join(" + ").replace("+ -", "- "))
    }
}

/// Error from parsing a [`Dim`] in its text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad dimension `{0}`: expected terms like `128`, `seq`, `2*past` joined by `+`")]
pub struct DimParseError(pub String);

impl std::str::FromStr for Dim {
    type Err = DimParseError;

    fn from_str(s: &str) -> Result<Dim, DimParseError> {
        let err = || DimParseError(s.to_string());
        let normalized = s.replace(' ', "").replace('-', "+-");
        let mut dim = Dim::default();
        for t in normalized.split('+').filter(|t| !t.is_empty()) {
            let (k, name) = match t.split_once('*') {
                Some((k, n)) if n == "seq" || n == "past" => {
                    (k.parse::<i64>().map_err(|_| err())?, n)
                }
                Some(_) => return Err(err()),
                None if t == "seq" || t == "past" => (1, t),
                None if t == "-seq" || t == "-past" => (-1, &t[1..]),
                None => (t.parse::<i64>().map_err(|_| err())?, ""),
            };
            match name {
                "seq" => dim.seq += k,
                "past" => dim.past += k,
                "" => dim.c += k,
                _ => return Err(err()),
            }
        }
        Ok(dim)
    }
}

impl Serialize for Dim {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.as_const() {
            Some(c) => s.serialize_i64(c),
            None => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dim, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(c) => Ok(Dim::constant(c)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let cases = [
            Dim::constant(128),
            Dim::SEQ,
            (Dim::PAST + Dim::SEQ),
            Dim::SEQ.scale(2) + Dim::constant(-3),
            Dim::constant(0),
        ];
        for d in cases {
            let text = d.to_string();
            assert_eq!(text.parse::<Dim>().unwrap(), d, "{text}");
        }
        assert_eq!((Dim::PAST + Dim::SEQ).to_string(), "past + seq");
        assert_eq!((Dim::SEQ + Dim::constant(-3)).to_string(), "seq - 3");
    }

    #[test]
    fn rejects_unknown_symbols() {
        assert!("batch".parse::<Dim>().is_err());
        assert!("2*".parse::<Dim>().is_err());
    }

    #[test]
    fn evaluates() {
        let env = DimEnv { seq: 5, past: 7 };
        assert_eq!((Dim::PAST + Dim::SEQ).eval(env), 12);
        assert_eq!(numel(&[Dim::SEQ, Dim::constant(4)], env), 20);
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let huge = DimEnv {
            seq: 1 << 62,
            past: 0,
        };
        let e = Dim::SEQ.scale(4).try_eval(huge).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dimension `4*seq` overflows at seq = 4611686018427387904, past = 0"
        );
        assert_eq!(Dim::SEQ.scale(4).eval(huge), i64::MAX as u64, "saturates");
        let beyond = DimEnv {
            seq: u64::MAX,
            past: 0,
        };
        assert!(Dim::SEQ.try_eval(beyond).is_err());
        assert!(Dim::PAST.try_eval(beyond).is_ok(), "a zero coefficient");
        let e = try_numel(
            &[Dim::SEQ, Dim::constant(1 << 40)],
            DimEnv {
                seq: 1 << 40,
                past: 0,
            },
        );
        assert!(e.is_err());
        assert_eq!(
            try_numel(&[Dim::SEQ, Dim::constant(3)], DimEnv { seq: 5, past: 0 }),
            Ok(15)
        );
    }
}
