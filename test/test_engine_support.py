"""Shared fixtures of the engine tests (built once per test process, reused by every
``test_engine_*`` module): a tiny three-member family of the shipped embedded checkpoint with its
own BN statistics file, the engines built on it, and a small test image set.

The family: the smallest sub-network (r=24) and the largest (r=32), whose BN statistics the
checkpoint stores, and one r=28 sub-network the checkpoint does not know, calibrated here on a
few Fashion-MNIST images (random images when the dataset is not installed), so its statistics
exist only in the family's BN file.
"""

from __future__ import annotations

import atexit
import functools
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "models" / "fmnist_mbv3_small.safetensors"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
STORED_WORKLOAD = {
    "name": "stored",
    "macs": 1234567,
    "layers": 42,
    "params": 7654,
    "activations": None,
    "runtime": "torch-dynamic",
}


def image_set(n: int = 12) -> np.ndarray:
    """``(n, 28, 28)`` uint8: the first Fashion-MNIST test images, or seeded random blobs."""
    files = FASHION_MNIST / "t10k-images-idx3-ubyte.gz"
    if files.is_file():
        from dynofa_ros.supernet.data import read_idx

        return np.ascontiguousarray(read_idx(files)[:n])
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    out = []
    for _ in range(n):
        cy, cx, s = rng.uniform(8, 20), rng.uniform(8, 20), rng.uniform(3, 9)
        blob = 255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        out.append(np.clip(blob + rng.normal(0, 10, blob.shape), 0, 255).astype(np.uint8))
    return np.stack(out)


@functools.cache
def tiny_family() -> tuple[Path, Any]:
    """(family JSON path, the reference super-network holding every member's statistics)."""
    import torch

    from dynofa_ros.family import Family, FamilyMember, sha256_file
    from dynofa_ros.search.build import save_bn_statistics
    from dynofa_ros.supernet.bnstats import calibrate
    from dynofa_ros.supernet.checkpoint import load_checkpoint

    folder = Path(tempfile.mkdtemp(prefix="dynofa-engine-test-"))
    atexit.register(shutil.rmtree, folder, True)
    net = load_checkpoint(CHECKPOINT).net
    space = net.space
    extra = space.sample(random.Random(5), resolutions=[28])
    assert extra.id not in net.bn_stats
    imgs = torch.from_numpy(image_set(64)).float().div(255.0).unsqueeze(1)
    mean, std = net.arch.mean[0], net.arch.std[0]
    calibrate(net, extra, [(imgs - mean) / std])
    cfgs = [space.smallest(), extra, space.largest()]
    ids = [c.id for c in cfgs]
    save_bn_statistics(folder / "tiny.bn.safetensors", net, ids)
    members = tuple(
        FamilyMember(
            id=c.id,
            config=c.to_dict(),
            accuracy=acc,
            macs=int(net.macs(c)),
            params=int(net.params(c)),
            workload=STORED_WORKLOAD if i == 1 else None,
        )
        for i, (c, acc) in enumerate(zip(cfgs, (0.80, 0.85, 0.90), strict=True))
    )
    fam = Family(
        name="tiny",
        processor="cpu",
        supernet={
            "checkpoint": CHECKPOINT.name,
            "sha256": sha256_file(CHECKPOINT),
            "kind": net.arch.name,
        },
        members=members,
        bn_statistics="tiny.bn.safetensors",
    )
    fam.save(folder / "tiny.family.json")
    net.eval()
    return folder / "tiny.family.json", net


@functools.cache
def engine(backend: str) -> Any:
    """An engine of the tiny family on ``backend`` with 1 and 2 CPU threads prepared (shared by
    the tests: each sets the binding it needs)."""
    from dynofa_ros.engine import Engine

    path, _ = tiny_family()
    return Engine.load(CHECKPOINT, path, backend=backend, threads=(1, 2), progress=False)


def reference_logits(member_id: str, x: np.ndarray) -> np.ndarray:
    """Eager PyTorch logits of the reference super-network for preprocessed input ``x``."""
    import torch

    _, net = tiny_family()
    cfg = net.bn_stats_configs[member_id]
    net.set_active(cfg)
    with torch.inference_mode():
        return net(torch.from_numpy(x)).numpy()
