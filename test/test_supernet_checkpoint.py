"""Checkpoints: round trip with BN statistics; missing / extra / mis-shaped keys, corrupt and
truncated files, foreign files each fail with a message naming the problem."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from dynofa_ros.errors import DynofaError
from dynofa_ros.supernet.bnstats import calibrate
from dynofa_ros.supernet.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from dynofa_ros.supernet.network import build_supernet


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    net = build_supernet("fmnist-small").eval()
    lg, sm = net.space.largest(), net.space.smallest()
    for cfg in (lg, sm):
        calibrate(net, cfg, lambda r: [torch.randn(8, 1, r, r) for _ in range(2)])
    path = tmp_path_factory.mktemp("ckpt") / "net.safetensors"
    labels = [f"c{i}" for i in range(10)]
    save_checkpoint(path, net, labels=labels, extra={"note": "test"})
    return net, path


def _rewrite(src, dst, edit):
    tensors = load_file(str(src))
    from safetensors import safe_open

    with safe_open(str(src), "pt") as fh:
        meta = fh.metadata()
    edit(tensors)
    save_file(tensors, str(dst), metadata=meta)


def test_round_trip_keeps_weights_statistics_and_metadata(saved):
    net, path = saved
    ck = load_checkpoint(path)
    assert ck.labels == tuple(f"c{i}" for i in range(10))
    assert ck.metadata["note"] == "test"
    assert ck.arch == net.arch
    assert set(ck.net.bn_stats) == set(net.bn_stats)
    x = {r: torch.randn(2, 1, r, r) for r in net.space.resolutions}
    for sid, cfg in net.bn_stats_configs.items():
        net.set_active(cfg)
        ck.net.set_active(cfg)
        assert ck.net.has_bn_stats(cfg)
        with torch.no_grad():
            assert torch.equal(net(x[cfg.r]), ck.net(x[cfg.r])), sid
    meta = read_metadata(path)
    assert meta["format"] == "dynofa-supernet" and meta["version"] == 1


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            lambda t: t.pop("blocks.7.conv.point_linear.conv.conv.weight"),
            r"missing key 'blocks\.7\.conv\.point_linear\.conv\.conv\.weight'",
        ),
        (
            lambda t: t.__setitem__("blocks.7.extra.weight", torch.zeros(3)),
            r"unexpected key 'blocks\.7\.extra\.weight'",
        ),
        (
            lambda t: t.__setitem__("classifier.linear.weight", torch.zeros(10, 7)),
            r"key 'classifier\.linear\.weight' has shape \(10, 7\), "
            r"the network expects \(10, 512\)",
        ),
    ],
    ids=["missing", "extra", "misshaped"],
)
def test_bad_keys_are_named(saved, tmp_path, edit, message):
    _, path = saved
    bad = tmp_path / "bad.safetensors"
    _rewrite(path, bad, edit)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(bad)


def test_bad_bn_statistics_are_named(saved, tmp_path):
    _, path = saved
    net, _ = saved
    sid = net.space.smallest().id
    bad = tmp_path / "bad_bn.safetensors"
    _rewrite(
        path,
        bad,
        lambda t: t.__setitem__(
            f"bn_stats/{sid}/blocks.1.conv.depth_conv.bn.bn.running_mean", torch.zeros(5)
        ),
    )
    with pytest.raises(CheckpointError, match=rf"{sid}/blocks\.1\.conv\.depth_conv\.bn\.bn"):
        load_checkpoint(bad)


def test_truncated_file_fails_clearly(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    for cut in (4, 200, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"cut\d+\.safetensors: .*(truncated|short)"):
            load_checkpoint(bad)


def test_corrupt_file_fails_clearly(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[8:40] = b"#" * 32  # header no longer JSON
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 1000)
    with pytest.raises(CheckpointError, match=r"junk\.safetensors"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match=r"no such file|cannot read"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_foreign_safetensors_and_wrong_version(saved, tmp_path):
    _, path = saved
    plain = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="not a dynofa super-network"):
        load_checkpoint(plain)
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        meta = json.loads(fh.metadata()["dynofa"])
    meta["version"] = 99
    future = tmp_path / "future.safetensors"
    save_file(tensors, str(future), metadata={"dynofa": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="version 99 is not supported"):
        load_checkpoint(future)
    assert issubclass(CheckpointError, DynofaError)
