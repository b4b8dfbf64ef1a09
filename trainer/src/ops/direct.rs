//! Implicit-GEMM convolution kernels for x86-64 with AVX2 and FMA: no im2col matrix is
//! ever written. Both kernels keep a 6 x 16 tile of the result in twelve registers.
//!
//! The source image is first *prepared*: zero padded and, for stride `s > 1`, split into
//! `s x s` phase planes (plane `(a, b)` holds padded pixel `(i*s + a, j*s + b)` at
//! `(i, j)`). Then every row `k = (channel, ky, kx)` of the im2col matrix is the prepared
//! buffer read from offset `koff[k]`, and output pixel `(y, x)` sits at `y * wq + x` in it:
//! contiguous along `x`.
//!
//! - [`implicit_gemm`] computes `dst[m][pixel] = Σ_k A[m][k] · src[koff[k] + pixel]` with `A`
//!   packed in panels of 6 rows (broadcast) and 16 pixels (two segments of 8) loaded straight
//!   from the prepared source: the forward convolution, and the input gradient (stride 1:
//!   flipped filters over the padded output gradient; stride > 1: one such product per
//!   output phase).
//! - [`weight_grad_tiles`] accumulates `dWᵀ[k][co] += Σ_pixel src[koff[k] + pixel] · dy[co][pixel]`
//!   with the im2col values broadcast from the prepared source and the output gradient
//!   packed 16 channels to a pixel.
//!
//! The drivers check every offset the kernels will reach against the slices before running
//! them; the `unsafe` kernels rely on that.

use std::arch::x86_64::{
    __m256, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
    _mm256_storeu_ps,
};

use super::gemm::with_scratch;

/// Rows of `A` per register tile.
pub(crate) const MR: usize = 6;
/// Columns (pixels or channels) per register tile.
pub(crate) const NR: usize = 16;
/// Depth of one pass over `A` (keeps a micro-panel's slice of the source in L1).
const KC: usize = 192;
/// Micro-panels (16 pixels each) whose results are gathered before writing them out.
const GROUP: usize = 16;
/// Floats of zeros the prepared source needs past its last plane.
pub(crate) const SLACK: usize = 16;
/// Pixels of one chunk of the weight-gradient pass.
const DW_CHUNK: usize = 256;

/// Whether this CPU runs the kernels (checked once).
pub(crate) fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// Packs the `rows x depth` matrix with elements `at(m, k)` into panels of [`MR`] rows,
/// `[panel][k][r]`, with zero rows past the end (panels packed in parallel).
pub(crate) fn pack_a_with(
    rows: usize,
    depth: usize,
    at: impl Fn(usize, usize) -> f32 + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let panels = rows.div_ceil(MR);
    let mut out = vec![0f32; panels * depth * MR];
    if depth == 0 {
        return out;
    }
    out.par_chunks_mut(depth * MR)
        .enumerate()
        .for_each(|(p, panel)| {
            let valid = MR.min(rows - p * MR);
            for (k, col) in panel.chunks_exact_mut(MR).enumerate() {
                for (r, v) in col[..valid].iter_mut().enumerate() {
                    *v = at(p * MR + r, k);
                }
            }
        });
    out
}

/// Packs row-major `a` (`rows x depth`) with [`pack_a_with`].
pub(crate) fn pack_a(a: &[f32], rows: usize, depth: usize) -> Vec<f32> {
    pack_a_with(rows, depth, |m, k| a[m * depth + k])
}

