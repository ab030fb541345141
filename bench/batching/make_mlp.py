"""Writes a 512→2048→2048→10 MLP (random weights, fixed seed) as ONNX with a
dynamic batch dimension: big enough that compute, not transport, dominates
a batch-1 request, which is where dynamic batching pays."""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
rng = np.random.default_rng(0)
dims = [512, 2048, 2048, 10]
nodes, inits = [], []
x = "input"
for i, (a, b) in enumerate(zip(dims, dims[1:])):
    w = numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"w{i}")
    bias = numpy_helper.from_array(np.zeros(b, dtype=np.float32), f"b{i}")
    inits += [w, bias]
    y = f"h{i}"
    nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [y]))
    if i < len(dims) - 2:
        nodes.append(helper.make_node("Relu", [y], [y + "r"]))
        y += "r"
    x = y
nodes.append(helper.make_node("Softmax", [x], ["probabilities"], axis=1))
graph = helper.make_graph(
    nodes, "mlp_large",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 512])],
    [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
    inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, out)
