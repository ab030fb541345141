#!/usr/bin/env python3
"""Single-stream speed of an OpenAI-compatible server (ferroserve, llama-server):
one streaming /v1/completions request at a time with an exact token-id prompt.

    python3 bench/llm/single.py --base-url http://127.0.0.1:8080/v1 --model bench \
        --prompt-tokens 128 --max-tokens 64 --vocab 32000

prompt_tok_s = prompt tokens / time to first token; decode_tok_s = (tokens - 1) /
(last chunk - first chunk). Best of --repeats runs (the machine is shared). Standard
library only. Prints one JSON line.
"""

import argparse
import http.client
import json
import random
import time
from urllib.parse import urlparse


def run_once(url, model, prompt, max_tokens, timeout):
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens,
                       "temperature": 0, "ignore_eos": True, "stream": True,
                       "stream_options": {"include_usage": True}})
    t0 = time.perf_counter()
    conn.request("POST", u.path.rstrip("/") + "/completions", body,
                 {"content-type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"HTTP {resp.status}: {resp.read()[:500]!r}")
    first = last = None
    chunks = 0
    tokens = None
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if ev.get("usage"):
            tokens = ev["usage"].get("completion_tokens", tokens)
        if ev.get("choices"):
            now = time.perf_counter()
            first = first or now
            last = now
            chunks += 1
    conn.close()
    n = tokens or chunks
    return {"ttft_s": first - t0, "decode_s": last - first, "tokens": n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=32000, help="random prompt ids are drawn below this")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    rng = random.Random(0)
    best = None
    for i in range(a.repeats + 1):
        # A fresh prompt each time: no prefix cache can help.
        prompt = [rng.randrange(100, a.vocab - 100) for _ in range(a.prompt_tokens)]
        r = run_once(a.base_url, a.model, prompt, a.max_tokens, a.timeout)
        if i == 0:
            continue  # warm-up
        r = {
            "label": a.label,
            "prompt_tokens": a.prompt_tokens,
            "completion_tokens": r["tokens"],
            "ttft_ms": r["ttft_s"] * 1000,
            "prompt_tok_s": a.prompt_tokens / r["ttft_s"],
            "decode_tok_s": (r["tokens"] - 1) / r["decode_s"] if r["decode_s"] > 0 else 0.0,
        }
        if best is None or r["decode_tok_s"] > best["decode_tok_s"]:
            best = r
    print(json.dumps(best))


if __name__ == "__main__":
    main()
