//! The op table: every primitive op of the graph IR.
//!
//! Each op is a small struct implementing [`OpRule`]: its shape rule, its gradient (VJP,
//! emitted as more graph nodes: autodiff is a graph transform), its reference interpreter
//! loop, and its cost. The [`Op`] enum is generated from the one list in [`op_table!`], so
//! adding an op means writing its struct in its family's file and adding one line there.
//! Its code-generation rules (storage, element function, work split, loop nest) live with
//! the back end, as its `codegen::lower::LowerRule`, which the same list dispatches to
//! (`Op::lowering`): an op without one does not compile.

mod activation;
mod batchnorm;
mod concat;
mod conv;
mod dense;
mod elementwise;
mod loss;
mod optim;
mod pool;
mod source;

pub use activation::{Act, ActGrad, Softmax, SoftmaxGrad};
pub use batchnorm::{
    channel_layout as batchnorm_layout, exchange_data, exchange_values, split_f64, BatchNormApply, BatchNormEval,
    BatchNormGradInput, BatchNormGradSums, BatchNormSqDev, BatchNormStats, BatchNormSum, BatchNormTrain,
    BatchNormTrainGrad, RunningUpdate,
};
pub use concat::{Concat, SliceChannels};
pub use conv::{Conv2d, Conv2dGradInput, Conv2dGradWeight, ConvGeom};
pub use dense::{BiasAdd, BiasGrad, MatMul, MaxoutGrad, MaxoutReduce};
pub use elementwise::{dropout_keep, dropout_key, dropout_threshold, mix64, Add, Dropout, Reshape};
pub use loss::{
    mean_count, BceWithLogits, BceWithLogitsGrad, Mse, MseGrad, SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad,
};
pub use optim::{AdamUpdate, SgdUpdate};
pub use pool::{
    avg_divisor, linear_runs, AvgPool, AvgPoolGrad, GlobalAvgPool, GlobalAvgPoolGrad, GlobalMaxPool, GlobalMaxPoolGrad,
    LinearTap, MaxPool, MaxPoolGrad, PoolGeom, Upsample, UpsampleBilinear, UpsampleBilinearGrad, UpsampleGrad,
};
pub use source::{Source, SourceKind};

use crate::ir::{Graph, Origin, ValueId};
use crate::tensor::{Real, Tensor};
use crate::Error;

/// Per-step values every op may read: the RNG seed and the step counter (dropout masks
/// are a hash of seed, step, statement and element), and the optimizer's hyperparameters
/// that change during training (learning rate; the Adam step for bias correction).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCtx {
    pub seed: u64,
    pub step: u64,
    pub lr: f64,
}

impl Default for StepCtx {
    fn default() -> StepCtx {
        StepCtx { seed: 0, step: 0, lr: 0.01 }
    }
}

/// Shapes of an op's inputs.
pub type Shapes<'a> = [&'a [usize]];

/// What the VJP of an op is handed: the graph to add nodes to, and the node's values.
pub struct VjpCtx<'g> {
    pub graph: &'g mut Graph,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    pub origin: Origin,
}

impl VjpCtx<'_> {
    /// Add a node to the backward graph and return its outputs.
    pub fn emit(&mut self, op: impl Into<Op>, inputs: &[ValueId]) -> Result<Vec<ValueId>, Error> {
        self.graph.push(op.into(), inputs, self.origin.clone())
    }

    pub fn emit1(&mut self, op: impl Into<Op>, inputs: &[ValueId]) -> Result<ValueId, Error> {
        Ok(self.emit(op, inputs)?[0])
    }

    pub fn shape(&self, v: ValueId) -> &[usize] {
        self.graph.shape(v)
    }
}

/// The gradients of an op's inputs (`None`: no gradient flows to that input).
pub type Grads = Vec<Option<ValueId>>;

/// The rules of one primitive op.
pub trait OpRule {
    /// The op's name in the IR text.
    fn name(&self) -> &'static str;

    /// Attributes in the IR text (`stride=[2, 2] padding=[1, 1]`), empty if none.
    fn attrs(&self) -> String {
        String::new()
    }

    /// The shapes of the outputs, or why these inputs do not fit.
    fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String>;

