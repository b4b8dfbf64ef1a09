//! Where CPU work runs. Training runs *inside* one rayon pool (sized to the machine), so
//! that the thread driving a step is itself one of the pool's workers: on a small machine
//! the pool's idle workers would otherwise spin on the cores the driving thread needs
//! between parallel ops. candle's and our ops use the pool of the thread that calls them.

use std::sync::OnceLock;

static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();

/// Runs `f` on a worker of the training pool (or on this thread if the pool could not be
/// built).
pub fn run<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let pool = POOL.get_or_init(|| rayon::ThreadPoolBuilder::new().build().ok());
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}
