"""The elastic ViT family: typed config, slicing equivalence, switching, ONNX export, checkpoints,
training, search plumbing and the engine, on a tiny randomly initialised ViT (no training data
beyond a few synthetic images)."""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from dynofa_ros.supernet.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from dynofa_ros.supernet.network import (
    PRESETS,
    ElasticMobileNetV3,
    architecture_from_dict,
    build_supernet,
)
from dynofa_ros.supernet.vit import ElasticViT, ViTArchitecture
from dynofa_ros.supernet.vit_config import ViTConfig, ViTSpace

TINY_SPACE = ViTSpace(
    depth_list=(1, 2, 3),
    heads_list=(1, 2),
    mlp_ratio_list=(1, 2),
    embed_list=(16, 24, 32),
    resolutions=(28,),
)
TINY = ViTArchitecture(name="tiny-vit", patch_size=7, head_dim=8, space=TINY_SPACE)


def tiny_net(seed: int = 0) -> ElasticViT:
    torch.manual_seed(seed)
    net = ElasticViT(TINY).eval()
    with torch.no_grad():  # biases and norms away from their defaults, so slicing errors show
        for name, p in net.named_parameters():
            if name.endswith("bias") or "ln" in name or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return net


def configs(n: int, seed: int = 0) -> list[ViTConfig]:
    rng = random.Random(seed)
    out = {c.id: c for c in (TINY_SPACE.largest(), TINY_SPACE.smallest(), TINY_SPACE.middle())}
    while len(out) < n:
        c = TINY_SPACE.sample(rng)
        out.setdefault(c.id, c)
    return list(out.values())


# ------------------------------------------------------------------------------------ config
def test_config_round_trip_and_stable_id() -> None:
    cfg = ViTConfig(depth=2, heads=[1, 2], mlp_ratio=[2, 1], embed=24, r=28)
    assert cfg.heads == (1, 2) and cfg.mlp_ratio == (2, 1)
    assert ViTConfig.from_json(cfg.to_json()) == cfg
    assert ViTConfig.from_dict({**cfg.to_dict(), "id": cfg.id}) == cfg
    assert cfg.id == ViTConfig(2, (1, 2), (2, 1), 24, 28).id
    assert len(cfg.id) == 10 and cfg.id != replace(cfg, embed=16).id
    assert str(cfg) == "r28 e24 d2 | h1m2/h2m1"
    assert TINY_SPACE.parse(cfg.to_json()) == cfg
    assert ViTSpace.from_dict(json.loads(json.dumps(TINY_SPACE.to_dict()))) == TINY_SPACE


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"depth": 2, "heads": [1], "mlp_ratio": [1, 1], "embed": 16, "r": 28}, "'heads'"),
        ({"depth": 0, "heads": [], "mlp_ratio": [], "embed": 16, "r": 28}, "'depth'"),
        ({"depth": 1, "heads": [1.5], "mlp_ratio": [1], "embed": 16, "r": 28}, "'heads[0]'"),
        ({"depth": 1, "heads": [1], "mlp_ratio": "2", "embed": 16, "r": 28}, "'mlp_ratio'"),
        ({"depth": 1, "heads": [1], "mlp_ratio": [1], "embed": True, "r": 28}, "'embed'"),
        ({"depth": 1, "heads": [1], "mlp_ratio": [1], "embed": 16}, "missing field(s) r"),
        ({"depth": 1, "heads": [1], "mlp_ratio": [1], "embed": 16, "r": 28, "ks": 3}, "ks"),
        (
            {"depth": 1, "heads": [1], "mlp_ratio": [1], "embed": 16, "r": 28, "id": "x"},
            "'id'",
        ),
    ],
)
def test_config_structure_errors_name_the_field(raw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ViTConfig.from_dict(raw)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (ViTConfig(4, (1,) * 4, (1,) * 4, 16, 28), r"'depth' = 4 .*allowed: \[1, 2, 3\]"),
        (ViTConfig(2, (1, 3), (1, 1), 16, 28), r"'heads'\[1\] = 3 .*allowed: \[1, 2\]"),
        (ViTConfig(1, (1,), (4,), 16, 28), r"'mlp_ratio'\[0\] = 4 .*allowed: \[1, 2\]"),
        (ViTConfig(1, (1,), (1,), 20, 28), r"'embed' = 20 .*allowed: \[16, 24, 32\]"),
        (ViTConfig(1, (1,), (1,), 16, 32), r"'r' = 32 .*allowed: \[28\]"),
    ],
)
def test_space_validation_names_field_value_and_allowed(cfg: ViTConfig, message: str) -> None:
    assert not TINY_SPACE.contains(cfg)
    with pytest.raises(ValueError, match=message):
        TINY_SPACE.validate(cfg)
    with pytest.raises(ValueError, match=message):
        tiny_net().set_active(cfg)


