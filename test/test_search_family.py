"""``dynofa profile`` / ``dynofa search`` end to end on a small random-initialised super-network:
the family file reloads with its BN statistics, the simulated-board family says it is
simulated, and bad input (family file, latency table, limit) gives one clear line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dynofa_ros import cli
from dynofa_ros.family import FamilyError, load_family
from dynofa_ros.resources import models_dir
from dynofa_ros.search.accuracy import AccuracyData, AccuracyMeter
from dynofa_ros.search.build import load_bn_statistics
from dynofa_ros.search.lut import LatencyTable, LutEntry, TableSet
from dynofa_ros.search.profile import layer_inventory
from dynofa_ros.supernet.checkpoint import load_checkpoint, save_checkpoint
from dynofa_ros.supernet.config import SubnetConfig
from dynofa_ros.supernet.data import FASHION_MNIST_DIR
from dynofa_ros.supernet.network import build_supernet

ROOT = Path(__file__).resolve().parent.parent
needs_data = pytest.mark.skipif(
    not any(FASHION_MNIST_DIR.glob("train-images-idx3-ubyte*")),
    reason="dataset-fashion-mnist not installed",
)
SMALL = ["--calibration-images", "64", "--validation-images", "200"]
EVOLUTION = ["--population", "20", "--generations", "3", "--limits", "3", "--random", "20"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A random-initialised fmnist-small checkpoint and a synthetic latency profile (MAC-based
    table values, so nothing is timed to build it)."""
    d = tmp_path_factory.mktemp("search")
    torch.manual_seed(0)
    net = build_supernet("fmnist-small")
    save_checkpoint(d / "tiny.safetensors", net)
    tables = {}
    for r in net.space.resolutions:
        entries = {
            k: LutEntry(mean=1e-3 + spec.macs * 1e-7, std=0.0, count=1)
            for k, spec in layer_inventory(net, r).items()
        }
        tables[r] = LatencyTable(r, entries, overhead_ms=0.01, provenance={"synthetic": True})
    TableSet(tables).save(d / "profile" / "cpu-onnxruntime-t1")
    return d


@pytest.fixture(scope="module")
def cpu_family(workdir) -> Path:
    out = workdir / "tiny.cpu.family.json"
    rc = cli.main([
        "search", "--checkpoint", str(workdir / "tiny.safetensors"),
        "--profile", str(workdir / "profile"), "--predictor-samples", "12",
        "--record-threads", "1", "--repeat", "5", "--family-size", "4", "--quiet",
        "--out", str(out), "--plot", str(workdir / "tiny.cpu.png"), *SMALL, *EVOLUTION,
    ])  # fmt: skip
    assert rc == 0
    return out


