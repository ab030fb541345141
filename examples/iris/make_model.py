#!/usr/bin/env python3
"""Build examples/iris/model.onnx: an sklearn MLPClassifier trained on iris, exported by hand.

The graph uses only default-domain ONNX ops (MatMul, Add, Relu, Softmax), so pure-Rust
engines such as tract can run it without ai.onnx.ml support:

    input "input" FP32 [batch, 4] -> MatMul+Add -> Relu -> MatMul+Add -> Softmax
      -> output "probabilities" FP32 [batch, 3]   (class 0 setosa, 1 versicolor, 2 virginica)

The script checks onnxruntime against sklearn's predict_proba (max abs diff <= 1e-5) on the whole
iris set, then writes model.onnx, request.json and response.json (the expected v2 response for
request.json). Deterministic: random_state=0.

Run from the repo root in the fixture venv (tests/fixtures/requirements-gen.txt):

    python examples/iris/make_model.py
"""

import json
import os
import re

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_iris
from sklearn.neural_network import MLPClassifier

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_NAME = "iris"
REQUEST_ROWS = [0, 100]  # one setosa, one virginica


def train():
    X, y = load_iris(return_X_y=True)
    # max_iter raised from the default 200 (which stops before convergence: 86.7% train accuracy)
    clf = MLPClassifier(hidden_layer_sizes=(16,), random_state=0, max_iter=2000).fit(X, y)
    assert clf.activation == "relu" and clf.out_activation_ == "softmax"
    return clf, X.astype(np.float32)


def export(clf):
    (w1, w2), (b1, b2) = clf.coefs_, clf.intercepts_
    inits = [
        numpy_helper.from_array(w1.astype(np.float32), "W1"),
        numpy_helper.from_array(b1.astype(np.float32), "B1"),
        numpy_helper.from_array(w2.astype(np.float32), "W2"),
        numpy_helper.from_array(b2.astype(np.float32), "B2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "W1"], ["h1"]),
        helper.make_node("Add", ["h1", "B1"], ["z1"]),
        helper.make_node("Relu", ["z1"], ["a1"]),
        helper.make_node("MatMul", ["a1", "W2"], ["h2"]),
        helper.make_node("Add", ["h2", "B2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "iris_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ferroserve-example")
    model.ir_version = 8
    model.doc_string = "sklearn MLPClassifier(hidden_layer_sizes=(16,), random_state=0) on iris; classes setosa, versicolor, virginica"
    onnx.checker.check_model(model, full_check=True)
    return model


def f32(v):
    """Shortest decimal that round-trips to the same float32 (what a Rust server prints)."""
    return float(str(np.float32(v)))


def dumps(body):
    """Pretty JSON with arrays of numbers kept on one line."""
    text = json.dumps(body, indent=2)
    return re.sub(r"\[\s*([-0-9.e,\s]+?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text)


def main():
    clf, X = train()
    model = export(clf)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    got = sess.run(["probabilities"], {"input": X})[0]
    want = clf.predict_proba(X)
    diff = float(np.max(np.abs(got - want)))
    assert diff <= 1e-5, f"onnxruntime vs sklearn predict_proba differ by {diff}"
    assert (got.argmax(1) == clf.predict(X)).all()
    print(f"train accuracy {clf.score(X, load_iris().target):.4f}; max |ort - sklearn| = {diff:.2e}")

    rows = X[REQUEST_ROWS]
    probs = sess.run(["probabilities"], {"input": rows})[0]
    request = {
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [f32(v) for v in rows.reshape(-1)]}]
    }
    response = {
        "model_name": MODEL_NAME,
        "outputs": [
            {"name": "probabilities", "shape": [2, 3], "datatype": "FP32", "data": [f32(v) for v in probs.reshape(-1)]}
        ],
    }

    with open(os.path.join(HERE, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    for name, body in (("request.json", request), ("response.json", response)):
        with open(os.path.join(HERE, name), "w") as f:
            f.write(dumps(body) + "\n")
    print("request:", json.dumps(request))
    print("response:", json.dumps(response))


if __name__ == "__main__":
    main()
