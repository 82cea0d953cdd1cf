"""The engine's API on a real tiny family of the shipped checkpoint (ONNX Runtime sessions):
members, labels, switching, per-frame results, bad input naming the field with the engine still
usable, load-time checks, workloads, close."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace

import cv2
import numpy as np
import pytest
from test_engine_support import (
    CHECKPOINT,
    STORED_WORKLOAD,
    engine,
    image_set,
    reference_logits,
    tiny_family,
)

from dynofa_ros.engine import BACKENDS, Engine, EngineError, InferenceResult
from dynofa_ros.engine.preprocess import array_view
from dynofa_ros.errors import DynofaError
from dynofa_ros.family import load_family
from dynofa_ros.platform.sim import Workload


@pytest.fixture(scope="module")
def eng() -> Engine:
    e = engine("onnxruntime")
    e.switch(e.members[0], "cpu", 1)
    return e


def test_api_surface(eng: Engine) -> None:
    fam = load_family(tiny_family()[0])
    assert tuple(BACKENDS) == ("onnxruntime", "torch-static", "torch-dynamic")
    assert eng.members == fam.ids
    assert eng.labels[0] == "T-shirt/top" and len(eng.labels) == 10
    assert eng.processors == ("cpu",)  # this machine: no GPU
    assert eng.threads == (1, 2)
    assert eng.accuracy(fam.ids[2]) == pytest.approx(0.90)
    assert eng.config(fam.ids[1]).r == 28
    assert eng.rss_bytes > 0
    assert eng.report.runners == 6 and eng.report.rss_after > 0
    assert issubclass(EngineError, DynofaError) and issubclass(EngineError, ValueError)


def test_initial_binding_is_the_most_accurate_member() -> None:
    e = Engine.load(
        CHECKPOINT, tiny_family()[0], backend="torch-dynamic", threads=2, progress=False
    )
    try:
        assert e.active == (e.members[2], "cpu", 2)
    finally:
        e.close()


def test_each_frame_reports_its_member_timing_and_top_k(eng: Engine) -> None:
    img = image_set(1)[0]
    for mid in eng.members:
        eng.switch(mid, "cpu", 2)
        assert eng.active == (mid, "cpu", 2)
        res = eng.infer_array(img)
        assert isinstance(res, InferenceResult)
        assert (res.member_id, res.processor, res.threads) == (mid, "cpu", 2)
        assert res.resolution == eng.config(mid).r
        assert len(res.class_ids) == 5 and len(res.labels) == 5 and len(res.scores) == 5
        assert list(res.scores) == sorted(res.scores, reverse=True)
        assert res.labels == tuple(eng.labels[i] for i in res.class_ids)
        logits = np.asarray(res.logits)
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(res.scores, probs[list(res.class_ids)], rtol=1e-9)
        assert res.class_ids[0] == int(np.argmax(logits))
        assert min(res.preprocess_ms, res.inference_ms, res.postprocess_ms) >= 0
        assert res.total_ms == pytest.approx(
            res.preprocess_ms + res.inference_ms + res.postprocess_ms
        )
        x = eng.preprocess(array_view(img))
        np.testing.assert_allclose(logits, reference_logits(mid, x)[0], atol=1e-4)
        with pytest.raises(FrozenInstanceError):
            res.member_id = "x"  # type: ignore[misc]
    eng.switch(eng.members[0], threads=None)
    assert eng.active == (eng.members[0], "cpu", 2)  # threads kept
    assert len(eng.infer_array(img, top_k=20).class_ids) == 10  # capped at the classes


def test_raw_compressed_and_array_inputs_agree(eng: Engine) -> None:
    eng.switch(eng.members[2], "cpu", 1)
    grey = cv2.resize(image_set(1)[0], (200, 160), interpolation=cv2.INTER_LINEAR)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    a = eng.infer_array(rgb)
    b = eng.infer_raw(grey.tobytes(), 200, 160, "mono8")
    c = eng.infer_raw(np.ascontiguousarray(rgb[:, :, ::-1]), 200, 160, "bgr8")
    ok, png = cv2.imencode(".png", grey)
    d = eng.infer_compressed(png.tobytes(), "png")
    ok2, jpg = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 98])
    e = eng.infer_compressed(jpg.tobytes(), "jpeg")
    assert ok and ok2
    for r in (b, c, d):
        np.testing.assert_allclose(r.logits, a.logits, atol=0.05)
        assert r.class_ids[0] == a.class_ids[0]
    assert e.class_ids[0] == a.class_ids[0]
    cropped = eng.infer_array(rgb, center_crop=True)
    assert cropped.logits != a.logits  # the crop changes what the network sees


GOOD = {"data": bytes(40 * 30), "width": 40, "height": 30, "encoding": "mono8"}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda e: e.infer_raw(**{**GOOD, "encoding": "yuv422"}), "encoding"),
        (lambda e: e.infer_raw(**{**GOOD, "width": 41}), "data has 1200 bytes"),
        (lambda e: e.infer_raw(**{**GOOD, "step": 41}), "data has 1200 bytes"),
        (lambda e: e.infer_raw(**{**GOOD, "step": 39}), "step = 39"),
        (lambda e: e.infer_raw(**{**GOOD, "height": 0}), "height"),
        (lambda e: e.infer_raw(**{**GOOD, "data": b""}), "data is empty"),
        (lambda e: e.infer_compressed(b"\xff\xd8\xff\xe0garbage", "jpeg"), "cannot be decoded"),
        (lambda e: e.infer_compressed(b"", "jpeg"), "data is empty"),
        (lambda e: e.infer_compressed(b"abc", "bmp"), "fmt 'bmp'"),
        (lambda e: e.infer_array(np.zeros((5, 5), np.float64)), "image dtype"),
        (lambda e: e.infer_array(np.zeros((5, 5), np.uint8), top_k=0), "top_k"),
        (lambda e: e.switch("nosuchmember"), "member_id 'nosuchmember'.*one of"),
        (lambda e: e.switch(e.members[1], "cuda"), "processor 'cuda'.*prepared: cpu"),
        (lambda e: e.switch(e.members[1], "gpu"), "processor 'gpu'"),
        (lambda e: e.switch(e.members[1], "cpu", 3), r"threads = 3 .*prepared: 1, 2"),
        (lambda e: e.switch(e.members[1], "cpu", 0), "threads = 0"),
        (lambda e: e.switch(e.members[1], "cpu", True), "threads = True"),
        (lambda e: e.workload("zzz"), "member_id 'zzz'"),
        (lambda e: e.config(None), "member_id None"),
    ],
)
def test_bad_input_names_the_field_and_the_engine_stays_usable(
    eng: Engine, call: object, field: str
) -> None:
    eng.switch(eng.members[1], "cpu", 2)
    before = eng.active
    with pytest.raises(EngineError, match=field) as info:
        call(eng)  # type: ignore[operator]
    assert isinstance(info.value, ValueError)
    assert eng.active == before
    res = eng.infer_raw(**GOOD)
    assert res.member_id == before[0] and len(res.class_ids) == 5


def test_load_checks_its_arguments() -> None:
    path, _ = tiny_family()
    for kwargs, field in (
        ({"backend": "tensorrt"}, "backend 'tensorrt'.*onnxruntime, torch-static"),
        ({"processors": ("tpu",)}, "processor 'tpu'"),
        ({"processors": ()}, "processors is empty"),
        ({"threads": (1, 0)}, "threads = 0"),
        ({"top_k": 0}, "top_k = 0"),
        ({"initial": "abc"}, "initial member 'abc'"),
    ):
        with pytest.raises(EngineError, match=field):
            Engine.load(CHECKPOINT, path, progress=False, **kwargs)


def test_load_stops_between_members_once_cancelled() -> None:
    """A node's Ctrl-C during start-up: the preparation stops at the next member."""
    path, _ = tiny_family()
    asked: list[int] = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 1  # after the first member

    with pytest.raises(EngineError, match=r"interrupted while preparing members \(1 ready\)"):
        Engine.load(CHECKPOINT, path, backend="torch-static", progress=False, cancelled=cancelled)
    assert len(asked) == 2


