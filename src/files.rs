//! Shared pieces of every file format: the error type that names the file, the 256-int header
//! llm.c puts in front of everything, and atomic writes: write a temporary file next to the target,
//! flush it to disk, then rename it over the target (a rename within one directory is atomic).

use byteorder::{ByteOrder, LittleEndian};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Something wrong with a file: which file, and what.
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for FileError {}

impl FileError {
    pub fn new(path: &Path, message: impl Into<String>) -> Self {
        FileError { path: path.to_path_buf(), message: message.into() }
    }
}

/// llm.c's header: 256 little-endian int32, 1024 bytes.
pub const HEADER_INTS: usize = 256;
pub const HEADER_BYTES: usize = HEADER_INTS * 4;

/// Decodes the header at the start of `bytes`, or says the file is too short to have one.
pub fn read_header(path: &Path, bytes: &[u8]) -> Result<[i32; HEADER_INTS], FileError> {
    if bytes.len() < HEADER_BYTES {
        return Err(FileError::new(
            path,
            format!("file is {} bytes, too short for the {HEADER_BYTES}-byte header", bytes.len()),
        ));
    }
    let mut header = [0i32; HEADER_INTS];
    LittleEndian::read_i32_into(&bytes[..HEADER_BYTES], &mut header);
    Ok(header)
}

/// Encodes a header; unused entries are 0.
pub fn header_bytes(values: &[i32]) -> Vec<u8> {
    let mut header = [0i32; HEADER_INTS];
    header[..values.len()].copy_from_slice(values);
    let mut bytes = vec![0u8; HEADER_BYTES];
    LittleEndian::write_i32_into(&header, &mut bytes);
    bytes
}

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|e| FileError::new(path, format!("cannot read: {e}")))
}

/// Writes a file atomically (`write_atomic_io`: a temporary file, flushed, then renamed
/// over `path`), creating its directory if needed. A crash mid-write leaves the previous file intact.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), FileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, format!("cannot create the directory: {e}")))?;
    }
    write_atomic_io(path, |w| write(w)).map_err(|e| FileError::new(path, format!("cannot write: {e}")))
}

/// Writes f32s as little-endian bytes.
pub fn write_f32s(w: &mut dyn Write, values: &[f32]) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4 * 16384];
    for chunk in values.chunks(16384) {
        let bytes = &mut buf[..4 * chunk.len()];
        LittleEndian::write_f32_into(chunk, bytes);
        w.write_all(bytes)?;
    }
    Ok(())
}

/// Makes temporary names unique between threads of this process; the pid separates processes.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `path` atomically, so that readers never see half of a file: `fill` writes the contents into a buffered temporary file, which is then
/// synced and renamed to `path`. On any error the temporary file is removed and `path` is untouched.
pub fn write_atomic_io<F>(path: &Path, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let tmp = temp_path(path);
    let result = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `dir/name` -> `dir/.name.<pid>.<n>.tmp`, in the same directory so the rename stays on one file system.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        write_atomic_io(&path, |w| w.write_all(b"first")).unwrap();
        write_atomic_io(&path, |w| w.write_all(b"second")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let err = write_atomic_io(&path, |_| Err(io::Error::other("boom")));
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