/// Writes the zero-padded phase planes of image `x` (`[c][h][w]`) into `out`:
/// `out[((ch*s + a)*s + b)*hq*wq + i*wq + j]` = padded pixel `(i*s + a, j*s + b)`, where
/// padded pixel `(py, px)` is `x[ch][py - pt][px - pl]` inside the image and 0 outside.
/// Everything after the planes is zeroed.
pub(crate) fn prepare(
    x: &[f32],
    c: usize,
    (h, w): (usize, usize),
    s: usize,
    (pt, pl): (usize, usize),
    (hq, wq): (usize, usize),
    out: &mut [f32],
) {
    let plane = hq * wq;
    // One padded source row: zeros, the image row at `pl`, zeros.
    let mut padded = vec![0f32; (s * wq).max(pl + w)];
    for ch in 0..c {
        let img = &x[ch * h * w..(ch + 1) * h * w];
        let planes = &mut out[ch * s * s * plane..(ch + 1) * s * s * plane];
        for i in 0..hq {
            for a in 0..s {
                let py = i * s + a;
                // Plane row i of phase (a, b) starts at ((a*s + b)*hq + i)*wq.
                if py < pt || py - pt >= h {
                    for b in 0..s {
                        planes[((a * s + b) * hq + i) * wq..][..wq].fill(0.0);
                    }
                    continue;
                }
                let src = &img[(py - pt) * w..(py - pt + 1) * w];
                if s == 1 {
                    let row = &mut planes[i * wq..(i + 1) * wq];
                    let n = w.min(wq.saturating_sub(pl));
                    row[..pl.min(wq)].fill(0.0);
                    row[pl.min(wq)..pl.min(wq) + n].copy_from_slice(&src[..n]);
                    row[pl.min(wq) + n..].fill(0.0);
                    continue;
                }
                padded[pl..pl + w].copy_from_slice(src);
                if s == 2 {
                    // Deinterleave into the rows of phases (a, 0) and (a, 1).
                    let (p0, p1) = planes[(a * 2 * hq + i) * wq..].split_at_mut(hq * wq);
                    let rows = p0[..wq].iter_mut().zip(p1[..wq].iter_mut());
                    for ((e, o), pair) in rows.zip(padded.chunks_exact(2)) {
                        *e = pair[0];
                        *o = pair[1];
                    }
                } else {
                    for b in 0..s {
                        let row = &mut planes[((a * s + b) * hq + i) * wq..][..wq];
                        gather_strided(row, &padded[b..], s);
                    }
                }
            }
        }
    }
    out[c * s * s * plane..].fill(0.0);
}

/// `dst[j] = src[j * s]` for every `j` (vectorizable for the common strides).
pub(crate) fn gather_strided(dst: &mut [f32], src: &[f32], s: usize) {
    fn by<const S: usize>(dst: &mut [f32], src: &[f32]) {
        let full = dst.len().min(src.len() / S);
        for (d, c) in dst[..full].iter_mut().zip(src.chunks_exact(S)) {
            *d = c[0];
        }
        for (j, d) in dst.iter_mut().enumerate().skip(full) {
            *d = src[j * S];
        }
    }
    match s {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        2 => by::<2>(dst, src),
        4 => by::<4>(dst, src),
        _ => {
            for (d, v) in dst.iter_mut().zip(src.iter().step_by(s)) {
                *d = *v;
            }
        }
    }
}

/// `dst[j * s] = src[j]` for every `j` (vectorizable for the common strides).
pub(crate) fn scatter_strided(dst: &mut [f32], src: &[f32], s: usize) {
    fn by<const S: usize>(dst: &mut [f32], src: &[f32]) {
        let full = src.len().min(dst.len() / S);
        for (c, v) in dst.chunks_exact_mut(S).zip(&src[..full]) {
            c[0] = *v;
        }
        for (j, v) in src.iter().enumerate().skip(full) {
            dst[j * S] = *v;
        }
    }
    match s {
        1 => dst[..src.len()].copy_from_slice(src),
        2 => by::<2>(dst, src),
        4 => by::<4>(dst, src),
        _ => {
            for (d, v) in dst.iter_mut().step_by(s).zip(src) {
                *d = *v;
            }
        }
    }
}

/// Where the 8 lanes of a segment go in the output (`[ny][nx]` pixel indices).
#[derive(Clone, Copy)]
enum SegDst {
    /// Eight consecutive pixels from this index.
    Contig(usize),
    /// One pixel index per lane; `u32::MAX` for lanes that are dropped.
    Lanes([u32; 8]),
}

/// Eight output pixels read together: their offset in the prepared source and where
/// their results go.
struct Segments {
    src: Vec<usize>,
    dst: Vec<SegDst>,
}

