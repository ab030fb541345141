#!/usr/bin/env python3
"""Turns one bench/llm/run.sh result folder into a markdown table with the
ferroserve / anchor ratios (same run, same machine)."""

import json
import sys
from pathlib import Path


def load(p: Path):
    return json.loads(p.read_text()) if p.is_file() else None


def main():
    out = Path(sys.argv[1])
    lines = [f"# Language-model benchmark ({out.name})", "",
             "Machine: " + (out / "machine.txt").read_text().replace("\n", " · ").strip(" ·"), ""]
    quants = sorted({p.name.split("-")[1] for p in out.glob("llamacpp-*-single.json")})
    if quants:
        lines += ["## GGUF: ferroserve vs llama.cpp (llama-server), single stream",
                  "", "| model | metric | llama.cpp | ferroserve | ratio |", "|---|---|---|---|---|"]
        for q in quants:
            a = load(out / f"llamacpp-{q}-single.json")
            b = load(out / f"ferroserve-{q}-single.json")
            if not (a and b):
                continue
            for k, name in (("prompt_tok_s", "prompt tok/s (128-token prompt)"),
                            ("decode_tok_s", "decode tok/s"), ("ttft_ms", "TTFT ms")):
                lines.append(f"| {q} | {name} | {a[k]:.2f} | {b[k]:.2f} | {b[k] / a[k]:.2f}× |")
        lines += ["", "## GGUF: aggregate throughput under concurrent streams (load.py)", "",
                  "| model | streams | llama.cpp tok/s | ferroserve tok/s | ratio | TTFT p50 ms (l / f) | ITL p50 ms (l / f) |",
                  "|---|---|---|---|---|---|---|"]
        for q in quants:
            a = load(out / f"llamacpp-{q}-load.json")
            b = load(out / f"ferroserve-{q}-load.json")
            if not (a and b):
                continue
            for la, lb in zip(a["levels"], b["levels"]):
                if "agg_tok_s" not in la or "agg_tok_s" not in lb:
                    continue
                lines.append(
                    f"| {q} | {la['concurrency']} | {la['agg_tok_s']:.2f} | {lb['agg_tok_s']:.2f} | "
                    f"{lb['agg_tok_s'] / la['agg_tok_s']:.2f}× | {la['ttft_ms_p50']:.0f} / {lb['ttft_ms_p50']:.0f} | "
                    f"{la['itl_ms_p50']:.0f} / {lb['itl_ms_p50']:.0f} |")
    a = load(out / "transformers-f32-single.json")
    b = load(out / "ferroserve-f32-single.json")
    if a and b:
        lines += ["", "## safetensors f32: ferroserve vs transformers, single stream", "",
                  "| metric | transformers | ferroserve | ratio |", "|---|---|---|---|"]
        for k, name in (("prompt_tok_s", "prompt tok/s"), ("decode_tok_s", "decode tok/s")):
            lines.append(f"| {name} | {a[k]:.2f} | {b[k]:.2f} | {b[k] / a[k]:.2f}× |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
