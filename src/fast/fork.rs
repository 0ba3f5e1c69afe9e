//! Splitting one op across threads. `map` hands shares to a pool of threads that live as long as
//! the process: natively threads it spawns as forks ask for them; in the browser's threaded build
//! (wasm with atomics over shared memory) the Web Workers that `serve` (src/web: `forkWorker`),
//! started by the CPU engine's worker. Whether a split pays is decided by a cost model measured
//! in this process, not by a constant: what a fork/join costs here (timed once), against the op's
//! own time, estimated from the GEMM rate its earlier runs reached (`Rate`). A share shorter than
//! `MIN_SHARE_FORKS` fork/joins stays on the calling thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

/// A thread's share must take at least this many fork/join costs, or the op is not split.
pub const MIN_SHARE_FORKS: f64 = 8.0;

/// Runs `f(i, item)` for every item, the first on the calling thread and the others on the pool's
/// threads where it has them (in turn on this thread where it has none), and returns the results in
/// order. A panic in a share is raised here once every share has ended (`try_map` returns it).
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(usize, T) -> R + Sync) -> Vec<R> {
    try_map(items, f).into_iter().map(|r| r.unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
}

/// `map`, each share's panic returned as its result (the payload `std::thread::Result` carries)
/// instead of raised: a caller that reports errors turns a broken share into one.
pub fn try_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(usize, T) -> R + Sync) -> Vec<std::thread::Result<R>> {
    if POISONED.load(Ordering::Acquire) {
        panic!("{POISONED_MSG}");
    }
    let caught = |i: usize, t: T| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i, t)));
    if items.len() <= 1 || pool().threads() == 0 {
        return items.into_iter().enumerate().map(|(i, t)| caught(i, t)).collect();
    }
    // Each share's item, taken by the share, and its result.
    type Slot<T, R> = Mutex<(Option<T>, Option<std::thread::Result<R>>)>;
    let slots: Vec<Slot<T, R>> = items.into_iter().map(|t| Mutex::new((Some(t), None))).collect();
    let share = |i: usize| {
        let item = lock(&slots[i]).0.take().expect("each share runs once");
        let r = caught(i, item);
        lock(&slots[i]).1 = Some(r);
    };
    pool().run(slots.len(), &share);
    slots.into_iter().map(|s| s.into_inner().unwrap_or_else(|e| e.into_inner()).1.expect("every share ran")).collect()
}

/// A share's panic message, for an error that names it.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>().copied().or_else(|| p.downcast_ref::<String>().map(String::as_str)).unwrap_or("(no message)")
}

/// How many threads a split may use here: natively the cores (`available_parallelism`); in wasm
/// this thread and the pool's workers (one where there are none: the browser's unthreaded builds).
pub fn threads_here() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    return std::thread::available_parallelism().map_or(1, |n| n.get());
    #[cfg(target_arch = "wasm32")]
    return pool().threads() + 1;
}

/// Set when a pool thread can no longer run (the browser: a fork worker's instance trapped, and
/// fork-worker.js called `forkWorkerFailed`): the share it held never ends, so a fork waiting on it
/// stops instead of hanging, and every later fork fails at once.
static POISONED: AtomicBool = AtomicBool::new(false);
const POISONED_MSG: &str =
    "a CPU thread stopped (a fork worker's WebAssembly trapped, most likely out of memory): this engine cannot run again";

/// Marks the pool as broken (`POISONED`) and wakes the threads waiting on it.
pub fn poison() {
    POISONED.store(true, Ordering::Release);
    pool().work.notify_all();
}

/// The calling thread becomes one of the pool's workers and never returns (the browser's threaded
/// build: each fork worker calls it once its instance shares the engine's memory).
pub fn serve() -> ! {
    pool().serve()
}

