//! A loaded language model as the server sees it: a [`Model`] (v1/v2 text
//! in, text out) and a [`TextGenerator`] (the OpenAI API).

use std::sync::Arc;

use bytes::Bytes;
use ferroserve_core::generate::{
    ChatTemplateOptions, GenerateEvent, GenerateRequest, GenerateStream, GeneratorInfo,
    GeneratorMetrics, SamplingDefaults, SamplingParams, TextGenerator,
};
use ferroserve_core::{DataType, Error, Model, Signature, Tensor, TensorSpec};
use ferroserve_llm_text::{special_token_vars, ChatTemplate, GenerationDefaults, TextTokenizer};
use serde_json::{Map, Value};

use crate::engine::Engine;

/// Name of the v2 input holding prompts.
pub const TEXT_INPUT: &str = "text_input";
/// Name of the v2 output holding completions.
pub const TEXT_OUTPUT: &str = "text_output";
/// Tokens generated per prompt over v1/v2 when generation_config.json says nothing.
const DEFAULT_V2_MAX_TOKENS: usize = 64;

/// A language model served by the continuous-batching engine.
pub struct LlmModel {
    signature: Signature,
    engine: Engine,
    tokenizer: Arc<TextTokenizer>,
    template: Option<ChatTemplate>,
    template_vars: Map<String, Value>,
    defaults: GenerationDefaults,
    info: GeneratorInfo,
    facts: Map<String, Value>,
}

impl LlmModel {
    /// Wraps a started engine.
    pub fn new(
        model_file: String,
        engine: Engine,
        tokenizer: Arc<TextTokenizer>,
        template: Option<ChatTemplate>,
        defaults: GenerationDefaults,
        facts: Map<String, Value>,
    ) -> Self {
        let signature = Signature {
            platform: "ferroserve_llm".into(),
            backend: "candle".into(),
            model_file,
            inputs: vec![TensorSpec::new(TEXT_INPUT, DataType::Bytes, vec![-1])],
            outputs: vec![TensorSpec::new(TEXT_OUTPUT, DataType::Bytes, vec![-1])],
        };
        let info = GeneratorInfo {
            max_model_len: engine.options().max_model_len,
            vocab_size: tokenizer.vocab_size(),
            has_chat_template: template.is_some(),
            sampling_defaults: SamplingDefaults {
                temperature: defaults.temperature,
                top_p: defaults.top_p,
                top_k: defaults.top_k,
                min_p: defaults.min_p,
                repetition_penalty: defaults.repetition_penalty,
            },
        };
        let template_vars = special_token_vars(tokenizer.bos_token(), tokenizer.eos_token());
        LlmModel {
            signature,
            engine,
            tokenizer,
            template,
            template_vars,
            defaults,
            info,
            facts,
        }
    }

    /// Sampling settings for v1/v2 requests: the model's generation_config.json.
    fn default_params(&self) -> SamplingParams {
        let d = &self.defaults;
        let greedy = d.do_sample == Some(false);
        SamplingParams {
            temperature: if greedy {
                0.0
            } else {
                d.temperature.unwrap_or(1.0)
            },
            top_p: d.top_p.unwrap_or(1.0),
            top_k: d.top_k.unwrap_or(0),
            min_p: d.min_p.unwrap_or(0.0),
            repetition_penalty: d.repetition_penalty.unwrap_or(1.0),
            max_tokens: Some(d.max_new_tokens.unwrap_or(DEFAULT_V2_MAX_TOKENS)),
            ..SamplingParams::default()
        }
    }

    /// Generates one completion, blocking the calling (non-async) thread.
    fn complete_blocking(&self, prompt: &str) -> Result<String, Error> {
        let ids = self.tokenize(prompt, true)?;
        let mut params = self.default_params();
        let room = self.info.max_model_len.saturating_sub(ids.len());
        params.max_tokens = params.max_tokens.map(|m| m.min(room.max(1)));
        let mut stream = self.generate(GenerateRequest {
            request_id: "v2".into(),
            prompt: ids,
            params,
        })?;
        let mut text = String::new();
        while let Some(event) = stream.blocking_recv() {
            match event? {
                GenerateEvent::Delta { text: t, .. } => text.push_str(&t),
                GenerateEvent::Done { .. } => return Ok(text),
            }
        }
        Err(Error::internal("generation ended without a result"))
    }
}

impl Model for LlmModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
        let input = inputs
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid(format!("input '{TEXT_INPUT}' is missing")))?;
        let prompts = input
            .strings()
            .ok_or_else(|| Error::invalid(format!("input '{TEXT_INPUT}' must be BYTES")))?;
        let mut out = Vec::with_capacity(prompts.len());
        for p in prompts {
            let prompt = std::str::from_utf8(p)
                .map_err(|_| Error::invalid(format!("input '{TEXT_INPUT}' is not UTF-8 text")))?;
            out.push(Bytes::from(self.complete_blocking(prompt)?));
        }
        let n = out.len();
        Ok(vec![Tensor::from_strings(TEXT_OUTPUT, vec![n], out)?])
    }

    fn metadata_parameters(&self) -> Map<String, Value> {
        self.facts.clone()
    }

    fn as_generator(&self) -> Option<&dyn TextGenerator> {
        Some(self)
    }
}

impl TextGenerator for LlmModel {
    fn info(&self) -> GeneratorInfo {
        self.info.clone()
    }

    fn tokenize(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, Error> {
        self.tokenizer
            .encode(text, add_special_tokens)
            .map_err(Error::from)
    }

    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, Error> {
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(Error::from)
    }

    fn render_chat(
        &self,
        messages: &[Value],
        options: &ChatTemplateOptions,
    ) -> Result<String, Error> {
        match (&self.template, &options.template) {
            (Some(t), _) => t.render(messages, options, &self.template_vars),
            (None, Some(source)) => ChatTemplate::new(source)
                .and_then(|t| t.render(messages, options, &self.template_vars)),
            (None, None) => {
                return Err(Error::invalid(
                    "this model has no chat template (tokenizer_config.json `chat_template`); use completions, or pass `chat_template` in the request",
                ))
            }
        }
        .map_err(Error::from)
    }

    fn generate(&self, request: GenerateRequest) -> Result<GenerateStream, Error> {
        self.engine.submit(request)
    }

    fn metrics(&self) -> Option<GeneratorMetrics> {
        Some(self.engine.metrics())
    }
}
