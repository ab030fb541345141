#!/usr/bin/env python3
"""Single-stream anchor for safetensors models: HuggingFace `transformers`
(PyTorch, CPU) prefill and greedy decode speed on a HF folder.

    python bench/llm/transformers_single.py --model-dir /work/bench-models/tinyllama-shape \
        --threads 2 --dtype float32 --prompt-tokens 128 --max-tokens 32

Prints one JSON line: prompt_tok_s (one forward over the prompt), decode_tok_s
(greedy, one token at a time with the KV cache, EOS ignored) and ttft_ms.
"""

import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=getattr(torch, a.dtype))
    model.eval()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (1, a.prompt_tokens), generator=g)
    best = None
    with torch.inference_mode():
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            out = model(input_ids=ids, use_cache=True)
            t1 = time.perf_counter()
            past = out.past_key_values
            tok = out.logits[:, -1:].argmax(-1)
            t2 = time.perf_counter()
            for _ in range(a.max_tokens - 1):
                out = model(input_ids=tok, past_key_values=past, use_cache=True)
                past = out.past_key_values
                tok = out.logits[:, -1:].argmax(-1)
            t3 = time.perf_counter()
            r = {
                "engine": "transformers",
                "torch": torch.__version__,
                "dtype": a.dtype,
                "threads": a.threads,
                "prompt_tokens": a.prompt_tokens,
                "prompt_tok_s": a.prompt_tokens / (t1 - t0),
                "ttft_ms": (t2 - t0) * 1000,
                "decode_tok_s": (a.max_tokens - 1) / (t3 - t2),
            }
            if best is None or r["decode_tok_s"] > best["decode_tok_s"]:
                best = r
    print(json.dumps(best))


if __name__ == "__main__":
    main()
