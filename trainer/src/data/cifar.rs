//! Readers for the official binary releases of CIFAR-10 (`cifar-10-batches-bin/`) and
//! CIFAR-100 (`cifar-100-binary/`).
//!
//! A record is the label byte(s) followed by 3072 pixel bytes: 1024 red, 1024 green, 1024
//! blue, each plane row-major, which is already the channel-major layout of [`Split`].

use std::fs;
use std::path::Path;

use super::{DataError, Dataset, LabelMode, Split};

/// Folder name of the CIFAR-10 binary release.
pub(crate) const CIFAR10_FOLDER: &str = "cifar-10-batches-bin";
/// Folder name of the CIFAR-100 binary release.
pub(crate) const CIFAR100_FOLDER: &str = "cifar-100-binary";

/// CIFAR-10 training batch files.
pub(crate) const CIFAR10_TRAIN: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// CIFAR-10 test batch file.
pub(crate) const CIFAR10_TEST: &str = "test_batch.bin";
/// CIFAR-10 class names file.
pub(crate) const CIFAR10_META: &str = "batches.meta.txt";
/// CIFAR-100 training file.
pub(crate) const CIFAR100_TRAIN: &str = "train.bin";
/// CIFAR-100 test file.
pub(crate) const CIFAR100_TEST: &str = "test.bin";
/// CIFAR-100 fine class names file.
pub(crate) const CIFAR100_FINE_NAMES: &str = "fine_label_names.txt";
/// CIFAR-100 coarse class names file.
pub(crate) const CIFAR100_COARSE_NAMES: &str = "coarse_label_names.txt";

/// Side of a CIFAR image.
const SIDE: u32 = 32;
/// Pixel bytes of a CIFAR image.
const PIXELS: usize = 3 * 32 * 32;

/// The CIFAR-10 class names, used when `batches.meta.txt` is missing.
const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The label bytes at the start of a record and which one is the label wanted.
struct RecordLayout {
    /// Number of classes allowed for each label byte, in record order.
    label_limits: &'static [usize],
    /// Index of the label byte to keep.
    pick: usize,
}

impl RecordLayout {
    /// Length of one record in bytes.
    fn record_len(&self) -> usize {
        self.label_limits.len() + PIXELS
    }
}

/// Loads the CIFAR-10 binary release from its `cifar-10-batches-bin` folder.
pub(crate) fn load_cifar10(dir: &Path) -> Result<Dataset, DataError> {
    let layout = RecordLayout {
        label_limits: &[10],
        pick: 0,
    };
    let classes = match read_names(&dir.join(CIFAR10_META), 10)? {
        Some(names) => names,
        None => CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
    };
    let mut train = Split::default();
    for file in CIFAR10_TRAIN {
        read_records(&dir.join(file), &layout, &mut train)?;
    }
    let mut test = Split::default();
    read_records(&dir.join(CIFAR10_TEST), &layout, &mut test)?;
    Ok(cifar_dataset("cifar10", classes, train, test))
}

/// Loads the CIFAR-100 binary release from its `cifar-100-binary` folder, keeping the fine
/// (100 classes) or coarse (20 superclasses) labels.
///
/// Class names come from `fine_label_names.txt` / `coarse_label_names.txt`; when the file
/// is missing the names are the label numbers.
pub(crate) fn load_cifar100(dir: &Path, mode: LabelMode) -> Result<Dataset, DataError> {
    let (pick, names_file, count, name) = match mode {
        LabelMode::Coarse => (0, CIFAR100_COARSE_NAMES, 20, "cifar100-coarse"),
        LabelMode::Fine => (1, CIFAR100_FINE_NAMES, 100, "cifar100-fine"),
    };
    let layout = RecordLayout {
        label_limits: &[20, 100],
        pick,
    };
    let classes = match read_names(&dir.join(names_file), count)? {
        Some(names) => names,
        None => (0..count).map(|i| i.to_string()).collect(),
    };
    let mut train = Split::default();
    read_records(&dir.join(CIFAR100_TRAIN), &layout, &mut train)?;
    let mut test = Split::default();
    read_records(&dir.join(CIFAR100_TEST), &layout, &mut test)?;
    Ok(cifar_dataset(name, classes, train, test))
}

/// Assembles a 32x32 RGB data set.
fn cifar_dataset(name: &str, classes: Vec<String>, train: Split, test: Split) -> Dataset {
    Dataset {
        name: name.to_string(),
        classes,
        height: SIDE,
        width: SIDE,
        channels: 3,
        train,
        test,
    }
}

/// Reads a class-names file (one name per line, blank lines ignored).
///
/// Returns `None` when the file does not exist, and an error when it lists other than
/// `expected` names.
fn read_names(path: &Path, expected: usize) -> Result<Option<Vec<String>>, DataError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DataError::io(path, e)),
    };
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() != expected {
        return Err(DataError::BadClassNames {
            path: path.to_path_buf(),
            expected,
            found: names.len(),
        });
    }
    Ok(Some(names))
}

