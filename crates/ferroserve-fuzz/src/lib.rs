//! Shared support for the model-file fuzz harnesses (`crates/*/tests/fuzz.rs`):
//! a counting global allocator that fails a case asking for one huge
//! allocation, the bounded case count (`PROPTEST_CASES` overrides it), and
//! byte-level mutations of seed files (set, flip, insert, delete, truncate,
//! splice, interesting integers), per-thread scratch folders, the wrapper that
//! saves a failing case under `FUZZ_ARTIFACTS`, and mutations of the JSON
//! header of safetensors files. Test-only: no runtime crate depends on it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::Value;

/// Largest single allocation a case may request (inputs here are < 64 KB;
/// decompression is allowed to expand up to 64 MB plus 2000× the input).
pub const ALLOC_LIMIT: usize = 512 << 20;
/// Requests above this are refused outright (the process aborts with
/// "memory allocation of N bytes failed"), whatever thread makes them.
pub const HARD_LIMIT: usize = 4 << 30;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// The counting allocator: install it in a fuzz test binary with
/// `#[global_allocator] static GUARD: ferroserve_fuzz::Guard = ferroserve_fuzz::Guard;`.
pub struct Guard;

unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        if layout.size() > HARD_LIMIT {
            return std::ptr::null_mut();
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        if layout.size() > HARD_LIMIT {
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        note(new);
        if new > HARD_LIMIT {
            return std::ptr::null_mut();
        }
        System.realloc(ptr, layout, new)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

/// Runs `f` and fails the case when it asked for more than [`ALLOC_LIMIT`].
pub fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    LARGEST.with(|l| l.set(0));
    let out = f();
    let largest = LARGEST.with(|l| l.get());
    prop_assert!(
        largest <= ALLOC_LIMIT,
        "{what}: allocated {largest} bytes at once"
    );
    Ok(out)
}

/// Cases per property: `PROPTEST_CASES`, else `default` (bounded for CI).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Integers that tend to break length and shape arithmetic.
pub const INTERESTING: [u64; 16] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 7,
];

/// One edit of a byte string.
#[derive(Debug, Clone)]
pub enum Edit {
    Set(prop::sample::Index, u8),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
    /// Copies `len` bytes from one place over (or into) another.
    Splice(prop::sample::Index, prop::sample::Index, usize, bool),
    /// Writes an interesting integer (`width` bytes, little-endian).
    Number(prop::sample::Index, usize, u8),
}

