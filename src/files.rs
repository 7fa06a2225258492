//! Shared pieces of every file format: the error type that names the file, the 256-int header
//! llm.c puts in front of everything, and atomic writes: write a temporary file next to the target,
//! flush it to disk, then rename it over the target (a rename within one directory is atomic).
//! A process killed mid-write leaves its temporary file behind; the next write of the same path
//! removes it (`remove_stale_temps`).

use byteorder::{ByteOrder, LittleEndian};
use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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

/// The temporary files this process is writing right now, so that cleaning up never removes one of them.
static IN_FLIGHT: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// Writes `path` atomically, so that readers never see half of a file: `fill` writes the contents into a buffered temporary file, which is then
/// synced and renamed to `path`. On any error the temporary file is removed and `path` is untouched.
/// First it removes the temporary files that crashed writes of `path` left (`remove_stale_temps`).
pub fn write_atomic_io<F>(path: &Path, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let tmp = temp_path(path);
    let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    in_flight.get_or_insert_with(HashSet::new).insert(tmp.clone());
    drop(in_flight);
    remove_stale_temps(path);
    let result = write_then_rename(path, &tmp, fill);
    let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    in_flight.get_or_insert_with(HashSet::new).remove(&tmp);
    result
}

/// The body of `write_atomic_io`: fill `tmp`, sync it, rename it to `path`; on error remove `tmp`.
fn write_then_rename<F>(path: &Path, tmp: &Path, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let result = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(tmp)?);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

/// `dir/name` -> `dir/.name.<pid>.<n>.tmp`, in the same directory so the rename stays on one file system.
fn temp_path(path: &Path) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{}.{}.{n}.tmp", file_name(path), std::process::id()))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned())
}

/// Removes the temporary files of earlier writes of `path` (`.NAME.PID.N.tmp` beside it) whose writer
/// is gone: a process that is no longer running (a crash, `kill -9`, a full disk that killed it), or
/// this process when the file is not one it is writing now (a container restarted under the same pid).
/// A temporary file of another live process is left alone: it may be about to be renamed. Without
/// `/proc` (not Linux) no process can be told dead, so only this process's own leftovers go. Failing
/// to list or remove is not an error: the write itself does not depend on it.
pub fn remove_stale_temps(path: &Path) -> Vec<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let prefix = format!(".{}.", file_name(path));
    let me = std::process::id();
    let in_flight = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // the rest after the prefix must be exactly "PID.N.tmp"
        let Some(rest) = name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".tmp")) else { continue };
        let Some((pid, n)) = rest.split_once('.') else { continue };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), n.parse::<u64>()) else { continue };
        let stale_path = entry.path();
        let stale = if pid == me { !in_flight.contains(&stale_path) } else { process_is_gone(pid) };
        if stale && fs::remove_file(&stale_path).is_ok() {
            removed.push(stale_path);
        }
    }
    removed
}

/// Whether process `pid` has certainly ended: on Linux, it has no `/proc/PID`. Elsewhere we cannot
/// tell, and say no.
fn process_is_gone(pid: u32) -> bool {
    Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
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

    #[test]
    fn the_next_write_removes_temporaries_of_dead_writers_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.bin");
        // pid 4194305 is above Linux's largest pid (2^22), so no process has it
        let dead = dir.path().join(".ck.bin.4194305.0.tmp");
        let mine = dir.path().join(format!(".ck.bin.{}.999999.tmp", std::process::id()));
        let other_file = dir.path().join(".other.bin.4194305.0.tmp");
        let not_a_temp = dir.path().join(".ck.bin.notes");
        let mut live = None;
        if Path::new("/proc/1").exists() {
            // pid 1 is always running
            live = Some(dir.path().join(".ck.bin.1.0.tmp"));
        }
        for p in [&dead, &mine, &other_file, &not_a_temp].into_iter().chain(live.as_ref()) {
            fs::write(p, b"left over").unwrap();
        }
        write_atomic_io(&path, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(!mine.exists(), "this process's own leftover is removed");
        if Path::new("/proc/self").exists() {
            assert!(!dead.exists(), "a dead writer's temporary file is removed");
        }
        assert!(other_file.exists() && not_a_temp.exists(), "files of other paths stay");
        if let Some(live) = live {
            assert!(live.exists(), "a live process's temporary file stays");
        }
    }
}
