//! Property-driven fuzzing of the PMML loader: the XML parse (roxmltree,
//! depth check), the document model (`DataDictionary`, `MiningSchema`,
//! transformations, targets, outputs) and the building of every model
//! element, through [`PmmlModel::from_text`] and the public file path
//! [`PmmlModel::from_file`]; every document that loads is also evaluated on
//! a few random rows.
//!
//! Inputs are random bytes and mutations of the committed fixtures in
//! `tests/fixtures/pmml/*/model.pmml`: byte edits (flips, inserts, deletes,
//! truncation, splices), and structured edits found by parsing the seed:
//! elements deleted, duplicated or moved, attribute values swapped for huge
//! numbers, NaN, negatives or garbage. Each load must return `Ok` or
//! `Error::Load`, never panic, and never ask the allocator for more than
//! [`ferroserve_fuzz::ALLOC_LIMIT`] bytes at once (a counting allocator in this test binary
//! records the largest request of each case).
//!
//! Runs in CI with a bounded number of cases per property (see [`cases`]);
//! `PROPTEST_CASES=20000 cargo test --release -p ferroserve-runtime-pmml
//! --test fuzz` runs longer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ferroserve_core::Error;
use ferroserve_fuzz::{apply, bounded, cases, edit, run_case, Artifact};
use ferroserve_runtime_pmml::value::Value;
use ferroserve_runtime_pmml::{LoadOptions, Method, PmmlModel};
use proptest::prelude::*;

#[global_allocator]
static GUARD: ferroserve_fuzz::Guard = ferroserve_fuzz::Guard;

// ---------------------------------------------------------------------------
// Seeds and mutations

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pmml")
}

/// The fixture documents, smallest first.
fn seeds() -> &'static [String] {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out: Vec<String> = std::fs::read_dir(fixtures())
            .expect("pmml fixtures")
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("model.pmml")).ok())
            .collect();
        out.sort_by_key(|s| (s.len(), s.clone()));
        assert!(out.len() > 30, "pmml fixtures not found");
        out
    })
}

/// Byte ranges of a seed's elements and attribute values.
struct Sites {
    elements: Vec<std::ops::Range<usize>>,
    values: Vec<std::ops::Range<usize>>,
}

fn sites() -> &'static [Sites] {
    static S: OnceLock<Vec<Sites>> = OnceLock::new();
    S.get_or_init(|| {
        seeds()
            .iter()
            .map(|text| {
                let doc = roxmltree::Document::parse(text).expect("seed parses");
                let mut elements = Vec::new();
                let mut values = Vec::new();
                for n in doc.descendants().filter(|n| n.is_element()) {
                    if n.parent().is_some_and(|p| p.is_element()) {
                        elements.push(n.range());
                    }
                    values.extend(n.attributes().map(|a| a.range_value()));
                }
                Sites { elements, values }
            })
            .collect()
    })
}

/// Attribute values that tend to break numeric and structural code.
const NASTY: [&str; 22] = [
    "",
    "0",
    "-1",
    "1e308",
    "-1e308",
    "1e-400",
    "NaN",
    "INF",
    "-Infinity",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "4294967296",
    "99999999999999999999999",
    "2147483648",
    "abc",
    "&amp;",
    "double",
    "string",
    "categorical",
    "x",
    "1 2 3",
];

/// One structured edit of a PMML document.
#[derive(Debug, Clone)]
enum XmlEdit {
    /// Removes an element.
    Delete(prop::sample::Index),
    /// Inserts a copy of an element right after itself.
    Duplicate(prop::sample::Index),
    /// Inserts a copy of one element after another (possibly elsewhere).
    Move(prop::sample::Index, prop::sample::Index),
    /// Replaces an attribute value.
    Value(prop::sample::Index, usize),
}

fn xml_edit() -> impl Strategy<Value = XmlEdit> {
    let idx = any::<prop::sample::Index>;
    prop_oneof![
        idx().prop_map(XmlEdit::Delete),
        idx().prop_map(XmlEdit::Duplicate),
        (idx(), idx()).prop_map(|(a, b)| XmlEdit::Move(a, b)),
        (idx(), 0..NASTY.len()).prop_map(|(a, v)| XmlEdit::Value(a, v)),
        (idx(), 0..NASTY.len()).prop_map(|(a, v)| XmlEdit::Value(a, v)),
    ]
}

/// Applies structured edits to seed `i`. The ranges are the seed's, so each
/// edit is applied to the original text and edits are made from the end
/// backwards; overlapping ones are dropped.
fn apply_xml(i: usize, edits: &[XmlEdit]) -> String {
    let text = &seeds()[i];
    let s = &sites()[i];
    // (range replaced, replacement)
    let mut ops: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for e in edits {
        match e {
            XmlEdit::Delete(a) if !s.elements.is_empty() => {
                ops.push((s.elements[a.index(s.elements.len())].clone(), String::new()));
            }
            XmlEdit::Duplicate(a) if !s.elements.is_empty() => {
                let r = s.elements[a.index(s.elements.len())].clone();
                ops.push((r.end..r.end, text[r].to_string()));
            }
            XmlEdit::Move(a, b) if !s.elements.is_empty() => {
                let from = s.elements[a.index(s.elements.len())].clone();
                let to = s.elements[b.index(s.elements.len())].end;
                ops.push((to..to, text[from].to_string()));
            }
            XmlEdit::Value(a, v) if !s.values.is_empty() => {
                ops.push((
                    s.values[a.index(s.values.len())].clone(),
                    NASTY[*v].to_string(),
                ));
            }
            _ => {}
        }
    }
    ops.sort_by(|a, b| b.0.start.cmp(&a.0.start).then(b.0.end.cmp(&a.0.end)));
    let mut out = text.clone();
    let mut floor = usize::MAX;
    for (r, new) in ops {
        if r.end > floor {
            continue;
        }
        floor = r.start;
        out.replace_range(r, &new);
    }
    out
}

