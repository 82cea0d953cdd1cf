"""The table's correction fitted on whole networks: a known bias is removed on held-out networks,
too few networks are refused, the file round-trips beside the tables and is the prediction the
search uses. Nothing here depends on timing: the "measurements" are synthetic."""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import replace

import pytest

from dynofa_ros import cli
from dynofa_ros.search.build import table_latency
from dynofa_ros.search.correction import (
    CORRECTION_FILE,
    DEFAULT_FEATURES,
    LatencyCorrection,
    feature_values,
    fit_correction,
    key_weights,
    minimum_networks,
    nnls_relative,
)
from dynofa_ros.search.errors import LatencyTableError
from dynofa_ros.search.lut import LatencyTable, LutEntry, TableSet
from dynofa_ros.search.profile import (
    MeasureSetting,
    Profiler,
    fit_and_validate,
    layer_inventory,
    network_keys,
    random_configs,
)
from dynofa_ros.search.timing import measure_interleaved
from dynofa_ros.supernet.network import build_supernet


@pytest.fixture(scope="module")
def small_net():
    return build_supernet("fmnist-small").eval()


def _tables(net, seed: int = 0) -> TableSet:
    rng = random.Random(seed)
    tables = {
        r: LatencyTable(
            r,
            {k: LutEntry(mean=rng.uniform(0.005, 0.08)) for k in layer_inventory(net, r)},
            overhead_ms=0.006,
        )
        for r in net.space.resolutions
    }
    return TableSet(tables)


def _board(tables: TableSet, net, cfg, noise: float = 0.0, rng=None) -> float:
    """A synthetic board with a known bias: whole networks are 1.3x their layers' sum, plus 4 us
    per layer, plus 25 us per MB of weights, plus the call (what the real board showed)."""
    table = tables.table(cfg.r)
    keys = network_keys(net, cfg)
    true = (
        1.3 * sum(table.query(k) for k in keys)
        + 0.004 * len(keys)
        + 0.025 * 4e-6 * sum(key_weights(k) for k in keys)
        + table.overhead_ms
    )
    return true * (1 + (rng.uniform(-noise, noise) if rng else 0.0))


def _errors(tables: TableSet, net, cfgs, truth) -> tuple[list[float], list[float]]:
    raw, corrected = [], []
    for c in cfgs:
        keys = network_keys(net, c)
        raw.append(tables.predict_table(c.r, keys) / truth[c.id] - 1)
        corrected.append(tables.predict(c.r, keys) / truth[c.id] - 1)
    return raw, corrected


def test_correction_fitted_on_a_known_bias_removes_it_on_held_out_networks(small_net) -> None:
    net = small_net
    tables = _tables(net)
    cfgs = random_configs(net.space, 60, seed=3)
    fit, held_out = cfgs[:30], cfgs[30:]
    rng = random.Random(1)
    truth = {c.id: _board(tables, net, c, noise=0.01, rng=rng) for c in cfgs}
    correction = fit_correction(
        [(tables.table(c.r), network_keys(net, c), truth[c.id]) for c in fit]
    )
    corrected = replace(tables, correction=correction)
    raw, after = _errors(corrected, net, held_out, truth)
    # the table alone under-predicts every held-out network by a fifth or more ...
    assert max(raw) < -0.15
    # ... the correction fitted on *other* networks removes the bias, down to the 1 % noise
    assert abs(statistics.median(after)) < 0.01
    assert max(abs(e) for e in after) < 0.03
    coeffs = dict(zip(correction.features, correction.coefficients, strict=True))
    assert coeffs["layers_ms"] == pytest.approx(1.3, rel=0.1)
    # without noise the fit recovers the board exactly
    exact = {c.id: _board(tables, net, c) for c in cfgs}
    correction = fit_correction(
        [(tables.table(c.r), network_keys(net, c), exact[c.id]) for c in fit]
    )
    _, after = _errors(replace(tables, correction=correction), net, held_out, exact)
    assert max(abs(e) for e in after) < 1e-6
    coeffs = dict(zip(correction.features, correction.coefficients, strict=True))
    assert coeffs == pytest.approx(
        {"layers_ms": 1.3, "call_ms": 1.0, "layers": 0.004, "weights_mb": 0.025}, rel=1e-4
    )


