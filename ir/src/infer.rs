//! Type rules: the result type of every non-source op from its operands' types.
//!
//! One function serves both the `lower` pass (which builds types with it) and the verifier
//! (which recomputes every node's type and compares), so the two can never disagree.

use crate::dim::{Dim, Shape, shape_string};
use crate::op::{Op, Stage};
use crate::types::{Domain, Elem, ValueType};

/// Why an op cannot take its operands. The message names both shapes of a mismatch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

type Result<T> = std::result::Result<T, TypeError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(TypeError(msg.into()))
}

/// What the type rules depend on besides the operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx {
    /// The plan's fractional bits.
    pub frac: u32,
    /// Semantic or protocol stage (see [`Stage`]).
    pub stage: Stage,
}

impl Ctx {
    fn protocol(self) -> bool {
        self.stage == Stage::Protocol
    }
}

/// The result type of `op` applied to `xs`.
pub fn infer(op: &Op, xs: &[&ValueType], ctx: Ctx) -> Result<ValueType> {
    if !op.arity().accepts(xs.len()) {
        return err(format!(
            "`{}` takes {} operands, got {}",
            op.name(),
            op.arity(),
            xs.len()
        ));
    }
    if ctx.protocol() && op.is_composite() {
        return err(format!(
            "composite `{}` must be expanded before `insert-conversions`",
            op.name()
        ));
    }
    let dom = domain(xs, ctx)?;
    let t = shape_rule(op, xs, ctx)?;
    Ok(ValueType {
        domain: dom_rule(op, xs, dom)?,
        ..t
    })
}

/// Element kind and shape by op (the domain is decided by [`dom_rule`]).
fn shape_rule(op: &Op, xs: &[&ValueType], ctx: Ctx) -> Result<ValueType> {
    match op {
        Op::Input { .. } | Op::Weight { .. } | Op::Positions { .. } | Op::CacheRead { .. } => {
            err(format!("`{}` is a source: its type is declared", op.name()))
        }
        Op::CacheWrite { .. } | Op::Reveal { .. } | Op::Output { .. } | Op::Share { .. } => {
            Ok(xs[0].clone())
        }
        Op::Embed => embed(xs[0], xs[1], ctx),
        Op::MatMul => matmul(xs[0], xs[1], ctx),
        Op::CacheMatMul {
            transpose, groups, ..
        } => cache_matmul(xs, *transpose, *groups, ctx),
        Op::Transpose => transpose(xs[0]),
        Op::Add | Op::Sub => elementwise(op.name(), xs[0], xs[1], ctx, false),
        Op::Mul => elementwise(op.name(), xs[0], xs[1], ctx, true),
        Op::Square => product_scale("square", xs[0], xs[0], ctx).map(|e| xs[0].with_elem(e)),
        Op::Neg | Op::AddConst { .. } => same_fixed(op.name(), xs[0], ctx),
        Op::MulConst { value } => mul_const(xs[0], *value, ctx),
        Op::Unary { func } => same_fixed(func.name(), xs[0], ctx),
        Op::Softmax => same_fixed("softmax", xs[0], ctx),
        Op::CausalMask => causal_mask(xs[0], ctx),
        Op::Slice { start, end } => slice(xs[0], *start, *end),
        Op::Row { index } => row(xs[0], *index),
        Op::Concat { axis } => concat(xs, *axis as usize),
        Op::SplitHeads { heads } => split_heads(xs[0], *heads),
        Op::MergeHeads => merge_heads(xs[0]),
        Op::RepeatKv { groups } => repeat_kv(xs[0], *groups),
        Op::Rope { .. } => rope(xs[0], ctx),
        Op::LayerNorm { .. } => norm("layer_norm", xs[0], &xs[1..], ctx),
        Op::RmsNorm { .. } => norm("rms_norm", xs[0], &xs[1..], ctx),
        Op::RowSum | Op::RowMax => reduce_row(op.name(), xs[0], ctx),
        Op::Drelu => fixed_scale("drelu", xs[0], ctx).map(|_| xs[0].with_elem(Elem::Bit)),
        Op::Compare { thresholds } => compare(xs[0], thresholds, ctx),
        Op::Pick { index } => pick(xs[0], *index),
        Op::Between => between(xs[0], xs[1]),
        Op::Select => select(xs[0], xs[1], ctx),
        Op::SignSelect => sign_select(xs, ctx),
        Op::B2A => {
            expect_elem("b2a", xs[0], Elem::Bit)?;
            Ok(xs[0].with_elem(Elem::Fixed { scale: ctx.frac }))
        }
        Op::Lut { bits, frac, .. } => lut(xs[0], *bits, *frac, ctx),
        Op::OneHot { depth } => one_hot(xs[0], *depth),
        Op::Trunc { bits } | Op::FaithfulTrunc { bits } | Op::StochasticTrunc { bits } => {
            trunc(xs[0], *bits)
        }
        Op::BlockPermute { block, axis, .. } => block_permute(xs[0], *block, *axis, ctx),
        Op::ApplyMask { block, .. } => apply_mask(xs[0], xs[1], *block, ctx),
        Op::BlockMatMul { block, .. } => {
            apply_mask(xs[0], xs[2], *block, ctx)?;
            matmul(xs[0], xs[1], ctx)
        }
        Op::Open => Ok(xs[0].clone()),
    }
}

