//! Image data sets: loading them from their on-disk formats, and holding out validation
//! examples.
//!
//! [`load`] recognises, from the folder it is given (or the parent of a standard folder):
//! - the CIFAR-10 binary release, `cifar-10-batches-bin/`;
//! - the CIFAR-100 binary release, `cifar-100-binary/` (fine or coarse labels, see
//!   [`LabelMode`]);
//! - MNIST-family IDX files (`train-images-idx3-ubyte` ..., plain or `.gz`);
//! - image folders, `train/CLASS/*.{jpg,png}` and `test/CLASS/*.{jpg,png}`. Decoding these
//!   is slow, so the decoded data is cached on disk (see [`LoadOptions`] and
//!   [`load_with_report`]).

mod cache;
mod cifar;
mod dataset;
mod error;
mod folder;
mod idx;
mod split;
#[cfg(test)]
pub(crate) mod test_support;

use std::path::{Path, PathBuf};

pub use cache::default_cache_dir;
pub use dataset::{Dataset, Split};
pub use error::DataError;
pub use split::validation_split;

use cifar::{CIFAR100_FOLDER, CIFAR10_FOLDER};

/// Which CIFAR-100 labels to keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LabelMode {
    /// The 100 fine classes.
    #[default]
    Fine,
    /// The 20 coarse superclasses.
    Coarse,
}

/// Options of [`load`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Fine or coarse labels (CIFAR-100 only).
    pub label_mode: LabelMode,
    /// Where to cache decoded image folders; `None` uses `$EVO_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/evo`, else `$HOME/.cache/evo`.
    pub cache_dir: Option<PathBuf>,
    /// Whether to read and write the image-folder cache at all.
    pub use_cache: bool,
}

impl Default for LoadOptions {
    /// Fine labels, the default cache directory, cache on.
    fn default() -> Self {
        LoadOptions {
            label_mode: LabelMode::Fine,
            cache_dir: None,
            use_cache: true,
        }
    }
}

/// What happened with the decoded-data cache during a load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// No cache involved: the format is read directly (CIFAR, IDX) or the cache is off.
    NotUsed,
    /// The data came from a valid cache file.
    Hit,
    /// There was no cache file; the images were decoded and a cache file written.
    Created,
    /// The cache file was of a different source state (files added, removed or modified)
    /// or format version; the images were decoded and the file rewritten.
    RebuiltStale,
    /// The cache file was damaged (truncated, bad checksum, unreadable); the images were
    /// decoded and the file rewritten.
    RebuiltCorrupt,
    /// The images were decoded but no cache file could be written (the load still
    /// succeeded); the message says why.
    WriteFailed(String),
}

/// How a [`load_with_report`] call went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadReport {
    /// The folder the data set was read from (after auto-detection).
    pub source: PathBuf,
    /// What happened with the cache.
    pub cache: CacheStatus,
    /// The cache file consulted, if any.
    pub cache_file: Option<PathBuf>,
}

/// Loads the data set in `path`, auto-detecting its format (see the module docs).
///
/// # Errors
/// A [`DataError`] naming the file or folder at fault when the format is not recognised,
/// a file is missing, truncated or inconsistent, or an image cannot be decoded.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    load_with_report(path, opts).map(|(ds, _)| ds)
}

/// Like [`load`], and also says where the data came from and whether the cache was used.
///
/// # Errors
/// As [`load`]. Failing to write the cache is not an error (see
/// [`CacheStatus::WriteFailed`]).
pub fn load_with_report(
    path: &Path,
    opts: &LoadOptions,
) -> Result<(Dataset, LoadReport), DataError> {
    let format = detect(path)?;
    let report = |source: &Path| LoadReport {
        source: source.to_path_buf(),
        cache: CacheStatus::NotUsed,
        cache_file: None,
    };
    match format {
        Format::Cifar10(dir) => Ok((cifar::load_cifar10(&dir)?, report(&dir))),
        Format::Cifar100(dir) => Ok((cifar::load_cifar100(&dir, opts.label_mode)?, report(&dir))),
        Format::Idx(dir) => Ok((idx::load_idx(&dir)?, report(&dir))),
        Format::Folder(dir) => load_folder(&dir, opts),
    }
}

/// A recognised data-set format and the folder holding it.
enum Format {
    /// CIFAR-10 binary release.
    Cifar10(PathBuf),
    /// CIFAR-100 binary release.
    Cifar100(PathBuf),
    /// MNIST-style IDX files.
    Idx(PathBuf),
    /// Image folders.
    Folder(PathBuf),
}

