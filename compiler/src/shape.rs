//! Shape rules shared by the checker (per statement, with diagnostics) and the ops'
//! shape rules (per tensor, in the graph IR): sliding windows, padding, size limits.

use crate::layers::Padding;

/// The most elements one sample's tensor or one parameter may have (2^31).
pub const MAX_ELEMENTS: u128 = 1 << 31;

/// The most elements any tensor of a graph may have (2^40): a byte offset into it, times
/// any small factor, still fits the index arithmetic of every stage.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 40;

/// A shape's number of elements, or `None` past [`MAX_TENSOR_ELEMENTS`].
pub fn elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| n <= MAX_TENSOR_ELEMENTS)
}

/// Output size of a sliding window: ⌊(n + pad − k)/s⌋ + 1, or `None` if it does not fit
/// (or the stride is zero).
pub fn window_out(n: usize, pad_total: usize, k: usize, s: usize) -> Option<usize> {
    n.checked_add(pad_total)?.checked_sub(k)?.checked_div(s).map(|r| r + 1)
}

/// The padding a `conv2d` uses on each side (rows, cols), `same` resolved.
pub fn conv_padding(padding: Padding, kernel: [usize; 2]) -> [usize; 2] {
    match padding {
        Padding::Explicit(p) => p,
        Padding::Same => [(kernel[0] - 1) / 2, (kernel[1] - 1) / 2],
    }
}