@needs_data
def test_search_writes_a_family_that_reloads_with_its_bn_statistics(workdir, cpu_family) -> None:
    fam = load_family(cpu_family)
    assert fam.processor == "cpu" and 1 <= len(fam.members) <= 4
    assert fam.supernet["checkpoint"] == "tiny.safetensors"
    lat = [m.latency_ms("cpu") for m in fam.members]
    assert lat == sorted(lat) and all(v > 0 for v in lat)
    for m in fam.members:
        first = m.latency[0]
        assert (first.processor, first.backend, first.threads) == ("cpu", "onnxruntime", 1)
        assert m.accuracy_source == "measured" and 0.0 <= m.accuracy <= 1.0
        assert m.macs > 0 and m.params > 0
    prov = fam.provenance
    assert prov["search"]["front"] and prov["latency_source"]["kind"] == "table"
    assert prov["accuracy_source"]["predictor"]["report"]["n_test"] >= 2
    assert "CUDA" in prov["cuda"]
    assert (workdir / "tiny.cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (workdir / "tiny.predictor.safetensors").is_file()

    # the stored BN statistics install into a freshly loaded network and give the same accuracy
    net = load_checkpoint(workdir / "tiny.safetensors").net
    stats = load_bn_statistics(fam, net)
    assert set(stats) == set(fam.ids)
    data = AccuracyData.fashion_mnist(None, 64, 200)
    from dynofa_ros.supernet.evaluate import accuracy

    for m in fam.members:
        cfg = SubnetConfig.from_dict(m.config)
        assert net.has_bn_stats(cfg)
        assert accuracy(net, cfg, data.validation) == pytest.approx(m.accuracy, abs=1e-9)
    # and they are the statistics a fresh calibration gives
    fresh = build_supernet("fmnist-small")
    fresh.load_state_dict(net.state_dict())
    cfg = SubnetConfig.from_dict(fam.members[0].config)
    again = AccuracyMeter(fresh, data).calibrate(cfg)
    for name, (mean, var) in again.items():
        torch.testing.assert_close(mean, stats[cfg.id][name][0])
        torch.testing.assert_close(var, stats[cfg.id][name][1])


@needs_data
def test_bench_family_remeasures_every_record(cpu_family) -> None:
    from dynofa_ros.bench.family import remeasure, summarise

    rows = remeasure(cpu_family, repeat=5, warmup=2, quiet=True)
    assert rows and all(r["ratio"] > 0 for r in rows)
    assert "records: ratio median" in summarise(rows)
    # every member against its search limit: the smallest limit its searched latency met
    from dynofa_ros.bench.family import limits

    view = limits(cpu_family, rows)
    fam = load_family(cpu_family)
    assert {v["id"] for v in view} == {m.id for m in fam.members}
    lims = fam.provenance["evolution"]["limits_ms"]
    for v in view:
        assert v["measured_ms"] > 0
        if v["limit_ms"] is not None:
            assert v["predicted_ms"] <= v["limit_ms"] in lims
            assert not any(v["predicted_ms"] <= x < v["limit_ms"] for x in lims)


@needs_data
def test_simulated_family_says_it_is_simulated(workdir) -> None:
    out = workdir / "tiny.sim-nx-cuda.family.json"
    rc = cli.main([
        "search", "--checkpoint", str(workdir / "tiny.safetensors"), "--platform",
        "sim-xavier-nx", "--processor", "cuda", "--predictor",
        str(workdir / "tiny.predictor.safetensors"), "--family-size", "3", "--quiet",
        "--out", str(out), "--plot", str(workdir / "tiny.sim.png"), *SMALL, *EVOLUTION,
    ])  # fmt: skip
    assert rc == 0
    fam = load_family(out)
    assert fam.processor == "cuda"
    assert "SIMULATED" in fam.provenance["note"] and fam.provenance["measured_gpu"] is False
    from dynofa_ros.platform.sim import SimulatedXavierNX

    sim = SimulatedXavierNX()
    gpu_f = sim.processor("cuda").frequencies_khz
    for m in fam.members:
        assert all(r.backend == "simulated" for r in m.latency)
        assert {r.frequency_khz for r in m.latency if r.processor == "cuda"} == set(gpu_f)
        assert {r.threads for r in m.latency if r.processor == "cpu"} == {1, 2, 4, 6}
        assert m.latency[0].frequency_khz == gpu_f[-1]
    lat = [m.latency_ms("cuda") for m in fam.members]
    assert lat == sorted(lat)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynofa_ros.cli", *args], capture_output=True, text=True,
        cwd=ROOT,
    )  # fmt: skip


@needs_data
def test_impossible_latency_limit_is_one_clear_line(workdir) -> None:
    out = _run(
        "search", "--checkpoint", str(workdir / "tiny.safetensors"), "--profile",
        str(workdir / "profile"), "--predictor", str(workdir / "tiny.predictor.safetensors"),
        "--limits-ms", "0.001", "--quiet", *SMALL,
    )  # fmt: skip
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "latency limit 0.001 ms is impossible" in lines[0]


def test_latency_table_for_another_resolution_is_rejected(workdir, tmp_path) -> None:
    prof = tmp_path / "cpu-onnxruntime-t1"
    shutil.copytree(workdir / "profile" / "cpu-onnxruntime-t1", prof)
    (prof / "28_lookup_table.yaml").unlink()
    shutil.copy(prof / "24_lookup_table.yaml", prof / "28_lookup_table.yaml")
    out = _run(
        "search", "--checkpoint", str(workdir / "tiny.safetensors"), "--profile", str(prof),
        "--predictor", str(workdir / "tiny.predictor.safetensors"), "--quiet", *SMALL,
    )  # fmt: skip
    assert out.returncode == 1
    assert "latency table is for input resolution 24, not 28" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@needs_data
