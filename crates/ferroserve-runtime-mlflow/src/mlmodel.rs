//! Reading an `MLmodel` file: flavors and signature.

use std::collections::BTreeMap;
use std::path::Path;

use ferroserve_core::{DataType, Error};
use serde::Deserialize;
use serde_json::Value;

/// What ferroserve serves natively, for error messages.
pub const SUPPORTED: &str = "sklearn (pickle, cloudpickle, joblib or skops), xgboost, lightgbm \
     (a Booster), onnx, and python_function whose loader_module is mlflow.sklearn, \
     mlflow.xgboost, mlflow.lightgbm or mlflow.onnx";

/// The parts of an `MLmodel` file ferroserve reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MlModel {
    /// Flavor name → its configuration.
    #[serde(default)]
    pub flavors: BTreeMap<String, serde_yaml::Value>,
    /// The model signature, as MLflow writes it (JSON strings).
    #[serde(default)]
    pub signature: Option<RawSignature>,
    /// The MLflow version that saved the model.
    #[serde(default)]
    pub mlflow_version: Option<String>,
    /// Where the input example is (`artifact_path`, `serving_input_path`,
    /// `type`, `pandas_orient`), when the model was saved with one.
    #[serde(default)]
    pub saved_input_example_info: Option<serde_yaml::Value>,
}

/// Largest input example file read into the model metadata.
pub const MAX_EXAMPLE_BYTES: u64 = 1 << 20;

/// The model's input examples, as MLflow saved them beside `MLmodel`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputExamples {
    /// `input_example.json`: the example in MLflow's storage form (for a
    /// data frame `{"columns": [...], "data": [[...]]}`).
    pub input_example: Option<Value>,
    /// `saved_input_example_info` (type, pandas_orient, file names).
    pub info: Option<Value>,
    /// `serving_input_example.json`: a request body for `/invocations`
    /// (`{"dataframe_split": ...}`, `{"inputs": ...}`).
    pub serving_input_example: Option<Value>,
}

/// `name` when it is a plain file name inside the model folder (no
/// directories, no `..`): an `MLmodel` must not point the server at other
/// files.
fn plain_file_name(name: &str) -> Option<&str> {
    let p = Path::new(name);
    let mut parts = p.components();
    match (parts.next(), parts.next()) {
        (Some(std::path::Component::Normal(_)), None) => Some(name),
        _ => None,
    }
}

/// Reads `dir/name` as JSON when it is small enough; a missing file is
/// `None`, an unreadable or invalid one is logged and `None`.
fn read_example(dir: &Path, name: &str) -> Option<Value> {
    let Some(name) = plain_file_name(name) else {
        tracing::warn!(
            file = name,
            "MLmodel names an input example outside the model folder: ignored"
        );
        return None;
    };
    let path = dir.join(name);
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.len() > MAX_EXAMPLE_BYTES {
        tracing::info!(file = %path.display(), bytes = meta.len(), "input example larger than 1 MiB: not shown in the model metadata");
        return None;
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(file = %path.display(), "cannot read the input example: {e}");
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(file = %path.display(), "the input example is not JSON: {e}");
            None
        }
    }
}

/// `signature:` of an `MLmodel`: `inputs`/`outputs` are JSON text.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawSignature {
    /// JSON list of column or tensor specs.
    #[serde(default)]
    pub inputs: Option<String>,
    /// JSON list of column or tensor specs.
    #[serde(default)]
    pub outputs: Option<String>,
}

/// The flavor chosen to serve a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Flavor {
    /// MLflow flavor name (`sklearn`, …; `python_function` when only that).
    pub name: String,
    /// ferroserve runtime that loads it.
    pub format: &'static str,
    /// The model file, relative to the folder.
    pub file: String,
}

/// One column of a column-based signature.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// MLflow type (`double`, `long`, `string`, …).
    pub mlflow_type: String,
    /// Datatype of the v2 input.
    pub datatype: DataType,
}

fn str_of<'a>(v: &'a serde_yaml::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(|x| x.as_str())
}

