"""Data-parallel training with torchrun (gloo, 2 processes on this CPU): N ranks compute what
one process computes, resume across rank counts, survive a kill, reject bad input.

The runs train the ``ddp-tiny`` preset (test/ddp_train_child.py) on the first 96 Fashion-MNIST
training images in float64, so equality is checked to 1e-9 (see the child's docstring)."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from dynofa_ros.supernet import data as D

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHILD = HERE / "ddp_train_child.py"
sys.path.insert(0, str(HERE))
import ddp_train_child  # noqa: E402

N_IMAGES = 96  # 32 validation, 64 training: 4 steps of 16 per epoch
EPOCHS = 3


def _have_fashion_mnist() -> bool:
    return any(
        (D.FASHION_MNIST_DIR / f"train-labels-idx1-ubyte{gz}").exists() for gz in ("", ".gz")
    )


pytestmark = pytest.mark.skipif(
    not _have_fashion_mnist(), reason="dataset-fashion-mnist not installed"
)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first N_IMAGES Fashion-MNIST training images as IDX files."""
    d = tmp_path_factory.mktemp("fmnist")
    train = D.load_fashion_mnist(D.FASHION_MNIST_DIR, "train")
    _write_idx(d / "images", train.images[:N_IMAGES, 0].numpy())
    _write_idx(d / "labels", train.labels[:N_IMAGES].numpy())
    return d


