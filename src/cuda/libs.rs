//! Finding CUDA's libraries where CUDA puts them, so that nobody has to set LD_LIBRARY_PATH.
//!
//! cudarc opens libcuda, libnvrtc, libcublas and libcublasLt by name (`dlopen("libnvrtc.so.13")`), so
//! the dynamic linker looks only in LD_LIBRARY_PATH, its cache (/etc/ld.so.cache) and /lib, /usr/lib,
//! and cudarc panics when that fails. CUDA itself installs to /usr/local/cuda/lib64 (not always in the
//! cache), and `pip install nvidia-cuda-nvrtc nvidia-cublas` puts the libraries in Python's
//! site-packages (`nvidia/cu13/lib` for 13.x wheels, `nvidia/cuda_nvrtc/lib`, `nvidia/cublas/lib` for 12.x).
//!
//! `load` looks in those places in order, and opens the first file it finds by its absolute path
//! (RTLD_NOW | RTLD_GLOBAL) and keeps it open. When cudarc then asks for the library by name, glibc's
//! dlopen matches the name against the SONAME of the libraries already loaded and returns ours:
//! that is why only file names whose SONAME is one cudarc asks for are loaded (`CudaLib::file_names`),
//! and why `load` checks cudarc's own `is_culib_present()` afterwards. When nothing is found, the error
//! names the library and lists every place looked in.
//!
//! The search (`search`) is a plain function of a `SearchEnv` (the environment variables, a root
//! folder, Python's site folders, the linker cache's listing), so the tests run it on a fake tree.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// CUDA's major version this build's cudarc bindings are for (the `cuda-13000` feature in Cargo.toml).
pub const CUDA_MAJOR: u32 = 13;

/// A library of CUDA that the GPU path opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CudaLib {
    /// libcuda: the NVIDIA driver's user-space library (installed with the driver, not with CUDA).
    Driver,
    /// libnvrtc: CUDA's runtime compiler, which compiles `kernels/*.cu` at start-up.
    Nvrtc,
    /// libcublasLt: cuBLAS's matmul library (`--matmul cublas` needs it; libcublas links to it).
    CublasLt,
    /// libcublas: `--matmul cublas`.
    Cublas,
}

impl CudaLib {
    /// The file name without versions, e.g. "libnvrtc".
    pub fn stem(self) -> &'static str {
        match self {
            CudaLib::Driver => "libcuda",
            CudaLib::Nvrtc => "libnvrtc",
            CudaLib::CublasLt => "libcublasLt",
            CudaLib::Cublas => "libcublas",
        }
    }

    /// What the library is, for messages.
    pub fn what(self) -> &'static str {
        match self {
            CudaLib::Driver => "the NVIDIA driver's library",
            CudaLib::Nvrtc => "CUDA's runtime compiler, needed to compile the kernels",
            CudaLib::CublasLt => "cuBLASLt, needed by --matmul cublas",
            CudaLib::Cublas => "cuBLAS, needed by --matmul cublas",
        }
    }

    /// The file names looked for, best first. Each is a name cudarc dlopens (see
    /// `cudarc::get_lib_name_candidates`), so that a file loaded by path answers cudarc's dlopen by name.
    pub fn file_names(self) -> Vec<String> {
        let stem = self.stem();
        match self {
            // the driver's SONAME is libcuda.so.1 whatever the CUDA version
            CudaLib::Driver => vec![format!("{stem}.so.1"), format!("{stem}.so")],
            _ => vec![format!("{stem}.so.{CUDA_MAJOR}"), format!("{stem}.so")],
        }
    }

    /// Whether cudarc can open the library by name now (it panics on first use when it cannot).
    fn cudarc_finds_it(self) -> bool {
        // SAFETY: these only try to dlopen the library under cudarc's names; nothing in it is called.
        unsafe {
            match self {
                CudaLib::Driver => cudarc::driver::sys::is_culib_present(),
                CudaLib::Nvrtc => cudarc::nvrtc::sys::is_culib_present(),
                CudaLib::CublasLt => cudarc::cublaslt::sys::is_culib_present(),
                CudaLib::Cublas => cudarc::cublas::sys::is_culib_present(),
            }
        }
    }
}

