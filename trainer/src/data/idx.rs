//! Reader for MNIST-family IDX files (MNIST, Fashion-MNIST, KMNIST, ...):
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
//! `t10k-labels-idx1-ubyte`, each plain or gzipped (`.gz`).
//!
//! An IDX file is a magic number `00 00 08 <ndims>` (type 0x08: unsigned bytes), `ndims`
//! big-endian `u32` dimensions, then the data, row-major.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::{DataError, Dataset, Split};

/// Base names of the four IDX files: train images, train labels, test images, test labels.
pub(crate) const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Whether any of the IDX files (plain or gzipped) is in `dir`.
pub(crate) fn looks_like_idx(dir: &Path) -> bool {
    IDX_FILES
        .iter()
        .any(|f| dir.join(f).is_file() || dir.join(format!("{f}.gz")).is_file())
}

/// Loads the four IDX files in `dir` as a grey (1-channel) data set named `idx:<dir>`.
///
/// Classes are `"0"` up to the largest label found in either split.
pub(crate) fn load_idx(dir: &Path) -> Result<Dataset, DataError> {
    let [train_images, train_labels, test_images, test_labels] = IDX_FILES.map(|f| locate(dir, f));
    let (train, train_hw) = read_split(&train_images?, &train_labels?)?;
    let (test, test_hw) = read_split(&test_images?, &test_labels?)?;
    if train_hw != test_hw {
        return Err(DataError::ImageShape {
            path: dir.join(IDX_FILES[2]),
            width: train_hw.1,
            height: train_hw.0,
            channels: 1,
            found_width: test_hw.1,
            found_height: test_hw.0,
            found_channels: 1,
        });
    }
    let max_label = train.labels.iter().chain(&test.labels).copied().max();
    let classes = (0..=max_label.unwrap_or(0))
        .map(|l| l.to_string())
        .collect();
    Ok(Dataset {
        name: format!("idx:{}", dir.display()),
        classes,
        height: train_hw.0,
        width: train_hw.1,
        channels: 1,
        train,
        test,
    })
}

/// Finds `base` or `base.gz` in `dir`.
fn locate(dir: &Path, base: &str) -> Result<PathBuf, DataError> {
    let plain = dir.join(base);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{base}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DataError::MissingFile { path: plain })
}

/// Reads one images file and its labels file; returns the split and (height, width).
fn read_split(images: &Path, labels: &Path) -> Result<(Split, (u32, u32)), DataError> {
    let (dims, pixels) = read_idx(images, 3)?;
    let (label_dims, label_bytes) = read_idx(labels, 1)?;
    let (n, height, width) = (dims[0], dims[1], dims[2]);
    if n as usize != label_dims[0] as usize {
        return Err(DataError::CountMismatch {
            images: images.to_path_buf(),
            n_images: n as usize,
            labels: labels.to_path_buf(),
            n_labels: label_dims[0] as usize,
        });
    }
    if n == 0 || height == 0 || width == 0 {
        return Err(DataError::Empty {
            path: images.to_path_buf(),
        });
    }
    let split = Split {
        images: pixels,
        labels: label_bytes.into_iter().map(u32::from).collect(),
    };
    Ok((split, (height, width)))
}