def test_too_few_networks_are_refused_with_one_clear_line(small_net, tmp_path, capsys) -> None:
    net = small_net
    tables = _tables(net)
    need = minimum_networks(len(DEFAULT_FEATURES))
    cfgs = random_configs(net.space, need - 1, seed=4)
    samples = [(tables.table(c.r), network_keys(net, c), 1.0) for c in cfgs]
    with pytest.raises(LatencyTableError, match=rf"{need - 1} measured network\(s\) are too few"):
        fit_correction(samples)
    # the profile refuses before it builds or times anything
    saved = tables.save(tmp_path)
    profiler = Profiler(net, MeasureSetting("cpu", "onnxruntime", 1), progress=False)
    with pytest.raises(LatencyTableError, match="too few to fit the latency correction"):
        fit_and_validate(profiler, replace(tables, path=saved), cfgs[:3], cfgs[3:])
    # and so does the command, in one line naming the option and the minimum
    rc = cli.main(["profile", "--fit-networks", "3", "--out", str(tmp_path / "p"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1
    assert "--fit-networks 3 is too few to fit the latency correction" in err
    assert f"--fit-networks {need} or more" in err
    assert not (tmp_path / "p").exists()


def test_correction_is_stored_beside_the_tables_and_is_what_the_search_uses(
    small_net, tmp_path
) -> None:
    net = small_net
    tables = _tables(net)
    d = tables.save(tmp_path / "cpu-onnxruntime-t1")
    tables = replace(tables, path=d)
    cfgs = random_configs(net.space, 20, seed=5)
    truth = {c.id: _board(tables, net, c) for c in cfgs}
    correction = fit_correction(
        [(tables.table(c.r), network_keys(net, c), truth[c.id]) for c in cfgs],
        tables_sha256={str(r): h for r, h in tables.table_hashes().items()},
        provenance={"networks": [c.id for c in cfgs], "backend": "onnxruntime", "threads": 1},
    )
    path = correction.save(d)
    assert path.name == CORRECTION_FILE
    doc = json.loads(path.read_text())
    assert doc["provenance"]["networks"] == [c.id for c in cfgs]
    assert set(doc["coefficients"]) == set(DEFAULT_FEATURES)
    loaded = TableSet.load(d, net.space.resolutions)
    assert loaded.correction == correction
    # the tables stay once-for-all's files: their own prediction is the plain sum
    c = cfgs[0]
    keys = network_keys(net, c)
    assert loaded.predict_table(c.r, keys) == pytest.approx(
        sum(loaded.table(c.r).query(k) for k in keys) + 0.006
    )
    # the search's latency source is the corrected prediction
    source = table_latency(net, loaded, MeasureSetting())
    assert source(cfgs) == pytest.approx([truth[c.id] for c in cfgs], rel=1e-6)
    assert "corrected" in source.description
    # a table measured again makes the old correction refuse to load
    t = loaded.table(28)
    changed = LatencyTable(28, {k: LutEntry(e.mean * 2) for k, e in t.entries.items()}, 0.006)
    changed.save(d)
    with pytest.raises(LatencyTableError, match=r"fitted on another 28_lookup_table\.yaml"):
        TableSet.load(d, net.space.resolutions)
    # saving tables without a correction removes the stale one
    replace(loaded, correction=None).save(d)
    assert not (d / CORRECTION_FILE).exists()
    assert TableSet.load(d, net.space.resolutions).correction is None


def test_bad_correction_files_give_one_line_errors(tmp_path) -> None:
    p = tmp_path / CORRECTION_FILE
    p.write_text("{not json")
    with pytest.raises(LatencyTableError, match="is not valid JSON"):
        LatencyCorrection.load(p)
    p.write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(LatencyTableError, match="is not 'dynofa-latency-correction'"):
        LatencyCorrection.load(p)
    base = {"format": "dynofa-latency-correction", "version": 1}
    p.write_text(json.dumps({**base, "coefficients": {"layers_ms": -1.0}}))
    with pytest.raises(LatencyTableError, match=r"coefficient of 'layers_ms' is -1\.0"):
        LatencyCorrection.load(p)
    p.write_text(json.dumps({**base, "coefficients": {"frequency": 1.0}}))
    with pytest.raises(LatencyTableError, match="feature 'frequency' is unknown"):
        LatencyCorrection.load(p)


def test_nnls_keeps_coefficients_non_negative() -> None:
    # unconstrained least squares would weigh the second column negatively
    rows = [[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]]
    y = [0.5, 1.6, 2.7, 3.8]  # 1.1 x - 0.6
    c = nnls_relative(rows, y)
    assert all(v >= 0 for v in c)
    assert c[1] == 0.0
    assert nnls_relative([[1.0, 0.0], [0.0, 1.0]], [2.0, 3.0]) == pytest.approx([2.0, 3.0])


def test_features_of_a_network(small_net) -> None:
    tables = _tables(small_net)
    cfg = random_configs(small_net.space, 1, seed=9)[0]
    keys = network_keys(small_net, cfg)
    table = tables.table(cfg.r)
    values = feature_values(table, keys)
    assert values[0] == pytest.approx(sum(table.query(k) for k in keys))
    assert values[1:3] == [0.006, float(len(keys))]
    # weights from the keys follow the network's own parameter count (BN and biases aside)
    assert values[3] == pytest.approx(4e-6 * small_net.params(cfg), rel=0.05)


def test_interleaved_timing_visits_every_object_the_same_number_of_times() -> None:
    calls = [0, 0, 0]

    def make(i: int):
        def fn() -> None:
            calls[i] += 1

        return fn

    timings = measure_interleaved(
        [make(0), make(1), make(2)], warmup=2, repeat=10, per_visit=3, max_seconds=None
    )
    rounds = 4  # ceil(10 / 3)
    assert calls == [2 + rounds * (1 + 3)] * 3
    assert [t.count for t in timings] == [rounds] * 3
    assert all(t.min_ms <= t.median_ms for t in timings)
