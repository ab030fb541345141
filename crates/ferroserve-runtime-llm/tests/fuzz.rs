//! Property-driven fuzzing of the language-model loaders, through the public
//! [`LlmRuntime`] load path (the one the server uses: weights, tokenizer,
//! chat template, generation defaults, engine start):
//! - GGUF files (`model/load_gguf.rs` with our header pre-validation, then
//!   candle's reader; the vocabulary, merges and chat template read from the
//!   GGUF metadata by `ferroserve-llm-text`);
//! - HuggingFace folders (`model/load_hf.rs`: `config.json`, the
//!   safetensors header, `tokenizer.json`, `tokenizer_config.json`,
//!   `generation_config.json`).
//!
//! Inputs are random bytes and mutations of the committed fixtures in
//! `tests/fixtures/llm`: byte edits (flips, inserts, deletes, truncation,
//! splices) and structured ones: every count, length, type, dimension,
//! offset and scalar value of a GGUF header (found by walking the seed's
//! header) overwritten with an interesting integer, and JSON numbers of
//! `config.json` and of the safetensors header (shapes, data offsets)
//! replaced with huge, negative, zero or non-integer values. Each load must return
//! `Ok` or `Error::Load`, never panic, and never ask the allocator for more
//! than [`ferroserve_fuzz::ALLOC_LIMIT`] bytes at once (a counting allocator in this test
//! binary records the largest request of each case).
//!
//! Runs in CI with a bounded number of cases per property (see [`cases`]);
//! `PROPTEST_CASES=2000 cargo test --release -p ferroserve-runtime-llm
//! --test fuzz` runs longer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ferroserve_core::{Error, LoadContext, ModelConfig, Runtime};
use ferroserve_fuzz::{
    apply, bounded, cases, count_leaves, edit, mutate_safetensors_header, replace_leaf, run_case,
    scratch, Artifact, Folder, INTERESTING,
};
use ferroserve_runtime_llm::LlmRuntime;
use proptest::prelude::*;
use serde_json::Value;

#[global_allocator]
static GUARD: ferroserve_fuzz::Guard = ferroserve_fuzz::Guard;

// ---------------------------------------------------------------------------
// Seeds and mutations

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llm")
}

/// The GGUF fixtures (the smaller ones).
fn gguf_seeds() -> &'static [Vec<u8>] {
    static S: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = fixtures().join("gguf");
        let out: Vec<Vec<u8>> = [
            "llama-f16.gguf",
            "llama-f32.gguf",
            "qwen2-f32.gguf",
            "mistral-f32.gguf",
            "llama256-q4_0.gguf",
            "llama256-q4_k_m.gguf",
        ]
        .iter()
        .filter_map(|f| std::fs::read(dir.join(f)).ok())
        .collect();
        assert!(out.len() >= 4, "gguf fixtures not found");
        out
    })
}

/// Places in a GGUF header holding integers: (offset, width).
fn gguf_sites(b: &[u8]) -> Vec<(usize, usize)> {
    struct W<'a> {
        b: &'a [u8],
        pos: usize,
        sites: Vec<(usize, usize)>,
    }
    impl W<'_> {
        fn int(&mut self, width: usize) -> Option<u64> {
            let s = self.b.get(self.pos..self.pos + width)?;
            let mut a = [0u8; 8];
            a[..width].copy_from_slice(s);
            self.sites.push((self.pos, width));
            self.pos += width;
            Some(u64::from_le_bytes(a))
        }
        fn string(&mut self) -> Option<()> {
            let n = usize::try_from(self.int(8)?).ok()?;
            self.pos = self.pos.checked_add(n)?;
            Some(())
        }
        fn value(&mut self, ty: u64) -> Option<()> {
            // Scalar values (sizes, token ids, context length…) are sites too.
            match ty {
                0 | 1 | 7 => self.sites.push((self.pos, 1)),
                2 | 3 => self.sites.push((self.pos, 2)),
                4..=6 => self.sites.push((self.pos, 4)),
                10..=12 => self.sites.push((self.pos, 8)),
                _ => {}
            }
            match ty {
                0 | 1 | 7 => self.pos += 1,
                2 | 3 => self.pos += 2,
                4..=6 => self.pos += 4,
                10..=12 => self.pos += 8,
                8 => self.string()?,
                9 => {
                    let ty = self.int(4)?;
                    let n = self.int(8)?;
                    // Record only the first few elements of long arrays.
                    let before = self.sites.len();
                    for i in 0..n {
                        self.value(ty)?;
                        if i > 4 {
                            self.sites.truncate(before + 8);
                        }
                    }
                }
                _ => return None,
            }
            Some(())
        }
    }
    let mut w = W {
        b,
        pos: 4,
        sites: Vec::new(),
    };
    let walk = |w: &mut W| -> Option<()> {
        w.int(4)?;
        let tensors = w.int(8)?;
        let kvs = w.int(8)?;
        for _ in 0..kvs {
            w.string()?;
            let ty = w.int(4)?;
            w.value(ty)?;
        }
        for _ in 0..tensors {
            w.string()?;
            let dims = w.int(4)?;
            for _ in 0..dims {
                w.int(8)?;
            }
            w.int(4)?;
            w.int(8)?;
        }
        Some(())
    };
    let _ = walk(&mut w);
    w.sites
}

