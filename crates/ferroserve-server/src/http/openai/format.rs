//! The JSON of completion and chat answers, whole or as streamed chunks.

use std::collections::HashMap;

use ferroserve_core::generate::{FinishReason, GeneratedLogprobs, StopReason};
use ferroserve_protocol::openai::{
    stop_reason_value, total_usage, unix_now, ChatChoice, ChatChunk, ChatChunkChoice, ChatDelta,
    ChatLogprobs, ChatMessage, ChatResponse, CompletionChoice, CompletionLogprobs,
    CompletionResponse, Usage,
};

use super::gen::Finished;
use super::stream::ChunkFormat;

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| {
        format!(r#"{{"error": {{"message": "cannot encode a chunk: {e}", "type": "server_error", "param": null, "code": null}}}}"#)
    })
}

fn usage_of(finished: &[Finished], prompt_lens: &[usize]) -> Usage {
    let done: Vec<_> = finished.iter().map(|f| (f.prompt, f.usage)).collect();
    total_usage(prompt_lens, &done)
}

/// `/completions` answers (`object: text_completion`).
pub(crate) struct CompletionFormat {
    id: String,
    model: String,
    created: u64,
    logprobs: Option<usize>,
    echoes: Vec<Option<String>>,
    include_usage: bool,
    offsets: HashMap<usize, usize>,
}

impl CompletionFormat {
    /// `echoes`: per prompt, the text `echo` puts first.
    pub(crate) fn new(
        id: String,
        model: String,
        logprobs: Option<usize>,
        echoes: Vec<Option<String>>,
        include_usage: bool,
    ) -> Self {
        CompletionFormat {
            id,
            model,
            created: unix_now(),
            logprobs,
            echoes,
            include_usage,
            offsets: HashMap::new(),
        }
    }

    fn chunk(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> String {
        to_json(&CompletionResponse {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: self.include_usage.then_some(usage),
            system_fingerprint: None,
        })
    }

    fn echo(&self, prompt: usize) -> Option<&str> {
        self.echoes.get(prompt).and_then(|e| e.as_deref())
    }

    /// The whole answer.
    pub(crate) fn response(
        &self,
        finished: &[Finished],
        prompt_lens: &[usize],
    ) -> CompletionResponse {
        let choices = finished
            .iter()
            .map(|f| {
                let echo = self.echo(f.prompt).unwrap_or_default();
                let mut offset = echo.chars().count();
                CompletionChoice {
                    index: f.index,
                    text: format!("{echo}{}", f.text),
                    logprobs: self.logprobs.map(|k| {
                        let mut c = CompletionLogprobs::default();
                        c.push(&f.logprobs, k, &mut offset);
                        c
                    }),
                    finish_reason: Some(f.finish_reason.as_str().into()),
                    stop_reason: stop_reason_value(&f.stop_reason),
                }
            })
            .collect();
        CompletionResponse {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: Some(Some(usage_of(finished, prompt_lens))),
            system_fingerprint: None,
        }
    }
}

impl ChunkFormat for CompletionFormat {
    type Full = CompletionResponse;

    fn full(&self, finished: &[Finished], prompt_lens: &[usize]) -> CompletionResponse {
        self.response(finished, prompt_lens)
    }

    fn start(&mut self, index: usize, prompt: usize) -> Option<String> {
        let echo = self.echo(prompt)?.to_string();
        self.offsets.insert(index, echo.chars().count());
        Some(self.chunk(
            vec![CompletionChoice {
                index,
                text: echo,
                logprobs: None,
                finish_reason: None,
                stop_reason: None,
            }],
            None,
        ))
    }

    fn delta(&mut self, index: usize, text: &str, lps: &[GeneratedLogprobs]) -> Option<String> {
        if text.is_empty() && lps.is_empty() {
            return None;
        }
        let logprobs = self.logprobs.map(|k| {
            let offset = self.offsets.entry(index).or_insert(0);
            let mut c = CompletionLogprobs::default();
            c.push(lps, k, offset);
            c
        });
        Some(self.chunk(
            vec![CompletionChoice {
                index,
                text: text.to_string(),
                logprobs,
                finish_reason: None,
                stop_reason: None,
            }],
            None,
        ))
    }

