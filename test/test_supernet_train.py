"""Data readers and the sandwich-rule trainer: IDX / ImageFolder, fixed validation split,
deterministic and resumable training, progressive-shrinking phases, the CLI."""

from __future__ import annotations

import gzip
import json
import struct

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dynofa_ros.supernet import data as D
from dynofa_ros.supernet import train as T
from dynofa_ros.supernet.checkpoint import load_checkpoint
from dynofa_ros.supernet.config import SearchSpace
from dynofa_ros.supernet.network import Architecture

TINY = Architecture(
    name="tiny",
    in_channels=1,
    num_classes=3,
    base_widths=(8, 8, 8, 8, 16, 16, 16, 32, 32),
    first_stride=2,
    strides=(1, 2, 1, 1, 1, 1),
    dropout=0.1,
    space=SearchSpace(resolutions=(12, 16)),
    mean=(0.5,),
    std=(0.25,),
)


def _write_idx(path, array: np.ndarray, gz: bool) -> None:
    code = {np.uint8: 0x08}[array.dtype.type]
    raw = (
        struct.pack(">BBBB", 0, 0, code, array.ndim)
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.tobytes()
    )
    path.write_bytes(gzip.compress(raw) if gz else raw)


def _synthetic(n: int, seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Three learnable classes: a bright bar that is horizontal, vertical or absent."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
    for img, y in zip(images, labels, strict=True):
        p = rng.integers(3, size - 3)
        if y == 0:
            img[p - 1 : p + 1, 2:-2] = 230
        elif y == 1:
            img[2:-2, p - 1 : p + 1] = 230
    return images, labels


@pytest.fixture(scope="module")
def idx_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("idx")
    x, y = _synthetic(400, 0)
    xt, yt = _synthetic(120, 1)
    _write_idx(d / "train-images-idx3-ubyte.gz", x, gz=True)
    _write_idx(d / "train-labels-idx1-ubyte.gz", y, gz=True)
    _write_idx(d / "t10k-images-idx3-ubyte", xt, gz=False)
    _write_idx(d / "t10k-labels-idx1-ubyte", yt, gz=False)
    return d, (x, y, xt, yt)


# ------------------------------------------------------------------------------------ data
def test_idx_reader_gz_and_plain(idx_files):
    d, (x, _, _, yt) = idx_files
    train = D.load_fashion_mnist(d, "train")
    test = D.load_fashion_mnist(d, "test")
    assert train.images.shape == (400, 1, 16, 16) and train.images.dtype == torch.uint8
    assert np.array_equal(train.images[:, 0].numpy(), x)
    assert np.array_equal(test.labels.numpy(), yt.astype(np.int64))
    assert train.classes[0] == "T-shirt/top"


def test_idx_reader_rejects_truncated_and_foreign_files(idx_files, tmp_path):
    d, _ = idx_files
    raw = (d / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "cut").write_bytes(raw[:-10])
    with pytest.raises(D.DataError, match="truncated"):
        D.read_idx(tmp_path / "cut")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:50])
    with pytest.raises(D.DataError, match=r"cut\.gz"):
        D.read_idx(tmp_path / "cut.gz")
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n....")
    with pytest.raises(D.DataError, match="not an IDX file"):
        D.read_idx(tmp_path / "png")


