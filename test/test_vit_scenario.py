"""The CNN and the ViT under one manager (issue 10): the bundled ``cnn_vit`` scenario gives each
model its own super-network through the models' ``checkpoint`` / ``family`` fields, validated;
a short in-process replay of it decides for both models and runs each on its own family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dynofa_ros.evaluation import scenario as sc
from dynofa_ros.evaluation.inprocess import ReplayOptions, run_inprocess
from dynofa_ros.evaluation.scenario import ScenarioError
from dynofa_ros.family import load_family
from dynofa_ros.replay import graph
from dynofa_ros.resources import models_dir


@pytest.fixture(scope="module")
def scenario() -> sc.Scenario:
    return sc.load(sc.resolve("cnn_vit"))


def test_bundled_cnn_vit_validates_and_names_each_models_network(scenario: sc.Scenario) -> None:
    assert scenario.name == "cnn_vit" and [m.name for m in scenario.models] == ["cnn", "vit"]
    cnn, vit = scenario.models
    assert cnn.checkpoint is None and vit.checkpoint == "fmnist_vit_small.safetensors"
    assert cnn.camera == vit.camera  # one camera feeds both
    shares = [(c.t, c.processor, c.share) for c in scenario.corunners]
    assert shares[0][1] == "cuda" and shares[0][2] > 0 and shares[-1][2] == 0
    assert 0 < shares[0][0] < shares[-1][0] < scenario.duration_s  # in the middle of the run
    # the normalised scenario (stored in the bag) keeps the field; models without it omit it
    again = sc.parse(scenario.to_yaml())
    assert again == scenario
    assert "checkpoint" not in scenario.to_dict()["models"][0]

    opt = ReplayOptions()
    models = models_dir()
    assert opt.checkpoint_path(cnn) == models / "fmnist_mbv3_small.safetensors"
    assert opt.checkpoint_path(vit) == models / "fmnist_vit_small.safetensors"
    assert opt.family_path(cnn) == models / "fmnist_mbv3_small.sim-nx-cuda.family.json"
    assert opt.family_path(vit) == models / "fmnist_vit_small.sim-nx-cuda.family.json"
    assert ReplayOptions(processor="cpu").family_path(vit).name == (
        "fmnist_vit_small.sim-nx-cpu.family.json"
    )
    # the command line's --family MODEL=FILE still wins
    other = models / "fmnist_vit_small.sim-nx-cpu.family.json"
    assert ReplayOptions(families={"vit": other}).family_path(vit) == other

    # live mode: the ViT's perception node and the manager get the ViT's files
    nodes = graph(scenario, opt)
    params = {n.namespace: n.params for n in nodes if n.executable == "perception_node"}
    assert "fmnist_vit_small.safetensors" in params["/vit"]["checkpoint"]
    assert "fmnist_vit_small.sim-nx-cuda" in params["/vit"]["family"]
    assert "fmnist_mbv3_small.safetensors" in params["/cnn"]["checkpoint"]
    manager = next(n for n in nodes if n.executable == "manager_node")
    assert "fmnist_vit_small.sim-nx-cuda" in manager.params["vit.family"]


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("checkpoint", "vit.pt", "field 'models[0].checkpoint' = 'vit.pt' is invalid; allowed: a "
         ".safetensors file"),
        ("family", "vit.family.yaml", "field 'models[0].family' = 'vit.family.yaml' is invalid; "
         "allowed: a .json family file"),
        ("checkpoint", 3, "field 'models[0].checkpoint' = 3 is invalid"),
    ],
)  # fmt: skip
def test_bad_model_files_are_refused_naming_the_field(field: str, value: Any, needle: str) -> None:
    text = f"name: x\nduration_s: 2\nmodels:\n  - {{name: vit, {field}: {value!r}}}\n"
    with pytest.raises(ScenarioError) as err:
        sc.parse(text)
    assert needle in str(err.value)


def test_a_missing_model_file_is_refused_when_the_replay_resolves_it() -> None:
    s = sc.parse("name: x\nduration_s: 2\nmodels:\n  - {name: vit, checkpoint: nope.safetensors}\n")
    with pytest.raises(ScenarioError) as err:
        ReplayOptions().checkpoint_path(s.models[0])
    msg = str(err.value)
    assert "model 'vit'" in msg and "'checkpoint' = 'nope.safetensors'" in msg
    assert str(models_dir()) in msg


def test_short_fast_replay_decides_for_both_models(scenario: sc.Scenario) -> None:
    raw = scenario.to_dict()
    raw.update(duration_s=3.0, corunners=[
        {"t": 1.0, "name": "gpu_app", "processor": "cuda", "share": 0.5},
        {"t": 2.0, "name": "gpu_app", "processor": "cuda", "share": 0.0},
    ])  # fmt: skip
    raw["ambient"]["timeline"] = [{"t": 0, "celsius": 25}]
    short = sc.from_dict(raw, source="cnn_vit (3 s)")
    run = run_inprocess(short, ReplayOptions(policy="dynofa"), progress=False)

    families = {
        m.name: {x.id for x in load_family(ReplayOptions().family_path(m)).members}
        for m in short.models
    }
    assert not families["cnn"] & families["vit"]
    for name in ("cnn", "vit"):
        frames = run.frames_of(name)
        assert len(frames) >= 25, name  # 10 fps for 3 s
        assert {f.subnet_id for f in frames} <= families[name], name
        decided = [c for c in run.commands if c.model == name]
        assert decided and all(c.config.subnet_id in families[name] for c in decided), name
        assert sum(bool(f.correct) for f in frames) >= 0.6 * len(frames), name
    vit_ms = [f.latency_ms for f in run.frames_of("vit") if f.processor == "cuda"]
    assert vit_ms and min(vit_ms) > 15.0  # costed as a ViT on the simulated GPU (>= 21.9 ms)
    assert "fmnist_vit_small.safetensors" in run.info.extra["checkpoint"]


def test_a_family_alone_brings_its_own_checkpoint(tmp_path: Path) -> None:
    from dynofa_ros.family import FamilyError
    from dynofa_ros.perception import model_files
    from dynofa_ros.resources import models_dir

    vit_family = models_dir() / "fmnist_vit_small.cpu.family.json"
    ckpt, fam = model_files("", str(vit_family), "cpu", simulated=False)
    assert ckpt == models_dir() / "fmnist_vit_small.safetensors" and fam == vit_family
    ckpt, fam = model_files("", "", "cuda", simulated=True)
    assert fam.name == "fmnist_mbv3_small.sim-nx-cuda.family.json"
    bad = tmp_path / "bad.family.json"
    bad.write_text("{not json")
    with pytest.raises(FamilyError, match=r"bad\.family\.json"):
        model_files("", str(bad), "cpu", simulated=False)
