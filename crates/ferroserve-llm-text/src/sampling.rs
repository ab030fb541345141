//! [`Sampler`]: picks the next token from a row of logits.
//!
//! Order of processing (as vLLM / transformers): logit bias, repetition
//! penalty (transformers: over prompt and generated tokens), presence and
//! frequency penalties (OpenAI: over generated tokens), temperature (0 =
//! argmax), top-k, top-p (over the top-k set, renormalised), min-p, then a
//! draw from the request's seeded generator. Log-probabilities are those of
//! the raw logits (before any processing), as vLLM reports them.
//!
//! Cost: a few O(vocab) passes per call; sorting happens only on a truncated
//! candidate set found with `select_nth_unstable`. Buffers are reused across calls.

use ferroserve_core::generate::SamplingParams;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The chosen token and, when asked for, log-probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The chosen token id.
    pub id: u32,
    /// `(chosen token's logprob, top alternatives most likely first)` under
    /// the raw distribution; `Some` when `SamplingParams::logprobs` is set.
    pub logprobs: Option<(f32, Vec<(u32, f32)>)>,
}

/// A per-sequence sampler (holds the sequence's random generator).
#[derive(Debug)]
pub struct Sampler {
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    presence_penalty: f32,
    frequency_penalty: f32,
    repetition_penalty: f32,
    logit_bias: Vec<(u32, f32)>,
    logprobs: Option<usize>,
    rng: StdRng,
    /// Per-token occurrence counts / stamps (reset after each use).
    counts: Vec<u32>,
    /// Candidate buffer `(logit, id)`.
    cand: Vec<(f32, u32)>,
    /// Copy of the raw row (only when log-probabilities are asked for).
    raw: Vec<f32>,
}

impl Sampler {
    /// A sampler for one sequence. The generator is seeded from
    /// `params.seed` (reproducible), otherwise from the OS.
    pub fn new(params: &SamplingParams, vocab_size: usize) -> Self {
        let rng = match params.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Sampler {
            temperature: params.temperature,
            top_k: params.top_k,
            top_p: params.top_p,
            min_p: params.min_p,
            presence_penalty: params.presence_penalty,
            frequency_penalty: params.frequency_penalty,
            repetition_penalty: params.repetition_penalty,
            logit_bias: params.logit_bias.clone(),
            logprobs: params.logprobs,
            rng,
            counts: vec![0; vocab_size],
            cand: Vec::with_capacity(vocab_size),
            raw: Vec::new(),
        }
    }

    /// Whether this sampler always takes the most likely token.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }

    /// Picks the next token. `logits` (one row, modified in place) are the
    /// model's raw scores; `prompt` and `generated` feed the penalties.
    pub fn sample(&mut self, logits: &mut [f32], prompt: &[u32], generated: &[u32]) -> Sampled {
        self.sample_with_suppressed(logits, prompt, generated, &[])
    }

