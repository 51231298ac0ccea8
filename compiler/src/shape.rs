//! Shape rules shared by the checker (per statement, with diagnostics) and the ops'
//! shape rules (per tensor, in the graph IR): sliding windows, padding, size limits.

use crate::layers::Padding;

/// The most elements one sample's tensor or one parameter may have (2^31).
pub const MAX_ELEMENTS: u128 = 1 << 31;

/// Output size of a sliding window: ⌊(n + pad − k)/s⌋ + 1, or `None` if it does not fit.
pub fn window_out(n: usize, pad_total: usize, k: usize, s: usize) -> Option<usize> {
    (n + pad_total).checked_sub(k).map(|r| r / s + 1)
}

/// The padding a `conv2d` uses on each side (rows, cols), `same` resolved.
pub fn conv_padding(padding: Padding, kernel: [usize; 2]) -> [usize; 2] {
    match padding {
        Padding::Explicit(p) => p,
        Padding::Same => [(kernel[0] - 1) / 2, (kernel[1] - 1) / 2],
    }
}
