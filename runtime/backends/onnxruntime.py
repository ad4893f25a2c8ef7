"""ONNX Runtime on the CPU: the backend every bundle can use, and the reference the others
are measured against."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from reelrt.runtime.backends.session import ThreadPolicy, create_session
from reelrt.runtime.bundle import Bundle


class OrtBackend:
    """ONNX Runtime on the bundle's ONNX file. InferenceSession.run may be called from many
    threads at once (ONNX Runtime documents it), so Model.run takes no lock for it."""

    thread_safe = True

    def __init__(self, session):
        self.session = session
        self.name = "onnxruntime:" + session.get_providers()[0].replace("ExecutionProvider", "").lower()
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, dict(feeds))


def open_onnxruntime(bundle: Bundle, artifact: str, device: str, threads: ThreadPolicy, options: dict) -> OrtBackend:
    """options: the bundle's target; its "graph_optimization" ("all" by default, "basic": a QDQ
    graph's quantized parts computed in float) is what `reelrt compile` found right here."""
    art = bundle.manifest.artifacts[artifact]
    return OrtBackend(create_session(bundle.path(artifact), art.sha256, device=device, threads=threads,
                                     optimization=options.get("graph_optimization", "all")))
