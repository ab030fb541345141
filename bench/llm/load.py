#!/usr/bin/env python3
"""Server-agnostic load generator for OpenAI-compatible /v1/completions (streaming).

Drives llama-server and ferroserve alike: N concurrent clients, each sending R streaming completion
requests one after the other, with `ignore_eos` so every answer has exactly --max-tokens tokens.
Standard library only (threads + http.client), so it runs from any python3.

    python3 bench/llm/load.py --base-url http://127.0.0.1:8080/v1 --model bench \
        --concurrency 1,4,16 --requests-per-client 2 --max-tokens 64 --prompt-words 48 --json out.json

Reported per concurrency level:
  agg_tok_s     completion tokens of all requests / wall time from the first send to the last byte
  ttft p50/p90  send -> first streamed text chunk (ms)
  itl  p50/p90  gap between consecutive streamed text chunks of one request (ms)
  stream_tok_s  mean over requests of (completion tokens - 1) / (last chunk - first chunk)
Completion tokens come from the usage of the final chunk (stream_options.include_usage) when the
server sends it, otherwise from the number of text chunks.
Prompts are distinct per request (random words, seeded), so no server can reuse a cached prefix
across requests beyond the shared instruction line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
from urllib.parse import urlparse

WORDS = ("time person year way day thing man world life hand part child eye woman place work week case point "
         "government company number group problem fact model server token batch stream cache memory thread "
         "request answer river mountain garden window table letter music story history science number").split()


def percentile(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def make_prompt(rng: random.Random, n_words: int) -> str:
    return "Continue the following text. " + " ".join(rng.choice(WORDS) for _ in range(n_words))


def one_request(url, headers: dict, body: dict, timeout: float) -> dict:
    conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(url.hostname, url.port, timeout=timeout)
    path = url.path.rstrip("/") + "/completions"
    t0 = time.perf_counter()
    conn.request("POST", path, body=json.dumps(body), headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:500]!r}")
    chunk_times: list[float] = []
    usage = None
    finish = None
    text = []
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        ev = json.loads(data)
        now = time.perf_counter()
        if ev.get("usage"):
            usage = ev["usage"]
        for ch in ev.get("choices") or []:
            if ch.get("text"):
                chunk_times.append(now)
                text.append(ch["text"])
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
    t_end = time.perf_counter()
    conn.close()
    n_chunks = len(chunk_times)
    n_tokens = (usage or {}).get("completion_tokens") or n_chunks
    return {"t0": t0, "t_end": t_end, "chunks": chunk_times, "n_tokens": n_tokens,
            "prompt_tokens": (usage or {}).get("prompt_tokens"), "finish_reason": finish,
            "text_len": len("".join(text))}


def run_level(args, url, concurrency: int, salt: int = 0) -> dict:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    results: list[dict] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(cid: int) -> None:
        rng = random.Random(args.seed * 1000003 + concurrency * 1009 + cid + salt * 7919)
        for _ in range(args.requests_per_client):
            body = {"model": args.model, "prompt": make_prompt(rng, args.prompt_words),
                    "max_tokens": args.max_tokens, "temperature": 0.0, "stream": True,
                    "ignore_eos": True, "stream_options": {"include_usage": True}}
            try:
                r = one_request(url, headers, body, args.timeout)
            except Exception as e:  # noqa: BLE001 - reported, the run goes on
                with lock:
                    errors.append(repr(e))
                continue
            with lock:
                results.append(r)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not results:
        return {"concurrency": concurrency, "errors": errors}
    t_start = min(r["t0"] for r in results)
    t_stop = max(r["t_end"] for r in results)
    total_tokens = sum(r["n_tokens"] for r in results)
    ttft = [(r["chunks"][0] - r["t0"]) * 1e3 for r in results if r["chunks"]]
    itl = [(b - a) * 1e3 for r in results for a, b in zip(r["chunks"], r["chunks"][1:])]
    stream_rates = [(r["n_tokens"] - 1) / (r["chunks"][-1] - r["chunks"][0])
                    for r in results if len(r["chunks"]) > 1 and r["chunks"][-1] > r["chunks"][0]]
    prompt_tokens = [r["prompt_tokens"] for r in results if r["prompt_tokens"] is not None]
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "errors": errors,
        "completion_tokens": total_tokens,
        "mean_prompt_tokens": statistics.mean(prompt_tokens) if prompt_tokens else None,
        "finish_reasons": sorted({str(r["finish_reason"]) for r in results}),
        "wall_s": t_stop - t_start,
        "agg_tok_s": total_tokens / (t_stop - t_start),
        "ttft_ms_p50": percentile(ttft, 0.5),
        "ttft_ms_p90": percentile(ttft, 0.9),
        "itl_ms_p50": percentile(itl, 0.5),
        "itl_ms_p90": percentile(itl, 0.9),
        "itl_ms_mean": statistics.mean(itl) if itl else float("nan"),
        "stream_tok_s_mean": statistics.mean(stream_rates) if stream_rates else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8080/v1 or .../openai/v1")
    ap.add_argument("--model", required=True)
    ap.add_argument("--concurrency", default="1,4,16", help="comma-separated stream counts")
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt-words", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--json", default=None, help="write the results here too")
    ap.add_argument("--label", default="", help="free text stored in the JSON")
    args = ap.parse_args()
    url = urlparse(args.base_url)
    if not args.no_warmup:
        saved = (args.requests_per_client, args.max_tokens)
        args.requests_per_client, args.max_tokens = 1, 8
        warm = run_level(args, url, 1, salt=1)  # other prompts than the measured ones
        args.requests_per_client, args.max_tokens = saved
        if warm.get("errors"):
            print("warmup failed:", warm["errors"][:3], file=sys.stderr)
            return 1
    levels = []
    print(f"{'streams':>7} {'reqs':>4} {'tokens':>6} {'wall_s':>7} {'agg_tok/s':>9} {'ttft_p50':>8} "
          f"{'ttft_p90':>8} {'itl_p50':>7} {'itl_p90':>7} {'stream_tok/s':>12}  errors")
    for c in [int(x) for x in args.concurrency.split(",") if x.strip()]:
        r = run_level(args, url, c)
        levels.append(r)
        if "agg_tok_s" not in r:
            print(f"{c:>7} all requests failed: {r['errors'][:2]}")
            continue
        print(f"{c:>7} {r['requests']:>4} {r['completion_tokens']:>6} {r['wall_s']:>7.2f} {r['agg_tok_s']:>9.2f} "
              f"{r['ttft_ms_p50']:>8.0f} {r['ttft_ms_p90']:>8.0f} {r['itl_ms_p50']:>7.1f} {r['itl_ms_p90']:>7.1f} "
              f"{r['stream_tok_s_mean']:>12.2f}  {len(r['errors'])}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"base_url": args.base_url, "model": args.model, "label": args.label,
                       "max_tokens": args.max_tokens, "prompt_words": args.prompt_words,
                       "requests_per_client": args.requests_per_client, "levels": levels}, f, indent=1)
    return 0 if all("agg_tok_s" in r and not r["errors"] for r in levels) else 1


if __name__ == "__main__":
    sys.exit(main())
