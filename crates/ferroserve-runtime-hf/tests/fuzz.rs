//! Property-driven fuzzing of the HuggingFace encoder loader, through the
//! public [`HfEncoderRuntime::load_model`]: `config.json`
//! ([`EncoderConfig::from_json`]), the sentence-transformers files
//! (`modules.json`, `sentence_bert_config.json`, pooling / dense / normalize
//! module configs), `tokenizer.json` / `tokenizer_config.json`, and the
//! safetensors headers of the checkpoint and of dense modules.
//!
//! Inputs are mutations of the committed fixture folders in
//! `tests/fixtures/hf`: byte edits of any JSON file and of the safetensors
//! headers (flips, inserts, deletes, truncation, splices, interesting
//! integers), and structured edits of the JSON documents and of the
//! safetensors headers (a number replaced by a huge, negative, zero or
//! fractional value; a string replaced by a path outside the folder, an
//! empty string or garbage). Each load must
//! return `Ok` or `Error::Load`, never panic, and never ask the allocator
//! for more than [`ferroserve_fuzz::ALLOC_LIMIT`] bytes at once (a counting allocator in this
//! test binary records the largest request of each case).
//!
//! Runs in CI with a bounded number of cases per property (see [`cases`]);
//! `PROPTEST_CASES=5000 cargo test --release -p ferroserve-runtime-hf --test
//! fuzz` runs longer.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ferroserve_core::{Error, LoadContext};
use ferroserve_fuzz::{
    apply, bounded, cases, count_leaves, edit, mutate_safetensors_header, replace_leaf, run_case,
    scratch, Artifact, Folder,
};
use ferroserve_runtime_hf::{EncoderConfig, HfEncoderRuntime};
use proptest::prelude::*;
use serde_json::Value;

#[global_allocator]
static GUARD: ferroserve_fuzz::Guard = ferroserve_fuzz::Guard;

// ---------------------------------------------------------------------------
// Seeds and mutations

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf")
}

fn read_folder(root: &Path, dir: &Path, out: &mut Folder) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            read_folder(root, &p, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            let rel = rel.to_string_lossy().to_string();
            if rel != "reference.json" && !rel.ends_with(".md") {
                out.push((rel, std::fs::read(&p).expect("fixture file")));
            }
        }
    }
}

/// The fixture folders (all but the real MiniLM).
fn seeds() -> &'static [Folder] {
    static S: OnceLock<Vec<Folder>> = OnceLock::new();
    S.get_or_init(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
            .expect("hf fixtures")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("config.json").is_file() && !p.ends_with("minilm"))
            .collect();
        dirs.sort();
        let out: Vec<Folder> = dirs
            .iter()
            .map(|d| {
                let mut f = Vec::new();
                read_folder(d, d, &mut f);
                f.sort();
                f
            })
            .collect();
        assert!(out.len() >= 8, "hf fixtures not found");
        out
    })
}

/// Writes `files` into a scratch folder of this thread and loads it. With
/// `FUZZ_ARTIFACTS` set, failing inputs are written there.
fn load(files: &Folder) -> Result<(), TestCaseError> {
    let dir = scratch("hf", files);
    run_case(Artifact::Folder(files), || {
        bounded("load", || {
            if let Some((_, b)) = files.iter().find(|(n, _)| n == "config.json") {
                if let Ok(v) = serde_json::from_slice::<Value>(b) {
                    let _ = EncoderConfig::from_json(&v);
                }
            }
            match HfEncoderRuntime::new().load_model(dir.path(), &LoadContext::default()) {
                Ok(_) | Err(Error::Load(_)) => Ok(()),
                Err(e) => Err(TestCaseError::fail(format!("untyped load error {e:?}"))),
            }
        })?
    })
}

/// The JSON leaves the mutations replace: numbers, strings and booleans.
fn non_null(v: &Value) -> bool {
    !v.is_null()
}

/// Replacement leaves for the JSON documents.
fn nasty_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            serde_json::json!(0),
            serde_json::json!(-1),
            serde_json::json!(1),
            serde_json::json!(2),
            serde_json::json!(1u64 << 32),
            serde_json::json!(1u64 << 40),
            serde_json::json!(u64::MAX),
            serde_json::json!(i64::MIN),
            serde_json::json!(1e300),
            serde_json::json!(-0.5),
            serde_json::json!(""),
            serde_json::json!("../../.."),
            serde_json::json!("/etc"),
            serde_json::json!("1_Pooling"),
            serde_json::json!("sentence_transformers.models.Dense"),
            serde_json::json!("bert"),
            serde_json::json!("[MASK]"),
            serde_json::json!(true),
            Value::Null,
            serde_json::json!([]),
            serde_json::json!({}),
        ]),
        (0u64..70_000).prop_map(|n| serde_json::json!(n)),
    ]
}