/// Splits an `ny x nx` output grid (source row stride `wq`) into segments of 8 pixels, an
/// even number of them. Rows whose width is a multiple of 8 are cut into whole segments;
/// otherwise segments run through the source grid across rows and drop the lanes that fall
/// in its padding columns.
fn segments(ny: usize, nx: usize, wq: usize) -> Segments {
    assert!(
        ny * nx < u32::MAX as usize,
        "implicit gemm: too many pixels in one image"
    );
    let mut src = Vec::new();
    let mut dst = Vec::new();
    if nx.is_multiple_of(8) {
        for y in 0..ny {
            for x0 in (0..nx).step_by(8) {
                src.push(y * wq + x0);
                dst.push(SegDst::Contig(y * nx + x0));
            }
        }
    } else {
        let total = (ny - 1) * wq + nx;
        for o in (0..total).step_by(8) {
            let mut lanes = [u32::MAX; 8];
            for (l, lane) in lanes.iter_mut().enumerate() {
                let (y, x) = ((o + l) / wq, (o + l) % wq);
                if y < ny && x < nx {
                    *lane = (y * nx + x) as u32;
                }
            }
            src.push(o);
            dst.push(SegDst::Lanes(lanes));
        }
    }
    if src.len() % 2 == 1 {
        src.push(0);
        dst.push(SegDst::Lanes([u32::MAX; 8]));
    }
    Segments { src, dst }
}

