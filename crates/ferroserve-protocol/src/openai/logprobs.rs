//! Log-probabilities in OpenAI's two formats: the legacy completions one
//! (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`) and chat's
//! (`content: [{token, logprob, bytes, top_logprobs}]`).

use ferroserve_core::generate::GeneratedLogprobs;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `-inf` (and NaN) become OpenAI's `-9999.0`, which JSON can carry.
pub fn finite_logprob(lp: f32) -> f32 {
    if lp.is_nan() {
        -9999.0
    } else {
        lp.max(-9999.0)
    }
}

/// A token → log-probability map in the order given (most likely first).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TopLogprobs(pub Vec<(String, f32)>);

impl Serialize for TopLogprobs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for TopLogprobs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = std::collections::BTreeMap::<String, f32>::deserialize(d)?;
        Ok(TopLogprobs(m.into_iter().collect()))
    }
}

/// Legacy completions log-probabilities.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CompletionLogprobs {
    /// Token texts.
    pub tokens: Vec<String>,
    /// Their log-probabilities.
    pub token_logprobs: Vec<Option<f32>>,
    /// Per token: the chosen token and the `logprobs` most likely ones.
    pub top_logprobs: Vec<Option<TopLogprobs>>,
    /// Per token: its offset in characters in the choice's text.
    pub text_offset: Vec<usize>,
}

impl CompletionLogprobs {
    /// Appends `lps`, with at most `k` alternatives beside the chosen token;
    /// `offset` is the character offset of the first one, advanced past
    /// each token's text.
    pub fn push(&mut self, lps: &[GeneratedLogprobs], k: usize, offset: &mut usize) {
        for lp in lps {
            let chosen = &lp.chosen;
            self.tokens.push(chosen.text.clone());
            self.token_logprobs
                .push(Some(finite_logprob(chosen.logprob)));
            let mut top: Vec<(String, f32)> = Vec::with_capacity(k + 1);
            top.push((chosen.text.clone(), finite_logprob(chosen.logprob)));
            for t in &lp.top {
                if top.len() > k {
                    break;
                }
                if !top.iter().any(|(s, _)| *s == t.text) {
                    top.push((t.text.clone(), finite_logprob(t.logprob)));
                }
            }
            self.top_logprobs.push(Some(TopLogprobs(top)));
            self.text_offset.push(*offset);
            *offset += chosen.text.chars().count();
        }
    }
}

/// One alternative of a chat token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatTopLogprob {
    /// Token text.
    pub token: String,
    /// Log-probability.
    pub logprob: f32,
    /// UTF-8 bytes of the token.
    pub bytes: Option<Vec<u8>>,
}

/// One generated chat token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatTokenLogprob {
    /// Token text.
    pub token: String,
    /// Log-probability.
    pub logprob: f32,
    /// UTF-8 bytes of the token.
    pub bytes: Option<Vec<u8>>,
    /// The `top_logprobs` most likely tokens at this step.
    pub top_logprobs: Vec<ChatTopLogprob>,
}

/// Chat log-probabilities.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatLogprobs {
    /// One entry per generated token.
    pub content: Vec<ChatTokenLogprob>,
}

impl ChatLogprobs {
    /// Appends `lps`, with at most `k` alternatives each.
    pub fn push(&mut self, lps: &[GeneratedLogprobs], k: usize) {
        for lp in lps {
            self.content.push(ChatTokenLogprob {
                token: lp.chosen.text.clone(),
                logprob: finite_logprob(lp.chosen.logprob),
                bytes: Some(lp.chosen.bytes.clone()),
                top_logprobs: lp
                    .top
                    .iter()
                    .take(k)
                    .map(|t| ChatTopLogprob {
                        token: t.text.clone(),
                        logprob: finite_logprob(t.logprob),
                        bytes: Some(t.bytes.clone()),
                    })
                    .collect(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_core::generate::TokenLogprob;

    fn tok(id: u32, text: &str, logprob: f32) -> TokenLogprob {
        TokenLogprob {
            id,
            text: text.into(),
            bytes: text.as_bytes().to_vec(),
            logprob,
        }
    }

    fn step() -> GeneratedLogprobs {
        GeneratedLogprobs {
            chosen: tok(2, "é", -0.5),
            top: vec![
                tok(1, "a", -0.25),
                tok(2, "é", -0.5),
                tok(3, "b", f32::NEG_INFINITY),
            ],
        }
    }

    #[test]
    fn completion_format() {
        let mut c = CompletionLogprobs::default();
        let mut off = 4;
        c.push(&[step(), step()], 2, &mut off);
        assert_eq!(off, 6);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "tokens": ["é", "é"], "token_logprobs": [-0.5, -0.5],
                "top_logprobs": [{"é": -0.5, "a": -0.25, "b": -9999.0}, {"é": -0.5, "a": -0.25, "b": -9999.0}],
                "text_offset": [4, 5]})
        );
        let mut zero = CompletionLogprobs::default();
        zero.push(&[step()], 0, &mut 0);
        assert_eq!(zero.top_logprobs[0].as_ref().unwrap().0.len(), 1);
    }

    #[test]
    fn chat_format() {
        let mut c = ChatLogprobs::default();
        c.push(&[step()], 1);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"content": [{"token": "é", "logprob": -0.5, "bytes": [195, 169],
                "top_logprobs": [{"token": "a", "logprob": -0.25, "bytes": [97]}]}]})
        );
    }
}
