//! Data movement shared by every backend: gathers, slices, concatenation and the head
//! layout of attention. These ops only move elements, so one generic implementation serves
//! the f64 interpreter (`plain`), the fixed-point backend (`fixed`) and shares (`interp`).

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Slice, Zip, concatenate};

/// The result of a data-movement op, or what is wrong with its operands.
pub type Moved<T> = Result<ArrayD<T>, String>;

/// An element type the backends compute with: reals (`f64`) or ring elements (`u64`).
pub trait Element: Clone + Copy + Send + Sync + 'static {
    /// The additive identity.
    const ZERO: Self;
    /// The value 1 (an integer 1 in the ring: one-hot rows have scale 0).
    const ONE: Self;
    /// This element read as a row id of a table of `size` rows.
    fn row_id(self, what: &str, size: usize) -> Result<usize, String>;
}

impl Element for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;

    fn row_id(self, what: &str, size: usize) -> Result<usize, String> {
        if self.fract() != 0.0 || self < 0.0 || !self.is_finite() {
            return Err(format!("`{what}`: id {self} is not a non-negative integer"));
        }
        if self >= size as f64 {
            return Err(format!(
                "`{what}`: id {self} is outside the table of {size} rows (ids 0..{size})"
            ));
        }
        Ok(self as usize)
    }
}

impl Element for u64 {
    const ZERO: u64 = 0;
    const ONE: u64 = 1;

    fn row_id(self, what: &str, size: usize) -> Result<usize, String> {
        match usize::try_from(self) {
            Ok(i) if i < size => Ok(i),
            _ => Err(format!(
                "`{what}`: id {} is outside the table of {size} rows (ids 0..{size})",
                self as i64
            )),
        }
    }
}

fn row_indices<T: Element>(
    what: &str,
    ids: &ArrayViewD<T>,
    size: usize,
) -> Result<Vec<usize>, String> {
    ids.iter().map(|&id| id.row_id(what, size)).collect()
}

/// `x` with the given shape (same number of elements), in standard layout.
pub fn reshape_to<T: Element>(x: &ArrayViewD<T>, shape: &[usize]) -> ArrayD<T> {
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(shape))
        .expect("reshape keeps the number of elements")
}

/// Swaps the last two axes.
pub fn transpose<T: Element>(x: &ArrayViewD<T>) -> Moved<T> {
    let r = x.ndim();
    if r < 2 {
        return Err(format!(
            "`transpose` needs at least 2 axes, got {:?}",
            x.shape()
        ));
    }
    let mut v = x.view();
    v.swap_axes(r - 2, r - 1);
    Ok(v.as_standard_layout().into_owned())
}

/// `table[ids[..]]`: `[..]` ids and a `[V, d]` table give `[.., d]`.
pub fn embed<T: Element>(ids: &ArrayViewD<T>, table: &ArrayViewD<T>) -> Moved<T> {
    if table.ndim() != 2 {
        return Err(format!(
            "`embed` needs a [V, d] table, got {:?}",
            table.shape()
        ));
    }
    let rows = row_indices("embed", ids, table.shape()[0])?;
    let gathered = table.select(Axis(0), &rows);
    let mut shape = ids.shape().to_vec();
    shape.push(table.shape()[1]);
    Ok(reshape_to(&gathered.view(), &shape))
}

/// 0/1 vectors of length `depth`: `[..]` ids give `[.., depth]`.
pub fn one_hot<T: Element>(ids: &ArrayViewD<T>, depth: u64) -> Moved<T> {
    let depth = depth as usize;
    let rows = row_indices("one_hot", ids, depth)?;
    let mut out = ndarray::Array2::<T>::from_elem((rows.len(), depth), T::ZERO);
    for (i, r) in rows.into_iter().enumerate() {
        out[(i, r)] = T::ONE;
    }
    let mut shape = ids.shape().to_vec();
    shape.push(depth);
    Ok(reshape_to(&out.into_dyn().view(), &shape))
}

/// The last axis of `x`, which must exist.
pub fn last_axis<T>(what: &str, x: &ArrayViewD<T>) -> Result<Axis, String> {
    match x.ndim() {
        0 => Err(format!("`{what}` needs at least one axis, got a scalar")),
        r => Ok(Axis(r - 1)),
    }
}

/// `x[.., start..end]`.
pub fn slice<T: Element>(x: &ArrayViewD<T>, start: u64, end: u64) -> Moved<T> {
    let axis = last_axis("slice", x)?;
    let n = x.len_of(axis) as u64;
    if start >= end || end > n {
        return Err(format!(
            "`slice` range {start}..{end} does not fit a last axis of {n}"
        ));
    }
    let v = x.slice_axis(axis, Slice::from(start as usize..end as usize));
    Ok(v.as_standard_layout().into_owned())
}

