//! Running a request's generations: starting them (one per prompt and
//! choice) and, for non-streaming answers, collecting their events.

use ferroserve_core::generate::{
    FinishReason, GenerateEvent, GenerateRequest, GenerateStream, GeneratedLogprobs,
    SamplingParams, StopReason, TextGenerator, Usage,
};
use ferroserve_core::Error;

/// One running generation: which choice it answers and its event stream.
pub(crate) struct Running {
    /// Choice index in the answer (`prompt * n + i`).
    pub index: usize,
    /// Index of its prompt.
    pub prompt: usize,
    /// The events; dropping it cancels the generation.
    pub rx: GenerateStream,
}

/// What a generation is asked to do.
pub(crate) struct Job {
    /// Choice index.
    pub index: usize,
    /// Prompt index.
    pub prompt: usize,
    /// Prompt tokens.
    pub tokens: Vec<u32>,
    /// Sampling parameters.
    pub params: SamplingParams,
}

/// Starts every job. If one cannot start, those already started are
/// dropped (and so cancelled) and its error is returned.
pub(crate) fn start_all(
    g: &dyn TextGenerator,
    request_id: &str,
    jobs: Vec<Job>,
) -> Result<Vec<Running>, Error> {
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let rx = g.generate(GenerateRequest {
            request_id: format!("{request_id}-{}", job.index),
            prompt: job.tokens,
            params: job.params,
        })?;
        out.push(Running {
            index: job.index,
            prompt: job.prompt,
            rx,
        });
    }
    Ok(out)
}

/// A generation that ran to its end.
pub(crate) struct Finished {
    /// Choice index.
    pub index: usize,
    /// Prompt index.
    pub prompt: usize,
    /// The whole output text.
    pub text: String,
    /// Log-probabilities of every generated token, when asked for.
    pub logprobs: Vec<GeneratedLogprobs>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// What ended it.
    pub stop_reason: Option<StopReason>,
    /// Token counts.
    pub usage: Usage,
}

fn ended_early() -> Error {
    Error::internal("generation ended without a final event")
}

async fn collect_one(mut r: Running) -> Result<Finished, Error> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    while let Some(ev) = r.rx.recv().await {
        match ev? {
            GenerateEvent::Delta {
                text: t,
                logprobs: lps,
                ..
            } => {
                text.push_str(&t);
                logprobs.extend(lps);
            }
            GenerateEvent::Done {
                finish_reason,
                stop_reason,
                usage,
            } => {
                return Ok(Finished {
                    index: r.index,
                    prompt: r.prompt,
                    text,
                    logprobs,
                    finish_reason,
                    stop_reason,
                    usage,
                })
            }
        }
    }
    Err(ended_early())
}

/// Collects every generation concurrently, in choice order. The first
/// failure drops the others (cancelling them) and is returned.
pub(crate) async fn collect_all(running: Vec<Running>) -> Result<Vec<Finished>, Error> {
    let mut done = futures::future::try_join_all(running.into_iter().map(collect_one)).await?;
    done.sort_by_key(|f| f.index);
    Ok(done)
}