    /// Emit the vector-Jacobian product: given the cotangents of the outputs (`None`: zero,
    /// except for a loss, whose single output is the root with cotangent 1), the
    /// cotangents of the inputs.
    fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
        let _ = (cx, dys);
        Err(Error::Ir(format!("`{}` has no gradient (it only appears in backward or update graphs)", self.name())))
    }

    /// Run the op with plain loops.
    fn eval<T: Real>(&self, ins: &[&Tensor<T>], cx: &StepCtx) -> Result<Vec<Tensor<T>>, String>;

    /// Floating-point operations (a multiply-add counts 2), for kernel plans.
    fn flops(&self, ins: &Shapes, outs: &Shapes) -> u64 {
        let _ = ins;
        outs.iter().map(|s| s.iter().product::<usize>() as u64).sum()
    }

    /// The op back from its IR text (name and attributes, as `name` and `attrs` print
    /// them): `None` if the name is not this op's.
    fn from_text(t: &TextOp) -> Option<Result<Self, String>>
    where
        Self: Sized;
}

/// An op as the graph IR's text gives it: its name, its attributes (`key=value`, bare
/// flags, a quoted name), and its outputs' declared shapes.
#[derive(Clone, Debug, Default)]
pub struct TextOp<'a> {
    pub name: &'a str,
    pub values: Vec<(&'a str, &'a str)>,
    pub flags: Vec<&'a str>,
    pub quoted: Option<String>,
    pub shapes: Vec<Vec<usize>>,
}

impl TextOp<'_> {
    /// `Some(Ok(op))` when the name is `name`: for ops without attributes.
    pub fn named<T>(&self, name: &str, op: impl FnOnce() -> T) -> Option<Result<T, String>> {
        (self.name == name).then(|| Ok(op()))
    }

    fn value(&self, key: &str) -> Result<&str, String> {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("`{}` needs `{key}=`", self.name))
    }

    pub fn f64(&self, key: &str) -> Result<f64, String> {
        let v = self.value(key)?;
        v.parse().map_err(|_| format!("`{key}={v}` is not a number"))
    }

    pub fn usize(&self, key: &str) -> Result<usize, String> {
        let v = self.value(key)?;
        v.parse().map_err(|_| format!("`{key}={v}` is not a count"))
    }

    /// A count that may be absent.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>, String> {
        if self.has(key) {
            self.usize(key).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn u64(&self, key: &str) -> Result<u64, String> {
        let v = self.value(key)?;
        v.parse().map_err(|_| format!("`{key}={v}` is not a count"))
    }

    pub fn bool(&self, key: &str) -> Result<bool, String> {
        match self.value(key)? {
            "true" => Ok(true),
            "false" => Ok(false),
            v => Err(format!("`{key}={v}` is not true or false")),
        }
    }

    pub fn list(&self, key: &str) -> Result<Vec<usize>, String> {
        let v = self.value(key)?;
        let inner = v
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .ok_or_else(|| format!("`{key}={v}` is not a list"))?;
        if inner.trim().is_empty() {
            return Ok(vec![]);
        }
        inner.split(',').map(|x| x.trim().parse().map_err(|_| format!("`{key}={v}` is not a list of counts"))).collect()
    }

    pub fn pair(&self, key: &str) -> Result<[usize; 2], String> {
        let l = self.list(key)?;
        <[usize; 2]>::try_from(l.as_slice()).map_err(|_| format!("`{key}=` needs two values"))
    }

    /// A pair of counts of at least one (strides, window sizes).
    pub fn positive_pair(&self, key: &str) -> Result<[usize; 2], String> {
        let p = self.pair(key)?;
        if p.contains(&0) {
            return Err(format!("`{key}=` must be at least 1, not {p:?}"));
        }
        Ok(p)
    }

    /// Whether `key=` is given.
    pub fn has(&self, key: &str) -> bool {
        self.values.iter().any(|(k, _)| *k == key)
    }

    pub fn flag(&self, f: &str) -> bool {
        self.flags.contains(&f)
    }

    pub fn quoted(&self) -> Result<String, String> {
        self.quoted.clone().ok_or_else(|| format!("`{}` needs a quoted name", self.name))
    }

    /// The shape of the op's only output.
    pub fn shape(&self) -> Result<Vec<usize>, String> {
        match self.shapes.as_slice() {
            [s] => Ok(s.clone()),
            _ => Err(format!("`{}` has one output", self.name)),
        }
    }
}

