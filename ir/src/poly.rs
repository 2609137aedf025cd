//! Cost expressions: integer polynomials over the symbolic sizes.
//!
//! Costs (bits, rounds) are functions of `seq` and `past`, and sometimes of `⌈log2 n⌉` for
//! a symbolic length `n` (a max-tree over `past + seq` keys takes `2⌈log2(past+seq)⌉`
//! rounds). A [`Poly`] is an exact integer polynomial in those symbols; a [`MaxPoly`] is the
//! maximum of several (a communication round number under ASAP scheduling is a max over
//! paths). All symbols are non-negative, which makes dominance between polynomials
//! decidable coefficient-wise, so a `MaxPoly` keeps only the terms that can be largest.

use crate::dim::{Dim, DimEnv};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A symbol of a cost expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sym {
    /// Tokens processed by this call.
    Seq,
    /// Tokens already cached.
    Past,
    /// `⌈log2 d⌉` (0 when `d ≤ 1`).
    Log2(Dim),
    /// The bytes of values packed bit after bit, padding included ([`Packed`]).
    Packed(Packed),
}

impl Sym {
    /// The symbol's value for concrete sizes.
    pub fn value(self, env: DimEnv) -> i128 {
        match self {
            Sym::Seq => env.seq as i128,
            Sym::Past => env.past as i128,
            Sym::Log2(d) => ceil_log2(d.eval(env)) as i128,
            Sym::Packed(p) => p.bytes(env),
        }
    }

    fn eval(self, env: DimEnv) -> i128 {
        self.value(env)
    }
}

/// A message of `Π dims` values of `bits` bits each, packed back to back with only its last
/// byte padded: ⌈bits·Π dims / 8⌉ bytes. With `tree`, the last dim is the length t of the
/// rows of a maximum tree over `Π` of the others: one message per level, of ⌊k/2⌋ values
/// per row for k = t, ⌈t/2⌉, … down to 1, so Σ_levels ⌈bits·rows·⌊k/2⌋ / 8⌉ bytes. Neither
/// is a polynomial in the sizes (padding), so the cost model names it as a symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Packed {
    /// Bits per value (1..=64).
    pub bits: u8,
    /// Whether the values are a maximum tree's, level by level (the last dim its rows').
    pub tree: bool,
    /// The dims whose product counts the values (unused slots: the constant 1).
    pub dims: [Dim; 4],
}

impl Packed {
    /// The bytes for concrete sizes.
    pub fn bytes(self, env: DimEnv) -> i128 {
        let v: Vec<i128> = self.dims.iter().map(|d| d.eval(env) as i128).collect();
        let bits = i128::from(self.bits);
        if !self.tree {
            return (bits * v.iter().product::<i128>() + 7) / 8;
        }
        let rows: i128 = v[..3].iter().product();
        let (mut k, mut total) = (v[3], 0);
        while k > 1 {
            total += (bits * rows * (k / 2) + 7) / 8;
            k = (k + 1) / 2;
        }
        total
    }
}

impl fmt::Display for Packed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = (self.dims.iter())
            .filter(|d| d.as_const() != Some(1))
            .map(|d| format!("({d})"))
            .collect();
        let what = if self.tree { "packed_tree" } else { "packed" };
        write!(f, "{what}{}[{}]", self.bits, dims.join("*"))
    }
}

/// `⌈log2 n⌉`, 0 for `n ≤ 1`.
pub fn ceil_log2(n: u64) -> u32 {
    if n <= 1 {
        0
    } else {
        64 - (n - 1).leading_zeros()
    }
}

impl fmt::Display for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sym::Seq => f.write_str("seq"),
            Sym::Past => f.write_str("past"),
            Sym::Log2(d) => write!(f, "log2({d})"),
            Sym::Packed(p) => write!(f, "{p}"),
        }
    }
}

/// A product of symbols with exponents, sorted by symbol; empty is the constant 1.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Mono(pub Vec<(Sym, u32)>);

impl Mono {
    fn mul(&self, o: &Mono) -> Mono {
        let mut m: BTreeMap<Sym, u32> = self.0.iter().copied().collect();
        for (s, e) in &o.0 {
            *m.entry(*s).or_default() += e;
        }
        Mono(m.into_iter().collect())
    }