/// The domain of the result, from the operands' joint domain.
fn dom_rule(op: &Op, xs: &[&ValueType], joint: Domain) -> Result<Domain> {
    match op {
        Op::Reveal { to } => Ok(Domain::Private(*to)),
        Op::Output { party, .. } => output(xs[0], *party).map(|t| t.domain),
        Op::Share { from } => match xs[0].domain {
            Domain::Private(p) if p == *from => Ok(Domain::Arith),
            d => err(format!(
                "`share` from the {from} needs a value private to it, got a {d} value"
            )),
        },
        Op::Drelu | Op::Compare { .. } if joint == Domain::Arith => Ok(Domain::Bool),
        Op::B2A if joint == Domain::Bool => Ok(Domain::Arith),
        Op::Open => Ok(Domain::Public),
        Op::BlockPermute { .. } => Ok(Domain::Arith),
        Op::ApplyMask { .. } | Op::BlockMatMul { .. } => Ok(join(&xs[..2])),
        Op::CacheMatMul { .. } => Ok(join(&xs[..3])),
        _ => Ok(joint),
    }
}

/// The joint domain of the operands. In the protocol stage a private value may only meet
/// public values or values private to the same party: anything else needs a `share`.
fn domain(xs: &[&ValueType], ctx: Ctx) -> Result<Domain> {
    let joint = join(xs);
    let private = xs.iter().find(|x| matches!(x.domain, Domain::Private(_)));
    if let Some(p) = private
        && ctx.protocol()
        && matches!(joint, Domain::Arith | Domain::Bool)
    {
        return err(format!(
            "a {} value meets a shared one: it must be `share`d first",
            p.domain
        ));
    }
    Ok(joint)
}

fn join(xs: &[&ValueType]) -> Domain {
    xs.iter().fold(Domain::Public, |d, x| d.join(x.domain))
}

fn expect_elem(what: &str, x: &ValueType, elem: Elem) -> Result<()> {
    if x.elem == elem {
        Ok(())
    } else {
        err(format!(
            "`{what}` needs {}, got {}",
            describe(elem),
            describe(x.elem)
        ))
    }
}

/// The scale of a fixed-point operand: the plan's in the semantic stage, any in the
/// protocol stage.
fn fixed_scale(what: &str, x: &ValueType, ctx: Ctx) -> Result<u32> {
    match x.elem {
        Elem::Fixed { scale } if ctx.protocol() || scale == ctx.frac => Ok(scale),
        _ => expect_elem(what, x, Elem::Fixed { scale: ctx.frac }).map(|_| ctx.frac),
    }
}

/// A table lookup: a fixed-point input with at least the index's fractional bits, an
/// index of 1 to [`crate::table::MAX_TABLE_BITS`] bits; the result at the plan's scale.
fn lut(x: &ValueType, bits: u32, frac: u32, ctx: Ctx) -> Result<ValueType> {
    let max = crate::table::MAX_TABLE_BITS;
    if !(1..=max).contains(&bits) {
        return err(format!("`lut` needs 1 to {max} index bits, got {bits}"));
    }
    let scale = fixed_scale("lut", x, ctx)?;
    if frac > scale {
        return err(format!(
            "`lut` reads {frac} fractional bits of an input that has {scale}"
        ));
    }
    Ok(x.with_elem(Elem::Fixed { scale: ctx.frac }))
}

