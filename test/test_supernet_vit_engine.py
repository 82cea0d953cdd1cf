"""The engine on the ViT family: a tiny randomly initialised ViT checkpoint and a hand-made family
file (no BN statistics file: the ViT has none) load, every member is prepared per backend, the
switch changes the function computed, and each frame matches the elastic network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_supernet_vit import TINY_SPACE, configs, tiny_net

from dynofa_ros.engine import Engine
from dynofa_ros.engine.preprocess import array_view
from dynofa_ros.family import Family, FamilyMember, LatencyRecord, load_family, sha256_file
from dynofa_ros.supernet.checkpoint import save_checkpoint
from dynofa_ros.supernet.data import FASHION_MNIST_LABELS


@pytest.fixture(scope="module")
def vit_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("vit-engine")
    net = tiny_net(seed=1)
    ckpt = folder / "tiny_vit.safetensors"
    save_checkpoint(ckpt, net, labels=FASHION_MNIST_LABELS)
    cfgs = [TINY_SPACE.smallest(), configs(4, seed=2)[3], TINY_SPACE.largest()]
    members = tuple(
        FamilyMember(
            id=c.id,
            config=c.to_dict(),
            accuracy=acc,
            macs=net.macs(c),
            params=net.params(c),
            latency=(LatencyRecord("cpu", "onnxruntime", 1, 0, ms),),
        )
        for c, acc, ms in zip(cfgs, (0.7, 0.8, 0.9), (0.1, 0.2, 0.3), strict=True)
    )
    fam = Family(
        name="tiny_vit.cpu",
        processor="cpu",
        supernet={"checkpoint": ckpt.name, "sha256": sha256_file(ckpt), "kind": net.arch.name},
        members=members,
    )
    path = folder / "tiny_vit.cpu.family.json"
    fam.save(path)
    return ckpt, path


@pytest.mark.parametrize("backend", ["onnxruntime", "torch-static", "torch-dynamic"])
def test_engine_loads_and_switches_vit_members(
    vit_files: tuple[Path, Path], backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt, fam_path = vit_files
    fam = load_family(fam_path)
    assert fam.bn_statistics is None
    eng = Engine.load(ckpt, fam_path, backend=backend, threads=(1,), progress=False)
    try:
        assert "BN statistics" not in caplog.text  # nothing to warn about for a ViT
        assert eng.members == fam.ids
        assert eng.active[0] == fam.ids[-1]  # the most accurate member first
        ref = tiny_net(seed=1)
        img = np.random.default_rng(0).integers(0, 255, (40, 30), dtype=np.uint8)
        tops = {}
        for mid in [*eng.members, eng.members[0]]:  # ..., then back to the first: A -> B -> A
            eng.switch(mid, "cpu", 1)
            res = eng.infer_array(img)
            assert res.member_id == mid and res.resolution == 28
            cfg = eng.config(mid)
            assert cfg == TINY_SPACE.parse(fam.member(mid).config)
            x = eng.preprocess(array_view(img))
            ref.set_active(cfg)
            with torch.no_grad():
                want = ref(torch.from_numpy(x)).numpy()[0]
            np.testing.assert_allclose(np.asarray(res.logits), want, atol=1e-4)
            tops.setdefault(mid, []).append(np.asarray(res.logits))
        first = eng.members[0]
        np.testing.assert_array_equal(tops[first][0], tops[first][1])
        assert len({tuple(np.round(v[0], 5)) for v in tops.values()}) == 3
    finally:
        eng.close()