/// `dst[m][y*nx + x] = Σ_k A[m][k] · src[koff[k] + y*wq + x]` for an `ny x nx` grid, with
/// `apack` from [`pack_a`] (`rows` = `m_rows`, `depth` = `koff.len()`).
///
/// Panics (before any unchecked access) if an offset would leave `src`: `src` needs 8
/// readable floats past `max(koff) + (ny-1)*wq + nx - 1`.
pub(crate) fn implicit_gemm(
    apack: &[f32],
    m_rows: usize,
    koff: &[usize],
    src: &[f32],
    (ny, nx, wq): (usize, usize, usize),
    dst: &mut [f32],
) {
    let depth = koff.len();
    let npix = ny * nx;
    if m_rows == 0 || npix == 0 {
        return;
    }
    assert!(
        dst.len() >= m_rows * npix,
        "implicit gemm: destination too small"
    );
    if depth == 0 {
        dst[..m_rows * npix].fill(0.0);
        return;
    }
    assert!(nx <= wq, "implicit gemm: grid wider than its source rows");
    let mp = m_rows.div_ceil(MR);
    assert!(
        apack.len() >= mp * depth * MR,
        "implicit gemm: packed A too small"
    );
    let max_k = koff.iter().copied().max().unwrap_or(0);
    assert!(
        max_k + (ny - 1) * wq + nx - 1 + 8 <= src.len(),
        "implicit gemm: source too small for its offsets"
    );
    assert!(available(), "implicit gemm: AVX2 and FMA are required");
    let segs = segments(ny, nx, wq);
    let njp = segs.src.len() / 2;
    with_scratch(0, mp * GROUP.min(njp) * MR * NR, |cbuf| {
        for jg in (0..njp).step_by(GROUP) {
            let jn = GROUP.min(njp - jg);
            for kb in (0..depth).step_by(KC) {
                let kc = KC.min(depth - kb);
                for j in 0..jn {
                    let (s0, s1) = (segs.src[2 * (jg + j)], segs.src[2 * (jg + j) + 1]);
                    for i in 0..mp {
                        let tile = &mut cbuf[(j * mp + i) * MR * NR..][..MR * NR];
                        // SAFETY: AVX2/FMA are available; the kernel reads `apack` at
                        // ((i*depth + kb)*MR ..) + kc*MR <= mp*depth*MR, `koff[kb..kb+kc]`,
                        // and `src` at s + koff[k] + 0..8 where s <= (ny-1)*wq + nx - 1
                        // (segment starts, or 0) was bounded above; `tile` has MR*NR floats.
                        unsafe {
                            kernel_a_bcast(
                                kc,
                                apack.as_ptr().add((i * depth + kb) * MR),
                                koff.as_ptr().add(kb),
                                src.as_ptr().add(s0),
                                src.as_ptr().add(s1),
                                tile.as_mut_ptr(),
                                kb > 0,
                            );
                        }
                    }
                }
            }
            // Write the group's results out.
            for j in 0..jn {
                for i in 0..mp {
                    let tile = &cbuf[(j * mp + i) * MR * NR..][..MR * NR];
                    for r in 0..MR.min(m_rows - i * MR) {
                        let out = &mut dst[(i * MR + r) * npix..][..npix];
                        for half in 0..2 {
                            let lanes = &tile[r * NR + half * 8..][..8];
                            match segs.dst[2 * (jg + j) + half] {
                                SegDst::Contig(d) => {
                                    let to: &mut [f32; 8] = (&mut out[d..d + 8])
                                        .try_into()
                                        .expect("a segment has 8 lanes");
                                    let from: &[f32; 8] =
                                        lanes.try_into().expect("a segment has 8 lanes");
                                    *to = *from;
                                }
                                SegDst::Lanes(idx) => {
                                    for (l, &p) in idx.iter().enumerate() {
                                        if p != u32::MAX {
                                            out[p as usize] = lanes[l];
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}

/// The register tile of [`implicit_gemm`]: `c[r][0..16] (+)= Σ_{k<kc} a[k][r] · (b0|b1)[koff[k]..+8]`.
///
/// # Safety
/// AVX2 and FMA must be available; `a` must be readable for `kc * MR` floats, `koff` for
/// `kc` offsets, `b0` and `b1` for 8 floats past each `koff[k]`, and `c` writable for
/// `MR * NR` floats.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_a_bcast(
    kc: usize,
    a: *const f32,
    koff: *const usize,
    b0: *const f32,
    b1: *const f32,
    c: *mut f32,
    accumulate: bool,
) {
    let mut acc: [[__m256; 2]; MR] = [[_mm256_setzero_ps(); 2]; MR];
    if accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            row[0] = _mm256_loadu_ps(c.add(r * NR));
            row[1] = _mm256_loadu_ps(c.add(r * NR + 8));
        }
    }
    for k in 0..kc {
        let off = *koff.add(k);
        let v0 = _mm256_loadu_ps(b0.add(off));
        let v1 = _mm256_loadu_ps(b1.add(off));
        let ak = a.add(k * MR);
        for (r, row) in acc.iter_mut().enumerate() {
            let w = _mm256_broadcast_ss(&*ak.add(r));
            row[0] = _mm256_fmadd_ps(w, v0, row[0]);
            row[1] = _mm256_fmadd_ps(w, v1, row[1]);
        }
    }
    for (r, row) in acc.iter().enumerate() {
        _mm256_storeu_ps(c.add(r * NR), row[0]);
        _mm256_storeu_ps(c.add(r * NR + 8), row[1]);
    }
}

/// Packs one image's output gradient `dy` (`[cout][npix]`) as `[cout/16][npix][16]`, zero
/// padded to a multiple of 16 channels.
pub(crate) fn pack_dy(dy: &[f32], cout: usize, npix: usize, out: &mut [f32]) {
    let blocks = cout.div_ceil(NR);
    for jb in 0..blocks {
        let block = &mut out[jb * npix * NR..][..npix * NR];
        for l in 0..NR {
            let co = jb * NR + l;
            if co < cout {
                let row = &dy[co * npix..][..npix];
                for (p, v) in row.iter().enumerate() {
                    block[p * NR + l] = *v;
                }
            } else {
                for p in 0..npix {
                    block[p * NR + l] = 0.0;
                }
            }
        }
    }
}

/// Accumulates one image's filter-gradient contribution into `tiles`
/// (`[k/6][cout/16][6][16]`, i.e. `dWᵀ` in register tiles):
/// `dWᵀ[k][co] += Σ_(y,x) src[koff[k] + y*wq + x] · dy[co][y*nx + x]`, with `dyt` from
/// [`pack_dy`].
///
/// Panics (before any unchecked access) if an offset would leave its slice.
pub(crate) fn weight_grad_tiles(
    koff: &[usize],
    src: &[f32],
    (ny, nx, wq): (usize, usize, usize),
    dyt: &[f32],
    cout: usize,
    tiles: &mut [f32],
) {
    let depth = koff.len();
    let npix = ny * nx;
    if depth == 0 || npix == 0 || cout == 0 {
        return;
    }
    let kp = depth.div_ceil(MR);
    let jbn = cout.div_ceil(NR);
    assert!(nx <= wq, "weight gradient: grid wider than its source rows");
    assert!(
        tiles.len() >= kp * jbn * MR * NR,
        "weight gradient: tiles too small"
    );
    assert!(
        dyt.len() >= jbn * npix * NR,
        "weight gradient: packed dy too small"
    );
    let max_k = koff.iter().copied().max().unwrap_or(0);
    assert!(
        max_k + (ny - 1) * wq + nx <= src.len(),
        "weight gradient: source too small for its offsets"
    );
    assert!(available(), "weight gradient: AVX2 and FMA are required");
    let rows_per_chunk = (DW_CHUNK / nx).clamp(1, ny);
    for y0 in (0..ny).step_by(rows_per_chunk) {
        let rows = rows_per_chunk.min(ny - y0);
        for i in 0..kp {
            // Rows of the tile past the end repeat the last k; their results are unused.
            let mut a = [std::ptr::null::<f32>(); MR];
            for (r, p) in a.iter_mut().enumerate() {
                let k = (i * MR + r).min(depth - 1);
                // In bounds: koff[k] + y0*wq <= max_k + (ny-1)*wq < src.len().
                *p = src[koff[k] + y0 * wq..].as_ptr();
            }
            for jb in 0..jbn {
                let tile = &mut tiles[(i * jbn + jb) * MR * NR..][..MR * NR];
                // SAFETY: AVX2/FMA are available; `a[r]` is read at src index
                // koff[k] + y*wq + x for y0 <= y < y0 + rows <= ny and x < nx, at most
                // max_k + (ny-1)*wq + nx - 1 < src.len(); `dyt` is read below
                // (jb*npix + (y0 + rows)*nx)*NR <= jbn*npix*NR; `tile` has MR*NR floats.
                unsafe {
                    kernel_b_packed(
                        rows,
                        nx,
                        wq,
                        &a,
                        dyt.as_ptr().add((jb * npix + y0 * nx) * NR),
                        tile.as_mut_ptr(),
                    );
                }
            }
        }
    }
}

/// The register tile of [`weight_grad_tiles`]:
/// `c[r][0..16] += Σ_(y<rows, x<nx) a[r][y*wq + x] · b[(y*nx + x)*16..][0..16]`.
///
/// # Safety
/// AVX2 and FMA must be available; every `a[r]` must be readable at the offsets above, `b`
/// for `rows * nx * NR` floats and `c` writable for `MR * NR` floats.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_b_packed(
    rows: usize,
    nx: usize,
    wq: usize,
    a: &[*const f32; MR],
    b: *const f32,
    c: *mut f32,
) {
    let mut acc: [[__m256; 2]; MR] = [[_mm256_setzero_ps(); 2]; MR];
    for (r, row) in acc.iter_mut().enumerate() {
        row[0] = _mm256_loadu_ps(c.add(r * NR));
        row[1] = _mm256_loadu_ps(c.add(r * NR + 8));
    }
    let mut bp = b;
    for y in 0..rows {
        let base = y * wq;
        let rowp: [*const f32; MR] = std::array::from_fn(|r| a[r].add(base));
        for x in 0..nx {
            let v0 = _mm256_loadu_ps(bp);
            let v1 = _mm256_loadu_ps(bp.add(8));
            bp = bp.add(NR);
            for (r, row) in acc.iter_mut().enumerate() {
                let w = _mm256_broadcast_ss(&*rowp[r].add(x));
                row[0] = _mm256_fmadd_ps(w, v0, row[0]);
                row[1] = _mm256_fmadd_ps(w, v1, row[1]);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        _mm256_storeu_ps(c.add(r * NR), row[0]);
        _mm256_storeu_ps(c.add(r * NR + 8), row[1]);
    }
}
