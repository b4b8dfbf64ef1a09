//! Carrying out a function-preserving mutation's initializations ([`TensorInit`], decided
//! by the genome crate) on the parent's tensors: pass-through kernels and batch norms,
//! and tensors grown from the parent's with their new parts set so that the child
//! computes its parent's function.

use crate::network::BN_EPS;
use genome::{TensorInit, TensorRole, TensorSpec};

/// The directive of `inits` that initializes the tensor called `name`: the last one
/// naming it (a batch norm's directive names its prefix).
pub fn init_for<'a>(name: &str, inits: &'a [TensorInit]) -> Option<&'a TensorInit> {
    inits.iter().rev().find(|init| match init {
        TensorInit::PassThroughBatchNorm { prefix } => name
            .strip_prefix(prefix.as_str())
            .is_some_and(|rest| rest.starts_with('.')),
        other => other.name() == name,
    })
}

/// The values of `spec` under `init`, from the parent's tensor of the same name (its
/// values and dims) where `init` needs one, and `fresh` (the tensor's fresh
/// initialization) for what starts fresh. Returns the values and whether they came from
/// the parent; `None` when `init` does not fit (the tensor then starts as usual).
pub fn initialize(
    spec: &TensorSpec,
    init: &TensorInit,
    parent: Option<&(Vec<f32>, Vec<usize>)>,
    fresh: Vec<f32>,
) -> Option<(Vec<f32>, bool)> {
    match init {
        TensorInit::PassThrough { split, average, .. } => {
            pass_through_kernel(&spec.shape, *split, *average, fresh).map(|v| (v, false))
        }
        TensorInit::PassThroughBatchNorm { .. } => {
            let n: usize = spec.shape.iter().product();
            let value = match spec.role {
                TensorRole::BnScale => ((1.0 + BN_EPS) as f32).sqrt(),
                TensorRole::BnRunningVar => 1.0,
                TensorRole::BnShift | TensorRole::BnRunningMean => 0.0,
                _ => return None,
            };
            Some((vec![value; n], false))
        }
        TensorInit::Grow {
            split,
            feature_block,
            ..
        } => {
            let (values, dims) = parent?;
            grow(spec, values, dims, *split, *feature_block, fresh).map(|v| (v, true))
        }
        TensorInit::Resample {
            channels, from, to, ..
        } => {
            let (values, dims) = parent?;
            resample_head(spec, values, dims, *channels, *from, *to).map(|v| (v, true))
        }
    }
}

/// Head weights `[classes, c * h' * w']` from the parent's `[classes, c * h * w]`: each
/// new position sums the weights of the old positions that nearest-neighbour resampling
/// maps to it (old row `y` to new row `y * h' / h`, likewise columns).
fn resample_head(
    spec: &TensorSpec,
    parent: &[f32],
    dims: &[usize],
    channels: u32,
    from: (u32, u32),
    to: (u32, u32),
) -> Option<Vec<f32>> {
    let (&[k, f], &[pk, pf]) = (spec.shape.as_slice(), dims) else {
        return None;
    };
    let c = channels as usize;
    let (h, w) = (from.0 as usize, from.1 as usize);
    let (nh, nw) = (to.0 as usize, to.1 as usize);
    // The child's output may have more channels than the parent's: their weights stay 0.
    let widened = f % (nh * nw).max(1) == 0 && f / (nh * nw).max(1) >= c;
    if spec.role != TensorRole::HeadWeight || k != pk || pf != c * h * w || !widened {
        return None;
    }
    let mut out = vec![0.0; k * f];
    for row in 0..k {
        for ch in 0..c {
            for y in 0..h {
                let ny = y * nh / h;
                for x in 0..w {
                    let nx = x * nw / w;
                    out[row * f + (ch * nh + ny) * nw + nx] +=
                        parent[row * pf + (ch * h + y) * w + x];
                }
            }
        }
    }
    Some(out)
}

/// A kernel `[c_out, c_in, kh, kw]` whose output channel `i < c_in` is the centred
/// one-hot of input channel `i`, or with `average` a quarter on each tap of the 2x2 block
/// the centre starts (with `split`, output `c_in + i` its negative); other output channels
/// keep their `fresh` values. `None` where the shape cannot hold it.
fn pass_through_kernel(
    shape: &[usize],
    split: bool,
    average: bool,
    mut fresh: Vec<f32>,
) -> Option<Vec<f32>> {
    let &[o, i, kh, kw] = shape else {
        return None;
    };
    if kh % 2 == 0 || kw % 2 == 0 || o < i || (split && o < 2 * i) || (average && kh.min(kw) < 3) {
        return None;
    }
    let (ch, cw) = (kh / 2, kw / 2);
    // The taps each output channel reads from its input channel: the centre, or the 2x2
    // block it starts (right of it and below it, inside the filter since it is 3 or more).
    let taps: Vec<(usize, f32)> = if average {
        [(ch, cw), (ch, cw + 1), (ch + 1, cw), (ch + 1, cw + 1)]
            .map(|(r, c)| (r * kw + c, 0.25))
            .to_vec()
    } else {
        vec![(ch * kw + cw, 1.0)]
    };
    let row = i * kh * kw;
    let mut set = |out: usize, input: usize, sign: f32| {
        let r = &mut fresh[out * row..(out + 1) * row];
        r.fill(0.0);
        for &(tap, value) in &taps {
            r[input * kh * kw + tap] = sign * value;
        }
    };
    for c in 0..i {
        set(c, c, 1.0);
        if split {
            set(i + c, c, -1.0);
        }
    }
    Some(fresh)
}