/// Any one [`Edit`].
pub fn edit() -> impl Strategy<Value = Edit> {
    let idx = any::<prop::sample::Index>;
    prop_oneof![
        (idx(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (idx(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
        (idx(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Edit::Insert(i, b)),
        (idx(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        idx().prop_map(Edit::Truncate),
        (idx(), idx(), 1usize..256, any::<bool>())
            .prop_map(|(a, b, n, o)| Edit::Splice(a, b, n, o)),
        (
            idx(),
            0usize..INTERESTING.len(),
            prop::sample::select(vec![1u8, 2, 4, 8])
        )
            .prop_map(|(i, v, w)| Edit::Number(i, v, w)),
    ]
}

/// `v` with `edits` applied in order (indices wrap to its current length).
pub fn apply(mut v: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        if v.is_empty() {
            v.push(0x80);
        }
        let n = v.len();
        match e {
            Edit::Set(i, b) => v[i.index(n)] = *b,
            Edit::Flip(i, b) => v[i.index(n)] ^= 1 << b,
            Edit::Insert(i, b) => {
                let at = i.index(n + 1);
                v.splice(at..at, b.iter().copied());
            }
            Edit::Delete(i, k) => {
                let at = i.index(n);
                v.drain(at..(at + k).min(n));
            }
            Edit::Truncate(i) => v.truncate(i.index(n)),
            Edit::Splice(from, to, k, overwrite) => {
                let a = from.index(n);
                let chunk = v[a..(a + k).min(n)].to_vec();
                let b = to.index(n);
                if *overwrite {
                    let end = (b + chunk.len()).min(n);
                    v[b..end].copy_from_slice(&chunk[..end - b]);
                } else {
                    v.splice(b..b, chunk);
                }
            }
            Edit::Number(i, val, width) => {
                let bytes = INTERESTING[*val].to_le_bytes();
                let at = i.index(n);
                let end = (at + usize::from(*width)).min(n);
                v[at..end].copy_from_slice(&bytes[..end - at]);
            }
        }
    }
    v
}

/// A model folder: file names (relative paths) and contents.
pub type Folder = Vec<(String, Vec<u8>)>;

/// How a case's input is saved under `FUZZ_ARTIFACTS` when it fails.
pub enum Artifact<'a> {
    /// One file, named by its size and `ext` (so the smallest sorts first).
    File {
        /// File name ending (`onnx`, `pmml`, `model.pkl`).
        ext: &'a str,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// A folder of files.
    Folder(&'a [(String, Vec<u8>)]),
}

/// Runs one case. When it fails or panics and `FUZZ_ARTIFACTS` is set, its
/// input is written there (to become a regression case); the failure or
/// panic then goes on to proptest.
pub fn run_case(
    input: Artifact<'_>,
    case: impl FnOnce() -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(case));
    if !matches!(r, Ok(Ok(()))) {
        if let Some(d) = std::env::var_os("FUZZ_ARTIFACTS") {
            save(Path::new(&d), &input);
        }
    }
    match r {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn save(dir: &Path, input: &Artifact<'_>) {
    match input {
        Artifact::File { ext, bytes } => {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::write(dir.join(format!("{:08}.{ext}", bytes.len())), bytes);
        }
        Artifact::Folder(files) => {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = write_folder(&dir.join(format!("case-{}-{n}", std::process::id())), files);
        }
    }
}

/// A scratch folder holding one case's files, removed when dropped (also
/// when the case panics).
pub struct Scratch(PathBuf);

impl Scratch {
    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `files` into this thread's scratch folder for `harness` (emptied
/// first; the same path on each call from one thread).
pub fn scratch(harness: &str, files: &[(String, Vec<u8>)]) -> Scratch {
    thread_local! {
        static ID: usize = {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        };
    }
    let n = ID.with(|n| *n);
    let dir = std::env::temp_dir().join(format!("{harness}-fuzz-{}-{n}", std::process::id()));
    write_folder(&dir, files).expect("scratch folder");
    Scratch(dir)
}

/// Empties `dir` and writes `files` into it (subfolders created).
pub fn write_folder(dir: &Path, files: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in files {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, bytes)?;
    }
    Ok(())
}

/// Leaves of `v` that `pick` accepts.
pub fn count_leaves(v: &Value, pick: fn(&Value) -> bool) -> usize {
    match v {
        Value::Array(a) => a.iter().map(|x| count_leaves(x, pick)).sum(),
        Value::Object(o) => o.values().map(|x| count_leaves(x, pick)).sum(),
        leaf => usize::from(pick(leaf)),
    }
}

/// Replaces the `k`-th leaf of `v` that `pick` accepts with `new` (counting
/// down `k`); whether it was found.
pub fn replace_leaf(v: &mut Value, k: &mut usize, new: &Value, pick: fn(&Value) -> bool) -> bool {
    match v {
        Value::Array(a) => a.iter_mut().any(|x| replace_leaf(x, k, new, pick)),
        Value::Object(o) => o.values_mut().any(|x| replace_leaf(x, k, new, pick)),
        leaf if pick(leaf) => {
            if *k == 0 {
                *leaf = new.clone();
                true
            } else {
                *k -= 1;
                false
            }
        }
        _ => false,
    }
}

/// Replaces leaves that `pick` accepts (dtypes, shapes, data offsets) in a
/// safetensors file's JSON header and writes the header back with its new
/// length; bytes that are not a safetensors file come back unchanged.
pub fn mutate_safetensors_header(
    bytes: &[u8],
    picks: &[(prop::sample::Index, Value)],
    pick: fn(&Value) -> bool,
) -> Vec<u8> {
    let Some(hlen) = bytes
        .get(..8)
        .and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok())
    else {
        return bytes.to_vec();
    };
    let Some(head) = bytes.get(8..8 + hlen) else {
        return bytes.to_vec();
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(head) else {
        return bytes.to_vec();
    };
    let n = count_leaves(&v, pick);
    for (at, new) in picks {
        let mut k = at.index(n.max(1));
        replace_leaf(&mut v, &mut k, new, pick);
    }
    let head = serde_json::to_vec(&v).expect("json");
    let mut out = (head.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&head);
    out.extend_from_slice(&bytes[8 + hlen..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static GUARD: Guard = Guard;

    #[test]
    fn bounded_fails_a_case_with_one_huge_allocation() {
        assert!(bounded("small", || Vec::<u8>::with_capacity(1 << 20)).is_ok());
        assert!(bounded("huge", || Vec::<u8>::with_capacity(ALLOC_LIMIT + 1)).is_err());
    }
}
