//! The worker threads a compiled program's kernels are split over: a team that spins
//! between jobs instead of sleeping.
//!
//! A training step runs a few dozen kernels, many of them a fraction of a millisecond
//! long, with small ones in between that run on the calling thread alone. A pool whose
//! workers go to sleep when idle (rayon's) must wake them for every kernel, and in a
//! virtual machine waking a halted CPU costs tens of microseconds — measured here as two
//! threads giving LeNet-5's step 1.0–1.2× one thread's speed. So the workers wait for the
//! next job by spinning on a generation counter for a while (`SPIN`, longer than the gap
//! between two steps' kernels) and only then park; posting a job unparks the ones that
//! did.
//!
//! The team only moves a `Copy` job to its workers and calls the given function on it
//! with each worker's thread number; what a job is (a kernel and its pointers) and why
//! running it on several threads is sound is the executor's business.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
const SPIN: Duration = Duration::from_millis(2);

struct Shared<J> {
    job: Mutex<Option<J>>,
    /// Bumped once per posted job (and to quit).
    generation: AtomicU64,
    /// Workers done with the current job.
    done: AtomicUsize,
    /// Per worker: parked, or about to park (so a new job must unpark it).
    parked: Vec<AtomicBool>,
    quit: AtomicBool,
}

/// `workers` threads (numbered 1..=workers; the caller is thread 0) that run `work(job,
/// thread)` for each job posted with [`Team::run`].
pub struct Team<J: Copy + Send + 'static> {
    shared: Arc<Shared<J>>,
    handles: Vec<JoinHandle<()>>,
}

impl<J: Copy + Send + 'static> Team<J> {
    pub fn new(workers: usize, work: fn(&J, usize)) -> std::io::Result<Team<J>> {
        let shared = Arc::new(Shared {
            job: Mutex::new(None),
            generation: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            parked: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            quit: AtomicBool::new(false),
        });
        let mut team = Team { shared, handles: Vec::with_capacity(workers) };
        for i in 0..workers {
            let shared = Arc::clone(&team.shared);
            let handle = std::thread::Builder::new()
                .name(format!("percept-worker-{}", i + 1))
                .spawn(move || worker(&shared, i, work))?;
            team.handles.push(handle);
        }
        Ok(team)
    }

    /// Post `job` to every worker, run `mine` on this thread meanwhile, and return when
    /// all of them are done.
    pub fn run(&self, job: J, mine: impl FnOnce()) {
        let s = &*self.shared;
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        s.done.store(0, Ordering::Relaxed);
        s.generation.fetch_add(1, Ordering::SeqCst);
        self.unpark_parked();
        mine();
        let workers = self.handles.len();
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < workers {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    fn unpark_parked(&self) {
        for (flag, h) in self.shared.parked.iter().zip(&self.handles) {
            if flag.load(Ordering::SeqCst) {
                h.thread().unpark();
            }
        }
    }
}

impl<J: Copy + Send + 'static> Drop for Team<J> {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        for h in &self.handles {
            h.thread().unpark();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker<J: Copy>(s: &Shared<J>, i: usize, work: fn(&J, usize)) {
    let mut seen = 0;
    loop {
        seen = next_generation(s, i, seen);
        if s.quit.load(Ordering::SeqCst) {
            return;
        }
        let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = job {
            work(&job, i + 1);
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

/// Wait until the generation differs from `seen`: spin for `SPIN`, then park. The parked
/// flag is set before the generation is checked a last time, and the poster bumps the
/// generation before it reads the flags (both sequentially consistent), so a job posted
/// meanwhile is either seen here or unparks this thread.
fn next_generation<J>(s: &Shared<J>, i: usize, seen: u64) -> u64 {
    let started = Instant::now();
    let mut spins = 0u32;
    loop {
        let g = s.generation.load(Ordering::Acquire);
        if g != seen {
            return g;
        }
        spins = spins.wrapping_add(1);
        if !spins.is_multiple_of(256) {
            std::hint::spin_loop();
            continue;
        }
        // Now and then: give the core away if another thread wants it (processes sharing
        // cores, as under an oversubscribed `mpirun`), and park once SPIN has passed.
        std::thread::yield_now();
        if started.elapsed() < SPIN {
            continue;
        }
        s.parked[i].store(true, Ordering::SeqCst);
        if s.generation.load(Ordering::SeqCst) == seen {
            std::thread::park();
        }
        s.parked[i].store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SUMS: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

    fn add(job: &usize, thread: usize) {
        SUMS[thread].fetch_add(*job, Ordering::SeqCst);
    }

    /// Every worker runs every job, before `run` returns, also after the workers parked.
    #[test]
    fn every_worker_runs_every_job_before_run_returns() {
        let team = Team::new(3, add).unwrap();
        for job in 1..=50usize {
            team.run(job, || {
                SUMS[0].fetch_add(job, Ordering::SeqCst);
            });
            let want: usize = (1..=job).sum();
            for s in &SUMS {
                assert_eq!(s.load(Ordering::SeqCst), want);
            }
            if job % 10 == 0 {
                std::thread::sleep(SPIN * 2);
            }
        }
    }
}
