"""OFA compatibility: a once-for-all OFAMobileNetV3 state dict imports (``dynofa import-ofa``) and
every sub-network gives the same logits as the ``ofa`` package on the same weights."""

from __future__ import annotations

import random

import pytest
import torch

from dynofa_ros.supernet.checkpoint import CheckpointError, load_checkpoint
from dynofa_ros.supernet.config import SubnetConfig
from dynofa_ros.supernet.import_cli import main as import_main

N_SUBNETS = 20
TOL = 1e-4


@pytest.fixture(scope="module")
def ofa_cls():
    from dynofa_ros.torchvision_compat import import_torchvision

    import_torchvision()
    ofa_nets = pytest.importorskip("ofa.imagenet_classification.elastic_nn.networks")
    return ofa_nets.OFAMobileNetV3


def _randomised_ofa(ofa_cls, width: float, seed: int):
    torch.manual_seed(seed)
    net = ofa_cls(
        width_mult=width, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_mean"):
                t.normal_(0.0, 0.3)  # away from identity so a wrong BN slice shows
            elif name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif name.endswith("_matrix"):
                t.add_(0.2 * torch.randn_like(t))  # kernel transforms that matter
            elif name.endswith("bn.weight") or name.endswith("bn.bn.weight"):
                t.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                t.normal_(0.0, 0.2)
            elif name.endswith("weight") and t.ndim == 4:
                fan_in = t[0].numel()
                t.normal_(0.0, (2.0 / fan_in) ** 0.5)
    return net.eval()


@pytest.mark.slow
@pytest.mark.parametrize("width,wrap", [(1.0, True), (1.2, False)])
def test_imported_network_matches_ofa_on_random_subnets(ofa_cls, tmp_path, width, wrap):
    ofa = _randomised_ofa(ofa_cls, width, seed=int(width * 10))
    state = ofa.state_dict()
    if wrap:  # the released checkpoints: {"state_dict": ...}, older MBConv name
        state = {
            "state_dict": {
                k.replace(".conv.", ".mobile_inverted_conv.", 1)
                if k.startswith("blocks.")
                else k: v
                for k, v in state.items()
            }
        }
    src, dst = tmp_path / "ofa.pth", tmp_path / "ofa.safetensors"
    torch.save(state, src)
    assert import_main([str(src), str(dst)]) == 0
    ckpt = load_checkpoint(dst)
    net = ckpt.net.eval()
    assert net.arch.name == f"ofa-w{width}"

    rng = random.Random(width)
    cfgs = [net.space.largest(r=128), net.space.smallest(r=128)]
    while len(cfgs) < N_SUBNETS:
        c = net.space.sample(rng)
        cfgs.append(SubnetConfig(ks=c.ks, e=c.e, d=c.d, r=rng.choice((128, 160))))
    assert len({c.id for c in cfgs}) == N_SUBNETS
    worst = 0.0
    torch.manual_seed(1)
    with torch.no_grad():
        for cfg in cfgs:
            full = net.space.expand_inactive(cfg, rng)  # OFA gets arbitrary inactive values
            ofa.set_active_subnet(ks=full["ks"], e=full["e"], d=full["d"])
            net.set_active(cfg)
            x = torch.randn(2, 3, cfg.r, cfg.r)
            ref, got = ofa(x), net(x)
            assert ref.abs().max() > 0.5  # logits that a wrong slice would change
            worst = max(worst, float((ref - got).abs().max()))
    assert worst <= TOL, f"max |Δlogit| {worst:.3g} over {N_SUBNETS} sub-networks"


def test_kernel_transformation_matters(ofa_cls):
    """Sanity for the test above: with a 7→5 matrix that is not the identity, a k5 sub-network
    differs from the plain centre crop (so the comparison would catch a missing transform)."""
    from dynofa_ros.supernet.ops import DynamicSeparableConv2d

    op = DynamicSeparableConv2d(8, (3, 5, 7))
    with torch.no_grad():
        getattr(op, "7to5_matrix").add_(0.3 * torch.randn(25, 25))
    w5 = op.active_weight(8, 5)
    assert not torch.allclose(w5, op.conv.weight[:, :, 1:6, 1:6])


def test_import_rejects_a_state_dict_with_a_missing_key(ofa_cls, tmp_path):
    ofa = ofa_cls(
        width_mult=1.0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    state = ofa.state_dict()
    del state["blocks.5.conv.depth_conv.se.fc.reduce.weight"]
    src = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, src)
    with pytest.raises(
        CheckpointError, match=r"blocks\.5\.conv\.depth_conv\.se\.fc\.reduce\.weight"
    ):
        import_main([str(src), str(tmp_path / "out.safetensors")])
    assert not (tmp_path / "out.safetensors").exists()


def test_import_rejects_a_pickle_that_is_not_a_state_dict(tmp_path):
    src = tmp_path / "junk.pth"
    src.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match=r"junk\.pth"):
        import_main([str(src), str(tmp_path / "out.safetensors")])