/// Where the search looks, as data: the real machine's (`SearchEnv::current`) or a test's fake tree.
#[derive(Clone, Debug, Default)]
pub struct SearchEnv {
    /// Prefix of the fixed system paths (/usr/local/cuda, ...): "/" normally, a temp folder in tests.
    pub root: PathBuf,
    /// $CUDA_HOME and $CUDA_PATH, where set.
    pub cuda_home: Option<PathBuf>,
    pub cuda_path: Option<PathBuf>,
    /// Python's site-packages folders (asked of `python3`, plus $VIRTUAL_ENV's, $CONDA_PREFIX's and ~/.local's).
    pub site_packages: Vec<PathBuf>,
    /// The output of `ldconfig -p` (the linker cache), if it could be read.
    pub ldconfig: Option<String>,
}

impl SearchEnv {
    /// The places of this machine.
    pub fn current() -> SearchEnv {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let mut site_packages = python_site_packages();
        let mut prefixes: Vec<PathBuf> = ["VIRTUAL_ENV", "CONDA_PREFIX"].iter().filter_map(|v| var(v)).collect();
        if let Some(home) = var("HOME") {
            prefixes.push(home.join(".local"));
        }
        prefixes.extend(["/usr/local", "/usr"].map(PathBuf::from));
        for prefix in prefixes {
            for dir in glob_dirs(&prefix.join("lib"), "python3") {
                site_packages.extend(["site-packages", "dist-packages"].map(|s| dir.join(s)));
            }
        }
        site_packages.push(PathBuf::from("/usr/lib/python3/dist-packages"));
        let mut seen = Vec::new();
        site_packages.retain(|p| {
            p.is_dir() && !seen.contains(p) && {
                seen.push(p.clone());
                true
            }
        });
        SearchEnv {
            root: PathBuf::from("/"),
            cuda_home: var("CUDA_HOME"),
            cuda_path: var("CUDA_PATH"),
            site_packages,
            ldconfig: ldconfig_listing(),
        }
    }
}

/// Python's site folders as `python3` reports them (nothing when there is no python3).
fn python_site_packages() -> Vec<PathBuf> {
    let script = "import site, sys\n\
                  dirs = list(getattr(site, 'getsitepackages', lambda: [])()) + [site.getusersitepackages()] + sys.path\n\
                  print('\\n'.join(d for d in dirs if d))";
    let Ok(out) =
        std::process::Command::new("python3").args(["-c", script]).stderr(std::process::Stdio::null()).output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).filter(|p| p.is_dir()).collect()
}

/// `ldconfig -p`, the listing of the linker cache.
fn ldconfig_listing() -> Option<String> {
    ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"].iter().find_map(|cmd| {
        let out = std::process::Command::new(cmd).arg("-p").stderr(std::process::Stdio::null()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
}

/// The sub-folders of `dir` whose names start with `prefix`, sorted newest version first
/// (/usr/local/cuda-13.0 before cuda-12.4; "cuda-12.10" after "cuda-12.9" by number, not by text).
fn glob_dirs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    let version = |p: &PathBuf| -> Vec<u64> {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        name[prefix.len()..].split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect()
    };
    found.sort_by_key(|p| std::cmp::Reverse(version(p)));
    found
}

/// `root` joined with an absolute path written as text.
fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// One place looked in: a folder (or the linker cache), why it is on the list, and what was there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub what: String,
    /// The files of `CudaLib::file_names` found there, best first.
    pub found: Vec<PathBuf>,
}

