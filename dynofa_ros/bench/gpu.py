"""``dynofa bench gpu`` (``tools/gpu_check.sh``): every GPU check in a few minutes, as figures.

Checks, each on its own (one that fails prints its error and the others still run):

* ``train``: training images/s of ``dynofa train`` (the real loop: loader, sandwich step,
  optimizer) on the CPU, on CUDA in float32, with AMP bf16 and fp16, and bf16 without
  channels-last (the second epoch's rate: the first pays for cuDNN's autotuning);
* ``ddp``: 2 ranks under ``torchrun`` on the GPUs there are (NCCL with one GPU per rank; gloo
  when both share the one GPU, since NCCL refuses that), images/s of the global batch;
* ``profile``: a short ``dynofa profile --processors cuda`` (torch-static, onnxruntime when
  it has the CUDA provider);
* ``engine``: per family member, the engine's inference latency (median of timed frames, the
  device synchronised: outputs are copied back) for torch-dynamic / torch-static on CUDA and
  the CPU, onnxruntime on the CPU and on CUDA / TensorRT when this onnxruntime has them;
* ``agreement``: the backends' top-1 agreement and largest logit difference against
  onnxruntime on the CPU, over a batch of test images.

Data: Fashion-MNIST IDX files from ``--data`` / ``DYNOFA_FMNIST_DIR`` (or the Debian package's
folder), else a synthetic set of the same shape, labelled as such in the output (its accuracy
means nothing; its throughput does). Without a GPU it prints ``no GPU here: skipped`` and exits
0; ``--dry-run`` (or ``DYNOFA_GPU_CHECK_DRYRUN=1``) runs every check with the CPU standing in
for CUDA and tiny sizes, to check the script end to end on a machine without a GPU.

The core only (torch, onnxruntime, numpy): no ROS import, no project virtual environment.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dynofa_ros.resources import DEFAULT_CHECKPOINT

# sleeping OpenMP workers, as `dynofa train` sets them (a spinning team stalls whenever another
# process takes a core); before torch is first imported in this process
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "models" / DEFAULT_CHECKPOINT
FAMILY = ROOT / "models" / "fmnist_mbv3_small.cpu.family.json"


def _env_dry_run() -> bool:
    return os.environ.get("DYNOFA_GPU_CHECK_DRYRUN", "") not in ("", "0")


# ------------------------------------------------------------------------------------ data
def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def synthetic_fmnist(folder: Path, n_train: int, n_test: int) -> Path:
    """IDX files shaped like Fashion-MNIST (28x28 grey, 10 classes): a class-dependent bar
    over noise, so a network can learn something; not Fashion-MNIST."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 70, (n, 28, 28)).astype(np.uint8)
        for img, y in zip(images, labels, strict=True):
            row = 2 + 2 * int(y)
            img[row : row + 3, 4:24] = 230
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return folder


def find_data(arg: str | None) -> tuple[Path | None, str]:
    """(folder with Fashion-MNIST IDX files or None, description)."""
    from dynofa_ros.supernet.data import FASHION_MNIST_DIR

    for cand in (arg, os.environ.get("DYNOFA_FMNIST_DIR"), str(FASHION_MNIST_DIR)):
        if not cand:
            continue
        d = Path(cand)
        if any((d / f"t10k-labels-idx1-ubyte{gz}").is_file() for gz in ("", ".gz")):
            return d, f"Fashion-MNIST from {d}"
    return None, "SYNTHETIC data shaped like Fashion-MNIST (no Fashion-MNIST found)"


# ----------------------------------------------------------------------------------- checks
class Checks:
    """Runs named checks, keeping going after a failure; collects figures for the JSON."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> None:
        print(f"\n== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            value = fn()
            self.results[name] = {"status": "ok", "seconds": round(time.perf_counter() - t0, 1)}
            self.results[name]["figures"] = value
        except Exception as exc:  # a failing check must not stop the others
            msg = " ".join(f"{type(exc).__name__}: {exc}".split())
            print(f"   FAILED: {msg}", flush=True)
            traceback.print_exc(limit=4, file=sys.stdout)
            self.results[name] = {
                "status": "error",
                "error": msg[:2000],
                "seconds": round(time.perf_counter() - t0, 1),
            }


def _train_once(
    data: Path,
    out_dir: Path,
    tag: str,
    *,
    device: str,
    amp: str,
    channels_last: bool,
    train_images: int,
    batch: int,
    workers: int | None,
) -> dict[str, Any]:
    """Two short epochs of the real trainer; the second epoch's images/s."""
    import torch

    from dynofa_ros.supernet import data as D
    from dynofa_ros.supernet.network import preset
    from dynofa_ros.supernet.train import TrainOptions, train

    full = D.load_fashion_mnist(data, "train")
    train_set, val_set = D.split_validation(full, 256)
    train_set = train_set.subset(torch.arange(min(train_images, len(train_set))))
    opts = TrainOptions(
        arch=preset("fmnist-small"),
        out=out_dir / f"{tag}.safetensors",
        epochs=2,
        batch_size=batch,
        lr=0.05,
        warmup_epochs=0.5,
        calib_images=256,
        report_random=0,
        eval_every=0,
        progress=False,
        device=device,
        amp=amp,
        channels_last=channels_last,
        workers=workers,
    )
    t0 = time.perf_counter()
    summary = train(opts, train_set, val_set)
    wall = time.perf_counter() - t0
    last = summary["history"][-1]
    return {
        "device": summary["device"],
        "amp": summary["amp"],
        "channels_last": channels_last,
        "batch": batch,
        "steps_per_epoch": len(train_set) // batch,
        "images_per_s": round(last["images_per_s"], 1),
        "epoch_s": round(last["epoch_s"], 2),
        "val_acc_largest": summary["subnets"][0]["val_accuracy"],
        "wall_s": round(wall, 1),
    }