impl Format {
    /// A short description, for error messages.
    fn describe(&self) -> String {
        match self {
            Format::Cifar10(p) => format!("CIFAR-10 at {}", p.display()),
            Format::Cifar100(p) => format!("CIFAR-100 at {}", p.display()),
            Format::Idx(p) => format!("IDX files at {}", p.display()),
            Format::Folder(p) => format!("image folders at {}", p.display()),
        }
    }
}

/// Whether `dir` holds CIFAR-10 binary files.
fn looks_like_cifar10(dir: &Path) -> bool {
    cifar::CIFAR10_TRAIN
        .iter()
        .chain([&cifar::CIFAR10_TEST, &cifar::CIFAR10_META])
        .any(|f| dir.join(f).is_file())
}

/// Whether `dir` holds CIFAR-100 binary files.
fn looks_like_cifar100(dir: &Path) -> bool {
    [
        cifar::CIFAR100_TRAIN,
        cifar::CIFAR100_TEST,
        cifar::CIFAR100_FINE_NAMES,
        cifar::CIFAR100_COARSE_NAMES,
    ]
    .iter()
    .any(|f| dir.join(f).is_file())
}

/// Recognises the format in `path`, or in a standard sub-folder of it.
fn detect(path: &Path) -> Result<Format, DataError> {
    if !path.exists() {
        return Err(DataError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let mut found = Vec::new();
    if looks_like_cifar10(path) {
        found.push(Format::Cifar10(path.to_path_buf()));
    }
    if looks_like_cifar100(path) {
        found.push(Format::Cifar100(path.to_path_buf()));
    }
    if idx::looks_like_idx(path) {
        found.push(Format::Idx(path.to_path_buf()));
    }
    if folder::looks_like_folder(path) {
        found.push(Format::Folder(path.to_path_buf()));
    }
    if found.is_empty() {
        let c10 = path.join(CIFAR10_FOLDER);
        if c10.is_dir() {
            found.push(Format::Cifar10(c10));
        }
        let c100 = path.join(CIFAR100_FOLDER);
        if c100.is_dir() {
            found.push(Format::Cifar100(c100));
        }
    }
    match found.len() {
        0 => Err(DataError::UnknownFormat {
            path: path.to_path_buf(),
        }),
        1 => Ok(found.remove(0)),
        _ => Err(DataError::Ambiguous {
            path: path.to_path_buf(),
            found: found
                .iter()
                .map(Format::describe)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Loads an image folder, through the cache when `opts.use_cache` is set.
fn load_folder(dir: &Path, opts: &LoadOptions) -> Result<(Dataset, LoadReport), DataError> {
    let root = dir.canonicalize().map_err(|e| DataError::io(dir, e))?;
    let name = format!("imagefolder:{}", root.display());
    let listing = folder::Listing::scan(&root)?;
    let mut report = LoadReport {
        source: root.clone(),
        cache: CacheStatus::NotUsed,
        cache_file: None,
    };
    if !opts.use_cache {
        return Ok((listing.decode(name)?, report));
    }
    let Some(cache_dir) = opts.cache_dir.clone().or_else(cache::default_cache_dir) else {
        let ds = listing.decode(name)?;
        report.cache = CacheStatus::WriteFailed(
            "no cache directory: set EVO_CACHE_DIR, XDG_CACHE_HOME or HOME".to_string(),
        );
        return Ok((ds, report));
    };
    let cache_path = cache::cache_file(&cache_dir, &root);
    report.cache_file = Some(cache_path.clone());
    let fingerprint = listing.fingerprint();
    let mut status = match cache::read(&cache_path, &fingerprint, &name) {
        cache::Lookup::Hit(ds) => {
            report.cache = CacheStatus::Hit;
            return Ok((ds, report));
        }
        cache::Lookup::Missing => CacheStatus::Created,
        cache::Lookup::Stale => CacheStatus::RebuiltStale,
        cache::Lookup::Corrupt => CacheStatus::RebuiltCorrupt,
    };
    let ds = listing.decode(name)?;
    if let Err(e) = cache::write(&cache_path, &fingerprint, &ds) {
        status = CacheStatus::WriteFailed(format!("{}: {e}", cache_path.display()));
    }
    report.cache = status;
    Ok((ds, report))
}

#[cfg(test)]
mod tests {
    use super::test_support::{folder_pixel, write_image_folder, write_png};
    use super::*;
    use std::fs;
    use std::time::{Duration, SystemTime};

    fn opts(cache: &Path) -> LoadOptions {
        LoadOptions {
            cache_dir: Some(cache.to_path_buf()),
            ..LoadOptions::default()
        }
    }

    #[test]
    fn unknown_and_missing_paths_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let err = load(tmp.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, DataError::UnknownFormat { .. }), "{err}");
        let err = load(&tmp.path().join("nope"), &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, DataError::NotFound { .. }), "{err}");
    }

    #[test]
    fn two_standard_folders_are_ambiguous() {
        let tmp = tempfile::tempdir().unwrap();
        super::test_support::write_cifar10(tmp.path(), 1);
        super::test_support::write_cifar100(tmp.path(), 1, 1);
        let err = load(tmp.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, DataError::Ambiguous { .. }), "{err}");
        assert!(load(
            &tmp.path().join("cifar-100-binary"),
            &LoadOptions::default()
        )
        .is_ok());
    }

    #[test]
    fn png_folder_loads_exact_pixels_in_sorted_class_order() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write_image_folder(&src, &["zebra", "ant"], 2, 1, 4, 3, "png");
        // A stray non-image file and a hidden file are ignored.
        fs::write(src.join("train/ant/notes.txt"), "x").unwrap();
        fs::write(src.join("train/ant/.hidden.png"), "x").unwrap();
        let (ds, report) = load_with_report(&src, &opts(cache.path())).unwrap();
        assert_eq!(report.cache, CacheStatus::Created);
        assert!(ds.name.starts_with("imagefolder:"));
        assert_eq!(ds.classes, vec!["ant", "zebra"]);
        assert_eq!((ds.channels, ds.height, ds.width), (3, 3, 4));
        assert_eq!(ds.train.labels, vec![0, 0, 1, 1]);
        assert_eq!(ds.test.labels, vec![0, 1]);
        // train/zebra/1.png is train example 3; check every value, channel-major.
        let img = ds.train.image(3, ds.image_len());
        for c in 0..3 {
            for y in 0..3 {
                for x in 0..4 {
                    let v = img[c * 12 + y * 4 + x];
                    assert_eq!(v, folder_pixel("train", "zebra", 1, x, y)[c]);
                }
            }
        }
    }

    #[test]
    fn grey_folder_gives_one_channel_and_jpeg_decodes() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("grey");
        for split in ["train", "test"] {
            for class in ["a", "b"] {
                let dir = src.join(split).join(class);
                fs::create_dir_all(&dir).unwrap();
                let img = image::GrayImage::from_fn(5, 2, |x, y| image::Luma([(x * 40 + y) as u8]));
                img.save(dir.join("0.png")).unwrap();
            }
        }
        let no_cache = LoadOptions {
            use_cache: false,
            ..LoadOptions::default()
        };
        let (ds, report) = load_with_report(&src, &no_cache).unwrap();
        assert_eq!(report.cache, CacheStatus::NotUsed);
        assert_eq!((ds.channels, ds.height, ds.width), (1, 2, 5));
        assert_eq!(
            ds.train.image(1, 10),
            &[0, 40, 80, 120, 160, 1, 41, 81, 121, 161]
        );

        let jpg = tmp.path().join("jpg");
        write_image_folder(&jpg, &["a", "b"], 2, 2, 8, 8, "jpg");
        let ds = load(&jpg, &no_cache).unwrap();
        assert_eq!((ds.channels, ds.height, ds.width), (3, 8, 8));
        assert_eq!(ds.train.len(), 4);
        // JPEG is lossy: values are only close to the source.
        let want = folder_pixel("train", "b", 0, 3, 2);
        let img = ds.train.image(2, ds.image_len());
        for c in 0..3 {
            let got = img[c * 64 + 2 * 8 + 3];
            assert!(
                got.abs_diff(want[c]) < 40,
                "channel {c}: {got} vs {}",
                want[c]
            );
        }
    }

    #[test]
    fn folder_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write_image_folder(&src, &["a", "b"], 2, 1, 4, 3, "png");
        let no_cache = LoadOptions {
            use_cache: false,
            ..LoadOptions::default()
        };
        // Corrupt image.
        let bad = src.join("train/b/1.png");
        let good = fs::read(&bad).unwrap();
        fs::write(&bad, &good[..good.len() / 2]).unwrap();
        let err = load(&src, &no_cache).unwrap_err();
        assert!(
            matches!(&err, DataError::Image { path, .. } if path.ends_with("train/b/1.png")),
            "{err}"
        );
        assert!(err.to_string().contains("1.png"));
        fs::write(&bad, &good).unwrap();
        // Different size.
        write_png(&src.join("test/a/0.png"), 5, 3, |_, _| [1, 2, 3]);
        let err = load(&src, &no_cache).unwrap_err();
        assert!(
            matches!(&err, DataError::ImageShape { found_width: 5, width: 4, path, .. } if path.ends_with("test/a/0.png")),
            "{err}"
        );
        write_png(&src.join("test/a/0.png"), 4, 3, |_, _| [1, 2, 3]);
        assert!(load(&src, &no_cache).is_ok());
        // Different classes.
        fs::create_dir_all(src.join("test/c")).unwrap();
        let err = load(&src, &no_cache).unwrap_err();
        assert!(
            matches!(&err, DataError::ClassMismatch { only_test, .. } if only_test == "c"),
            "{err}"
        );
    }

    #[test]
    fn folder_cache_hits_invalidates_and_recovers() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write_image_folder(&src, &["a", "b"], 2, 1, 4, 3, "png");
        let o = opts(cache.path());
        let (first, r1) = load_with_report(&src, &o).unwrap();
        assert_eq!(r1.cache, CacheStatus::Created);
        let cache_file = r1.cache_file.clone().unwrap();
        assert!(cache_file.starts_with(cache.path()));
        assert!(cache_file.is_file());

        let (second, r2) = load_with_report(&src, &o).unwrap();
        assert_eq!(r2.cache, CacheStatus::Hit);
        assert_eq!(second, first);

        // Rewrite one source file: the cache is stale and the new pixels are loaded.
        let changed = src.join("train/a/0.png");
        write_png(&changed, 4, 3, |_, _| [9, 8, 7]);
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&changed)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let (third, r3) = load_with_report(&src, &o).unwrap();
        assert_eq!(r3.cache, CacheStatus::RebuiltStale);
        assert_eq!(&third.train.image(0, 36)[..2], &[9, 9]);
        assert_eq!(third.train.image(0, 36)[12], 8);
        assert_eq!(
            load_with_report(&src, &o).unwrap().1.cache,
            CacheStatus::Hit
        );

        // Adding a file also invalidates.
        write_png(&src.join("test/b/extra.png"), 4, 3, |_, _| [0, 0, 0]);
        let (fourth, r4) = load_with_report(&src, &o).unwrap();
        assert_eq!(r4.cache, CacheStatus::RebuiltStale);
        assert_eq!(fourth.test.len(), 3);

        // A damaged cache file is rebuilt, never trusted.
        let mut bytes = fs::read(&cache_file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&cache_file, &bytes).unwrap();
        let (fifth, r5) = load_with_report(&src, &o).unwrap();
        assert_eq!(r5.cache, CacheStatus::RebuiltCorrupt);
        assert_eq!(fifth, fourth);
        fs::write(&cache_file, &bytes[..10]).unwrap();
        assert_eq!(
            load_with_report(&src, &o).unwrap().1.cache,
            CacheStatus::RebuiltCorrupt
        );
        assert_eq!(
            load_with_report(&src, &o).unwrap().1.cache,
            CacheStatus::Hit
        );
        // Only the cache file is in the cache directory (no temporary files left).
        assert_eq!(fs::read_dir(cache.path()).unwrap().count(), 1);
    }

    #[test]
    fn source_untouched_and_unwritable_cache_is_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write_image_folder(&src, &["a", "b"], 1, 1, 2, 2, "png");
        // The source is never written to (it may be read-only).
        let before: Vec<_> = walk(&src);
        let cache = tempfile::tempdir().unwrap();
        load(&src, &opts(cache.path())).unwrap();
        assert_eq!(walk(&src), before);
        // A cache location that cannot be created: the load still succeeds.
        let blocker = tmp.path().join("file");
        fs::write(&blocker, "").unwrap();
        let (ds, report) = load_with_report(&src, &opts(&blocker.join("sub"))).unwrap();
        assert_eq!(ds.train.len(), 2);
        assert!(
            matches!(report.cache, CacheStatus::WriteFailed(_)),
            "{report:?}"
        );
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
        out.sort();
        out
    }

    /// One-off timing on the real CIFAR-10 JPEG copy (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn real_cifar10_jpeg_timing() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/cifar10-jpeg");
        let src = if src.is_dir() {
            src
        } else {
            PathBuf::from("/work/shared/data/cifar10-jpeg")
        };
        let cache = tempfile::tempdir().unwrap();
        let o = opts(cache.path());
        let t = std::time::Instant::now();
        let (ds, r) = load_with_report(&src, &o).unwrap();
        let first = t.elapsed();
        let t = std::time::Instant::now();
        let (ds2, r2) = load_with_report(&src, &o).unwrap();
        let second = t.elapsed();
        println!(
            "first load {first:?} ({:?}), cached load {second:?} ({:?}); train {} test {} {}x{}x{} classes {:?}",
            r.cache, r2.cache, ds.train.len(), ds.test.len(), ds.channels, ds.height, ds.width, ds.classes
        );
        assert_eq!(r2.cache, CacheStatus::Hit);
        assert_eq!(ds, ds2);
        assert_eq!((ds.train.len(), ds.test.len()), (50_000, 10_000));
    }
}