macro_rules! op_table {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// A primitive op of the graph IR with its attributes.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op { $($variant($ty)),* }

        $(impl From<$ty> for Op {
            fn from(op: $ty) -> Op { Op::$variant(op) }
        })*

        impl Op {
            pub fn name(&self) -> &'static str { match self { $(Op::$variant(o) => o.name()),* } }
            pub fn attrs(&self) -> String { match self { $(Op::$variant(o) => o.attrs()),* } }
            pub fn infer(&self, ins: &Shapes) -> Result<Vec<Vec<usize>>, String> {
                match self { $(Op::$variant(o) => o.infer(ins)),* }
            }
            pub fn vjp(&self, cx: &mut VjpCtx, dys: &[Option<ValueId>]) -> Result<Grads, Error> {
                match self { $(Op::$variant(o) => o.vjp(cx, dys)),* }
            }
            pub fn eval<T: Real>(&self, ins: &[&Tensor<T>], cx: &StepCtx) -> Result<Vec<Tensor<T>>, String> {
                match self { $(Op::$variant(o) => o.eval(ins, cx)),* }
            }
            pub fn flops(&self, ins: &Shapes, outs: &Shapes) -> u64 {
                match self { $(Op::$variant(o) => o.flops(ins, outs)),* }
            }

            /// The op a line of IR text names (see [`OpRule::from_text`]).
            pub fn from_text(t: &TextOp) -> Result<Op, String> {
                $(if let Some(r) = <$ty>::from_text(t) {
                    return r.map(Op::$variant);
                })*
                Err(format!("no op is named `{}`", t.name))
            }

            /// The op's code-generation rules (`codegen::lower`): every op has them, or
            /// this does not compile.
            #[cfg(feature = "codegen")]
            pub fn lowering(&self) -> &dyn crate::codegen::lower::LowerRule {
                match self { $(Op::$variant(o) => o),* }
            }
        }
    };
}

op_table! {
    Source(Source),
    MatMul(MatMul),
    BiasAdd(BiasAdd),
    BiasGrad(BiasGrad),
    Conv2d(Conv2d),
    Conv2dGradInput(Conv2dGradInput),
    Conv2dGradWeight(Conv2dGradWeight),
    Act(Act),
    ActGrad(ActGrad),
    Softmax(Softmax),
    SoftmaxGrad(SoftmaxGrad),
    MaxPool(MaxPool),
    MaxPoolGrad(MaxPoolGrad),
    AvgPool(AvgPool),
    AvgPoolGrad(AvgPoolGrad),
    GlobalAvgPool(GlobalAvgPool),
    GlobalAvgPoolGrad(GlobalAvgPoolGrad),
    GlobalMaxPool(GlobalMaxPool),
    GlobalMaxPoolGrad(GlobalMaxPoolGrad),
    Upsample(Upsample),
    UpsampleGrad(UpsampleGrad),
    UpsampleBilinear(UpsampleBilinear),
    UpsampleBilinearGrad(UpsampleBilinearGrad),
    Reshape(Reshape),
    Add(Add),
    Concat(Concat),
    SliceChannels(SliceChannels),
    Dropout(Dropout),
    BatchNormStats(BatchNormStats),
    BatchNormTrain(BatchNormTrain),
    BatchNormTrainGrad(BatchNormTrainGrad),
    BatchNormEval(BatchNormEval),
    BatchNormSum(BatchNormSum),
    BatchNormSqDev(BatchNormSqDev),
    BatchNormApply(BatchNormApply),
    BatchNormGradSums(BatchNormGradSums),
    BatchNormGradInput(BatchNormGradInput),
    RunningUpdate(RunningUpdate),
    MaxoutReduce(MaxoutReduce),
    MaxoutGrad(MaxoutGrad),
    SoftmaxCrossEntropy(SoftmaxCrossEntropy),
    SoftmaxCrossEntropyGrad(SoftmaxCrossEntropyGrad),
    BceWithLogits(BceWithLogits),
    BceWithLogitsGrad(BceWithLogitsGrad),
    Mse(Mse),
    MseGrad(MseGrad),
    SgdUpdate(SgdUpdate),
    AdamUpdate(AdamUpdate),
}

/// Helpers for shape rules.
pub(crate) fn arity(ins: &Shapes, n: usize) -> Result<(), String> {
    if ins.len() == n {
        Ok(())
    } else {
        Err(format!("expects {n} inputs, found {}", ins.len()))
    }
}

pub(crate) fn rank(s: &[usize], r: usize, what: &str) -> Result<(), String> {
    if s.len() == r {
        Ok(())
    } else {
        Err(format!("{what} must have rank {r}, found {s:?}"))
    }
}

pub(crate) fn same(a: &[usize], b: &[usize], what: &str) -> Result<(), String> {
    if a == b {
        Ok(())
    } else {
        Err(format!("{what}: shapes {a:?} and {b:?} differ"))
    }
}

pub(crate) fn numel(s: &[usize]) -> u64 {
    s.iter().product::<usize>() as u64
}