    fn eval(&self, env: DimEnv) -> i128 {
        self.0.iter().map(|(s, e)| s.eval(env).pow(*e)).product()
    }
}

/// An integer polynomial: a sum of `coefficient · monomial`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(into = "Vec<(i64, Mono)>", from = "Vec<(i64, Mono)>")]
pub struct Poly {
    terms: BTreeMap<Mono, i64>,
}

impl Poly {
    /// The constant `c`.
    pub fn constant(c: i64) -> Poly {
        let mut p = Poly::default();
        p.add_term(Mono::default(), c);
        p
    }

    /// The value of a constant polynomial (`None` if a symbol occurs).
    pub fn as_constant(&self) -> Option<i64> {
        match self.terms.iter().next() {
            None => Some(0),
            Some((m, c)) if self.terms.len() == 1 && m.0.is_empty() => Some(*c),
            _ => None,
        }
    }

    /// The polynomial `0`.
    pub fn zero() -> Poly {
        Poly::default()
    }

    /// A single symbol.
    pub fn sym(s: Sym) -> Poly {
        let mut p = Poly::default();
        p.add_term(Mono(vec![(s, 1)]), 1);
        p
    }

    /// A dimension as a polynomial in `seq` and `past`.
    pub fn dim(d: Dim) -> Poly {
        let mut p = Poly::constant(d.c);
        p.add_term(Mono(vec![(Sym::Seq, 1)]), d.seq);
        p.add_term(Mono(vec![(Sym::Past, 1)]), d.past);
        p
    }

    /// The number of elements of a shape.
    pub fn numel(shape: &[Dim]) -> Poly {
        shape
            .iter()
            .fold(Poly::constant(1), |p, d| p.mul(&Poly::dim(*d)))
    }

    /// `⌈log2 d⌉`, folded to a constant when `d` is.
    pub fn log2(d: Dim) -> Poly {
        match d.as_const() {
            Some(c) => Poly::constant(ceil_log2(c.max(0) as u64) as i64),
            None => Poly::sym(Sym::Log2(d)),
        }
    }

    /// The bytes of `shape`'s values packed at `bits` bits each ([`Packed`]; `tree`: per
    /// level of a maximum tree over the last axis), folded to a constant when the shape is.
    ///
    /// # Panics
    /// If the shape has more than four non-constant dims, or is empty with `tree`.
    pub fn packed(bits: u32, shape: &[Dim], tree: bool) -> Poly {
        let one = Dim::constant(1);
        let (lead, last) = match tree {
            true => (&shape[..shape.len() - 1], Some(shape[shape.len() - 1])),
            false => (shape, None),
        };
        let konst: i64 = lead.iter().filter_map(|d| d.as_const()).product();
        let mut dims = vec![Dim::constant(konst)];
        dims.extend(lead.iter().filter(|d| d.as_const().is_none()));
        let slots = if tree { 3 } else { 4 };
        assert!(
            dims.len() <= slots,
            "a packed message over {} dims",
            dims.len()
        );
        dims.resize(slots, one);
        dims.extend(last);
        let p = Packed {
            bits: bits as u8,
            tree,
            dims: dims.try_into().expect("four dims"),
        };
        match p.dims.iter().all(|d| d.as_const().is_some()) {
            true => Poly::constant(p.bytes(DimEnv { seq: 0, past: 0 }) as i64),
            false => Poly::sym(Sym::Packed(p)),
        }
    }

    fn add_term(&mut self, m: Mono, c: i64) {
        let v = self.terms.entry(m.clone()).or_default();
        *v += c;
        if *v == 0 {
            self.terms.remove(&m);
        }
    }

    /// `self + o`.
    pub fn add(&self, o: &Poly) -> Poly {
        let mut p = self.clone();
        for (m, c) in &o.terms {
            p.add_term(m.clone(), *c);
        }
        p
    }

    /// `self − o`.
    pub fn sub(&self, o: &Poly) -> Poly {
        self.add(&o.scale(-1))
    }

    /// `self · k`.
    pub fn scale(&self, k: i64) -> Poly {
        let mut p = Poly::default();
        for (m, c) in &self.terms {
            p.add_term(m.clone(), c * k);
        }
        p
    }