def test_family_of_another_checkpoint_or_space_is_refused() -> None:
    path, _ = tiny_family()
    fam = load_family(path)
    other = replace(fam, supernet={**fam.supernet, "sha256": "0" * 64})
    with pytest.raises(EngineError, match="sha256 000000000000"):
        Engine.load(CHECKPOINT, other, progress=False)
    bad_cfg = {**fam.members[0].config, "r": 224}
    bad = replace(fam, members=(replace(fam.members[0], config=bad_cfg), *fam.members[1:]))
    with pytest.raises(EngineError, match=r"members\[0\].*field 'r' = 224"):
        Engine.load(CHECKPOINT, bad, progress=False)


def test_cuda_is_skipped_without_a_gpu() -> None:
    e = engine("torch-static")
    if "cuda" in e.processors:
        pytest.skip("this machine has a GPU")
    e2 = Engine.load(
        CHECKPOINT,
        tiny_family()[0],
        backend="torch-static",
        processors=("cuda", "cpu"),
        progress=False,
    )
    assert e2.processors == ("cpu",)
    e2.close()
    with pytest.raises(EngineError, match="none is available"):
        Engine.load(CHECKPOINT, tiny_family()[0], processors="cuda", progress=False)


def test_workloads_stored_or_computed(eng: Engine) -> None:
    _, net = tiny_family()
    stored = eng.workload(eng.members[1])
    assert stored == Workload.from_dict(STORED_WORKLOAD)
    for mid in (eng.members[0], eng.members[2]):
        w = eng.workload(mid)
        assert isinstance(w, Workload)
        assert w.name == mid and w.runtime == "onnxruntime"
        assert w.macs == net.macs(eng.config(mid)) and w.params == net.params(eng.config(mid))
    assert eng.workload(eng.members[0]).macs < eng.workload(eng.members[2]).macs


def test_close_releases_and_refuses_further_use() -> None:
    e = Engine.load(CHECKPOINT, tiny_family()[0], backend="torch-static", progress=False, top_k=3)
    assert len(e.infer_raw(**GOOD).class_ids) == 3
    e.close()
    assert e.closed
    with pytest.raises(EngineError, match="closed"):
        e.infer_raw(**GOOD)
    with pytest.raises(EngineError, match="closed"):
        e.switch(e.members[0])
