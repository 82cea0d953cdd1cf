"""The simulated board's cost of a ViT: every kernel of a transformer layer is counted (issue 10).

A transformer layer launches 13 kernels whose MACs add up to the layer's; depth moves the
simulated GPU latency through launches and host dispatch, width / heads / MLP ratio through the
device time. The CNN's workloads are those its shipped simulated families were searched with, and
the shipped ViT simulated families carry the workloads and latencies of this model."""

from __future__ import annotations

import pytest

from dynofa_ros.family import load_family
from dynofa_ros.platform.sim import NXModel, reference_latency_ms
from dynofa_ros.platform.workload import (
    KERNELS_PER_WEIGHT_LAYER,
    VIT_KINDS,
    Workload,
    count_weight_layers,
    transformer_layer_kernels,
    vit_layer_kernels,
    workload_from_layer_specs,
)
from dynofa_ros.resources import models_dir
from dynofa_ros.supernet.checkpoint import read_metadata
from dynofa_ros.supernet.network import architecture_from_dict, build_supernet
from dynofa_ros.supernet.vit import VIT_PRESETS, ElasticViT
from dynofa_ros.supernet.vit_config import ViTConfig, layer_macs

RUNTIME = "torch-dynamic"  # what the shipped simulated families were searched with


@pytest.fixture(scope="module")
def vit() -> ElasticViT:
    return ElasticViT(VIT_PRESETS["fmnist-vit-small"])


def _cfg(depth: int, embed: int, heads: int, ratio: int) -> ViTConfig:
    return ViTConfig(
        depth=depth, heads=(heads,) * depth, mlp_ratio=(ratio,) * depth, embed=embed, r=28
    )


def _workload(net: object, cfg: object) -> Workload:
    return workload_from_layer_specs(cfg.id, net.layer_specs(cfg), runtime=RUNTIME)  # type: ignore[attr-defined]


def test_a_transformer_layer_is_its_thirteen_kernels() -> None:
    ks = transformer_layer_kernels(tokens=16, embed=96, heads=3, head_dim=32, hidden=288)
    assert [k.op for k in ks] == [
        "layernorm1", "qkv_gemm", "scores_bmm", "softmax", "context_bmm", "merge_heads_copy",
        "out_proj_gemm", "residual_add1", "layernorm2", "fc1_gemm", "gelu", "fc2_gemm",
        "residual_add2",
    ]  # fmt: skip
    assert sum(k.macs for k in ks) == layer_macs(16, 96, 96, 288)
    by_op = {k.op: k for k in ks}
    assert by_op["softmax"].elements == 2 * 3 * 16 * 16  # scores of every head, in and out
    assert by_op["gelu"].elements == 2 * 16 * 288 and by_op["gelu"].macs == 0
    assert NXModel().kernels_per_layer == KERNELS_PER_WEIGHT_LAYER


def test_kernels_add_up_to_the_network(vit: ElasticViT) -> None:
    for cfg in (vit.space.smallest(), vit.space.largest(), _cfg(4, 96, 3, 2)):
        specs = vit.layer_specs(cfg)
        assert {s.kind for s in specs} == set(VIT_KINDS)
        kernels = [k for s in specs for k in vit_layer_kernels(s)]
        assert all(sum(k.macs for k in vit_layer_kernels(s)) == s.macs for s in specs)
        assert len(kernels) == 2 + 13 * cfg.depth + 3
        w = _workload(vit, cfg)
        assert w.macs == vit.macs(cfg) == sum(k.macs for k in kernels)
        assert w.params == vit.params(cfg)
        assert w.activations == sum(k.elements for k in kernels)
        assert w.layers == count_weight_layers(specs) == round(len(kernels) / 3)
    with pytest.raises(ValueError, match="not a ViT layer"):
        vit_layer_kernels(type("Spec", (), {"kind": "expanded_conv"})())


def test_depth_moves_gpu_latency_and_width_moves_device_time(vit: ElasticViT) -> None:
    nx = NXModel()
    top_gpu, cpu = nx.gpu_frequencies_khz[-1], nx.reference_cpu_khz

    def gpu(cfg: ViTConfig, khz: int = top_gpu) -> tuple[float, float]:
        parts = nx.gpu_latency(_workload(vit, cfg), khz, cpu)
        return parts.total_ms, parts.device_ms

    by_depth = [gpu(_cfg(d, 64, 2, 2))[0] for d in (3, 4, 5, 6)]
    assert by_depth == sorted(by_depth) and by_depth[-1] / by_depth[0] > 1.3
    # width, heads and MLP ratio: more device work (hidden behind host dispatch at these sizes)
    devices = [gpu(_cfg(6, e, h, m))[1] for e, h, m in ((64, 2, 2), (96, 3, 3), (128, 4, 4))]
    assert devices == sorted(devices) and devices[-1] > 2 * devices[0]
    low = nx.gpu_frequencies_khz[0]
    assert gpu(_cfg(6, 128, 4, 4), low)[0] > gpu(_cfg(6, 64, 2, 2), low)[0]
    # on the NX CPU compute dominates: width matters there
    small, large = (
        reference_latency_ms(_workload(vit, c), "cpu")
        for c in (_cfg(6, 64, 2, 2), _cfg(6, 128, 4, 4))
    )
    assert large > 2 * small


@pytest.mark.parametrize("stem", ["fmnist_mbv3_small", "fmnist_vit_small"])
@pytest.mark.parametrize("processor", ["cuda", "cpu"])
def test_shipped_sim_families_carry_this_cost_model(stem: str, processor: str) -> None:
    """The CNN's workloads did not change with the ViT's kernel model; the ViT families were
    searched with it (their latencies are the board's noise-free latency of these workloads)."""
    ckpt = models_dir() / f"{stem}.safetensors"
    net = build_supernet(architecture_from_dict(read_metadata(ckpt)["architecture"]))
    fam = load_family(models_dir() / f"{stem}.sim-nx-{processor}.family.json")
    for m in fam.members:
        cfg = net.space.parse(m.config)
        w = _workload(net, cfg)
        assert m.workload == w.to_dict(), m.id
        rec = next(r for r in m.latency if r.processor == processor)
        expected = reference_latency_ms(w, processor, rec.frequency_khz, rec.threads or None)
        assert rec.median_ms == pytest.approx(expected, rel=1e-9), m.id
    if stem == "fmnist_vit_small" and processor == "cuda":
        ms = [m.latency_ms("cuda") for m in fam.members]
        assert max(ms) / min(ms) > 1.3  # 1.1x when a transformer layer was one weight layer
