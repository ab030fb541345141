//! `config.json` of an encoder: the architecture family, its sizes, its
//! task head and the KServe task names.

use serde_json::Value;

use crate::error::{HfError, Result};

/// The encoder families this runtime implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// BERT (and MiniLM, which is a BERT).
    Bert,
    /// RoBERTa, XLM-RoBERTa and CamemBERT: BERT with offset position ids.
    Roberta,
    /// DistilBERT: BERT without token types, with its own weight names.
    DistilBert,
    /// MPNet: RoBERTa-style positions plus a relative-position attention bias.
    MpNet,
}

impl Family {
    /// The family of a `model_type`.
    pub fn from_model_type(model_type: &str) -> Option<Family> {
        match model_type {
            "bert" => Some(Family::Bert),
            "roberta" | "xlm-roberta" | "camembert" => Some(Family::Roberta),
            "distilbert" => Some(Family::DistilBert),
            "mpnet" => Some(Family::MpNet),
            _ => None,
        }
    }

    /// Prefix of the base model's weights in a model with a task head.
    pub fn base_prefix(self, model_type: &str) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta if model_type == "camembert" => "roberta",
            Family::Roberta => "roberta",
            Family::DistilBert => "distilbert",
            Family::MpNet => "mpnet",
        }
    }

    /// Whether position ids start after the padding id (RoBERTa's scheme).
    pub fn offset_positions(self) -> bool {
        matches!(self, Family::Roberta | Family::MpNet)
    }
}

/// The task a model serves, named as KServe's `--task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Sentence embeddings.
    TextEmbedding,
    /// One class per input text.
    SequenceClassification,
    /// One class per token.
    TokenClassification,
    /// The most likely tokens at the mask positions.
    FillMask,
}

impl Task {
    /// Parses KServe's task name (case-insensitive; `-` accepted for `_`,
    /// and `feature_extraction` / `embedding` for `text_embedding`).
    pub fn parse(name: &str) -> Option<Task> {
        match name.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "text_embedding" | "embedding" | "embeddings" | "feature_extraction" => {
                Some(Task::TextEmbedding)
            }
            "sequence_classification" | "text_classification" => Some(Task::SequenceClassification),
            "token_classification" | "ner" => Some(Task::TokenClassification),
            "fill_mask" => Some(Task::FillMask),
            _ => None,
        }
    }

    /// KServe's name of the task.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::TextEmbedding => "text_embedding",
            Task::SequenceClassification => "sequence_classification",
            Task::TokenClassification => "token_classification",
            Task::FillMask => "fill_mask",
        }
    }

    /// The task KServe infers from an architecture name (`…ForMaskedLM` →
    /// fill_mask, …); a bare model (`BertModel`) is an embedder.
    pub fn from_architecture(arch: &str) -> Option<Task> {
        if arch.ends_with("ForSequenceClassification") {
            Some(Task::SequenceClassification)
        } else if arch.ends_with("ForTokenClassification") {
            Some(Task::TokenClassification)
        } else if arch.ends_with("ForMaskedLM") {
            Some(Task::FillMask)
        } else if arch.ends_with("Model") {
            Some(Task::TextEmbedding)
        } else {
            None
        }
    }
}

/// Hidden activation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU (erf), transformers' `gelu`.
    GeluErf,
    /// Tanh-approximated GELU (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// ReLU.
    Relu,
    /// SiLU / swish.
    Silu,
    /// Tanh.
    Tanh,
}

impl Activation {
    /// Parses a transformers activation name.
    pub fn parse(name: &str) -> Option<Activation> {
        match name {
            "gelu" => Some(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Activation::GeluTanh),
            "relu" => Some(Activation::Relu),
            "silu" | "swish" => Some(Activation::Silu),
            "tanh" => Some(Activation::Tanh),
            _ => None,
        }
    }

    /// Applies the activation.
    pub fn apply(self, x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        match self {
            Activation::GeluErf => x.gelu_erf(),
            Activation::GeluTanh => x.gelu(),
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
            Activation::Tanh => x.tanh(),
        }
    }
}

/// The parts of `config.json` the encoder needs.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// Architecture family.
    pub family: Family,
    /// `model_type` as written.
    pub model_type: String,
    /// `architectures[0]`, if given.
    pub architecture: Option<String>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Number of attention heads.
    pub num_heads: usize,
    /// Feed-forward inner size.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Rows of the position-embedding table.
    pub max_position_embeddings: usize,
    /// Rows of the token-type table (0 when the family has none).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Padding token id (RoBERTa's position offset).
    pub pad_token_id: u32,
    /// Class names by id (`id2label`), for classification heads.
    pub labels: Vec<String>,
    /// MPNet's relative attention buckets.
    pub relative_attention_num_buckets: usize,
}

fn get_usize(v: &Value, keys: &[&str]) -> Option<usize> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_u64))
        .and_then(|n| usize::try_from(n).ok())
}

fn need_usize(v: &Value, keys: &[&str]) -> Result<usize> {
    get_usize(v, keys).ok_or_else(|| {
        let name = keys.first().copied().unwrap_or_default();
        HfError::config(format!("config.json: missing integer '{name}'"))
    })
}

impl EncoderConfig {
    /// The `model_type` of a config, when it names an encoder family.
    pub fn family_of(v: &Value) -> Option<Family> {
        let model_type = v.get("model_type").and_then(Value::as_str)?;
        Family::from_model_type(model_type)
    }

