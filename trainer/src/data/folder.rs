//! Image-folder data sets: `DIR/train/CLASS/*` and `DIR/test/CLASS/*`, JPEG or PNG.
//!
//! Class names are the sorted names of the class folders, which must be the same in train
//! and test. Files ending `.jpg`, `.jpeg` or `.png` (any case) are images, found
//! recursively inside each class folder (directory symlinks are not followed); other files
//! and hidden entries (names starting with `.`) are ignored. All images must have the same
//! size. They are stored as RGB (3 channels) unless every image is greyscale, in which case
//! they are stored as 1 channel. Decoding runs in parallel on the rayon thread pool.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use md5::{Digest, Md5};
use rayon::prelude::*;

use super::{DataError, Dataset, Split};

/// Names of the split folders.
const SPLITS: [&str; 2] = ["train", "test"];

/// Whether `dir` has `train/` and `test/` folders.
pub(crate) fn looks_like_folder(dir: &Path) -> bool {
    SPLITS.iter().all(|s| dir.join(s).is_dir())
}

/// One image file found in the listing.
#[derive(Debug)]
struct ImageFile {
    /// Full path.
    path: PathBuf,
    /// Class index.
    label: u32,
    /// Size in bytes when listed.
    size: u64,
    /// Modification time in nanoseconds since the Unix epoch (0 where unknown).
    mtime_ns: i128,
}

/// Every image file of an image folder, with the class names.
#[derive(Debug)]
pub(crate) struct Listing {
    /// The data set's folder.
    root: PathBuf,
    /// Sorted class names.
    classes: Vec<String>,
    /// Train images, then test images, each in class then path order.
    splits: [Vec<ImageFile>; 2],
}

impl Listing {
    /// Lists the image folder at `root` (which must have `train/` and `test/`).
    pub(crate) fn scan(root: &Path) -> Result<Listing, DataError> {
        let train_dir = root.join(SPLITS[0]);
        let test_dir = root.join(SPLITS[1]);
        let train_classes = class_folders(&train_dir)?;
        let test_classes = class_folders(&test_dir)?;
        let train_names: BTreeSet<&String> = train_classes.iter().map(|(n, _)| n).collect();
        let test_names: BTreeSet<&String> = test_classes.iter().map(|(n, _)| n).collect();
        if train_names != test_names {
            let join = |a: &BTreeSet<&String>, b: &BTreeSet<&String>| {
                a.difference(b)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(DataError::ClassMismatch {
                only_train: join(&train_names, &test_names),
                only_test: join(&test_names, &train_names),
                train: train_dir,
                test: test_dir,
            });
        }
        let classes: Vec<String> = train_classes.iter().map(|(n, _)| n.clone()).collect();
        let mut splits: [Vec<ImageFile>; 2] = [Vec::new(), Vec::new()];
        for (files, (class_list, split_dir)) in splits
            .iter_mut()
            .zip([(&train_classes, &train_dir), (&test_classes, &test_dir)])
        {
            // (More than 2^32 class folders cannot exist in practice.)
            for (label, (_, dir)) in (0..=u32::MAX).zip(class_list.iter()) {
                collect_images(dir, label, files)?;
            }
            if files.is_empty() {
                return Err(DataError::Empty {
                    path: split_dir.clone(),
                });
            }
        }
        Ok(Listing {
            root: root.to_path_buf(),
            classes,
            splits,
        })
    }

    /// A hash of every image's path relative to the root, label, size and modification
    /// time: it changes whenever a file is added, removed, renamed or rewritten.
    pub(crate) fn fingerprint(&self) -> [u8; 16] {
        let mut h = Md5::new();
        h.update(b"evo-imagefolder-fingerprint-v1");
        h.update((self.classes.len() as u64).to_le_bytes());
        for c in &self.classes {
            h.update((c.len() as u64).to_le_bytes());
            h.update(c.as_bytes());
        }
        for files in &self.splits {
            h.update((files.len() as u64).to_le_bytes());
            for f in files {
                let rel = f.path.strip_prefix(&self.root).unwrap_or(&f.path);
                let rel = rel.as_os_str().as_encoded_bytes();
                h.update((rel.len() as u64).to_le_bytes());
                h.update(rel);
                h.update(f.label.to_le_bytes());
                h.update(f.size.to_le_bytes());
                h.update(f.mtime_ns.to_le_bytes());
            }
        }
        h.finalize().into()
    }

    /// Decodes every listed image (in parallel) into a data set called `name`.
    pub(crate) fn decode(&self, name: String) -> Result<Dataset, DataError> {
        let decoded: [Vec<Decoded>; 2] =
            [decode_all(&self.splits[0])?, decode_all(&self.splits[1])?];
        let first = decoded[0].first().ok_or_else(|| DataError::Empty {
            path: self.root.join(SPLITS[0]),
        })?;
        let (width, height) = (first.width, first.height);
        let grey = decoded.iter().flatten().all(|d| d.grey);
        let channels: u32 = if grey { 1 } else { 3 };
        for (files, images) in self.splits.iter().zip(&decoded) {
            for (file, d) in files.iter().zip(images) {
                if (d.width, d.height) != (width, height) {
                    return Err(DataError::ImageShape {
                        path: file.path.clone(),
                        width,
                        height,
                        channels,
                        found_width: d.width,
                        found_height: d.height,
                        found_channels: if d.grey { 1 } else { 3 },
                    });
                }
            }
        }
        let plane = width as usize * height as usize;
        let image_len = plane * channels as usize;
        let [train_dec, test_dec] = decoded;
        let train = self.assemble(&self.splits[0], train_dec, image_len)?;
        let test = self.assemble(&self.splits[1], test_dec, image_len)?;
        Ok(Dataset {
            name,
            classes: self.classes.clone(),
            height,
            width,
            channels,
            train,
            test,
        })
    }

    /// Concatenates decoded images (keeping the first `image_len` bytes of each planar RGB
    /// buffer: all of it, or the first plane for grey data) with their labels.
    fn assemble(
        &self,
        files: &[ImageFile],
        decoded: Vec<Decoded>,
        image_len: usize,
    ) -> Result<Split, DataError> {
        let total = decoded.len().saturating_mul(image_len);
        let mut images = Vec::new();
        images
            .try_reserve_exact(total)
            .map_err(|_| DataError::TooLarge {
                path: self.root.clone(),
                bytes: total as u128,
            })?;
        for d in decoded {
            images.extend_from_slice(&d.planar[..image_len]);
        }
        Ok(Split {
            images,
            labels: files.iter().map(|f| f.label).collect(),
        })
    }
}

/// The sorted, non-hidden sub-folders of a split folder, as (name, path).
fn class_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let mut classes = Vec::new();
    for entry in sorted_entries(dir)? {
        let is_dir = entry.kind.is_dir()
            || (entry.kind.is_symlink() && fs::metadata(&entry.path).is_ok_and(|m| m.is_dir()));
        if !is_dir {
            continue;
        }
        let name = entry.name.into_string().map_err(|_| DataError::BadName {
            path: entry.path.clone(),
        })?;
        classes.push((name, entry.path));
    }
    Ok(classes)
}

