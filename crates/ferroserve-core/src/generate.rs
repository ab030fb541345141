//! Text generation and embedding interfaces: what a language-model runtime
//! offers to the protocol front ends (the OpenAI API, v1/v2 text tensors)
//! without the server naming the engine.
//!
//! A model that generates text returns `Some` from [`crate::Model::as_generator`];
//! one that embeds text returns `Some` from [`crate::Model::as_embedder`].

use serde_json::Value;

use crate::error::Error;

/// Sampling and stopping settings of one generation request. Every field
/// has been validated by the protocol front end (ranges as OpenAI states them).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; `0` means greedy (argmax).
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability sums to `top_p` (1 = off).
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Drop tokens whose probability is below `min_p` times the top probability (0 = off).
    pub min_p: f32,
    /// Seed of this request's random generator; `None` draws one.
    pub seed: Option<u64>,
    /// OpenAI presence penalty (subtracted once from every token already generated).
    pub presence_penalty: f32,
    /// OpenAI frequency penalty (subtracted per occurrence in the generated tokens).
    pub frequency_penalty: f32,
    /// HuggingFace repetition penalty over prompt and generated tokens (1 = off).
    pub repetition_penalty: f32,
    /// Added to the logits of the given token ids before sampling.
    pub logit_bias: Vec<(u32, f32)>,
    /// Number of most likely alternatives to report per generated token
    /// (`Some(0)`: only the chosen token's log-probability; `None`: none).
    pub logprobs: Option<usize>,
    /// Keep generating past end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Most tokens to generate (`None`: up to the model's context length).
    pub max_tokens: Option<usize>,
    /// Least tokens to generate before an end-of-sequence token may stop generation.
    pub min_tokens: usize,
    /// Stop strings: generation ends before the first occurrence of any;
    /// the stop string itself is not part of the output.
    pub stop: Vec<String>,
    /// Extra token ids that end generation (beside the model's own end tokens).
    pub stop_token_ids: Vec<u32>,
    /// Drop special tokens (e.g. `<|eot_id|>`) from the output text.
    pub skip_special_tokens: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            logit_bias: Vec::new(),
            logprobs: None,
            ignore_eos: false,
            max_tokens: None,
            min_tokens: 0,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            skip_special_tokens: true,
        }
    }
}

/// One generation request: a tokenised prompt and how to continue it.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// An id for logs and metrics.
    pub request_id: String,
    /// The prompt as token ids (already tokenised, special tokens included).
    pub prompt: Vec<u32>,
    /// Sampling and stopping settings.
    pub params: SamplingParams,
}

/// A token with its log-probability, as OpenAI reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// Token id.
    pub id: u32,
    /// The token's text (its own decoding; may be a partial character).
    pub text: String,
    /// The token's UTF-8 bytes.
    pub bytes: Vec<u8>,
    /// Natural-log probability under the model's distribution.
    pub logprob: f32,
}

/// The log-probabilities of one generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedLogprobs {
    /// The chosen token.
    pub chosen: TokenLogprob,
    /// The most likely tokens at that step, most likely first.
    pub top: Vec<TokenLogprob>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token, a stop token id or a stop string.
    Stop,
    /// `max_tokens` or the model's context length was reached.
    Length,
}

impl FinishReason {
    /// The name OpenAI uses (`stop`, `length`).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (including a final stop token).
    pub completion_tokens: usize,
    /// Prompt tokens whose computation was reused from the prefix cache.
    pub cached_tokens: usize,
}

/// What a generation stream yields, in order: any number of `Delta`s, then one `Done`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerateEvent {
    /// New output: `text` is the text that became final with these tokens
    /// (possibly empty while a multi-byte character or a possible stop
    /// string is held back). Concatenating every `text` gives exactly the
    /// full output.
    Delta {
        /// Newly final text.
        text: String,
        /// Tokens generated in this step.
        token_ids: Vec<u32>,
        /// Their log-probabilities, when requested.
        logprobs: Vec<GeneratedLogprobs>,
    },
    /// Generation ended.
    Done {
        /// Why it ended.
        finish_reason: FinishReason,
        /// The stop string or token id that ended it, if any.
        stop_reason: Option<StopReason>,
        /// Token counts.
        usage: Usage,
    },
}

/// What ended a generation that finished with [`FinishReason::Stop`].
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// A stop string.
    String(String),
    /// An end-of-sequence or stop token id.
    Token(u32),
}

/// The receiving end of a generation (unbounded: the engine never blocks on
/// a slow client; a generation's length is bounded by `max_tokens`). Dropping
/// it cancels the request and frees its memory at the engine's next step.
pub type GenerateStream = tokio::sync::mpsc::UnboundedReceiver<Result<GenerateEvent, Error>>;

/// The sending end the engine writes a generation's events to.
pub type GenerateSender = tokio::sync::mpsc::UnboundedSender<Result<GenerateEvent, Error>>;