/// Both operands fixed with one scale (sums).
fn same_scale(what: &str, a: &ValueType, b: &ValueType, ctx: Ctx) -> Result<Elem> {
    let (sa, sb) = (fixed_scale(what, a, ctx)?, fixed_scale(what, b, ctx)?);
    if sa != sb {
        return err(format!(
            "`{what}` needs equal fixed-point scales, got fx{sa} and fx{sb}: truncate first"
        ));
    }
    Ok(Elem::Fixed { scale: sa })
}

/// The scale of a product: kept in the semantic stage, summed in the protocol stage.
fn product_scale(what: &str, a: &ValueType, b: &ValueType, ctx: Ctx) -> Result<Elem> {
    let (sa, sb) = (fixed_scale(what, a, ctx)?, fixed_scale(what, b, ctx)?);
    if !ctx.protocol() {
        return Ok(Elem::Fixed { scale: ctx.frac });
    }
    match sa.checked_add(sb) {
        Some(scale) if scale <= 64 => Ok(Elem::Fixed { scale }),
        _ => err(format!(
            "`{what}` of fx{sa} and fx{sb} has more than 64 fractional bits, more than a \
             64-bit ring holds: truncate first"
        )),
    }
}

fn same_fixed(what: &str, x: &ValueType, ctx: Ctx) -> Result<ValueType> {
    fixed_scale(what, x, ctx)?;
    Ok(x.clone())
}

/// Whether multiplying by `v` needs no rescaling (small integers are encoded at scale 0).
pub fn is_integer_constant(v: f64) -> bool {
    v.fract() == 0.0 && v.abs() < (1u64 << 40) as f64
}

/// The ring constant `mul_const(x, v)` multiplies by: an integer `v` as itself (the scale
/// stays), any other value encoded at `frac` fractional bits, rounded (the scale grows by
/// `frac`). The runtime multiplies by it; `narrow-openings` reads its powers of two.
pub fn mul_const_ring(v: f64, frac: u32) -> u64 {
    match is_integer_constant(v) {
        true => v as i64 as u64,
        false => (v * f64::from(frac).exp2()).round() as i64 as u64,
    }
}

fn mul_const(x: &ValueType, v: f64, ctx: Ctx) -> Result<ValueType> {
    let s = fixed_scale("mul_const", x, ctx)?;
    let grow = ctx.protocol() && !is_integer_constant(v);
    Ok(x.with_elem(Elem::Fixed {
        scale: if grow { s + ctx.frac } else { s },
    }))
}

/// An element kind in words, with its IR spelling.
fn describe(e: Elem) -> String {
    match e {
        Elem::Fixed { scale } => format!("fixed-point values (fx{scale})"),
        Elem::Bit => "bits".into(),
        Elem::Index => "token ids or positions (idx)".into(),
    }
}

fn expect_rank(what: &str, x: &ValueType, min: usize) -> Result<()> {
    if x.shape.len() >= min {
        Ok(())
    } else {
        err(format!(
            "`{what}` needs at least {min} axes, got {}",
            shape_string(&x.shape)
        ))
    }
}

fn const_dim(what: &str, d: Dim) -> Result<u64> {
    match d.as_const() {
        Some(c) if c >= 0 => Ok(c as u64),
        _ => err(format!("`{what}` needs a constant axis here, got `{d}`")),
    }
}

fn output(x: &ValueType, party: crate::types::Party) -> Result<ValueType> {
    match x.domain {
        Domain::Public => Ok(x.clone()),
        Domain::Private(p) if p == party => Ok(x.clone()),
        d => err(format!(
            "an output to the {party} must be readable by it, got a {d} value"
        )),
    }
}

