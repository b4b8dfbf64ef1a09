//! Where CPU work runs. Training runs *inside* a rayon pool (sized to the machine, or as
//! [`configure`] says), so that the thread driving a step is itself one of the pool's
//! workers: on a small machine the pool's idle workers would otherwise spin on the cores
//! the driving thread needs between parallel ops. candle's and our ops use the pool of
//! the thread that calls them.
//!
//! Trainings that run at the same time (a node's workers) must not share one pool: a
//! pool thread that waits inside a parallel op of one training takes on whatever job is
//! queued, and the queued job may be the whole of another training, which then runs
//! nested on that thread's stack while the first training stalls until it ends (seen:
//! 3 steps in 530 s beside a training that ran on both cores). [`run_alone`] gives each
//! one a pool of its own.

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

/// The threads each of `concurrent` trainings gets out of `total`: an equal share, at
/// least one.
pub fn share(total: usize, concurrent: usize) -> usize {
    (total / concurrent.max(1)).max(1)
}

/// Runs `f` on a pool of its own with `threads` threads (at least one), built for this
/// call and gone after it: for trainings that run beside others, which must not share a
/// pool (see the module's documentation). Runs `f` on this thread if no pool can be
/// built.
pub fn run_alone<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
    {
        Ok(p) => p.install(f),
        Err(_) => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn each_training_gets_an_equal_share_of_at_least_one_thread() {
        assert_eq!(share(2, 1), 2);
        assert_eq!(share(2, 2), 1);
        assert_eq!(share(16, 4), 4);
        assert_eq!(share(3, 2), 1);
        assert_eq!(share(1, 4), 1);
        assert_eq!(share(4, 0), 4);
    }

    #[test]
    fn a_pool_of_its_own_has_the_threads_asked_for() {
        assert_eq!(run_alone(1, rayon::current_num_threads), 1);
        assert_eq!(run_alone(3, rayon::current_num_threads), 3);
        assert_eq!(run_alone(0, rayon::current_num_threads), 1);
    }

    /// A long and a short job that wait on parallel work: in pools of their own the
    /// short one never queues behind (or nests under) the long one, so it ends long
    /// before the long one does.
    #[test]
    fn jobs_in_pools_of_their_own_do_not_wait_for_each_other() {
        let started = Instant::now();
        let short_took = std::thread::scope(|s| {
            s.spawn(|| {
                run_alone(1, || {
                    let until = Instant::now() + Duration::from_millis(1500);
                    while Instant::now() < until {
                        rayon::join(|| std::thread::sleep(Duration::from_millis(5)), || ());
                    }
                });
            });
            std::thread::sleep(Duration::from_millis(50));
            let short = s.spawn(|| {
                run_alone(1, || {
                    for _ in 0..10 {
                        rayon::join(|| std::thread::sleep(Duration::from_millis(1)), || ());
                    }
                });
                started.elapsed()
            });
            short.join().unwrap()
        });
        assert!(short_took < Duration::from_millis(1000), "{short_took:?}");
    }
}
