"""The OpenAI API of language models, driven by the official `openai` client
(and raw HTTP for the SSE wire format), against the real binary serving the
tiny random models in tests/fixtures/llm (references from transformers)."""

import json
import time
from pathlib import Path

import jinja2
import openai
import pytest
import requests
from tokenizers import Tokenizer

from conftest import ROOT, Server

LLM = ROOT / "tests" / "fixtures" / "llm"


def reference(arch):
    return json.loads((LLM / arch / "reference.json").read_text())


@pytest.fixture(scope="module")
def llm():
    srv = Server(["--model_dir", str(LLM / "llama"), "--model_name", "tiny-llama",
                  "--model_dir", str(LLM / "qwen2"), "--model_name", "tiny-qwen2",
                  "--max_num_seqs", "8", "--max_model_len", "256"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(llm):
    return openai.OpenAI(base_url=llm.url + "/v1", api_key="unused", max_retries=0)


def greedy_body(n_tokens):
    # repetition_penalty 1: plain greedy, as the references were made (a
    # model's generation_config.json defaults apply to fields left out).
    return {"temperature": 0, "max_tokens": n_tokens,
            "extra_body": {"ignore_eos": True, "repetition_penalty": 1.0}}


def test_models_list_both_shapes(llm, client):
    ids = {m.id for m in client.models.list().data}
    assert {"tiny-llama", "tiny-qwen2"} <= ids
    body = requests.get(llm.url + "/v1/models").json()
    assert set(body["models"]) >= {"tiny-llama", "tiny-qwen2"}  # KServe v1 shape
    assert body["object"] == "list"
    kserve = openai.OpenAI(base_url=llm.url + "/openai/v1", api_key="x", max_retries=0)
    assert {m.id for m in kserve.models.list().data} >= {"tiny-llama"}


@pytest.mark.parametrize("arch,name", [("llama", "tiny-llama"), ("qwen2", "tiny-qwen2")])
def test_greedy_completion_matches_transformers(client, arch, name):
    for case in reference(arch)["cases"]:
        n = len(case["greedy_ids"])
        r = client.completions.create(model=name, prompt=case["prompt"], **greedy_body(n))
        assert r.choices[0].text == case["greedy_text"], case["prompt"]
        assert r.choices[0].finish_reason == "length"
        assert r.usage.prompt_tokens == len(case["input_ids"])
        assert r.usage.completion_tokens == n
        # Token-id prompts give the same continuation.
        r2 = client.completions.create(model=name, prompt=case["input_ids"], **greedy_body(n))
        assert r2.choices[0].text == case["greedy_text"]


def test_streaming_concatenates_to_the_full_text(client):
    case = reference("llama")["cases"][2]  # non-ASCII prompt
    n = len(case["greedy_ids"])
    stream = client.completions.create(model="tiny-llama", prompt=case["prompt"], stream=True,
                                       stream_options={"include_usage": True}, **greedy_body(n))
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
            assert chunk.choices == []
            continue
        pieces.append(chunk.choices[0].text)
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == case["greedy_text"]
    assert finish == "length"
    assert usage.completion_tokens == n and usage.prompt_tokens == len(case["input_ids"])


def test_sse_wire_format_with_raw_http(llm):
    body = {"model": "tiny-llama", "prompt": "Hello", "max_tokens": 5, "temperature": 0,
            "ignore_eos": True, "stream": True}
    with requests.post(llm.url + "/v1/completions", json=body, stream=True, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [l for l in r.iter_lines(decode_unicode=True) if l]
    assert all(l.startswith("data: ") for l in lines), lines
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(l[6:]) for l in lines[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def render_like_transformers(arch, messages):
    cfg = json.loads((LLM / arch / "tokenizer_config.json").read_text())
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True,
                             extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = lambda m: (_ for _ in ()).throw(Exception(m))
    env.globals["strftime_now"] = lambda f: time.strftime(f)
    tmpl = env.from_string(cfg["chat_template"])
    return tmpl.render(messages=messages, add_generation_prompt=True,
                       bos_token=cfg.get("bos_token"), eos_token=cfg.get("eos_token"))


@pytest.mark.parametrize("arch,name", [("llama", "tiny-llama"), ("qwen2", "tiny-qwen2")])
def test_chat_uses_the_template_and_matches_a_raw_completion(client, arch, name):
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Say hi"},
                {"role": "assistant", "content": "hi"},
                {"role": "user", "content": "again, naïve café"}]
    prompt = render_like_transformers(arch, messages)
    tok = Tokenizer.from_file(str(LLM / arch / "tokenizer.json"))
    ids = tok.encode(prompt, add_special_tokens=False).ids
    chat = client.chat.completions.create(model=name, messages=messages, **greedy_body(12))
    raw = client.completions.create(model=name, prompt=ids, **greedy_body(12))
    assert chat.usage.prompt_tokens == len(ids)
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == raw.choices[0].text
    # Streaming chat: the role first, then content deltas, same text.
    parts = []
    for chunk in client.chat.completions.create(model=name, messages=messages, stream=True,
                                                **greedy_body(12)):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    assert "".join(parts) == chat.choices[0].message.content


def test_seeded_sampling_is_reproducible_and_n_choices(client):
    kw = dict(model="tiny-llama", prompt="Once upon", max_tokens=10, temperature=1.0, seed=1234,
              extra_body={"ignore_eos": True})
    a = client.completions.create(**kw)
    b = client.completions.create(**kw)
    assert a.choices[0].text == b.choices[0].text
    many = client.completions.create(n=3, **kw)
    assert sorted(c.index for c in many.choices) == [0, 1, 2]
    assert many.usage.completion_tokens == 30


def test_stop_strings_and_logprobs(client):
    case = reference("llama")["cases"][0]
    full = case["greedy_text"]
    stop = full[6:9]
    r = client.completions.create(model="tiny-llama", prompt=case["prompt"], stop=[stop],
                                  **greedy_body(20))
    assert r.choices[0].text == full[: full.index(stop)]
    assert r.choices[0].finish_reason == "stop"
    r = client.completions.create(model="tiny-llama", prompt=case["prompt"], logprobs=3,
                                  **greedy_body(4))
    lp = r.choices[0].logprobs
    assert len(lp.token_logprobs) == 4
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert chosen <= 0 and len(top) == 3
        assert abs(max(top.values()) - chosen) < 1e-4  # greedy picks the most likely
    c = client.chat.completions.create(model="tiny-llama", logprobs=True, top_logprobs=2,
                                       messages=[{"role": "user", "content": "hi"}],
                                       **greedy_body(3))
    content = c.choices[0].logprobs.content
    assert len(content) == 3 and all(len(t.top_logprobs) == 2 for t in content)


def test_errors_in_openai_shape(llm, client):
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny-llama", prompt="x", temperature=5)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny-llama", prompt="x", max_tokens=10_000)
    r = requests.post(llm.url + "/v1/chat/completions", data=b"{not json",
                      headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    r = requests.post(llm.url + "/v1/completions",
                      json={"model": "tiny-llama", "prompt": [10**9], "max_tokens": 2})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    # The server is still healthy.
    assert requests.get(llm.url + "/v2/health/ready").status_code == 200


def test_disconnect_cancels_and_metrics(llm):
    body = {"model": "tiny-llama", "prompt": "Once", "max_tokens": 200, "temperature": 0,
            "ignore_eos": True, "stream": True}
    with requests.post(llm.url + "/v1/completions", json=body, stream=True, timeout=30) as r:
        it = r.iter_lines()
        next(it)
    # The engine notices the closed stream and counts an abort.
    deadline = time.time() + 10
    text = ""
    while time.time() < deadline:
        text = requests.get(llm.url + "/metrics").text
        aborts = [l for l in text.splitlines()
                  if l.startswith('vllm:request_success_total{model_name="tiny-llama",finished_reason="abort"}')]
        if aborts and float(aborts[0].split()[-1]) >= 1:
            break
        time.sleep(0.1)
    else:
        pytest.fail("no abort counted:\n" + text[-3000:])
    for name in ("vllm:time_to_first_token_seconds_bucket", "vllm:generation_tokens_total",
                 "vllm:kv_cache_usage_perc", "vllm:num_requests_running"):
        assert name in text


def test_v2_text_generation(llm):
    body = {"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [2],
                        "data": ["Hello", "Once upon a time"]}]}
    r = requests.post(llm.url + "/v2/models/tiny-llama/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["name"] == "text_output" and out["shape"] == [2]
    meta = requests.get(llm.url + "/v2/models/tiny-llama").json()
    assert meta["inputs"][0]["name"] == "text_input"


def test_sse_with_curl(llm):
    """`curl -N` (no buffering) sees the events as they are produced."""
    import shutil
    import subprocess
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    body = json.dumps({"model": "tiny-llama", "max_tokens": 4, "temperature": 0, "stream": True,
                       "messages": [{"role": "user", "content": "Hi"}], "ignore_eos": True})
    out = subprocess.run(["curl", "-sN", "-H", "content-type: application/json", "-d", body,
                          llm.url + "/openai/v1/chat/completions"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    events = [e for e in out.split("\n\n") if e.strip()]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: "):]) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_model_id_from_the_local_huggingface_cache(tmp_path):
    snap = tmp_path / "hub" / "models--acme--tiny-llama" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for f in (LLM / "llama").iterdir():
        (snap / f.name).symlink_to(f)
    (tmp_path / "hub" / "models--acme--tiny-llama" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny-llama" / "refs" / "main").write_text("abc123")
    srv = Server(["--model_id", "acme/tiny-llama"], env={"HF_HOME": str(tmp_path)})
    try:
        ids = [m["id"] for m in requests.get(srv.url + "/v1/models").json()["data"]]
        assert ids == ["tiny-llama"]
    finally:
        srv.stop()
    missing = Server(["--model_id", "acme/absent"], env={"HF_HOME": str(tmp_path)},
                     expect_ready=False)
    try:
        assert missing.wait_exit(30) != 0
    finally:
        missing.stop()
    assert "not in the local HuggingFace cache" in missing.log()
