//! KV-cache memory accounting in fixed-size blocks, and the prefix cache.
//!
//! Each sequence stores its keys and values in its own [`SeqCache`]; the
//! budget counts them in blocks of `block_size` positions so that admission,
//! growth and preemption decisions are made before any memory is touched.
//! Finished prompts stay in an LRU prefix cache (their blocks still counted)
//! until the space is needed: a new prompt that starts with the same whole
//! blocks copies those positions instead of recomputing them.

use crate::model::SeqCache;

/// Block counts of the KV-cache budget.
#[derive(Debug)]
pub struct KvBudget {
    block_size: usize,
    total: usize,
    used: usize,
}

impl KvBudget {
    /// A budget of `total_blocks` blocks of `block_size` positions.
    pub fn new(block_size: usize, total_blocks: usize) -> Self {
        KvBudget {
            block_size: block_size.max(1),
            total: total_blocks,
            used: 0,
        }
    }

    /// Positions per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks needed to hold `positions` positions.
    pub fn blocks_for(&self, positions: usize) -> usize {
        positions.div_ceil(self.block_size)
    }

    /// Blocks not in use.
    pub fn free(&self) -> usize {
        self.total - self.used
    }

    /// Fraction of blocks in use.
    pub fn usage(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.used as f64 / self.total as f64
        }
    }

    /// Takes `n` blocks if they are free.
    pub fn try_alloc(&mut self, n: usize) -> bool {
        if n <= self.free() {
            self.used += n;
            true
        } else {
            false
        }
    }

    /// Returns `n` blocks.
    pub fn release(&mut self, n: usize) {
        self.used = self.used.saturating_sub(n);
    }
}

/// A cached prompt prefix: whole blocks of tokens and their KV cache.
struct PrefixEntry {
    tokens: Vec<u32>,
    cache: SeqCache,
    blocks: usize,
    last_used: u64,
}

/// An LRU set of cached prompt prefixes.
#[derive(Default)]
pub struct PrefixCache {
    entries: Vec<PrefixEntry>,
    clock: u64,
    max_entries: usize,
}

impl PrefixCache {
    /// A prefix cache keeping at most `max_entries` prefixes (0: off).
    pub fn new(max_entries: usize) -> Self {
        PrefixCache {
            entries: Vec::new(),
            clock: 0,
            max_entries,
        }
    }

    /// True when prefix caching is on.
    pub fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    /// The longest cached prefix of `prompt` in whole blocks, leaving at
    /// least one prompt token to compute (its logits start generation).
    /// Returns a fresh cache holding those positions and their count.
    pub fn lookup(&mut self, prompt: &[u32], block_size: usize) -> Option<(SeqCache, usize)> {
        let limit = prompt.len().saturating_sub(1);
        let mut best: Option<(usize, usize)> = None;
        for (i, e) in self.entries.iter().enumerate() {
            let common = e
                .tokens
                .iter()
                .zip(prompt)
                .take_while(|(a, b)| a == b)
                .count()
                .min(limit);
            let whole = common / block_size * block_size;
            if whole > 0 && best.is_none_or(|(_, n)| whole > n) {
                best = Some((i, whole));
            }
        }
        let (i, n) = best?;
        self.clock += 1;
        let entry = self.entries.get_mut(i)?;
        entry.last_used = self.clock;
        let cache = entry.cache.fork_prefix(n).ok()?;
        Some((cache, n))
    }

    /// Offers a finished sequence's cache: its first `prompt_len` tokens,
    /// cut to whole blocks, are kept unless an entry already covers them.
    /// The blocks kept are taken from `budget` (what the sequence held is
    /// released by the caller). Returns false when nothing was kept.
    pub fn insert(&mut self, tokens: &[u32], mut cache: SeqCache, budget: &mut KvBudget) -> bool {
        if !self.enabled() {
            return false;
        }
        let keep = tokens.len() / budget.block_size() * budget.block_size();
        if keep == 0 {
            return false;
        }
        let prefix = &tokens[..keep];
        if self
            .entries
            .iter()
            .any(|e| e.tokens.len() >= keep && e.tokens[..keep] == *prefix)
        {
            return false;
        }
        // Entries that are prefixes of this one are now redundant.
        let mut freed = 0;
        self.entries.retain(|e| {
            let redundant = e.tokens.len() <= keep && prefix[..e.tokens.len()] == e.tokens[..];
            if redundant {
                freed += e.blocks;
            }
            !redundant
        });
        budget.release(freed);
        while self.entries.len() >= self.max_entries {
            if !self.evict_one(budget) {
                break;
            }
        }
        let blocks = budget.blocks_for(keep);
        if !budget.try_alloc(blocks) {
            return false;
        }
        cache.truncate(keep);
        self.clock += 1;
        self.entries.push(PrefixEntry {
            tokens: prefix.to_vec(),
            cache,
            blocks,
            last_used: self.clock,
        });
        true
    }

    /// Drops the least recently used entry, returning its blocks to
    /// `budget`. False when the cache is empty.
    pub fn evict_one(&mut self, budget: &mut KvBudget) -> bool {
        let Some((i, _)) = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.last_used)
        else {
            return false;
        };
        let e = self.entries.swap_remove(i);
        budget.release(e.blocks);
        true
    }
}
