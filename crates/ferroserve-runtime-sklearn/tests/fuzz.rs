//! Property-driven fuzzing of every scikit-learn model-file parser: the
//! pickle virtual machine ([`pickle::load`]), joblib's containers
//! (compression sniffing and bounded decompression in [`container`], numpy
//! arrays written after `NumpyArrayWrapper`), skops zips (`schema.json` and
//! `.npy` members, [`skops::parse_npy`]) and the model extraction on top,
//! through the public load path [`SklearnModel::from_file`].
//!
//! Inputs are random bytes and mutations of the committed fixtures in
//! `tests/fixtures/sklearn` (byte flips, overwrites, inserts, deletes,
//! truncation, splices, and "interesting" integers written over the operands
//! of pickle integer opcodes, i.e. array shapes, lengths and dims made huge
//! or negative). Each load must return `Ok` or an error, never panic, and
//! never ask the allocator for more than [`ferroserve_fuzz::ALLOC_LIMIT`] bytes at once (a
//! counting allocator in this test binary records the largest request of
//! each case).
//!
//! Runs in CI with a bounded number of cases per property (see [`cases`]);
//! `PROPTEST_CASES=20000 cargo test --release -p ferroserve-runtime-sklearn
//! --test fuzz` runs longer.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ferroserve_core::{Error, LoadContext};
use ferroserve_fuzz::{apply, bounded, cases, edit, run_case, Artifact, INTERESTING};
use ferroserve_runtime_sklearn::{container, pickle, skops, SklearnModel};
use proptest::prelude::*;

#[global_allocator]
static GUARD: ferroserve_fuzz::Guard = ferroserve_fuzz::Guard;

// ---------------------------------------------------------------------------
// Seeds and mutations

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sklearn")
}

/// Model files of the fixtures, smallest first: (file name, bytes).
fn seeds() -> &'static [(String, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = Vec::new();
        let mut stack = vec![fixtures().join("v1.9"), fixtures().join("v1.3")];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let ext = p.extension().and_then(|n| n.to_str()).unwrap_or("");
                let small = e.metadata().map(|m| m.len() < 40_000).unwrap_or(false);
                if small && ["joblib", "pkl", "pickle", "skops"].contains(&ext) {
                    if let Ok(b) = std::fs::read(&p) {
                        out.push((name.to_string(), b));
                    }
                }
            }
        }
        out.sort_by_key(|(n, b)| (b.len(), n.clone()));
        assert!(out.len() > 50, "sklearn fixtures not found");
        out
    })
}

/// The uncompressed pickle streams among the seeds (joblib files
/// decompressed), for structured mutations.
fn pickles() -> &'static [Vec<u8>] {
    static P: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    P.get_or_init(|| {
        seeds()
            .iter()
            .filter(|(n, _)| !n.ends_with(".skops"))
            .filter_map(|(_, b)| container::decompress(b.clone()).ok())
            .collect()
    })
}

/// The members of a zip: (member name, bytes).
type Members = Vec<(String, Vec<u8>)>;

/// The members of the skops seeds, per file.
fn skops_members() -> &'static [Members] {
    static S: OnceLock<Vec<Members>> = OnceLock::new();
    S.get_or_init(|| {
        seeds()
            .iter()
            .filter(|(n, _)| n.ends_with(".skops"))
            .map(|(_, b)| {
                let mut z = zip::ZipArchive::new(std::io::Cursor::new(b)).expect("seed zip");
                (0..z.len())
                    .map(|i| {
                        let mut f = z.by_index(i).expect("seed member");
                        let mut v = Vec::new();
                        f.read_to_end(&mut v).expect("seed member bytes");
                        (f.name().to_string(), v)
                    })
                    .collect()
            })
            .collect()
    })
}

/// Pickle integer opcodes (BININT1, BININT2, BININT, LONG1) and the widths
/// of their operands.
const INT_OPCODES: [(u8, usize); 4] = [(b'K', 1), (b'M', 2), (b'J', 4), (0x8a, 1)];

/// Rewrites the operands of up to `picks.len()` integer opcodes of a pickle
/// with interesting values; BININT1/BININT2 may be widened into BININT or
/// an 8-byte LONG1 so that shapes and lengths can become huge or negative.
fn mutate_ints(p: &[u8], picks: &[(prop::sample::Index, usize, bool)]) -> Vec<u8> {
    let sites: Vec<usize> = p
        .iter()
        .enumerate()
        .filter(|(i, b)| {
            INT_OPCODES
                .iter()
                .any(|(op, w)| *op == **b && i + w < p.len())
        })
        .map(|(i, _)| i)
        .collect();
    if sites.is_empty() {
        return p.to_vec();
    }
    // Apply from the last site backwards so earlier positions stay valid.
    let mut chosen: Vec<(usize, usize, bool)> = picks
        .iter()
        .map(|(i, v, widen)| (sites[i.index(sites.len())], *v, *widen))
        .collect();
    chosen.sort_by_key(|c| std::cmp::Reverse(c.0));
    chosen.dedup_by_key(|c| c.0);
    let mut out = p.to_vec();
    for (at, val, widen) in chosen {
        let op = out[at];
        let width = INT_OPCODES
            .iter()
            .find(|(o, _)| *o == op)
            .map_or(1, |(_, w)| *w);
        let value = INTERESTING[val];
        let new: Vec<u8> = if op == 0x8a {
            // LONG1 n bytes: replace with an 8-byte two's complement value.
            let old = usize::from(out[at + 1]);
            let end = (at + 2 + old).min(out.len());
            let mut b = vec![0x8a, 8];
            b.extend_from_slice(&value.to_le_bytes());
            out.splice(at..end, b);
            continue;
        } else if widen {
            let mut b = vec![0x8a, 8];
            b.extend_from_slice(&value.to_le_bytes());
            b
        } else {
            let mut b = vec![op];
            b.extend_from_slice(&value.to_le_bytes()[..width]);
            b
        };
        out.splice(at..at + 1 + width, new);
    }
    out
}

