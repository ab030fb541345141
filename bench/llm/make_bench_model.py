#!/usr/bin/env python3
"""Write the benchmark-anchor model: a randomly-initialised llama of TinyLlama-1.1B's shape as GGUF.

Not committed (GBs): regenerate with

    /work/torch-venv/bin/python bench/llm/make_bench_model.py --out /work/bench-models

Shape: hidden 2048, 22 layers, 32 heads / 4 kv heads, intermediate 5632, vocab 32000, context 2048
(TinyLlama-1.1B). Speed does not depend on the weight values, so the weights are random (seed fixed,
std 0.02) and the tokenizer is a byte-level BPE (Llama 3 pre-tokenizer, the special tokens and chat
template of tests/fixtures/llm/llama) trained here with `tokenizers` to 32000 entries on the text of the
Python standard library's sources (no external data).

Writes to --out:
  tinyllama-shape/            HF folder (config.json, tokenizer*, model.safetensors in F16)
  tinyllama-shape-f16.gguf    vendored convert_hf_to_gguf.py
  tinyllama-shape-q8_0.gguf   llama-quantize
  tinyllama-shape-q4_k_m.gguf llama-quantize
Each step is skipped when its output exists.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "llm" / "llama"
MAKE_GGUF = REPO / "tests" / "fixtures" / "llm" / "gguf" / "make_gguf.py"

VOCAB = 32000
SHAPE = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
             num_key_value_heads=4, head_dim=64, max_position_embeddings=2048, rope_theta=10000.0,
             rope_scaling=None, rms_norm_eps=1e-5, initializer_range=0.02, tie_word_embeddings=False)
SEED = 0


def corpus(limit_bytes: int = 24 << 20):
    """Python standard-library sources, sorted, up to limit_bytes (deterministic)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    total = 0
    for p in sorted(root.rglob("*.py")):
        if "site-packages" in p.parts or "test" in p.parts:
            continue
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        total += len(text)
        yield text
        if total >= limit_bytes:
            return


def make_tokenizer(out: Path) -> int:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    fixture = json.loads((FIXTURE / "tokenizer.json").read_text())
    specials = [t["content"] for t in fixture["added_tokens"]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = Tokenizer.from_file(str(FIXTURE / "tokenizer.json")).pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(specials), min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=trainer)
    trained = json.loads(tok.to_str())
    vocab = trained["model"]["vocab"]
    base = len(vocab)
    # The fixture's pipeline, with the trained vocab/merges and the special tokens appended after them.
    fixture["model"]["vocab"] = vocab
    fixture["model"]["merges"] = trained["model"]["merges"]
    new_ids = {}
    for i, t in enumerate(fixture["added_tokens"]):
        t["id"] = base + i
        new_ids[t["content"]] = base + i

    def fix(node):
        if isinstance(node, dict):
            if "special_tokens" in node and isinstance(node["special_tokens"], dict):
                for name, v in node["special_tokens"].items():
                    v["ids"] = [new_ids[name]]
            for v in node.values():
                fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)

    fix(fixture["post_processor"])
    (out / "tokenizer.json").write_text(json.dumps(fixture, ensure_ascii=False))
    cfg = json.loads((FIXTURE / "tokenizer_config.json").read_text())
    cfg["added_tokens_decoder"] = {str(new_ids[t["content"]]): {**v, "content": t["content"]}
                                   for t, v in zip(json.loads((FIXTURE / "tokenizer.json").read_text())["added_tokens"],
                                                   cfg.get("added_tokens_decoder", {}).values())}
    cfg["model_max_length"] = SHAPE["max_position_embeddings"]
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False))
    n = base + len(specials)
    return n, new_ids


def make_hf(out: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    n_vocab, ids = make_tokenizer(out)
    cfg = json.loads((FIXTURE / "config.json").read_text())
    cfg.update(SHAPE)
    cfg.update(vocab_size=n_vocab, bos_token_id=ids["<|begin_of_text|>"],
               eos_token_id=[ids["<|end_of_text|>"], ids["<|eom_id|>"], ids["<|eot_id|>"]],
               torch_dtype="float16", dtype="float16")
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"]}, indent=2) + "\n")
    torch.manual_seed(SEED)
    torch.set_default_dtype(torch.float16)
    model = LlamaForCausalLM(LlamaConfig.from_pretrained(out)).eval()
    torch.set_default_dtype(torch.float32)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/work/bench-models")
    ap.add_argument("--llama-src", default="/work/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp")
    ap.add_argument("--llama-bin", default="/work/llama.cpp-build/bin")
    ap.add_argument("--threads", default="2")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    hf = out / "tinyllama-shape"
    if not (hf / "model.safetensors").exists():
        make_hf(hf)
        print("wrote", hf, flush=True)
    f16 = out / "tinyllama-shape-f16.gguf"
    if not f16.exists():
        subprocess.run([sys.executable, str(MAKE_GGUF), "_convert", a.llama_src, "llama", str(hf),
                        "--outtype", "f16", "--outfile", str(f16)], check=True, stdout=subprocess.DEVNULL)
        print("wrote", f16, flush=True)
    for q in ["Q8_0", "Q4_K_M"]:
        dst = out / f"tinyllama-shape-{q.lower()}.gguf"
        if not dst.exists():
            subprocess.run([os.path.join(a.llama_bin, "llama-quantize"), str(f16), str(dst), q, a.threads],
                           check=True, stdout=subprocess.DEVNULL)
            print("wrote", dst, flush=True)


if __name__ == "__main__":
    main()