/// `spec` grown from the parent's values (`dims`), as [`TensorInit::Grow`] says.
fn grow(
    spec: &TensorSpec,
    parent: &[f32],
    dims: &[usize],
    split: Option<u32>,
    feature_block: u32,
    fresh: Vec<f32>,
) -> Option<Vec<f32>> {
    let shape = spec.shape.as_slice();
    if shape.len() != dims.len() || shape.iter().zip(dims).any(|(c, p)| c < p) {
        return None;
    }
    let split = split.map(|s| s as usize);
    match spec.role {
        TensorRole::ConvKernel => {
            let (&[_, i, kh, kw], &[po, pi, pkh, pkw]) = (shape, dims) else {
                return None;
            };
            if (kh - pkh) % 2 != 0 || (kw - pkw) % 2 != 0 {
                return None;
            }
            if let Some(c) = split {
                if c != pi || i < 2 * c {
                    return None;
                }
            }
            let (dy, dx) = ((kh - pkh) / 2, (kw - pkw) / 2);
            let mut out = fresh;
            for oo in 0..po {
                for ii in 0..i {
                    let (source, sign) = if ii < pi {
                        (Some(ii), 1.0)
                    } else {
                        match split {
                            Some(c) if ii < 2 * c => (Some(ii - c), -1.0),
                            _ => (None, 0.0),
                        }
                    };
                    for y in 0..kh {
                        for x in 0..kw {
                            let at = ((oo * i + ii) * kh + y) * kw + x;
                            let (py, px) = (y.wrapping_sub(dy), x.wrapping_sub(dx));
                            out[at] = match source {
                                Some(s) if py < pkh && px < pkw => {
                                    sign * parent[((oo * pi + s) * pkh + py) * pkw + px]
                                }
                                _ => 0.0,
                            };
                        }
                    }
                }
            }
            Some(out)
        }
        TensorRole::HeadWeight => {
            let (&[k, f], &[pk, pf]) = (shape, dims) else {
                return None;
            };
            let b = feature_block.max(1) as usize;
            if k != pk || f % b != 0 || pf % b != 0 {
                return None;
            }
            let pc = pf / b;
            if let Some(c) = split {
                if c != pc || f / b < 2 * c {
                    return None;
                }
            }
            let mut out = vec![0.0; k * f];
            for row in 0..k {
                for j in 0..f {
                    let (ch, p) = (j / b, j % b);
                    out[row * f + j] = if ch < pc {
                        parent[row * pf + j]
                    } else {
                        match split {
                            Some(c) if ch < 2 * c => -parent[row * pf + (ch - c) * b + p],
                            _ => 0.0,
                        }
                    };
                }
            }
            Some(out)
        }
        _ => {
            // One value per channel: the parent's first, fresh ones after.
            if shape.len() != 1 {
                return None;
            }
            let mut out = fresh;
            out[..parent.len()].copy_from_slice(parent);
            Some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shape: &[usize], role: TensorRole) -> TensorSpec {
        TensorSpec {
            name: "t".into(),
            shape: shape.to_vec(),
            role,
        }
    }

    #[test]
    fn a_pass_through_kernel_is_a_centred_one_hot_with_split_negatives() {
        let fresh = vec![7.0; 5 * 2 * 3 * 3];
        let k = pass_through_kernel(&[5, 2, 3, 3], true, false, fresh).unwrap();
        let at = |o: usize, i: usize, y: usize, x: usize| k[((o * 2 + i) * 3 + y) * 3 + x];
        assert_eq!(at(0, 0, 1, 1), 1.0);
        assert_eq!(at(1, 1, 1, 1), 1.0);
        assert_eq!(at(2, 0, 1, 1), -1.0);
        assert_eq!(at(3, 1, 1, 1), -1.0);
        assert_eq!(at(0, 1, 1, 1), 0.0);
        assert_eq!(at(0, 0, 0, 0), 0.0);
        // The fifth output channel stays fresh.
        assert!((0..18).all(|j| k[4 * 18 + j] == 7.0));
        assert!(pass_through_kernel(&[3, 2, 3, 3], true, false, vec![0.0; 54]).is_none());
    }

    #[test]
    fn an_averaging_pass_through_reads_the_block_the_centre_starts() {
        let fresh = vec![7.0; 5 * 2 * 3 * 3];
        let k = pass_through_kernel(&[5, 2, 3, 3], true, true, fresh).unwrap();
        let at = |o: usize, i: usize, y: usize, x: usize| k[((o * 2 + i) * 3 + y) * 3 + x];
        for (y, x) in [(1, 1), (1, 2), (2, 1), (2, 2)] {
            assert_eq!(at(0, 0, y, x), 0.25);
            assert_eq!(at(1, 1, y, x), 0.25);
            assert_eq!(at(2, 0, y, x), -0.25);
            assert_eq!(at(3, 1, y, x), -0.25);
            assert_eq!(at(0, 1, y, x), 0.0);
        }
        for (y, x) in [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0)] {
            assert_eq!(at(0, 0, y, x), 0.0);
        }
        assert!((0..18).all(|j| k[4 * 18 + j] == 7.0));
        // A 1x1 (or 1-high) filter has no block to average.
        assert!(pass_through_kernel(&[2, 2, 1, 1], false, true, vec![0.0; 4]).is_none());
        assert!(pass_through_kernel(&[2, 2, 1, 3], false, true, vec![0.0; 12]).is_none());
    }

    #[test]
    fn a_grown_kernel_keeps_its_taps_centred_and_zeroes_new_inputs() {
        // Parent [1, 1, 1, 1] = 2; child [2, 3, 3, 1] with inputs split at 1.
        let child = spec(&[2, 3, 3, 1], TensorRole::ConvKernel);
        let g = grow(&child, &[2.0], &[1, 1, 1, 1], Some(1), 1, vec![9.0; 18]).unwrap();
        // Output 0: input 0 centre 2, input 1 (the split copy) centre -2, input 2 zero.
        assert_eq!(&g[..9], &[0.0, 2.0, 0.0, 0.0, -2.0, 0.0, 0.0, 0.0, 0.0]);
        // Output 1 is a new channel: fresh.
        assert!(g[9..].iter().all(|&v| v == 9.0));
        // Shrinking does not grow.
        assert!(grow(
            &spec(&[1, 1, 1, 1], TensorRole::ConvKernel),
            &[1.0; 9],
            &[1, 1, 3, 3],
            None,
            1,
            vec![0.0]
        )
        .is_none());
    }

    #[test]
    fn a_grown_head_adds_zero_or_negated_feature_blocks() {
        let child = spec(&[1, 6], TensorRole::HeadWeight);
        let g = grow(&child, &[1.0, 2.0], &[1, 2], Some(1), 2, vec![0.0; 6]).unwrap();
        assert_eq!(g, vec![1.0, 2.0, -1.0, -2.0, 0.0, 0.0]);
        let g = grow(&child, &[1.0, 2.0], &[1, 2], None, 2, vec![0.0; 6]).unwrap();
        assert_eq!(g, vec![1.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn a_resampled_head_gives_the_same_logits_on_block_constant_activations() {
        // One channel, 4x4 -> 2x2: an activation constant on 2x2 blocks scores the same.
        let parent: Vec<f32> = (0..16).map(|i| (i as f32 * 0.37).sin()).collect();
        let child = spec(&[1, 4], TensorRole::HeadWeight);
        let w = resample_head(&child, &parent, &[1, 16], 1, (4, 4), (2, 2)).unwrap();
        let blocks = [1.5f32, -2.0, 0.25, 3.0];
        let old_x: Vec<f32> = (0..16).map(|i| blocks[(i / 8) * 2 + (i % 4) / 2]).collect();
        let old: f32 = parent.iter().zip(&old_x).map(|(a, b)| a * b).sum();
        let new: f32 = w.iter().zip(&blocks).map(|(a, b)| a * b).sum();
        assert!((old - new).abs() < 1e-5, "{old} vs {new}");
        // Up again: 2x2 -> 4x4 keeps the sum of the weights.
        let up = resample_head(
            &spec(&[1, 16], TensorRole::HeadWeight),
            &w,
            &[1, 4],
            1,
            (2, 2),
            (4, 4),
        )
        .unwrap();
        assert!((up.iter().sum::<f32>() - w.iter().sum::<f32>()).abs() < 1e-5);
        // A child with more channels (a widened stride-2 insertion): the first channel's
        // weights are resampled as before, the new channels' weights are zero.
        let wide = resample_head(
            &spec(&[1, 3 * 4], TensorRole::HeadWeight),
            &parent,
            &[1, 16],
            1,
            (4, 4),
            (2, 2),
        )
        .unwrap();
        assert_eq!(&wide[..4], &w[..]);
        assert!(wide[4..].iter().all(|&v| v == 0.0));
        // Fewer channels, or a size that is no whole number of channels: not resampled.
        for features in [3, 6] {
            let odd = spec(&[1, features], TensorRole::HeadWeight);
            assert!(resample_head(&odd, &parent, &[1, 16], 1, (4, 4), (2, 2)).is_none());
        }
        assert!(resample_head(&child, &parent, &[1, 32], 2, (4, 4), (2, 2)).is_none());
    }

    #[test]
    fn batch_norm_directives_match_by_prefix() {
        let inits = vec![TensorInit::PassThroughBatchNorm {
            prefix: "bn.v3".into(),
        }];
        assert!(init_for("bn.v3.weight", &inits).is_some());
        assert!(init_for("bn.v31.weight", &inits).is_none());
    }
}