impl MlModel {
    /// Reads `dir/MLmodel`.
    pub fn from_dir(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(crate::MLMODEL_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Load(format!("{}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| match e {
            Error::Load(m) => Error::Load(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses the text of an `MLmodel` file.
    pub fn parse(text: &str) -> Result<Self, Error> {
        serde_yaml::from_str(text).map_err(|e| Error::Load(format!("invalid MLmodel: {e}")))
    }

    /// The input examples saved with the model (`saved_input_example_info`:
    /// `artifact_path`, default `input_example.json`; `serving_input_path`,
    /// default `serving_input_example.json`). Only plain file names inside
    /// `dir` are read, each up to [`MAX_EXAMPLE_BYTES`].
    pub fn input_examples(&self, dir: &Path) -> InputExamples {
        let info = self.saved_input_example_info.as_ref();
        let name = |key: &str, default: &'static str| -> String {
            info.and_then(|i| str_of(i, key))
                .unwrap_or(default)
                .to_string()
        };
        let input_example =
            info.and_then(|_| read_example(dir, &name("artifact_path", "input_example.json")));
        let serving_input_example = read_example(
            dir,
            &name("serving_input_path", "serving_input_example.json"),
        );
        InputExamples {
            input_example,
            info: info.and_then(|i| serde_json::to_value(i).ok()),
            serving_input_example,
        }
    }

    /// The flavor to serve: a native one when present, else
    /// `python_function` when its `loader_module` is a native flavor's.
    pub fn pick_flavor(&self) -> Result<Flavor, Error> {
        for name in ["onnx", "sklearn", "xgboost", "lightgbm"] {
            if let Some(cfg) = self.flavors.get(name) {
                return flavor_from(name, name, cfg, false);
            }
        }
        let mut found: Vec<String> = self.flavors.keys().cloned().collect();
        if let Some(pf) = self.flavors.get("python_function") {
            let loader = str_of(pf, "loader_module").unwrap_or("");
            let native = match loader {
                "mlflow.sklearn" => Some("sklearn"),
                "mlflow.xgboost" => Some("xgboost"),
                "mlflow.lightgbm" => Some("lightgbm"),
                "mlflow.onnx" => Some("onnx"),
                _ => None,
            };
            if let Some(n) = native {
                return flavor_from("python_function", n, pf, true);
            }
            let what = if loader == "mlflow.pyfunc.model" {
                "a custom Python model".to_string()
            } else {
                format!("loader_module {loader}")
            };
            for f in found.iter_mut() {
                if f == "python_function" {
                    *f = format!("python_function ({what})");
                }
            }
        }
        Err(Error::Load(format!(
            "MLflow model flavors [{}] cannot be served natively; supported: {SUPPORTED}",
            if found.is_empty() {
                "(none listed)".to_string()
            } else {
                found.join(", ")
            }
        )))
    }

    /// The signature's columns when it is column-based (`None`: no
    /// signature or a tensor-based one).
    pub fn columns(&self) -> Result<Option<Vec<Column>>, Error> {
        let Some(text) = self.signature.as_ref().and_then(|s| s.inputs.as_deref()) else {
            return Ok(None);
        };
        let specs: Vec<Value> = serde_json::from_str(text)
            .map_err(|e| Error::Load(format!("MLmodel signature inputs: {e}")))?;
        if specs.is_empty()
            || specs
                .iter()
                .any(|s| s.get("type").and_then(Value::as_str) == Some("tensor"))
        {
            return Ok(None);
        }
        let mut cols = Vec::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            let ty = s.get("type").and_then(Value::as_str).unwrap_or("");
            let name = match s.get("name").and_then(Value::as_str) {
                Some(n) => n.to_string(),
                None => i.to_string(),
            };
            let datatype = match ty {
                "double" | "float" => DataType::F64,
                "long" | "integer" => DataType::I64,
                "boolean" => DataType::Bool,
                "string" | "binary" => DataType::Bytes,
                other => {
                    return Err(Error::Load(format!(
                        "MLmodel signature: column '{name}' has type '{other}', which ferroserve \
                         does not serve (supported: double, float, long, integer, boolean, string, binary)"
                    )))
                }
            };
            cols.push(Column {
                name,
                mlflow_type: ty.to_string(),
                datatype,
            });
        }
        Ok(Some(cols))
    }

    /// The signature as JSON (`{"inputs": [...], "outputs": [...]}`), for
    /// the model metadata.
    pub fn signature_json(&self) -> Option<Value> {
        let s = self.signature.as_ref()?;
        let part = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
                .unwrap_or(Value::Null)
        };
        Some(serde_json::json!({"inputs": part(&s.inputs), "outputs": part(&s.outputs)}))
    }
}

fn flavor_from(
    name: &str,
    native: &str,
    cfg: &serde_yaml::Value,
    pyfunc: bool,
) -> Result<Flavor, Error> {
    let (format, key, default): (&'static str, &str, &str) = match native {
        "sklearn" => (
            "sklearn",
            if pyfunc {
                "model_path"
            } else {
                "pickled_model"
            },
            "model.pkl",
        ),
        "xgboost" => ("xgboost", "data", "model.xgb"),
        "lightgbm" => ("lightgbm", "data", "model.lgb"),
        _ => ("onnx", "data", "model.onnx"),
    };
    if native == "sklearn" {
        let ser = str_of(cfg, "serialization_format")
            .or_else(|| str_of(cfg, "pickle_module"))
            .unwrap_or("cloudpickle");
        if !["pickle", "cloudpickle", "joblib", "skops"].contains(&ser) {
            return Err(Error::Load(format!(
                "MLflow sklearn model serialized with '{ser}', which ferroserve does not read \
                 (supported: pickle, cloudpickle, joblib, skops)"
            )));
        }
    }
    let file = str_of(cfg, key)
        .or_else(|| str_of(cfg, "data"))
        .unwrap_or(default);
    if file.split(['/', '\\']).any(|p| p == "..") || Path::new(file).is_absolute() {
        return Err(Error::Load(format!(
            "MLmodel: model file '{file}' is outside the model folder"
        )));
    }
    Ok(Flavor {
        name: name.to_string(),
        format,
        file: file.to_string(),
    })
}

impl Flavor {
    /// Checks that the file exists, and that a LightGBM file is a text
    /// model (MLflow pickles the scikit-learn API's `LGBMClassifier`).
    pub fn check_file(&self, dir: &Path) -> Result<(), Error> {
        let path = dir.join(&self.file);
        if !path.is_file() {
            return Err(Error::Load(format!(
                "MLflow {} model: {} is missing",
                self.name,
                path.display()
            )));
        }
        if self.format == "lightgbm" {
            let head = std::fs::read(&path)
                .map(|b| b.into_iter().take(4).collect::<Vec<u8>>())
                .unwrap_or_default();
            if head != b"tree" {
                return Err(Error::Load(format!(
                    "MLflow lightgbm model {} is not a LightGBM text model (MLflow pickles \
                     scikit-learn-API models such as LGBMClassifier); save the Booster instead: \
                     mlflow.lightgbm.save_model(model.booster_, path)",
                    path.display()
                )));
            }
        }
        Ok(())
    }
}
