//! A tiny per-operation profiler for the training step: named scopes whose wall time is
//! summed while profiling is on (`evo bench train --profile`). Off, a scope costs one
//! atomic load. CPU ops run synchronously, so wall time around a call is its cost; on a
//! GPU the figures only mean something after a synchronization.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<BTreeMap<&'static str, (Duration, u64)>> = Mutex::new(BTreeMap::new());

/// Turns recording on or off.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether recording is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Forgets everything recorded.
pub fn reset() {
    if let Ok(mut t) = TOTALS.lock() {
        t.clear();
    }
}

/// Records the time until it is dropped under its name.
#[must_use = "a scope measures until it is dropped"]
pub struct Scope {
    name: &'static str,
    start: Option<Instant>,
}

/// Starts a scope called `name` (nothing is recorded while profiling is off).
pub fn scope(name: &'static str) -> Scope {
    Scope {
        name,
        start: enabled().then(Instant::now),
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some(start) = self.start {
            if let Ok(mut t) = TOTALS.lock() {
                let e = t.entry(self.name).or_default();
                e.0 += start.elapsed();
                e.1 += 1;
            }
        }
    }
}

/// One line of a profile.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    /// Scope name.
    pub name: &'static str,
    /// Total seconds.
    pub seconds: f64,
    /// Number of times entered.
    pub calls: u64,
}

/// Everything recorded, most expensive first.
pub fn report() -> Vec<Entry> {
    let t = match TOTALS.lock() {
        Ok(t) => t.clone(),
        Err(_) => return Vec::new(),
    };
    let mut entries: Vec<Entry> = t
        .into_iter()
        .map(|(name, (d, calls))| Entry {
            name,
            seconds: d.as_secs_f64(),
            calls,
        })
        .collect();
    entries.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    entries
}