def _args(data: Path, out: Path, *extra: str, epochs: int = EPOCHS) -> list[str]:
    return [
        "--preset",
        "ddp-tiny",
        "--out",
        str(out),
        "--idx",
        str(data / "images"),
        str(data / "labels"),
        "-",
        "-",
        "--val-size",
        "32",
        "--epochs",
        str(epochs),
        "--batch-size",
        "16",
        "--lr",
        "0.05",
        "--random",
        "1",
        "--calib-images",
        "16",
        "--eval-limit",
        "16",
        "--report-random",
        "0",
        "--no-progress",
        "--threads",
        "1",
        "--device",
        "cpu",
        *extra,
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(ranks: int, args: list[str], *, float64: bool = True) -> subprocess.Popen[str]:
    """``torchrun --nproc-per-node RANKS`` of the child, on a free rendezvous port, in its own
    process group (so a test can kill the whole run)."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(ranks),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        str(CHILD),
        *(["--float64"] if float64 else []),
        *args,
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{out[-3000:]}")
    return proc.returncode, out


def _one_process(args: list[str], *, float64: bool = True) -> int:
    """``dynofa train`` in this process (no torchrun environment)."""
    before = torch.get_default_dtype()
    try:
        return ddp_train_child.main([*(["--float64"] if float64 else []), *args])
    finally:
        torch.set_default_dtype(before)


def _state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(str(path), "pt") as fh:
        meta = json.loads(fh.metadata()["state"])
    return load_file(str(path)), meta


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max(((a[k].double() - b[k].double()).abs().max().item(), k) for k in a if a[k].numel())
    assert worst[0] <= atol, f"largest difference {worst[0]:.3g} at {worst[1]}"


@pytest.fixture(scope="module")
def reference(fmnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-process run every data-parallel run must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "ref.safetensors"
    assert _one_process(_args(fmnist, out)) == 0
    return out


def _env_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------------------------ equivalence
@pytest.mark.slow
def test_two_ranks_give_the_single_process_weights(fmnist, reference, tmp_path):
    out = tmp_path / "ddp.safetensors"
    rc, log = _finish(_torchrun(2, _args(fmnist, out)))
    assert rc == 0, log[-3000:]
    ref_state, ref_meta = _state(Path(f"{reference}.state.safetensors"))
    state, meta = _state(Path(f"{out}.state.safetensors"))
    assert meta["epoch_done"] == ref_meta["epoch_done"] == EPOCHS
    _assert_same(ref_state, state, atol=1e-9)  # weights, BN buffers and momentum
    _assert_same(load_file(str(reference)), load_file(str(out)), atol=1e-9)
    # the weights moved: the comparison is not between two untouched initialisations
    from dynofa_ros.supernet.network import build_supernet

    torch.manual_seed(0)  # the runs' seed: their initial weights
    fresh = build_supernet(ddp_train_child.TINY).state_dict()["first_conv.conv.weight"]
    assert (state["model/first_conv.conv.weight"].float() - fresh).abs().max() > 1e-3
    # rank 0 alone wrote the log: one start record, one record per epoch
    records = [json.loads(line) for line in Path(f"{out}.log.jsonl").read_text().splitlines()]
    starts = [r for r in records if r["event"] == "start"]
    assert len(starts) == 1 and starts[0]["world_size"] == 2
    assert starts[0]["dist_backend"] == "gloo"
    assert [r["epoch"] for r in records if r["event"] == "epoch"] == list(range(1, EPOCHS + 1))


@pytest.mark.slow
def test_two_ranks_resume_a_one_process_run(fmnist, reference, tmp_path, monkeypatch):
    from dynofa_ros.supernet import train as T

    _env_clear(monkeypatch)
    out = tmp_path / "resumed.safetensors"
    real_save = T.save_state

    def save_then_die(*args, **kw):
        real_save(*args, **kw)
        raise KeyboardInterrupt  # the one-process run dies right after its first epoch

    monkeypatch.setattr(T, "save_state", save_then_die)
    assert _one_process(_args(fmnist, out)) == 130
    monkeypatch.setattr(T, "save_state", real_save)
    assert _state(Path(f"{out}.state.safetensors"))[1]["epoch_done"] == 1
    assert not out.exists()

    rc, log = _finish(_torchrun(2, _args(fmnist, out, "--resume")))
    assert rc == 0, log[-3000:]
    assert "resuming from" in log and "after epoch 1" in log
    _assert_same(
        _state(Path(f"{reference}.state.safetensors"))[0],
        _state(Path(f"{out}.state.safetensors"))[0],
        atol=1e-9,
    )
    records = [json.loads(line) for line in Path(f"{out}.log.jsonl").read_text().splitlines()]
    assert [r["world_size"] for r in records if r["event"] == "start"] == [1, 2]


@pytest.mark.slow
def test_killed_distributed_run_keeps_its_last_state(fmnist, reference, tmp_path, monkeypatch):
    """SIGKILL to the whole torchrun group once an epoch is saved: the state file on disk is a
    complete one, and a single process resumes from it to the reference result."""
    _env_clear(monkeypatch)
    out = tmp_path / "killed.safetensors"
    state_path = Path(f"{out}.state.safetensors")
    proc = _torchrun(2, _args(fmnist, out))
    deadline = time.monotonic() + 240
    while not state_path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert state_path.exists(), "no epoch was saved before the deadline"
    _, meta = _state(state_path)  # loads: complete, not a half-written file
    assert 1 <= meta["epoch_done"] <= EPOCHS
    assert len(meta["history"]) == meta["epoch_done"]

    assert _one_process(_args(fmnist, out, "--resume")) == 0
    _assert_same(
        _state(Path(f"{reference}.state.safetensors"))[0], _state(state_path)[0], atol=1e-9
    )


# ------------------------------------------------------------------------------- bad input
def test_world_size_must_divide_the_batch(fmnist, tmp_path):
    args = _args(fmnist, tmp_path / "x.safetensors")
    args[args.index("--batch-size") + 1] = "15"
    rc, log = _finish(_torchrun(2, args, float64=False))
    assert rc != 0
    errors = [line for line in log.splitlines() if line.startswith("dynofa train: error:")]
    assert errors and all(
        "--batch-size 15 (the global batch) is not divisible by the world size 2" in e
        for e in errors
    ), log[-2000:]
    assert not Path(f"{tmp_path / 'x.safetensors'}.state.safetensors").exists()


def test_cuda_without_a_gpu_is_a_one_line_error(fmnist, tmp_path, capsys, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _env_clear(monkeypatch)
    args = _args(fmnist, tmp_path / "x.safetensors")
    args[args.index("--device") + 1] = "cuda"
    assert _one_process(args, float64=False) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"dynofa train: error: --device cuda: no CUDA GPU is usable by PyTorch here (torch "
        f"{torch.__version__}); use --device cpu or auto"
    ]
    args[args.index("--device") + 1] = "cpu"
    assert _one_process([*args, "--amp", "fp16"], float64=False) == 1
    assert capsys.readouterr().err.strip() == (
        "dynofa train: error: --amp fp16 needs --device cuda (on a CPU use bf16 or off)"
    )


def test_resume_from_another_architecture_is_refused(fmnist, tmp_path, capsys, monkeypatch):
    _env_clear(monkeypatch)
    out = tmp_path / "arch.safetensors"
    assert _one_process(_args(fmnist, out, epochs=1), float64=False) == 0
    capsys.readouterr()
    # same file, another architecture (a different classifier dropout changes the description)
    rc = _one_process(_args(fmnist, out, "--resume", "--dropout", "0.2", epochs=1), float64=False)
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "saved by a run of another architecture ('ddp-tiny'" in err[0]
    assert "remove it or drop --resume" in err[0]


# ------------------------------------------------------------------------- batches, AMP
def test_rank_shards_make_up_the_single_process_batch(fmnist):
    data = D.load_idx_pair(fmnist / "images", fmnist / "labels")
    whole = D.ShardedBatches(data, 24, seed=5, epoch=2)
    shards = [D.ShardedBatches(data, 24, seed=5, epoch=2, rank=r, world_size=3) for r in range(3)]
    assert len(whole) == 4 and all(len(s) == 4 for s in shards)
    for i in range(len(whole)):
        images, labels = whole[i]
        parts = [s[i] for s in shards]
        assert torch.equal(torch.cat([p[0] for p in parts]), images)
        assert torch.equal(torch.cat([p[1] for p in parts]), labels)
    # loader processes draw the same augmentation as the main process
    in_proc = list(D.batch_loader(whole, workers=0))
    workers = list(D.batch_loader(whole, workers=2))
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(in_proc, workers, strict=True)
    )
    # another epoch draws another order / augmentation
    other = D.ShardedBatches(data, 24, seed=5, epoch=3)
    assert not torch.equal(other[0][0], whole[0][0])
    with pytest.raises(ValueError, match="not divisible by 5 ranks"):
        D.ShardedBatches(data, 24, seed=5, epoch=2, rank=0, world_size=5)


def test_bf16_autocast_on_the_cpu_trains(fmnist, tmp_path, monkeypatch):
    _env_clear(monkeypatch)
    out = tmp_path / "bf16.safetensors"
    assert _one_process(_args(fmnist, out, "--amp", "bf16", epochs=1), float64=False) == 0
    records = [json.loads(line) for line in Path(f"{out}.log.jsonl").read_text().splitlines()]
    assert records[0]["amp"] == "bfloat16" and records[0]["device"] == "cpu"
    epoch = next(r for r in records if r["event"] == "epoch")
    assert np.isfinite(epoch["loss_largest"]) and np.isfinite(epoch["loss_smallest"])


# --------------------------------------------------------------------------- gpu_check.sh
def test_gpu_check_without_a_gpu_says_skipped(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DYNOFA_GPU_CHECK_DRYRUN", "DYNOFA_GPU_CHECK_JSON")
    }
    env.update(PYTHON=sys.executable, OUT=str(tmp_path))
    proc = subprocess.run(
        [str(ROOT / "tools" / "gpu_check.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no GPU here: skipped" in proc.stdout
    figures = json.loads((tmp_path / "gpu_check.json").read_text())
    assert figures["skipped"] == "no GPU here" and figures["info"]["cuda_available"] is False