    /// Like [`Sampler::sample`], with `suppressed` tokens made impossible
    /// (end-of-sequence ids before `min_tokens`); log-probabilities still
    /// describe the raw distribution.
    pub fn sample_with_suppressed(
        &mut self,
        logits: &mut [f32],
        prompt: &[u32],
        generated: &[u32],
        suppressed: &[u32],
    ) -> Sampled {
        let n = logits.len();
        if n == 0 {
            return Sampled {
                id: 0,
                logprobs: None,
            };
        }
        // Raw log-probabilities: log-sum-exp, top alternatives and a copy of
        // the raw row (the chosen token is known only after processing).
        let raw = match self.logprobs {
            Some(k) => {
                for l in logits.iter_mut().filter(|l| l.is_nan()) {
                    *l = f32::NEG_INFINITY;
                }
                let (lse, top) = raw_logprob_stats(logits, k, &mut self.cand);
                self.raw.clear();
                self.raw.extend_from_slice(logits);
                Some((lse, top))
            }
            None => None,
        };

        self.apply_bias_and_penalties(logits, prompt, generated);
        for &id in suppressed {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        let id = if self.is_greedy() {
            argmax(logits)
        } else {
            self.draw(logits)
        };
        let logprobs = raw.map(|(lse, top)| {
            let chosen = self
                .raw
                .get(id as usize)
                .map_or(f32::NEG_INFINITY, |l| l - lse);
            (chosen, top)
        });
        Sampled { id, logprobs }
    }

    fn apply_bias_and_penalties(&mut self, logits: &mut [f32], prompt: &[u32], generated: &[u32]) {
        for &(id, b) in &self.logit_bias {
            if let Some(l) = logits.get_mut(id as usize) {
                *l += b;
            }
        }
        if self.counts.len() < logits.len() {
            self.counts.resize(logits.len(), 0);
        }
        let rp = self.repetition_penalty;
        if rp != 1.0 && rp > 0.0 {
            for &id in prompt.iter().chain(generated) {
                let i = id as usize;
                if let (Some(l), Some(c)) = (logits.get_mut(i), self.counts.get_mut(i)) {
                    if *c == 0 {
                        *c = 1;
                        *l = if *l < 0.0 { *l * rp } else { *l / rp };
                    }
                }
            }
            for &id in prompt.iter().chain(generated) {
                if let Some(c) = self.counts.get_mut(id as usize) {
                    *c = 0;
                }
            }
        }
        if self.presence_penalty != 0.0 || self.frequency_penalty != 0.0 {
            for &id in generated {
                if let Some(c) = self.counts.get_mut(id as usize) {
                    *c += 1;
                }
            }
            for &id in generated {
                let i = id as usize;
                if let (Some(l), Some(c)) = (logits.get_mut(i), self.counts.get_mut(i)) {
                    if *c > 0 {
                        *l -= self.presence_penalty + self.frequency_penalty * *c as f32;
                        *c = 0;
                    }
                }
            }
        }
    }

    /// Temperature, top-k, top-p, min-p, then a draw.
    fn draw(&mut self, logits: &[f32]) -> u32 {
        let t = self.temperature;
        let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if m == f32::NEG_INFINITY {
            return argmax(logits);
        }
        // Candidates with their probability relative to the most likely token
        // (exp((l - m) / t), so the best is 1).
        self.cand.clear();
        self.cand.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, &l)| l > f32::NEG_INFINITY)
                .map(|(i, &l)| (((l - m) / t).exp(), i as u32)),
        );
        if self.top_k > 0 && self.top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(self.top_k - 1, desc);
            self.cand.truncate(self.top_k);
        }
        if self.top_p < 1.0 {
            let total: f32 = self.cand.iter().map(|c| c.0).sum();
            let keep = top_p_count(&mut self.cand, self.top_p * total);
            self.cand.truncate(keep);
        }
        if self.min_p > 0.0 {
            // p >= min_p * p_max, and p_max is 1 here (the best token always survives).
            let min_p = self.min_p;
            self.cand.retain(|c| c.0 >= min_p || c.0 >= 1.0);
        }
        let total: f32 = self.cand.iter().map(|c| c.0).sum();
        if total.is_nan() || total <= 0.0 || total.is_infinite() {
            return argmax(logits);
        }
        let mut u = self.rng.random::<f32>() * total;
        for c in &self.cand {
            u -= c.0;
            if u < 0.0 {
                return c.1;
            }
        }
        self.cand.last().map_or_else(|| argmax(logits), |c| c.1)
    }
}

/// Descending by value, then ascending by id.
fn desc(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Nucleus cut in expected O(n): reorders `cand` so that its first `k`
/// entries are the smallest most-likely set whose mass reaches `target`, and returns `k`.
fn top_p_count(cand: &mut [(f32, u32)], target: f32) -> usize {
    let (mut lo, mut hi) = (0usize, cand.len());
    let mut need = target;
    // Invariant: cand[..lo] are kept and rank above cand[lo..hi], which rank above cand[hi..];
    // the answer lies in lo+1..=hi.
    while hi - lo > 1 {
        let mid = (hi - lo) / 2;
        let part = &mut cand[lo..hi];
        part.select_nth_unstable_by(mid, desc);
        let top: f32 = part[..mid].iter().map(|c| c.0).sum();
        if top >= need {
            hi = lo + mid;
        } else {
            need -= top;
            lo += mid;
        }
    }
    hi.min(lo + 1).max(1).min(cand.len())
}

/// Index of the largest value (the first on ties, as `torch.argmax`).
fn argmax(v: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut bv = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > bv {
            bv = x;
            best = i;
        }
    }
    best as u32
}

