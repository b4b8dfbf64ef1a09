//! A bounds-checked front to the `gemm` crate for f32 matrices given as slices with
//! row and column strides, and per-thread scratch buffers for the kernels around it.

use std::cell::Cell;

/// A matrix operand: a slice and the strides (in elements) between rows and columns.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    /// The elements; element (i, j) is `data[i * rs + j * cs]`.
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

/// Index one past the last element that an `rows x cols` view with strides `rs`, `cs`
/// touches (0 for an empty view).
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `c = a · b` (or `c += a · b` when `accumulate`), where `a` is `m x k`, `b` is `k x n`
/// and `c` is `m x n` with row stride `c_rs` and column stride `c_cs`.
/// `threads > 1` lets the `gemm` crate split the product over that many rayon threads.
///
/// Panics if a view reaches past its slice (an internal invariant of the callers).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    c_rs: usize,
    c_cs: usize,
    accumulate: bool,
    a: Mat<'_>,
    b: Mat<'_>,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        extent(m, n, c_rs, c_cs) <= c.len(),
        "gemm: destination view out of bounds"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    c[i * c_rs + j * c_cs] = 0.0;
                }
            }
        }
        return;
    }
    assert!(
        extent(m, k, a.rs, a.cs) <= a.data.len(),
        "gemm: lhs view out of bounds"
    );
    assert!(
        extent(k, n, b.rs, b.cs) <= b.data.len(),
        "gemm: rhs view out of bounds"
    );
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three views were checked to lie inside their slices; `c` is borrowed
    // mutably, so it aliases neither `a` nor `b`. `gemm` computes
    // dst := alpha * dst + beta * lhs * rhs and ignores alpha when read_dst is false.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs as isize,
            c_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

thread_local! {
    static SCRATCH: [Cell<Vec<f32>>; 3] =
        const { [Cell::new(Vec::new()), Cell::new(Vec::new()), Cell::new(Vec::new())] };
}

/// Runs `f` with this thread's scratch buffer number `slot` (0, 1 or 2) resized to `len`
/// elements (contents unspecified). The buffer is taken out of the thread-local for the
/// duration, so re-entrant use (rayon work stealing) just allocates a fresh one.
pub(crate) fn with_scratch<R>(slot: usize, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.with(|s| s[slot].take());
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    SCRATCH.with(|s| {
        // Keep the larger buffer if a re-entrant call left one behind.
        let other = s[slot].take();
        s[slot].set(if other.len() > buf.len() { other } else { buf });
    });
    r
}

/// The number of threads the kernels split work over (rayon's pool size).
pub(crate) fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Splits `0..n` into at most `parts` contiguous ranges of nearly equal length
/// (none empty unless `n == 0`).
pub(crate) fn split_range(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|t| (t * n / parts)..((t + 1) * n / parts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgemm_matches_a_naive_product_with_strides() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 2.0).collect();
        // b stored transposed: b[p, j] = bt[j * k + p].
        let bt: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 - 1.5).collect();
        let mut c = vec![1.0f32; m * n];
        sgemm(
            m,
            n,
            k,
            &mut c,
            n,
            1,
            true,
            Mat {
                data: &a,
                rs: k,
                cs: 1,
            },
            Mat {
                data: &bt,
                rs: 1,
                cs: k,
            },
            1,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|p| a[i * k + p] * bt[j * k + p]).sum::<f32>();
                assert!((c[i * n + j] - want).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn split_range_covers_everything() {
        for n in 0..20 {
            for parts in 1..5 {
                let r = split_range(n, parts);
                assert_eq!(r.first().map(|r| r.start), Some(0));
                assert_eq!(r.last().map(|r| r.end), Some(n));
                for w in r.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
            }
        }
    }
}
