"""Accuracy predictor: once-for-all's state-dict layouts load and predict the same; fitting;
rank correlations; file round trip and bad input."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from dynofa_ros.search.errors import PredictorError
from dynofa_ros.search.predictor import (
    OFA_RESOLUTIONS,
    AccuracyPredictor,
    ArchEncoder,
    fit_predictor,
    kendall_tau,
    load_ofa_predictor,
    load_predictor,
    save_predictor,
    spearman,
)
from dynofa_ros.supernet.config import SearchSpace, SubnetConfig


@pytest.fixture(scope="module")
def ofa_space() -> SearchSpace:
    return SearchSpace()


def _perturb(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + 0.05)


def _ofa_modules():
    from dynofa_ros.torchvision_compat import import_torchvision

    import_torchvision()
    acc = pytest.importorskip("ofa.nas.accuracy_predictor")
    return acc


def test_ofa_nas_predictor_state_dict_loads_and_predicts_the_same(ofa_space, tmp_path) -> None:
    acc = _ofa_modules()
    encoder = acc.MobileNetArchEncoder(
        image_size_list=list(OFA_RESOLUTIONS),
        ks_list=[3, 5, 7],
        expand_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )
    theirs = acc.AccuracyPredictor(encoder, hidden_size=400, n_layers=3, device="cpu")
    _perturb(theirs, 1)
    theirs.base_acc.data.fill_(0.77)
    path = tmp_path / "acc_predictor.pth"
    torch.save({"state_dict": theirs.state_dict()}, path)

    ours = load_ofa_predictor(path)
    assert ours.encoder.layout == "ofa-nas" and ours.encoder.n_dim == encoder.n_dim == 145
    assert list(ours.state_dict()) == list(theirs.state_dict())
    rng = random.Random(0)
    cfgs = [ofa_space.sample(rng) for _ in range(20)]
    archs = [{**ofa_space.expand_inactive(c, rng), "image_size": c.r} for c in cfgs]
    for c, a in zip(cfgs, archs, strict=True):
        a.pop("r")
        assert np.array_equal(ours.encoder.encode(c), encoder.arch2feature(a).astype(np.float32))
    with torch.no_grad():
        expected = theirs.predict_acc(archs).numpy()
    got = ours.predict(cfgs)
    assert np.allclose(got, expected, atol=1e-5)
    assert np.ptp(got) > 1e-3  # the check can fail: predictions differ between configs


def test_ofa_tutorial_predictor_weights_load_into_the_same_class(ofa_space, tmp_path) -> None:
    """The published acc_predictor.pth is the tutorial's plain Sequential (128 inputs)."""
    import importlib.util
    from pathlib import Path

    _ofa_modules()
    import ofa

    # load the tutorial module alone: its package __init__ needs gdown (downloads), not installed
    spec = importlib.util.spec_from_file_location(
        "ofa_tutorial_accuracy_predictor",
        Path(ofa.__file__).parent / "tutorial" / "accuracy_predictor.py",
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    TutorialPredictor = module.AccuracyPredictor

    theirs = TutorialPredictor(pretrained=False, device="cpu")
    _perturb(theirs.model, 2)
    path = tmp_path / "acc_predictor.pth"
    torch.save(theirs.model.state_dict(), path)
    ours = load_ofa_predictor(path)
    assert isinstance(ours, AccuracyPredictor)
    assert ours.encoder.layout == "ofa-tutorial" and ours.encoder.n_dim == 128
    rng = random.Random(1)
    cfgs = []
    while len(cfgs) < 20:
        c = ofa_space.sample(rng)
        cfgs.append(SubnetConfig(ks=c.ks, e=c.e, d=c.d, r=rng.choice(range(128, 225, 16))))
    population = [{"ks": list(c.ks), "e": list(c.e), "d": list(c.d), "r": [c.r]} for c in cfgs]
    with torch.no_grad():
        expected = theirs.predict_accuracy(population).squeeze(-1).numpy()
    assert np.allclose(ours.predict(cfgs), expected, atol=1e-5)


def test_mismatched_state_dict_names_the_key(tmp_path) -> None:
    pred = AccuracyPredictor(ArchEncoder())
    state = pred.state_dict()
    state["layers.0.0.weight"] = torch.zeros(400, 99)
    with pytest.raises(PredictorError, match=r"'layers.0.0.weight' has shape \(400, 99\)"):
        pred.load_ofa_state_dict(state)
    bad = tmp_path / "bad.pth"
    torch.save({"layers.9.weight": torch.zeros(1)}, bad)
    with pytest.raises(PredictorError, match="not a once-for-all AccuracyPredictor"):
        load_ofa_predictor(bad)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(PredictorError, match="not a readable PyTorch state dict"):
        load_ofa_predictor(tmp_path / "junk.pth")
    with pytest.raises(PredictorError, match="resolution 130 is not one the predictor encodes"):
        pred.encoder.encode({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 130})


def test_rank_correlations() -> None:
    x = [1, 2, 3, 4, 5]
    assert spearman(x, [10, 20, 30, 40, 50]) == pytest.approx(1.0)
    assert kendall_tau(x, [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    # one swapped pair of 5: Kendall (9 - 1) / 10; Spearman 1 - 6*2/(5*24)
    y = [1, 3, 2, 4, 5]
    assert kendall_tau(x, y) == pytest.approx(0.8)
    assert spearman(x, y) == pytest.approx(0.9)
    # ties: average ranks
    assert spearman([1, 1, 2], [1, 1, 2]) == pytest.approx(1.0)


def test_fit_ranks_held_out_subnets_and_round_trips(tmp_path) -> None:
    space = SearchSpace(resolutions=(24, 28, 32))
    rng = random.Random(0)
    cfgs = [space.sample(rng) for _ in range(160)]

    def truth(c: SubnetConfig) -> float:  # a smooth accuracy-like function of the architecture
        return 0.80 + 0.002 * sum(c.e) / 3 + 0.001 * sum(c.ks) / 3 + 0.01 * (c.r - 24) / 8

    noise = np.random.default_rng(0).normal(0.0, 0.002, len(cfgs))  # measurement noise
    accs = [truth(c) + n for c, n in zip(cfgs, noise, strict=True)]
    pred, report = fit_predictor(cfgs, accs, ArchEncoder.for_space(space), epochs=150, seed=0)
    assert report.n_test == 32 and report.test_spearman > 0.85 and report.test_kendall > 0.65
    assert spearman(pred.predict(cfgs), [truth(c) for c in cfgs]) > 0.95
    save_predictor(tmp_path / "p.safetensors", pred, {"report": report.to_dict()})
    back, meta = load_predictor(tmp_path / "p.safetensors")
    assert meta["report"]["n_test"] == 32
    assert np.allclose(back.predict(cfgs[:10]), pred.predict(cfgs[:10]))
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(PredictorError, match=r"corrupt predictor file|not a dynofa predictor"):
        load_predictor(tmp_path / "bad.safetensors")
    with pytest.raises(PredictorError, match="at least 10"):
        fit_predictor(cfgs[:5], accs[:5], ArchEncoder.for_space(space))
