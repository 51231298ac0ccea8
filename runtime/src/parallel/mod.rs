//! Data-parallel training: K processes train one model, each on its shard of every
//! mini-batch, meeting at the shard program's collective points (`exec::shard_batchnorm`).
//!
//! The processes are a [`Group`] (rank, size, allgather, alltoall, broadcast, barrier,
//! abort): [`Solo`] for one process, [`ThreadGroup`] for K members inside one process
//! (the tests, which need no MPI), and `MpiGroup` over MPI's world communicator with the
//! `mpi` feature. The trainer has one code path for all of them.
//!
//! [`DataParallel`] is what runs at the points ([`Collectives`]): it adds up batch norm's
//! per-channel sums (f64, carried as two f32s) and the gradients across processes. Every
//! sum is taken in rank order ([`Group::allreduce_sum`]), so every process gets the same
//! bits and two runs with the same K give the same bits. Results depend on K only through
//! rounding (docs/ARCHITECTURE.md, "Data parallelism").

#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "mpi")]
pub use self::mpi::MpiGroup;

use crate::error::{Error, Result};
use percept_compiler::exec::{CollectivePoint, Collectives, SlotKind, StateStore};
use percept_compiler::ops::{exchange_data, exchange_values};
use std::ops::Range;
use std::sync::{Arc, Barrier, Mutex};

/// The processes of a data-parallel run.
pub trait Group {
    /// This process's index, 0..size.
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Every process's `local` (the same length on all), in rank order.
    fn allgather(&self, local: &[f64]) -> Result<Vec<f64>>;
    /// `send` cut into `size` equal blocks, block j going to process j: the blocks this
    /// process receives, in rank order.
    fn alltoall(&self, send: &[f64]) -> Result<Vec<f64>>;
    /// [`Group::allgather`] of f32 (gradients: half the bytes).
    fn allgather_f32(&self, local: &[f32]) -> Result<Vec<f32>>;
    /// [`Group::alltoall`] of f32.
    fn alltoall_f32(&self, send: &[f32]) -> Result<Vec<f32>>;
    /// `buf` of process `root`, on every process.
    fn broadcast(&self, root: usize, buf: &mut [u64]) -> Result<()>;
    fn barrier(&self) -> Result<()>;

    /// End this process with exit code `code`, and with it every process of the group
    /// (after an error on one, the others must not wait in a collective forever).
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }

    /// Σ over processes of `buf`, in rank order, the same bits on every process: a
    /// reduce-scatter (process r adds up block r of everyone's buffer, in rank order) then
    /// an allgather of the sums — each process sends and receives 2(K−1)/K of the buffer,
    /// as a ring allreduce does, and the order of every sum is fixed.
    fn allreduce_sum(&self, buf: &mut [f64]) -> Result<()> {
        let k = self.size();
        if k == 1 {
            return Ok(());
        }
        let block = buf.len().div_ceil(k);
        let mut send = buf.to_vec();
        send.resize(block * k, 0.0);
        let received = self.alltoall(&send)?;
        let mine = sum_blocks(&received, block);
        let all = self.allgather(&mine)?;
        buf.copy_from_slice(&all[..buf.len()]);
        Ok(())
    }

    /// [`Group::allreduce_sum`] of f32 values: each sum taken in f64 (rank order) and
    /// rounded once.
    fn allreduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        let k = self.size();
        if k == 1 {
            return Ok(());
        }
        let block = buf.len().div_ceil(k);
        let mut send = Vec::with_capacity(block * k);
        send.extend_from_slice(buf);
        send.resize(block * k, 0.0);
        let received = self.alltoall_f32(&send)?;
        let mine: Vec<f32> = sum_blocks(&received, block).into_iter().map(|v| v as f32).collect();
        let all = self.allgather_f32(&mine)?;
        buf.copy_from_slice(&all[..buf.len()]);
        Ok(())
    }
}

/// The element-wise sum in f64, block after block, of the consecutive blocks of `block`
/// values (the first block's values plus 0.0 are themselves).
fn sum_blocks<T: Copy + Into<f64>>(values: &[T], block: usize) -> Vec<f64> {
    let mut sums = vec![0.0f64; block];
    for part in values.chunks(block.max(1)) {
        for (s, &v) in sums.iter_mut().zip(part) {
            *s += v.into();
        }
    }
    sums
}

/// One process.
pub struct Solo;

impl Group for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn allgather(&self, local: &[f64]) -> Result<Vec<f64>> {
        Ok(local.to_vec())
    }
    fn alltoall(&self, send: &[f64]) -> Result<Vec<f64>> {
        Ok(send.to_vec())
    }
    fn allgather_f32(&self, local: &[f32]) -> Result<Vec<f32>> {
        Ok(local.to_vec())
    }
    fn alltoall_f32(&self, send: &[f32]) -> Result<Vec<f32>> {
        Ok(send.to_vec())
    }
    fn broadcast(&self, _: usize, _: &mut [u64]) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
}

