//! Downloading the official CIFAR-10 and CIFAR-100 binary releases: a streamed download
//! (with an optional progress bar) to a temporary file, an MD5 check, then a safe unpack
//! of the `.tar.gz` into the target directory.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use flate2::read::GzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};

use crate::data::{self, DataError, LoadOptions};

/// Largest download accepted (the official archives are about 170 MB).
const MAX_DOWNLOAD: u64 = 1 << 30;

/// A downloadable data-set archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Archive {
    /// The CIFAR-10 binary release.
    Cifar10,
    /// The CIFAR-100 binary release.
    Cifar100,
}

impl Archive {
    /// The official download address.
    pub fn url(&self) -> &'static str {
        match self {
            Archive::Cifar10 => "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            Archive::Cifar100 => "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        }
    }

    /// The MD5 of the official archive, lower-case hex.
    pub fn md5(&self) -> &'static str {
        match self {
            Archive::Cifar10 => "c32a1d4ab5d03f1284b67883e8d87530",
            Archive::Cifar100 => "03b5dce01913d631647c71ecec9e9cb8",
        }
    }

    /// The archive's file name.
    pub fn file_name(&self) -> &'static str {
        match self {
            Archive::Cifar10 => "cifar-10-binary.tar.gz",
            Archive::Cifar100 => "cifar-100-binary.tar.gz",
        }
    }

    /// The data folder the archive unpacks to.
    pub fn folder(&self) -> &'static str {
        match self {
            Archive::Cifar10 => "cifar-10-batches-bin",
            Archive::Cifar100 => "cifar-100-binary",
        }
    }
}

impl FromStr for Archive {
    type Err = FetchError;

    /// Parses `cifar10` or `cifar100` (case-insensitive; `cifar-10`, `cifar-100` too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cifar10" | "cifar-10" => Ok(Archive::Cifar10),
            "cifar100" | "cifar-100" => Ok(Archive::Cifar100),
            _ => Err(FetchError::UnknownArchive {
                name: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for Archive {
    /// `cifar10` or `cifar100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Archive::Cifar10 => "cifar10",
            Archive::Cifar100 => "cifar100",
        })
    }
}

/// Options of [`fetch`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// Download from this directory URL instead (the archive's file name is appended).
    pub base_url: Option<String>,
    /// Show a progress bar on standard error.
    pub progress: bool,
    /// Expect this MD5 (hex) instead of the official one.
    pub expected_md5: Option<String>,
}

