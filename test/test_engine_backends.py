"""The three backends give the same predictions: on a test image set (Fashion-MNIST test images,
at camera size through the full preprocessing), for every family member, top-1 identical and
max |Δlogit| <= 1e-3 between ONNX Runtime, extracted PyTorch modules and the dynamic
super-network, and equal to eager PyTorch on the reference network."""

from __future__ import annotations

import cv2
import numpy as np
from test_engine_support import engine, image_set, reference_logits

from dynofa_ros.engine import BACKENDS
from dynofa_ros.engine.preprocess import array_view


def test_three_backends_agree_on_every_member() -> None:
    engines = {b: engine(b) for b in BACKENDS}
    members = engines["onnxruntime"].members
    images = image_set(12)
    frames = [cv2.resize(img, (96, 72), interpolation=cv2.INTER_NEAREST) for img in images]
    for mid in members:
        logits = {}
        for b, e in engines.items():
            assert e.members == members
            e.switch(mid, "cpu", 1)
            results = [e.infer_array(f) for f in frames]
            assert {r.member_id for r in results} == {mid}
            logits[b] = np.array([r.logits for r in results])
        ref = np.concatenate(
            [
                reference_logits(mid, engines["onnxruntime"].preprocess(array_view(f), mid))
                for f in frames
            ]
        )
        for b in BACKENDS:
            diff = float(np.abs(logits[b] - logits["onnxruntime"]).max())
            assert diff <= 1e-3, (mid, b, diff)
            assert (logits[b].argmax(1) == logits["onnxruntime"].argmax(1)).all(), (mid, b)
            assert float(np.abs(logits[b] - ref).max()) <= 1e-3