fn embed(ids: &ValueType, table: &ValueType, ctx: Ctx) -> Result<ValueType> {
    expect_elem("embed", ids, Elem::Index)?;
    let fixed = Elem::Fixed {
        scale: fixed_scale("embed", table, ctx)?,
    };
    if ctx.protocol() && ids.domain != Domain::Public && ids.domain != table.domain {
        return err(
            "in the protocol stage `embed` gathers by public ids only: private ids go through `one_hot` and `matmul`",
        );
    }
    if table.shape.len() != 2 {
        return err(format!(
            "`embed` needs a [V, d] table, got {}",
            shape_string(&table.shape)
        ));
    }
    let mut shape = ids.shape.clone();
    shape.push(table.shape[1]);
    Ok(ValueType::new(fixed, shape, table.domain))
}

fn matmul(a: &ValueType, b: &ValueType, ctx: Ctx) -> Result<ValueType> {
    let fixed = product_scale("matmul", a, b, ctx)?;
    let both = || {
        format!(
            "left is {}, right is {}",
            shape_string(&a.shape),
            shape_string(&b.shape)
        )
    };
    if a.shape.len() < 2 || b.shape.len() < 2 {
        return err(format!("`matmul` needs matrices: {}", both()));
    }
    let (ra, rb) = (a.shape.len(), b.shape.len());
    if a.shape[ra - 1] != b.shape[rb - 2] {
        return err(format!(
            "{}: inner dimensions {} and {} differ",
            both(),
            a.shape[ra - 1],
            b.shape[rb - 2]
        ));
    }
    if rb > 2 && (ra != rb || a.shape[..ra - 2] != b.shape[..rb - 2]) {
        return err(format!("{}: batch axes differ", both()));
    }
    let mut shape = a.shape[..ra - 1].to_vec();
    shape.push(b.shape[rb - 1]);
    Ok(ValueType::new(fixed, shape, join(&[a, b])))
}

/// `x · view(c)` (see [`Op::CacheMatMul`]); `new` must be `c`'s last rows' shape.
fn cache_matmul(xs: &[&ValueType], transpose: bool, groups: u64, ctx: Ctx) -> Result<ValueType> {
    let (c, new) = (xs[1], xs[2]);
    expect_rank("cache_matmul", c, 3)?;
    if let Some(mask) = xs.get(3) {
        head_mask(xs[0], c, mask)?;
    }
    if new.shape.len() != 3 || new.shape[0] != c.shape[0] || new.shape[2] != c.shape[2] {
        return err(format!(
            "`cache_matmul`: the new rows {} do not extend the cache operand {}",
            shape_string(&new.shape),
            shape_string(&c.shape)
        ));
    }
    let mut view = if groups > 1 {
        repeat_kv(c, groups)?
    } else {
        c.clone()
    };
    if transpose {
        view = self::transpose(&view)?;
    }
    matmul(xs[0], &view, ctx)
}

/// A cache product's head mask: public bits `[seq, h_kv]`, `seq` the rows of `x`.
fn head_mask(x: &ValueType, c: &ValueType, mask: &ValueType) -> Result<()> {
    expect_elem("cache_matmul", mask, Elem::Bit)?;
    let ok = mask.domain == Domain::Public
        && mask.shape.len() == 2
        && x.shape.len() == 3
        && mask.shape[0] == x.shape[1]
        && mask.shape[1] == c.shape[0];
    if !ok {
        return err(format!(
            "`cache_matmul`: a head mask for x {} and cache operand {} must be public bits \
             [{}, {}], got a {} {}",
            shape_string(&x.shape),
            shape_string(&c.shape),
            x.shape.get(1).map_or("?".into(), |d| d.to_string()),
            c.shape[0],
            mask.domain,
            shape_string(&mask.shape)
        ));
    }
    Ok(())
}

fn transpose(x: &ValueType) -> Result<ValueType> {
    expect_rank("transpose", x, 2)?;
    let mut shape = x.shape.clone();
    let r = shape.len();
    shape.swap(r - 1, r - 2);
    Ok(x.with_shape(shape))
}

/// NumPy broadcasting over trailing axes: equal, or one side is the constant 1.
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Option<Shape> {
    let n = a.len().max(b.len());
    let at = |s: &[Dim], i: usize| {
        (i + s.len())
            .checked_sub(n)
            .map_or(Dim::constant(1), |j| s[j])
    };
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Some(x),
            (x, y) if x == Dim::constant(1) => Some(y),
            (x, y) if y == Dim::constant(1) => Some(x),
            _ => None,
        })
        .collect()
}