    fn finish(&mut self, index: usize, reason: FinishReason, stop: &Option<StopReason>) -> String {
        self.chunk(
            vec![CompletionChoice {
                index,
                text: String::new(),
                logprobs: None,
                finish_reason: Some(reason.as_str().into()),
                stop_reason: stop_reason_value(stop),
            }],
            None,
        )
    }

    fn usage(&mut self, usage: Usage) -> String {
        self.chunk(Vec::new(), Some(usage))
    }
}

/// `/chat/completions` answers (`chat.completion`, `chat.completion.chunk`).
pub(crate) struct ChatFormat {
    id: String,
    model: String,
    created: u64,
    logprobs: Option<usize>,
    include_usage: bool,
}

impl ChatFormat {
    /// A chat answer's format.
    pub(crate) fn new(
        id: String,
        model: String,
        logprobs: Option<usize>,
        include_usage: bool,
    ) -> Self {
        ChatFormat {
            id,
            model,
            created: unix_now(),
            logprobs,
            include_usage,
        }
    }

    fn chunk(&self, choices: Vec<ChatChunkChoice>, usage: Option<Usage>) -> String {
        to_json(&ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: self.include_usage.then_some(usage),
            system_fingerprint: None,
        })
    }

    /// The whole answer.
    pub(crate) fn response(&self, finished: &[Finished], prompt_lens: &[usize]) -> ChatResponse {
        let choices = finished
            .iter()
            .map(|f| ChatChoice {
                index: f.index,
                message: ChatMessage {
                    role: "assistant".into(),
                    content: Some(f.text.clone()),
                },
                logprobs: self.logprobs.map(|k| {
                    let mut c = ChatLogprobs::default();
                    c.push(&f.logprobs, k);
                    c
                }),
                finish_reason: Some(f.finish_reason.as_str().into()),
                stop_reason: stop_reason_value(&f.stop_reason),
            })
            .collect();
        ChatResponse {
            id: self.id.clone(),
            object: "chat.completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: usage_of(finished, prompt_lens),
            system_fingerprint: None,
        }
    }
}

impl ChunkFormat for ChatFormat {
    type Full = ChatResponse;

    fn full(&self, finished: &[Finished], prompt_lens: &[usize]) -> ChatResponse {
        self.response(finished, prompt_lens)
    }

    fn start(&mut self, index: usize, _prompt: usize) -> Option<String> {
        Some(self.chunk(
            vec![ChatChunkChoice {
                index,
                delta: ChatDelta {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                },
                logprobs: None,
                finish_reason: None,
                stop_reason: None,
            }],
            None,
        ))
    }

    fn delta(&mut self, index: usize, text: &str, lps: &[GeneratedLogprobs]) -> Option<String> {
        if text.is_empty() && lps.is_empty() {
            return None;
        }
        let logprobs = self.logprobs.map(|k| {
            let mut c = ChatLogprobs::default();
            c.push(lps, k);
            c
        });
        Some(self.chunk(
            vec![ChatChunkChoice {
                index,
                delta: ChatDelta {
                    role: None,
                    content: Some(text.to_string()),
                },
                logprobs,
                finish_reason: None,
                stop_reason: None,
            }],
            None,
        ))
    }

    fn finish(&mut self, index: usize, reason: FinishReason, stop: &Option<StopReason>) -> String {
        self.chunk(
            vec![ChatChunkChoice {
                index,
                delta: ChatDelta::default(),
                logprobs: None,
                finish_reason: Some(reason.as_str().into()),
                stop_reason: stop_reason_value(stop),
            }],
            None,
        )
    }

    fn usage(&mut self, usage: Usage) -> String {
        self.chunk(Vec::new(), Some(usage))
    }
}
