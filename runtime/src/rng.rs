//! Counter-based random streams. Every random choice is a pure function of the seed and a
//! counter (which parameter, which epoch, which step), so a resumed run needs no saved
//! generator state and any thread count draws the same numbers. Separate streams for
//! initialization, shuffling, the validation split and augmentation (dropout's hash lives
//! with the op).

use percept_compiler::ops::mix64;

/// A SplitMix64 generator: a fast, statistically good stream from a 64-bit seed.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    /// The stream for (seed, purpose, index): e.g. (seed, INIT, parameter number).
    pub fn stream(seed: u64, purpose: u64, index: u64) -> SplitMix {
        SplitMix(mix64(seed ^ mix64(purpose.wrapping_mul(0x9e3779b97f4a7c15) ^ mix64(index))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        mix64(self.0)
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n without modulo bias (Lemire's method).
    pub fn below(&mut self, n: u64) -> u64 {
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }
}

/// Stream purposes.
pub const INIT: u64 = 1;
pub const SHUFFLE: u64 = 2;
pub const SPLIT: u64 = 3;
pub const AUGMENT: u64 = 4;

/// The order in which an epoch visits `n` samples: a Fisher–Yates shuffle seeded by
/// (seed, epoch), or the identity without shuffling.
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    if shuffle {
        let mut rng = SplitMix::stream(seed, SHUFFLE, epoch);
        for i in (1..n).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_permutation_that_depends_on_seed_and_epoch() {
        let a = epoch_order(1000, 7, 0, true);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
        assert_ne!(a, epoch_order(1000, 7, 1, true));
        assert_ne!(a, epoch_order(1000, 8, 0, true));
        assert_eq!(a, epoch_order(1000, 7, 0, true));
        assert_eq!(epoch_order(5, 7, 0, false), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn uniform_draws_look_uniform() {
        let mut r = SplitMix::stream(1, INIT, 0);
        let xs: Vec<f64> = (0..100_000).map(|_| r.next_f64()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
        let mut counts = [0usize; 10];
        for _ in 0..100_000 {
            counts[r.below(10) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (9_500..10_500).contains(&c)), "{counts:?}");
    }
}
