//! The error type of data-set loading: every variant names the file or folder at fault and
//! says what is wrong with it.

use std::io;
use std::path::PathBuf;

/// Why a data set could not be loaded (or a validation split could not be made).
#[derive(thiserror::Error, Debug)]
pub enum DataError {
    /// The path given to [`load`](super::load) does not exist.
    #[error("data set path {path} does not exist")]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// No known format was recognised in the folder.
    #[error(
        "no data set recognised in {path}: expected a cifar-10-batches-bin/ or \
         cifar-100-binary/ folder (or its contents), MNIST-style IDX files \
         (train-images-idx3-ubyte[.gz] ...), or train/ and test/ folders of class folders"
    )]
    UnknownFormat {
        /// The folder that was inspected.
        path: PathBuf,
    },
    /// The folder holds more than one data set, so which one to load is unclear.
    #[error("{path} holds more than one data set ({found}): pass the data set's own folder")]
    Ambiguous {
        /// The folder that was inspected.
        path: PathBuf,
        /// The data sets found there.
        found: String,
    },
    /// A file the format needs is missing.
    #[error("{path} is missing: the data set is incomplete")]
    MissingFile {
        /// The missing file.
        path: PathBuf,
    },
    /// Reading a file or folder failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A CIFAR binary file's length is not a positive whole number of records.
    #[error(
        "{path} is {len} bytes, not a positive whole number of {record_len}-byte records \
         (truncated, or not a CIFAR binary file)"
    )]
    BadRecordLength {
        /// The file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
        /// The record length of the format.
        record_len: usize,
    },
    /// A label is outside the range the format allows.
    #[error("{path}: example {index} has label {label}, but there are only {classes} classes")]
    BadLabel {
        /// The file holding the label.
        path: PathBuf,
        /// Index of the example within that file.
        index: usize,
        /// The label found.
        label: u32,
        /// The number of classes.
        classes: usize,
    },
    /// A class-names file lists the wrong number of names.
    #[error("{path} lists {found} class names, expected {expected}")]
    BadClassNames {
        /// The class-names file.
        path: PathBuf,
        /// The number of names the format needs.
        expected: usize,
        /// The number of names in the file.
        found: usize,
    },
    /// An IDX file's header or length is inconsistent.
    #[error("{path} is not a valid IDX file: {reason}")]
    BadIdx {
        /// The IDX file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An images file and its labels file disagree on the number of examples.
    #[error("{images} holds {n_images} images but {labels} holds {n_labels} labels")]
    CountMismatch {
        /// The images file.
        images: PathBuf,
        /// Number of images.
        n_images: usize,
        /// The labels file.
        labels: PathBuf,
        /// Number of labels.
        n_labels: usize,
    },
    /// An image (or a split) has a different size or channel count from the rest.
    #[error(
        "{path} is {found_width}x{found_height} with {found_channels} channel(s), but the \
         data set's images are {width}x{height} with {channels} channel(s)"
    )]
    ImageShape {
        /// The image (or images file) that differs.
        path: PathBuf,
        /// Expected width.
        width: u32,
        /// Expected height.
        height: u32,
        /// Expected channels.
        channels: u32,
        /// Width found.
        found_width: u32,
        /// Height found.
        found_height: u32,
        /// Channels found.
        found_channels: u32,
    },
    /// An image file could not be decoded.
    #[error("cannot decode image {path}: {source}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// The train and test folders of an image folder hold different classes.
    #[error(
        "{train} and {test} hold different class folders (only in train: [{only_train}]; \
         only in test: [{only_test}])"
    )]
    ClassMismatch {
        /// The train folder.
        train: PathBuf,
        /// The test folder.
        test: PathBuf,
        /// Classes only in train, comma separated.
        only_train: String,
        /// Classes only in test, comma separated.
        only_test: String,
    },
    /// A split holds no examples at all.
    #[error("{path} holds no examples")]
    Empty {
        /// The folder or file that should hold the split.
        path: PathBuf,
    },
    /// A file or folder name is not valid UTF-8 (class names must be).
    #[error("the name of {path} is not valid UTF-8")]
    BadName {
        /// The file or folder.
        path: PathBuf,
    },
    /// The data set would not fit in memory.
    #[error("{path}: the data set needs {bytes} bytes, which cannot be allocated")]
    TooLarge {
        /// The data set's folder.
        path: PathBuf,
        /// The bytes needed.
        bytes: u128,
    },
    /// A validation hold-out at least as large as the data set was asked for.
    #[error("cannot hold out {validation} of {len} examples for validation: it must be fewer")]
    BadValidationSize {
        /// Number of examples.
        len: usize,
        /// Requested validation size.
        validation: usize,
    },
}

impl DataError {
    /// Wraps an I/O error with the path being read.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
