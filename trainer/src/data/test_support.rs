//! Test helpers: small data sets written in the real on-disk formats.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

/// The standard CIFAR-10 class names, as in `batches.meta.txt`.
const NAMES: &str = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";

/// Pixel byte `j` of record `record` of CIFAR batch `batch` (0..5 train, 5 test).
pub(crate) fn cifar_pixel(batch: usize, record: usize, j: usize) -> u8 {
    ((batch * 31 + record * 17 + j * 7) % 256) as u8
}

/// Writes `root/cifar-10-batches-bin` with `per_batch` records in each of the five train
/// batches and the test batch. Record `r` of batch `b` has label `(b * per_batch + r) % 10`.
pub(crate) fn write_cifar10(root: &Path, per_batch: usize) -> PathBuf {
    let dir = root.join("cifar-10-batches-bin");
    fs::create_dir_all(&dir).unwrap();
    let files = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ];
    for (b, file) in files.iter().enumerate() {
        let mut bytes = Vec::new();
        for r in 0..per_batch {
            bytes.push(((b * per_batch + r) % 10) as u8);
            bytes.extend((0..3072).map(|j| cifar_pixel(b, r, j)));
        }
        fs::write(dir.join(file), bytes).unwrap();
    }
    fs::write(dir.join("batches.meta.txt"), NAMES).unwrap();
    dir
}

/// Writes `root/cifar-100-binary` with `n_train` and `n_test` records. Record `i` has
/// coarse label `i % 20`, fine label `(i * 7) % 100` and pixels `cifar_pixel(i, split, j)`
/// (split 0 train, 1 test). Class names are `fine<i>` and `coarse<i>`.
pub(crate) fn write_cifar100(root: &Path, n_train: usize, n_test: usize) -> PathBuf {
    let dir = root.join("cifar-100-binary");
    fs::create_dir_all(&dir).unwrap();
    for (split, (file, n)) in [("train.bin", n_train), ("test.bin", n_test)]
        .into_iter()
        .enumerate()
    {
        let mut bytes = Vec::new();
        for i in 0..n {
            bytes.push((i % 20) as u8);
            bytes.push(((i * 7) % 100) as u8);
            bytes.extend((0..3072).map(|j| cifar_pixel(i, split, j)));
        }
        fs::write(dir.join(file), bytes).unwrap();
    }
    let names =
        |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}\n")).collect::<String>();
    fs::write(dir.join("fine_label_names.txt"), names("fine", 100)).unwrap();
    fs::write(dir.join("coarse_label_names.txt"), names("coarse", 20)).unwrap();
    dir
}

/// Gzips `bytes`.
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Pixel `j` of image `i` of IDX split `split` (0 train, 1 test).
pub(crate) fn idx_pixel(split: usize, i: usize, j: usize) -> u8 {
    ((split * 101 + i * 37 + j * 3) % 256) as u8
}

/// Writes the four MNIST-style IDX files (gzipped when `gz`) of `h` x `w` images into
/// `dir`, one image per label; pixels are [`idx_pixel`].
pub(crate) fn write_idx_set(
    dir: &Path,
    h: u32,
    w: u32,
    train_labels: &[u8],
    test_labels: &[u8],
    gz: bool,
) {
    fs::create_dir_all(dir).unwrap();
    let plane = (h * w) as usize;
    for (split, (prefix, labels)) in [("train", train_labels), ("t10k", test_labels)]
        .into_iter()
        .enumerate()
    {
        let n = labels.len() as u32;
        let mut images = vec![0, 0, 8, 3];
        for d in [n, h, w] {
            images.extend_from_slice(&d.to_be_bytes());
        }
        for i in 0..labels.len() {
            images.extend((0..plane).map(|j| idx_pixel(split, i, j)));
        }
        let mut label_file = vec![0, 0, 8, 1];
        label_file.extend_from_slice(&n.to_be_bytes());
        label_file.extend_from_slice(labels);
        for (name, bytes) in [
            (format!("{prefix}-images-idx3-ubyte"), images),
            (format!("{prefix}-labels-idx1-ubyte"), label_file),
        ] {
            if gz {
                fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
            } else {
                fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
}

/// The RGB value at (x, y) of image `idx` of `class` in `split` written by
/// [`write_image_folder`]: smooth, so that JPEG keeps it close.
pub(crate) fn folder_pixel(split: &str, class: &str, idx: usize, x: usize, y: usize) -> [u8; 3] {
    let class_sum: usize = class.bytes().map(usize::from).sum();
    let base = (split.len() * 11 + class_sum * 7 + idx * 37) % 128;
    [
        (base + x * 9 + y * 3) as u8,
        (255 - (base + y * 9)) as u8,
        (base + 60 + x * 4 + y * 4) as u8,
    ]
}

/// Writes an RGB PNG (or JPEG, by extension) of `w` x `h` with pixels from `f`.
pub(crate) fn write_png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)));
    img.save(path).unwrap();
}

/// Writes `root/{train,test}/CLASS/{0,1,..}.EXT`: `n_train` and `n_test` images per class,
/// `w` x `h`, pixels from [`folder_pixel`].
pub(crate) fn write_image_folder(
    root: &Path,
    classes: &[&str],
    n_train: usize,
    n_test: usize,
    w: u32,
    h: u32,
    ext: &str,
) {
    for (split, n) in [("train", n_train), ("test", n_test)] {
        for class in classes {
            let dir = root.join(split).join(class);
            fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                write_png(&dir.join(format!("{i}.{ext}")), w, h, |x, y| {
                    folder_pixel(split, class, i, x as usize, y as usize)
                });
            }
        }
    }
}

/// A `.tar.gz` holding `cifar-10-batches-bin/` as [`write_cifar10`] writes it.
pub(crate) fn cifar10_tar_gz(per_batch: usize) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_cifar10(tmp.path(), per_batch);
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    builder
        .append_dir_all("cifar-10-batches-bin", &dir)
        .unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}