/// K members of a group inside one process (one per thread), through shared memory: what
/// the tests run K-process training with, without MPI.
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    slots: Mutex<Vec<Vec<f64>>>,
    words: Mutex<Vec<u64>>,
    barrier: Barrier,
}

impl ThreadGroup {
    /// The `size` members, to be moved to one thread each.
    pub fn new(size: usize) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            size,
            slots: Mutex::new(vec![vec![]; size]),
            words: Mutex::new(vec![]),
            barrier: Barrier::new(size),
        });
        (0..size).map(|rank| ThreadGroup { rank, shared: shared.clone() }).collect()
    }
}

impl Group for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn allgather(&self, local: &[f64]) -> Result<Vec<f64>> {
        self.shared.slots.lock().expect("a member panicked")[self.rank] = local.to_vec();
        self.shared.barrier.wait();
        let all = self.shared.slots.lock().expect("a member panicked").concat();
        // Nobody writes the next round before everyone has read this one.
        self.shared.barrier.wait();
        if all.len() != local.len() * self.size() {
            return Err(Error::new("the processes exchanged buffers of different lengths"));
        }
        Ok(all)
    }
    fn alltoall(&self, send: &[f64]) -> Result<Vec<f64>> {
        let k = self.size();
        if !send.len().is_multiple_of(k) {
            return Err(Error::new("an alltoall buffer must hold one equal block per process"));
        }
        let all = self.allgather(send)?;
        let block = send.len() / k;
        Ok(all
            .chunks(send.len())
            .flat_map(|theirs| theirs[self.rank * block..(self.rank + 1) * block].to_vec())
            .collect())
    }
    // f32 through the f64 exchange (exact both ways): a test group.
    fn allgather_f32(&self, local: &[f32]) -> Result<Vec<f32>> {
        let wide: Vec<f64> = local.iter().map(|&v| v as f64).collect();
        Ok(self.allgather(&wide)?.into_iter().map(|v| v as f32).collect())
    }
    fn alltoall_f32(&self, send: &[f32]) -> Result<Vec<f32>> {
        let wide: Vec<f64> = send.iter().map(|&v| v as f64).collect();
        Ok(self.alltoall(&wide)?.into_iter().map(|v| v as f32).collect())
    }
    fn broadcast(&self, root: usize, buf: &mut [u64]) -> Result<()> {
        if self.rank == root {
            *self.shared.words.lock().expect("a member panicked") = buf.to_vec();
        }
        self.shared.barrier.wait();
        let words = self.shared.words.lock().expect("a member panicked").clone();
        self.shared.barrier.wait();
        if words.len() != buf.len() {
            return Err(Error::new("a broadcast of a different length than the root's"));
        }
        buf.copy_from_slice(&words);
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.shared.barrier.wait();
        Ok(())
    }
}

/// The contiguous shard of a batch of `n` samples that process `rank` of `size` trains
/// on: sizes differ by at most one, the larger first. A batch of fewer than two samples
/// per process is not split (`None`): every process computes it whole (the same bits
/// everywhere, no communication), as a shard of one sample cannot have batch statistics.
pub fn shard(n: usize, rank: usize, size: usize) -> Option<Range<usize>> {
    if size <= 1 || n < 2 * size {
        return None;
    }
    let (per, extra) = (n / size, n % size);
    let start = rank * per + rank.min(extra);
    Some(start..start + per + usize::from(rank < extra))
}

/// What runs at the collective points of a shard's training step. Each shard's loss is
/// its sum over the global batch's count (`exec::shard_batchnorm`), so the batch's
/// gradients are the sum of the shards'.
pub struct DataParallel<'g> {
    pub group: &'g dyn Group,
}

fn exchange<'s>(store: &'s mut StateStore, name: &str) -> Result<&'s mut [f32]> {
    store.get_mut(SlotKind::Exchange, name).ok_or_else(|| Error(format!("the state has no exchange slot `{name}`")))
}

impl DataParallel<'_> {
    /// Replace the gradients but the `global` ones by their sum over processes (in f64,
    /// rounded once).
    fn sum_gradients(&self, store: &mut StateStore, global: &[String]) -> Result<()> {
        let all = store.layout().grads();
        if global.is_empty() {
            // Every gradient: the contiguous range, in place.
            return self.group.allreduce_sum_f32(&mut store.data_mut()[all]);
        }
        let parts: Vec<Range<usize>> =
            store.layout().of_kind(SlotKind::Grad).filter(|s| !global.contains(&s.name)).map(|s| s.range()).collect();
        let mut local = Vec::with_capacity(all.len());
        for r in &parts {
            local.extend_from_slice(&store.data()[r.clone()]);
        }
        self.group.allreduce_sum_f32(&mut local)?;
        let mut at = 0;
        for r in parts {
            let n = r.len();
            store.data_mut()[r].copy_from_slice(&local[at..at + n]);
            at += n;
        }
        Ok(())
    }

    /// Replace the f64 values of an exchange slot by their sum over processes.
    fn sum_exchange(&self, store: &mut StateStore, name: &str) -> Result<()> {
        let c = match store.layout().find(SlotKind::Exchange, name) {
            Some(slot) => slot.shape[1],
            None => return Err(Error(format!("the state has no exchange slot `{name}`"))),
        };
        // The layout (f64 values as hi and lo f32 rows) is the compiler's.
        let mut values = exchange_values(exchange(store, name)?, c);
        self.group.allreduce_sum(&mut values)?;
        exchange(store, name)?.copy_from_slice(&exchange_data::<f32>(&values, c));
        Ok(())
    }
}

