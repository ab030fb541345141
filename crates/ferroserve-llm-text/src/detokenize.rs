//! [`IncrementalDecoder`]: streaming text from token ids, such that the
//! pieces concatenate to exactly `decode(all ids)`.
//!
//! The technique of TGI and vLLM: decode a short window of ids twice, from a
//! prefix offset to the read offset and from the prefix offset to the end, and
//! emit the difference. The window starts one step back, so tokenizer effects
//! that depend on the previous token (SentencePiece's leading-space strip of
//! the first token) cancel out. Text is held back while it ends in an
//! incomplete UTF-8 sequence (shown as U+FFFD) or inside a run of byte-fallback
//! tokens, and [`IncrementalDecoder::finish`] settles the remainder against the
//! full decode.

use crate::error::TextError;
use crate::tokenizer::TextTokenizer;

/// Turns generated token ids into text deltas.
#[derive(Debug, Clone, Default)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    skip_special_tokens: bool,
    /// Number of leading context ids (the prompt's tail), not part of the output.
    context: usize,
    /// `decode(context ids)`.
    context_text: String,
    emitted: String,
}

/// Prompt tokens used as decoding context (as vLLM does).
const CONTEXT_TOKENS: usize = 5;

impl IncrementalDecoder {
    /// A decoder for one sequence; `skip_special_tokens` as in `decode`.
    pub fn new(skip_special_tokens: bool) -> Self {
        IncrementalDecoder {
            skip_special_tokens,
            ..Default::default()
        }
    }

    /// A decoder whose output continues `prompt`: the last few prompt ids are
    /// decoded as context, so the first generated token keeps its leading
    /// space (SentencePiece decoders strip it only at the start of a text) —
    /// the text is `decode(prompt + generated)` minus `decode(prompt)`.
    pub fn with_prompt(
        tok: &TextTokenizer,
        prompt: &[u32],
        skip_special_tokens: bool,
    ) -> Result<Self, TextError> {
        let tail = &prompt[prompt.len().saturating_sub(CONTEXT_TOKENS)..];
        let context_text = tok.decode(tail, skip_special_tokens)?;
        Ok(IncrementalDecoder {
            ids: tail.to_vec(),
            prefix_offset: 0,
            read_offset: tail.len(),
            skip_special_tokens,
            context: tail.len(),
            context_text,
            emitted: String::new(),
        })
    }

    /// Adds one token; returns the text that became final (possibly empty).
    pub fn push(&mut self, tok: &TextTokenizer, id: u32) -> Result<String, TextError> {
        self.ids.push(id);
        if tok.is_byte_fallback(id) || (self.skip_special_tokens && tok.is_special(id)) {
            // A run of byte tokens decodes as a whole (skipped special tokens
            // do not end it): wait for the next visible token.
            return Ok(String::new());
        }
        let window = self.ids.get(self.prefix_offset..).unwrap_or(&[]);
        let read = self.read_offset.saturating_sub(self.prefix_offset);
        let prefix_text =
            tok.decode(window.get(..read).unwrap_or(&[]), self.skip_special_tokens)?;
        let new_text = tok.decode(window, self.skip_special_tokens)?;
        if new_text.len() > prefix_text.len()
            && new_text.starts_with(&prefix_text)
            && !new_text.ends_with('\u{FFFD}')
        {
            let delta = new_text[prefix_text.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            self.emitted.push_str(&delta);
            return Ok(delta);
        }
        Ok(String::new())
    }

    /// Ends the sequence; returns whatever text was still held back.
    pub fn finish(&mut self, tok: &TextTokenizer) -> Result<String, TextError> {
        let full = tok.decode(&self.ids, self.skip_special_tokens)?;
        let settled = full
            .strip_prefix(self.context_text.as_str())
            .and_then(|f| f.strip_prefix(self.emitted.as_str()));
        let rest = match settled {
            Some(rest) => rest.to_string(),
            None => {
                // The full decode disagrees with what was streamed (only for
                // malformed byte sequences): emit the window's remainder.
                let window = self.ids.get(self.prefix_offset..).unwrap_or(&[]);
                let read = self.read_offset.saturating_sub(self.prefix_offset);
                let prefix_text =
                    tok.decode(window.get(..read).unwrap_or(&[]), self.skip_special_tokens)?;
                let new_text = tok.decode(window, self.skip_special_tokens)?;
                new_text
                    .strip_prefix(prefix_text.as_str())
                    .unwrap_or("")
                    .to_string()
            }
        };
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        self.emitted.push_str(&rest);
        Ok(rest)
    }

    /// The ids pushed so far (without the prompt context).
    pub fn token_ids(&self) -> &[u32] {
        self.ids.get(self.context..).unwrap_or(&[])
    }

    /// The text emitted so far.
    pub fn text(&self) -> &str {
        &self.emitted
    }
}