    /// Reads the configuration from a parsed `config.json`.
    pub fn from_json(v: &Value) -> Result<EncoderConfig> {
        let model_type = v
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let family = Family::from_model_type(&model_type).ok_or_else(|| {
            HfError::config(format!(
                "config.json: model_type '{model_type}' is not an encoder this runtime implements \
                 (bert, roberta, xlm-roberta, camembert, distilbert, mpnet)"
            ))
        })?;
        let architecture = v
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .map(str::to_string);
        let distil = family == Family::DistilBert;
        let act_key = if distil { "activation" } else { "hidden_act" };
        let act_name = v.get(act_key).and_then(Value::as_str).unwrap_or("gelu");
        let activation = Activation::parse(act_name).ok_or_else(|| {
            HfError::config(format!("config.json: unsupported {act_key} '{act_name}'"))
        })?;
        if let Some(p) = v.get("position_embedding_type").and_then(Value::as_str) {
            if p != "absolute" {
                return Err(HfError::config(format!(
                    "config.json: position_embedding_type '{p}' is not supported (only 'absolute')"
                )));
            }
        }
        let cfg = EncoderConfig {
            family,
            architecture,
            vocab_size: need_usize(v, &["vocab_size"])?,
            hidden_size: need_usize(v, &["hidden_size", "dim"])?,
            num_layers: need_usize(v, &["num_hidden_layers", "n_layers"])?,
            num_heads: need_usize(v, &["num_attention_heads", "n_heads"])?,
            intermediate_size: need_usize(v, &["intermediate_size", "hidden_dim"])?,
            activation,
            max_position_embeddings: need_usize(v, &["max_position_embeddings"])?,
            type_vocab_size: match family {
                Family::Bert | Family::Roberta => get_usize(v, &["type_vocab_size"]).unwrap_or(2),
                Family::DistilBert | Family::MpNet => 0,
            },
            layer_norm_eps: if distil {
                1e-12
            } else {
                v.get("layer_norm_eps")
                    .and_then(Value::as_f64)
                    .unwrap_or(1e-12)
            },
            pad_token_id: get_usize(v, &["pad_token_id"])
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(if family.offset_positions() { 1 } else { 0 }),
            labels: labels(v),
            relative_attention_num_buckets: get_usize(v, &["relative_attention_num_buckets"])
                .unwrap_or(32),
            model_type,
        };
        if cfg.hidden_size == 0 || cfg.hidden_size.checked_rem(cfg.num_heads) != Some(0) {
            return Err(HfError::config(format!(
                "config.json: hidden size {} is not a multiple of {} heads",
                cfg.hidden_size, cfg.num_heads
            )));
        }
        Ok(cfg)
    }

    /// Longest input the position table allows (RoBERTa-style tables lose
    /// `pad_token_id + 1` rows to the offset).
    pub fn max_positions(&self) -> usize {
        if self.family.offset_positions() {
            self.max_position_embeddings
                .saturating_sub(self.pad_token_id as usize + 1)
        } else {
            self.max_position_embeddings
        }
    }

    /// Number of classes of a classification head.
    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }
}

/// Class names from `id2label` (ordered by id), else `LABEL_i` for
/// `num_labels` (default 2, as transformers does).
fn labels(v: &Value) -> Vec<String> {
    if let Some(map) = v.get("id2label").and_then(Value::as_object) {
        let mut pairs: Vec<(usize, String)> = map
            .iter()
            .filter_map(|(k, name)| {
                Some((
                    k.parse().ok()?,
                    name.as_str().unwrap_or_default().to_string(),
                ))
            })
            .collect();
        pairs.sort();
        let dense = pairs.iter().enumerate().all(|(i, (k, _))| i == *k);
        if dense && !pairs.is_empty() {
            return pairs.into_iter().map(|(_, n)| n).collect();
        }
    }
    let n = get_usize(v, &["num_labels"]).unwrap_or(2);
    (0..n).map(|i| format!("LABEL_{i}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_from_architectures() {
        assert_eq!(
            Task::from_architecture("BertForSequenceClassification"),
            Some(Task::SequenceClassification)
        );
        assert_eq!(
            Task::from_architecture("XLMRobertaForTokenClassification"),
            Some(Task::TokenClassification)
        );
        assert_eq!(
            Task::from_architecture("DistilBertForMaskedLM"),
            Some(Task::FillMask)
        );
        assert_eq!(
            Task::from_architecture("BertModel"),
            Some(Task::TextEmbedding)
        );
        assert_eq!(Task::from_architecture("BertForQuestionAnswering"), None);
        assert_eq!(Task::parse("Fill-Mask"), Some(Task::FillMask));
        assert_eq!(Task::parse("text_generation"), None);
    }

    #[test]
    fn distilbert_config_names() {
        let v: Value = serde_json::from_str(
            r#"{"model_type":"distilbert","vocab_size":10,"dim":8,"n_layers":1,"n_heads":2,
                "hidden_dim":16,"activation":"gelu","max_position_embeddings":32,
                "id2label":{"1":"B","0":"A"}}"#,
        )
        .unwrap();
        let c = EncoderConfig::from_json(&v).unwrap();
        assert_eq!(c.family, Family::DistilBert);
        assert_eq!(c.hidden_size, 8);
        assert_eq!(c.labels, vec!["A", "B"]);
        assert_eq!(c.type_vocab_size, 0);
        let bad: Value = serde_json::from_str(r#"{"model_type":"llama","vocab_size":10}"#).unwrap();
        assert!(EncoderConfig::from_json(&bad).is_err());
    }

    #[test]
    fn roberta_positions_are_offset() {
        let v: Value = serde_json::from_str(
            r#"{"model_type":"xlm-roberta","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
                "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":514,
                "pad_token_id":1,"type_vocab_size":1}"#,
        )
        .unwrap();
        let c = EncoderConfig::from_json(&v).unwrap();
        assert_eq!(c.max_positions(), 512);
        assert_eq!(c.labels.len(), 2);
    }
}