/// Every place `lib` is looked for in `env`, in order, with the files found in each. The dynamic
/// linker's own search (LD_LIBRARY_PATH, its cache, /lib, /usr/lib) comes before all of these, in `load`.
pub fn search(lib: CudaLib, env: &SearchEnv) -> Vec<Place> {
    let names = lib.file_names();
    let mut dirs: Vec<(PathBuf, String)> = Vec::new();
    for (var, value) in [("CUDA_HOME", &env.cuda_home), ("CUDA_PATH", &env.cuda_path)] {
        if let Some(home) = value {
            for sub in ["lib64", "lib"] {
                dirs.push((home.join(sub), format!("${var}/{sub}")));
            }
        }
    }
    dirs.push((under(&env.root, "/usr/local/cuda/lib64"), "CUDA's default install".into()));
    for dir in glob_dirs(&under(&env.root, "/usr/local"), "cuda-") {
        dirs.push((dir.join("lib64"), "a versioned CUDA install".into()));
    }
    if lib == CudaLib::Driver {
        // where containers (NVIDIA's container toolkit), WSL and RPM-based systems put the driver
        for dir in ["/usr/local/nvidia/lib64", "/usr/lib/wsl/lib", "/usr/lib64", "/usr/lib/x86_64-linux-gnu"] {
            dirs.push((under(&env.root, dir), "a driver folder".into()));
        }
    } else {
        for site in &env.site_packages {
            for dir in glob_dirs(&site.join("nvidia"), "") {
                dirs.push((dir.join("lib"), "a PyPI nvidia-* wheel".into()));
            }
            if !site.join("nvidia").is_dir() {
                dirs.push((site.join("nvidia"), "Python's site-packages".into()));
            }
        }
    }
    let mut places: Vec<Place> = dirs
        .into_iter()
        .map(|(dir, why)| {
            let found: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).filter(|p| p.is_file()).collect();
            let note = if dir.is_dir() { "" } else { ", no such folder" };
            Place { what: format!("{} ({why}{note})", dir.display()), found }
        })
        .collect();
    // the linker cache: its entries for our names (normally found by name already), so that the
    // error can also say which other versions it holds
    let what = "the linker cache (ldconfig -p)".to_string();
    match &env.ldconfig {
        Some(listing) => {
            let entries = ldconfig_entries(listing, lib.stem());
            let found = names
                .iter()
                .filter_map(|n| entries.iter().find(|(name, _)| name == n).map(|(_, p)| p.clone()))
                .filter(|p| p.is_file())
                .collect();
            let others: Vec<&str> =
                entries.iter().map(|(n, _)| n.as_str()).filter(|n| !names.iter().any(|x| x == n)).collect();
            let what = if others.is_empty() {
                what
            } else {
                format!("{what}, which has {} (not a version this build of cudarc loads)", others.join(", "))
            };
            places.push(Place { what, found });
        }
        None => places.push(Place { what: format!("{what}, which could not be read"), found: Vec::new() }),
    }
    places
}

/// (file name, path) of the entries of an `ldconfig -p` listing for the library `stem` (any version).
/// A line reads `\tlibnvrtc.so.13 (libc6,x86-64) => /usr/local/cuda/lib64/libnvrtc.so.13`.
pub fn ldconfig_entries(listing: &str, stem: &str) -> Vec<(String, PathBuf)> {
    listing
        .lines()
        .filter_map(|line| {
            let (name, path) = line.trim().split_once(" => ")?;
            let name = name.split_whitespace().next()?;
            let version = name.strip_prefix(stem)?.strip_prefix(".so")?;
            (version.is_empty() || version.starts_with('.')).then(|| (name.to_string(), PathBuf::from(path.trim())))
        })
        .collect()
}

/// Where a library was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// By the dynamic linker itself (LD_LIBRARY_PATH, its cache, /lib, /usr/lib).
    ByName,
    /// At this path, opened by `load`.
    At(PathBuf),
}

/// A library that could not be found or opened: what it is and every place looked in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotFound {
    pub lib: CudaLib,
    pub looked_in: Vec<String>,
}

impl NotFound {
    /// The short form, for `--device auto`'s one line.
    pub fn short(&self) -> String {
        format!(
            "{} ({}) was not found in {} places, which --device cuda lists",
            self.lib.file_names()[0],
            self.lib.what(),
            self.looked_in.len()
        )
    }
}

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let install = match self.lib {
            CudaLib::Driver => "install the NVIDIA driver",
            _ => "install the CUDA toolkit, or its PyPI wheels (pip install nvidia-cuda-nvrtc nvidia-cublas), or set CUDA_HOME",
        };
        writeln!(f, "{} ({}) was not found; looked in:", self.lib.file_names().join(" or "), self.lib.what())?;
        for place in &self.looked_in {
            writeln!(f, "  - {place}")?;
        }
        write!(f, "{install}, or put its folder on LD_LIBRARY_PATH")
    }
}

impl std::error::Error for NotFound {}

