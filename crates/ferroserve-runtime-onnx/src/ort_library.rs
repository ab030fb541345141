//! Finding the ONNX Runtime shared library (`libonnxruntime.so.1.x`) without
//! spawning Python.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`), so ferroserve
//! builds and runs without it; when it is found, the `ort` engine becomes
//! available. Search order:
//!
//! 1. `ORT_DYLIB_PATH`: a library file, or a folder holding one. When set it is
//!    authoritative: a wrong value is reported, not silently replaced.
//! 2. `ORT_SEARCH_PATH`: a colon-separated list of folders. Each may be a
//!    Python `site-packages` folder (searched for `onnxruntime/capi/`), a folder
//!    holding the library itself, or a library file.
//! 3. Python installations: `$VIRTUAL_ENV`, `$CONDA_PREFIX`,
//!    `~/.local/lib/python3*/site-packages`, `/usr/local/lib/python3*/{site,dist}-packages`,
//!    `/usr/lib/python3/dist-packages`, `/usr/lib/python3*/site-packages`,
//!    `~/.pyenv/versions/*/lib/python3*/site-packages`.
//! 4. System library folders: `/usr/local/lib`, `/usr/lib`, `/usr/lib64`,
//!    `/usr/lib/<arch>-linux-gnu`.
//!
//! Nothing here recurses beyond these fixed patterns.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

/// Environment variable naming the ONNX Runtime library (or its folder).
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";

/// Environment variable with extra folders (colon-separated) to search.
pub const ORT_SEARCH_PATH: &str = "ORT_SEARCH_PATH";

/// What to tell a user who needs ONNX Runtime.
pub const INSTALL_HINT: &str =
    "install ONNX Runtime (`pip install onnxruntime`, in the active virtualenv or for \
     this user; ferroserve searches the usual site-packages folders) and/or set \
     ORT_DYLIB_PATH=/path/to/libonnxruntime.so.1.x (ORT_SEARCH_PATH adds folders to search)";

/// The ONNX Runtime library to load: `ORT_DYLIB_PATH` when set, else the first
/// library found by the search described in the [module docs](self).
/// Returns `None` when there is none (or `ORT_DYLIB_PATH` names nothing).
pub fn find_onnxruntime() -> Option<PathBuf> {
    resolve_onnxruntime().ok()
}

/// Like [`find_onnxruntime`], but says why nothing was found.
pub fn resolve_onnxruntime() -> Result<PathBuf, String> {
    if let Some(value) = env::var_os(ORT_DYLIB_PATH).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(&value);
        return check_explicit(&path)
            .map_err(|why| format!("{ORT_DYLIB_PATH}={}: {why}", path.display()));
    }
    search().ok_or_else(|| {
        format!("no ONNX Runtime library found ({ORT_DYLIB_PATH} is not set and none was found in {ORT_SEARCH_PATH}, Python site-packages or system library folders)")
    })
}

/// Checks a library path given explicitly (a file, or a folder holding one).
pub(crate) fn check_explicit(path: &Path) -> Result<PathBuf, String> {
    match fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(path.to_path_buf()),
        Ok(m) if m.is_dir() => library_in(path)
            .or_else(|| library_in(&path.join("onnxruntime").join("capi")))
            .ok_or_else(|| "this folder holds no libonnxruntime library".to_string()),
        Ok(_) => Err("not a regular file".to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("no such file".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn search() -> Option<PathBuf> {
    if let Some(list) = env::var_os(ORT_SEARCH_PATH) {
        for dir in env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()) {
            if dir.is_file() && is_library_name(dir.file_name()) {
                return Some(dir);
            }
            if let Some(found) =
                library_in(&dir.join("onnxruntime").join("capi")).or_else(|| library_in(&dir))
            {
                return Some(found);
            }
        }
    }
    for site in site_packages_candidates() {
        if let Some(found) = library_in(&site.join("onnxruntime").join("capi")) {
            return Some(found);
        }
    }
    system_lib_dirs().iter().find_map(|d| library_in(d))
}

/// Site-packages folders to look in, most specific first.
fn site_packages_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let home = env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = env::var_os(var).filter(|v| !v.is_empty()) {
            push_python_dirs(
                &mut out,
                &Path::new(&prefix).join("lib"),
                &["site-packages"],
            );
        }
    }
    if let Some(home) = &home {
        push_python_dirs(
            &mut out,
            &home.join(".local").join("lib"),
            &["site-packages"],
        );
    }
    push_python_dirs(
        &mut out,
        Path::new("/usr/local/lib"),
        &["site-packages", "dist-packages"],
    );
    out.push(PathBuf::from("/usr/lib/python3/dist-packages"));
    push_python_dirs(
        &mut out,
        Path::new("/usr/lib"),
        &["site-packages", "dist-packages"],
    );
    if let Some(home) = &home {
        let versions = home.join(".pyenv").join("versions");
        for version in sorted_entries(&versions, |_| true) {
            push_python_dirs(&mut out, &version.join("lib"), &["site-packages"]);
        }
    }
    out
}