// ---------------------------------------------------------------------------
// Loading

/// A scratch folder of one thread, removed when the thread ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `bytes` as `dir/name` in a scratch folder of this thread and loads
/// it through the crate's public load path.
fn load_file(name: &str, bytes: &[u8]) -> Result<SklearnModel, Error> {
    thread_local! {
        static DIR: Scratch = {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let d = std::env::temp_dir().join(format!("skl-fuzz-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&d).expect("scratch dir");
            Scratch(d)
        };
    }
    let path = DIR.with(|d| d.0.join(name));
    std::fs::write(&path, bytes).expect("scratch file");
    let r = SklearnModel::from_file(&path, name, &LoadContext::default());
    let _ = std::fs::remove_file(&path);
    r
}

/// Loads `bytes` every way the crate reads them; every outcome but a panic
/// or an oversized allocation is fine. With `FUZZ_ARTIFACTS` set, inputs
/// that fail are written there (keep the smallest as a file under
/// `tests/fuzz-regressions`).
fn load_all(name: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    run_case(Artifact::File { ext: name, bytes }, || {
        load_all_inner(name, bytes)
    })
}

fn load_all_inner(name: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    bounded("from_file", || match load_file(name, bytes) {
        Ok(_) | Err(Error::Load(_)) => Ok(()),
        Err(e) => Err(TestCaseError::fail(format!("untyped load error {e:?}"))),
    })??;
    bounded("pickle::load", || {
        let _ = pickle::load(bytes, true);
        let _ = pickle::load(bytes, false);
    })?;
    bounded("decompress", || {
        let _ = container::decompress(bytes.to_vec());
    })?;
    Ok(())
}

fn zip_members(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in members {
        w.start_file(name.as_str(), opts).expect("zip member");
        w.write_all(bytes).expect("zip write");
    }
    w.finish().expect("zip finish").into_inner()
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("zlib");
    e.finish().expect("zlib")
}

fn seed_index() -> impl Strategy<Value = usize> {
    (0..seeds().len()).prop_map(|i| i)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(4096), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(
        prefix in prop::sample::select(vec![
            &b""[..], b"\x80\x04\x95", b"\x80\x02", b"(", b"x\x9c", b"PK\x03\x04", b"\x93NUMPY\x01\x00",
        ]),
        body in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut b = prefix.to_vec();
        b.extend_from_slice(&body);
        load_all("model.joblib", &b)?;
        bounded("parse_npy", || { let _ = skops::parse_npy(&b); })?;
    }

    #[test]
    fn mutated_files_never_panic(
        seed in seed_index(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        let (name, bytes) = &seeds()[seed];
        let b = apply(bytes.clone(), &edits);
        load_all(name, &b)?;
    }

    #[test]
    fn mutated_pickles_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 0..6),
        compress in any::<bool>(),
    ) {
        let p = &pickles()[seed.index(pickles().len())];
        let mut b = apply(p.clone(), &edits);
        if compress {
            b = zlib(&b);
        }
        load_all("model.joblib", &b)?;
    }

    #[test]
    fn pickles_with_huge_numbers_never_panic(
        seed in any::<prop::sample::Index>(),
        picks in prop::collection::vec(
            (any::<prop::sample::Index>(), 0..INTERESTING.len(), any::<bool>()), 1..4),
    ) {
        let p = &pickles()[seed.index(pickles().len())];
        let b = mutate_ints(p, &picks);
        load_all("model.pkl", &b)?;
    }

    #[test]
    fn mutated_skops_members_never_panic(
        seed in any::<prop::sample::Index>(),
        member in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
        drop_member in prop::option::weighted(0.1, any::<prop::sample::Index>()),
    ) {
        let files = skops_members();
        let mut members = files[seed.index(files.len())].clone();
        let m = member.index(members.len());
        members[m].1 = apply(std::mem::take(&mut members[m].1), &edits);
        if members[m].0.ends_with(".npy") {
            let b = members[m].1.clone();
            bounded("parse_npy", || { let _ = skops::parse_npy(&b); })?;
        }
        if let Some(d) = drop_member {
            members.remove(d.index(members.len()));
        }
        let z = zip_members(&members);
        bounded("skops", || match load_file("model.skops", &z) {
            Ok(_) | Err(Error::Load(_)) => Ok(()),
            Err(e) => Err(TestCaseError::fail(format!("untyped load error {e:?}"))),
        })??;
    }
}

#[test]
fn seeds_still_load() {
    // The harness feeds the real load path: unmutated seeds must load.
    for (name, bytes) in seeds().iter().take(20) {
        if let Err(e) = load_file(name, bytes) {
            panic!("{name}: {e}");
        }
    }
    let z = zip_members(&skops_members()[0]);
    load_file("model.skops", &z).expect("rezipped skops seed loads");
}

#[test]
fn regressions_fail_cleanly() {
    // Inputs the harness once found to panic or over-allocate.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut n = 0;
    for e in std::fs::read_dir(&dir)
        .expect("tests/fuzz-regressions")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        let bytes = std::fs::read(e.path()).expect("regression file");
        if let Err(err) = load_all(&name, &bytes) {
            panic!("{name}: {err}");
        }
        n += 1;
    }
    assert!(n > 0);
}