/// Reads an unsigned-byte IDX file with `ndims` dimensions; returns the dimensions and data.
///
/// The data length is checked against the header, and memory grows only with the bytes
/// actually present, never with what the header claims.
fn read_idx(path: &Path, ndims: usize) -> Result<(Vec<u32>, Vec<u8>), DataError> {
    let bad = |reason: String| DataError::BadIdx {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    let gzipped = path.extension().is_some_and(|e| e == "gz");
    let mut reader: Box<dyn Read> = if gzipped {
        Box::new(GzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };

    let header_len = 4 + 4 * ndims;
    let mut header = vec![0u8; header_len];
    reader.read_exact(&mut header).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            bad(format!("shorter than its {header_len}-byte header"))
        } else {
            DataError::io(path, e)
        }
    })?;
    if header[0] != 0 || header[1] != 0 {
        return Err(bad(format!(
            "magic number starts {:02x} {:02x}, expected 00 00",
            header[0], header[1]
        )));
    }
    if header[2] != 0x08 {
        return Err(bad(format!(
            "data type 0x{:02x}; only unsigned bytes (0x08) are supported",
            header[2]
        )));
    }
    if usize::from(header[3]) != ndims {
        return Err(bad(format!("{} dimensions, expected {ndims}", header[3])));
    }
    let dims: Vec<u32> = header[4..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let expected = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;

    if !gzipped {
        let actual = file_len.saturating_sub(header_len as u64);
        if actual != expected {
            return Err(bad(format!(
                "header {dims:?} promises {expected} data bytes but the file holds {actual}"
            )));
        }
    }
    // Grow with the data actually read (at most one byte past what the header promises).
    let mut data = Vec::new();
    reader
        .take(expected.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| DataError::io(path, e))?;
    if data.len() as u64 != expected {
        let held = if data.len() as u64 > expected {
            "more".to_string()
        } else {
            data.len().to_string()
        };
        return Err(bad(format!(
            "header {dims:?} promises {expected} data bytes but the file holds {held}"
        )));
    }
    Ok((dims, data))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{idx_pixel, write_idx_set};
    use super::super::{load, DataError, LoadOptions};
    use std::fs;

    fn check_mnist_like(gz: bool) {
        let tmp = tempfile::tempdir().unwrap();
        write_idx_set(tmp.path(), 5, 7, &[3, 1, 4, 1], &[5, 9], gz);
        let ds = load(tmp.path(), &LoadOptions::default()).unwrap();
        assert!(ds.name.starts_with("idx:"));
        assert_eq!((ds.channels, ds.height, ds.width), (1, 5, 7));
        assert_eq!(ds.train.labels, vec![3, 1, 4, 1]);
        assert_eq!(ds.test.labels, vec![5, 9]);
        assert_eq!(ds.num_classes(), 10);
        assert_eq!(ds.classes[9], "9");
        assert_eq!(ds.image_len(), 35);
        let img = ds.train.image(2, 35);
        for (j, &v) in img.iter().enumerate() {
            assert_eq!(v, idx_pixel(0, 2, j));
        }
        assert_eq!(ds.test.image(1, 35)[34], idx_pixel(1, 1, 34));
    }

    #[test]
    fn idx_plain_loads() {
        check_mnist_like(false);
    }

    #[test]
    fn idx_gzipped_loads() {
        check_mnist_like(true);
    }

    #[test]
    fn idx_truncated_plain_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        write_idx_set(tmp.path(), 5, 7, &[3, 1], &[5], false);
        let f = tmp.path().join("train-images-idx3-ubyte");
        let bytes = fs::read(&f).unwrap();
        fs::write(&f, &bytes[..bytes.len() - 1]).unwrap();
        let err = load(tmp.path(), &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(&err, DataError::BadIdx { path, .. } if path == &f),
            "{err}"
        );
    }

    #[test]
    fn idx_huge_header_count_is_an_error_not_an_allocation() {
        let tmp = tempfile::tempdir().unwrap();
        write_idx_set(tmp.path(), 5, 7, &[3, 1], &[5], true);
        // Claim 2^32-1 images of 65535x65535 in a tiny gzipped file.
        let mut header = vec![0, 0, 8, 3];
        for d in [u32::MAX, 65_535, 65_535] {
            header.extend_from_slice(&d.to_be_bytes());
        }
        header.extend_from_slice(&[0u8; 70]);
        let f = tmp.path().join("train-images-idx3-ubyte.gz");
        fs::write(&f, super::super::test_support::gzip(&header)).unwrap();
        let err = load(tmp.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(&err, DataError::BadIdx { .. }), "{err}");
    }

    #[test]
    fn idx_count_mismatch_and_bad_magic_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        write_idx_set(tmp.path(), 5, 7, &[3, 1], &[5], false);
        let labels = tmp.path().join("t10k-labels-idx1-ubyte");
        fs::write(&labels, [0, 0, 8, 1, 0, 0, 0, 2, 5, 6]).unwrap();
        let err = load(tmp.path(), &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(
                &err,
                DataError::CountMismatch {
                    n_images: 1,
                    n_labels: 2,
                    ..
                }
            ),
            "{err}"
        );
        fs::write(&labels, [0, 0, 9, 1, 0, 0, 0, 1, 5]).unwrap();
        let err = load(tmp.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(&err, DataError::BadIdx { .. }), "{err}");
        // Corrupt gzip stream.
        fs::remove_file(&labels).unwrap();
        fs::write(
            tmp.path().join("t10k-labels-idx1-ubyte.gz"),
            b"\x1f\x8b\x08\0garbage",
        )
        .unwrap();
        assert!(load(tmp.path(), &LoadOptions::default()).is_err());
    }
}
