//! Checks of candle's backward pass as vendored (`vendor/candle-core`: the first gradient
//! of a tensor is stored as is instead of being added to zeros): gradients of tensors used
//! several times, through views, subtractions and custom ops, against hand-derived values.

// A failed unwrap is the test failing.
#![allow(clippy::unwrap_used)]

use candle_core::{Device, Tensor, Var};

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

#[test]
fn a_tensor_used_several_times_gets_the_sum_of_its_gradients() {
    let dev = Device::Cpu;
    let x = Var::new(&[1.0f64, -2.0, 3.0], &dev).unwrap();
    let a = Var::new(&[0.5f64, 0.25, -1.0], &dev).unwrap();
    // f = Σ (x·a + x·x - x + x.reshape(3,1).reshape(3) · 2 - a)
    let x2 = x.reshape((3, 1)).unwrap().reshape(3).unwrap();
    let f = ((x.mul(&a).unwrap() + x.mul(&x).unwrap()).unwrap() - x.as_tensor())
        .unwrap()
        .add(&x2.affine(2.0, 0.0).unwrap())
        .unwrap()
        .sub(&a)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = f.backward().unwrap();
    // df/dx = a + 2x - 1 + 2 ; df/da = x - 1
    let gx = values(grads.get(&x).unwrap());
    let ga = values(grads.get(&a).unwrap());
    let xs = [1.0, -2.0, 3.0];
    let as_ = [0.5, 0.25, -1.0];
    for i in 0..3 {
        assert!(
            (gx[i] - (as_[i] + 2.0 * xs[i] + 1.0)).abs() < 1e-12,
            "{gx:?}"
        );
        assert!((ga[i] - (xs[i] - 1.0)).abs() < 1e-12, "{ga:?}");
    }
}

#[test]
fn a_gradient_used_once_is_not_changed_by_later_accumulation() {
    // y = x + x: both arguments receive the same upstream gradient tensor; the stored
    // gradient of x must be their sum, 2.
    let dev = Device::Cpu;
    let x = Var::new(&[1.0f64, 2.0], &dev).unwrap();
    let y = (x.as_tensor() + x.as_tensor()).unwrap();
    let z = y.sum_all().unwrap();
    let grads = z.backward().unwrap();
    assert_eq!(values(grads.get(&x).unwrap()), vec![2.0, 2.0]);
    // And a chain where an intermediate feeds two consumers.
    let h = x.affine(3.0, 1.0).unwrap(); // h = 3x + 1
    let out = (h.sqr().unwrap() + h.clone()).unwrap().sum_all().unwrap(); // Σ h² + h
    let grads = out.backward().unwrap();
    // d/dx = (2h + 1) * 3
    let expected: Vec<f64> = [1.0, 2.0]
        .iter()
        .map(|v| (2.0 * (3.0 * v + 1.0) + 1.0) * 3.0)
        .collect();
    assert_eq!(values(grads.get(&x).unwrap()), expected);
}
