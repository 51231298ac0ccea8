//! What this machine can do at most, for the roofline of `percept bench --html`: the
//! compute peak (the widest fused multiply-add, on every thread at once) and the memory
//! bandwidth (reading a buffer far larger than the caches, on every thread at once). Each
//! is the best of three short runs, as a machine's noise only ever slows it down.

use percept_compiler::codegen::{host_features, micro::native::fma_peak_work};
use std::time::Instant;

/// The two roofs.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Roofline {
    /// GFLOP/s of FMAs on `threads` threads; None when the host has no FMA.
    pub peak_gflops: Option<f64>,
    /// GB/s read from memory on `threads` threads.
    pub bandwidth_gbs: f64,
    pub threads: usize,
}

/// Measure both roofs on `threads` threads (about half a second).
pub fn measure(threads: usize) -> Roofline {
    let threads = threads.max(1);
    Roofline { peak_gflops: peak_gflops(threads), bandwidth_gbs: bandwidth_gbs(threads), threads }
}

fn best_of_three(mut run: impl FnMut() -> f64) -> f64 {
    (0..3).map(|_| run()).fold(0.0, f64::max)
}

fn peak_gflops(threads: usize) -> Option<f64> {
    let f = host_features().ok()?;
    fma_peak_work(f, 1)?;
    const ROUNDS: u64 = 4_000_000;
    Some(best_of_three(|| {
        let start = Instant::now();
        let flops: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads).map(|_| s.spawn(move || fma_peak_work(f, ROUNDS))).collect();
            hs.into_iter().map(|h| h.join().ok().flatten().map_or(0, |(n, sum)| n + (sum.is_nan() as u64))).sum()
        });
        flops as f64 / start.elapsed().as_secs_f64() / 1e9
    }))
}

fn bandwidth_gbs(threads: usize) -> f64 {
    // 256 MiB: far past any cache; written first so every page is really there.
    let data = vec![1.0f32; 64 << 20];
    let chunk = data.len().div_ceil(threads);
    best_of_three(|| {
        let start = Instant::now();
        let total: f32 = std::thread::scope(|s| {
            let hs: Vec<_> = data.chunks(chunk).map(|c| s.spawn(move || sum(c))).collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
        });
        std::hint::black_box(total);
        (data.len() * 4) as f64 / start.elapsed().as_secs_f64() / 1e9
    })
}

/// A sum in sixteen lanes, which the compiler keeps in vector registers.
fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = xs.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sum_reads_every_element() {
        let xs: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        assert_eq!(super::sum(&xs), 499_500.0);
    }
}
