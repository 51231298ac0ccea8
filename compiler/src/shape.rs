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

/// The extent of a dilated kernel on one axis: (k − 1)·d + 1.
pub fn dilated(k: usize, d: usize) -> usize {
    (k - 1) * d + 1
}

/// The padding a `conv2d` uses on each side (rows, cols), `same` resolved: half the
/// dilated kernel's extent less one (the checker has made sure it is odd).
pub fn conv_padding(padding: Padding, kernel: [usize; 2], dilation: [usize; 2]) -> [usize; 2] {
    match padding {
        Padding::Explicit(p) => p,
        Padding::Same => [(dilated(kernel[0], dilation[0]) - 1) / 2, (dilated(kernel[1], dilation[1]) - 1) / 2],
    }
}

/// Output size of a transposed convolution on one axis, as PyTorch's `ConvTranspose2d`:
/// (n − 1)·s − 2p + (k − 1)·d + q + 1, or `None` if the padding removes everything.
pub fn transposed_out(n: usize, k: usize, s: usize, p: usize, q: usize, d: usize) -> Option<usize> {
    let full = (n - 1).checked_mul(s)?.checked_add(dilated(k, d))?.checked_add(q)?;
    full.checked_sub(p.checked_mul(2)?).filter(|&o| o > 0)
}
