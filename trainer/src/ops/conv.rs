//! Same-padded 2-D convolution (NCHW, f32, no bias) for the CPU with its exact backward.
//!
//! Three products make a training step: the forward pass `y_b = W · col(x_b)`, the filter
//! gradient `dW = Σ_b dy_b · col(x_b)ᵀ` and the input gradient. Two implementations
//! ([`Path`]) compute them, with the images of the batch split over rayon's threads (the
//! filter gradient with one accumulator per thread, summed in a fixed order, so results do
//! not depend on scheduling):
//! - [`Path::Direct`] (x86-64 with AVX2 and FMA, picked at run time): the implicit-GEMM
//!   kernels of [`super::direct`], which read the im2col matrix straight out of a padded
//!   (for strides > 1, phase-split) copy of the image. The input gradient is a forward
//!   convolution of `dy` with the flipped, transposed filters
//!   (`W'[ci, co, ky, kx] = W[co, ci, kh-1-ky, kw-1-kx]`) for stride 1, and for stride `s`
//!   one such product per output phase (the input pixels `≡ (a, b) mod s` only see the
//!   filter taps `≡ (a, b) + padding mod s`), so no work is spent on the zeros of a
//!   transposed convolution.
//! - [`Path::Gemm`] (any CPU): im2col tiles of a few output rows in a per-thread scratch
//!   buffer and the `gemm` crate; the strided input gradient as `dcol = Wᵀ · dy_b`
//!   scattered back onto the image (col2im).

use super::gemm::{sgemm, split_range, threads, with_scratch, Mat};
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Target size (in f32 elements) of one tile of the im2col matrix.
const TILE_ELEMS: usize = 48 * 1024;
/// Smallest number of output pixels in a tile (narrower GEMMs lose efficiency).
const MIN_TILE_COLS: usize = 96;

/// The shapes of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geom {
    /// Batch size.
    pub b: usize,
    /// Input channels.
    pub cin: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub cout: usize,
    /// Filter height (odd).
    pub kh: usize,
    /// Filter width (odd).
    pub kw: usize,
    /// Stride (both directions).
    pub stride: usize,
    /// Output height, `ceil(h / stride)`.
    pub ho: usize,
    /// Output width, `ceil(w / stride)`.
    pub wo: usize,
}

impl Geom {
    /// The geometry of `x` (`[B, Cin, H, W]`) convolved with `w` (`[Cout, Cin, kh, kw]`).
    pub(crate) fn new(x: &[usize], w: &[usize], stride: usize) -> Result<Geom> {
        let (&[b, cin, h, wd], &[cout, wcin, kh, kw]) = (x, w) else {
            bail!("conv2d: expected 4-D input and filters, got {x:?} and {w:?}")
        };
        if wcin != cin {
            bail!("conv2d: input has {cin} channels but the filters expect {wcin}");
        }
        if kh % 2 == 0 || kw % 2 == 0 {
            bail!("conv2d: filter sizes must be odd, got {kh}x{kw}");
        }
        if stride == 0 {
            bail!("conv2d: stride must be positive");
        }
        Ok(Geom {
            b,
            cin,
            h,
            w: wd,
            cout,
            kh,
            kw,
            stride,
            ho: h.div_ceil(stride),
            wo: wd.div_ceil(stride),
        })
    }

    /// Vertical padding.
    fn ph(&self) -> usize {
        (self.kh - 1) / 2
    }

    /// Horizontal padding.
    fn pw(&self) -> usize {
        (self.kw - 1) / 2
    }

    /// Rows of the im2col matrix (the GEMM depth of the forward product).
    fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// Pixels of one input channel.
    fn hw(&self) -> usize {
        self.h * self.w
    }

    /// Pixels of one output channel.
    fn p(&self) -> usize {
        self.ho * self.wo
    }

    /// Whether the im2col matrix is the input itself (1x1 filters, stride 1).
    fn direct(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1
    }

    /// Output rows per tile.
    fn tile_rows(&self) -> usize {
        let wo = self.wo.max(1);
        let by_cache = TILE_ELEMS / (self.k() * wo).max(1);
        let by_width = MIN_TILE_COLS.div_ceil(wo);
        by_cache.max(by_width).clamp(1, self.ho.max(1))
    }

