//! Serves MLflow model folders (format name `mlflow`).
//!
//! A folder with an `MLmodel` file (what `mlflow.<flavor>.save_model` and
//! `log_model` write) is read for its flavors and signature; the model itself
//! is loaded by one of ferroserve's native runtimes, handed to
//! [`MlflowRuntime::new`] as delegates, so this crate names no engine:
//!
//! | flavor | file (from `MLmodel`) | delegate |
//! |---|---|---|
//! | `sklearn` (`serialization_format`/`pickle_module` pickle, cloudpickle, joblib, skops) | `pickled_model` (`model.pkl`, `model.skops`) | `sklearn` |
//! | `xgboost` | `data` (`model.xgb`, `model.json`, `model.ubj`) | `xgboost` |
//! | `lightgbm` (a `Booster`) | `data` (`model.lgb`) | `lightgbm` |
//! | `onnx` | `data` (`model.onnx`) | `onnx` |
//! | `python_function` whose `loader_module` is one of the above | `model_path` / `data` | as above |
//!
//! Any other flavor (pytorch, tensorflow, a custom `mlflow.pyfunc` model, …)
//! fails to load with an error naming it and listing what is supported.
//!
//! A column-based MLflow signature becomes the model's inputs (one per
//! column); see [`model::MlflowModel`]. The saved input examples
//! (`input_example.json`, `serving_input_example.json`) are shown in the
//! model metadata.

pub mod mlmodel;
pub mod model;

use std::path::Path;
use std::sync::Arc;

use ferroserve_core::{Error, LoadContext, Model, Runtime};

pub use mlmodel::{Flavor, InputExamples, MlModel};
pub use model::MlflowModel;

/// The file that marks an MLflow model folder.
pub const MLMODEL_FILE: &str = "MLmodel";

/// The MLflow [`Runtime`]: recognises a folder with an `MLmodel` file and
/// loads the model with the delegate runtime of its flavor.
pub struct MlflowRuntime {
    delegates: Vec<Arc<dyn Runtime>>,
}

impl MlflowRuntime {
    /// A runtime that loads flavors with `delegates` (looked up by format
    /// name: `sklearn`, `xgboost`, `lightgbm`, `onnx`).
    pub fn new(delegates: Vec<Arc<dyn Runtime>>) -> Self {
        MlflowRuntime { delegates }
    }

    /// Loads the MLflow model in `dir` with its concrete type.
    pub fn load_model(&self, dir: &Path, ctx: &LoadContext) -> Result<MlflowModel, Error> {
        let mlmodel = MlModel::from_dir(dir)?;
        let flavor = mlmodel.pick_flavor()?;
        let delegate = self
            .delegates
            .iter()
            .find(|r| r.format() == flavor.format)
            .ok_or_else(|| {
                Error::Load(format!(
                    "MLflow flavor '{}' needs the {} runtime, which this server does not have",
                    flavor.name, flavor.format
                ))
            })?;
        flavor.check_file(dir)?;
        let inner = delegate.load_file(dir, &flavor.file, ctx)?;
        let examples = mlmodel.input_examples(dir);
        let model = MlflowModel::with_examples(inner, &mlmodel, &flavor, examples)?;
        tracing::info!(
            model = %dir.display(),
            flavor = %flavor.name,
            file = %flavor.file,
            delegate = flavor.format,
            "loaded MLflow model"
        );
        Ok(model)
    }
}

impl Runtime for MlflowRuntime {
    fn format(&self) -> &'static str {
        "mlflow"
    }

    fn detect(&self, dir: &Path) -> Option<String> {
        dir.join(MLMODEL_FILE)
            .is_file()
            .then(|| MLMODEL_FILE.to_string())
    }

    fn load(&self, dir: &Path, ctx: &LoadContext) -> Result<Arc<dyn Model>, Error> {
        Ok(Arc::new(self.load_model(dir, ctx)?))
    }

    /// An `MLmodel` folder also holds the flavor's own file (`model.pkl`,
    /// `model.onnx`): MLflow's reading of the folder wins.
    fn detect_priority(&self) -> u8 {
        10
    }
}

#[cfg(test)]
mod tests;
