//! Matrix products, bias, and maxout's reduction.

use super::{arity, numel, rank, Grads, OpRule, Shapes, StepCtx, TextOp, VjpCtx};
use crate::ir::ValueId;
use crate::tensor::{Real, Tensor};
use crate::Error;

/// C = op(A)·op(B), where op transposes when the flag is set. Dense layers use
/// `x·Wᵀ` (`trans_b`), their backward products `dy·W` and `dyᵀ·x` (`trans_a`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatMul {
    pub trans_a: bool,
    pub trans_b: bool,
}

impl MatMul {
    /// (m, k, n) for A's and B's shapes.
    pub fn dims(&self, a: &[usize], b: &[usize]) -> (usize, usize, usize) {
        let (m, k) = if self.trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
        let n = if self.trans_b { b[0] } else { b[1] };
        (m, k, n)
    }
}

impl OpRule for MatMul {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("matmul", || MatMul { trans_a: t.flag("trans_a"), trans_b: t.flag("trans_b") })
    }

    fn attrs(&self) -> String {
        match (self.trans_a, self.trans_b) {
            (false, false) => String::new(),
            (true, false) => "trans_a".into(),
            (false, true) => "trans_b".into(),
            (true, true) => "trans_a trans_b".into(),
        }
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 2)?;
        rank(ins[0], 2, "A")?;
        rank(ins[1], 2, "B")?;
        let (m, k, n) = self.dims(ins[0], ins[1]);
        let kb = if self.trans_b { ins[1][1] } else { ins[1][0] };
        if k != kb {
            return Err(format!("inner dimensions differ: {k} and {kb}"));
        }
        Ok(vec![vec![m, n]])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dc) = dys[0] else { return Ok(vec![None, None]) };
        let (a, b) = (cx.inputs[0], cx.inputs[1]);
        let da = if self.trans_a {
            cx.emit1(MatMul { trans_a: self.trans_b, trans_b: true }, &[b, dc])?
        } else {
            cx.emit1(MatMul { trans_a: false, trans_b: !self.trans_b }, &[dc, b])?
        };
        let db = if self.trans_b {
            cx.emit1(MatMul { trans_a: true, trans_b: self.trans_a }, &[dc, a])?
        } else {
            cx.emit1(MatMul { trans_a: !self.trans_a, trans_b: false }, &[a, dc])?
        };
        Ok(vec![Some(da), Some(db)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (a, b) = (ins[0], ins[1]);
        let (m, k, n) = self.dims(&a.shape, &b.shape);
        let at = |i: usize, p: usize| if self.trans_a { a.data[p * m + i] } else { a.data[i * k + p] };
        let bt = |p: usize, j: usize| if self.trans_b { b.data[j * k + p] } else { b.data[p * n + j] };
        let mut c = Tensor::zeros(&[m, n]);
        for i in 0..m {
            for j in 0..n {
                let mut s = T::zero();
                for p in 0..k {
                    s += at(i, p) * bt(p, j);
                }
                c.data[i * n + j] = s;
            }
        }
        Ok(vec![c])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        let (m, k, n) = self.dims(ins[0], ins[1]);
        2 * (m * k * n) as u64
    }
}

/// x + b along axis 1 (features of [N, F], channels of [N, C, H, W]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BiasAdd;

impl OpRule for BiasAdd {
    fn name(&self) -> &'static str {
        "bias_add"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("bias_add", || BiasAdd)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 2)?;
        rank(ins[1], 1, "bias")?;
        if ins[0].len() < 2 || ins[0][1] != ins[1][0] {
            return Err(format!("bias {:?} does not match axis 1 of {:?}", ins[1], ins[0]));
        }
        Ok(vec![ins[0].to_vec()])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None, None]) };
        let db = cx.emit1(BiasGrad, &[dy])?;
        Ok(vec![Some(dy), Some(db)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (x, b) = (ins[0], ins[1]);
        let c = x.shape[1];
        let inner: usize = x.shape[2..].iter().product();
        let mut y = x.clone();
        for (i, v) in y.data.iter_mut().enumerate() {
            *v += b.data[(i / inner) % c];
        }
        Ok(vec![y])
    }
}

/// The bias gradient: sum of dy over every axis but 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BiasGrad;

impl OpRule for BiasGrad {
    fn name(&self) -> &'static str {
        "bias_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        t.named("bias_grad", || BiasGrad)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 1)?;
        if ins[0].len() < 2 {
            return Err("needs rank 2 or more".into());
        }
        Ok(vec![vec![ins[0][1]]])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let dy = ins[0];
        let c = dy.shape[1];
        let inner: usize = dy.shape[2..].iter().product();
        let mut db = Tensor::zeros(&[c]);
        for (i, &v) in dy.data.iter().enumerate() {
            db.data[(i / inner) % c] += v;
        }
        Ok(vec![db])
    }

    fn flops(&self, ins: &Shapes, _: &Shapes) -> u64 {
        numel(ins[0])
    }
}

/// Maxout's reduction: output j of [N, units] is the max of inputs j·k … j·k+k−1 of
/// [N, units·k]; the first maximum wins, NaN wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxoutReduce {
    pub pieces: usize,
}

/// The index of the winning piece: the first maximum (strict `>`), or the first NaN.
pub(crate) fn argmax_first<T: Real>(xs: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if xs[best].is_nan() {
            break;
        }
        if x.is_nan() || x > xs[best] {
            best = i;
        }
    }
    best
}

impl OpRule for MaxoutReduce {
    fn name(&self) -> &'static str {
        "maxout"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "maxout").then(|| Ok(MaxoutReduce { pieces: t.usize("pieces")? }))
    }

    fn attrs(&self) -> String {
        format!("pieces={}", self.pieces)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 1)?;
        rank(ins[0], 2, "input")?;
        if !ins[0][1].is_multiple_of(self.pieces) {
            return Err(format!("{} features are not a multiple of {} pieces", ins[0][1], self.pieces));
        }
        Ok(vec![vec![ins[0][0], ins[0][1] / self.pieces]])
    }

    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let Some(dy) = dys[0] else { return Ok(vec![None]) };
        let z = cx.inputs[0];
        Ok(vec![Some(cx.emit1(MaxoutGrad { pieces: self.pieces }, &[z, dy])?)])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let z = ins[0];
        let k = self.pieces;
        let data = z.data.chunks(k).map(|w| w[argmax_first(w)]).collect();
        Ok(vec![Tensor::new(vec![z.shape[0], z.shape[1] / k], data)])
    }
}

/// Maxout's gradient: dy goes to the winning piece of each group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxoutGrad {
    pub pieces: usize,
}

impl OpRule for MaxoutGrad {
    fn name(&self) -> &'static str {
        "maxout_grad"
    }

    fn from_text(t: &TextOp) -> Option<Result<Self, String>> {
        (t.name == "maxout_grad").then(|| Ok(MaxoutGrad { pieces: t.usize("pieces")? }))
    }

    fn attrs(&self) -> String {
        format!("pieces={}", self.pieces)
    }

    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
        arity(ins, 2)?;
        Ok(vec![ins[0].to_vec()])
    }

    fn eval<T: Real>(&self, ins: &[&Tensor<T>], _: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
        let (z, dy) = (ins[0], ins[1]);
        let k = self.pieces;
        let mut dz = Tensor::zeros(&z.shape);
        for (g, w) in z.data.chunks(k).enumerate() {
            dz.data[g * k + argmax_first(w)] = dy.data[g];
        }
        Ok(vec![dz])
    }
}