fn elementwise(
    what: &str,
    a: &ValueType,
    b: &ValueType,
    ctx: Ctx,
    product: bool,
) -> Result<ValueType> {
    let fixed = if product {
        product_scale(what, a, b, ctx)?
    } else {
        same_scale(what, a, b, ctx)?
    };
    match broadcast(&a.shape, &b.shape) {
        Some(shape) => Ok(ValueType::new(fixed, shape, join(&[a, b]))),
        None => err(format!(
            "left is {}, right is {}: they do not broadcast",
            shape_string(&a.shape),
            shape_string(&b.shape)
        )),
    }
}

fn last_const(what: &str, x: &ValueType) -> Result<u64> {
    expect_rank(what, x, 1)?;
    const_dim(what, x.shape[x.shape.len() - 1])
}

fn slice(x: &ValueType, start: u64, end: u64) -> Result<ValueType> {
    let n = last_const("slice", x)?;
    if start >= end || end > n {
        return err(format!(
            "`slice` range {start}..{end} does not fit a last axis of {n}"
        ));
    }
    let mut shape = x.shape.clone();
    *shape.last_mut().expect("rank checked") = Dim::constant((end - start) as i64);
    Ok(x.with_shape(shape))
}

/// Bits of one or more finite thresholds, on a new last axis.
fn compare(x: &ValueType, thresholds: &[f64], ctx: Ctx) -> Result<ValueType> {
    fixed_scale("compare", x, ctx)?;
    if thresholds.is_empty() || thresholds.iter().any(|t| !t.is_finite()) {
        return err(format!(
            "`compare` needs one or more finite thresholds, got {thresholds:?}"
        ));
    }
    let mut shape = x.shape.clone();
    shape.push(Dim::constant(thresholds.len() as i64));
    Ok(x.with_shape(shape).with_elem(Elem::Bit))
}

/// One entry of the last axis, dropped.
fn pick(x: &ValueType, index: u64) -> Result<ValueType> {
    let n = last_const("pick", x)?;
    if index >= n {
        return err(format!("`pick` of entry {index} from a last axis of {n}"));
    }
    let mut shape = x.shape.clone();
    shape.pop();
    Ok(x.with_shape(shape))
}

fn row(x: &ValueType, index: u64) -> Result<ValueType> {
    if x.shape.len() != 2 {
        return err(format!(
            "`row` needs a [s, d] matrix, got {}",
            shape_string(&x.shape)
        ));
    }
    if let Some(s) = x.shape[0].as_const()
        && index >= s as u64
    {
        return err(format!("`row` index {index} is outside {} rows", s));
    }
    Ok(x.with_shape(vec![Dim::constant(1), x.shape[1]]))
}

fn concat(xs: &[&ValueType], axis: usize) -> Result<ValueType> {
    let first = xs[0];
    if axis >= first.shape.len() {
        return err(format!(
            "`concat` axis {axis} is outside {}",
            shape_string(&first.shape)
        ));
    }
    let mut total = Dim::constant(0);
    for x in xs {
        let same_rest = x.shape.len() == first.shape.len()
            && (0..x.shape.len()).all(|i| i == axis || x.shape[i] == first.shape[i]);
        if !same_rest || x.elem != first.elem {
            return err(format!(
                "`concat` on axis {axis}: {} and {} differ elsewhere",
                shape_string(&first.shape),
                shape_string(&x.shape)
            ));
        }
        total = total + x.shape[axis];
    }
    let mut shape = first.shape.clone();
    shape[axis] = total;
    Ok(ValueType::new(first.elem, shape, join(xs)))
}

fn split_heads(x: &ValueType, heads: u64) -> Result<ValueType> {
    if x.shape.len() != 2 {
        return err(format!(
            "`split_heads` needs [s, h·k], got {}",
            shape_string(&x.shape)
        ));
    }
    let width = const_dim("split_heads", x.shape[1])?;
    if heads == 0 || width % heads != 0 {
        return err(format!(
            "`split_heads`: {width} channels do not split into {heads} heads"
        ));
    }
    let k = Dim::constant((width / heads) as i64);
    Ok(x.with_shape(vec![Dim::constant(heads as i64), x.shape[0], k]))
}

