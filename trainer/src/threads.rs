//! Where CPU work runs. Training runs *inside* one rayon pool (sized to the machine, or
//! as [`configure`] says), so that the thread driving a step is itself one of the pool's
//! workers: on a small machine the pool's idle workers would otherwise spin on the cores
//! the driving thread needs between parallel ops. candle's and our ops use the pool of
//! the thread that calls them.

use std::sync::OnceLock;

static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();

/// Sizes the training pool to `threads` threads (0: rayon's default, one per core or
/// `RAYON_NUM_THREADS`). Effective only before the first training; returns whether it
/// was (false if the pool already existed).
pub fn configure(threads: usize) -> bool {
    let mut built = false;
    POOL.get_or_init(|| {
        built = true;
        build(threads)
    });
    built
}

fn build(threads: usize) -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .ok()
}

/// The number of threads training uses.
pub fn count() -> usize {
    match POOL.get_or_init(|| build(0)) {
        Some(p) => p.current_num_threads(),
        None => 1,
    }
}

/// Runs `f` on a worker of the training pool (or on this thread if the pool could not be
/// built).
pub fn run<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match POOL.get_or_init(|| build(0)) {
        Some(p) => p.install(f),
        None => f(),
    }
}