/// The libraries opened by path, kept open for the life of the process (cudarc's handles by name
/// point at them), and the result of each `load`.
static LOADED: Mutex<Vec<(CudaLib, Result<Found, NotFound>)>> = Mutex::new(Vec::new());
static HANDLES: Mutex<Vec<libloading::os::unix::Library>> = Mutex::new(Vec::new());

/// Makes `lib` loadable by cudarc: already by name, or by opening the first file found by `search`.
/// Remembered for the life of the process.
pub fn load(lib: CudaLib) -> Result<Found, NotFound> {
    // libcublas needs libcublasLt: open that first (by its SONAME it then satisfies libcublas's NEEDED)
    if lib == CudaLib::Cublas {
        load(CudaLib::CublasLt)?;
    }
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, result)) = loaded.iter().find(|(l, _)| *l == lib) {
        return result.clone();
    }
    let result = find_and_open(lib);
    loaded.push((lib, result.clone()));
    result
}

fn linker_search_path() -> String {
    let ld = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    let ld = if ld.is_empty() { "LD_LIBRARY_PATH unset".to_string() } else { format!("LD_LIBRARY_PATH={ld}") };
    format!("the dynamic linker's search by name ({ld}, /etc/ld.so.cache, /lib, /usr/lib)")
}

fn find_and_open(lib: CudaLib) -> Result<Found, NotFound> {
    if lib.cudarc_finds_it() {
        return Ok(Found::ByName);
    }
    let mut looked_in = vec![linker_search_path()];
    for place in search(lib, &SearchEnv::current()) {
        let mut what = place.what;
        for path in &place.found {
            match open(lib, path) {
                Ok(()) if lib.cudarc_finds_it() => return Ok(Found::At(path.clone())),
                Ok(()) => what += &format!("; opened {} but cudarc still cannot load it by name", path.display()),
                Err(e) => what += &format!("; found {} but it would not open: {e}", path.display()),
            }
        }
        looked_in.push(what);
    }
    Err(NotFound { lib, looked_in })
}