fn gguf_site_lists() -> &'static [Vec<(usize, usize)>] {
    static S: OnceLock<Vec<Vec<(usize, usize)>>> = OnceLock::new();
    S.get_or_init(|| gguf_seeds().iter().map(|b| gguf_sites(b)).collect())
}

/// The files of the HuggingFace fixture folders.
fn hf_seeds() -> &'static [Folder] {
    static S: OnceLock<Vec<Folder>> = OnceLock::new();
    S.get_or_init(|| {
        ["llama", "qwen2", "gemma3", "phi3"]
            .iter()
            .filter_map(|d| {
                let dir = fixtures().join(d);
                let files: Vec<(String, Vec<u8>)> = [
                    "config.json",
                    "model.safetensors",
                    "tokenizer.json",
                    "tokenizer_config.json",
                    "generation_config.json",
                ]
                .iter()
                .filter_map(|f| std::fs::read(dir.join(f)).ok().map(|b| (f.to_string(), b)))
                .collect();
                (files.len() >= 3).then_some(files)
            })
            .collect()
    })
}

fn ctx() -> LoadContext {
    let mut parameters = BTreeMap::new();
    // A small KV budget: the engine sizes its block table by it.
    parameters.insert("kv_cache_memory".to_string(), "16MiB".to_string());
    LoadContext {
        config: ModelConfig {
            parameters,
            ..ModelConfig::default()
        },
        ..LoadContext::default()
    }
}

/// Writes `files` into a scratch folder of this thread and loads `main`
/// from it through the runtime. With `FUZZ_ARTIFACTS` set, failing inputs
/// are written there (to become regression cases).
fn load(files: &[(String, Vec<u8>)], main: &str) -> Result<(), TestCaseError> {
    let dir = scratch("llm", files);
    run_case(Artifact::Folder(files), || {
        bounded("load", || {
            match LlmRuntime::new().load_file(dir.path(), main, &ctx()) {
                Ok(_) | Err(Error::Load(_)) => Ok(()),
                Err(e) => Err(TestCaseError::fail(format!("untyped load error {e:?}"))),
            }
        })?
    })
}

/// JSON values that break size arithmetic.
fn json_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            serde_json::json!(0),
            serde_json::json!(-1),
            serde_json::json!(1),
            serde_json::json!(3),
            serde_json::json!(1u64 << 32),
            serde_json::json!(1u64 << 40),
            serde_json::json!(u64::MAX),
            serde_json::json!(i64::MIN),
            serde_json::json!(1e300),
            serde_json::json!(-1e300),
            serde_json::json!(0.5),
            serde_json::json!("7"),
            Value::Null,
        ]),
        (0u64..70_000).prop_map(|n| serde_json::json!(n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_gguf_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), version in 0u32..5) {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&body);
        load(&[("model.gguf".into(), b)], "model.gguf")?;
    }

    #[test]
    fn mutated_gguf_bytes_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
        head_only in any::<bool>(),
    ) {
        let s = &gguf_seeds()[seed.index(gguf_seeds().len())];
        // Header edits are the interesting ones: confine half the cases to
        // the first 4 KiB.
        let b = if head_only {
            let mut head = apply(s[..4096].to_vec(), &edits);
            head.extend_from_slice(&s[4096..]);
            head
        } else {
            apply(s.clone(), &edits)
        };
        load(&[("model.gguf".into(), b)], "model.gguf")?;
    }

    #[test]
    fn gguf_header_numbers_never_panic(
        seed in any::<prop::sample::Index>(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), 0..INTERESTING.len()), 1..4),
    ) {
        let i = seed.index(gguf_seeds().len());
        let mut b = gguf_seeds()[i].clone();
        let sites = &gguf_site_lists()[i];
        for (at, v) in picks {
            let (pos, width) = sites[at.index(sites.len())];
            b[pos..pos + width].copy_from_slice(&INTERESTING[v].to_le_bytes()[..width]);
        }
        load(&[("model.gguf".into(), b)], "model.gguf")?;
    }

    #[test]
    fn hf_config_numbers_never_panic(
        seed in any::<prop::sample::Index>(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), json_number()), 1..4),
    ) {
        let mut files = hf_seeds()[seed.index(hf_seeds().len())].clone();
        let cfg = files.iter_mut().find(|(n, _)| n == "config.json").expect("config.json");
        let mut v: Value = serde_json::from_slice(&cfg.1).expect("seed config");
        let n = count_leaves(&v, Value::is_number);
        for (at, new) in picks {
            let mut k = at.index(n.max(1));
            replace_leaf(&mut v, &mut k, &new, Value::is_number);
        }
        cfg.1 = serde_json::to_vec(&v).expect("json");
        load(&files, "model.safetensors")?;
    }

    #[test]
    fn safetensors_header_numbers_never_panic(
        seed in any::<prop::sample::Index>(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), json_number()), 1..4),
    ) {
        let mut files = hf_seeds()[seed.index(hf_seeds().len())].clone();
        for f in files.iter_mut().filter(|(n, _)| n.ends_with(".safetensors")) {
            f.1 = mutate_safetensors_header(&f.1, &picks, Value::is_number);
        }
        load(&files, "model.safetensors")?;
    }

    #[test]
    fn mutated_hf_files_never_panic(
        seed in any::<prop::sample::Index>(),
        file in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut files = hf_seeds()[seed.index(hf_seeds().len())].clone();
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
        load(&files, "model.safetensors")?;
    }
}