fn merge_heads(x: &ValueType) -> Result<ValueType> {
    if x.shape.len() != 3 {
        return err(format!(
            "`merge_heads` needs [h, s, k], got {}",
            shape_string(&x.shape)
        ));
    }
    let h = const_dim("merge_heads", x.shape[0])?;
    let k = const_dim("merge_heads", x.shape[2])?;
    Ok(x.with_shape(vec![x.shape[1], Dim::constant((h * k) as i64)]))
}

fn repeat_kv(x: &ValueType, groups: u64) -> Result<ValueType> {
    if x.shape.len() != 3 || groups == 0 {
        return err(format!(
            "`repeat_kv` needs [h, t, k] and groups ≥ 1, got {}",
            shape_string(&x.shape)
        ));
    }
    let mut shape = x.shape.clone();
    shape[0] = shape[0].scale(groups as i64);
    Ok(x.with_shape(shape))
}

fn rope(x: &ValueType, ctx: Ctx) -> Result<ValueType> {
    let s = fixed_scale("rope", x, ctx)?;
    if x.shape.len() != 3 || x.shape[1] != Dim::SEQ {
        return err(format!(
            "`rope` needs [h, seq, k], got {}",
            shape_string(&x.shape)
        ));
    }
    let k = const_dim("rope", x.shape[2])?;
    if k % 2 != 0 {
        return err(format!("`rope` needs an even head size, got {k}"));
    }
    let grow = if ctx.protocol() { ctx.frac } else { 0 };
    Ok(x.with_elem(Elem::Fixed { scale: s + grow }))
}

fn norm(what: &str, x: &ValueType, params: &[&ValueType], ctx: Ctx) -> Result<ValueType> {
    fixed_scale(what, x, ctx)?;
    let d = last_const(what, x)?;
    for p in params {
        fixed_scale(what, p, ctx)?;
        if p.shape != [Dim::constant(d as i64)] {
            return err(format!(
                "`{what}` of {} needs parameters of shape [{d}], got {}",
                shape_string(&x.shape),
                shape_string(&p.shape)
            ));
        }
    }
    let mut all = vec![x];
    all.extend_from_slice(params);
    Ok(x.in_domain(join(&all)))
}

fn causal_mask(x: &ValueType, ctx: Ctx) -> Result<ValueType> {
    fixed_scale("causal_mask", x, ctx)?;
    let r = x.shape.len();
    let keys_ok =
        r >= 2 && (x.shape[r - 1] == Dim::SEQ || x.shape[r - 1] == (Dim::PAST + Dim::SEQ));
    if !keys_ok || x.shape[r - 2] != Dim::SEQ {
        return err(format!(
            "`causal_mask` needs scores [.., seq, past + seq] (or [.., seq, seq]), got {}",
            shape_string(&x.shape)
        ));
    }
    Ok(x.clone())
}

fn reduce_row(what: &str, x: &ValueType, ctx: Ctx) -> Result<ValueType> {
    fixed_scale(what, x, ctx)?;
    expect_rank(what, x, 1)?;
    let mut shape = x.shape.clone();
    *shape.last_mut().expect("rank checked") = Dim::constant(1);
    Ok(x.with_shape(shape))
}

/// `between(lo, hi)`: two bit tensors of one shape.
fn between(lo: &ValueType, hi: &ValueType) -> Result<ValueType> {
    expect_elem("between", lo, Elem::Bit)?;
    expect_elem("between", hi, Elem::Bit)?;
    if lo.shape != hi.shape {
        return err(format!(
            "`between` needs two bit tensors of one shape, got {} and {}",
            shape_string(&lo.shape),
            shape_string(&hi.shape)
        ));
    }
    Ok(lo.clone())
}

fn select(bit: &ValueType, x: &ValueType, ctx: Ctx) -> Result<ValueType> {
    expect_elem("select", bit, Elem::Bit)?;
    fixed_scale("select", x, ctx)?;
    match broadcast(&bit.shape, &x.shape) {
        Some(shape) => Ok(ValueType::new(x.elem, shape, x.domain)),
        None => err(format!(
            "`select` bits {} do not broadcast with values {}",
            shape_string(&bit.shape),
            shape_string(&x.shape)
        )),
    }
}

