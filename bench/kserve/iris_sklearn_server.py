"""KServe Python ModelServer serving the scikit-learn iris MLP (the model that examples/iris/model.onnx exports).

PyPI's `kserve` package does not ship `sklearnserver` (it lives only in KServe's repository / container image),
so this is the minimal equivalent: a kserve.Model subclass that loads a joblib file and answers v1/v2 requests
with `predict_proba`, as sklearnserver does with PREDICT_PROBA=true.

    python iris_sklearn_server.py --model_dir DIR [--model_name iris] [--http_port 8080] [--grpc_port 8081]

With `--train DIR` it trains the model (MLPClassifier(hidden_layer_sizes=(16,), random_state=0, max_iter=2000)
on the iris data set, as examples/iris/make_model.py does), writes DIR/model.joblib and exits.
"""

import argparse
import os
import sys

import joblib
import numpy as np


def train(out_dir: str) -> None:
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    x, y = load_iris(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=(16,), random_state=0, max_iter=2000).fit(x, y)
    os.makedirs(out_dir, exist_ok=True)
    joblib.dump(clf, os.path.join(out_dir, "model.joblib"))
    print(f"training accuracy {clf.score(x, y):.3f}; wrote {out_dir}/model.joblib")


def serve() -> None:
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
    from kserve.utils.utils import generate_uuid

    class IrisSklearn(Model):
        def __init__(self, name: str, model_dir: str):
            super().__init__(name)
            self.model_dir = model_dir
            self._model = None

        def load(self) -> bool:
            self._model = joblib.load(os.path.join(self.model_dir, "model.joblib"))
            self.ready = True
            return self.ready

        def predict(self, payload, headers=None, response_headers=None):
            if isinstance(payload, InferRequest):
                x = payload.inputs[0].as_numpy()
                proba = self._model.predict_proba(x).astype(np.float32)
                out = InferOutput(name="probabilities", shape=list(proba.shape), datatype="FP32")
                out.set_data_from_numpy(proba, binary_data=payload.use_binary_outputs)
                return InferResponse(
                    model_name=self.name,
                    infer_outputs=[out],
                    response_id=payload.id if payload.id else generate_uuid(),
                    use_binary_outputs=payload.use_binary_outputs,
                )
            # v1: {"instances": [[...], ...]}
            return {"predictions": self._model.predict_proba(np.array(payload["instances"])).tolist()}

    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    model = IrisSklearn(args.model_name, args.model_dir)
    model.load()
    ModelServer().start([model])


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--train":
        train(sys.argv[2])
    else:
        serve()