impl Collectives for DataParallel<'_> {
    fn at(
        &mut self,
        point: &CollectivePoint,
        store: &mut StateStore,
    ) -> std::result::Result<(), percept_compiler::Error> {
        let r = match point {
            CollectivePoint::Sum { exchange } => self.sum_exchange(store, exchange),
            CollectivePoint::GradientsReady { global } => self.sum_gradients(store, global),
        };
        r.map_err(|e| percept_compiler::Error::Exec(format!("at the collective point `{point}`: {e}")))
    }
}

/// FNV-1a over 64-bit words: how processes compare their copies of the model and data.
pub fn fingerprint(words: impl IntoIterator<Item = u64>) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for w in words {
        h ^= w;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Stop every process with the same error unless all hold the same `value` as process 0
/// (`what` names it: "the data set", "the model"); the message names the first process
/// that differs.
pub fn check_same(group: &dyn Group, value: u64, what: &str) -> Result<()> {
    let mut root = [value];
    group.broadcast(0, &mut root)?;
    let differs = [f64::from(u8::from(root[0] != value))];
    let all = group.allgather(&differs)?;
    match all.iter().position(|&d| d != 0.0) {
        Some(r) => Err(Error(format!(
            "process {r} of {} has a different copy of {what} than process 0; every process must read the same files",
            group.size()
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_in_order() {
        for (n, k) in [(64, 2), (64, 3), (63, 2), (10, 3), (7, 3), (6, 3), (5, 3), (100, 7)] {
            let shards: Vec<_> = (0..k).map(|r| shard(n, r, k)).collect();
            if n < 2 * k {
                assert!(shards.iter().all(Option::is_none), "{n} over {k}");
                continue;
            }
            let shards: Vec<Range<usize>> = shards.into_iter().map(Option::unwrap).collect();
            assert_eq!(shards[0].start, 0);
            assert_eq!(shards[k - 1].end, n);
            for w in shards.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert!(w[0].len() == w[1].len() || w[0].len() == w[1].len() + 1);
            }
        }
    }

    #[test]
    fn thread_group_sums_in_rank_order_and_broadcasts() {
        let members = ThreadGroup::new(3);
        let out: Vec<(Vec<f64>, [u64; 2])> = std::thread::scope(|s| {
            let hs: Vec<_> = members
                .iter()
                .map(|g| {
                    s.spawn(move || {
                        let mut v = vec![g.rank() as f64, 1.0];
                        g.allreduce_sum(&mut v).unwrap();
                        let mut w = [g.rank() as u64 + 7, 9];
                        g.broadcast(1, &mut w).unwrap();
                        // 7 values over 3 processes: blocks of 3, the last one padded.
                        let mut f: Vec<f32> = (0..7).map(|i| (i * (g.rank() + 1)) as f32 + 0.25).collect();
                        g.allreduce_sum_f32(&mut f).unwrap();
                        assert_eq!(f, (0..7).map(|i| (6 * i) as f32 + 0.75).collect::<Vec<_>>());
                        (v, w)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (v, w) in out {
            assert_eq!(v, [3.0, 3.0]);
            assert_eq!(w, [8, 9]);
        }
    }

    #[test]
    fn exchanged_sums_keep_f64_precision() {
        // 1 + 2⁻⁴⁰ is not an f32, but its two halves carry it; the sum over three members
        // is exact in f64.
        let v = 1.0 + 2f64.powi(-40);
        let members = ThreadGroup::new(3);
        std::thread::scope(|s| {
            for g in &members {
                s.spawn(move || {
                    let src = percept_compiler::SourceFile::new("m.nn", "model m { input [3] batchnorm }");
                    let spec = percept_compiler::parse_and_check(&src).unwrap();
                    let layout = percept_compiler::exec::StateLayout::new(&spec, &[]).with_exchange(&spec);
                    let mut store = StateStore::new(layout);
                    let mine = [v * (g.rank() + 1) as f64, -1.5, 0.0];
                    let slot = store.get_mut(SlotKind::Exchange, "0.batch_sum").unwrap();
                    slot.copy_from_slice(&exchange_data::<f32>(&mine, 3));
                    let point = CollectivePoint::Sum { exchange: "0.batch_sum".into() };
                    DataParallel { group: g }.at(&point, &mut store).unwrap();
                    let got = exchange_values(store.get(SlotKind::Exchange, "0.batch_sum").unwrap(), 3);
                    assert_eq!(got, [6.0 * v, -4.5, 0.0]);
                });
            }
        });
    }
}