def test_architecture_errors_and_kind_dispatch() -> None:
    with pytest.raises(ValueError, match="'patch_size' = 5"):
        replace(TINY, patch_size=5)
    arch = architecture_from_dict(json.loads(json.dumps(TINY.to_dict())))
    assert arch == TINY
    assert isinstance(build_supernet(arch), ElasticViT)
    assert isinstance(build_supernet("fmnist-small"), ElasticMobileNetV3)
    assert isinstance(build_supernet("fmnist-vit-small"), ElasticViT)
    assert "kind" not in PRESETS["fmnist-small"].to_dict()  # old checkpoints stay readable
    with pytest.raises(ValueError, match="'kind' = 'rnn'"):
        architecture_from_dict({**TINY.to_dict(), "kind": "rnn"})


def test_mutation_crossover_and_sampling_stay_in_the_space() -> None:
    from dynofa_ros.search.evolution import config_space

    es = config_space(TINY_SPACE)
    rng = random.Random(3)
    seen_depths = set()
    for _ in range(200):
        a, b = es.sample(rng), es.sample(rng)
        for c in (es.mutate(a, rng, 0.5, 0.5), es.crossover(a, b, rng)):
            assert TINY_SPACE.contains(c)
            seen_depths.add(c.depth)
    assert seen_depths == set(TINY_SPACE.depth_list)
    assert es.fastest() == [TINY_SPACE.smallest()]
    assert es.mutate(a, rng, 0.0, 0.0) == a


# -------------------------------------------------------------------------- slicing and export
def test_extracted_subnetworks_match_the_elastic_network() -> None:
    net = tiny_net()
    x = torch.randn(3, 1, 28, 28)
    outputs = {}
    for cfg in configs(8):
        net.set_active(cfg)
        with torch.no_grad():
            elastic = net(x)
            static = net.extract(cfg)(x)
        torch.testing.assert_close(static, elastic, atol=2e-5, rtol=1e-5)
        outputs[cfg.id] = elastic
        assert net.active == cfg  # extraction leaves the active config alone
    # different sub-networks really compute different functions
    first, *others = outputs.values()
    assert all(not torch.allclose(first, o) for o in others)