/// Entry `index` of the last axis, which is dropped: `[.., k]` → `[..]`.
pub fn pick<T: Element>(x: &ArrayViewD<T>, index: u64) -> Moved<T> {
    let axis = last_axis("pick", x)?;
    let n = x.len_of(axis) as u64;
    if index >= n {
        return Err(format!("`pick` of entry {index} from a last axis of {n}"));
    }
    Ok(x.index_axis(axis, index as usize).to_owned())
}

/// `cmp(x, t)` for every element `x` and threshold `t`, on a new last axis:
/// `[..]` → `[.., k]`.
pub fn compare<T: Element, U: Copy>(
    x: &ArrayViewD<T>,
    thresholds: &[U],
    cmp: impl Fn(T, U) -> T,
) -> ArrayD<T> {
    let mut shape = x.shape().to_vec();
    shape.push(thresholds.len());
    let flat: Vec<T> = x
        .iter()
        .flat_map(|&v| thresholds.iter().map(move |&t| (v, t)))
        .map(|(v, t)| cmp(v, t))
        .collect();
    ArrayD::from_shape_vec(IxDyn(&shape), flat).expect("one entry per element and threshold")
}

/// Row `index` of a `[s, d]` matrix, as `[1, d]`.
pub fn row<T: Element>(x: &ArrayViewD<T>, index: u64) -> Moved<T> {
    if x.ndim() != 2 {
        return Err(format!("`row` needs a [s, d] matrix, got {:?}", x.shape()));
    }
    let s = x.shape()[0] as u64;
    if index >= s {
        return Err(format!("`row` index {index} is outside {s} rows"));
    }
    let i = index as usize;
    Ok(x.slice_axis(Axis(0), Slice::from(i..i + 1)).to_owned())
}

/// Concatenation along `axis`.
pub fn concat<T: Element>(xs: &[ArrayViewD<T>], axis: u32) -> Moved<T> {
    let shapes: Vec<&[usize]> = xs.iter().map(|x| x.shape()).collect();
    if xs.iter().any(|x| axis as usize >= x.ndim()) {
        return Err(format!("`concat` axis {axis} is outside {shapes:?}"));
    }
    concatenate(Axis(axis as usize), xs)
        .map_err(|_| format!("`concat` on axis {axis}: shapes {shapes:?} differ elsewhere"))
}

/// `[s, h·k]` → `[h, s, k]`.
pub fn split_heads<T: Element>(x: &ArrayViewD<T>, heads: u64) -> Moved<T> {
    let h = heads as usize;
    if x.ndim() != 2 || h == 0 || !x.shape()[1].is_multiple_of(h) {
        return Err(format!(
            "`split_heads` needs [s, h·k] with h = {heads}, got {:?}",
            x.shape()
        ));
    }
    let (s, k) = (x.shape()[0], x.shape()[1] / h);
    let v = reshape_to(x, &[s, h, k]).permuted_axes(IxDyn(&[1, 0, 2]));
    Ok(v.as_standard_layout().into_owned())
}

/// `[h, s, k]` → `[s, h·k]`.
pub fn merge_heads<T: Element>(x: &ArrayViewD<T>) -> Moved<T> {
    if x.ndim() != 3 {
        return Err(format!(
            "`merge_heads` needs [h, s, k], got {:?}",
            x.shape()
        ));
    }
    let (h, s, k) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let v = x.view().permuted_axes(IxDyn(&[1, 0, 2]));
    Ok(reshape_to(&v, &[s, h * k]))
}

/// `[h, t, k]` → `[h·groups, t, k]`: head `i` of the result is head `i / groups` of `x`
/// (NumPy `repeat` along the head axis).
pub fn repeat_kv<T: Element>(x: &ArrayViewD<T>, groups: u64) -> Moved<T> {
    let g = groups as usize;
    if x.ndim() != 3 || g == 0 {
        return Err(format!(
            "`repeat_kv` needs [h, t, k] and groups ≥ 1, got {:?} and {groups}",
            x.shape()
        ));
    }
    let heads: Vec<usize> = (0..x.shape()[0] * g).map(|i| i / g).collect();
    Ok(x.select(Axis(0), &heads))
}

/// The cache operand of [`comet_ir::Op::CacheMatMul`] as its product reads it: repeated
/// per query group (`groups` > 1), then transposed if asked.
pub fn cache_view<T: Element>(c: &ArrayViewD<T>, transpose: bool, groups: u64) -> Moved<T> {
    let repeated = if groups > 1 {
        repeat_kv(c, groups)?
    } else {
        c.to_owned()
    };
    if transpose {
        self::transpose(&repeated.view())
    } else {
        Ok(repeated)
    }
}