    /// The output columns `lo..hi` whose input column `ox * stride + kx - pw` lies inside
    /// the image.
    fn valid_ox(&self, kx: usize) -> (usize, usize) {
        let (s, pw) = (self.stride, self.pw());
        let lo = if kx >= pw { 0 } else { (pw - kx).div_ceil(s) };
        let hi = if self.w + pw > kx {
            (self.w - 1 + pw - kx) / s + 1
        } else {
            0
        };
        let lo = lo.min(self.wo);
        (lo, hi.clamp(lo, self.wo))
    }

    /// The geometry of the stride-1 input gradient as a forward convolution of `dy`.
    fn transposed(&self) -> Geom {
        debug_assert_eq!(self.stride, 1);
        Geom {
            cin: self.cout,
            cout: self.cin,
            ..*self
        }
    }
}

/// Writes the im2col matrix of output rows `oy0..oy1` of one image `x` (`[Cin, H, W]`)
/// into `col` (`[Cin*kh*kw, (oy1-oy0)*wo]`, row-major).
fn im2col(x: &[f32], g: &Geom, oy0: usize, oy1: usize, col: &mut [f32]) {
    let n = (oy1 - oy0) * g.wo;
    let (s, ph, pw) = (g.stride, g.ph(), g.pw());
    for ci in 0..g.cin {
        let plane = &x[ci * g.hw()..(ci + 1) * g.hw()];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let r = (ci * g.kh + ky) * g.kw + kx;
                let dst = &mut col[r * n..(r + 1) * n];
                let (lo, hi) = g.valid_ox(kx);
                for oy in oy0..oy1 {
                    let d = &mut dst[(oy - oy0) * g.wo..(oy - oy0 + 1) * g.wo];
                    let iy = oy * s + ky;
                    if iy < ph || iy - ph >= g.h || lo == hi {
                        d.fill(0.0);
                        continue;
                    }
                    let row = &plane[(iy - ph) * g.w..(iy - ph + 1) * g.w];
                    d[..lo].fill(0.0);
                    d[hi..].fill(0.0);
                    let ix0 = lo * s + kx - pw;
                    if s == 1 {
                        d[lo..hi].copy_from_slice(&row[ix0..ix0 + hi - lo]);
                    } else {
                        for (o, v) in d[lo..hi].iter_mut().zip(row[ix0..].iter().step_by(s)) {
                            *o = *v;
                        }
                    }
                }
            }
        }
    }
}

/// Adds the im2col-shaped gradient `col` of output rows `oy0..oy1` back onto the image
/// gradient `dx` (`[Cin, H, W]`): the adjoint of [`im2col`].
fn col2im_add(col: &[f32], g: &Geom, oy0: usize, oy1: usize, dx: &mut [f32]) {
    let n = (oy1 - oy0) * g.wo;
    let (s, ph, pw) = (g.stride, g.ph(), g.pw());
    for ci in 0..g.cin {
        let plane = &mut dx[ci * g.hw()..(ci + 1) * g.hw()];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let r = (ci * g.kh + ky) * g.kw + kx;
                let src = &col[r * n..(r + 1) * n];
                let (lo, hi) = g.valid_ox(kx);
                if lo == hi {
                    continue;
                }
                for oy in oy0..oy1 {
                    let iy = oy * s + ky;
                    if iy < ph || iy - ph >= g.h {
                        continue;
                    }
                    let d = &src[(oy - oy0) * g.wo + lo..(oy - oy0) * g.wo + hi];
                    let row = &mut plane[(iy - ph) * g.w..(iy - ph + 1) * g.w];
                    let ix0 = lo * s + kx - pw;
                    if s == 1 {
                        for (o, v) in row[ix0..ix0 + hi - lo].iter_mut().zip(d) {
                            *o += *v;
                        }
                    } else {
                        for (o, v) in row[ix0..].iter_mut().step_by(s).zip(d) {
                            *o += *v;
                        }
                    }
                }
            }
        }
    }
}

/// Threads each image's GEMMs may use: all of them when there are fewer images than
/// threads, otherwise one (the images themselves run in parallel).
fn gemm_threads(g: &Geom) -> usize {
    if g.b < threads() {
        threads()
    } else {
        1
    }
}