/// `sign_select(x)` or `sign_select(x, y)`: x fixed-point, y (x when absent) of x's shape.
fn sign_select(xs: &[&ValueType], ctx: Ctx) -> Result<ValueType> {
    if xs.len() > 2 {
        return err(format!(
            "`sign_select` takes x, or x and y: got {} operands",
            xs.len()
        ));
    }
    fixed_scale("sign_select", xs[0], ctx)?;
    let y = xs[xs.len() - 1];
    fixed_scale("sign_select", y, ctx)?;
    if y.shape != xs[0].shape {
        return err(format!(
            "`sign_select` x {} and y {} differ in shape",
            shape_string(&xs[0].shape),
            shape_string(&y.shape)
        ));
    }
    Ok(y.clone())
}

fn one_hot(ids: &ValueType, depth: u64) -> Result<ValueType> {
    expect_elem("one_hot", ids, Elem::Index)?;
    let mut shape = ids.shape.clone();
    shape.push(Dim::constant(depth as i64));
    Ok(ValueType::new(Elem::Fixed { scale: 0 }, shape, ids.domain))
}

/// `block_permute`: the axis padded to whole blocks; in the protocol stage the operand
/// must already be shared (the shuffle permutes shares).
fn block_permute(x: &ValueType, block: u64, axis: u32, ctx: Ctx) -> Result<ValueType> {
    fixed_scale("block_permute", x, ctx)?;
    let axis = axis as usize;
    if axis >= x.shape.len() || block == 0 {
        return err(format!(
            "`block_permute` axis {axis} (block {block}) is outside {}",
            shape_string(&x.shape)
        ));
    }
    if ctx.protocol() && x.domain != Domain::Arith {
        return err(format!(
            "`block_permute` shuffles shares: its {} operand must be `share`d first",
            x.domain
        ));
    }
    let n = const_dim("block_permute", x.shape[axis])?;
    // a block wider than the axis would pad it with more zeros than it has entries (and
    // the padded width is allocated at setup): refused, as `sparsify` never emits one
    if block > n {
        return err(format!(
            "`block_permute` block {block} is wider than its axis {axis} ({n} entries)"
        ));
    }
    let padded = (n.div_ceil(block))
        .checked_mul(block)
        .filter(|p| i64::try_from(*p).is_ok())
        .ok_or_else(|| {
            TypeError(format!(
                "`block_permute` of {n} entries in blocks of {block} overflows"
            ))
        })?;
    let mut shape = x.shape.clone();
    shape[axis] = Dim::constant(padded as i64);
    Ok(x.with_shape(shape))
}

/// `apply_mask(x [seq, n], mask [seq, n/B])`: the mask is public bits, one per block.
fn apply_mask(x: &ValueType, mask: &ValueType, block: u64, ctx: Ctx) -> Result<ValueType> {
    fixed_scale("apply_mask", x, ctx)?;
    expect_elem("apply_mask", mask, Elem::Bit)?;
    if mask.domain != Domain::Public {
        return err(format!(
            "a block mask must be public (opened), got a {} value",
            mask.domain
        ));
    }
    let n = last_const("apply_mask", x)?;
    let ok = x.shape.len() == 2
        && mask.shape.len() == 2
        && mask.shape[0] == x.shape[0]
        && block > 0
        && n.is_multiple_of(block)
        && mask.shape[1] == Dim::constant((n / block) as i64);
    if !ok {
        return err(format!(
            "a block mask for {} in blocks of {block} must be [{}, {}], got {}",
            shape_string(&x.shape),
            x.shape[0],
            n / block.max(1),
            shape_string(&mask.shape)
        ));
    }
    Ok(x.clone())
}

fn trunc(x: &ValueType, bits: u32) -> Result<ValueType> {
    if bits >= 64 {
        return err(format!(
            "`trunc` by {bits} bits: shares live in the ring of 64-bit integers, so a \
             truncation takes 1 to 63 bits"
        ));
    }
    match x.elem {
        Elem::Fixed { scale } if scale >= bits => Ok(x.with_elem(Elem::Fixed {
            scale: scale - bits,
        })),
        e => err(format!(
            "`trunc` by {bits} bits needs a fixed-point value of at least that scale, got {e}"
        )),
    }
}