/// Nanoseconds for a fork/join of two shares on the pool here, a pool thread taking the second (a
/// rendezvous: each share waits, up to 10 ms, for the other to start; were the forking thread
/// free to take both, the timing would miss the wake-up a real split waits for): the median of 31
/// tries, timed once.
pub fn fork_join_ns() -> f64 {
    static COST: OnceLock<f64> = OnceLock::new();
    *COST.get_or_init(|| {
        map(vec![(), ()], |_, _| ()); // natively, the first fork starts a thread
        let mut ns: Vec<f64> = (0..31)
            .map(|_| {
                let started = AtomicUsize::new(0);
                let t = now_ns();
                map(vec![(), ()], |_, _| {
                    started.fetch_add(1, Ordering::AcqRel);
                    let give_up = now_ns() + 1e7;
                    while started.load(Ordering::Acquire) < 2 && now_ns() < give_up {
                        std::hint::spin_loop();
                    }
                });
                now_ns() - t
            })
            .collect();
        ns.sort_by(f64::total_cmp);
        ns[ns.len() / 2]
    })
}

/// A monotonic clock in nanoseconds (natively `Instant`; in wasm `performance.now()`, which
/// std's clock is not on wasm32-unknown-unknown).
pub fn now_ns() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_nanos() as f64
    }
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        thread_local! {
            /// This thread's `performance` and its `now`, looked up once.
            static NOW: Option<(wasm_bindgen::JsValue, js_sys::Function)> = {
                let perf = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok();
                let now = perf.as_ref().and_then(|p| js_sys::Reflect::get(p, &"now".into()).ok()).and_then(|f| f.dyn_into().ok());
                perf.zip(now)
            };
        }
        NOW.with(|n| n.as_ref().and_then(|(p, now)| now.call0(p).ok()).and_then(|v| v.as_f64()).unwrap_or(0.0) * 1e6)
    }
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

    /// Runs `f` on one thread and notes its time where a split could follow (`threads` > 1): the
    /// clock is read only where its reading can be used.
    pub fn timed<R>(&self, flops: f64, threads: usize, f: impl FnOnce() -> R) -> R {
        if threads <= 1 {
            return f();
        }
        let t0 = now_ns();
        let r = f();
        self.note(flops, now_ns() - t0);
        r
    }
}

impl Default for Rate {
    fn default() -> Self {
        Self::new()
    }
}

/// How long a thread with nothing to do spins before it sleeps on a condition variable: a forward
/// forks per op, ops are microseconds apart, and a sleeping thread's wake-up (a futex wake, an
/// interrupt between a VM's cores) took longer than the gap. onnxruntime's pool spins likewise.
const SPIN_NS: f64 = 50_000.0;

/// Spins until `ready()` or `SPIN_NS` have passed (the clock read every 64 tries: in wasm it is a
/// call into JavaScript).
fn spin_until(ready: impl Fn() -> bool) {
    let give_up = now_ns() + SPIN_NS;
    loop {
        for _ in 0..64 {
            if ready() {
                return;
            }
            std::hint::spin_loop();
        }
        if now_ns() > give_up {
            return;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One share of a fork: the fork's function (its lifetime erased: `Pool::run` does not return
/// before every share has ended) and the fork's count of shares still running.
struct Task {
    f: &'static (dyn Fn(usize) + Sync),
    i: usize,
    latch: &'static Latch,
}

impl Task {
    /// Runs the share and counts it done. `try_map`'s shares return their panics as results;
    /// the catch here only guarantees the count goes down whatever a share does.
    fn run(self) {
        let Task { f, i, latch } = self;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i)));
        let mut left = lock(&latch.left);
        *left -= 1;
        latch.left_hint.store(*left, Ordering::Release);
        if *left == 0 {
            latch.done.notify_all();
        }
    }
}

struct Latch {
    left: Mutex<usize>,
    /// `left` as last written (under its lock), for the forking thread to spin on without it.
    left_hint: AtomicUsize,
    done: Condvar,
}

struct Pool {
    queue: Mutex<VecDeque<Task>>,
    /// Tasks in `queue`, for idle threads to spin on without its lock.
    queued: AtomicUsize,
    work: Condvar,
    /// In wasm, the fork workers serving the queue (natively `spawned` counts).
    #[cfg(target_arch = "wasm32")]
    threads: AtomicUsize,
    /// Natively, threads asked for and not yet serving (counted before they start).
    #[cfg(not(target_arch = "wasm32"))]
    spawned: AtomicUsize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        queue: Mutex::new(VecDeque::new()),
        queued: AtomicUsize::new(0),
        work: Condvar::new(),
        #[cfg(target_arch = "wasm32")]
        threads: AtomicUsize::new(0),
        #[cfg(not(target_arch = "wasm32"))]
        spawned: AtomicUsize::new(0),
    })
}