/// Options for rendering a chat with the model's chat template.
#[derive(Debug, Clone, Default)]
pub struct ChatTemplateOptions {
    /// Append the prompt that opens the assistant's turn.
    pub add_generation_prompt: bool,
    /// Leave the last (assistant) message open so generation continues it.
    pub continue_final_message: bool,
    /// Tool definitions passed to the template as `tools`.
    pub tools: Option<Value>,
    /// Extra template variables (`chat_template_kwargs`).
    pub extra: serde_json::Map<String, Value>,
    /// A template that replaces the model's own for this request.
    pub template: Option<String>,
}

/// Facts about a text generator, for `/v1/models` and request validation.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorInfo {
    /// Longest prompt plus completion, in tokens.
    pub max_model_len: usize,
    /// Size of the vocabulary (valid token ids are below it).
    pub vocab_size: usize,
    /// Whether the model has a chat template.
    pub has_chat_template: bool,
    /// The model's own sampling defaults (generation_config.json), used for
    /// fields a request leaves out (as vLLM does).
    pub sampling_defaults: SamplingDefaults,
}

/// Sampling defaults a model ships with; `None` falls back to OpenAI's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingDefaults {
    /// Default temperature.
    pub temperature: Option<f32>,
    /// Default nucleus mass.
    pub top_p: Option<f32>,
    /// Default top-k (0: off).
    pub top_k: Option<usize>,
    /// Default min-p.
    pub min_p: Option<f32>,
    /// Default repetition penalty.
    pub repetition_penalty: Option<f32>,
}

/// A language model that continues token sequences.
pub trait TextGenerator: Send + Sync {
    /// Facts used to validate requests.
    fn info(&self) -> GeneratorInfo;

    /// Tokenises `text`; `add_special_tokens` adds the model's BOS (as
    /// HuggingFace `tokenizers` / llama.cpp do for a plain prompt).
    fn tokenize(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, Error>;

    /// Decodes token ids to text (special tokens skipped when asked).
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, Error>;

    /// Renders a chat (OpenAI-style message objects) into a prompt string
    /// exactly as `transformers`' `apply_chat_template` would.
    fn render_chat(
        &self,
        messages: &[Value],
        options: &ChatTemplateOptions,
    ) -> Result<String, Error>;

    /// Starts generating. Fails at once with [`Error::ResourceExhausted`]
    /// when the waiting queue is full, [`Error::InvalidArgument`] when the
    /// prompt does not fit the context.
    fn generate(&self, request: GenerateRequest) -> Result<GenerateStream, Error>;

    /// Engine metrics in the vLLM style (`None` when the engine keeps none).
    fn metrics(&self) -> Option<GeneratorMetrics> {
        None
    }
}

/// A latency histogram snapshot: `counts[i]` observations at most
/// `bounds[i]` seconds (not cumulative), the last entry for larger values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    /// Upper bounds in seconds, ascending.
    pub bounds: Vec<f64>,
    /// Observations per bucket; one more entry than `bounds` (overflow).
    pub counts: Vec<u64>,
    /// Sum of all observations in seconds.
    pub sum: f64,
}

impl LatencyHistogram {
    /// An empty histogram with the given bucket bounds.
    pub fn new(bounds: &[f64]) -> Self {
        LatencyHistogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// Records one observation.
    pub fn observe(&mut self, seconds: f64) {
        let i = self.bounds.partition_point(|&b| b < seconds);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum += seconds;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Counters and gauges of a continuous-batching engine (vLLM's metric set).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeneratorMetrics {
    /// Sequences in the running batch.
    pub running: usize,
    /// Requests waiting to be scheduled.
    pub waiting: usize,
    /// Fraction of the KV cache budget in use (0..1).
    pub kv_cache_usage: f64,
    /// Prompt tokens processed (computed or taken from the prefix cache).
    pub prompt_tokens_total: u64,
    /// Tokens generated.
    pub generation_tokens_total: u64,
    /// Sequences preempted (their cache dropped, recomputed later).
    pub preemptions_total: u64,
    /// Prompt tokens looked up in the prefix cache.
    pub prefix_cache_queries_total: u64,
    /// Prompt tokens found in the prefix cache.
    pub prefix_cache_hits_total: u64,
    /// Finished requests by reason: `stop`, `length`, `abort`.
    pub finished_total: Vec<(&'static str, u64)>,
    /// Time from arrival to the first generated token.
    pub time_to_first_token: LatencyHistogram,
    /// Time between consecutive generated tokens.
    pub inter_token_latency: LatencyHistogram,
    /// Time from arrival to the end of the request.
    pub e2e_latency: LatencyHistogram,
}

/// One input of an embedding request.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedInput {
    /// Text, tokenised by the model's tokenizer.
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
}

/// The result of an embedding request.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens consumed, summed over the inputs.
    pub prompt_tokens: usize,
}

/// A model that turns text into vectors.
pub trait Embedder: Send + Sync {
    /// Embeds every input (pooling and normalisation as the model's
    /// sentence-transformers configuration says). Blocking: call it off the
    /// async runtime's worker threads.
    fn embed(&self, inputs: Vec<EmbedInput>) -> Result<Embeddings, Error>;

    /// Length of each vector.
    fn dimensions(&self) -> usize;

    /// Longest input in tokens.
    fn max_input_tokens(&self) -> usize;
}