def test_real_fashion_mnist_when_installed():
    if (
        not (D.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists()
        and not (D.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte").exists()
    ):
        pytest.skip("dataset-fashion-mnist not installed")
    train, val, test = D.fashion_mnist_splits()
    assert (len(train), len(val), len(test)) == (55000, 5000, 10000)
    assert test.images.shape[1:] == (1, 28, 28)
    # fixed split: independent of any training seed, disjoint, same every call
    _, val2, _ = D.fashion_mnist_splits()
    assert torch.equal(val.images, val2.images)


def test_validation_split_is_fixed_and_disjoint(idx_files):
    d, _ = idx_files
    full = D.load_fashion_mnist(d, "train")
    full.images[:, 0, 0, 0] = torch.arange(len(full), dtype=torch.uint8)  # tag (mod 256)
    tags = full.images[:, 0, 0, :2].clone()
    tags[:, 1] = torch.arange(len(full)) // 256
    full.images[:, 0, 0, :2] = tags
    a_tr, a_val = D.split_validation(full, 50)
    _, b_val = D.split_validation(full, 50)
    assert torch.equal(a_val.images, b_val.images)
    ids = lambda s: {tuple(t) for t in s.images[:, 0, 0, :2].tolist()}  # noqa: E731
    assert not ids(a_tr) & ids(a_val) and len(ids(a_tr) | ids(a_val)) == 400


def test_image_folder_reader(tmp_path):
    for cls, colour in (("cat", (0, 0, 255)), ("dog", (255, 0, 0))):
        (tmp_path / cls).mkdir()
        for i in range(3):
            img = np.full((20 + i, 30, 3), colour, np.uint8)
            cv2.imwrite(str(tmp_path / cls / f"{i}.png"), img)
    cv2.imwrite(str(tmp_path / "dog" / "grey.jpg"), np.full((40, 40), 128, np.uint8))
    ds = D.load_image_folder(tmp_path, channels=3, size=16)
    assert ds.classes == ("cat", "dog")
    assert ds.images.shape == (7, 3, 16, 16)
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert ds.images[0, 0].float().mean() > 200  # BGR red -> RGB channel 0
    grey = D.load_image_folder(tmp_path, channels=1, size=8)
    assert grey.images.shape == (7, 1, 8, 8)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(D.DataError, match=r"broken\.png"):
        D.load_image_folder(tmp_path, channels=3, size=16)


def test_augment_is_seeded_and_shape_preserving():
    x = torch.randint(0, 255, (6, 1, 10, 10), dtype=torch.uint8)
    a = D.augment(x, torch.Generator().manual_seed(1))
    b = D.augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)


# -------------------------------------------------------------------------------- training
def _opts(tmp_path, name, **kw):
    base = dict(
        arch=TINY,
        out=tmp_path / f"{name}.safetensors",
        epochs=2,
        batch_size=32,
        lr=0.05,
        warmup_epochs=0.2,
        n_random=1,
        calib_images=64,
        report_random=1,
        progress=False,
        seed=3,
    )
    base.update(kw)
    return T.TrainOptions(**base)


def _sets(idx_files):
    d, _ = idx_files
    full = D.load_idx_pair(
        d / "train-images-idx3-ubyte.gz", d / "train-labels-idx1-ubyte.gz", ["h", "v", "none"]
    )
    test = D.load_idx_pair(d / "t10k-images-idx3-ubyte", d / "t10k-labels-idx1-ubyte", full.classes)
    tr, val = D.split_validation(full, 80)
    return tr, val, test


@pytest.mark.slow
def test_training_is_deterministic_and_resumable(idx_files, tmp_path, monkeypatch):
    tr, val, test = _sets(idx_files)
    summary = T.train(_opts(tmp_path, "a"), tr, val, test)
    a = load_file(str(tmp_path / "a.safetensors"))

    real_save = T.save_state
    calls = []

    def save_then_die(opts, *args, **kw):
        real_save(opts, *args, **kw)
        calls.append(1)
        raise KeyboardInterrupt  # the run dies right after its first epoch checkpoint

    monkeypatch.setattr(T, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        T.train(_opts(tmp_path, "b"), tr, val, test)
    assert not (tmp_path / "b.safetensors").exists()
    monkeypatch.setattr(T, "save_state", real_save)
    T.train(_opts(tmp_path, "b", resume=True), tr, val, test)
    b = load_file(str(tmp_path / "b.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k

    # log, summary, reported sub-networks with BN statistics, accuracies that learned something
    log = [
        json.loads(line) for line in (tmp_path / "b.safetensors.log.jsonl").read_text().splitlines()
    ]
    assert log[0]["event"] == "start" and log[-1]["event"] == "done"
    assert any(r["event"] == "epoch" and r["epoch"] == 2 for r in log)
    ck = load_checkpoint(tmp_path / "a.safetensors")
    assert len(summary["subnets"]) == 4 and len(ck.net.bn_stats) == 4
    lg = summary["subnets"][0]
    assert lg["id"] == TINY.space.largest().id and lg["test_accuracy"] > 0.5
    assert ck.metadata["training"]["subnets"][0]["test_accuracy"] == lg["test_accuracy"]


def test_progressive_shrinking_phases_restrict_sampling():
    space = TINY.space
    assert T.phase_space(space, "full") == {"ks_list": [7], "expand_list": [6], "depth_list": [4]}
    assert T.phase_space(space, "kernel") == {"expand_list": [6], "depth_list": [4]}
    assert T.phase_space(space, "depth") == {"expand_list": [6]}
    assert T.phase_space(space, "expand") == {}
    assert T.parse_phases("kernel:1,depth:2") == [("kernel", 1), ("depth", 2)]
    with pytest.raises(ValueError, match="bad phase 'width:2'"):
        T.parse_phases("width:2")
    with pytest.raises(ValueError, match="add up to 3"):
        T.TrainOptions(arch=TINY, out="x", epochs=2, phases=[("kernel", 1), ("expand", 2)])


@pytest.mark.slow
def test_progressive_shrinking_run_and_cli(idx_files, tmp_path):
    from dynofa_ros.supernet.train_cli import main

    d, _ = idx_files
    out = tmp_path / "cli.safetensors"
    rc = main(
        [
            "--out",
            str(out),
            "--idx",
            str(d / "train-images-idx3-ubyte.gz"),
            str(d / "train-labels-idx1-ubyte.gz"),
            "-",
            "-",
            "--labels",
            "h,v,none",
            "--val-size",
            "64",
            "--train-limit",
            "96",
            "--epochs",
            "3",
            "--phases",
            "kernel:1,depth:1,expand:1",
            "--batch-size",
            "32",
            "--report-random",
            "0",
            "--calib-images",
            "32",
            "--no-progress",
        ]
    )
    assert rc == 0
    ck = load_checkpoint(out)
    assert ck.labels == ("h", "v", "none") and ck.arch.num_classes == 3
    phases = [h["phase"] for h in ck.metadata["training"]["history"]]
    assert phases == ["kernel", "depth", "expand"]
    assert ck.metadata["training"]["command"].startswith("dynofa train --out")
