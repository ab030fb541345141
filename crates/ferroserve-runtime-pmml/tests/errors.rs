//! Broken, truncated and hostile documents give clear load errors (never a
//! panic); hostile definitions that only fail at evaluation give request
//! errors.

use std::path::Path;

use ferroserve_core::{Error, LoadContext, Runtime};
use ferroserve_runtime_pmml::value::Value;
use ferroserve_runtime_pmml::{LoadOptions, Method, PmmlModel, PmmlRuntime};

fn opts() -> LoadOptions {
    LoadOptions {
        model_file: "model.pmml".into(),
        method: Method::Predict,
    }
}

fn load_err(text: &str) -> String {
    match PmmlModel::from_text(text, &opts()) {
        Err(Error::Load(m)) => m,
        Err(e) => panic!("expected a load error, got {e:?}"),
        Ok(_) => panic!("expected a load error for:\n{text}"),
    }
}

const HEAD: &str = r#"<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>
<DataField name="x" optype="continuous" dataType="double"/>
<DataField name="y" optype="continuous" dataType="double"/></DataDictionary>"#;

fn with_model(body: &str) -> String {
    format!("{HEAD}{body}</PMML>")
}

fn regression(transforms: &str, predictor: &str) -> String {
    with_model(&format!(
        r#"<RegressionModel functionName="regression"><MiningSchema><MiningField name="x"/>
<MiningField name="y" usageType="target"/></MiningSchema>{transforms}
<RegressionTable intercept="1"><NumericPredictor name="{predictor}" coefficient="2"/></RegressionTable></RegressionModel>"#
    ))
}

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/pmml")
        .join(name)
        .join("model.pmml");
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn not_xml_or_not_pmml() {
    assert!(load_err("").contains("not valid XML"));
    assert!(load_err("\u{0}\u{1}binary").contains("not valid XML"));
    assert!(load_err("{\"learner\": {}}").contains("not valid XML"));
    assert!(load_err("<html><body/></html>").contains("not <PMML>"));
    assert!(load_err(r#"<PMML version="2.0"><DataDictionary/></PMML>"#).contains("version '2.0'"));
    assert!(load_err(r#"<PMML version="4.4"/>"#).contains("DataDictionary"));
}

#[test]
fn truncated_files() {
    let text = fixture("rf_iris");
    for cut in [10, text.len() / 3, text.len() / 2, text.len() - 20] {
        let m = load_err(&text[..cut]);
        assert!(m.contains("not valid XML"), "{m}");
    }
}

#[test]
fn unsupported_elements_are_named() {
    let m = load_err(&with_model(
        r#"<SupportVectorMachineModel functionName="regression"><MiningSchema/></SupportVectorMachineModel>"#,
    ));
    assert!(
        m.contains("SupportVectorMachineModel is not supported") && m.contains("TreeModel"),
        "{m}"
    );
    let m = load_err(&regression(
        r#"<LocalTransformations><DerivedField name="d" optype="continuous" dataType="double"><TextIndex textField="x"><FieldRef field="x"/></TextIndex></DerivedField></LocalTransformations>"#,
        "d",
    ));
    assert!(
        m.contains("<TextIndex> is not supported") && m.contains("line"),
        "{m}"
    );
    let m = load_err(&regression(
        r#"<LocalTransformations><DerivedField name="d" optype="continuous" dataType="double"><Apply function="nosuch"><FieldRef field="x"/></Apply></DerivedField></LocalTransformations>"#,
        "d",
    ));
    assert!(m.contains("function 'nosuch' is not supported"), "{m}");
    let m = load_err(&with_model(
        r#"<TreeModel functionName="clustering"><MiningSchema/><Node><True/></Node></TreeModel>"#,
    ));
    assert!(m.contains("functionName 'clustering'"), "{m}");
    let m = load_err(&regression("", "nosuchfield"));
    assert!(m.contains("field 'nosuchfield' is not defined"), "{m}");
    let m = load_err(&with_model(
        r#"<TreeModel functionName="regression" missingValueStrategy="aggregateNodes"><MiningSchema/><Node><True/></Node></TreeModel>"#,
    ));
    assert!(m.contains("aggregateNodes"), "{m}");
    let m = load_err(HEAD);
    assert!(m.contains("not valid XML") || m.contains("no model"), "{m}");
    let m = load_err(&format!("{HEAD}</PMML>"));
    assert!(m.contains("no model element"), "{m}");
    let bad_type = r#"<PMML version="4.4"><DataDictionary><DataField name="d" optype="continuous" dataType="date"/></DataDictionary></PMML>"#;
    assert!(load_err(bad_type).contains("dataType 'date' is not supported"));
}

#[test]
fn hostile_documents() {
    // Entity expansion (billion laughs): DTDs are refused.
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><PMML version="4.4">&lol2;</PMML>"#;
    assert!(load_err(laughs).contains("not valid XML"));
    // Nesting deep enough to exhaust a stack if walked recursively.
    let depth = 5000;
    let pred = format!(
        "{}<True/><True/>{}",
        r#"<CompoundPredicate booleanOperator="and"><True/>"#.repeat(depth),
        "</CompoundPredicate>".repeat(depth)
    );
    let doc = with_model(&format!(
        r#"<TreeModel functionName="regression"><MiningSchema/><Node score="1">{pred}</Node></TreeModel>"#
    ));
    assert!(load_err(&doc).contains("nested deeper"));
    // A deep but legal tree is fine and evaluated without recursion.
    let levels = 200;
    let mut tree = String::new();
    for i in 0..levels {
        tree.push_str(&format!(
            r#"<Node score="{i}"><SimplePredicate field="x" operator="greaterThan" value="{i}"/>"#
        ));
    }
    tree.push_str(&"</Node>".repeat(levels));
    let doc = with_model(&format!(
        r#"<TreeModel functionName="regression" noTrueChildStrategy="returnLastPrediction"><MiningSchema><MiningField name="x"/></MiningSchema><Node score="-1"><True/>{tree}</Node></TreeModel>"#
    ));
    let m = PmmlModel::from_text(&doc, &opts()).unwrap();
    let r = m
        .evaluate_rows(&[vec![Some(Value::Double(150.5))]])
        .unwrap();
    assert_eq!(r[0].predicted, Value::Double(150.0));
}

#[test]
fn cyclic_definitions_fail_the_request_not_the_process() {
    let doc = regression(
        r#"<LocalTransformations>
<DerivedField name="a" optype="continuous" dataType="double"><Apply function="+"><FieldRef field="b"/><Constant>1</Constant></Apply></DerivedField>
<DerivedField name="b" optype="continuous" dataType="double"><FieldRef field="a"/></DerivedField>
</LocalTransformations>"#,
        "a",
    );
    let m = PmmlModel::from_text(&doc, &opts()).unwrap();
    match m.evaluate_rows(&[vec![Some(Value::Double(1.0))]]) {
        Err(Error::InvalidArgument(e)) => assert!(e.contains("deeper"), "{e}"),
        other => panic!("{other:?}"),
    }
    let doc = format!(
        r#"{HEAD}<TransformationDictionary><DefineFunction name="f" optype="continuous" dataType="double">
<ParameterField name="p"/><Apply function="f"><FieldRef field="p"/></Apply></DefineFunction></TransformationDictionary>
<RegressionModel functionName="regression"><MiningSchema><MiningField name="x"/></MiningSchema>
<LocalTransformations><DerivedField name="d" optype="continuous" dataType="double"><Apply function="f"><FieldRef field="x"/></Apply></DerivedField></LocalTransformations>
<RegressionTable intercept="1"><NumericPredictor name="d" coefficient="2"/></RegressionTable></RegressionModel></PMML>"#
    );
    let m = PmmlModel::from_text(&doc, &opts()).unwrap();
    assert!(matches!(
        m.evaluate_rows(&[vec![Some(Value::Double(1.0))]]),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn invalid_values_follow_the_mining_schema() {
    let doc = r#"<PMML version="4.4"><DataDictionary>
<DataField name="c" optype="categorical" dataType="string"><Value value="a"/><Value value="b"/></DataField>
<DataField name="n" optype="continuous" dataType="integer"><Interval closure="closedClosed" leftMargin="0" rightMargin="10"/></DataField>
</DataDictionary>
<RegressionModel functionName="regression"><MiningSchema><MiningField name="c"/><MiningField name="n" invalidValueTreatment="asMissing" missingValueReplacement="5"/></MiningSchema>
<RegressionTable intercept="1"><NumericPredictor name="n" coefficient="2"/><CategoricalPredictor name="c" value="b" coefficient="10"/></RegressionTable></RegressionModel></PMML>"#;
    let m = PmmlModel::from_text(doc, &opts()).unwrap();
    let row = |c: &str, n: f64| vec![Some(Value::str(c)), Some(Value::Double(n))];
    assert_eq!(
        m.evaluate_rows(&[row("b", 2.0)]).unwrap()[0].predicted,
        Value::Double(15.0)
    );
    // n out of its interval: asMissing, then replaced by 5.
    assert_eq!(
        m.evaluate_rows(&[row("a", 11.0)]).unwrap()[0].predicted,
        Value::Double(11.0)
    );
    // n not an integer: invalid as well.
    assert_eq!(
        m.evaluate_rows(&[row("a", 2.5)]).unwrap()[0].predicted,
        Value::Double(11.0)
    );
    // c not a valid value: returnInvalid (the default) fails the request.
    match m.evaluate_rows(&[row("zzz", 1.0)]) {
        Err(Error::InvalidArgument(e)) => {
            assert!(e.contains("field 'c'") && e.contains("zzz"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn detection() {
    let dir = std::env::temp_dir().join(format!("pmml-detect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rt = PmmlRuntime::new();
    assert_eq!(rt.format(), "pmml");
    assert_eq!(rt.detect(&dir), None);
    std::fs::write(dir.join("model.pmml"), "{\"not\": \"pmml\"}").unwrap();
    assert_eq!(rt.detect(&dir), None);
    std::fs::write(dir.join("a.pmml"), fixture("logreg_iris")).unwrap();
    assert_eq!(rt.detect(&dir), Some("a.pmml".into()));
    std::fs::write(dir.join("b.pmml"), fixture("logreg_iris")).unwrap();
    assert_eq!(rt.detect(&dir), None, "two candidates: ambiguous");
    std::fs::write(dir.join("model.pmml"), fixture("logreg_iris")).unwrap();
    assert_eq!(rt.detect(&dir), Some("model.pmml".into()));
    assert!(rt.load(&dir, &LoadContext::default()).is_ok());
    std::fs::write(dir.join("model.pmml"), &fixture("logreg_iris")[..300]).unwrap();
    assert!(matches!(
        rt.load(&dir, &LoadContext::default()),
        Err(Error::Load(_))
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deep_expressions_fail_within_a_small_stack() {
    // Ten derived fields, each a 400-deep chain of additions on the
    // previous one: evaluation depth is bounded, so this fails the request
    // on a thread with a 1 MiB stack (release) instead of overflowing it.
    let depth = 400;
    let mut fields = String::new();
    for i in 0..10 {
        let prev = if i == 0 {
            "x".to_string()
        } else {
            format!("d{}", i - 1)
        };
        let inner = format!(r#"<FieldRef field="{prev}"/>"#);
        let e = format!(
            "{}{inner}{}",
            r#"<Apply function="+"><Constant dataType="double">1</Constant>"#.repeat(depth),
            "</Apply>".repeat(depth)
        );
        fields.push_str(&format!(
            r#"<DerivedField name="d{i}" optype="continuous" dataType="double">{e}</DerivedField>"#
        ));
    }
    let doc = regression(
        &format!("<LocalTransformations>{fields}</LocalTransformations>"),
        "d9",
    );
    let m = PmmlModel::from_text(&doc, &opts()).unwrap();
    // Debug builds use far bigger frames.
    let stack = if cfg!(debug_assertions) {
        16 << 20
    } else {
        1 << 20
    };
    let r = std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            m.evaluate_rows(&[vec![Some(Value::Double(1.0))]])
                .map(|_| ())
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(
        matches!(r, Err(Error::InvalidArgument(ref e)) if e.contains("deeper")),
        "{r:?}"
    );
}

#[test]
fn mutated_documents_never_panic() {
    let base = fixture("hw_transforms").into_bytes();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..400 {
        let mut b = base.clone();
        for _ in 0..(1 + next() % 4) {
            let i = (next() % b.len() as u64) as usize;
            match next() % 3 {
                0 => b[i] = (next() % 128) as u8,
                1 => {
                    b.remove(i);
                }
                _ => b.insert(i, b"<>\"/ =019.-aZ"[(next() % 13) as usize]),
            }
        }
        let Ok(text) = String::from_utf8(b) else {
            continue;
        };
        if let Ok(m) = PmmlModel::from_text(&text, &opts()) {
            let row: Vec<Option<Value>> = m
                .document()
                .inputs
                .iter()
                .map(|_| Some(Value::Double(1.5)))
                .collect();
            let _ = m.evaluate_rows(&[row]);
        }
    }
}