def check_train(data: Path, tmp: Path, gpu: bool, dry: bool) -> list[dict[str, Any]]:
    import torch

    rows = []
    cpu_images, gpu_images = (128, 256) if dry else (1536, 25600)
    cpu_batch, gpu_batch = 32 if dry else 128, 256
    runs: list[tuple[str, str, str, bool, int, int]] = [
        ("cpu fp32", "cpu", "off", True, cpu_images, cpu_batch)
    ]
    if not gpu:  # dry run: the NCHW path (bf16 autocast on a CPU is tested, and slow here)
        runs.append(("cpu fp32 NCHW", "cpu", "off", False, cpu_images, cpu_batch))
    else:
        runs += [
            ("cuda fp32", "cuda", "off", True, gpu_images, gpu_batch),
            ("cuda bf16", "cuda", "bf16", True, gpu_images, gpu_batch),
            ("cuda fp16", "cuda", "fp16", True, gpu_images, gpu_batch),
            ("cuda bf16 NCHW", "cuda", "bf16", False, gpu_images, gpu_batch),
        ]
    for tag, device, amp, cl, n, b in runs:
        try:
            row = _train_once(
                data,
                tmp,
                tag.replace(" ", "_"),
                device=device,
                amp=amp,
                channels_last=cl,
                train_images=n,
                batch=b,
                workers=None,
            )
            row["run"] = tag
            print(
                f"   {tag:<16} {row['images_per_s']:>10.1f} images/s  "
                f"(batch {b}, {row['steps_per_epoch']} steps, epoch {row['epoch_s']} s)",
                flush=True,
            )
        except Exception as exc:
            row = {"run": tag, "error": " ".join(f"{type(exc).__name__}: {exc}".split())}
            print(f"   {tag:<16} FAILED: {row['error']}", flush=True)
        rows.append(row)
    if gpu:
        torch.cuda.empty_cache()
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_ddp(data: Path, tmp: Path, gpu: bool, dry: bool) -> dict[str, Any]:
    """2 ranks under torchrun, the real CLI; figures from rank 0's log."""
    import torch

    n_gpus = torch.cuda.device_count() if gpu else 0
    out = tmp / "ddp.safetensors"
    images, batch = (128, 32) if dry else (12800, 256)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "-m",
        "dynofa_ros",
        "train",
        "--out",
        str(out),
        "--fashion-mnist",
        str(data),
        "--val-size",
        "256",
        "--train-limit",
        str(images),
        "--epochs",
        "2",
        "--batch-size",
        str(batch),
        "--lr",
        "0.05",
        "--calib-images",
        "256",
        "--report-random",
        "0",
        "--no-progress",
        "--device",
        "cuda" if gpu else "cpu",
        "--amp",
        "bf16" if gpu else "off",
    ]
    print("   " + shlex.join(cmd[2:]), flush=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("OMP_NUM_THREADS", "1" if dry else str(max(1, (os.cpu_count() or 2) // 2)))
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise RuntimeError(f"torchrun exit {proc.returncode}: " + " | ".join(tail))
    records = [json.loads(x) for x in Path(f"{out}.log.jsonl").read_text().splitlines()]
    start = next(r for r in records if r["event"] == "start")
    last = [r for r in records if r["event"] == "epoch"][-1]
    row = {
        "ranks": start["world_size"],
        "gpus": n_gpus,
        "backend": start["dist_backend"],
        "device": start["device"],
        "amp": start["amp"],
        "batch": batch,
        "images_per_s": round(last["images_per_s"], 1),
        "epoch_s": round(last["epoch_s"], 2),
    }
    note = (
        "2 GPUs, NCCL"
        if n_gpus >= 2
        else "one GPU shared by both ranks: gloo (NCCL refuses two ranks on one GPU); "
        "shows the distributed path works, not scaling"
        if gpu
        else "CPU, gloo (dry run)"
    )
    row["note"] = note
    print(
        f"   2 ranks ({row['backend']}, {row['device']}, amp {row['amp']}): "
        f"{row['images_per_s']} images/s; {note}",
        flush=True,
    )
    return row


def check_profile(tmp: Path, gpu: bool, dry: bool) -> dict[str, Any]:
    import onnxruntime as ort

    backends = ["torch-static"]
    if not gpu or "CUDAExecutionProvider" in ort.get_available_providers():
        backends.append("onnxruntime")
    out = tmp / "profile"
    cmd = [
        sys.executable,
        "-m",
        "dynofa_ros",
        "profile",
        "--checkpoint",
        str(CHECKPOINT),
        "--out",
        str(out),
        "--processors",
        "cuda" if gpu else "cpu",
        "--backends",
        ",".join(backends),
        "--threads",
        "1",
        "--networks",
        "3" if dry else "10",
        "--warmup",
        "3",
        "--repeat",
        "10" if dry else "30",
        "--max-seconds",
        "0.2",
        "--quiet",
    ]
    print("   " + shlex.join(cmd[2:]), flush=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150, check=False
    )
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    for line in lines[-12:]:
        print("   | " + line, flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dynofa profile exit {proc.returncode}: " + " | ".join(lines[-5:]))
    return {"backends": backends, "files": sorted(p.name for p in out.rglob("*") if p.is_file())}


def _images(data: Path | None, n: int) -> np.ndarray:
    from dynofa_ros.supernet.data import load_fashion_mnist

    assert data is not None
    test = load_fashion_mnist(data, "test")
    return test.images[:n, 0].numpy()


def check_engine(data: Path, gpu: bool, dry: bool) -> dict[str, Any]:
    """Per member and backend / processor: median inference latency and the logits of a batch
    of test images; agreement against onnxruntime on the CPU."""
    import onnxruntime as ort

    from dynofa_ros.engine import Engine

    providers = ort.get_available_providers()
    proc = "cuda" if gpu else "cpu"
    settings: list[tuple[str, str]] = [
        ("onnxruntime", "cpu"),
        ("torch-static", "cpu"),
        ("torch-dynamic", "cpu"),
    ]
    if gpu or dry:
        settings += [("torch-static", proc), ("torch-dynamic", proc)]
    notes = []
    if "CUDAExecutionProvider" in providers or "TensorrtExecutionProvider" in providers:
        if gpu:
            settings.append(("onnxruntime", "cuda"))
    else:
        notes.append(f"CUDAExecutionProvider not present (onnxruntime {ort.__version__})")
    images = _images(data, 16 if dry else 200)
    frames = 10 if dry else 100
    latency: dict[str, dict[str, float]] = {}
    logits: dict[str, dict[str, np.ndarray]] = {}
    members: list[str] = []
    for backend, p in settings:
        key = f"{backend}@{p}"
        try:
            engine = Engine.load(
                CHECKPOINT, FAMILY, backend=backend, processors=(p,), threads=(1,), progress=False
            )
        except Exception as exc:
            notes.append(f"{key}: {' '.join(str(exc).split())}")
            print(f"   {key}: FAILED to prepare: {exc}", flush=True)
            continue
        with engine:
            members = list(engine.members)
            latency[key], logits[key] = {}, {}
            for mid in members:
                engine.switch(mid, p, 1)
                for img in images[:5]:
                    engine.infer_array(img)  # warm
                ms = [
                    engine.infer_array(images[i % len(images)]).inference_ms for i in range(frames)
                ]
                latency[key][mid] = round(statistics.median(ms), 4)
                logits[key][mid] = np.stack([engine.infer_array(img).logits for img in images])
        print(
            f"   {key:<26} "
            + "  ".join(f"{latency[key][m]:.3f}" for m in members)
            + "  ms (median per member)",
            flush=True,
        )
    ref = "onnxruntime@cpu"
    agreement = {}
    if ref in logits:
        for key, per in logits.items():
            if key == ref:
                continue
            top1, diff = [], 0.0
            for mid, lg in per.items():
                r = logits[ref][mid]
                top1.append(float((lg.argmax(1) == r.argmax(1)).mean()))
                diff = max(diff, float(np.abs(lg - r).max()))
            agreement[key] = {"top1_agreement": min(top1), "max_abs_logit_diff": diff}
            print(
                f"   agreement {key:<24} vs {ref}: top-1 {min(top1):.4f} (worst member), "
                f"max |logit diff| {diff:.2e} over {len(images)} images",
                flush=True,
            )
    for n in notes:
        print(f"   note: {n}", flush=True)
    return {
        "members": members,
        "latency_ms": latency,
        "agreement_vs_onnxruntime_cpu": agreement,
        "images": len(images),
        "notes": notes,
    }


# ------------------------------------------------------------------------------------ main
def summary_table(results: dict[str, Any]) -> str:
    lines = ["", "== summary", f"{'check':<12} {'status':<8} figures"]
    for name, r in results.items():
        if not isinstance(r, dict) or "status" not in r:
            continue
        fig: Any = r.get("figures")
        if r["status"] != "ok":
            text = r.get("error", "")[:150]
        elif name == "train":
            text = ", ".join(
                f"{x['run']}: {x['images_per_s']}/s"
                if "images_per_s" in x
                else f"{x['run']}: FAILED"
                for x in fig
            )
        elif name == "ddp":
            text = f"{fig['ranks']} ranks {fig['backend']} {fig['device']}: {fig['images_per_s']}/s"
        elif name == "engine":
            parts = []
            for key, per in fig["latency_ms"].items():
                vals = list(per.values())
                parts.append(f"{key} {min(vals):.2f}-{max(vals):.2f} ms")
            text = "; ".join(parts)
            for key, a in fig["agreement_vs_onnxruntime_cpu"].items():
                text += (
                    f"; {key} top-1 {a['top1_agreement']:.4f} "
                    f"max|dlogit| {a['max_abs_logit_diff']:.1e}"
                )
        else:
            text = json.dumps(fig)[:150]
        lines.append(f"{name:<12} {r['status']:<8} {text}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="dynofa bench gpu",
        description="Every GPU check (training, AMP, DDP, profile, engine, agreement) in a few "
        "minutes; prints figures and writes them as JSON.",
    )
    p.add_argument("--data", help="Fashion-MNIST IDX folder (default: $DYNOFA_FMNIST_DIR)")
    p.add_argument(
        "--json",
        help="write the figures here (default: $DYNOFA_GPU_CHECK_JSON, else $OUT/gpu_check.json "
        "when OUT is set)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="no GPU needed: the CPU stands in for CUDA, tiny sizes ($DYNOFA_GPU_CHECK_DRYRUN=1)",
    )
    p.add_argument(
        "--only",
        default="train,ddp,profile,engine",
        help="comma list of checks to run (default: all: train,ddp,profile,engine)",
    )
    args = p.parse_args(argv)
    dry = args.dry_run or _env_dry_run()
    json_path = args.json or os.environ.get("DYNOFA_GPU_CHECK_JSON")
    if not json_path and os.environ.get("OUT"):
        json_path = str(Path(os.environ["OUT"]) / "gpu_check.json")

    import torch

    try:
        import onnxruntime as ort

        providers = list(ort.get_available_providers())
        ort_version = ort.__version__
    except Exception as exc:  # report, do not fail: the torch checks still run
        providers, ort_version = [], f"unavailable ({exc})"
    gpu = bool(torch.cuda.is_available())
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": gpu,
        "cuda_version": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "onnxruntime": ort_version,
        "onnxruntime_providers": providers,
        "cpu_cores": os.cpu_count(),
        "dry_run": dry,
    }
    print(json.dumps(info, indent=1), flush=True)
    if not gpu and not dry:
        print("no GPU here: skipped (DYNOFA_GPU_CHECK_DRYRUN=1 runs the checks on the CPU)")
        if json_path:
            _write_json(json_path, {"info": info, "skipped": "no GPU here"})
        return 0
    if dry and not gpu:
        print("DRY RUN: no GPU here: skipped; the CPU stands in for CUDA, with tiny sizes")

    results: dict[str, Any] = {"info": info}
    data, data_note = find_data(args.data)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    with tempfile.TemporaryDirectory(prefix="dynofa-gpu-check-") as tmp_name:
        tmp = Path(tmp_name)
        if data is None:
            data = synthetic_fmnist(tmp / "synthetic", 2048 if dry else 30000, 512)
        print(f"data: {data_note}", flush=True)
        results["data"] = data_note
        checks = Checks()
        assert data is not None
        if "train" in only:
            checks.run("train", lambda: check_train(data, tmp, gpu, dry))
        if "ddp" in only:
            checks.run("ddp", lambda: check_ddp(data, tmp, gpu, dry))
        if "profile" in only:
            checks.run("profile", lambda: check_profile(tmp, gpu, dry))
        if "engine" in only:
            checks.run("engine", lambda: check_engine(data, gpu, dry))
        results.update(checks.results)
    print(summary_table(results), flush=True)
    if json_path:
        _write_json(json_path, results)
        print(f"figures written to {json_path}")
    return 0


def _write_json(path: str, obj: Any) -> None:
    from dynofa_ros.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=1, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
