//! [`StopMatcher`]: stop strings matched across token boundaries.

/// Finds stop strings in streamed text. Text that could be the start of a
/// stop string is held back until it is known not to be one; the stop string
/// and everything after it is never emitted.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// A matcher for these stop strings (empty strings are ignored).
    pub fn new<I, S>(stops: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        StopMatcher {
            stops: stops
                .into_iter()
                .map(Into::into)
                .filter(|s: &String| !s.is_empty())
                .collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Whether there is nothing to match.
    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// Whether a stop string was found.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Feeds new text. Returns the text now safe to emit and, when a stop
    /// string was found, that string. The stop chosen is the one that starts
    /// earliest in the whole output (the longest on a tie), so a match is only
    /// declared once no longer or earlier stop string can still complete.
    /// After a stop, further input is ignored.
    pub fn push(&mut self, text: &str) -> (String, Option<String>) {
        if self.stopped {
            return (String::new(), None);
        }
        if self.stops.is_empty() {
            return (text.to_string(), None);
        }
        self.held.push_str(text);
        self.scan(false)
    }

    /// Ends the stream: returns the held-back text, cut before a stop string
    /// that is now decided (with that string).
    pub fn finish(&mut self) -> (String, Option<String>) {
        if self.stopped {
            return (String::new(), None);
        }
        self.scan(true)
    }

    fn scan(&mut self, last: bool) -> (String, Option<String>) {
        let mut best: Option<(usize, usize)> = None;
        for (i, s) in self.stops.iter().enumerate() {
            if let Some(pos) = self.held.find(s.as_str()) {
                let better = match best {
                    None => true,
                    Some((bpos, bi)) => {
                        pos < bpos || (pos == bpos && s.len() > self.stops[bi].len())
                    }
                };
                if better {
                    best = Some((pos, i));
                }
            }
        }
        if let Some((pos, i)) = best {
            let len = self.stops[i].len();
            if last || !self.pending_at_or_before(pos, len) {
                let emit = self.held[..pos].to_string();
                self.held.clear();
                self.stopped = true;
                return (emit, self.stops.get(i).cloned());
            }
        }
        if last {
            return (std::mem::take(&mut self.held), None);
        }
        let cut = self.held.len() - self.partial_suffix_len();
        let emit = self.held[..cut].to_string();
        self.held.drain(..cut);
        (emit, None)
    }

    /// Whether a stop string could still complete starting before `pos`, or
    /// at `pos` and longer than `len`.
    fn pending_at_or_before(&self, pos: usize, len: usize) -> bool {
        let n = self.held.len();
        self.stops.iter().any(|s| {
            let lo = (n + 1).saturating_sub(s.len());
            (lo..=pos.min(n)).any(|q| {
                self.held.is_char_boundary(q)
                    && n - q < s.len()
                    && (q < pos || s.len() > len)
                    && s.starts_with(&self.held[q..])
            })
        })
    }

    /// Length of the longest suffix of the held text that is a proper prefix of a stop string.
    fn partial_suffix_len(&self) -> usize {
        let mut best = 0;
        for s in &self.stops {
            let max = (s.len() - 1).min(self.held.len());
            for k in (best + 1..=max).rev() {
                if s.is_char_boundary(k) && self.held.ends_with(&s[..k]) {
                    best = k;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, Option<String>) {
        let mut m = StopMatcher::new(stops.iter().copied());
        let mut out = String::new();
        for p in pieces {
            let (e, s) = m.push(p);
            out.push_str(&e);
            if s.is_some() {
                return (out, s);
            }
        }
        let (e, s) = m.finish();
        out.push_str(&e);
        (out, s)
    }

    #[test]
    fn stop_across_pieces_is_cut() {
        assert_eq!(
            run(&["###"], &["Hello #", "#", "# world"]),
            ("Hello ".to_string(), Some("###".to_string()))
        );
    }

    #[test]
    fn partial_match_released_when_it_fails() {
        let mut m = StopMatcher::new(["</end>"]);
        assert_eq!(m.push("a </e"), ("a ".to_string(), None));
        assert_eq!(m.push("x"), ("</ex".to_string(), None));
        assert_eq!(m.finish(), (String::new(), None));
    }

    #[test]
    fn held_text_flushed_at_finish() {
        let mut m = StopMatcher::new(["STOP"]);
        assert_eq!(m.push("abc ST"), ("abc ".to_string(), None));
        assert_eq!(m.finish(), ("ST".to_string(), None));
    }

    #[test]
    fn earliest_stop_wins_and_multibyte_is_safe() {
        assert_eq!(
            run(&["world", "lo"], &["hel", "lo world"]),
            ("hel".to_string(), Some("lo".to_string()))
        );
        assert_eq!(
            run(&["€x"], &["a€", "€x tail"]),
            ("a€".to_string(), Some("€x".to_string()))
        );
        assert_eq!(run(&["€x"], &["a€"]), ("a€".to_string(), None));
    }

    #[test]
    fn longer_or_earlier_stop_still_pending_wins() {
        assert_eq!(
            run(&["ab", "abc"], &["ab", "c"]),
            (String::new(), Some("abc".to_string()))
        );
        assert_eq!(
            run(&["abc", "b"], &["ab", "c"]),
            (String::new(), Some("abc".to_string()))
        );
        assert_eq!(
            run(&["abc", "b"], &["ab", "x"]),
            ("a".to_string(), Some("b".to_string()))
        );
        assert_eq!(
            run(&["abc", "b"], &["ab"]),
            ("a".to_string(), Some("b".to_string()))
        );
    }

    #[test]
    fn no_stops_passes_through() {
        let mut m = StopMatcher::new(Vec::<String>::new());
        assert_eq!(m.push("abc"), ("abc".to_string(), None));
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_result(
            text in "[abc€ ]{0,40}",
            stops in proptest::collection::vec("[abc€]{1,4}", 0..3),
            cuts in proptest::collection::vec(0usize..60, 0..10),
        ) {
            // Reference: cut the text before the earliest occurrence of any stop.
            let mut best: Option<(usize, usize)> = None;
            for s in &stops {
                if let Some(p) = text.find(s.as_str()) {
                    if best.is_none_or(|(bp, bl)| p < bp || (p == bp && s.len() > bl)) {
                        best = Some((p, s.len()));
                    }
                }
            }
            let expected = match best {
                Some((p, l)) => (text[..p].to_string(), Some(text[p..p + l].to_string())),
                None => (text.clone(), None),
            };
            let mut bounds: Vec<usize> = cuts.into_iter().filter(|&c| c <= text.len() && text.is_char_boundary(c)).collect();
            bounds.push(0);
            bounds.push(text.len());
            bounds.sort_unstable();
            bounds.dedup();
            let pieces: Vec<&str> = bounds.windows(2).map(|w| &text[w[0]..w[1]]).collect();
            let stop_refs: Vec<&str> = stops.iter().map(String::as_str).collect();
            prop_assert_eq!(run(&stop_refs, &pieces), expected);
        }
    }
}