/// Opens `path` (and, for libnvrtc, the libnvrtc-builtins beside it, which libnvrtc opens by name
/// when it compiles) with RTLD_NOW | RTLD_GLOBAL, and keeps it open.
fn open(lib: CudaLib, path: &Path) -> Result<(), String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: a CUDA library's initialisers are safe to run; nothing is called here except, for
    // libnvrtc, nvrtcVersion, whose signature is NVRTC's documented one.
    let library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| e.to_string())?;
    if lib == CudaLib::Nvrtc {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: nvrtcResult nvrtcVersion(int *major, int *minor), given two valid ints.
        unsafe {
            let version: libloading::os::unix::Symbol<unsafe extern "C" fn(*mut i32, *mut i32) -> i32> =
                library.get(b"nvrtcVersion").map_err(|e| e.to_string())?;
            version(&mut major, &mut minor);
        }
        let builtins = path.with_file_name(format!("libnvrtc-builtins.so.{major}.{minor}"));
        // SAFETY: as above.
        let b = unsafe { Library::open(Some(&builtins), RTLD_NOW | RTLD_GLOBAL) }
            .map_err(|e| format!("libnvrtc {major}.{minor} needs {} beside it: {e}", builtins.display()))?;
        HANDLES.lock().unwrap_or_else(|p| p.into_inner()).push(b);
    }
    HANDLES.lock().unwrap_or_else(|p| p.into_inner()).push(library);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake file at `root` + `path`.
    fn touch(root: &Path, path: &str) -> PathBuf {
        let p = under(root, path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"not really a library").unwrap();
        p
    }

    fn found(places: &[Place]) -> Vec<PathBuf> {
        places.iter().flat_map(|p| p.found.clone()).collect()
    }

    #[test]
    fn the_search_looks_in_cuda_home_then_usr_local_cuda_then_versioned_installs_then_python_wheels() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let home = touch(root, "/opt/cuda/lib64/libnvrtc.so.13");
        let default = touch(root, "/usr/local/cuda/lib64/libnvrtc.so.13");
        let old = touch(root, "/usr/local/cuda-12.9/lib64/libnvrtc.so");
        let new = touch(root, "/usr/local/cuda-12.10/lib64/libnvrtc.so");
        let wheel = touch(root, "/venv/site-packages/nvidia/cu13/lib/libnvrtc.so.13");
        touch(root, "/venv/site-packages/nvidia/cu13/lib/libcublas.so.13");
        // a version cudarc does not load, and a wrong stem, are not taken
        touch(root, "/usr/local/cuda/lib64/libnvrtc.so.14");
        touch(root, "/usr/local/cuda/lib64/libnvrtc-builtins.so.13");
        let env = SearchEnv {
            root: root.to_path_buf(),
            cuda_home: Some(under(root, "/opt/cuda")),
            cuda_path: None,
            site_packages: vec![under(root, "/venv/site-packages")],
            ldconfig: Some(String::new()),
        };
        let places = search(CudaLib::Nvrtc, &env);
        for p in &places {
            println!("{} -> {:?}", p.what, p.found);
        }
        // cuda-12.10 is newer than cuda-12.9
        assert_eq!(found(&places), vec![home, default, new, old, wheel.clone()]);
        assert!(places.iter().any(|p| p.what.contains("PyPI") && p.found == [wheel.clone()]));
        assert!(places.last().unwrap().what.starts_with("the linker cache"));
        assert_eq!(found(&search(CudaLib::Cublas, &env)).len(), 1);
        // the driver is not looked for in Python wheels (none ship it), but in the driver folders
        let driver = touch(root, "/usr/local/nvidia/lib64/libcuda.so.1");
        assert_eq!(found(&search(CudaLib::Driver, &env)), vec![driver]);
    }

    #[test]
    fn an_empty_tree_lists_every_place_looked_in_and_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let env = SearchEnv {
            root: dir.path().to_path_buf(),
            cuda_home: Some(dir.path().join("nowhere")),
            cuda_path: None,
            site_packages: vec![dir.path().join("site")],
            ldconfig: None,
        };
        let places = search(CudaLib::Nvrtc, &env);
        assert!(found(&places).is_empty());
        let text: Vec<&str> = places.iter().map(|p| p.what.as_str()).collect();
        println!("{text:#?}");
        assert!(text.iter().any(|w| w.contains("nowhere/lib64 ($CUDA_HOME/lib64, no such folder)")), "{text:?}");
        assert!(text.iter().any(|w| w.contains("usr/local/cuda/lib64 (CUDA's default install, no such folder)")));
        assert!(text.iter().any(|w| w.contains("site/nvidia (Python's site-packages, no such folder)")));
        assert!(text.iter().any(|w| w.contains("linker cache") && w.contains("could not be read")));
        let err = NotFound { lib: CudaLib::Nvrtc, looked_in: text.iter().map(|s| s.to_string()).collect() };
        let message = err.to_string();
        assert!(message.starts_with("libnvrtc.so.13 or libnvrtc.so (CUDA's runtime compiler"), "{message}");
        assert_eq!(message.matches("\n  - ").count(), places.len(), "{message}");
        assert!(err.short().contains(&format!("{} places", places.len())));
    }

    #[test]
    fn the_linker_cache_listing_is_read_for_every_version_of_one_library() {
        let listing = "589 libs found in cache `/etc/ld.so.cache'\n\
            \tlibnvrtc.so.12 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvrtc.so.12\n\
            \tlibnvrtc.so (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvrtc.so\n\
            \tlibnvrtc-builtins.so.12.0 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvrtc-builtins.so.12.0\n\
            \tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1\n";
        let names: Vec<String> = ldconfig_entries(listing, "libnvrtc").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["libnvrtc.so.12", "libnvrtc.so"]);
        let driver = ldconfig_entries(listing, "libcuda");
        assert_eq!(driver, [("libcuda.so.1".to_string(), PathBuf::from("/usr/lib/x86_64-linux-gnu/libcuda.so.1"))]);
        // the search says which other versions the cache holds
        let dir = tempfile::tempdir().unwrap();
        let env = SearchEnv { root: dir.path().to_path_buf(), ldconfig: Some(listing.into()), ..Default::default() };
        let cache = search(CudaLib::Nvrtc, &env).pop().unwrap();
        assert!(cache.what.contains("which has libnvrtc.so.12"), "{}", cache.what);
    }
}