/// Forward convolution of one image into `y` (`[Cout, Ho*Wo]`) with filters `w`
/// (`[Cout, Cin*kh*kw]`).
fn forward_image(x: &[f32], w: &[f32], g: &Geom, y: &mut [f32], gt: usize) {
    let (k, p) = (g.k(), g.p());
    let wm = Mat {
        data: w,
        rs: k,
        cs: 1,
    };
    if g.direct() {
        let xm = Mat {
            data: x,
            rs: g.hw(),
            cs: 1,
        };
        sgemm(g.cout, p, k, y, p, 1, false, wm, xm, gt);
        return;
    }
    for_each_col_tile(x, g, |oy0, n, col| {
        let cm = Mat {
            data: col,
            rs: n,
            cs: 1,
        };
        sgemm(g.cout, n, k, &mut y[oy0 * g.wo..], p, 1, false, wm, cm, gt);
    });
}

/// The im2col columns of image `x` in tiles of whole output rows (scratch slot 0):
/// `f(oy0, n, col)` for each tile, `col` being `[k, n]` for the `n` outputs from output
/// row `oy0` on.
fn for_each_col_tile(x: &[f32], g: &Geom, mut f: impl FnMut(usize, usize, &[f32])) {
    let (k, rows) = (g.k(), g.tile_rows());
    with_scratch(0, k * rows * g.wo, |col| {
        let mut oy0 = 0;
        while oy0 < g.ho {
            let oy1 = (oy0 + rows).min(g.ho);
            let n = (oy1 - oy0) * g.wo;
            let col = &mut col[..k * n];
            im2col(x, g, oy0, oy1, col);
            f(oy0, n, col);
            oy0 = oy1;
        }
    });
}

/// Which implementation runs the products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// im2col tiles and the `gemm` crate (any CPU).
    Gemm,
    /// The AVX2/FMA implicit-GEMM kernels of [`super::direct`].
    #[cfg(target_arch = "x86_64")]
    Direct,
}

impl Path {
    /// The fastest implementation this CPU runs.
    pub(crate) fn best() -> Path {
        #[cfg(target_arch = "x86_64")]
        if super::direct::available() {
            return Path::Direct;
        }
        Path::Gemm
    }
}

/// Forward convolution of a batch: `x` is `[B, Cin, H, W]`, `w` is `[Cout, Cin, kh, kw]`,
/// the result `[B, Cout, Ho, Wo]`.
pub(crate) fn forward(x: &[f32], w: &[f32], g: &Geom, path: Path) -> Vec<f32> {
    match path {
        Path::Gemm => forward_gemm(x, w, g),
        #[cfg(target_arch = "x86_64")]
        Path::Direct => fast::forward(x, w, g),
    }
}

/// The filter gradient `[Cout, Cin, kh, kw]` from the input `x` and the output gradient
/// `dy` (`[B, Cout, Ho, Wo]`).
pub(crate) fn backward_weight(x: &[f32], dy: &[f32], g: &Geom, path: Path) -> Vec<f32> {
    match path {
        Path::Gemm => backward_weight_gemm(x, dy, g),
        #[cfg(target_arch = "x86_64")]
        Path::Direct => fast::backward_weight(x, dy, g),
    }
}

/// The input gradient `[B, Cin, H, W]` from the output gradient `dy` (`[B, Cout, Ho, Wo]`)
/// and the filters `w`.
pub(crate) fn backward_input(dy: &[f32], w: &[f32], g: &Geom, path: Path) -> Vec<f32> {
    match path {
        // A forward convolution of dy with the flipped, transposed filters.
        Path::Gemm if g.stride == 1 => forward_gemm(dy, &flipped_transposed(w, g), &g.transposed()),
        Path::Gemm => backward_input_gemm(dy, w, g),
        #[cfg(target_arch = "x86_64")]
        Path::Direct if g.stride == 1 => fast::backward_input_unit_stride(dy, w, g),
        #[cfg(target_arch = "x86_64")]
        Path::Direct => fast::backward_input_strided(dy, w, g),
    }
}

/// `W'[ci, co, kh-1-ky, kw-1-kx] = W[co, ci, ky, kx]`: the filters of the stride-1 input
/// gradient as a forward convolution.
fn flipped_transposed(w: &[f32], g: &Geom) -> Vec<f32> {
    let mut wf = vec![0f32; w.len()];
    for co in 0..g.cout {
        for ci in 0..g.cin {
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    wf[((ci * g.cout + co) * g.kh + g.kh - 1 - ky) * g.kw + g.kw - 1 - kx] =
                        w[((co * g.cin + ci) * g.kh + ky) * g.kw + kx];
                }
            }
        }
    }
    wf
}