/// Why a download failed.
#[derive(thiserror::Error, Debug)]
pub enum FetchError {
    /// An archive name that is not `cifar10` or `cifar100`.
    #[error("unknown archive {name:?}: expected cifar10 or cifar100")]
    UnknownArchive {
        /// The name given.
        name: String,
    },
    /// The HTTP request failed (connection, TLS, or an error status).
    #[error("downloading {url} failed: {source}")]
    Http {
        /// The address.
        url: String,
        /// The client's error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// Reading the response body failed part-way.
    #[error("downloading {url} failed part-way: {source}")]
    Download {
        /// The address.
        url: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The server sent more than the largest plausible archive.
    #[error("{url} is larger than {limit} bytes: refusing it")]
    TooLarge {
        /// The address.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The downloaded file's checksum is wrong (it was deleted).
    #[error("{url}: MD5 is {actual}, expected {expected}; the download was discarded")]
    Checksum {
        /// The address.
        url: String,
        /// The expected MD5.
        expected: String,
        /// The MD5 of what arrived.
        actual: String,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading or unpacking the archive failed.
    #[error("cannot unpack {archive}: {source}")]
    Unpack {
        /// The archive.
        archive: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An archive entry would land outside the target folder (absolute or `..` path).
    #[error("{archive}: entry {entry:?} has an unsafe path (absolute or with `..`)")]
    UnsafeEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's path.
        entry: String,
    },
    /// An archive entry is neither a file nor a directory (a link or device).
    #[error("{archive}: entry {entry:?} is not a regular file or directory")]
    UnsupportedEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's path.
        entry: String,
    },
    /// The archive did not contain the expected data folder.
    #[error("{archive} does not contain the folder {folder}")]
    MissingFolder {
        /// The archive.
        archive: PathBuf,
        /// The folder expected.
        folder: String,
    },
    /// The data folder already exists but does not load; it is left alone.
    #[error("{path} already exists but does not load ({source}); remove it to download again")]
    Existing {
        /// The existing folder.
        path: PathBuf,
        /// Why it does not load.
        #[source]
        source: DataError,
    },
    /// The unpacked data does not load.
    #[error("the unpacked data in {path} does not load: {source}")]
    Data {
        /// The unpacked folder.
        path: PathBuf,
        /// Why it does not load.
        #[source]
        source: DataError,
    },
}

/// Wraps an I/O error with its path.
fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Downloads `archive` into `dir`, checks its MD5, unpacks it there and returns the data
/// folder (`dir/cifar-10-batches-bin` or `dir/cifar-100-binary`).
///
/// Idempotent: when the data folder already exists and loads, nothing is done. The
/// archive is streamed to a temporary file in `dir` and renamed to its own name only once
/// its checksum is right (a correct archive already in `dir` is reused, not downloaded
/// again); it is kept after unpacking. Unpacking goes through a temporary folder that is
/// renamed into place, so the data folder appears only when complete. Archive entries
/// with absolute or `..` paths, and links, are refused.
///
/// # Errors
/// A [`FetchError`] for network failures, a wrong checksum (the download is deleted),
/// unsafe archives, local I/O failures, or data that does not load.
pub fn fetch(archive: Archive, dir: &Path, opts: &FetchOptions) -> Result<PathBuf, FetchError> {
    let target = dir.join(archive.folder());
    let check = LoadOptions {
        use_cache: false,
        ..LoadOptions::default()
    };
    if target.exists() {
        return match data::load(&target, &check) {
            Ok(_) => Ok(target),
            Err(source) => Err(FetchError::Existing {
                path: target,
                source,
            }),
        };
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let expected = opts
        .expected_md5
        .as_deref()
        .unwrap_or(archive.md5())
        .to_ascii_lowercase();
    let url = match &opts.base_url {
        Some(base) => format!("{}/{}", base.trim_end_matches('/'), archive.file_name()),
        None => archive.url().to_string(),
    };
    let archive_path = dir.join(archive.file_name());
    let have_archive = archive_path.is_file() && file_md5(&archive_path)? == expected;
    if !have_archive {
        download(&url, &archive_path, &expected, opts.progress)?;
    }
    unpack(&archive_path, dir, archive.folder())?;
    data::load(&target, &check).map_err(|source| FetchError::Data {
        path: target.clone(),
        source,
    })?;
    Ok(target)
}

/// MD5 of a file, lower-case hex.
fn file_md5(path: &Path) -> Result<String, FetchError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Md5::new();
    io::copy(&mut file, &mut hasher).map_err(io_err(path))?;
    Ok(hex::encode(hasher.finalize()))
}

/// A progress bar for a download of `len` bytes (if known), or a hidden one.
fn progress_bar(show: bool, len: Option<u64>, name: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(len) => (
            ProgressBar::new(len),
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{msg} {spinner} {bytes} ({bytes_per_sec})",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}

/// Streams `url` into a temporary file next to `dest`, checks its MD5 against `expected`
/// and renames it to `dest`; on any failure the temporary file is deleted.
fn download(url: &str, dest: &Path, expected: &str, progress: bool) -> Result<(), FetchError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    let http = |source| FetchError::Http {
        url: url.to_string(),
        source: Box::new(source),
    };
    // Ask for the bytes as stored: a transparently decompressed body would fail the MD5.
    let response = agent
        .get(url)
        .header("Accept-Encoding", "identity")
        .call()
        .map_err(http)?;
    let body = response.into_body();
    let len = body.content_length();
    if len.is_some_and(|l| l > MAX_DOWNLOAD) {
        return Err(FetchError::TooLarge {
            url: url.to_string(),
            limit: MAX_DOWNLOAD,
        });
    }
    let mut reader = body.into_reader().take(MAX_DOWNLOAD + 1);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    let bar = progress_bar(progress, len, &name);
    let mut hasher = Md5::new();
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                bar.abandon();
                return Err(FetchError::Download {
                    url: url.to_string(),
                    source,
                });
            }
        };
        total += n as u64;
        if total > MAX_DOWNLOAD {
            bar.abandon();
            return Err(FetchError::TooLarge {
                url: url.to_string(),
                limit: MAX_DOWNLOAD,
            });
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(io_err(tmp.path()))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        // Dropping `tmp` deletes the download.
        return Err(FetchError::Checksum {
            url: url.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
    tmp.persist(dest).map_err(|e| FetchError::Io {
        path: dest.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Unpacks the `.tar.gz` at `archive` into a temporary folder in `dir`, then renames its
/// `folder` to `dir/folder`.
fn unpack(archive: &Path, dir: &Path, folder: &str) -> Result<(), FetchError> {
    let staging = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(dir)
        .map_err(io_err(dir))?;
    let file = File::open(archive).map_err(io_err(archive))?;
    unpack_into(BufReader::new(file), archive, staging.path())?;
    let unpacked = staging.path().join(folder);
    if !unpacked.is_dir() {
        return Err(FetchError::MissingFolder {
            archive: archive.to_path_buf(),
            folder: folder.to_string(),
        });
    }
    let target = dir.join(folder);
    fs::rename(&unpacked, &target).map_err(io_err(&target))?;
    Ok(())
}

/// Whether an archive path stays inside the folder it is unpacked into.
fn is_safe_entry_path(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Unpacks a gzipped tar stream (named `archive` in errors) into `dest`, refusing unsafe
/// paths and entries other than files and directories.
fn unpack_into<R: Read>(reader: R, archive: &Path, dest: &Path) -> Result<(), FetchError> {
    let unpack_err = |source| FetchError::Unpack {
        archive: archive.to_path_buf(),
        source,
    };
    let mut tar = tar::Archive::new(GzDecoder::new(reader));
    for entry in tar.entries().map_err(unpack_err)? {
        let mut entry = entry.map_err(unpack_err)?;
        let path = entry.path().map_err(unpack_err)?.into_owned();
        let entry_name = path.display().to_string();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        if !is_safe_entry_path(&path) {
            return Err(FetchError::UnsafeEntry {
                archive: archive.to_path_buf(),
                entry: entry_name,
            });
        }
        if !(kind.is_file() || kind.is_dir() || kind.is_contiguous()) {
            return Err(FetchError::UnsupportedEntry {
                archive: archive.to_path_buf(),
                entry: entry_name,
            });
        }
        if !entry.unpack_in(dest).map_err(unpack_err)? {
            return Err(FetchError::UnsafeEntry {
                archive: archive.to_path_buf(),
                entry: entry_name,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_support::cifar10_tar_gz;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Serves `body` at `/files/<name>` (404 elsewhere) on a local port; returns the base
    /// URL and a count of requests served.
    fn serve(name: &'static str, body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let served = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                served.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("");
                let (status, content) = if path == format!("/files/{name}") {
                    ("200 OK", body.as_slice())
                } else {
                    ("404 Not Found", &b"not found"[..])
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: \
                     application/octet-stream\r\nConnection: close\r\n\r\n",
                    content.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(content);
                let _ = stream.flush();
            }
        });
        (format!("http://127.0.0.1:{port}/files/"), count)
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn archive_names_and_metadata() {
        assert_eq!("cifar10".parse::<Archive>().unwrap(), Archive::Cifar10);
        assert_eq!("CIFAR-100".parse::<Archive>().unwrap(), Archive::Cifar100);
        assert!(matches!(
            "mnist".parse::<Archive>(),
            Err(FetchError::UnknownArchive { .. })
        ));
        for a in [Archive::Cifar10, Archive::Cifar100] {
            assert!(a.url().ends_with(a.file_name()));
            assert_eq!(a.md5().len(), 32);
            assert_eq!(a.to_string().parse::<Archive>().unwrap(), a);
        }
        assert_eq!(Archive::Cifar100.folder(), "cifar-100-binary");
    }

    #[test]
    fn fetch_downloads_checks_unpacks_and_loads() {
        let tarball = cifar10_tar_gz(2);
        let md5 = hex::encode(Md5::digest(&tarball));
        let (base, served) = serve("cifar-10-binary.tar.gz", tarball);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let opts = FetchOptions {
            base_url: Some(base),
            progress: false,
            expected_md5: Some(md5.to_uppercase()),
        };
        let folder = fetch(Archive::Cifar10, &dir, &opts).unwrap();
        assert_eq!(folder, dir.join("cifar-10-batches-bin"));
        let ds = data::load(&folder, &LoadOptions::default()).unwrap();
        assert_eq!(ds.train.len(), 10);
        assert_eq!(ds.test.len(), 2);
        assert_eq!(ds.classes[1], "automobile");
        assert_eq!(served.load(Ordering::SeqCst), 1);
        assert_eq!(
            names_in(&dir),
            vec!["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]
        );
        // Idempotent: nothing is downloaded again, even from a dead address.
        let offline = FetchOptions {
            base_url: Some("http://127.0.0.1:9/".to_string()),
            ..opts.clone()
        };
        assert_eq!(fetch(Archive::Cifar10, &dir, &offline).unwrap(), folder);
        // With the folder gone, the kept archive is unpacked again without downloading.
        fs::remove_dir_all(&folder).unwrap();
        assert_eq!(fetch(Archive::Cifar10, &dir, &offline).unwrap(), folder);
        assert_eq!(served.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn wrong_md5_is_an_error_and_leaves_no_file() {
        let (base, _) = serve("cifar-10-binary.tar.gz", cifar10_tar_gz(1));
        let tmp = tempfile::tempdir().unwrap();
        let opts = FetchOptions {
            base_url: Some(base),
            progress: true,
            expected_md5: Some("00000000000000000000000000000000".to_string()),
        };
        let err = fetch(Archive::Cifar10, tmp.path(), &opts).unwrap_err();
        assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
        assert!(
            names_in(tmp.path()).is_empty(),
            "{:?}",
            names_in(tmp.path())
        );
    }

    #[test]
    fn http_error_status_is_an_error() {
        let (base, _) = serve("other.tar.gz", Vec::new());
        let tmp = tempfile::tempdir().unwrap();
        let opts = FetchOptions {
            base_url: Some(base),
            ..FetchOptions::default()
        };
        let err = fetch(Archive::Cifar100, tmp.path(), &opts).unwrap_err();
        assert!(matches!(err, FetchError::Http { .. }), "{err}");
        assert!(err.to_string().contains("cifar-100-binary.tar.gz"));
        assert!(names_in(tmp.path()).is_empty());
    }

    #[test]
    fn existing_folder_that_does_not_load_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("cifar-10-batches-bin")).unwrap();
        let err = fetch(Archive::Cifar10, tmp.path(), &FetchOptions::default()).unwrap_err();
        assert!(matches!(err, FetchError::Existing { .. }), "{err}");
    }

    /// A .tar.gz with one entry whose raw name is `name` (bypassing tar's own checks).
    fn tar_with_raw_entry(name: &[u8], kind: tar::EntryType) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(kind);
        header.set_size(if kind.is_file() { 4 } else { 0 });
        header.set_mode(0o644);
        if kind.is_symlink() {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        let data: &[u8] = if kind.is_file() { b"evil" } else { b"" };
        builder.append(&header, data).unwrap();
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn unsafe_archive_entries_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("a/b");
        fs::create_dir_all(&dest).unwrap();
        let archive = Path::new("test.tar.gz");
        for name in [&b"../evil"[..], b"ok/../../evil", b"/tmp/evil-abs-entry"] {
            let tarball = tar_with_raw_entry(name, tar::EntryType::Regular);
            let err = unpack_into(tarball.as_slice(), archive, &dest).unwrap_err();
            assert!(matches!(err, FetchError::UnsafeEntry { .. }), "{err}");
        }
        let link = tar_with_raw_entry(b"link", tar::EntryType::Symlink);
        let err = unpack_into(link.as_slice(), archive, &dest).unwrap_err();
        assert!(matches!(err, FetchError::UnsupportedEntry { .. }), "{err}");
        assert!(!tmp.path().join("a/evil").exists());
        assert!(!tmp.path().join("evil").exists());
        assert!(names_in(&dest).is_empty());
        // A safe entry does unpack.
        let ok = tar_with_raw_entry(b"./fine.txt", tar::EntryType::Regular);
        unpack_into(ok.as_slice(), archive, &dest).unwrap();
        assert_eq!(fs::read(dest.join("fine.txt")).unwrap(), b"evil");
        // Garbage is an unpack error, not a panic.
        let err = unpack_into(&b"not a gzip stream"[..], archive, &dest).unwrap_err();
        assert!(matches!(err, FetchError::Unpack { .. }), "{err}");
    }

    #[test]
    fn archive_without_the_data_folder_is_an_error() {
        let tarball = tar_with_raw_entry(b"something-else.txt", tar::EntryType::Regular);
        let md5 = hex::encode(Md5::digest(&tarball));
        let (base, _) = serve("cifar-10-binary.tar.gz", tarball);
        let tmp = tempfile::tempdir().unwrap();
        let opts = FetchOptions {
            base_url: Some(base),
            progress: false,
            expected_md5: Some(md5),
        };
        let err = fetch(Archive::Cifar10, tmp.path(), &opts).unwrap_err();
        assert!(matches!(err, FetchError::MissingFolder { .. }), "{err}");
        // Only the verified archive remains; no staging folder is left behind.
        assert_eq!(names_in(tmp.path()), vec!["cifar-10-binary.tar.gz"]);
    }
}
