//! Dense row-major tensors for the interpreter and the runtime, generic over the float type.

use std::fmt::{Debug, Display};

/// The float types the interpreter runs in: `f32` (what kernels compute) and `f64`
/// (for finite-difference gradient checks).
pub trait Real:
    num_traits::Float
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
{
    fn from_f64(x: f64) -> Self;
    fn as_f64(self) -> f64;
    fn from_usize(x: usize) -> Self {
        Self::from_f64(x as f64)
    }
}

impl Real for f32 {
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn from_f64(x: f64) -> f64 {
        x
    }
    fn as_f64(self) -> f64 {
        self
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Tensor<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

impl<T: Real> Tensor<T> {
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Tensor<T> {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "tensor data does not fit shape {shape:?}");
        Tensor { shape, data }
    }

    pub fn zeros(shape: &[usize]) -> Tensor<T> {
        Tensor { shape: shape.to_vec(), data: vec![T::zero(); shape.iter().product()] }
    }

    pub fn full(shape: &[usize], v: T) -> Tensor<T> {
        Tensor { shape: shape.to_vec(), data: vec![v; shape.iter().product()] }
    }

    pub fn scalar(v: T) -> Tensor<T> {
        Tensor { shape: vec![], data: vec![v] }
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn cast<U: Real>(&self) -> Tensor<U> {
        Tensor { shape: self.shape.clone(), data: self.data.iter().map(|x| U::from_f64(x.as_f64())).collect() }
    }

    pub fn map(&self, f: impl Fn(T) -> T) -> Tensor<T> {
        Tensor { shape: self.shape.clone(), data: self.data.iter().map(|&x| f(x)).collect() }
    }
}
