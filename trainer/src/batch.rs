//! Turning stored u8 images into normalized f32 batches, with the standard augmentation:
//! zero padding then a random crop (a random shift of up to `pad` pixels) and a random
//! horizontal flip.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// Augmentation settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Whether to augment at all.
    pub enabled: bool,
    /// Padding before the random crop: pixels (0: no crop), or `auto`, an eighth of the
    /// shorter image side (4 pixels for 32x32, 1 for 8x8).
    pub pad: Pad,
    /// Whether to flip horizontally at random.
    pub flip: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            enabled: true,
            pad: Pad::Pixels(4),
            flip: true,
        }
    }
}

impl AugmentConfig {
    /// These settings as an augmentation gene: it crops where they pad, it flips where
    /// they flip (whether augmentation is enabled at all is not the gene's to say).
    pub fn as_gene(&self) -> genome::AugmentGene {
        genome::AugmentGene {
            crop: self.pad != Pad::Pixels(0),
            flip: self.flip,
        }
    }

    /// These settings as a genome's augmentation gene says: no crop unless it crops, no
    /// flip unless it flips (`None`: as they are).
    pub fn with_gene(self, gene: Option<genome::AugmentGene>) -> AugmentConfig {
        match gene {
            None => self,
            Some(g) => AugmentConfig {
                pad: if g.crop { self.pad } else { Pad::Pixels(0) },
                flip: self.flip && g.flip,
                ..self
            },
        }
    }

    /// The padding in pixels for images of `h` x `w`.
    pub fn pad_pixels(&self, h: usize, w: usize) -> u32 {
        match self.pad {
            Pad::Pixels(p) => p,
            Pad::Auto => ((h.min(w) as f64 / 8.0).round() as u32).max(1),
        }
    }
}

/// The padding of the random crop: a number of pixels, or scaled to the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pad {
    /// This many pixels on every side.
    Pixels(u32),
    /// An eighth of the shorter image side, rounded, at least 1.
    Auto,
}

impl Serialize for Pad {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Pad::Pixels(p) => s.serialize_u32(*p),
            Pad::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Pad {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Pixels(u32),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Pixels(p) => Ok(Pad::Pixels(p)),
            Raw::Name(n) if n == "auto" => Ok(Pad::Auto),
            Raw::Name(n) => Err(serde::de::Error::custom(format!(
                "expected a number of pixels or \"auto\", not {n:?}"
            ))),
        }
    }
}

/// Per-channel normalization: `x = (pixel / 255 - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean of each channel, in [0, 1] pixel units.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel.
    pub std: Vec<f32>,
}

impl Normalization {
    /// No normalization beyond scaling to [0, 1].
    pub fn unit(channels: usize) -> Self {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Per-channel `(scale, offset)` taking a raw pixel `p` to `p * scale + offset`.
    pub fn scale_offset(&self) -> (Vec<f32>, Vec<f32>) {
        let scale = self.std.iter().map(|s| 1.0 / (255.0 * s)).collect();
        let offset = self
            .mean
            .iter()
            .zip(&self.std)
            .map(|(m, s)| -m / s)
            .collect();
        (scale, offset)
    }

    /// Per-channel mean and standard deviation of the images at `indices` (channel-major
    /// images of `channels` x `pixels`).
    pub fn measure(images: &[u8], channels: usize, pixels: usize, indices: &[usize]) -> Self {
        let image_len = channels * pixels;
        let mut sum = vec![0f64; channels];
        let mut sq = vec![0f64; channels];
        for &i in indices {
            let img = &images[i * image_len..(i + 1) * image_len];
            for c in 0..channels {
                for &p in &img[c * pixels..(c + 1) * pixels] {
                    let v = p as f64 / 255.0;
                    sum[c] += v;
                    sq[c] += v * v;
                }
            }
        }
        let n = (indices.len() * pixels).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| ((s / n - m * m).max(1e-12)).sqrt().max(1e-3) as f32)
            .collect();
        Normalization {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }
}

/// The geometry of the stored images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageDims {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl ImageDims {
    /// Values in one image.
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Whether an image has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One image's augmentation: a shift of the crop window and a flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Augmentation {
    /// Vertical shift of the crop, in [-pad, pad].
    pub dy: i32,
    /// Horizontal shift of the crop, in [-pad, pad].
    pub dx: i32,
    /// Whether to mirror left-right.
    pub flip: bool,
}

