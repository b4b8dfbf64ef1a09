//! Property tests: the fast ops against stock candle ops evaluated in f64 (forward values
//! and gradients through candle's autograd), over random small shapes.

use super::*;
use candle_core::{backprop::GradStore, Device, Var};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

fn random(dims: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
    let n: usize = dims.iter().product();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn f64_of(t: &Tensor) -> Tensor {
    t.to_dtype(DType::F64).unwrap()
}

/// Largest absolute difference between `a` (f32) and the reference `r` (f64), and the
/// largest absolute reference value.
fn diff(a: &Tensor, r: &Tensor) -> (f64, f64) {
    assert_eq!(a.dims(), r.dims());
    let a: Vec<f64> = f64_of(a).flatten_all().unwrap().to_vec1().unwrap();
    let r: Vec<f64> = r.flatten_all().unwrap().to_vec1().unwrap();
    let d = a
        .iter()
        .zip(&r)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    (d, r.iter().map(|v| v.abs()).fold(0.0, f64::max))
}

fn assert_close(what: &str, a: &Tensor, r: &Tensor, rel: f64) {
    let (d, scale) = diff(a, r);
    assert!(
        d <= rel * (1.0 + scale),
        "{what}: max diff {d} (reference scale {scale})"
    );
}

/// The reference gradients of `sum(relu(z) * r)` for the exact pre-activation `z` (f64,
/// from `Var`s), with the ReLU mask of `y` (the f32 output under test), after checking
/// that this mask differs from the exact one only where `z` is within `allowed` of zero:
/// there f32 rounding may land on either side, and either side is right, while one
/// element on the other side moves batch norm's gradients by about gamma/sqrt(var + eps).
fn reference_grads(y: &Tensor, z: &Tensor, r: &Tensor, allowed: f64) -> GradStore {
    let mask = f64_of(&y.gt(0.0).unwrap());
    let exact = f64_of(&z.gt(0.0).unwrap());
    let flipped_at = (&mask - &exact)
        .unwrap()
        .abs()
        .unwrap()
        .mul(&z.abs().unwrap())
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(
        flipped_at <= allowed,
        "relu mask differs where the pre-activation is {flipped_at} from zero (allowed {allowed})"
    );
    (z * mask)
        .unwrap()
        .mul(&f64_of(r))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap()
}

#[derive(Debug, Clone)]
struct ConvCase {
    b: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    seed: u64,
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    let odd = || prop::sample::select(vec![1usize, 3, 5]);
    (
        (1usize..=4, 1usize..=9, 1usize..=9),
        (1usize..=12, 1usize..=12),
        (odd(), odd(), prop::sample::select(vec![1usize, 2, 4])),
        any::<u64>(),
    )
        .prop_map(
            |((b, cin, cout), (h, w), (kh, kw, stride), seed)| ConvCase {
                b,
                cin,
                cout,
                h,
                w,
                kh,
                kw,
                stride,
                seed,
            },
        )
}

/// Direct f64 loops (the doctor's reference): the convolution of `x` with `w` and, for
/// the loss `Σ y·r`, the gradients of `x` and `w`.
fn naive_conv(c: &ConvCase, x: &[f64], w: &[f64], r: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let shape = crate::doctor::ConvShape {
        b: c.b,
        cin: c.cin,
        cout: c.cout,
        h: c.h,
        w: c.w,
        kh: c.kh,
        kw: c.kw,
        stride: c.stride,
    };
    crate::doctor::naive_conv(&shape, x, w, r)
}

fn vec64(t: &Tensor) -> Vec<f64> {
    f64_of(t).flatten_all().unwrap().to_vec1().unwrap()
}

/// Checks forward values and gradients of `conv2d` against stock candle in f64 (forward,
/// and gradients where candle's backward handles the shape: it derives the output
/// padding of both dimensions from the height alone) and against direct f64 loops.
fn check_conv(c: &ConvCase, input_grad: bool, x_is_var: bool) {
    let x0 = random(&[c.b, c.cin, c.h, c.w], c.seed, -1.0, 1.0);
    let w0 = random(&[c.cout, c.cin, c.kh, c.kw], c.seed ^ 1, -1.0, 1.0);
    let (ho, wo) = (c.h.div_ceil(c.stride), c.w.div_ceil(c.stride));
    let r = random(&[c.b, c.cout, ho, wo], c.seed ^ 2, -1.0, 1.0);

    let xv = Var::from_tensor(&x0).unwrap();
    let wv = Var::from_tensor(&w0).unwrap();
    let x = if x_is_var {
        xv.as_tensor().clone()
    } else {
        x0.clone()
    };
    let y = conv2d(&x, wv.as_tensor(), c.stride, input_grad).unwrap();
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let dw = grads.get(wv.as_tensor()).expect("a filter gradient");
    let dx = grads.get(&x);
    if input_grad && x_is_var {
        assert!(dx.is_some(), "an input gradient");
    } else {
        assert!(dx.is_none(), "no input gradient was asked for");
    }

    // Stock candle in f64.
    let xr = Var::from_tensor(&f64_of(&x0)).unwrap();
    let wr = Var::from_tensor(&f64_of(&w0)).unwrap();
    let yr = stock_conv2d(xr.as_tensor(), wr.as_tensor(), c.stride).unwrap();
    assert_close("conv forward", &y, &yr, 1e-5);
    if let Ok(gr) = (&yr * f64_of(&r)).unwrap().sum_all().unwrap().backward() {
        assert_close("conv dw (stock)", dw, gr.get(wr.as_tensor()).unwrap(), 1e-5);
        if let Some(dx) = dx {
            let dxr = gr.get(xr.as_tensor()).unwrap();
            assert_close("conv dx (stock)", dx, dxr, 1e-5);
        }
    }

    // Direct loops.
    let (ny, ndx, ndw) = naive_conv(c, &vec64(&x0), &vec64(&w0), &vec64(&r));
    let dev = &Device::Cpu;
    let t = |v: Vec<f64>, dims: &[usize]| Tensor::from_vec(v, dims, dev).unwrap();
    assert_close("conv forward (direct)", &y, &t(ny, y.dims()), 1e-5);
    assert_close("conv dw (direct)", dw, &t(ndw, w0.dims()), 1e-5);
    if let Some(dx) = dx {
        assert_close("conv dx (direct)", dx, &t(ndx, x0.dims()), 1e-5);
    }
}

#[derive(Debug, Clone)]
struct BnCase {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    offset: f32,
    seed: u64,
}

fn bn_case() -> impl Strategy<Value = BnCase> {
    (
        1usize..=4,
        1usize..=9,
        1usize..=12,
        1usize..=12,
        prop::sample::select(vec![0.0f32, 3.0, -50.0]),
        any::<u64>(),
    )
        .prop_map(|(b, c, h, w, offset, seed)| BnCase {
            b,
            c,
            h,
            w,
            offset,
            seed,
        })
}

/// Stock-op batch norm in training mode (f64 reference), before the ReLU: the
/// pre-activation, the batch mean and the batch variance.
fn stock_bn_train(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> (Tensor, Tensor, Tensor) {
    let c = x.dim(1).unwrap();
    let mean = x.mean_keepdim((0, 2, 3)).unwrap();
    let centered = x.broadcast_sub(&mean).unwrap();
    let var = centered.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
    let inv_std = (var.clone() + eps)
        .unwrap()
        .sqrt()
        .unwrap()
        .recip()
        .unwrap();
    let z = centered
        .broadcast_mul(&inv_std)
        .unwrap()
        .broadcast_mul(&gamma.reshape((1, c, 1, 1)).unwrap())
        .unwrap()
        .broadcast_add(&beta.reshape((1, c, 1, 1)).unwrap())
        .unwrap();
    (z, mean.flatten_all().unwrap(), var.flatten_all().unwrap())
}

fn check_bn_train(c: &BnCase) {
    let eps = 1e-5;
    let x0 = (random(&[c.b, c.c, c.h, c.w], c.seed, -1.0, 1.0) + c.offset as f64).unwrap();
    let g0 = random(&[c.c], c.seed ^ 1, 0.5, 1.5);
    let b0 = random(&[c.c], c.seed ^ 2, -0.5, 0.5);
    let r = random(&[c.b, c.c, c.h, c.w], c.seed ^ 3, -1.0, 1.0);
    let (xv, gv, bv) = (
        Var::from_tensor(&x0).unwrap(),
        Var::from_tensor(&g0).unwrap(),
        Var::from_tensor(&b0).unwrap(),
    );
    let (y, mean, var) =
        bn_relu_train(xv.as_tensor(), gv.as_tensor(), bv.as_tensor(), eps).unwrap();
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();

    let (xr, gr, br) = (
        Var::from_tensor(&f64_of(&x0)).unwrap(),
        Var::from_tensor(&f64_of(&g0)).unwrap(),
        Var::from_tensor(&f64_of(&b0)).unwrap(),
    );
    let (zr, mr, vr) = stock_bn_train(xr.as_tensor(), gr.as_tensor(), br.as_tensor(), eps);
    let yr = zr.relu().unwrap();

    // The output and the input gradient scale with 1/sqrt(var + eps), large when a
    // channel is nearly constant: compare relative to that.
    let inv_std_max = f64_of(&vr)
        .affine(1.0, eps)
        .unwrap()
        .sqrt()
        .unwrap()
        .recip()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    // In f32, x - mean carries the rounding of numbers as large as the input (an offset
    // of -50 with one value per channel: a variance of 0, so that rounding times
    // 1/sqrt(eps) and gamma), which no implementation in f32 avoids.
    let abs_max = |t: &Tensor| {
        let m = f64_of(t).abs().unwrap().max_all().unwrap();
        m.to_scalar::<f64>().unwrap()
    };
    let rounding = 4.0 * f64::from(f32::EPSILON) * abs_max(&x0) * inv_std_max * abs_max(&g0);
    let (d, scale) = diff(&y, &yr);
    let allowed = 1e-4 * (1.0 + scale) + rounding;
    assert!(
        d <= allowed,
        "bn forward: max diff {d} (reference scale {scale}, rounding {rounding})"
    );
    let grr = reference_grads(&y, &zr, &r, allowed);
    assert_close("bn mean", &mean, &mr, 1e-5);
    assert_close("bn var", &var, &vr, 1e-4);
    let (d, _) = diff(
        grads.get(xv.as_tensor()).unwrap(),
        grr.get(xr.as_tensor()).unwrap(),
    );
    assert!(d <= 1e-3 * (1.0 + inv_std_max), "bn dx: {d}");
    assert_close(
        "bn dgamma",
        grads.get(gv.as_tensor()).unwrap(),
        grr.get(gr.as_tensor()).unwrap(),
        1e-3,
    );
    assert_close(
        "bn dbeta",
        grads.get(bv.as_tensor()).unwrap(),
        grr.get(br.as_tensor()).unwrap(),
        1e-4,
    );
}

fn check_bn_eval(c: &BnCase) {
    let eps = 1e-5;
    let x0 = (random(&[c.b, c.c, c.h, c.w], c.seed, -1.0, 1.0) + c.offset as f64).unwrap();
    let params: Vec<Tensor> = vec![
        random(&[c.c], c.seed ^ 1, 0.5, 1.5),
        random(&[c.c], c.seed ^ 2, -0.5, 0.5),
        (random(&[c.c], c.seed ^ 3, -0.5, 0.5) + c.offset as f64).unwrap(),
        random(&[c.c], c.seed ^ 4, 0.2, 2.0),
    ];
    let r = random(&[c.b, c.c, c.h, c.w], c.seed ^ 5, -1.0, 1.0);
    let vars: Vec<Var> = std::iter::once(&x0)
        .chain(&params)
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let t: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
    let y = bn_relu_eval(t[0], t[1], t[2], t[3], t[4], eps).unwrap();
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();

    let refs: Vec<Var> = std::iter::once(&x0)
        .chain(&params)
        .map(|t| Var::from_tensor(&f64_of(t)).unwrap())
        .collect();
    let tr: Vec<&Tensor> = refs.iter().map(|v| v.as_tensor()).collect();
    let cc = c.c;
    let scale = (tr[1] / (tr[4] + eps).unwrap().sqrt().unwrap()).unwrap();
    let zr = tr[0]
        .broadcast_sub(&tr[3].reshape((1, cc, 1, 1)).unwrap())
        .unwrap()
        .broadcast_mul(&scale.reshape((1, cc, 1, 1)).unwrap())
        .unwrap()
        .broadcast_add(&tr[2].reshape((1, cc, 1, 1)).unwrap())
        .unwrap();
    let yr = zr.relu().unwrap();
    assert_close("bn eval forward", &y, &yr, 1e-4);
    let (_, forward_scale) = diff(&y, &yr);
    let grr = reference_grads(&y, &zr, &r, 1e-4 * (1.0 + forward_scale));
    let names = ["dx", "dgamma", "dbeta", "dmean", "dvar"];
    for (i, name) in names.iter().enumerate() {
        assert_close(
            name,
            grads.get(t[i]).unwrap(),
            grr.get(tr[i]).unwrap(),
            2e-4,
        );
    }
}

/// Checks every implementation of the three convolution products against direct loops.
fn check_conv_paths(c: &ConvCase) {
    use super::conv::{backward_input, backward_weight, forward, Geom, Path};
    let x = vec64(&random(&[c.b, c.cin, c.h, c.w], c.seed, -1.0, 1.0));
    let w = vec64(&random(&[c.cout, c.cin, c.kh, c.kw], c.seed ^ 1, -1.0, 1.0));
    let g = Geom::new(
        &[c.b, c.cin, c.h, c.w],
        &[c.cout, c.cin, c.kh, c.kw],
        c.stride,
    )
    .unwrap();
    let r = vec64(&random(&[c.b, c.cout, g.ho, g.wo], c.seed ^ 2, -1.0, 1.0));
    let (ny, ndx, ndw) = naive_conv(c, &x, &w, &r);
    let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let (xf, wf, rf) = (f32s(&x), f32s(&w), f32s(&r));
    let close = |what: &str, a: &[f32], want: &[f64]| {
        assert_eq!(a.len(), want.len(), "{what}: length");
        let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
        for (i, (u, v)) in a.iter().zip(want).enumerate() {
            assert!(
                (*u as f64 - v).abs() <= 1e-5 * (1.0 + scale),
                "{what}: element {i}: {u} vs {v}"
            );
        }
    };
    let mut paths = vec![Path::Gemm];
    if Path::best() != Path::Gemm {
        paths.push(Path::best());
    }
    for path in paths {
        close(
            &format!("{path:?} forward"),
            &forward(&xf, &wf, &g, path),
            &ny,
        );
        close(
            &format!("{path:?} dx"),
            &backward_input(&rf, &wf, &g, path),
            &ndx,
        );
        close(
            &format!("{path:?} dw"),
            &backward_weight(&xf, &rf, &g, path),
            &ndw,
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn conv_implementations_match_direct_loops(c in conv_case()) {
        check_conv_paths(&c);
    }

    #[test]
    fn conv_matches_stock_forward_and_gradients(c in conv_case()) {
        check_conv(&c, true, true);
    }

    #[test]
    fn conv_without_input_grad_gives_none_and_the_same_filter_gradient(c in conv_case()) {
        check_conv(&c, false, true);
    }

    #[test]
    fn conv_skips_the_gradient_of_a_plain_input(c in conv_case()) {
        check_conv(&c, true, false);
    }

    #[test]
    fn bn_relu_train_matches_stock(c in bn_case()) {
        check_bn_train(&c);
    }

    #[test]
    fn bn_relu_eval_matches_stock(c in bn_case()) {
        check_bn_eval(&c);
    }
}

#[test]
fn conv_matches_stock_on_mid_sized_layers() {
    // Shapes large enough for several register tiles, depth blocks and pixel groups per
    // image, rows of whole 8-pixel segments (widths 16, 32) and of partial ones, and every
    // path; checked against stock candle and direct loops.
    for (i, &(b, cin, cout, h, w, k, stride)) in [
        (3, 16, 24, 32, 35, 3, 1),
        (2, 24, 16, 17, 20, 3, 2),
        (1, 8, 8, 20, 23, 5, 1),
        (5, 32, 8, 9, 12, 1, 1),
        (4, 12, 20, 16, 19, 1, 2),
        (2, 40, 36, 16, 16, 3, 1),
        (2, 36, 40, 32, 32, 3, 2),
        (3, 70, 20, 8, 8, 3, 1),
    ]
    .iter()
    .enumerate()
    {
        let c = ConvCase {
            b,
            cin,
            cout,
            h,
            w,
            kh: k,
            kw: k,
            stride,
            seed: i as u64,
        };
        check_conv(&c, true, true);
        check_conv_paths(&c);
    }
}

#[test]
fn bn_relu_train_statistics_and_shapes() {
    let x = random(&[4, 3, 5, 7], 9, -2.0, 2.0);
    let g = Tensor::ones(3, DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    let (y, mean, var) = bn_relu_train(&x, &g, &b, 1e-5).unwrap();
    assert_eq!(y.dims(), x.dims());
    assert_eq!(mean.dims(), &[3]);
    assert_eq!(var.dims(), &[3]);
    let want = x.mean((0, 2, 3)).unwrap();
    assert_close("mean", &mean, &f64_of(&want), 1e-5);
    // Normalized with unit scale, about half the outputs are zero.
    let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
    let zeros = v.iter().filter(|&&a| a == 0.0).count() as f64 / v.len() as f64;
    assert!((0.3..0.7).contains(&zeros), "{zeros}");
}

#[test]
fn conv_rejects_bad_shapes() {
    let x = random(&[1, 2, 4, 4], 0, -1.0, 1.0);
    let even = random(&[3, 2, 2, 3], 0, -1.0, 1.0);
    assert!(conv2d(&x, &even, 1, true).is_err());
    let wrong_cin = random(&[3, 4, 3, 3], 0, -1.0, 1.0);
    assert!(conv2d(&x, &wrong_cin, 1, true).is_err());
    let ok = random(&[3, 2, 3, 3], 0, -1.0, 1.0);
    assert!(conv2d(&x, &ok, 0, true).is_err());
}

#[test]
fn non_contiguous_inputs_are_handled() {
    let x = random(&[3, 2, 6, 5], 1, -1.0, 1.0);
    let xt = x.transpose(2, 3).unwrap(); // [3, 2, 5, 6], not contiguous
    let w = random(&[4, 2, 3, 1], 2, -1.0, 1.0);
    let y = conv2d(&xt, &w, 2, true).unwrap();
    let yr = stock_conv2d(&f64_of(&xt), &f64_of(&w), 2).unwrap();
    assert_close("strided conv", &y, &yr, 1e-5);
    let g = random(&[2], 3, 0.5, 1.5);
    let b = random(&[2], 4, -0.5, 0.5);
    let (y, _, _) = bn_relu_train(&xt, &g, &b, 1e-5).unwrap();
    let (zr, _, _) = stock_bn_train(&f64_of(&xt), &f64_of(&g), &f64_of(&b), 1e-5);
    assert_close("strided bn", &y, &zr.relu().unwrap(), 1e-4);
}