fn opts() -> LoadOptions {
    LoadOptions {
        model_file: "model.pmml".into(),
        method: Method::Predict,
    }
}

/// A cell value for evaluation rows.
fn cell() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        any::<f64>().prop_map(|f| Some(Value::Double(f))),
        (-3.0f64..10.0).prop_map(|f| Some(Value::Double(f))),
        any::<i64>().prop_map(|i| Some(Value::Int(i))),
        prop::sample::select(vec!["a", "setosa", "", "0", "1", "NaN"])
            .prop_map(|s| Some(Value::Str(Arc::from(s)))),
    ]
}

/// Loads `text` through the text and the file paths and evaluates `rows`
/// on what loads; anything but a panic, an untyped error or an oversized
/// allocation is fine. With `FUZZ_ARTIFACTS` set, failing inputs are written
/// there.
fn load_all(text: &[u8], rows: &[Vec<Option<Value>>]) -> Result<(), TestCaseError> {
    run_case(
        Artifact::File {
            ext: "pmml",
            bytes: text,
        },
        || load_inner(text, rows),
    )
}

fn load_inner(text: &[u8], rows: &[Vec<Option<Value>>]) -> Result<(), TestCaseError> {
    let loaded = bounded("from_text", || {
        PmmlModel::from_text(&String::from_utf8_lossy(text), &opts())
    })?;
    match loaded {
        Ok(m) => {
            bounded("evaluate_rows", || match m.evaluate_rows(rows) {
                Ok(_) | Err(Error::InvalidArgument(_)) => Ok(()),
                Err(e) => Err(TestCaseError::fail(format!("evaluation error {e:?}"))),
            })??;
        }
        Err(Error::Load(_)) => {}
        Err(e) => return Err(TestCaseError::fail(format!("untyped load error {e:?}"))),
    }
    thread_local! {
        static FILE: PathBuf = {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::env::temp_dir().join(format!("pmml-fuzz-{}-{n}.pmml", std::process::id()))
        };
    }
    let path = FILE.with(|p| p.clone());
    std::fs::write(&path, text).expect("scratch file");
    let r = bounded("from_file", || PmmlModel::from_file(&path, &opts()))?;
    let _ = std::fs::remove_file(&path);
    match r {
        Ok(_) | Err(Error::Load(_)) => Ok(()),
        Err(e) => Err(TestCaseError::fail(format!("untyped load error {e:?}"))),
    }
}

fn rows() -> impl Strategy<Value = Vec<Vec<Option<Value>>>> {
    prop::collection::vec(prop::collection::vec(cell(), 0..12), 1..3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(4096), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(
        prefix in prop::sample::select(vec![
            &b""[..],
            b"<PMML version=\"4.4\">",
            b"<?xml version=\"1.0\"?><PMML xmlns=\"http://www.dmg.org/PMML-4_4\" version=\"4.4\"><DataDictionary>",
        ]),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut b = prefix.to_vec();
        b.extend_from_slice(&body);
        load_all(&b, &[vec![None]])?;
    }

    #[test]
    fn mutated_bytes_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..8),
        rows in rows(),
    ) {
        let s = &seeds()[seed.index(seeds().len())];
        let b = apply(s.as_bytes().to_vec(), &edits);
        load_all(&b, &rows)?;
    }

    #[test]
    fn mutated_structure_never_panics(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(xml_edit(), 1..6),
        rows in rows(),
    ) {
        let i = seed.index(seeds().len());
        let text = apply_xml(i, &edits);
        load_all(text.as_bytes(), &rows)?;
    }

    #[test]
    fn one_attribute_swapped_never_panics(
        seed in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        value in 0..NASTY.len(),
        rows in rows(),
    ) {
        // One edit keeps most documents loadable, so evaluation is reached.
        let i = seed.index(seeds().len());
        let text = apply_xml(i, &[XmlEdit::Value(at, value)]);
        load_all(text.as_bytes(), &rows)?;
    }
}

#[test]
fn seeds_still_load() {
    for s in seeds() {
        if let Err(e) = PmmlModel::from_text(s, &opts()) {
            panic!("a seed fails to load: {e}");
        }
    }
}

#[test]
fn regressions_fail_cleanly() {
    // Inputs the harness once found to panic or over-allocate.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in rd.flatten() {
        let bytes = std::fs::read(e.path()).expect("regression file");
        let row = vec![Some(Value::Double(1.0)); 8];
        if let Err(err) = load_all(&bytes, &[row, vec![None; 8]]) {
            panic!("{}: {err}", e.path().display());
        }
    }
}