impl Augmentation {
    /// Draws one image's augmentation, with a crop padding of `pad` pixels.
    pub fn draw(config: &AugmentConfig, pad: u32, rng: &mut impl rand::Rng) -> Self {
        if !config.enabled {
            return Augmentation::default();
        }
        let p = pad as i32;
        Augmentation {
            dy: if p > 0 { rng.random_range(-p..=p) } else { 0 },
            dx: if p > 0 { rng.random_range(-p..=p) } else { 0 },
            flip: config.flip && rng.random_bool(0.5),
        }
    }
}

/// Writes the images at `indices` into `out` (`indices.len()` x C x H x W), normalized
/// and augmented (one augmentation per image, or none). Pixels shifted in from outside
/// the image are black (0) before normalization, as zero padding of the raw image.
pub fn assemble(
    images: &[u8],
    dims: ImageDims,
    indices: &[usize],
    norm: &Normalization,
    augment: Option<&[Augmentation]>,
    out: &mut Vec<f32>,
) {
    let (c, h, w) = (dims.c, dims.h, dims.w);
    let len = dims.len();
    out.clear();
    out.resize(indices.len() * len, 0.0);
    let (scale, offset) = norm.scale_offset();
    for (b, &i) in indices.iter().enumerate() {
        let src = &images[i * len..(i + 1) * len];
        let dst = &mut out[b * len..(b + 1) * len];
        let a = augment.map(|a| a[b]).unwrap_or_default();
        for ch in 0..c {
            let plane = &src[ch * h * w..(ch + 1) * h * w];
            let out_plane = &mut dst[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                let sy = y as i32 + a.dy;
                for x in 0..w {
                    let xx = if a.flip { w - 1 - x } else { x };
                    let sx = xx as i32 + a.dx;
                    let pixel = if sy >= 0 && sy < h as i32 && sx >= 0 && sx < w as i32 {
                        plane[sy as usize * w + sx as usize]
                    } else {
                        0
                    };
                    out_plane[y * w + x] = pixel as f32 * scale[ch] + offset[ch];
                }
            }
        }
    }
}

/// A split held on the device (images as u8 `[N, C, H, W]`, labels as u32), so that on a
/// GPU each step uploads only the batch's indices and crop offsets: selection,
/// normalization, padding, cropping and flipping all run on the device.
#[derive(Debug)]
pub struct DeviceSplit {
    images: Tensor,
    labels: Tensor,
    dims: ImageDims,
}

impl DeviceSplit {
    /// Uploads `images` (channel-major, `dims` each) and `labels` to `device`.
    pub fn upload(
        images: &[u8],
        labels: &[u32],
        dims: ImageDims,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let n = labels.len();
        Ok(DeviceSplit {
            images: Tensor::from_slice(
                &images[..n * dims.len()],
                (n, dims.c, dims.h, dims.w),
                device,
            )?,
            labels: Tensor::from_slice(labels, n, device)?,
            dims,
        })
    }

    /// The normalized, augmented batch of the images at `indices`, and their labels. It
    /// equals [`assemble`] of the same images and augmentations; `pad` must be at least
    /// every shift in `augment`.
    pub fn batch(
        &self,
        indices: &[usize],
        norm: &Normalization,
        augment: Option<(&[Augmentation], usize)>,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let device = self.images.device();
        let (b, c, h, w) = (indices.len(), self.dims.c, self.dims.h, self.dims.w);
        let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
        let idx = Tensor::from_vec(idx, b, device)?;
        let labels = self.labels.index_select(&idx, 0)?;
        let mut x = self.images.index_select(&idx, 0)?.to_dtype(DType::F32)?;
        if let Some((augs, pad)) = augment {
            let (hp, wp) = (h + 2 * pad, w + 2 * pad);
            let padded = x
                .pad_with_zeros(2, pad, pad)?
                .pad_with_zeros(3, pad, pad)?
                .reshape((b, c, hp * wp))?;
            let mut gather = Vec::with_capacity(b * h * w);
            for a in augs.iter().take(b) {
                for y in 0..h {
                    let sy = (y as i64 + pad as i64 + a.dy as i64) as usize;
                    for xo in 0..w {
                        let xx = if a.flip { w - 1 - xo } else { xo };
                        let sx = (xx as i64 + pad as i64 + a.dx as i64) as usize;
                        gather.push((sy * wp + sx) as u32);
                    }
                }
            }
            let gather = Tensor::from_vec(gather, (b, 1, h * w), device)?
                .broadcast_as((b, c, h * w))?
                .contiguous()?;
            x = padded.gather(&gather, 2)?.reshape((b, c, h, w))?;
        }
        let (scale, offset) = norm.scale_offset();
        let scale = Tensor::from_vec(scale, (1, c, 1, 1), device)?;
        let offset = Tensor::from_vec(offset, (1, c, 1, 1), device)?;
        let x = x.broadcast_mul(&scale)?.broadcast_add(&offset)?;
        Ok((x, labels))
    }
}

