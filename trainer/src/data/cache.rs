//! The on-disk cache of decoded image-folder data sets.
//!
//! One file per source folder, named by a hash of the folder's canonical path, in the cache
//! directory (`$EVO_CACHE_DIR`, else `$XDG_CACHE_HOME/evo`, else `$HOME/.cache/evo`).
//! Layout, integers little-endian:
//!
//! ```text
//! magic "EVOIMGC\0" | version u32 | source fingerprint [16] | payload length u64
//! payload: height u32, width u32, channels u32, class count u32, per class (len u32, UTF-8),
//!          per split (train, test): count u64, count x label u32, count x image bytes
//! CRC-32 of everything above, u32
//! ```
//!
//! A file is used only when the magic, version and fingerprint match, its length is the
//! one the header states, the checksum is right and the payload parses; otherwise it is
//! rebuilt. Files are written to a temporary name, synced, then renamed into place.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use super::{Dataset, Split};

/// Magic bytes at the start of a cache file.
const MAGIC: &[u8; 8] = b"EVOIMGC\0";
/// Cache format version; bump when the layout or the decoding rules change.
const VERSION: u32 = 1;
/// Length of the fixed header.
const HEADER_LEN: usize = 8 + 4 + 16 + 8;
/// Length of the trailing checksum.
const TRAILER_LEN: usize = 4;

/// A source fingerprint (see `Listing::fingerprint`).
pub(crate) type Fingerprint = [u8; 16];

/// What looking up a cache file found.
pub(crate) enum Lookup {
    /// A valid cache of the current source.
    Hit(Dataset),
    /// No cache file.
    Missing,
    /// A well-formed cache file of an older source or format.
    Stale,
    /// A damaged or unreadable cache file.
    Corrupt,
}

/// The default cache directory: `$EVO_CACHE_DIR`, else `$XDG_CACHE_HOME/evo`, else
/// `$HOME/.cache/evo`; `None` when none of them is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    cache_dir_from(
        std::env::var_os("EVO_CACHE_DIR"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// [`default_cache_dir`] from given variable values (empty or relative XDG values are
/// ignored, as the XDG specification asks).
fn cache_dir_from(
    evo: Option<OsString>,
    xdg: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(evo) {
        return Some(dir);
    }
    if let Some(dir) = set(xdg).filter(|d| d.is_absolute()) {
        return Some(dir.join("evo"));
    }
    set(home).map(|h| h.join(".cache").join("evo"))
}

/// The cache file for the source folder `source` (a canonical path) in `dir`.
pub(crate) fn cache_file(dir: &Path, source: &Path) -> PathBuf {
    let digest = Md5::digest(source.as_os_str().as_encoded_bytes());
    dir.join(format!("imagefolder-{}.bin", hex::encode(digest)))
}

/// Reads the cache file at `path` if it is a valid cache of a source with `fingerprint`;
/// the returned data set is called `name`.
pub(crate) fn read(path: &Path, fingerprint: &Fingerprint, name: &str) -> Lookup {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::Missing,
        Err(_) => return Lookup::Corrupt,
    };
    let Ok(meta) = file.metadata() else {
        return Lookup::Corrupt;
    };
    let file_len = meta.len();
    let mut header = [0u8; HEADER_LEN];
    if file.read_exact(&mut header).is_err() || &header[..8] != MAGIC {
        return Lookup::Corrupt;
    }
    let mut c = Cursor::new(&header[8..]);
    let (Some(version), Some(stored_fp), Some(payload_len)) = (c.u32(), c.take(16), c.u64()) else {
        return Lookup::Corrupt;
    };
    if version != VERSION || stored_fp != fingerprint {
        return Lookup::Stale;
    }
    let expected_len = payload_len.checked_add((HEADER_LEN + TRAILER_LEN) as u64);
    if expected_len != Some(file_len) {
        return Lookup::Corrupt;
    }
    // The file length is real, so this allocation is bounded by what is on disk.
    let rest_len = file_len - HEADER_LEN as u64;
    let mut rest = Vec::new();
    let Ok(rest_cap) = usize::try_from(rest_len) else {
        return Lookup::Corrupt;
    };
    if rest.try_reserve_exact(rest_cap).is_err()
        || file.take(rest_len).read_to_end(&mut rest).is_err()
        || rest.len() != rest_cap
    {
        return Lookup::Corrupt;
    }
    let (payload, trailer) = rest.split_at(rest_cap - TRAILER_LEN);
    let mut crc = flate2::Crc::new();
    crc.update(&header);
    crc.update(payload);
    if crc.sum().to_le_bytes() != trailer {
        return Lookup::Corrupt;
    }
    match parse_payload(payload, name) {
        Some(ds) => Lookup::Hit(ds),
        None => Lookup::Corrupt,
    }
}