    /// `self · k`, each coefficient rounded to an integer.
    pub fn scale_f64(&self, k: f64) -> Poly {
        let mut p = Poly::default();
        for (m, c) in &self.terms {
            p.add_term(m.clone(), (*c as f64 * k).round() as i64);
        }
        p
    }

    /// `self · o`.
    pub fn mul(&self, o: &Poly) -> Poly {
        let mut p = Poly::default();
        for (ma, ca) in &self.terms {
            for (mb, cb) in &o.terms {
                p.add_term(ma.mul(mb), ca * cb);
            }
        }
        p
    }

    /// The value for concrete symbols.
    pub fn eval(&self, env: DimEnv) -> i128 {
        self.terms
            .iter()
            .map(|(m, c)| *c as i128 * m.eval(env))
            .sum()
    }

    /// Whether `self ≥ o` for every non-negative value of the symbols (coefficient-wise).
    pub fn dominates(&self, o: &Poly) -> bool {
        self.sub(o).terms.values().all(|c| *c >= 0)
    }

    /// Whether this is the zero polynomial.
    pub fn is_zero(&self) -> bool {
        self.terms.is_empty()
    }

    /// The constant value, if there is no symbol.
    pub fn as_const(&self) -> Option<i64> {
        match self.terms.len() {
            0 => Some(0),
            1 => self.terms.get(&Mono::default()).copied(),
            _ => None,
        }
    }
}

impl From<Poly> for Vec<(i64, Mono)> {
    fn from(p: Poly) -> Self {
        p.terms.into_iter().map(|(m, c)| (c, m)).collect()
    }
}

impl From<Vec<(i64, Mono)>> for Poly {
    fn from(v: Vec<(i64, Mono)>) -> Self {
        let mut p = Poly::default();
        for (c, m) in v {
            p.add_term(m, c);
        }
        p
    }
}

impl fmt::Display for Poly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        // highest degree first, constant last
        for (i, (m, c)) in self.terms.iter().rev().enumerate() {
            let (sign, mag) = if *c < 0 { ("-", -c) } else { ("+", *c) };
            match (i, sign) {
                (0, "-") => f.write_str("-")?,
                (0, _) => {}
                _ => write!(f, " {sign} ")?,
            }
            let factors: Vec<String> =
                m.0.iter()
                    .map(|(s, e)| {
                        if *e == 1 {
                            s.to_string()
                        } else {
                            format!("{s}^{e}")
                        }
                    })
                    .collect();
            match (mag, factors.is_empty()) {
                (_, true) => write!(f, "{mag}")?,
                (1, false) => f.write_str(&factors.join("*"))?,
                _ => write!(f, "{mag}*{}", factors.join("*"))?,
            }
        }
        Ok(())
    }
}

/// The maximum of polynomials; the empty max is 0. Dominated terms are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MaxPoly {
    terms: Vec<Poly>,
}

impl MaxPoly {
    /// `max(p)`.
    pub fn of(p: Poly) -> MaxPoly {
        MaxPoly { terms: vec![p] }
    }

    /// `max(self, o)`.
    pub fn max(&self, o: &MaxPoly) -> MaxPoly {
        let mut out = self.clone();
        for p in &o.terms {
            out.insert(p.clone());
        }
        out
    }

    fn insert(&mut self, p: Poly) {
        if self.terms.iter().any(|q| q.dominates(&p)) {
            return;
        }
        self.terms.retain(|q| !p.dominates(q));
        self.terms.push(p);
        self.terms.sort_by_key(|t| t.to_string());
    }

    /// `self + p` (adds `p` to every term).
    pub fn plus(&self, p: &Poly) -> MaxPoly {
        let terms = if self.terms.is_empty() {
            vec![p.clone()]
        } else {
            self.terms.iter().map(|t| t.add(p)).collect()
        };
        let mut out = MaxPoly::default();
        for t in terms {
            out.insert(t);
        }
        out
    }

    /// The value for concrete symbols.
    pub fn eval(&self, env: DimEnv) -> i128 {
        self.terms.iter().map(|t| t.eval(env)).max().unwrap_or(0)
    }