#[test]
fn seeds_still_load() {
    for s in gguf_seeds() {
        load(&[("model.gguf".into(), s.clone())], "model.gguf").expect("gguf seed");
    }
    for files in hf_seeds() {
        load(files, "model.safetensors").expect("hf seed");
    }
    assert!(
        gguf_site_lists().iter().all(|s| s.len() > 20),
        "GGUF header walk failed"
    );
}

#[test]
fn tensor_sizes_that_wrap_fail_cleanly() {
    // Found by this harness: a 1-D F32 tensor of 2^62 or 2^63 elements. Its
    // byte size wraps to 0 in candle's reader, which then passes its
    // "fits in the file" check and panics building the tensor ("capacity
    // overflow"). The header pre-validation refuses it.
    let seed = std::fs::read(fixtures().join("gguf/llama-f32.gguf")).expect("seed");
    let name = b"blk.0.ffn_norm.weight";
    let at = seed
        .windows(name.len())
        .position(|w| w == name)
        .expect("tensor info")
        + name.len();
    assert_eq!(seed[at..at + 4], 1u32.to_le_bytes(), "a 1-D tensor");
    for dim in [1u64 << 62, 1 << 63, u64::MAX] {
        let mut b = seed.clone();
        b[at + 4..at + 12].copy_from_slice(&dim.to_le_bytes());
        load(&[("model.gguf".into(), b)], "model.gguf").expect("fails cleanly");
    }
}

#[test]
fn zero_alignment_fails_cleanly() {
    // candle divides by `general.alignment`; a zero must be refused first.
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    let key = b"general.alignment";
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    load(&[("model.gguf".into(), b)], "model.gguf").expect("fails cleanly");
}

#[test]
fn malformed_tokenizer_files_fail_cleanly() {
    // The tokenizers crate panics (an `expect` in its decoder deserializer)
    // on some malformed tokenizer.json files; the load must fail instead.
    let seed = &hf_seeds()[0];
    let tj = &seed
        .iter()
        .find(|(n, _)| n == "tokenizer.json")
        .expect("tokenizer.json")
        .1;
    let mut v: Value = serde_json::from_slice(tj).expect("seed tokenizer");
    for decoder in [
        serde_json::json!(5),
        serde_json::json!({"type": "Nope"}),
        serde_json::json!([1]),
    ] {
        v["decoder"] = decoder;
        let mut files = seed.clone();
        for f in files.iter_mut().filter(|(n, _)| n == "tokenizer.json") {
            f.1 = serde_json::to_vec(&v).expect("json");
        }
        load(&files, "model.safetensors").expect("fails cleanly");
    }
}

#[test]
fn tokenizer_merges_longer_than_any_token_fail_cleanly() {
    // The tokenizers crate's BPE builder panics on a merge whose result is
    // longer than every token (found through the GGUF vocabulary, see
    // ferroserve-llm-text's fuzz test); tokenizer.json reaches the same
    // builder, and the load must fail instead.
    let seed = &hf_seeds()[0];
    let tj = &seed
        .iter()
        .find(|(n, _)| n == "tokenizer.json")
        .expect("tokenizer.json")
        .1;
    let mut v: Value = serde_json::from_slice(tj).expect("seed tokenizer");
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
    let mut files = seed.clone();
    for f in files.iter_mut().filter(|(n, _)| n == "tokenizer.json") {
        f.1 = serde_json::to_vec(&v).expect("json");
    }
    load(&files, "model.safetensors").expect("fails cleanly");
}