#[cfg(test)]
mod pad_tests {
    use super::*;

    #[test]
    fn auto_padding_is_an_eighth_of_the_shorter_side() {
        let auto = AugmentConfig {
            pad: Pad::Auto,
            ..AugmentConfig::default()
        };
        assert_eq!(auto.pad_pixels(32, 32), 4);
        assert_eq!(auto.pad_pixels(8, 8), 1);
        assert_eq!(auto.pad_pixels(28, 28), 4);
        assert_eq!(auto.pad_pixels(96, 64), 8);
        assert_eq!(auto.pad_pixels(4, 4), 1);
        assert_eq!(AugmentConfig::default().pad_pixels(8, 8), 4);
        let parsed: AugmentConfig = serde_json::from_str(r#"{"pad": "auto"}"#).unwrap();
        assert_eq!(parsed.pad, Pad::Auto);
        let parsed: AugmentConfig = serde_json::from_str(r#"{"pad": 2}"#).unwrap();
        assert_eq!(parsed.pad, Pad::Pixels(2));
        assert!(serde_json::from_str::<AugmentConfig>(r#"{"pad": "big"}"#).is_err());
        assert_eq!(serde_json::to_string(&auto.pad).unwrap(), "\"auto\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_batches_are_scaled_and_normalized() {
        let dims = ImageDims { c: 1, h: 2, w: 2 };
        let images = [0u8, 255, 51, 102, 10, 20, 30, 40];
        let norm = Normalization {
            mean: vec![0.5],
            std: vec![0.5],
        };
        let mut out = Vec::new();
        assemble(&images, dims, &[0], &norm, None, &mut out);
        let expected = [-1.0, 1.0, 51.0 / 127.5 - 1.0, 102.0 / 127.5 - 1.0];
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn shifts_pad_with_black_and_flips_mirror() {
        let dims = ImageDims { c: 1, h: 2, w: 3 };
        let images = [1u8, 2, 3, 4, 5, 6];
        let norm = Normalization::unit(1);
        let mut out = Vec::new();
        let flip = [Augmentation {
            dy: 0,
            dx: 0,
            flip: true,
        }];
        assemble(&images, dims, &[0], &norm, Some(&flip), &mut out);
        let px: Vec<u8> = out.iter().map(|v| (v * 255.0).round() as u8).collect();
        assert_eq!(px, vec![3, 2, 1, 6, 5, 4]);
        let shift = [Augmentation {
            dy: 1,
            dx: -1,
            flip: false,
        }];
        assemble(&images, dims, &[0], &norm, Some(&shift), &mut out);
        let px: Vec<u8> = out.iter().map(|v| (v * 255.0).round() as u8).collect();
        assert_eq!(px, vec![0, 4, 5, 0, 0, 0]);
    }

    #[test]
    fn measured_normalization_matches_by_hand() {
        let images = [0u8, 255, 255, 255];
        let norm = Normalization::measure(&images, 2, 2, &[0]);
        assert!((norm.mean[0] - 0.5).abs() < 1e-6 && (norm.std[0] - 0.5).abs() < 1e-6);
        assert!((norm.mean[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn device_batches_equal_host_batches() {
        use rand::SeedableRng;
        let dims = ImageDims { c: 3, h: 5, w: 7 };
        let n = 6;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let images: Vec<u8> = (0..n * dims.len())
            .map(|_| rand::Rng::random(&mut rng))
            .collect();
        let labels: Vec<u32> = (0..n as u32).collect();
        let norm = Normalization::measure(&images, 3, 35, &[0, 1, 2, 3, 4, 5]);
        let split = DeviceSplit::upload(&images, &labels, dims, &Device::Cpu).unwrap();
        let config = AugmentConfig::default();
        let indices = [4, 1, 1, 5];
        let augs: Vec<Augmentation> = indices
            .iter()
            .map(|_| Augmentation::draw(&config, 4, &mut rng))
            .collect();
        let mut host = Vec::new();
        for augment in [None, Some(augs.as_slice())] {
            assemble(&images, dims, &indices, &norm, augment, &mut host);
            let (x, y) = split
                .batch(&indices, &norm, augment.map(|a| (a, 4)))
                .unwrap();
            let device: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(device.len(), host.len());
            for (a, b) in device.iter().zip(&host) {
                assert!((a - b).abs() < 1e-5, "{a} != {b}");
            }
            assert_eq!(y.to_vec1::<u32>().unwrap(), vec![4, 1, 1, 5]);
        }
    }
}
