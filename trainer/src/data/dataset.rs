//! The in-memory data set: labelled images of a train and a test split, each image stored
//! channel-major (C x H x W) as contiguous bytes.

/// The images of one split and their labels.
///
/// Image `i` occupies `images[i * image_len .. (i + 1) * image_len]`, channel-major
/// (C x H x W), one byte per value; `labels[i]` is its class index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// All images, back to back.
    pub images: Vec<u8>,
    /// One class index per image.
    pub labels: Vec<u32>,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The bytes of image `i`, given the length of one image (see [`Dataset::image_len`]).
    ///
    /// # Panics
    /// When image `i` lies outside the buffer, like slice indexing.
    pub fn image(&self, i: usize, image_len: usize) -> &[u8] {
        &self.images[i * image_len..(i + 1) * image_len]
    }
}

/// A labelled image data set with a train and a test split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// Where it came from: `cifar10`, `cifar100-fine`, `cifar100-coarse`,
    /// `imagefolder:<dir>` or `idx:<dir>`.
    pub name: String,
    /// Class names, indexed by label (`"0"`, `"1"`, ... when the format has none).
    pub classes: Vec<String>,
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels.
    pub width: u32,
    /// Channels per pixel (1 for grey, 3 for RGB).
    pub channels: u32,
    /// The training split.
    pub train: Split,
    /// The test split.
    pub test: Split,
}

impl Dataset {
    /// A one-line description: name, split sizes, image shape and class count.
    pub fn describe(&self) -> String {
        format!(
            "{} ({} train, {} test images of {}x{}x{}, {} classes)",
            self.name,
            self.train.len(),
            self.test.len(),
            self.height,
            self.width,
            self.channels,
            self.num_classes()
        )
    }

    /// A SHA-256 (hex) of what decides a fitness on this data: the image shape, the class
    /// count and every training image and label (the validation images are drawn from
    /// them). Two copies of a data set that differ in any pixel or label differ here,
    /// whatever they are called; the name and the test split are not part of it.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for n in [
            self.height,
            self.width,
            self.channels,
            self.classes.len() as u32,
        ] {
            h.update(n.to_le_bytes());
        }
        h.update((self.train.len() as u64).to_le_bytes());
        for label in &self.train.labels {
            h.update(label.to_le_bytes());
        }
        h.update(&self.train.images);
        hex::encode(h.finalize())
    }

    /// Bytes per image: channels x height x width.
    pub fn image_len(&self) -> usize {
        self.channels as usize * self.height as usize * self.width as usize
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_indexes_images() {
        let split = Split {
            images: (0..12).collect(),
            labels: vec![0, 1, 0],
        };
        assert_eq!(split.len(), 3);
        assert!(!split.is_empty());
        assert_eq!(split.image(1, 4), &[4, 5, 6, 7]);
        let ds = Dataset {
            name: "t".into(),
            classes: vec!["a".into(), "b".into()],
            height: 2,
            width: 2,
            channels: 1,
            train: split.clone(),
            test: Split::default(),
        };
        assert_eq!(ds.image_len(), 4);
        assert_eq!(ds.num_classes(), 2);
        assert!(ds.test.is_empty());
    }

    #[test]
    fn the_digest_follows_pixels_and_labels_not_names() {
        let ds = Dataset {
            name: "a".into(),
            classes: vec!["x".into(), "y".into()],
            height: 1,
            width: 2,
            channels: 1,
            train: Split {
                images: vec![1, 2, 3, 4],
                labels: vec![0, 1],
            },
            test: Split::default(),
        };
        let d = ds.digest();
        assert_eq!(d.len(), 64);
        let renamed = Dataset {
            name: "b".into(),
            test: ds.train.clone(),
            ..ds.clone()
        };
        assert_eq!(renamed.digest(), d, "name and test split do not count");
        let mut pixel = ds.clone();
        pixel.train.images[3] = 5;
        assert_ne!(pixel.digest(), d);
        let mut label = ds.clone();
        label.train.labels[0] = 1;
        assert_ne!(label.digest(), d);
    }
}