def test_corrupt_or_wrong_version_family_files(cpu_family, tmp_path) -> None:
    text = cpu_family.read_text()
    bad = tmp_path / "bad.family.json"
    bad.write_text(text[: len(text) // 2])
    with pytest.raises(FamilyError, match=r"not valid JSON.*truncated"):
        load_family(bad)
    doc = json.loads(text)
    bad.write_text(json.dumps({**doc, "version": 99}))
    with pytest.raises(FamilyError, match="unsupported family version 99"):
        load_family(bad)
    bad.write_text(json.dumps({**doc, "format": "something-else"}))
    with pytest.raises(FamilyError, match="field 'format'"):
        load_family(bad)
    broken = json.loads(text)
    del broken["members"][0]["accuracy"]
    bad.write_text(json.dumps(broken))
    with pytest.raises(FamilyError, match=r"members\[0\]: missing field 'accuracy'"):
        load_family(bad)
    # a family whose BN statistics file is damaged
    shutil.copy(cpu_family, tmp_path / cpu_family.name)
    bn = tmp_path / json.loads(text)["bn_statistics"]
    bn.write_bytes(b"\x00" * 16)
    with pytest.raises(FamilyError, match="cannot read BN statistics"):
        load_bn_statistics(load_family(tmp_path / cpu_family.name))


def test_profile_cli_writes_tables_and_reports_error(workdir, tmp_path) -> None:
    out = tmp_path / "prof"
    rc = cli.main([
        "profile", "--checkpoint", str(workdir / "tiny.safetensors"), "--out", str(out),
        "--backends", "onnxruntime", "--threads", "1", "--networks", "3", "--repeat", "5",
        "--warmup", "2", "--fit-networks", "16", "--quiet",
    ])  # fmt: skip
    assert rc == 0
    d = out / "cpu-onnxruntime-t1"
    net = build_supernet("fmnist-small")
    tables = TableSet.load(d, net.space.resolutions)
    for r, t in tables.tables.items():
        assert set(t.entries) == set(layer_inventory(net, r))
        assert t.provenance["backend"] == "onnxruntime" and t.provenance["threads"] == 1
        assert t.provenance["machine"]["cpu_model"] and t.provenance["date"]
    doc = json.loads((d / "profile.json").read_text())
    assert doc["table_error"]["n"] == 3 and len(doc["networks"]) == 3 + 16
    assert doc["corrected_error"]["n"] == 3 and doc["fit_error"]["n"] == 16
    for n in doc["networks"]:
        assert n["measured"]["median_ms"] > 0 and n["predicted_ms"] > 0
    # the correction beside the tables names the 16 fit networks, none of the held-out ones
    fit = tables.correction.provenance["networks"]
    held = [n["id"] for n in doc["networks"] if n["role"] == "held-out"]
    assert len(fit) == 16 and len(held) == 3 and not set(fit) & set(held)


def test_profile_cli_simulated_board(workdir, tmp_path) -> None:
    rc = cli.main([
        "profile", "--checkpoint", str(workdir / "tiny.safetensors"), "--out", str(tmp_path),
        "--platform", "sim-xavier-nx", "--networks", "4",
    ])  # fmt: skip
    assert rc == 0
    doc = json.loads((tmp_path / "sim-xavier-nx" / "profile.json").read_text())
    assert "SIMULATED" in doc["provenance"]["note"]
    procs = {(s["processor"], s["threads"]) for s in doc["settings"]}
    assert ("cuda", 0) in procs and ("cpu", 6) in procs


def test_embedded_default_front_dominates_random_subnetworks() -> None:
    """The shipped simulated-GPU family's searched front against 100 random sub-networks, both
    costed by the simulator and scored by the family's predictor (the measured-accuracy figure,
    100 %, comes from ``dynofa bench front``; this is the looser, fast check)."""
    from dynofa_ros.bench.front import evaluate_front

    res = evaluate_front(
        models_dir() / "fmnist_mbv3_small.sim-nx-cuda.family.json",
        n_random=100,
        accuracy="predictor",
        progress=False,
    )
    assert res["random"] == 100
    assert res["dominated_fraction"] >= 0.8, res["dominated_fraction"]
