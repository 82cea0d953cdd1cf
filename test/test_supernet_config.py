"""Sub-network configs: validation messages, canonical ids, JSON round trip, sampling."""

from __future__ import annotations

import json
import random

import pytest

from dynofa_ros.supernet.config import SearchSpace, SubnetConfig

SPACE = SearchSpace(resolutions=(24, 28, 32))


def _cfg(**kw) -> SubnetConfig:
    base = {"ks": [5] * 20, "e": [4] * 20, "d": [3] * 5, "r": 28}
    base.update(kw)
    return SubnetConfig(**base)


def test_validation_names_field_index_and_allowed_values():
    ks = [5] * 20
    ks[6] = 4
    with pytest.raises(ValueError, match=r"'ks'\[6\] = 4 .*allowed: \[3, 5, 7\]"):
        SPACE.validate(_cfg(ks=ks))
    e = [4] * 20
    e[1] = 5
    with pytest.raises(ValueError, match=r"'e'\[1\] = 5 .*allowed: \[3, 4, 6\]"):
        SPACE.validate(_cfg(e=e))
    with pytest.raises(ValueError, match=r"'d'\[2\] = 1 .*allowed: \[2, 3, 4\]"):
        SPACE.validate(_cfg(d=[3, 3, 1, 3, 3]))
    with pytest.raises(ValueError, match=r"'r' = 30 .*allowed: \[24, 28, 32\]"):
        SPACE.validate(_cfg(r=30))
    with pytest.raises(ValueError, match=r"'r' = 100 .*allowed: 128\.\.224 step 4"):
        SearchSpace().validate(_cfg(r=100))


def test_structural_errors_name_the_field():
    with pytest.raises(ValueError, match=r"'ks' must have 20 entries"):
        _cfg(ks=[3] * 19)
    with pytest.raises(ValueError, match=r"'d'\[0\] must be an integer"):
        _cfg(d=["3", 3, 3, 3, 3])
    with pytest.raises(ValueError, match=r"'r' must be a positive integer"):
        _cfg(r=0)
    with pytest.raises(ValueError, match="missing field"):
        SubnetConfig.from_dict({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5})
    with pytest.raises(ValueError, match="unknown field"):
        SubnetConfig.from_dict({**_cfg().to_dict(), "w": 1})
    with pytest.raises(ValueError, match="not valid JSON"):
        SubnetConfig.from_json("{ks: 3")


def test_inactive_blocks_are_canonicalised_so_same_network_same_id():
    a = _cfg(d=[2, 2, 2, 2, 2])
    ks = [5] * 20
    ks[3] = 7  # stage 0, block 3: inactive at depth 2
    e = [4] * 20
    e[19] = 6  # stage 4, block 3: inactive
    b = _cfg(ks=ks, e=e, d=[2, 2, 2, 2, 2])
    assert a == b and a.id == b.id
    assert b.ks[3] == 0 and b.e[19] == 0
    c = _cfg(ks=ks, d=[4, 2, 2, 2, 2])  # block 3 active now: a different network
    assert c.id != a.id


def test_id_is_stable_and_short():
    cfg = SPACE.largest()
    assert cfg.id == SubnetConfig.from_json(cfg.to_json()).id
    assert len(cfg.id) == 10 and int(cfg.id, 16) >= 0
    # pinned: the id must not change between versions (family files refer to it)
    assert SearchSpace().largest().id == SubnetConfig(ks=[7] * 20, e=[6] * 20, d=[4] * 5, r=224).id
    assert SPACE.largest().id != SPACE.largest(r=28).id


def test_json_round_trip_and_id_check():
    rng = random.Random(3)
    for _ in range(20):
        cfg = SPACE.sample(rng)
        text = cfg.to_json()
        assert SubnetConfig.from_json(text) == cfg
        assert SubnetConfig.from_dict(json.loads(text)) == cfg
        assert SPACE.parse({**cfg.to_dict(), "id": cfg.id}) == cfg
    with pytest.raises(ValueError, match="field 'id'"):
        SubnetConfig.from_dict({**cfg.to_dict(), "id": "0000000000"})


def test_sampling_is_seeded_and_valid():
    a = [SPACE.sample(random.Random(7)) for _ in range(3)]
    b = [SPACE.sample(random.Random(7)) for _ in range(3)]
    assert a == b
    rng = random.Random(0)
    seen = {SPACE.sample(rng).id for _ in range(50)}
    assert len(seen) == 50
    only_k = SPACE.sample(random.Random(1), expand_list=[6], depth_list=[4])
    assert set(only_k.e) == {6} and set(only_k.d) == {4}


def test_largest_smallest_and_search_helpers():
    lg, sm = SPACE.largest(), SPACE.smallest()
    assert set(lg.ks) == {7} and set(lg.e) == {6} and set(lg.d) == {4} and lg.r == 32
    assert set(sm.d) == {2} and sm.r == 24 and set(sm.ks) == {3, 0} and set(sm.e) == {3, 0}
    rng = random.Random(5)
    for _ in range(30):
        child = SPACE.crossover(SPACE.sample(rng), SPACE.sample(rng), rng)
        SPACE.validate(child)
        SPACE.validate(SPACE.mutate(child, 0.3, rng))
    assert SPACE.expand_inactive(sm)["ks"] == [3, 3, 7, 7] * 5