/// Adds `<lib>/python3*/<leaf>` for each leaf, newest Python first.
fn push_python_dirs(out: &mut Vec<PathBuf>, lib: &Path, leaves: &[&str]) {
    let pythons = sorted_entries(lib, |name| name.starts_with("python3"));
    for python in pythons {
        for leaf in leaves {
            out.push(python.join(leaf));
        }
    }
}

fn system_lib_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/usr/local/lib"),
        PathBuf::from("/usr/lib"),
        PathBuf::from("/usr/lib64"),
    ];
    dirs.push(PathBuf::from(format!(
        "/usr/lib/{}-linux-gnu",
        env::consts::ARCH
    )));
    dirs
}

/// Entries of `dir` whose names pass `keep`, sorted by descending natural
/// version order (so `python3.12` comes before `python3.9`).
fn sorted_entries(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut items: Vec<(Vec<u64>, PathBuf)> = read
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            keep(&name).then(|| (version_key(&name), e.path()))
        })
        .collect();
    items.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    items.into_iter().map(|(_, p)| p).collect()
}

/// The numbers in a name, for version ordering (`libonnxruntime.so.1.22.0` → [1, 22, 0]).
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn is_library_name(name: Option<&OsStr>) -> bool {
    let Some(name) = name.and_then(OsStr::to_str) else {
        return false;
    };
    let Some(rest) = name.strip_prefix("libonnxruntime") else {
        return false;
    };
    // Not libonnxruntime_providers_shared.so and friends.
    rest.starts_with(".so") || (rest.starts_with('.') && rest.ends_with(".dylib"))
}

/// The newest ONNX Runtime library directly inside `dir`.
fn library_in(dir: &Path) -> Option<PathBuf> {
    sorted_entries(dir, |name| is_library_name(Some(OsStr::new(name))))
        .into_iter()
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_names() {
        assert!(is_library_name(Some(OsStr::new("libonnxruntime.so"))));
        assert!(is_library_name(Some(OsStr::new(
            "libonnxruntime.so.1.32.0"
        ))));
        assert!(is_library_name(Some(OsStr::new(
            "libonnxruntime.1.20.0.dylib"
        ))));
        assert!(!is_library_name(Some(OsStr::new(
            "libonnxruntime_providers_shared.so"
        ))));
        assert!(!is_library_name(Some(OsStr::new("onnxruntime.dll"))));
    }

    #[test]
    fn newest_library_wins() {
        let dir = env::temp_dir().join(format!("ferroserve-ortlib-{}", std::process::id()));
        let capi = dir.join("site-packages").join("onnxruntime").join("capi");
        fs::create_dir_all(&capi).unwrap();
        for name in [
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.22.1",
            "libonnxruntime_providers_shared.so",
        ] {
            fs::write(capi.join(name), b"").unwrap();
        }
        assert_eq!(
            library_in(&capi),
            Some(capi.join("libonnxruntime.so.1.22.1"))
        );
        // A site-packages folder given explicitly is searched too.
        assert_eq!(
            check_explicit(&dir.join("site-packages")),
            Ok(capi.join("libonnxruntime.so.1.22.1"))
        );
        assert!(check_explicit(&dir.join("missing.so")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn python_dirs_newest_first() {
        assert!(version_key("python3.12") > version_key("python3.9"));
    }
}
