"""Latency lookup tables: once-for-all's YAML format, round trip, compatibility, bad input."""

from __future__ import annotations

import random

import pytest
import yaml

from dynofa_ros.search.errors import LatencyTableError
from dynofa_ros.search.lut import LatencyTable, LutEntry, TableSet, parse_key, table_filename
from dynofa_ros.search.profile import layer_inventory, network_keys
from dynofa_ros.supernet.network import build_supernet


@pytest.fixture(scope="module")
def small_net():
    return build_supernet("fmnist-small").eval()


def _table(net, r: int, seed: int = 0) -> LatencyTable:
    rng = random.Random(seed)
    entries = {
        k: LutEntry(mean=rng.uniform(0.001, 2.0), std=rng.uniform(0, 0.1), count=rng.randint(1, 99))
        for k in layer_inventory(net, r)
    }
    return LatencyTable(r, entries, overhead_ms=0.0123, provenance={"machine": {"cpu": "x"}})


def test_table_written_in_ofa_format_reads_back_equal(small_net, tmp_path) -> None:
    for r in small_net.space.resolutions:
        t = _table(small_net, r, seed=r)
        path = t.save(tmp_path)
        assert path.name == f"{r}_lookup_table.yaml" == table_filename(r)
        back = LatencyTable.load(path, resolution=r)
        assert back == t
        assert list(back.entries) == list(t.entries)
        # the file is once-for-all's plain mapping: key -> {count, mean, std}
        raw = yaml.safe_load(path.read_text())
        assert set(raw) == set(t.entries)
        for key, value in raw.items():
            assert set(value) == {"count", "mean", "std"}
            assert value["mean"] == t.entries[key].mean


def test_table_keys_cover_every_subnet_and_predict_sums(small_net) -> None:
    rng = random.Random(3)
    tables = {r: _table(small_net, r, r) for r in small_net.space.resolutions}
    ts = TableSet(tables)
    for _ in range(50):
        cfg = small_net.space.sample(rng)
        keys = network_keys(small_net, cfg)
        assert not tables[cfg.r].missing(keys)
        expected = sum(tables[cfg.r].entries[k].mean for k in keys) + 0.0123
        assert ts.predict(cfg.r, keys) == pytest.approx(expected)
        for k in keys:
            assert parse_key(k).text == k


def test_ofa_latency_table_reads_our_file_and_predicts_the_same(tmp_path, monkeypatch) -> None:
    """once-for-all's own MBv3LatencyTable reads a table we wrote and its network prediction
    equals ours (sum of the same layers) on OFA sub-networks."""
    from dynofa_ros.torchvision_compat import import_torchvision

    import_torchvision()
    ofa_nets = pytest.importorskip("ofa.imagenet_classification.elastic_nn.networks")
    from ofa.nas.efficiency_predictor import latency_lookup_table as ofa_lut

    # once-for-all calls yaml.load(fp) without a Loader (PyYAML < 6); give it the safe loader
    original = yaml.load
    monkeypatch.setattr(
        ofa_lut.yaml, "load", lambda fp, Loader=yaml.SafeLoader: original(fp, Loader=Loader)
    )
    net = build_supernet("ofa-w1.0").eval()
    r = 128
    ours = _table(net, r, seed=1)
    ours = LatencyTable(r, ours.entries, overhead_ms=0.0)
    path = ours.save(tmp_path)
    theirs = ofa_lut.MBv3LatencyTable(url=str(path))
    ofa = ofa_nets.OFAMobileNetV3(
        width_mult=1.0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    rng = random.Random(0)
    for _ in range(10):
        cfg = net.space.sample(rng)
        full = net.space.expand_inactive(cfg)
        ofa.set_active_subnet(ks=full["ks"], e=full["e"], d=full["d"])
        sub = ofa.get_active_subnet(preserve_weight=False)
        assert theirs.predict_network_latency(sub, image_size=r) == pytest.approx(
            ours.predict(network_keys(net, cfg.__class__(**{**cfg.to_dict(), "r": r})))
        )


def test_plain_ofa_table_without_header_reads(tmp_path, small_net) -> None:
    t = _table(small_net, 28)
    body = yaml.safe_dump({k: e.to_dict() for k, e in t.entries.items()})
    p = tmp_path / "28_lookup_table.yaml"
    p.write_text(body)
    back = LatencyTable.load(p)
    assert back.resolution == 28 and back.entries == t.entries and back.overhead_ms == 0.0


def test_table_for_another_resolution_is_rejected_naming_both(small_net, tmp_path) -> None:
    t = _table(small_net, 24)
    t.save(tmp_path)
    (tmp_path / "24_lookup_table.yaml").rename(tmp_path / "28_lookup_table.yaml")
    with pytest.raises(LatencyTableError, match=r"resolution 24, not 28"):
        LatencyTable.load(tmp_path / "28_lookup_table.yaml", resolution=28)
    with pytest.raises(LatencyTableError, match=r"resolution 24, not 28"):
        TableSet.load(tmp_path, [28])
    with pytest.raises(LatencyTableError, match=r"no table for resolution 32"):
        TableSet.load(tmp_path, [32])


def test_bad_tables_give_clear_errors(small_net, tmp_path) -> None:
    p = tmp_path / "32_lookup_table.yaml"
    p.write_text("not: [valid")
    with pytest.raises(LatencyTableError, match="not valid YAML"):
        LatencyTable.load(p)
    p.write_text("foo-input:1x1-output:1: {mean: 1}\n")
    with pytest.raises(LatencyTableError, match="is not a layer key"):
        LatencyTable.load(p)
    p.write_text("Conv-input:32x32x1-output:16x16x16: {count: 3}\n")
    with pytest.raises(LatencyTableError, match="has no 'mean'"):
        LatencyTable.load(p)
    p.write_text("Conv-input:32x32x1-output:16x16x16: {mean: -1.0}\n")
    with pytest.raises(LatencyTableError, match=r"mean -1\.0"):
        LatencyTable.load(p)
    with pytest.raises(LatencyTableError, match="cannot read latency table"):
        LatencyTable.load(tmp_path / "missing.yaml")
    t = _table(small_net, 32)
    with pytest.raises(LatencyTableError, match="no entry for layer 'Conv_1-input:9x9x9"):
        t.query("Conv_1-input:9x9x9-output:9x9x9")
