"""``dynofa bench engine``: the inference engine against standalone ONNX Runtime and PyTorch.

Per family member (default: the embedded checkpoint's CPU family):

* ``ORT alone``: a plain ``InferenceSession`` of the same exported sub-network (same thread
  count) running the same preprocessed input: the best this runtime does here;
* ``engine``: one engine step (``infer_raw``: buffer view, normalisation, ONNX Runtime, softmax,
  top-k) on a ``mono8`` frame at the member's resolution; ``ratio`` = engine / ORT alone, timed
  interleaved (alone, engine, alone, ...) so both see the same machine state;
* ``pre+post``: the engine's own stages (medians of its per-stage timing);
* ``camera``: one engine step on a 640x480 ``rgb8`` camera frame (adds the resize);
* ``static`` / ``dynamic``: eager PyTorch engine steps (extracted modules; the shared
  super-network), and ``dyn/ORT``.

Per backend: the switch time (median and 99th percentile of N ``switch`` calls spaced at random
while another thread processes frames; the frames done meanwhile are counted), and the process
RSS after preparing every member (backends are prepared one after the other in this process;
the increase is what each added).

Medians within one run; this machine's timing noise is about ±30 % between runs, so compare the
ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from dynofa_ros.errors import DynofaError
from dynofa_ros.resources import default_checkpoint

ORDER = ("torch-dynamic", "torch-static", "onnxruntime")  # least memory first


def _median_ms(samples_ns: list[int]) -> float:
    return statistics.median(samples_ns) * 1e-6


def _sample_image() -> np.ndarray:
    """A 28x28 grey item: a Fashion-MNIST test image when installed, else a smooth blob."""
    from dynofa_ros.supernet.data import FASHION_MNIST_DIR, read_idx

    path = FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    if path.is_file():
        return np.ascontiguousarray(read_idx(path)[0])
    yy, xx = np.mgrid[:28, :28]
    return (255 * np.exp(-((yy - 14) ** 2 + (xx - 12) ** 2) / 60.0)).astype(np.uint8)


def _camera_frame(item: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    frame = np.random.default_rng(0).integers(0, 40, (h, w, 3), dtype=np.uint8)
    side = min(w, h) * 3 // 4
    big = cv2.resize(item, (side, side), interpolation=cv2.INTER_LINEAR)
    y0, x0 = (h - side) // 2, (w - side) // 2
    frame[y0 : y0 + side, x0 : x0 + side] = big[:, :, None]
    return frame


def _switch_times(
    engine: Any, n: int, frame: tuple[bytes, int, int, str], seed: int = 0
) -> tuple[list[int], int]:
    """``n`` switch calls (ns each) spaced at random while another thread runs frames."""
    stop = threading.Event()
    done = [0]

    def frames() -> None:
        while not stop.is_set():
            engine.infer_raw(*frame)
            done[0] += 1

    th = threading.Thread(target=frames, name="bench-frames", daemon=True)
    th.start()
    rng = random.Random(seed)
    members = engine.members
    times = []
    try:
        while done[0] < 3:
            time.sleep(0.001)
        start_frames = done[0]
        for i in range(n):
            mid = members[i % len(members)]
            t0 = time.perf_counter_ns()
            engine.switch(mid)
            times.append(time.perf_counter_ns() - t0)
            time.sleep(rng.uniform(0.0, 5e-4))
        frames_during = done[0] - start_frames
    finally:
        stop.set()
        th.join(10)
    return times, frames_during


def _measure(
    mid: str, engines: dict[str, Any], ref: Any, item: Any, *, cam_args: tuple[Any, ...], args: Any
) -> dict[str, Any]:
    """One member: the engine's step vs a standalone ONNX Runtime session of the same
    sub-network, a camera-sized frame, and the PyTorch backends."""
    import cv2
    import onnxruntime as ort

    from dynofa_ros.engine.preprocess import raw_view
    from dynofa_ros.supernet.export import export_onnx

    ort_engine, t = engines["onnxruntime"], args.threads
    cfg = ort_engine.config(mid)
    native = cv2.resize(item, (cfg.r, cfg.r), interpolation=cv2.INTER_AREA)
    nat_args = (native.tobytes(), cfg.r, cfg.r, "mono8")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = t
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(export_onnx(ref, cfg), opts, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    x = ort_engine.preprocess(raw_view(*nat_args), mid)
    ort_engine.switch(mid, "cpu", t)
    alone, step, cam, stages = [], [], [], []
    for i in range(args.frames + 10):
        t0 = time.perf_counter_ns()
        sess.run(None, {in_name: x})
        t1 = time.perf_counter_ns()
        res = ort_engine.infer_raw(*nat_args)
        t2 = time.perf_counter_ns()
        if i >= 10:
            alone.append(t1 - t0)
            step.append(t2 - t1)
            stages.append(res.preprocess_ms + res.postprocess_ms)
    for i in range(args.frames // 2 + 5):
        t0 = time.perf_counter_ns()
        ort_engine.infer_raw(*cam_args)
        if i >= 5:
            cam.append(time.perf_counter_ns() - t0)
    row = {
        "id": mid,
        "r": cfg.r,
        "mmacs": ref.macs(cfg) / 1e6,
        "alone": _median_ms(alone),
        "engine": _median_ms(step),
        "prepost_us": statistics.median(stages) * 1e3,
        "camera": _median_ms(cam),
    }
    for b in ("torch-static", "torch-dynamic"):
        if b in engines:
            e = engines[b]
            e.switch(mid, "cpu", t)
            times = []
            for i in range(max(5, args.frames // 4) + 3):
                t0 = time.perf_counter_ns()
                e.infer_raw(*nat_args)
                if i >= 3:
                    times.append(time.perf_counter_ns() - t0)
            row[b] = _median_ms(times)
    del sess
    return row


def _args(argv: list[str]) -> argparse.Namespace:
    """The command line, checked; adds ``backend_list``, ``cam_w`` / ``cam_h`` and ``fam``."""
    p = argparse.ArgumentParser(prog="dynofa bench engine", description=__doc__.split("\n")[0])
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="super-network checkpoint (default: the embedded Fashion-MNIST model)",
    )
    p.add_argument(
        "--family",
        type=Path,
        default=None,
        help="family file (default: <checkpoint stem>.cpu.family.json beside the checkpoint)",
    )
    p.add_argument(
        "--backends",
        default=",".join(ORDER),
        help="comma-separated backends to compare (default: all three)",
    )
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--frames", type=int, default=200, help="timed frames per member and path")
    p.add_argument("--switches", type=int, default=1000, help="timed switches per backend")
    p.add_argument("--camera", default="640x480", help="camera frame size WxH (default 640x480)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    from dynofa_ros.engine import BACKENDS

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in BACKENDS:
            raise ValueError(f"--backends: {b!r} is not one of {', '.join(BACKENDS)}")
    if "onnxruntime" not in backends:
        raise ValueError("--backends must include onnxruntime (the reference of the ratios)")
    if args.frames < 5 or args.switches < 1 or not 1 <= args.threads <= 64:
        raise ValueError("--frames must be >= 5, --switches >= 1, --threads in 1..64")
    try:
        cam_w, cam_h = (int(v) for v in args.camera.lower().split("x"))
    except ValueError:
        raise ValueError(f"--camera must be WxH (e.g. 640x480), got {args.camera!r}") from None
    ckpt = args.checkpoint = args.checkpoint or default_checkpoint()
    fam = args.family or ckpt.with_name(ckpt.name.removesuffix(".safetensors") + ".cpu.family.json")
    if not fam.is_file():
        raise DynofaError(
            f"family file {fam} not found; run `dynofa search` for this checkpoint or pass --family"
        )
    args.fam, args.backend_list, args.cam_w, args.cam_h = fam, backends, cam_w, cam_h
    return args


def main(argv: list[str]) -> int:
    args = _args(argv)
    from tqdm import tqdm

    from dynofa_ros.engine import Engine
    from dynofa_ros.search.timing import cpu_model, versions

    ckpt, fam, backends = args.checkpoint, args.fam, args.backend_list
    cam_w, cam_h = args.cam_w, args.cam_h
    quiet = args.quiet
    t = args.threads

    engines: dict[str, Any] = {}
    for b in [b for b in ORDER if b in backends]:
        engines[b] = Engine.load(ckpt, fam, backend=b, threads=(t,), progress=not quiet)
    ort_engine = engines["onnxruntime"]
    members = ort_engine.members

    # standalone sessions: the same sub-networks exported from a fresh copy of the checkpoint

    from dynofa_ros.search.build import load_bn_statistics
    from dynofa_ros.supernet.checkpoint import load_checkpoint

    ref = load_checkpoint(ckpt).net
    if ort_engine.family.bn_statistics is not None:
        load_bn_statistics(ort_engine.family, ref)
    item = _sample_image()
    camera = _camera_frame(item, cam_w, cam_h)
    cam_args = (camera.tobytes(), cam_w, cam_h, "rgb8")

    rows = []
    for mid in tqdm(members, desc="measure members", disable=quiet, file=sys.stderr):
        rows.append(_measure(mid, engines, ref, item, cam_args=cam_args, args=args))

    mib = 2**20
    print(
        f"engine benchmark: {ckpt.name} + {fam.name} ({len(members)} members), CPU {cpu_model()}, "
        f"{t} thread(s); onnxruntime {versions().get('onnxruntime', '?')}, "
        f"torch {versions().get('torch', '?')}; medians of {args.frames} frames"
    )
    head = (
        f"{'member':<10} {'r':>3} {'MMACs':>6} {'ORT alone':>9} {'engine':>8} {'ratio':>6} "
        f"{'pre+post':>8} {'camera':>8} {'static':>8} {'dynamic':>8} {'dyn/ORT':>7}"
    )
    print(head)
    print(
        f"{'':<10} {'':>3} {'':>6} {'ms':>9} {'ms':>8} {'':>6} {'us':>8} "
        f"{f'{cam_w}x{cam_h}':>8} {'ms':>8} {'ms':>8} {'':>7}"
    )
    for r in rows:
        static = r.get("torch-static")
        dyn = r.get("torch-dynamic")
        print(
            f"{r['id']:<10} {r['r']:>3} {r['mmacs']:6.2f} {r['alone']:9.3f} {r['engine']:8.3f} "
            f"{r['engine'] / r['alone']:6.3f} {r['prepost_us']:8.1f} {r['camera']:8.3f} "
            + (f"{static:8.3f} " if static is not None else f"{'-':>8} ")
            + (f"{dyn:8.3f} {dyn / r['engine']:7.2f}" if dyn is not None else f"{'-':>8}")
        )
    ratios = [r["engine"] / r["alone"] for r in rows]
    print(
        f"engine / ORT alone: median {statistics.median(ratios):.3f}, worst {max(ratios):.3f} "
        "(goal <= 1.15)"
    )
    largest = max(rows, key=lambda r: r["mmacs"])
    if "torch-dynamic" in largest:
        print(
            f"largest member {largest['id']}: dynamic PyTorch / ORT engine = "
            f"{largest['torch-dynamic'] / largest['engine']:.2f}x (goal >= 3)"
        )

    print(f"{'backend':<14} {'switch med us':>13} {'p99 us':>7} {'frames':>7} {'RSS MiB':>8} "
          f"{'+MiB':>6} {'prep s':>6}")  # fmt: skip
    frame = (item.tobytes(), 28, 28, "mono8")
    for b, e in engines.items():
        times, frames_during = _switch_times(e, args.switches, frame)
        times.sort()
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
        rep = e.report
        print(
            f"{b:<14} {statistics.median(times) / 1e3:13.2f} {p99 / 1e3:7.1f} "
            f"{frames_during:7d} {rep.rss_after / mib:8.0f} "
            f"{(rep.rss_after - rep.rss_before) / mib:6.0f} {rep.seconds:6.1f}"
        )
    print(
        f"switch: median of {args.switches} Engine.switch calls while another thread ran the "
        "frames counted; RSS after preparing each backend (prepared in this order, one process)"
    )
    for e in engines.values():
        e.close()
    return 0
