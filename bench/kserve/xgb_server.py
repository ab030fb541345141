"""KServe Python ModelServer serving an XGBoost Booster: the equivalent of KServe's `xgbserver`
(which PyPI's `kserve` does not ship), answering v2 requests with `Booster.inplace_predict`.

    python xgb_server.py --model_dir DIR [--model_name NAME] [--http_port P] [--grpc_port Q]
"""

import argparse
import os

import numpy as np


def serve() -> None:
    import xgboost as xgb
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
    from kserve.utils.utils import generate_uuid

    class XgbModel(Model):
        def __init__(self, name: str, model_dir: str):
            super().__init__(name)
            self.model_dir = model_dir
            self._booster = None

        def load(self) -> bool:
            self._booster = xgb.Booster(params={"nthread": 1})
            self._booster.load_model(os.path.join(self.model_dir, "model.json"))
            self.ready = True
            return self.ready

        def predict(self, payload, headers=None, response_headers=None):
            if isinstance(payload, InferRequest):
                x = payload.inputs[0].as_numpy()
                y = np.asarray(self._booster.inplace_predict(x), dtype=np.float32)
                out = InferOutput(name="output-0", shape=list(y.shape), datatype="FP32")
                out.set_data_from_numpy(y, binary_data=payload.use_binary_outputs)
                return InferResponse(model_name=self.name, infer_outputs=[out],
                                     response_id=payload.id if payload.id else generate_uuid(),
                                     use_binary_outputs=payload.use_binary_outputs)
            return {"predictions": self._booster.inplace_predict(np.array(payload["instances"])).tolist()}

    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    model = XgbModel(args.model_name, args.model_dir)
    model.load()
    ModelServer().start([model])


if __name__ == "__main__":
    serve()
