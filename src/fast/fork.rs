//! Splitting one op across threads (natively; wasm runs one thread per worker). Whether a split
//! pays is decided by a cost model measured in this process, not by a constant: what a fork/join
//! of scoped threads costs here (timed once), against the op's own time, estimated from the GEMM
//! rate its earlier runs reached (`Rate`). A share shorter than `MIN_SHARE_FORKS` fork/joins
//! stays on the calling thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// A thread's share must take at least this many fork/join costs, or the op is not split.
pub const MIN_SHARE_FORKS: f64 = 8.0;

/// Nanoseconds to start and join one scoped thread here: the median of 31 tries, timed once.
pub fn fork_join_ns() -> f64 {
    static COST: OnceLock<f64> = OnceLock::new();
    *COST.get_or_init(|| {
        let mut ns: Vec<f64> = (0..31)
            .map(|_| {
                let t = Instant::now();
                std::thread::scope(|s| {
                    s.spawn(|| std::hint::black_box(0));
                });
                t.elapsed().as_nanos() as f64
            })
            .collect();
        ns.sort_by(f64::total_cmp);
        ns[ns.len() / 2]
    })
}

/// How an op may split: across at most `threads`, each share at least `min_share_forks`
/// fork/join costs long (`MIN_SHARE_FORKS`; 0 splits every op, for tests).
#[derive(Clone, Copy, Debug)]
pub struct Split {
    pub threads: usize,
    pub min_share_forks: f64,
}

impl Split {
    pub fn new(threads: usize) -> Self {
        Split { threads: threads.max(1), min_share_forks: MIN_SHARE_FORKS }
    }

    /// How many threads to split work of `flops` across (at most `max` shares) at `rate`: the
    /// most whose shares each take at least `min_share_forks` fork/joins (1 until the rate is known).
    pub fn ways(self, max: usize, flops: f64, rate: &Rate) -> usize {
        let threads = self.threads.min(max);
        let Some(ns_per_flop) = rate.ns_per_flop().filter(|_| threads > 1) else { return 1 };
        let work = flops * ns_per_flop;
        (2..=threads).rev().find(|&t| work / t as f64 >= self.min_share_forks * fork_join_ns()).unwrap_or(1)
    }
}

/// The time per FLOP one thread reached on recent runs of a kernel (an exponential average),
/// shared by every op of the process that runs that kernel.
pub struct Rate(AtomicU64);

impl Rate {
    pub const fn new() -> Self {
        Rate(AtomicU64::new(0))
    }

    pub fn ns_per_flop(&self) -> Option<f64> {
        let v = f64::from_bits(self.0.load(Ordering::Relaxed));
        (v > 0.0).then_some(v)
    }

    /// Notes that `flops` took `ns` on one thread.
    pub fn note(&self, flops: f64, ns: f64) {
        if flops <= 0.0 || ns <= 0.0 {
            return;
        }
        let seen = ns / flops;
        let v = self.ns_per_flop().map_or(seen, |old| 0.8 * old + 0.2 * seen);
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
}

impl Default for Rate {
    fn default() -> Self {
        Self::new()
    }
}