/// Forward convolution with im2col tiles and the `gemm` crate.
fn forward_gemm(x: &[f32], w: &[f32], g: &Geom) -> Vec<f32> {
    let mut y = vec![0f32; g.b * g.cout * g.p()];
    if y.is_empty() {
        return y;
    }
    let gt = gemm_threads(g);
    let in_len = g.cin * g.hw();
    y.par_chunks_mut(g.cout * g.p())
        .enumerate()
        .for_each(|(bi, yb)| forward_image(&x[bi * in_len..(bi + 1) * in_len], w, g, yb, gt));
    y
}

/// The filter gradient with im2col tiles and the `gemm` crate.
fn backward_weight_gemm(x: &[f32], dy: &[f32], g: &Geom) -> Vec<f32> {
    let (k, p) = (g.k(), g.p());
    let in_len = g.cin * g.hw();
    let out_len = g.cout * p;
    let gt = gemm_threads(g);
    let partials: Vec<Vec<f32>> = split_range(g.b, threads())
        .into_par_iter()
        .map(|range| {
            let mut acc = vec![0f32; g.cout * k];
            for bi in range {
                let xb = &x[bi * in_len..(bi + 1) * in_len];
                let dyb = &dy[bi * out_len..(bi + 1) * out_len];
                if g.direct() {
                    let dym = Mat {
                        data: dyb,
                        rs: p,
                        cs: 1,
                    };
                    let xt = Mat {
                        data: xb,
                        rs: 1,
                        cs: g.hw(),
                    };
                    sgemm(g.cout, k, p, &mut acc, k, 1, true, dym, xt, gt);
                    continue;
                }
                for_each_col_tile(xb, g, |oy0, n, col| {
                    let dym = Mat {
                        data: &dyb[oy0 * g.wo..],
                        rs: p,
                        cs: 1,
                    };
                    let ct = Mat {
                        data: col,
                        rs: 1,
                        cs: n,
                    };
                    sgemm(g.cout, k, n, &mut acc, k, 1, true, dym, ct, gt);
                });
            }
            acc
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut dw = parts.next().unwrap_or_else(|| vec![0f32; g.cout * k]);
    for part in parts {
        for (a, b) in dw.iter_mut().zip(&part) {
            *a += *b;
        }
    }
    dw
}

/// The input gradient of a strided convolution: `dcol = Wᵀ · dy_b` in tiles, scattered
/// back onto the image (col2im), with the `gemm` crate.
fn backward_input_gemm(dy: &[f32], w: &[f32], g: &Geom) -> Vec<f32> {
    let (k, p) = (g.k(), g.p());
    let in_len = g.cin * g.hw();
    let mut dx = vec![0f32; g.b * in_len];
    if dx.is_empty() {
        return dx;
    }
    let gt = gemm_threads(g);
    let wt = Mat {
        data: w,
        rs: 1,
        cs: k,
    };
    let rows = g.tile_rows();
    dx.par_chunks_mut(in_len).enumerate().for_each(|(bi, dxb)| {
        let dyb = &dy[bi * g.cout * p..(bi + 1) * g.cout * p];
        with_scratch(0, k * rows * g.wo, |col| {
            let mut oy0 = 0;
            while oy0 < g.ho {
                let oy1 = (oy0 + rows).min(g.ho);
                let n = (oy1 - oy0) * g.wo;
                let col = &mut col[..k * n];
                let dym = Mat {
                    data: &dyb[oy0 * g.wo..],
                    rs: p,
                    cs: 1,
                };
                sgemm(k, n, g.cout, col, n, 1, false, wt, dym, gt);
                col2im_add(col, g, oy0, oy1, dxb);
                oy0 = oy1;
            }
        });
    });
    dx
}

/// The f32 elements of a contiguous CPU tensor.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{what} must be f32")
    };
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&v[start..end]),
        None => bail!("{what} must be contiguous"),
    }
}

