//! One request inside the engine: its tokens, cache, sampler and the text
//! pipeline (incremental detokenisation, then stop strings).

use std::sync::Arc;
use std::time::Instant;

use ferroserve_core::generate::{
    FinishReason, GenerateEvent, GenerateSender, GeneratedLogprobs, SamplingParams, StopReason,
    TokenLogprob, Usage,
};
use ferroserve_llm_text::{IncrementalDecoder, Sampler, StopMatcher, TextTokenizer};

use crate::model::SeqCache;

/// A sequence being generated.
pub struct Sequence {
    /// Request id (logs).
    pub request_id: String,
    /// Prompt followed by the tokens generated so far.
    pub tokens: Vec<u32>,
    /// Length of the prompt inside `tokens`.
    pub prompt_len: usize,
    /// The KV cache while the sequence holds one.
    pub cache: Option<SeqCache>,
    /// Positions of `tokens` already in the cache.
    pub computed: usize,
    /// KV blocks reserved for this sequence.
    pub blocks: usize,
    /// Prompt positions taken from the prefix cache.
    pub cached_tokens: usize,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Settings of the request.
    pub params: SamplingParams,
    /// Where events go.
    pub tx: GenerateSender,
    /// Arrival time.
    pub arrived: Instant,
    /// Time of the latest generated token.
    pub last_token_at: Option<Instant>,
    sampler: Sampler,
    detok: IncrementalDecoder,
    stop: StopMatcher,
    eos: Arc<[u32]>,
}

/// What happened to a sequence after a token was appended.
pub enum Step {
    /// Keep generating.
    Continue,
    /// Finished (the `Done` event has been sent).
    Finished(FinishReason),
}

impl Sequence {
    /// A new sequence for `prompt`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        request_id: String,
        prompt: Vec<u32>,
        params: SamplingParams,
        max_tokens: usize,
        vocab_size: usize,
        tokenizer: &TextTokenizer,
        eos: Arc<[u32]>,
        tx: GenerateSender,
    ) -> Self {
        let sampler = Sampler::new(&params, vocab_size);
        // The prompt's last tokens give the decoder context, so the first
        // generated SentencePiece token keeps its leading space.
        let detok = IncrementalDecoder::with_prompt(tokenizer, &prompt, params.skip_special_tokens)
            .unwrap_or_else(|_| IncrementalDecoder::new(params.skip_special_tokens));
        let stop = StopMatcher::new(params.stop.clone());
        Sequence {
            request_id,
            prompt_len: prompt.len(),
            tokens: prompt,
            cache: None,
            computed: 0,
            blocks: 0,
            cached_tokens: 0,
            max_tokens,
            params,
            tx,
            arrived: Instant::now(),
            last_token_at: None,
            sampler,
            detok,
            stop,
            eos,
        }
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    /// Positions still to feed through the model before the next sample.
    pub fn pending(&self) -> usize {
        self.tokens.len() - self.computed
    }

    /// True when the client went away.
    pub fn is_cancelled(&self) -> bool {
        self.tx.is_closed()
    }

    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_len,
            completion_tokens: self.generated(),
            cached_tokens: self.cached_tokens,
        }
    }

    /// Samples the next token from this sequence's logits row, appends it,
    /// streams its text and decides whether generation ends here.
    pub fn advance(
        &mut self,
        logits: &mut [f32],
        tokenizer: &TextTokenizer,
        max_model_len: usize,
    ) -> Step {
        let (prompt, generated) = self.tokens.split_at(self.prompt_len);
        let suppress: &[u32] =
            if !self.params.ignore_eos && generated.len() < self.params.min_tokens {
                &self.eos
            } else {
                &[]
            };
        let sampled = self
            .sampler
            .sample_with_suppressed(logits, prompt, generated, suppress);
        let id = sampled.id;
        self.tokens.push(id);
        let logprobs = match (self.params.logprobs, sampled.logprobs) {
            (Some(_), Some((lp, top))) => vec![GeneratedLogprobs {
                chosen: token_logprob(tokenizer, id, lp),
                top: top
                    .into_iter()
                    .map(|(t, l)| token_logprob(tokenizer, t, l))
                    .collect(),
            }],
            _ => Vec::new(),
        };

        let is_eos = !self.params.ignore_eos && self.eos.contains(&id);
        let is_stop_id =
            self.params.stop_token_ids.contains(&id) && self.generated() > self.params.min_tokens;
        let mut finish = None;
        let mut text = String::new();
        if is_eos || is_stop_id {
            finish = Some((FinishReason::Stop, Some(StopReason::Token(id))));
        } else {
            let piece = self.detok.push(tokenizer, id).unwrap_or_default();
            let (emit, stopped) = self.stop.push(&piece);
            text = emit;
            if let Some(s) = stopped {
                finish = Some((FinishReason::Stop, Some(StopReason::String(s))));
            }
        }
        if finish.is_none()
            && (self.generated() >= self.max_tokens || self.tokens.len() >= max_model_len)
        {
            finish = Some((FinishReason::Length, None));
        }
        let flush = matches!(
            finish,
            Some((_, None)) | Some((_, Some(StopReason::Token(_))))
        );
        if flush {
            // Ending without a stop string: release everything held back.
            let tail = self.detok.finish(tokenizer).unwrap_or_default();
            let (emit, stopped) = self.stop.push(&tail);
            text.push_str(&emit);
            let (rest, stopped_late) = self.stop.finish();
            text.push_str(&rest);
            if let Some(s) = stopped.or(stopped_late) {
                finish = Some((FinishReason::Stop, Some(StopReason::String(s))));
            }
        }
        let _ = self.tx.send(Ok(GenerateEvent::Delta {
            text,
            token_ids: vec![id],
            logprobs,
        }));
        self.last_token_at = Some(Instant::now());
        match finish {
            Some((reason, stop_reason)) => {
                let _ = self.tx.send(Ok(GenerateEvent::Done {
                    finish_reason: reason,
                    stop_reason,
                    usage: self.usage(),
                }));
                Step::Finished(reason)
            }
            None => Step::Continue,
        }
    }

    /// Ends the sequence with an error event.
    pub fn fail(&self, err: ferroserve_core::Error) {
        let _ = self.tx.send(Err(err));
    }
}

fn token_logprob(tokenizer: &TextTokenizer, id: u32, logprob: f32) -> TokenLogprob {
    let bytes = tokenizer.token_bytes(id).to_vec();
    TokenLogprob {
        id,
        text: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
        logprob,
    }
}
