"""Super-network: per-sub-network BN statistics and in-place switching, static extraction, ONNX
export, and the per-layer description (OFA LUT keys, MACs, parameters)."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import torch
from torch import nn

from dynofa_ros.supernet.bnstats import calibrate
from dynofa_ros.supernet.config import SubnetConfig
from dynofa_ros.supernet.network import ElasticMobileNetV3, LayerSpec, build_supernet, preset


def _net(seed: int = 0) -> ElasticMobileNetV3:
    torch.manual_seed(seed)
    net = build_supernet("fmnist-small")
    with torch.no_grad():
        for m in net.bn_modules.values():
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.1)
    return net.eval()


def _batches(r: int, n: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(16, 1, r, r, generator=g) for _ in range(n)]


def _configs(net: ElasticMobileNetV3, n: int, seed: int = 0) -> list[SubnetConfig]:
    rng = random.Random(seed)
    return [net.space.largest(), net.space.smallest()] + [
        net.space.sample(rng) for _ in range(n - 2)
    ]


# ---------------------------------------------------------------------------------- BN / switch
def test_switch_a_b_a_is_bit_identical_and_copies_no_weight():
    net = _net()
    a, b = net.space.largest(), net.space.smallest()
    for cfg in (a, b):
        calibrate(net, cfg, _batches)
    x_a, x_b = torch.randn(4, 1, a.r, a.r), torch.randn(4, 1, b.r, b.r)
    ptrs = {k: v.data_ptr() for k, v in net.state_dict(keep_vars=True).items()}
    with torch.no_grad():
        net.set_active(a)
        first = net(x_a)
        net.set_active(b)
        out_b = net(x_b)
        net.set_active(a)
        again = net(x_a)
    assert torch.equal(first, again)
    assert {k: v.data_ptr() for k, v in net.state_dict(keep_vars=True).items()} == ptrs
    # the installed statistics are the stored tensors themselves (a reference, not a copy)
    bn = net.bn_modules["blocks.1.conv.depth_conv.bn.bn"]
    assert bn.installed is net.bn_stats[a.id]["blocks.1.conv.depth_conv.bn.bn"]
    assert out_b.shape == first.shape


def test_calibrated_statistics_are_used_and_differ_per_subnet():
    net = _net()
    a, b = net.space.largest(), net.space.smallest()
    x = torch.randn(4, 1, a.r, a.r)
    with torch.no_grad():
        net.set_active(a)
        shared = net(x)
    buffers = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    calibrate(net, a, _batches)
    calibrate(net, b, _batches)
    # calibration leaves the shared buffers alone
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in buffers.items())
    with torch.no_grad():
        net.set_active(a)
        own = net(x)
    assert not torch.allclose(shared, own)
    name = "first_conv.bn"
    assert not torch.equal(net.bn_stats[a.id][name][0], net.bn_stats[b.id][name][0])
    # statistics exist only for the layers the sub-network uses, at its channel counts
    assert set(net.bn_stats[b.id]) == set(net.bn_channels(b))
    for layer, (mean, var) in net.bn_stats[b.id].items():
        assert mean.shape == var.shape == (net.bn_channels(b)[layer],)


def test_calibration_matches_batch_statistics():
    """Stored mean / var of the first BN are the average batch statistics of its input."""
    net = _net()
    cfg = net.space.smallest()
    batches = _batches(cfg.r, n=2)
    stats = calibrate(net, cfg, batches)
    with torch.no_grad():
        feats = [net.first_conv.conv(x) for x in batches]
    mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var((0, 2, 3), unbiased=False) for f in feats]).mean(0)
    torch.testing.assert_close(stats["first_conv.bn"][0], mean)
    torch.testing.assert_close(stats["first_conv.bn"][1], var)


def test_require_bn_stats_and_validation_on_switch():
    net = _net()
    cfg = net.space.sample(random.Random(1))
    with pytest.raises(ValueError, match="no stored BN statistics"):
        net.set_active(cfg, require_bn_stats=True)
    bad = SubnetConfig(ks=[9] * 20, e=[6] * 20, d=[4] * 5, r=32)
    with pytest.raises(ValueError, match=r"'ks'\[0\] = 9"):
        net.set_active(bad)


# ---------------------------------------------------------------------------- extraction, ONNX
def test_extracted_static_network_equals_dynamic():
    net = _net()
    for i, cfg in enumerate(_configs(net, 8, seed=2)):
        if i % 2 == 0:
            calibrate(net, cfg, _batches)
        x = torch.randn(3, 1, cfg.r, cfg.r)
        static = net.extract(cfg)
        net.set_active(cfg)
        with torch.no_grad():
            dyn, stat = net(x), static(x)
        torch.testing.assert_close(stat, dyn, rtol=0, atol=1e-5)
        assert not any(
            isinstance(m, type(net.bn_modules["first_conv.bn"])) for m in static.modules()
        )
        assert sum(p.numel() for p in static.parameters()) == net.params(cfg)
    # the static copy owns its weights
    static = net.extract(net.space.largest())
    assert static.first_conv.conv.weight.data_ptr() != net.first_conv.conv.weight.data_ptr()


def test_onnx_export_matches_torch():
    ort = pytest.importorskip("onnxruntime")
    from dynofa_ros.supernet.export import export_onnx

    net = _net()
    for cfg in _configs(net, 3, seed=4):
        calibrate(net, cfg, _batches)
        data = export_onnx(net, cfg)
        import onnx

        model = onnx.load_from_string(data)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        x = torch.randn(2, 1, cfg.r, cfg.r)
        net.set_active(cfg)
        with torch.no_grad():
            ref = net(x).numpy()
        got = sess.run(None, {"input": x.numpy()})[0]
        assert np.abs(got - ref).max() <= 1e-4


# ------------------------------------------------------------------------- layer description
KEY_RE = re.compile(
    r"^expanded_conv-input:\d+x\d+x\d+-output:\d+x\d+x\d+-expand:\d+-kernel:[357]-stride:[12]"
    r"-idskip:[01]-se:[01]-hs:[01]$"
)


def test_layer_specs_follow_ofa_lut_keys():
    net = build_supernet("ofa-w1.0")
    specs = net.layer_specs(net.space.largest(r=224))
    kinds = [s.kind for s in specs]
    assert kinds[0] == "Conv" and kinds[-4:] == ["Conv_1", "AvgPool2D", "Conv_2", "Logits"]
    assert kinds.count("expanded_conv") == 21
    assert specs[0].key == "Conv-input:224x224x3-output:112x112x16"
    # once-for-all's mobile LUT names the first block exactly this way
    assert specs[1].key == (
        "expanded_conv-input:112x112x16-output:112x112x16-expand:16-kernel:3"
        "-stride:1-idskip:1-se:0-hs:0"
    )
    assert specs[2].key == (
        "expanded_conv-input:112x112x16-output:56x56x24-expand:96-kernel:7"
        "-stride:2-idskip:0-se:0-hs:0"
    )
    assert all(KEY_RE.match(s.key) for s in specs if s.kind == "expanded_conv")
    assert specs[-4].key == "Conv_1-input:7x7x160-output:7x7x960"
    assert specs[-1].key == "Logits-input:1x1x1280-output:1000"


def _hook_macs(module: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def conv_hook(m, inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * m.in_channels // m.groups * m.kernel_size[0] ** 2

    def lin_hook(m, inp, out):
        nonlocal total
        total += m.in_features * m.out_features

    hooks = [
        m.register_forward_hook(conv_hook) for m in module.modules() if isinstance(m, nn.Conv2d)
    ]
    hooks += [
        m.register_forward_hook(lin_hook) for m in module.modules() if isinstance(m, nn.Linear)
    ]
    with torch.no_grad():
        module(x)
    for h in hooks:
        h.remove()
    return total


@pytest.mark.parametrize("name", ["fmnist-small", "ofa-w1.2"])
def test_macs_and_params_match_the_extracted_network(name):
    net = build_supernet(name).eval()
    rng = random.Random(0)
    small_r = min(net.space.resolutions)
    for cfg in [net.space.largest(r=small_r), net.space.smallest(), net.space.sample(rng)]:
        static = net.extract(cfg)
        x = torch.randn(1, net.arch.in_channels, cfg.r, cfg.r)
        assert net.macs(cfg) == _hook_macs(static, x)
        assert net.params(cfg) == sum(p.numel() for p in static.parameters())
    assert net.macs(net.space.largest()) > net.macs(net.space.smallest())


def test_standalone_layers_sum_to_the_network():
    """Each layer built alone runs on its example input and gives its output shape; chaining the
    blocks' MACs reproduces the network's."""
    net = build_supernet("fmnist-small")
    cfg = net.space.sample(random.Random(3))
    specs = net.layer_specs(cfg)
    for spec in specs:
        mod = spec.build()
        with torch.no_grad():
            y = mod(spec.example_input())
        want = (
            (1, spec.output_shape[0])
            if spec.kind == "Logits"
            else (1, spec.output_shape[2], spec.output_shape[0], spec.output_shape[1])
        )
        assert tuple(y.shape) == want, spec.key
    assert sum(s.macs for s in specs) == net.macs(cfg)
    assert isinstance(specs[3], LayerSpec)


def test_preset_errors():
    with pytest.raises(ValueError, match="unknown super-network preset 'nope'"):
        preset("nope")