/// NumPy broadcasting over trailing axes: equal, or one side is 1.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let at = |s: &[usize], i: usize| (i + s.len()).checked_sub(n).map_or(1, |j| s[j]);
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// `f(a, b)` element-wise after broadcasting both operands to a common shape.
pub fn binary<T: Element>(
    what: &str,
    a: &ArrayViewD<T>,
    b: &ArrayViewD<T>,
    f: impl Fn(T, T) -> T,
) -> Moved<T> {
    let fail = || {
        format!(
            "`{what}`: left is {:?}, right is {:?}: they do not broadcast",
            a.shape(),
            b.shape()
        )
    };
    let shape = IxDyn(&broadcast_shape(a.shape(), b.shape()).ok_or_else(fail)?);
    let (av, bv) = (a.broadcast(shape.clone()), b.broadcast(shape));
    let (av, bv) = av.zip(bv).ok_or_else(fail)?;
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)))
}

/// The rotations of RoPE on `[h, seq, k]` at positions `past ..< past + seq`: for each
/// position `t` and channel pair `j`, the pair of channels `(p, q)` and the angle
/// `pos · base^(−2j/k)` (RoFormer, Su et al. 2021, eq. 34). Every backend applies these
/// same rotations to its own element type.
pub fn rope_rotations(
    seq: usize,
    k: usize,
    past: u64,
    base: f64,
    style: comet_ir::RopeStyle,
) -> impl Iterator<Item = (usize, (usize, usize), f64)> {
    (0..seq).flat_map(move |t| {
        let pos = (past + t as u64) as f64;
        (0..k / 2).map(move |j| {
            let angle = pos * base.powf(-((2 * j) as f64) / k as f64);
            let pair = match style {
                comet_ir::RopeStyle::Adjacent => (2 * j, 2 * j + 1),
                comet_ir::RopeStyle::Half => (j, j + k / 2),
            };
            (t, pair, angle)
        })
    })
}

/// Scores `[.., queries, keys]` with `hide` applied to key `j` of query `i` when
/// `j > off + i`, `off` being the number of keys before the first query (`past` for
/// `[.., seq, past + seq]` scores, 0 for `[.., seq, seq]`): the causal mask of every
/// backend, which says what hiding a score means on its elements.
pub fn mask_future<T: Element>(x: &ArrayViewD<T>, hide: impl Fn(T) -> T) -> Moved<T> {
    let r = x.ndim();
    if r < 2 || x.shape()[r - 1] < x.shape()[r - 2] {
        return Err(format!(
            "`causal_mask` needs scores [.., queries, keys] with at least as many keys as \
             queries, got {:?}",
            x.shape()
        ));
    }
    let (s, t) = (x.shape()[r - 2], x.shape()[r - 1]);
    let off = t - s;
    let batch = x.len() / (s * t).max(1);
    let mut out = reshape_to(x, &[batch, s, t]);
    for (ix, v) in out.indexed_iter_mut() {
        if ix[2] > off + ix[1] {
            *v = hide(*v);
        }
    }
    Ok(reshape_to(&out.view(), x.shape()))
}

/// `x` with axis `axis` padded with zeros to whole blocks of `block`: the plaintext
/// meaning of `block_permute` (the permutation is secret and consistent within a sparse
/// FFN, so it does not change any result: plaintext backends use the identity).
pub fn pad_blocks<T: Element>(x: &ArrayViewD<T>, block: u64, axis: u32) -> Moved<T> {
    let axis = axis as usize;
    if axis >= x.ndim() || block == 0 {
        return Err(format!(
            "`block_permute`: axis {axis} (block {block}) is outside {:?}",
            x.shape()
        ));
    }
    let n = x.shape()[axis];
    let mut shape = x.shape().to_vec();
    shape[axis] = n.div_ceil(block as usize) * block as usize;
    let mut out = ArrayD::from_elem(IxDyn(&shape), T::ZERO);
    out.slice_axis_mut(Axis(axis), (0..n).into()).assign(x);
    Ok(out)
}

/// Whether entry `j` of token row `t` is in an active block of `mask` (`[seq, n/B]`,
/// nonzero = active).
fn active<T: Element + PartialEq>(mask: &ArrayViewD<T>, t: usize, j: usize, block: usize) -> bool {
    mask[[t, j / block]] != T::ZERO
}

/// `x` `[seq, n]` with the entries of inactive blocks set to zero (`apply_mask`).
pub fn apply_mask<T: Element + PartialEq>(
    x: &ArrayViewD<T>,
    mask: &ArrayViewD<T>,
    block: u64,
) -> Moved<T> {
    let b = block as usize;
    let ok = x.ndim() == 2
        && mask.ndim() == 2
        && b > 0
        && x.shape()[1].is_multiple_of(b)
        && mask.shape() == [x.shape()[0], x.shape()[1] / b];
    if !ok {
        return Err(format!(
            "`apply_mask`: mask {:?} does not cover {:?} in blocks of {b}",
            mask.shape(),
            x.shape()
        ));
    }
    let mut out = x.to_owned();
    for ((t, j), v) in out
        .view_mut()
        .into_dimensionality::<ndarray::Ix2>()
        .expect("checked 2-D")
        .indexed_iter_mut()
    {
        if !active(mask, t, j, b) {
            *v = T::ZERO;
        }
    }
    Ok(out)
}