/// The convolution as a candle op (`x`, `w`) -> `y`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv2d {
    /// Stride in both directions.
    pub stride: usize,
    /// Whether backward computes the input gradient at all.
    pub input_grad: bool,
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "fast-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(l1.dims(), l2.dims(), self.stride)?;
        let x = f32_slice(s1, l1, "conv2d input")?;
        let w = f32_slice(s2, l2, "conv2d filters")?;
        let y = forward(x, w, &g, Path::best());
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.cout, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = if self.input_grad && x.track_op() {
            let (_, _, h, wd) = x.dims4()?;
            let op = Conv2dBackwardInput {
                stride: self.stride,
                h,
                w: wd,
            };
            let _s = crate::profile::scope("op: conv backward (input)");
            Some(dy.apply_op2_no_bwd(w, &op)?)
        } else {
            None
        };
        let dw = if w.track_op() {
            let (_, _, kh, kw) = w.dims4()?;
            let op = Conv2dBackwardWeight {
                stride: self.stride,
                kh,
                kw,
            };
            let _s = crate::profile::scope("op: conv backward (filter)");
            Some(x.apply_op2_no_bwd(&dy, &op)?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// The input gradient as a candle op (`dy`, `w`) -> `dx`.
#[derive(Debug, Clone, Copy)]
struct Conv2dBackwardInput {
    stride: usize,
    h: usize,
    w: usize,
}

impl CustomOp2 for Conv2dBackwardInput {
    fn name(&self) -> &'static str {
        "fast-conv2d-backward-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (&[b, cout, ho, wo], &[_, cin, ..]) = (l1.dims(), l2.dims()) else {
            bail!(
                "conv2d backward: bad shapes {:?} {:?}",
                l1.dims(),
                l2.dims()
            )
        };
        let g = Geom::new(&[b, cin, self.h, self.w], l2.dims(), self.stride)?;
        if (g.cout, g.ho, g.wo) != (cout, ho, wo) {
            bail!(
                "conv2d backward: gradient shape {:?} does not fit",
                l1.dims()
            );
        }
        let dy = f32_slice(s1, l1, "conv2d output gradient")?;
        let w = f32_slice(s2, l2, "conv2d filters")?;
        let dx = backward_input(dy, w, &g, Path::best());
        Ok((CpuStorage::F32(dx), Shape::from((b, cin, self.h, self.w))))
    }
}

/// The filter gradient as a candle op (`x`, `dy`) -> `dw`.
#[derive(Debug, Clone, Copy)]
struct Conv2dBackwardWeight {
    stride: usize,
    kh: usize,
    kw: usize,
}

impl CustomOp2 for Conv2dBackwardWeight {
    fn name(&self) -> &'static str {
        "fast-conv2d-backward-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (&[_, cin, ..], &[b, cout, ho, wo]) = (l1.dims(), l2.dims()) else {
            bail!(
                "conv2d backward: bad shapes {:?} {:?}",
                l1.dims(),
                l2.dims()
            )
        };
        let g = Geom::new(l1.dims(), &[cout, cin, self.kh, self.kw], self.stride)?;
        if (g.b, g.ho, g.wo) != (b, ho, wo) {
            bail!(
                "conv2d backward: gradient shape {:?} does not fit",
                l2.dims()
            );
        }
        let x = f32_slice(s1, l1, "conv2d input")?;
        let dy = f32_slice(s2, l2, "conv2d output gradient")?;
        let dw = backward_weight(x, dy, &g, Path::best());
        Ok((
            CpuStorage::F32(dw),
            Shape::from((cout, cin, self.kh, self.kw)),
        ))
    }
}

/// Drivers of the AVX2/FMA kernels.
#[cfg(target_arch = "x86_64")]
mod fast {
    use super::super::direct::{
        implicit_gemm, pack_a, pack_a_with, pack_dy, prepare, scatter_strided, weight_grad_tiles,
        MR, NR, SLACK,
    };
    use super::super::gemm::{split_range, threads, with_scratch};
    use super::Geom;
    use rayon::prelude::*;

    /// The prepared input of the forward pass: plane size `(hq, wq)`, the offset of every
    /// im2col row and the buffer length.
    struct Prepared {
        hq: usize,
        wq: usize,
        koff: Vec<usize>,
        len: usize,
    }

