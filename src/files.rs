//! Shared pieces of every file format: the error type that names the file, the 256-int header
//! llm.c puts in front of everything, and atomic writes (temporary file, then rename).

use byteorder::{ByteOrder, LittleEndian};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Writes a file atomically (`atomic_file::write_atomic`: a temporary file, flushed, then renamed
/// over `path`), creating its directory if needed. A crash mid-write leaves the previous file intact.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), FileError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, format!("cannot create the directory: {e}")))?;
    }
    crate::atomic_file::write_atomic(path, |w| write(w)).map_err(|e| FileError::new(path, format!("cannot write: {e}")))
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