/// The JSON files of a folder.
fn json_files(files: &Folder) -> Vec<usize> {
    files
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| n.ends_with(".json"))
        .map(|(i, _)| i)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_config_never_panics(
        seed in any::<prop::sample::Index>(),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut files = seeds()[seed.index(seeds().len())].clone();
        for f in files.iter_mut().filter(|(n, _)| n == "config.json") {
            f.1 = body.clone();
        }
        load(&files)?;
    }

    #[test]
    fn json_leaves_replaced_never_panic(
        seed in any::<prop::sample::Index>(),
        file in any::<prop::sample::Index>(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), nasty_json()), 1..4),
    ) {
        let mut files = seeds()[seed.index(seeds().len())].clone();
        let jsons = json_files(&files);
        let f = jsons[file.index(jsons.len())];
        if let Ok(mut v) = serde_json::from_slice::<Value>(&files[f].1) {
            let n = count_leaves(&v, non_null);
            for (at, new) in &picks {
                let mut k = at.index(n.max(1));
                replace_leaf(&mut v, &mut k, new, non_null);
            }
            files[f].1 = serde_json::to_vec(&v).expect("json");
        }
        load(&files)?;
    }

    #[test]
    fn config_leaves_replaced_never_panic(
        seed in any::<prop::sample::Index>(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), nasty_json()), 1..4),
    ) {
        let mut files = seeds()[seed.index(seeds().len())].clone();
        for f in files.iter_mut().filter(|(n, _)| n == "config.json") {
            let mut v: Value = serde_json::from_slice(&f.1).expect("seed config");
            let n = count_leaves(&v, non_null);
            for (at, new) in &picks {
                let mut k = at.index(n.max(1));
                replace_leaf(&mut v, &mut k, new, non_null);
            }
            f.1 = serde_json::to_vec(&v).expect("json");
        }
        load(&files)?;
    }

    #[test]
    fn safetensors_headers_never_panic(
        seed in any::<prop::sample::Index>(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), nasty_json()), 1..4),
    ) {
        let mut files = seeds()[seed.index(seeds().len())].clone();
        for f in files.iter_mut().filter(|(n, _)| n.ends_with(".safetensors")) {
            f.1 = mutate_safetensors_header(&f.1, &picks, non_null);
        }
        load(&files)?;
    }

    #[test]
    fn mutated_bytes_never_panic(
        seed in any::<prop::sample::Index>(),
        file in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut files = seeds()[seed.index(seeds().len())].clone();
        let f = file.index(files.len());
        let bytes = std::mem::take(&mut files[f].1);
        // Safetensors: mutate the JSON header (and its length), not the data.
        files[f].1 = if files[f].0.ends_with(".safetensors") && bytes.len() >= 8 {
            let hlen = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
            let end = usize::try_from(hlen).map_or(bytes.len(), |h| (8 + h).min(bytes.len()));
            let mut head = apply(bytes[..end].to_vec(), &edits);
            head.extend_from_slice(&bytes[end..]);
            head
        } else {
            apply(bytes, &edits)
        };
        load(&files)?;
    }
}

#[test]
fn seeds_still_load() {
    for files in seeds() {
        load(files).expect("seed");
    }
}

#[test]
fn regressions_fail_cleanly() {
    // Inputs the harness once found to panic or over-allocate: a folder per case.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    for case in rd.flatten() {
        let mut files = Vec::new();
        read_folder(&case.path(), &case.path(), &mut files);
        if let Err(e) = load(&files) {
            panic!("{}: {e}", case.path().display());
        }
    }
}

#[test]
fn malformed_tokenizer_files_fail_cleanly() {
    // Found by this harness: a tokenizer.json cut right after `"decoder":`
    // made the tokenizers crate panic (an `expect` in its decoder
    // deserializer) and took the load down with it.
    let seed = seeds()
        .iter()
        .find(|f| f.iter().any(|(n, _)| n == "tokenizer.json"))
        .expect("a seed with a tokenizer");
    let tj = &seed
        .iter()
        .find(|(n, _)| n == "tokenizer.json")
        .expect("tokenizer.json")
        .1;
    let at = tj
        .windows(10)
        .position(|w| w == b"\"decoder\":")
        .expect("a decoder")
        + 10;
    let mut v: Value = serde_json::from_slice(tj).expect("seed tokenizer");
    for bad in [
        tj[..at].to_vec(),
        {
            v["decoder"] = serde_json::json!(5);
            serde_json::to_vec(&v).expect("json")
        },
        {
            v["decoder"] = serde_json::json!({"type": "Nope"});
            serde_json::to_vec(&v).expect("json")
        },
    ] {
        let mut files = seed.clone();
        for f in files.iter_mut().filter(|(n, _)| n == "tokenizer.json") {
            f.1 = bad.clone();
        }
        load(&files).expect("fails cleanly");
    }
}

#[test]
fn tokenizer_merges_longer_than_any_token_fail_cleanly() {
    // The tokenizers crate's BPE builder panics on a merge whose result is
    // longer than every token; the load must fail instead. (The encoder
    // fixtures use WordPiece and Unigram: borrow the BPE tokenizer of the
    // language-model fixtures.)
    let bpe = fixtures().join("../llm/llama/tokenizer.json");
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(bpe).expect("BPE tokenizer")).expect("json");
    let longest = v["model"]["vocab"]
        .as_object()
        .expect("a BPE vocabulary")
        .keys()
        .max_by_key(|k| k.len())
        .expect("tokens")
        .clone();
    let merges = v["model"]["merges"].as_array_mut().expect("merges");
    let merge = if merges.first().is_some_and(Value::is_array) {
        serde_json::json!([longest, longest])
    } else {
        serde_json::json!(format!("{longest} {longest}"))
    };
    merges.push(merge);
    let mut files = seeds()[0].clone();
    for f in files.iter_mut().filter(|(n, _)| n == "tokenizer.json") {
        f.1 = serde_json::to_vec(&v).expect("json");
    }
    load(&files).expect("fails cleanly");
}