/// Log-sum-exp of the row and its `k` most likely tokens with their log-probabilities.
fn raw_logprob_stats(
    logits: &[f32],
    k: usize,
    buf: &mut Vec<(f32, u32)>,
) -> (f32, Vec<(u32, f32)>) {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return (0.0, Vec::new());
    }
    let sum: f64 = logits.iter().map(|&l| f64::from(l - m).exp()).sum();
    let lse = m + sum.ln() as f32;
    if k == 0 {
        return (lse, Vec::new());
    }
    buf.clear();
    buf.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
    let desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    let k = k.min(buf.len());
    if k < buf.len() {
        buf.select_nth_unstable_by(k - 1, desc);
    }
    let head = &mut buf[..k];
    head.sort_unstable_by(desc);
    (lse, head.iter().map(|&(l, i)| (i, l - lse)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SamplingParams {
        SamplingParams::default()
    }

    fn softmax(v: &[f32]) -> Vec<f64> {
        let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f64> = v.iter().map(|&x| f64::from(x - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|x| x / s).collect()
    }

    #[test]
    fn greedy_takes_argmax_and_reports_raw_logprobs() {
        let p = SamplingParams {
            temperature: 0.0,
            logprobs: Some(2),
            logit_bias: vec![(0, 10.0)],
            ..params()
        };
        let mut s = Sampler::new(&p, 4);
        let mut logits = vec![1.0, 3.0, 2.0, 0.5];
        let raw = logits.clone();
        let out = s.sample(&mut logits, &[], &[]);
        assert_eq!(out.id, 0, "logit bias moves the argmax");
        let (chosen, top) = out.logprobs.unwrap();
        let probs = softmax(&raw);
        assert!((f64::from(chosen) - probs[0].ln()).abs() < 1e-5);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!((f64::from(top[0].1) - probs[1].ln()).abs() < 1e-5);
    }

    #[test]
    fn repetition_penalty_is_hf() {
        let p = SamplingParams {
            temperature: 0.0,
            repetition_penalty: 2.0,
            ..params()
        };
        let mut s = Sampler::new(&p, 3);
        let mut logits = vec![4.0, 3.0, -1.0];
        s.apply_bias_and_penalties(&mut logits, &[0, 0], &[2]);
        assert_eq!(logits, vec![2.0, 3.0, -2.0]);
        // Counts are reset: a second call penalises again from scratch.
        let mut logits = vec![4.0, 3.0, -1.0];
        s.apply_bias_and_penalties(&mut logits, &[1], &[]);
        assert_eq!(logits, vec![4.0, 1.5, -1.0]);
    }

    #[test]
    fn presence_and_frequency_are_openai() {
        let p = SamplingParams {
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            ..params()
        };
        let mut s = Sampler::new(&p, 3);
        let mut logits = vec![0.0, 0.0, 0.0];
        s.apply_bias_and_penalties(&mut logits, &[2, 2], &[0, 0, 1]);
        assert_eq!(logits, vec![-1.0, -0.75, 0.0]);
        let mut logits = vec![0.0, 0.0, 0.0];
        s.apply_bias_and_penalties(&mut logits, &[], &[1]);
        assert_eq!(logits, vec![0.0, -0.75, 0.0]);
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_follows_the_distribution() {
        let p = SamplingParams {
            seed: Some(7),
            ..params()
        };
        let logits = vec![0.0f32, (2.0f32).ln(), (3.0f32).ln(), f32::NEG_INFINITY];
        let draw = |p: &SamplingParams| {
            let mut s = Sampler::new(p, 4);
            (0..6000)
                .map(|_| s.sample(&mut logits.clone(), &[], &[]).id)
                .collect::<Vec<_>>()
        };
        let a = draw(&p);
        assert_eq!(a, draw(&p));
        let mut counts = [0usize; 4];
        for id in &a {
            counts[*id as usize] += 1;
        }
        assert_eq!(counts[3], 0);
        for (i, want) in [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0].iter().enumerate() {
            let got = counts[i] as f64 / 6000.0;
            assert!((got - want).abs() < 0.03, "token {i}: {got} vs {want}");
        }
    }

    #[test]
    fn top_k_top_p_min_p_truncate() {
        let logits: Vec<f32> = (0..1000).map(|i| -(i as f32) * 0.01).collect();
        let run = |p: SamplingParams| {
            let mut s = Sampler::new(&p, 1000);
            (0..400)
                .map(|_| s.sample(&mut logits.clone(), &[], &[]).id)
                .max()
                .unwrap()
        };
        assert!(
            run(SamplingParams {
                top_k: 5,
                seed: Some(1),
                ..params()
            }) < 5
        );
        // p_i ∝ exp(-0.01 i): the top 10% of mass is the first ~10.5 tokens.
        let max = run(SamplingParams {
            top_p: 0.1,
            seed: Some(2),
            ..params()
        });
        assert!(max <= 11, "{max}");
        // min_p 0.9: keep tokens with exp(-0.01 i) >= 0.9, i <= 10.
        let max = run(SamplingParams {
            min_p: 0.9,
            seed: Some(3),
            ..params()
        });
        assert!(max <= 10, "{max}");
        // Low temperature sharpens.
        let max = run(SamplingParams {
            temperature: 0.001,
            seed: Some(4),
            ..params()
        });
        assert_eq!(max, 0);
    }

    #[test]
    fn suppressed_tokens_are_never_chosen() {
        let p = SamplingParams {
            temperature: 0.0,
            logprobs: Some(0),
            ..params()
        };
        let mut s = Sampler::new(&p, 3);
        let out = s.sample_with_suppressed(&mut [5.0, 1.0, 0.0], &[], &[], &[0]);
        assert_eq!(out.id, 1);
        let (lp, top) = out.logprobs.unwrap();
        assert!(top.is_empty());
        assert!((f64::from(lp) - softmax(&[5.0, 1.0, 0.0])[1].ln()).abs() < 1e-5);
    }

    proptest::proptest! {
        #[test]
        fn nucleus_cut_is_the_smallest_top_set(
            probs in proptest::collection::vec(0.0f32..1.0, 1..200),
            p in 0.01f32..1.0,
        ) {
            let mut cand: Vec<(f32, u32)> = probs.iter().enumerate().map(|(i, &x)| (x, i as u32)).collect();
            let total: f32 = probs.iter().sum();
            let target = p * total;
            let k = top_p_count(&mut cand, target);
            // Brute force: sort descending, count until the mass reaches the target.
            let mut sorted = probs.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let mut cum = 0.0f32;
            let mut want = sorted.len();
            for (j, x) in sorted.iter().enumerate() {
                cum += x;
                if cum >= target {
                    want = j + 1;
                    break;
                }
            }
            // Float summation order may move the boundary by one on near-ties.
            proptest::prop_assert!((k as i64 - want as i64).abs() <= 1, "k {} want {}", k, want);
            let mut kept: Vec<f32> = cand[..k].iter().map(|c| c.0).collect();
            kept.sort_by(|a, b| b.total_cmp(a));
            proptest::prop_assert_eq!(&kept[..], &sorted[..k]);
        }
    }

    /// Timing at a 152k vocabulary (run with `--ignored`; prints per-call times).
    #[test]
    #[ignore]
    fn speed_at_large_vocab() {
        let n = 152_064;
        let mut rng = StdRng::seed_from_u64(0);
        let base: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 20.0 - 10.0).collect();
        let prompt: Vec<u32> = (0..2000).map(|i| (i * 37) % n as u32).collect();
        let generated: Vec<u32> = (0..500).map(|i| (i * 101) % n as u32).collect();
        for (name, p) in [
            (
                "greedy",
                SamplingParams {
                    temperature: 0.0,
                    ..params()
                },
            ),
            ("plain", params()),
            (
                "top_p 0.9 + top_k 50 + penalties",
                SamplingParams {
                    top_p: 0.9,
                    top_k: 50,
                    repetition_penalty: 1.1,
                    presence_penalty: 0.5,
                    frequency_penalty: 0.5,
                    ..params()
                },
            ),
            (
                "top_p 0.95",
                SamplingParams {
                    top_p: 0.95,
                    ..params()
                },
            ),
            (
                "min_p 0.05 + logprobs 5",
                SamplingParams {
                    min_p: 0.05,
                    logprobs: Some(5),
                    ..params()
                },
            ),
        ] {
            let mut s = Sampler::new(&p, n);
            let mut row = base.clone();
            let t = std::time::Instant::now();
            for _ in 0..50 {
                row.copy_from_slice(&base);
                s.sample(&mut row, &prompt, &generated);
            }
            let per = t.elapsed() / 50;
            eprintln!("{name}: {per:?} per call");
            assert!(
                per < std::time::Duration::from_millis(50),
                "{name}: {per:?}"
            );
        }
    }
}