    /// The prepared-input layout of `g`: phase planes of `ho + (kh-1)/s` by
    /// `wo + (kw-1)/s` pixels, im2col row `(ci, ky, kx)` at the offset of its tap.
    fn prepared(g: &Geom) -> Prepared {
        let s = g.stride;
        let (hq, wq) = (g.ho + (g.kh - 1) / s, g.wo + (g.kw - 1) / s);
        let mut koff = Vec::with_capacity(g.k());
        for ci in 0..g.cin {
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    koff.push(((ci * s + ky % s) * s + kx % s) * hq * wq + (ky / s) * wq + kx / s);
                }
            }
        }
        Prepared {
            hq,
            wq,
            koff,
            len: g.cin * s * s * hq * wq + SLACK,
        }
    }

    /// Writes image `x` (`[Cin, H, W]`) prepared for `p` into `src`.
    fn prepare_input(x: &[f32], g: &Geom, p: &Prepared, src: &mut [f32]) {
        prepare(
            x,
            g.cin,
            (g.h, g.w),
            g.stride,
            (g.ph(), g.pw()),
            (p.hq, p.wq),
            src,
        );
    }

    /// The forward convolution.
    pub(super) fn forward(x: &[f32], w: &[f32], g: &Geom) -> Vec<f32> {
        forward_packed(x, &pack_a(w, g.cout, g.k()), g)
    }

    /// The stride-1 input gradient: the forward convolution of `dy` with the flipped,
    /// transposed filters, packed straight from `w`.
    pub(super) fn backward_input_unit_stride(dy: &[f32], w: &[f32], g: &Geom) -> Vec<f32> {
        let (kh, kw) = (g.kh, g.kw);
        // Index in w of element (ci = 0, k) of the packed matrix.
        let mut base = Vec::with_capacity(g.cout * kh * kw);
        for co in 0..g.cout {
            for ky in (0..kh).rev() {
                for kx in (0..kw).rev() {
                    base.push((co * g.cin * kh + ky) * kw + kx);
                }
            }
        }
        let apack = pack_a_with(g.cin, base.len(), |ci, k| w[base[k] + ci * kh * kw]);
        forward_packed(dy, &apack, &g.transposed())
    }

    /// The forward convolution with filters already packed by [`pack_a`].
    fn forward_packed(x: &[f32], apack: &[f32], g: &Geom) -> Vec<f32> {
        let mut y = vec![0f32; g.b * g.cout * g.p()];
        if y.is_empty() {
            return y;
        }
        let p = prepared(g);
        let in_len = g.cin * g.hw();
        y.par_chunks_mut(g.cout * g.p())
            .enumerate()
            .for_each(|(bi, yb)| {
                with_scratch(1, p.len, |src| {
                    prepare_input(&x[bi * in_len..(bi + 1) * in_len], g, &p, src);
                    implicit_gemm(apack, g.cout, &p.koff, src, (g.ho, g.wo, p.wq), yb);
                });
            });
        y
    }

    /// The filter gradient, accumulated in register tiles of `dWᵀ` per thread.
    pub(super) fn backward_weight(x: &[f32], dy: &[f32], g: &Geom) -> Vec<f32> {
        let (k, npix) = (g.k(), g.p());
        let (kp, jbn) = (k.div_ceil(MR), g.cout.div_ceil(NR));
        let p = prepared(g);
        let (in_len, out_len) = (g.cin * g.hw(), g.cout * npix);
        let partials: Vec<Vec<f32>> = split_range(g.b, threads())
            .into_par_iter()
            .map(|range| {
                let mut tiles = vec![0f32; kp * jbn * MR * NR];
                for bi in range {
                    with_scratch(1, p.len, |src| {
                        prepare_input(&x[bi * in_len..(bi + 1) * in_len], g, &p, src);
                        with_scratch(0, jbn * npix * NR, |dyt| {
                            pack_dy(&dy[bi * out_len..(bi + 1) * out_len], g.cout, npix, dyt);
                            weight_grad_tiles(
                                &p.koff,
                                src,
                                (g.ho, g.wo, p.wq),
                                dyt,
                                g.cout,
                                &mut tiles,
                            );
                        });
                    });
                }
                tiles
            })
            .collect();
        let mut parts = partials.into_iter();
        let mut tiles = parts
            .next()
            .unwrap_or_else(|| vec![0f32; kp * jbn * MR * NR]);
        for part in parts {
            for (a, b) in tiles.iter_mut().zip(&part) {
                *a += *b;
            }
        }
        let mut dw = vec![0f32; g.cout * k];
        for co in 0..g.cout {
            for (kk, d) in dw[co * k..(co + 1) * k].iter_mut().enumerate() {
                *d = tiles[((kk / MR) * jbn + co / NR) * MR * NR + (kk % MR) * NR + co % NR];
            }
        }
        dw
    }

    /// One output phase `(a, b)` of a strided input gradient: the input pixels
    /// `(q*s + a - ph, r*s + b - pw)` for `q` in `q0..q0+nq`, `r` in `r0..r0+nr`, each a
    /// stride-1 correlation of the padded output gradient with the filter taps
    /// `(a + s*t, b + s*u)`.
    struct Phase {
        a: usize,
        b: usize,
        q0: usize,
        nq: usize,
        r0: usize,
        nr: usize,
        koff: Vec<usize>,
        apack: Vec<f32>,
    }

    /// For one dimension: (taps, first index, count) of phase `a`.
    fn phase_range(a: usize, k: usize, pad: usize, size: usize, s: usize) -> (usize, usize, usize) {
        let taps = if a < k { (k - a).div_ceil(s) } else { 0 };
        let q0 = if pad > a { (pad - a).div_ceil(s) } else { 0 };
        let n = if size + pad > a {
            ((size - 1 + pad - a) / s + 1).saturating_sub(q0)
        } else {
            0
        };
        (taps, q0, n)
    }

    /// The input gradient of a strided convolution, one implicit GEMM per output phase
    /// over the zero-padded output gradient, interleaved into `dx`.
    pub(super) fn backward_input_strided(dy: &[f32], w: &[f32], g: &Geom) -> Vec<f32> {
        let s = g.stride;
        let in_len = g.cin * g.hw();
        let mut dx = vec![0f32; g.b * in_len];
        if dx.is_empty() {
            return dx;
        }
        let (pt, pl) = (g.kh.div_ceil(s), g.kw.div_ceil(s));
        let rows: Vec<_> = (0..s)
            .map(|a| phase_range(a, g.kh, g.ph(), g.h, s))
            .collect();
        let cols: Vec<_> = (0..s)
            .map(|b| phase_range(b, g.kw, g.pw(), g.w, s))
            .collect();
        let hq = pt + rows.iter().map(|r| r.1 + r.2).max().unwrap_or(0).max(g.ho);
        let wq = pl + cols.iter().map(|c| c.1 + c.2).max().unwrap_or(0).max(g.wo);
        let mut phases = Vec::new();
        for (a, &(ta, q0, nq)) in rows.iter().enumerate() {
            for (b, &(ub, r0, nr)) in cols.iter().enumerate() {
                if ta == 0 || ub == 0 || nq == 0 || nr == 0 {
                    continue;
                }
                let depth = g.cout * ta * ub;
                let mut koff = Vec::with_capacity(depth);
                // Index in w of element (ci = 0, k) of the packed matrix.
                let mut base = Vec::with_capacity(depth);
                for co in 0..g.cout {
                    for t in 0..ta {
                        for u in 0..ub {
                            koff.push(co * hq * wq + (q0 + pt - t) * wq + (r0 + pl - u));
                            base.push((co * g.cin * g.kh + a + s * t) * g.kw + b + s * u);
                        }
                    }
                }
                let taps = g.kh * g.kw;
                let apack = pack_a_with(g.cin, depth, |ci, k| w[base[k] + ci * taps]);
                phases.push(Phase {
                    a,
                    b,
                    q0,
                    nq,
                    r0,
                    nr,
                    koff,
                    apack,
                });
            }
        }
        let src_len = g.cout * hq * wq + SLACK;
        let out_len = g.cout * g.p();
        let buf_len = phases
            .iter()
            .map(|p| g.cin * p.nq * p.nr)
            .max()
            .unwrap_or(0);
        dx.par_chunks_mut(in_len).enumerate().for_each(|(bi, dxb)| {
            let dyb = &dy[bi * out_len..(bi + 1) * out_len];
            with_scratch(1, src_len, |src| {
                prepare(dyb, g.cout, (g.ho, g.wo), 1, (pt, pl), (hq, wq), src);
                with_scratch(2, buf_len, |buf| {
                    for ph in &phases {
                        let npix = ph.nq * ph.nr;
                        implicit_gemm(&ph.apack, g.cin, &ph.koff, src, (ph.nq, ph.nr, wq), buf);
                        for ci in 0..g.cin {
                            let plane = &mut dxb[ci * g.hw()..(ci + 1) * g.hw()];
                            let res = &buf[ci * npix..(ci + 1) * npix];
                            for qq in 0..ph.nq {
                                let iy = (ph.q0 + qq) * s + ph.a - g.ph();
                                let ix0 = ph.r0 * s + ph.b - g.pw();
                                scatter_strided(
                                    &mut plane[iy * g.w + ix0..(iy + 1) * g.w],
                                    &res[qq * ph.nr..(qq + 1) * ph.nr],
                                    s,
                                );
                            }
                        }
                    }
                });
            });
        });
        dx
    }
}
