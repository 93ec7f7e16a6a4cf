"""The host CPU: the dense half as the same ONNX model, run with onnxruntime here.
For users with a Loihi but no Jetson: `--target loihi+cpu`."""

from .jetson import JetsonTarget


class CpuTarget(JetsonTarget):
    name = "cpu"