/// Natively the pool grows to what forks ask, never past this.
#[cfg(not(target_arch = "wasm32"))]
const MAX_THREADS: usize = 256;

impl Pool {
    fn threads(&self) -> usize {
        #[cfg(not(target_arch = "wasm32"))]
        return self.spawned.load(Ordering::Relaxed).max(1);
        #[cfg(target_arch = "wasm32")]
        return self.threads.load(Ordering::Relaxed);
    }

    /// Natively, starts threads until `n` serve (or were started to).
    #[cfg(not(target_arch = "wasm32"))]
    fn grow(&'static self, n: usize) {
        let n = n.min(MAX_THREADS);
        while self.spawned.load(Ordering::Relaxed) < n {
            let k = self.spawned.fetch_add(1, Ordering::Relaxed);
            if k >= n {
                self.spawned.fetch_sub(1, Ordering::Relaxed);
                break;
            }
            let started = std::thread::Builder::new().name(format!("ddim-fork-{k}")).spawn(move || self.serve());
            if started.is_err() {
                self.spawned.fetch_sub(1, Ordering::Relaxed);
                break; // the shares run on the threads there are (or on the forking one)
            }
        }
    }

    fn serve(&self) -> ! {
        #[cfg(target_arch = "wasm32")]
        self.threads.fetch_add(1, Ordering::Relaxed);
        loop {
            spin_until(|| self.queued.load(Ordering::Acquire) > 0);
            let task = {
                let mut q = lock(&self.queue);
                loop {
                    if let Some(t) = self.pop(&mut q) {
                        break t;
                    }
                    q = self.work.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            task.run();
        }
    }

    /// The queue's next task (`q`: the queue, locked), keeping `queued` true.
    fn pop(&self, q: &mut VecDeque<Task>) -> Option<Task> {
        let t = q.pop_front();
        self.queued.store(q.len(), Ordering::Release);
        t
    }

    /// Runs `f(0)` here and `f(1..n)` on the pool; returns once all have ended. While its shares
    /// run, the forking thread takes queued shares too (its own or another fork's): a fork inside
    /// a share (a conv in a batch share) never waits on threads that all wait.
    fn run(&'static self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        #[cfg(not(target_arch = "wasm32"))]
        self.grow(n - 1);
        let latch = Latch { left: Mutex::new(n - 1), left_hint: AtomicUsize::new(n - 1), done: Condvar::new() };
        // SAFETY: the lifetimes are erased, not extended: this function waits below until every
        // task has ended, and no task keeps `f` or the latch after it has counted itself done.
        let f_all = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f) };
        let latch_all = unsafe { std::mem::transmute::<&Latch, &'static Latch>(&latch) };
        {
            let mut q = lock(&self.queue);
            q.extend((1..n).map(|i| Task { f: f_all, i, latch: latch_all }));
            self.queued.store(q.len(), Ordering::Release);
        }
        self.work.notify_all();
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(0)));
        loop {
            if *lock(&latch.left) == 0 {
                break;
            }
            let queued = self.pop(&mut lock(&self.queue));
            match queued {
                Some(task) => task.run(),
                None => {
                    spin_until(|| latch.left_hint.load(Ordering::Acquire) == 0 || self.queued.load(Ordering::Acquire) > 0);
                    let left = lock(&latch.left);
                    if *left > 0 {
                        // Woken by the last share, or in turn to look at `POISONED`.
                        drop(
                            latch.done.wait_timeout(left, std::time::Duration::from_millis(50)).map_or_else(|e| e.into_inner().0, |r| r.0),
                        );
                    }
                    if POISONED.load(Ordering::Acquire) {
                        // Shares of this fork may still run elsewhere, on this stack's borrows: no
                        // unwinding past them. In wasm a panic aborts (a trap the worker reports).
                        #[cfg(target_arch = "wasm32")]
                        panic!("{POISONED_MSG}");
                        #[cfg(not(target_arch = "wasm32"))]
                        std::process::abort();
                    }
                }
            }
        }
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
    }
}
