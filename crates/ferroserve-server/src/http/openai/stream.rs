//! Server-sent events in OpenAI's chunk format. The response body owns the
//! generations' receivers: when the client goes away the body is dropped,
//! the receivers with it, and the engine cancels the generations. Nothing
//! else (no spawned task) holds them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use ferroserve_core::generate::{
    FinishReason, GenerateEvent, GeneratedLogprobs, StopReason, Usage as CoreUsage,
};
use ferroserve_core::{Error, ServedModel};
use ferroserve_protocol::openai::{total_usage, OpenAiError, Usage};
use futures::stream::{SelectAll, Stream, StreamExt};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::gen::Running;

/// How often an idle stream sends an SSE comment, so that a client that
/// went away is noticed even while nothing is generated.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Turns generation events into the JSON of one endpoint's chunks.
pub(crate) trait ChunkFormat: Send + 'static {
    /// Chunks sent for a choice before any output (chat: the role; completions: the echoed prompt).
    fn start(&mut self, index: usize, prompt: usize) -> Option<String>;
    /// A chunk for new text and its tokens' log-probabilities; `None` when
    /// there is nothing to send.
    fn delta(&mut self, index: usize, text: &str, logprobs: &[GeneratedLogprobs])
        -> Option<String>;
    /// A choice's last chunk.
    fn finish(&mut self, index: usize, reason: FinishReason, stop: &Option<StopReason>) -> String;
    /// The usage-only chunk (`choices: []`).
    fn usage(&mut self, usage: Usage) -> String;
    /// The whole (non-streamed) answer's body.
    type Full: serde::Serialize;
    /// The whole answer from the finished choices.
    fn full(&self, finished: &[super::gen::Finished], prompt_lens: &[usize]) -> Self::Full;
}

type Tagged = Pin<Box<dyn Stream<Item = (usize, Result<GenerateEvent, Error>)> + Send>>;

struct Choice {
    index: usize,
    prompt: usize,
    done: bool,
}

struct State<F> {
    format: F,
    pending: VecDeque<String>,
    events: SelectAll<Tagged>,
    choices: Vec<Choice>,
    prompt_lens: Vec<usize>,
    finished: Vec<(usize, CoreUsage)>,
    include_usage: bool,
    ended: bool,
    // Keeps the model version alive (and an unload waiting) while the stream runs.
    _model: Arc<ServedModel>,
}

impl<F: ChunkFormat> State<F> {
    fn fail(&mut self, e: &Error) {
        let body = OpenAiError::from_core(e).body();
        self.pending
            .push_back(serde_json::to_string(&body).unwrap_or_else(|_| "{}".into()));
        self.end();
    }

    fn end(&mut self) {
        self.ended = true;
        // Drops every receiver now: cancels what is still running.
        self.events = SelectAll::new();
    }

    fn on_event(&mut self, slot: usize, ev: Result<GenerateEvent, Error>) {
        let Some(choice) = self.choices.get_mut(slot) else {
            return;
        };
        match ev {
            Err(e) => self.fail(&e),
            Ok(_) if choice.done => {}
            Ok(GenerateEvent::Delta { text, logprobs, .. }) => {
                let index = choice.index;
                if let Some(c) = self.format.delta(index, &text, &logprobs) {
                    self.pending.push_back(c);
                }
            }
            Ok(GenerateEvent::Done {
                finish_reason,
                stop_reason,
                usage,
            }) => {
                choice.done = true;
                let (index, prompt) = (choice.index, choice.prompt);
                self.finished.push((prompt, usage));
                let c = self.format.finish(index, finish_reason, &stop_reason);
                self.pending.push_back(c);
                if self.choices.iter().all(|c| c.done) {
                    if self.include_usage {
                        let u = total_usage(&self.prompt_lens, &self.finished);
                        let c = self.format.usage(u);
                        self.pending.push_back(c);
                    }
                    self.pending.push_back("[DONE]".into());
                    self.end();
                }
            }
        }
    }

    async fn next_data(&mut self) -> Option<String> {
        loop {
            if let Some(d) = self.pending.pop_front() {
                return Some(d);
            }
            if self.ended {
                return None;
            }
            match self.events.next().await {
                Some((slot, ev)) => self.on_event(slot, ev),
                None => self.fail(&Error::internal("generation ended without a final event")),
            }
        }
    }
}

/// The SSE response for `running`, formatted by `format`.
pub(crate) fn sse<F: ChunkFormat>(
    mut format: F,
    running: Vec<Running>,
    prompt_lens: Vec<usize>,
    include_usage: bool,
    model: Arc<ServedModel>,
) -> Response {
    let mut pending = VecDeque::new();
    let mut choices = Vec::with_capacity(running.len());
    let mut events: SelectAll<Tagged> = SelectAll::new();
    let mut order: Vec<(usize, usize)> = running.iter().map(|r| (r.index, r.prompt)).collect();
    order.sort_unstable();
    for (index, prompt) in order {
        if let Some(c) = format.start(index, prompt) {
            pending.push_back(c);
        }
    }
    for (slot, r) in running.into_iter().enumerate() {
        choices.push(Choice {
            index: r.index,
            prompt: r.prompt,
            done: false,
        });
        let tagged: Tagged = Box::pin(UnboundedReceiverStream::new(r.rx).map(move |ev| (slot, ev)));
        events.push(tagged);
    }
    let state = State {
        format,
        pending,
        events,
        choices,
        prompt_lens,
        finished: Vec::new(),
        include_usage,
        ended: false,
        _model: model,
    };
    let body = futures::stream::unfold(state, |mut s| async move {
        let data = s.next_data().await?;
        Some((Ok::<_, Infallible>(Event::default().data(data)), s))
    });
    Sse::new(body)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}
