//! A whole PMML document compiled for evaluation: the data dictionary,
//! global transformations, the (first) model, its inputs and the outputs
//! visible at the top level; and the evaluation of one row.

use roxmltree::{Document as XmlDocument, ParsingOptions};

use crate::model::{self, InputField, MiningFunction, Model, Outcome, Parent, TargetInfo};
use crate::program::{Compiler, Ctx, EvalResult, Program, SlotId};
use crate::value::{DataType, Value};
use crate::xml::{self, at, elements, LoadResult};

/// Most XML nodes a document may have (guards memory on hostile input).
pub const MAX_NODES: u32 = 20_000_000;

/// A top-level output field.
#[derive(Debug, Clone)]
pub struct TopOutput {
    /// Field name.
    pub name: String,
    /// Its slot.
    pub slot: SlotId,
    /// Declared type.
    pub dtype: DataType,
}

/// A compiled PMML document.
#[derive(Debug)]
pub struct Document {
    /// The PMML version attribute.
    pub version: String,
    /// Fields and functions.
    pub prog: Program,
    /// The model.
    pub model: Model,
    /// Active fields of the model's mining schema, in document order.
    pub inputs: Vec<InputField>,
    /// The target of the model's predictions.
    pub target: TargetInfo,
    /// Class labels (classification), in the order of the target
    /// DataField's values, then labels first seen in the model.
    pub classes: Vec<Value>,
    /// Final output fields visible at the top level.
    pub outputs: Vec<TopOutput>,
    /// The application that wrote the file (Header/Application).
    pub application: Option<String>,
}

impl Document {
    /// Parses and compiles a document.
    pub fn parse(text: &str) -> LoadResult<Document> {
        let opts = ParsingOptions {
            allow_dtd: false,
            nodes_limit: MAX_NODES,
            entity_resolver: None,
        };
        let doc = XmlDocument::parse_with_options(text, opts)
            .map_err(|e| format!("not valid XML: {e}"))?;
        xml::check_depth(&doc)?;
        let root = doc.root_element();
        if root.tag_name().name() != "PMML" {
            return Err(format!(
                "the root element is <{}>, not <PMML>",
                root.tag_name().name()
            ));
        }
        let version = root.attribute("version").unwrap_or("").to_string();
        if !(version.starts_with('4') || version.starts_with('3')) {
            return Err(format!(
                "PMML version '{version}' is not supported (supported: 3.x and 4.x)"
            ));
        }
        let application = xml::child(root, "Header")
            .and_then(|h| xml::child(h, "Application"))
            .map(|a| {
                format!(
                    "{} {}",
                    a.attribute("name").unwrap_or(""),
                    a.attribute("version").unwrap_or("")
                )
                .trim()
                .to_string()
            });
        let mut c = Compiler::new();
        c.data_dictionary(xml::req_child(root, "DataDictionary")?)?;
        if let Some(td) = xml::child(root, "TransformationDictionary") {
            c.transformations(td)?;
        }
        let mnode = elements(root)
            .find(|e| model::is_model_element(e.tag_name().name()))
            .ok_or_else(|| {
                format!(
                    "{}: no model element (supported: {})",
                    at(root),
                    model::SUPPORTED_MODELS.join(", ")
                )
            })?;
        let parent = Parent {
            target: None,
            chain: false,
            top: true,
        };
        let mut inputs = Vec::new();
        let model = model::compile(&mut c, mnode, &parent, &mut inputs)?;
        let target = model.result_target().clone();
        let mut outputs = Vec::new();
        for o in model.visible_outputs() {
            if o.is_final && !outputs.iter().any(|t: &TopOutput| t.name == o.name) {
                outputs.push(TopOutput {
                    name: o.name.clone(),
                    slot: o.slot,
                    dtype: o.dtype,
                });
            }
        }
        let mut prog = c.prog;
        prog.class_lists = c.categories;
        let classes = match model.function {
            MiningFunction::Classification => prog.classes(&target.key).to_vec(),
            MiningFunction::Regression => Vec::new(),
        };
        Ok(Document {
            version,
            prog,
            model,
            inputs,
            target,
            classes,
            outputs,
            application,
        })
    }

    /// Evaluates one row whose input values are in `ctx` already.
    pub fn eval(&self, ctx: &mut Ctx) -> EvalResult<Outcome> {
        let out = self.model.evaluate(ctx)?;
        self.model.eval_outputs(ctx, &out)?;
        Ok(out)
    }
}