def test_params_and_macs_match_the_extracted_module() -> None:
    net = tiny_net()
    for cfg in configs(6, seed=1):
        static = net.extract(cfg)
        assert net.params(cfg) == sum(p.numel() for p in static.parameters())
        # MACs: each layer's analytic count from the linear weights actually used
        tokens = (28 // TINY.patch_size) ** 2
        linear = sum(
            m.weight.numel() * tokens for m in static.modules() if isinstance(m, torch.nn.Linear)
        )
        attn = sum(2 * tokens * tokens * h * TINY.head_dim for h in cfg.heads)
        patch = static.embed.proj.weight.numel() * tokens
        head_fc = static.head.fc.weight.numel()
        assert net.macs(cfg) == linear - head_fc * tokens + head_fc + attn + patch


def test_switching_a_b_a_gives_identical_outputs() -> None:
    net = tiny_net()
    x = torch.randn(2, 1, 28, 28)
    a, b = TINY_SPACE.largest(), TINY_SPACE.smallest()
    with torch.no_grad():
        net.set_active(a)
        first = net(x).clone()
        net.set_active(b)
        middle = net(x).clone()
        net.set_active(a)
        again = net(x)
    assert torch.equal(first, again)
    assert not torch.allclose(first, middle)


def test_onnx_export_matches_pytorch() -> None:
    import onnx
    import onnxruntime as ort

    from dynofa_ros.supernet.export import export_onnx

    net = tiny_net()
    x = torch.randn(2, 1, 28, 28)
    for cfg in (TINY_SPACE.largest(), configs(4, seed=5)[3]):
        data = export_onnx(net, cfg)
        model = onnx.load_from_string(data)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        (out,) = sess.run(None, {"input": x.numpy()})
        net.set_active(cfg)
        with torch.no_grad():
            ref = net(x).numpy()
        assert out.shape == (2, 10)
        assert float(np.abs(out - ref).max()) <= 1e-4


# ------------------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip_keeps_kind_and_outputs(tmp_path: Path) -> None:
    net = tiny_net()
    path = tmp_path / "vit.safetensors"
    save_checkpoint(path, net, extra={"note": "tiny"})
    meta = read_metadata(path)
    assert meta["architecture"]["kind"] == "vit" and meta["bn_stats"] == {}
    ck = load_checkpoint(path)
    assert isinstance(ck.net, ElasticViT) and ck.arch == TINY
    x = torch.randn(2, 1, 28, 28)
    for cfg in configs(3):
        net.set_active(cfg)
        ck.net.set_active(cfg)
        with torch.no_grad():
            assert torch.equal(net(x), ck.net(x))


def test_no_batchnorm_machinery_for_the_vit() -> None:
    from dynofa_ros.supernet.bnstats import calibrate

    net = tiny_net()
    cfg = TINY_SPACE.smallest()
    assert not net.uses_batchnorm and ElasticMobileNetV3.uses_batchnorm
    assert calibrate(net, cfg, [torch.randn(2, 1, 28, 28)]) == {}
    assert net.bn_stats == {} and not net.has_bn_stats(cfg) and net.bn_channels(cfg) == {}
    net.set_active(cfg, require_bn_stats=True)  # nothing to require
    assert net.active == cfg


# --------------------------------------------------------------------------------- training
def _synthetic_set(n: int, seed: int = 0):
    from dynofa_ros.supernet.data import FASHION_MNIST_LABELS, ImageSet

    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 60, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    for i, y in enumerate(labels.tolist()):  # a bright bar whose row gives the class
        images[i, 0, 2 + 2 * y : 4 + 2 * y, 4:24] = 250
    return ImageSet(images, labels, FASHION_MNIST_LABELS)


def test_sandwich_training_writes_a_vit_checkpoint_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dynofa_ros.supernet import train as T
    from dynofa_ros.supernet.checkpoint import load_tensors

    data = _synthetic_set(96)

    def opts(name: str, **kw: object) -> T.TrainOptions:
        return T.TrainOptions(
            arch=TINY,
            out=tmp_path / f"{name}.safetensors",
            epochs=2,
            batch_size=32,
            lr=3e-3,
            optimizer="adamw",
            weight_decay=0.01,
            warmup_epochs=0.5,
            report_random=1,
            progress=False,
            **kw,  # type: ignore[arg-type]
        )

    summary = T.train(opts("a"), data, data, data)
    ck = load_checkpoint(tmp_path / "a.safetensors")
    assert isinstance(ck.net, ElasticViT)
    subnets = ck.metadata["training"]["subnets"]
    assert [s["config"] for s in subnets[:3]] == [
        TINY_SPACE.largest().to_dict(),
        TINY_SPACE.smallest().to_dict(),
        TINY_SPACE.middle().to_dict(),
    ]
    assert len(subnets) == 4 and all("test_accuracy" in s for s in subnets)
    assert "val_acc_largest" in summary["history"][-1]

    # a run that dies after its first epoch and is resumed ends with the same weights: the
    # AdamW moments and step count travel in the state file
    real_save = T.save_state

    def save_then_die(*args: object, **kw: object) -> None:
        real_save(*args, **kw)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        T.train(opts("b"), data, data, data)
    monkeypatch.setattr(T, "save_state", real_save)
    state = load_tensors(tmp_path / "b.safetensors.state.safetensors")
    assert any(k.startswith("optim/exp_avg_sq/") for k in state)
    T.train(opts("b", resume=True), data, data, data)
    a, b = load_tensors(tmp_path / "a.safetensors"), load_tensors(tmp_path / "b.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_progressive_shrinking_phases_are_refused_for_the_vit(tmp_path: Path) -> None:
    from dynofa_ros.supernet.train import TrainOptions

    with pytest.raises(ValueError, match="MobileNetV3 space only"):
        TrainOptions(arch=TINY, out=tmp_path / "x", epochs=2, phases=[("full", 1), ("depth", 1)])
    with pytest.raises(ValueError, match="--optimizer 'adam'"):
        TrainOptions(arch=TINY, out=tmp_path / "x", optimizer="adam")