    /// The terms of the max.
    pub fn terms(&self) -> &[Poly] {
        &self.terms
    }
}

impl fmt::Display for MaxPoly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.terms.as_slice() {
            [] => f.write_str("0"),
            [one] => write!(f, "{one}"),
            many => {
                let parts: Vec<String> = many.iter().map(Poly::to_string).collect();
                write!(f, "max({})", parts.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_messages_count_their_padding() {
        let seq = Dim {
            seq: 1,
            past: 0,
            c: 0,
        };
        let env = |seq| DimEnv { seq, past: 0 };
        // 12·seq values of one bit: ⌈12·seq/8⌉ bytes
        let p = Poly::packed(1, &[Dim::constant(12), seq], false);
        assert_eq!(p.eval(env(1)), 2);
        assert_eq!(p.eval(env(2)), 3);
        assert_eq!(p.eval(env(128)), 192);
        // constant shapes fold: ⌈15·20/8⌉ = 38
        assert_eq!(
            Poly::packed(20, &[Dim::constant(3), Dim::constant(5)], false).as_constant(),
            Some(38)
        );
        // a max tree over rows of t = 5 for 3 rows: levels of 2, 1, 1 pairs per row,
        // ⌈6/8⌉ + ⌈3/8⌉ + ⌈3/8⌉ = 3 bytes; over t = seq with 12 rows
        let tree = Poly::packed(1, &[Dim::constant(3), Dim::constant(5)], true);
        assert_eq!(tree.as_constant(), Some(3));
        let t = Poly::packed(1, &[Dim::constant(12), seq], true);
        // t = 4: 2·12 = 24 → 3, 1·12 → 2
        assert_eq!(t.eval(env(4)), 5);
        assert!(t.to_string().starts_with("packed_tree1["), "{t}");
    }

    fn env(seq: u64, past: u64) -> DimEnv {
        DimEnv { seq, past }
    }

    #[test]
    fn arithmetic_and_display() {
        let t = Poly::dim(Dim::PAST + Dim::SEQ); // past + seq
        let p = Poly::dim(Dim::SEQ)
            .mul(&t)
            .scale(64)
            .add(&Poly::constant(5));
        assert_eq!(p.to_string(), "64*seq^2 + 64*seq*past + 5");
        assert_eq!(p.eval(env(3, 4)), 64 * 3 * 7 + 5);
        assert_eq!(p.sub(&p), Poly::zero());
        assert_eq!(
            Poly::constant(-3).add(&Poly::dim(Dim::SEQ)).to_string(),
            "seq - 3"
        );
    }

    #[test]
    fn log2_terms() {
        assert_eq!(ceil_log2(1), 0);
        assert_eq!(ceil_log2(2), 1);
        assert_eq!(ceil_log2(5), 3);
        assert_eq!(ceil_log2(128), 7);
        let r = Poly::log2(Dim::PAST + Dim::SEQ).scale(2);
        assert_eq!(r.to_string(), "2*log2(past + seq)");
        assert_eq!(r.eval(env(6, 0)), 6);
        assert_eq!(Poly::log2(Dim::constant(1024)).as_const(), Some(10));
    }

    #[test]
    fn max_keeps_only_undominated_terms() {
        let a = Poly::constant(10);
        let b = Poly::log2(Dim::SEQ).scale(2).add(&Poly::constant(3));
        let m = MaxPoly::of(a.clone()).max(&MaxPoly::of(b.clone()));
        assert_eq!(m.terms().len(), 2);
        assert_eq!(m.eval(env(2, 0)), 10);
        assert_eq!(m.eval(env(1024, 0)), 23);
        let bigger = MaxPoly::of(a.add(&b));
        assert_eq!(m.max(&bigger), bigger);
        assert_eq!(m.plus(&Poly::constant(1)).eval(env(2, 0)), 11);
    }

    #[test]
    fn serde_round_trip() {
        let p = Poly::dim(Dim::SEQ)
            .mul(&Poly::log2(Dim::PAST + Dim::SEQ))
            .add(&Poly::constant(7));
        let json = serde_json::to_string(&p).unwrap();
        let back: Poly = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }
}