/// Appends the records of one binary file to `split`, checking its length and labels.
fn read_records(path: &Path, layout: &RecordLayout, split: &mut Split) -> Result<(), DataError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DataError::MissingFile {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(DataError::io(path, e)),
    };
    let record_len = layout.record_len();
    if bytes.is_empty() || bytes.len() % record_len != 0 {
        return Err(DataError::BadRecordLength {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            record_len,
        });
    }
    let n = bytes.len() / record_len;
    split.images.reserve(n * PIXELS);
    split.labels.reserve(n);
    let n_labels = layout.label_limits.len();
    for (index, record) in bytes.chunks_exact(record_len).enumerate() {
        for (&label, &classes) in record.iter().zip(layout.label_limits) {
            if usize::from(label) >= classes {
                return Err(DataError::BadLabel {
                    path: path.to_path_buf(),
                    index,
                    label: u32::from(label),
                    classes,
                });
            }
        }
        split.labels.push(u32::from(record[layout.pick]));
        split.images.extend_from_slice(&record[n_labels..]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cifar_pixel, write_cifar10, write_cifar100};
    use super::super::{load, DataError, LabelMode, LoadOptions};
    use std::fs;

    #[test]
    fn cifar10_loads_labels_names_and_pixels() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_cifar10(tmp.path(), 3);
        // The data set's own folder and its parent both load.
        for path in [dir.as_path(), tmp.path()] {
            let ds = load(path, &LoadOptions::default()).unwrap();
            assert_eq!(ds.name, "cifar10");
            assert_eq!((ds.channels, ds.height, ds.width), (3, 32, 32));
            assert_eq!(ds.classes[0], "airplane");
            assert_eq!(ds.classes[9], "truck");
            assert_eq!(ds.train.len(), 15);
            assert_eq!(ds.test.len(), 3);
            assert_eq!(ds.train.images.len(), 15 * 3072);
            // write_cifar10 labels record r of batch b as (b * 3 + r) % 10.
            let want: Vec<u32> = (0..15).map(|i| (i % 10) as u32).collect();
            assert_eq!(ds.train.labels, want);
            let img = ds.train.image(4, ds.image_len());
            for (j, &v) in img.iter().enumerate() {
                assert_eq!(v, cifar_pixel(1, 1, j), "pixel {j}");
            }
            let test_img = ds.test.image(2, ds.image_len());
            assert_eq!(test_img[1024], cifar_pixel(5, 2, 1024));
        }
    }

    #[test]
    fn cifar10_without_meta_uses_standard_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_cifar10(tmp.path(), 2);
        fs::remove_file(dir.join("batches.meta.txt")).unwrap();
        let ds = load(&dir, &LoadOptions::default()).unwrap();
        assert_eq!(ds.classes.len(), 10);
        assert_eq!(ds.classes[3], "cat");
    }

    #[test]
    fn cifar10_truncated_file_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_cifar10(tmp.path(), 3);
        let f = dir.join("data_batch_3.bin");
        let mut bytes = fs::read(&f).unwrap();
        bytes.truncate(bytes.len() - 100);
        fs::write(&f, bytes).unwrap();
        let err = load(&dir, &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(&err, DataError::BadRecordLength { path, .. } if path == &f),
            "{err}"
        );
        assert!(err.to_string().contains("data_batch_3.bin"));
    }

    #[test]
    fn cifar10_bad_label_and_missing_file_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_cifar10(tmp.path(), 3);
        let f = dir.join("test_batch.bin");
        let mut bytes = fs::read(&f).unwrap();
        bytes[3073] = 10;
        fs::write(&f, bytes).unwrap();
        let err = load(&dir, &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(
                &err,
                DataError::BadLabel {
                    index: 1,
                    label: 10,
                    ..
                }
            ),
            "{err}"
        );
        fs::remove_file(dir.join("data_batch_5.bin")).unwrap();
        let err = load(&dir, &LoadOptions::default()).unwrap_err();
        assert!(matches!(&err, DataError::MissingFile { .. }), "{err}");
    }

    #[test]
    fn cifar10_wrong_number_of_names_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_cifar10(tmp.path(), 1);
        fs::write(dir.join("batches.meta.txt"), "a\nb\n\n").unwrap();
        let err = load(&dir, &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(
                &err,
                DataError::BadClassNames {
                    expected: 10,
                    found: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn cifar100_fine_and_coarse() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_cifar100(tmp.path(), 4, 3);
        let fine = load(tmp.path(), &LoadOptions::default()).unwrap();
        assert_eq!(fine.name, "cifar100-fine");
        assert_eq!(fine.num_classes(), 100);
        assert_eq!(fine.classes[7], "fine7");
        // write_cifar100 gives record i coarse label i % 20 and fine label (i * 7) % 100.
        assert_eq!(fine.train.labels, vec![0, 7, 14, 21]);
        assert_eq!(fine.test.labels, vec![0, 7, 14]);
        assert_eq!(fine.train.image(2, 3072)[5], cifar_pixel(2, 0, 5));
        let opts = LoadOptions {
            label_mode: LabelMode::Coarse,
            ..LoadOptions::default()
        };
        let coarse = load(&dir, &opts).unwrap();
        assert_eq!(coarse.name, "cifar100-coarse");
        assert_eq!(coarse.num_classes(), 20);
        assert_eq!(coarse.classes[1], "coarse1");
        assert_eq!(coarse.train.labels, vec![0, 1, 2, 3]);
        assert_eq!(coarse.train.images, fine.train.images);
    }

    #[test]
    fn cifar100_corrupt_files_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_cifar100(tmp.path(), 2, 2);
        let f = dir.join("train.bin");
        let mut bytes = fs::read(&f).unwrap();
        bytes[3074] = 25; // coarse label of record 1: at most 19
        fs::write(&f, &bytes).unwrap();
        let err = load(&dir, &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(
                &err,
                DataError::BadLabel {
                    index: 1,
                    label: 25,
                    classes: 20,
                    ..
                }
            ),
            "{err}"
        );
        // A CIFAR-10-sized record length is not a CIFAR-100 one.
        fs::write(&f, &bytes[..3073]).unwrap();
        let err = load(&dir, &LoadOptions::default()).unwrap_err();
        assert!(
            matches!(
                &err,
                DataError::BadRecordLength {
                    record_len: 3074,
                    ..
                }
            ),
            "{err}"
        );
        fs::write(&f, b"").unwrap();
        assert!(load(&dir, &LoadOptions::default()).is_err());
    }
}
