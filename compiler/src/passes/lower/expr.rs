//! Expressions: name lookup, constant folding, dimension expressions, tensor arithmetic,
//! block calls and `repeat`.

use super::decls::did_you_mean;
use super::{Frame, Lowerer, Value};
use crate::diag::Diagnostic;
use crate::front::ast::{self, BinOp, Expr, ExprKind, Span};
use comet_ir::{Dim, NodeId, Op, Scope};
use std::collections::HashMap;

/// The most repetitions of a block one `repeat` inlines (the largest shipped model has 32
/// layers): a model cannot make the compiler build an unbounded graph.
pub const MAX_REPEAT: i64 = 4096;

impl<'a> Lowerer<'a> {
    pub(super) fn expr(&mut self, e: &Expr) -> Result<Value, Diagnostic> {
        match &e.kind {
            ExprKind::Num { value, .. } => Ok(Value::Num(*value)),
            ExprKind::Ident(name) => self.lookup(&ast::Ident {
                name: name.clone(),
                span: e.span,
            }),
            ExprKind::Neg(x) => self.negate(x, e.span),
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b, e.span),
            ExprKind::Call(c) => self.call(c, e.span),
            ExprKind::Repeat(r) => self.repeat(r, e.span),
        }
    }

    pub(super) fn lookup(&mut self, id: &ast::Ident) -> Result<Value, Diagnostic> {
        if let Some((v, _)) = self.frames.last().and_then(|f| f.locals.get(&id.name)) {
            return Ok(v.clone());
        }
        let g = &self.globals;
        if let Some((value, _)) = g.dims.get(&id.name) {
            return match value {
                Some(v) => Ok(Value::Num(*v as f64)),
                None => Err(Diagnostic::new(
                    format!("`{}` is symbolic", id.name),
                    id.span,
                    "a symbolic dimension has no value here: use it in shapes only",
                )),
            };
        }
        if let Some((n, _)) = g.inputs.get(&id.name) {
            return Ok(Value::Tensor(*n));
        }
        if let Some(w) = g.weights.get(&id.name) {
            return Ok(Value::Tensor(w.node));
        }
        if g.blocks.contains_key(&id.name) {
            let label = format!("`{}` is a block: call it as `{}(...)`", id.name, id.name);
            return Err(Diagnostic::new("block used as a value", id.span, label));
        }
        Err(self.undefined(id))
    }

    fn undefined(&self, id: &ast::Ident) -> Diagnostic {
        let frame = self.frames.last().expect("a frame");
        let visible = frame.locals.keys().map(String::as_str);
        let globals = self.globals.defined.keys().map(String::as_str);
        let outer = self.frames[..self.frames.len() - 1]
            .iter()
            .rev()
            .find_map(|f| f.locals.get(&id.name));
        if let Some((_, defined)) = outer {
            return Diagnostic::new(
                format!("`{}` is not visible in this block", id.name),
                id.span,
                "a name of the caller, which blocks do not see",
            )
            .with_note(*defined, "defined here, outside the block")
            .with_help("pass it to the block as a parameter");
        }
        let blocks = &self.globals.blocks;
        let candidates = visible.chain(globals).filter(|c| !blocks.contains_key(*c));
        let mut d = Diagnostic::new(
            format!("undefined name `{}`", id.name),
            id.span,
            "not defined before this point",
        );
        if let Some(h) = did_you_mean(&id.name, candidates) {
            d = d.with_help(h);
        }
        d
    }

    /// The node behind a value that must be a tensor.
    pub(super) fn tensor(&self, v: Value, span: Span, what: &str) -> Result<NodeId, Diagnostic> {
        match v {
            Value::Tensor(n) => Ok(n),
            Value::Num(x) => Err(Diagnostic::new(
                "expected a tensor",
                span,
                format!("{what} must be a tensor, this is the number {x}"),
            )),
        }
    }

    /// A compile-time number.
    pub(super) fn number(&mut self, e: &Expr) -> Result<f64, Diagnostic> {
        match self.expr(e)? {
            Value::Num(x) => Ok(x),
            Value::Tensor(_) => Err(Diagnostic::new(
                "expected a number",
                e.span,
                "this is a tensor, but a compile-time number is needed here",
            )),
        }
    }

    /// A compile-time integer.
    pub(super) fn int(&mut self, e: &Expr) -> Result<i64, Diagnostic> {
        const LIMIT: f64 = (1u64 << 53) as f64;
        let x = self.number(e)?;
        if let ExprKind::Binary(BinOp::Div, a, b) = &e.kind
            && x.fract() != 0.0
        {
            let (a, b) = (self.number(a)?, self.number(b)?);
            return Err(Diagnostic::new(
                "inexact division",
                e.span,
                format!("{a} is not divisible by {b}: an integer is needed here"),
            ));
        }
        if x.fract() != 0.0 {
            return Err(Diagnostic::new(
                "expected an integer",
                e.span,
                format!("this evaluates to {x}, not a whole number"),
            ));
        }
        if !x.is_finite() || x.abs() >= LIMIT {
            return Err(Diagnostic::new(
                "integer too large",
                e.span,
                "integers must stay below 2^53 in magnitude",
            ));
        }
        Ok(x as i64)
    }

    /// A non-negative integer (block indices, offsets).
    pub(super) fn index(&mut self, e: &Expr) -> Result<i64, Diagnostic> {
        match self.int(e)? {
            v if v >= 0 => Ok(v),
            v => Err(Diagnostic::new(
                "negative index",
                e.span,
                format!("expected a non-negative integer, this is {v}"),
            )),
        }
    }

    pub(super) fn positive_int(&mut self, e: &Expr) -> Result<i64, Diagnostic> {
        match self.int(e)? {
            v if v > 0 => Ok(v),
            v => Err(Diagnostic::new(
                "expected a positive integer",
                e.span,
                format!("this evaluates to {v}"),
            )),
        }
    }

    /// An axis size: affine in `seq` and `past`.
    pub(super) fn dim_expr(&mut self, e: &Expr) -> Result<Dim, Diagnostic> {
        match &e.kind {
            ExprKind::Ident(n) if self.globals.dims.get(n).is_some_and(|(v, _)| v.is_none()) => {
                Ok(if n == "seq" { Dim::SEQ } else { Dim::PAST })
            }
            ExprKind::Binary(op @ (BinOp::Add | BinOp::Sub), a, b) => {
                let (a, b) = (self.dim_expr(a)?, self.dim_expr(b)?);
                Ok(if *op == BinOp::Add {
                    a + b
                } else {
                    a + b.scale(-1)
                })
            }
            ExprKind::Binary(BinOp::Mul, a, b) => self.dim_product(a, b, e.span),
            _ => Ok(Dim::constant(self.int(e)?)),
        }
    }

    fn dim_product(&mut self, a: &Expr, b: &Expr, span: Span) -> Result<Dim, Diagnostic> {
        let (da, db) = (self.dim_expr(a)?, self.dim_expr(b)?);
        match (da.as_const(), db.as_const()) {
            (Some(k), _) => Ok(db.scale(k)),
            (_, Some(k)) => Ok(da.scale(k)),
            _ => Err(Diagnostic::new(
                "non-affine dimension",
                span,
                format!("`{da}` times `{db}` is not affine in `seq` and `past`"),
            )),
        }
    }

    fn negate(&mut self, x: &Expr, span: Span) -> Result<Value, Diagnostic> {
        match self.expr(x)? {
            Value::Num(v) => Ok(Value::Num(-v)),
            Value::Tensor(n) => Ok(Value::Tensor(self.emit(Op::Neg, &[n], span)?)),
        }
    }

    fn binary(&mut self, op: BinOp, a: &Expr, b: &Expr, span: Span) -> Result<Value, Diagnostic> {
        let (va, vb) = (self.expr(a)?, self.expr(b)?);
        match (va, vb) {
            (Value::Num(x), Value::Num(y)) => fold(op, x, y, b.span).map(Value::Num),
            (Value::Tensor(x), Value::Tensor(y)) => self.tensor_binary(op, x, y, span),
            (Value::Tensor(x), Value::Num(c)) => self.tensor_const(op, x, c, b.span, span),
            (Value::Num(c), Value::Tensor(y)) => self.const_tensor(op, c, y, a.span, span),
        }
    }

    fn tensor_binary(
        &mut self,
        op: BinOp,
        x: NodeId,
        y: NodeId,
        span: Span,
    ) -> Result<Value, Diagnostic> {
        let symbol = ["+", "-", "*", "/"][op as usize];
        let op = match op {
            BinOp::Add => Op::Add,
            BinOp::Sub => Op::Sub,
            BinOp::Mul => Op::Mul,
            BinOp::Div => {
                return Err(Diagnostic::new(
                    "division by a tensor",
                    span,
                    "`/` divides by a compile-time number only",
                )
                .with_help(
                    "multiply by a reciprocal computed elsewhere, or divide by a constant",
                ));
            }
        };
        Ok(Value::Tensor(self.emit_as(symbol, op, &[x, y], span)?))
    }

    fn tensor_const(
        &mut self,
        op: BinOp,
        x: NodeId,
        c: f64,
        cspan: Span,
        span: Span,
    ) -> Result<Value, Diagnostic> {
        let node = match op {
            BinOp::Add => self.emit(Op::AddConst { value: c }, &[x], span)?,
            BinOp::Sub => self.emit(Op::AddConst { value: -c }, &[x], span)?,
            BinOp::Mul => self.emit(Op::MulConst { value: c }, &[x], span)?,
            BinOp::Div if c == 0.0 => {
                return Err(Diagnostic::new("division by zero", cspan, "this is zero"));
            }
            BinOp::Div => self.emit(Op::MulConst { value: 1.0 / c }, &[x], span)?,
        };
        Ok(Value::Tensor(node))
    }

    fn const_tensor(
        &mut self,
        op: BinOp,
        c: f64,
        y: NodeId,
        cspan: Span,
        span: Span,
    ) -> Result<Value, Diagnostic> {
        match op {
            BinOp::Add | BinOp::Mul => self.tensor_const(op, y, c, cspan, span),
            BinOp::Sub => {
                let neg = self.emit(Op::Neg, &[y], span)?;
                self.tensor_const(BinOp::Add, neg, c, cspan, span)
            }
            BinOp::Div => Err(Diagnostic::new(
                "division by a tensor",
                span,
                "`/` divides by a compile-time number only",
            )),
        }
    }

    /// Inlines `block[index](args)`.
    pub(super) fn call_block(
        &mut self,
        b: &ast::BlockDecl,
        index: Option<i64>,
        args: &[ast::Arg],
        span: Span,
    ) -> Result<Value, Diagnostic> {
        self.check_block_args(b, args, span)?;
        let values = args
            .iter()
            .map(|a| self.expr(&a.value))
            .collect::<Result<Vec<_>, _>>()?;
        self.inline_block(b, index, values, span)
    }

    fn inline_block(
        &mut self,
        b: &ast::BlockDecl,
        index: Option<i64>,
        values: Vec<Value>,
        span: Span,
    ) -> Result<Value, Diagnostic> {
        if let Some((_, first)) = self.call_stack.iter().find(|(n, _)| *n == b.name.name) {
            let chain: Vec<&str> = self.call_stack.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Diagnostic::new(
                "cycle between blocks",
                span,
                format!(
                    "`{}` calls itself: {} → {}",
                    b.name.name,
                    chain.join(" → "),
                    b.name.name
                ),
            )
            .with_note(*first, "the outer call")
            .with_help("blocks are inlined, so they cannot be recursive"));
        }
        let frame = self.instance_frame(b, index);
        self.call_stack.push((b.name.name.clone(), span));
        self.push_frame(frame);
        let result = self.block_body(b, index, values);
        self.pop_frame();
        self.call_stack.pop();
        result
    }

    fn check_block_args(
        &self,
        b: &ast::BlockDecl,
        args: &[ast::Arg],
        span: Span,
    ) -> Result<(), Diagnostic> {
        if let Some(named) = args.iter().find_map(|a| a.name.as_ref()) {
            return Err(Diagnostic::new(
                "named argument to a block",
                named.span,
                "block arguments are positional",
            ));
        }
        if args.len() != b.params.len() {
            let label = format!(
                "`{}` takes {} argument(s), got {}",
                b.name.name,
                b.params.len(),
                args.len()
            );
            return Err(Diagnostic::new("wrong number of arguments", span, label)
                .with_note(b.name.span, "declared here"));
        }
        Ok(())
    }

    fn instance_frame(&self, b: &ast::BlockDecl, index: Option<i64>) -> Frame {
        let outer = self.scope();
        let name = match index {
            Some(i) => format!("{}.{i}", b.name.name),
            None => b.name.name.clone(),
        };
        let path = if outer.path.is_empty() {
            name
        } else {
            format!("{}/{name}", outer.path)
        };
        let layer = outer.layer.or(index.map(|i| i as u32));
        Frame {
            locals: HashMap::new(),
            scope: Scope {
                path,
                layer,
                origin: String::new(),
            },
        }
    }

    fn block_body(
        &mut self,
        b: &ast::BlockDecl,
        index: Option<i64>,
        values: Vec<Value>,
    ) -> Result<Value, Diagnostic> {
        if let (Some(iname), Some(i)) = (&b.index, index) {
            self.bind(iname, Value::Num(i as f64))?;
        }
        for (p, v) in b.params.iter().zip(values) {
            self.bind(p, v)?;
        }
        for stmt in &b.body {
            match stmt {
                ast::BlockStmt::Let(l) => self.let_stmt(l)?,
                ast::BlockStmt::Weight(w) => self.block_weight(b, w, index)?,
            }
        }
        self.expr(&b.ret)
    }

    fn block_weight(
        &mut self,
        b: &ast::BlockDecl,
        w: &ast::WeightDecl,
        index: Option<i64>,
    ) -> Result<(), Diagnostic> {
        self.check_local_name(&w.name)?;
        let qualified = match index {
            Some(i) => format!("{}.{i}.{}", b.name.name, w.name.name),
            None => format!("{}.{}", b.name.name, w.name.name),
        };
        let idx = b
            .index
            .as_ref()
            .zip(index)
            .map(|(n, i)| (n.name.as_str(), i));
        let def = self.weight_def(w, &qualified, idx)?;
        self.bind(&w.name, Value::Tensor(def.node))
    }

    /// `repeat block[a..b](…)`, inlined `b − a` times (at most [`MAX_REPEAT`]).
    fn repeat(&mut self, r: &ast::Repeat, span: Span) -> Result<Value, Diagnostic> {
        let b = self.block(&r.block)?;
        if b.index.is_none() {
            return Err(Diagnostic::new(
                "block has no index",
                r.block.span,
                format!(
                    "`repeat` needs an indexed block: `block {}[i](...)`",
                    r.block.name
                ),
            ));
        }
        let (start, end) = (self.index(&r.start)?, self.int(&r.end)?);
        if end <= start {
            return Err(Diagnostic::new(
                "empty range",
                r.start.span.to(r.end.span),
                format!("`{start}..{end}` repeats nothing: expected start < end"),
            ));
        }
        if end - start > MAX_REPEAT {
            return Err(Diagnostic::new(
                "too many repetitions",
                r.start.span.to(r.end.span),
                format!(
                    "`{start}..{end}` repeats the block {} times; at most {MAX_REPEAT} (each \
                     repetition is inlined into the graph)",
                    end - start
                ),
            ));
        }
        if r.args.is_empty() {
            return Err(Diagnostic::new(
                "nothing to repeat over",
                span,
                "`repeat` feeds its first argument through the blocks: pass at least one",
            ));
        }
        self.check_block_args(b, &r.args, span)?;
        let mut values = r
            .args
            .iter()
            .map(|a| self.expr(&a.value))
            .collect::<Result<Vec<_>, _>>()?;
        for i in start..end {
            let out = self.inline_block(b, Some(i), values.clone(), span)?;
            values[0] = out;
        }
        Ok(values.swap_remove(0))
    }

    pub(super) fn block(&self, name: &ast::Ident) -> Result<&'a ast::BlockDecl, Diagnostic> {
        self.globals.blocks.get(&name.name).copied().ok_or_else(|| {
            let mut d = Diagnostic::new(
                format!("unknown block `{}`", name.name),
                name.span,
                "no block of this name",
            );
            if let Some(h) =
                did_you_mean(&name.name, self.globals.blocks.keys().map(String::as_str))
            {
                d = d.with_help(h);
            }
            d
        })
    }
}

fn fold(op: BinOp, x: f64, y: f64, yspan: Span) -> Result<f64, Diagnostic> {
    Ok(match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div if y == 0.0 => {
            return Err(Diagnostic::new("division by zero", yspan, "this is zero"));
        }
        BinOp::Div => x / y,
    })
}