/// A directory entry.
struct Entry {
    /// File name.
    name: std::ffi::OsString,
    /// Full path.
    path: PathBuf,
    /// Type, not following symlinks.
    kind: fs::FileType,
}

/// The non-hidden entries of `dir`, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<Entry>, DataError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| DataError::io(&path, e))?;
        entries.push(Entry { name, path, kind });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Whether the file name has an image extension this loader reads.
fn is_image_name(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["jpg", "jpeg", "png"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// Appends the image files under `dir` (recursively, sorted, not following directory
/// symlinks) with label `label`.
fn collect_images(dir: &Path, label: u32, out: &mut Vec<ImageFile>) -> Result<(), DataError> {
    for entry in sorted_entries(dir)? {
        if entry.kind.is_dir() {
            collect_images(&entry.path, label, out)?;
            continue;
        }
        if !is_image_name(&entry.path) {
            continue;
        }
        // Follows a symlink to its file; one stat per image.
        let meta = fs::metadata(&entry.path).map_err(|e| DataError::io(&entry.path, e))?;
        if !meta.is_file() {
            continue;
        }
        let mtime_ns = meta
            .modified()
            .ok()
            .map(|t| match t.duration_since(UNIX_EPOCH) {
                Ok(d) => d.as_nanos() as i128,
                Err(e) => -(e.duration().as_nanos() as i128),
            })
            .unwrap_or(0);
        out.push(ImageFile {
            path: entry.path,
            label,
            size: meta.len(),
            mtime_ns,
        });
    }
    Ok(())
}

/// One decoded image, as planar RGB.
struct Decoded {
    /// Width in pixels.
    width: u32,
    /// Height in pixels.
    height: u32,
    /// Whether the source image had no colour.
    grey: bool,
    /// R plane, G plane, B plane (each row-major); for grey images all three are equal.
    planar: Vec<u8>,
}

/// Decodes the files in parallel, keeping their order.
fn decode_all(files: &[ImageFile]) -> Result<Vec<Decoded>, DataError> {
    files.par_iter().map(|f| decode_one(&f.path)).collect()
}

/// Decodes one JPEG or PNG file (format from its content) into planar RGB.
fn decode_one(path: &Path) -> Result<Decoded, DataError> {
    // Reading the bytes first and decoding from memory keeps the decoder's generic code in
    // the image crate (optimised even in debug builds); the image crate's default limits
    // bound what a header can make it allocate.
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let img = image::load_from_memory(&bytes).map_err(|source| DataError::Image {
        path: path.to_path_buf(),
        source,
    })?;
    let grey = !img.color().has_color();
    let rgb = img.into_rgb8();
    let (width, height) = rgb.dimensions();
    let plane = width as usize * height as usize;
    let mut planar = vec![0u8; 3 * plane];
    let raw = rgb.as_raw();
    // Plain indexing rather than iterator adaptors: this loop runs over every pixel of the
    // data set and iterators are slow in unoptimised builds.
    let mut i = 0;
    while i < plane {
        planar[i] = raw[3 * i];
        planar[plane + i] = raw[3 * i + 1];
        planar[2 * plane + i] = raw[3 * i + 2];
        i += 1;
    }
    Ok(Decoded {
        width,
        height,
        grey,
        planar,
    })
}