/// Parses a checksummed payload; `None` if it is inconsistent.
fn parse_payload(payload: &[u8], name: &str) -> Option<Dataset> {
    let mut c = Cursor::new(payload);
    let height = c.u32()?;
    let width = c.u32()?;
    let channels = c.u32()?;
    if !(channels == 1 || channels == 3) || height == 0 || width == 0 {
        return None;
    }
    let image_len = (channels as usize)
        .checked_mul(height as usize)?
        .checked_mul(width as usize)?;
    let n_classes = c.u32()? as usize;
    if n_classes > c.remaining() / 4 {
        return None;
    }
    let mut classes = Vec::with_capacity(n_classes);
    for _ in 0..n_classes {
        let len = c.u32()? as usize;
        classes.push(String::from_utf8(c.take(len)?.to_vec()).ok()?);
    }
    let mut splits = [Split::default(), Split::default()];
    for split in &mut splits {
        let n = usize::try_from(c.u64()?).ok()?;
        let label_bytes = c.take(n.checked_mul(4)?)?;
        let labels: Vec<u32> = label_bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if labels.iter().any(|&l| l as usize >= n_classes) {
            return None;
        }
        let images = c.take(n.checked_mul(image_len)?)?.to_vec();
        *split = Split { images, labels };
    }
    if c.remaining() != 0 {
        return None;
    }
    let [train, test] = splits;
    Some(Dataset {
        name: name.to_string(),
        classes,
        height,
        width,
        channels,
        train,
        test,
    })
}

/// Writes `ds` as the cache of a source with `fingerprint` at `path`, atomically: a
/// temporary file in the same directory is written, synced and renamed over `path`.
pub(crate) fn write(path: &Path, fingerprint: &Fingerprint, ds: &Dataset) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "cache path has no parent"))?;
    fs::create_dir_all(dir)?;
    let tmp = tempfile::Builder::new()
        .prefix(".imagefolder-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let mut out = HashingWriter {
        inner: BufWriter::new(tmp),
        crc: flate2::Crc::new(),
    };
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    out.write_all(fingerprint)?;
    out.write_all(&payload_len(ds).to_le_bytes())?;
    for v in [ds.height, ds.width, ds.channels] {
        out.write_all(&v.to_le_bytes())?;
    }
    out.write_all(&u32_len(ds.classes.len())?.to_le_bytes())?;
    for c in &ds.classes {
        out.write_all(&u32_len(c.len())?.to_le_bytes())?;
        out.write_all(c.as_bytes())?;
    }
    for split in [&ds.train, &ds.test] {
        out.write_all(&(split.labels.len() as u64).to_le_bytes())?;
        for l in &split.labels {
            out.write_all(&l.to_le_bytes())?;
        }
        out.write_all(&split.images)?;
    }
    let HashingWriter { mut inner, crc } = out;
    inner.write_all(&crc.sum().to_le_bytes())?;
    let tmp = inner.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable where directories can be synced.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A length as `u32`, or an error if it does not fit.
fn u32_len(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too long"))
}

/// Length of the payload `write` produces for `ds`.
fn payload_len(ds: &Dataset) -> u64 {
    let classes: u64 = ds.classes.iter().map(|c| 4 + c.len() as u64).sum();
    let splits: u64 = [&ds.train, &ds.test]
        .iter()
        .map(|s| 8 + 4 * s.labels.len() as u64 + s.images.len() as u64)
        .sum();
    16 + classes + splits
}

/// A writer that checksums everything written through it.
struct HashingWriter<W: Write> {
    /// Where the bytes go.
    inner: W,
    /// CRC-32 of the bytes so far (flate2's, which is optimised even in debug builds).
    crc: flate2::Crc,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A bounds-checked reader over a byte slice.
struct Cursor<'a> {
    /// The bytes not yet read.
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`.
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { rest: bytes }
    }

    /// Bytes left.
    fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The next `n` bytes, or `None` if fewer are left.
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    /// The next little-endian `u32`.
    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The next little-endian `u64`.
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Dataset {
        Dataset {
            name: "x".into(),
            classes: vec!["a".into(), "bé".into()],
            height: 2,
            width: 1,
            channels: 3,
            train: Split {
                images: (0..12).collect(),
                labels: vec![1, 0],
            },
            test: Split {
                images: (100..106).collect(),
                labels: vec![1],
            },
        }
    }

    #[test]
    fn cache_dir_precedence() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(
            cache_dir_from(s("/e"), s("/x"), s("/h")),
            Some(PathBuf::from("/e"))
        );
        assert_eq!(
            cache_dir_from(s(""), s("/x"), s("/h")),
            Some(PathBuf::from("/x/evo"))
        );
        assert_eq!(
            cache_dir_from(None, s("rel"), s("/h")),
            Some(PathBuf::from("/h/.cache/evo"))
        );
        assert_eq!(cache_dir_from(None, None, None), None);
    }

    #[test]
    fn round_trip_and_every_corruption_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let path = cache_file(tmp.path(), Path::new("/some/source"));
        assert!(matches!(read(&path, &[1; 16], "x"), Lookup::Missing));
        let ds = sample();
        write(&path, &[1; 16], &ds).unwrap();
        match read(&path, &[1; 16], "x") {
            Lookup::Hit(back) => assert_eq!(back, ds),
            _ => panic!("expected a hit"),
        }
        assert!(matches!(read(&path, &[2; 16], "x"), Lookup::Stale));
        let good = fs::read(&path).unwrap();
        // Flipping any single byte, or truncating anywhere, must never give a hit.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            let hit = matches!(read(&path, &[1; 16], "x"), Lookup::Hit(_));
            assert!(!hit, "flipped byte {i} went unnoticed");
        }
        for len in 0..good.len() {
            fs::write(&path, &good[..len]).unwrap();
            assert!(
                matches!(read(&path, &[1; 16], "x"), Lookup::Corrupt),
                "len {len}"
            );
        }
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
