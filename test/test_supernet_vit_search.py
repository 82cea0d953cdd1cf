"""Search plumbing on the ViT family: per-layer latency tables over its own layer kinds, the
predictor over its own encoding (saved and loaded), the evolutionary search, and the simulated
board's workloads, on a tiny randomly initialised ViT (synthetic latency / accuracy functions
where measuring would be slow)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from test_supernet_vit import TINY_SPACE, configs, tiny_net

from dynofa_ros.search import build
from dynofa_ros.search.errors import PredictorError
from dynofa_ros.search.evolution import EvolutionOptions
from dynofa_ros.search.lut import LatencyTable, TableSet, parse_key
from dynofa_ros.search.predictor import (
    SpaceEncoder,
    encoder_for_space,
    fit_predictor,
    load_predictor,
    save_predictor,
)
from dynofa_ros.search.profile import (
    MeasureSetting,
    Profiler,
    TimingOptions,
    layer_inventory,
    network_keys,
)


def test_layer_inventory_covers_every_subnetwork_and_keys_parse() -> None:
    net = tiny_net()
    inv = layer_inventory(net, 28)
    sp = TINY_SPACE
    n_embed, n_layer = len(sp.embed_list), len(sp.heads_list) * len(sp.mlp_ratio_list)
    assert len(inv) == n_embed * (2 + n_layer)  # patch embed + head per width, + layer kinds
    for cfg in configs(12, seed=4):
        keys = network_keys(net, cfg)
        assert len(keys) == cfg.depth + 2 and set(keys) <= set(inv)
    for key in inv:
        assert parse_key(key).text == key
    assert parse_key(next(k for k in inv if k.startswith("TransformerLayer"))).fields.keys() == {
        "heads",
        "headdim",
        "hidden",
    }


def test_table_profiled_on_onnxruntime_predicts_the_whole_network() -> None:
    """Every layer kind builds, exports and runs alone; the table sums them per network."""
    net = tiny_net()
    prof = Profiler(net, MeasureSetting("cpu", "onnxruntime", 1), TimingOptions(1, 3, 0.5))
    table = prof.build_table(28)
    text = table.to_yaml()
    again = LatencyTable.from_yaml(text, resolution=28)
    assert set(again.entries) == set(layer_inventory(net, 28))
    tables = TableSet({28: again})
    small, large = TINY_SPACE.smallest(), TINY_SPACE.largest()
    assert tables.predict(28, network_keys(net, small)) > 0
    assert prof.measure_network(large).median_ms > 0


def test_predictor_over_the_vit_encoding_round_trips(tmp_path: Path) -> None:
    enc = encoder_for_space(TINY_SPACE)
    assert isinstance(enc, SpaceEncoder)
    cfgs = configs(40, seed=7)
    assert enc.encode_many(cfgs).shape == (40, enc.n_dim)

    def truth(c) -> float:  # a smooth accuracy-like function of the architecture
        return 0.6 + 0.004 * c.embed + 0.02 * c.depth + 0.01 * sum(c.heads) / c.depth

    pred, report = fit_predictor(cfgs, [truth(c) for c in cfgs], enc, epochs=60, seed=0)
    assert report.test_spearman > 0.5
    save_predictor(tmp_path / "p.safetensors", pred)
    loaded, meta = load_predictor(tmp_path / "p.safetensors")
    assert meta["encoder"]["kind"] == "vit"
    assert list(loaded.predict(cfgs[:5])) == pytest.approx(list(pred.predict(cfgs[:5])))
    with pytest.raises(PredictorError, match="'embed' = 20"):
        enc.encode({**cfgs[0].to_dict(), "embed": 20})


def test_evolutionary_search_and_simulated_workloads_on_the_vit() -> None:
    from dynofa_ros.platform import make_platform

    net = tiny_net()
    sim = make_platform("sim-xavier-nx")
    latency = build.simulated_latency(net, sim, "cuda", runtime="torch-dynamic")
    accuracy = build.AccuracySource(
        lambda cs: [0.5 + net.macs(c) / 2e7 for c in cs], "MACs as accuracy", "predicted"
    )
    opts = EvolutionOptions(population=12, generations=3, seed=0)
    outcome = build.run_search(net, latency, accuracy, opts, n_limits=3, progress=False)
    assert outcome.front and all(TINY_SPACE.contains(c.config) for c in outcome.front)
    lat = latency([TINY_SPACE.smallest(), TINY_SPACE.largest()])
    assert lat[0] < lat[1]
    rng = random.Random(0)
    assert len({c.id for c in (TINY_SPACE.sample(rng) for _ in range(30))}) > 20
