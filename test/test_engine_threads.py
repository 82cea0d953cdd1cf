"""Switching from another thread while frames run: every frame's result names exactly the member
that was active when the frame started (its logits are that member's), none is lost or mixed.

The switching thread walks a known sequence of (member, threads) settings and publishes the
index of the last completed switch. A frame reads that index before it starts (``lo``) and after
it ends (``hi``): the binding it started with is one of ``sequence[lo .. hi + 1]`` (the switch
after ``hi`` may have been assigned but not yet published). Consecutive settings always differ
in member, so a frame that reported a member outside that window, or whose logits are not that
member's logits for its image, would be caught.
"""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from test_engine_support import engine, image_set

FRAMES = 150


@pytest.mark.parametrize("backend", ["onnxruntime", "torch-dynamic"])
def test_frames_name_the_member_active_at_their_start(backend: str) -> None:
    eng = engine(backend)
    members = eng.members
    images = image_set(4)
    expected = {}  # (member, image index) -> logits, computed without concurrency
    for mid in members:
        eng.switch(mid, "cpu", 1)
        for i, img in enumerate(images):
            expected[(mid, i)] = np.array(eng.infer_array(img).logits)
    # a random sequence where consecutive members differ (random: no aliasing with the frames)
    rng = random.Random(7)
    sequence = [(members[0], 1)]
    for _ in range(20000):
        choices = [m for m in members if m != sequence[-1][0]]
        sequence.append((rng.choice(choices), rng.choice((1, 2))))
    eng.switch(sequence[0][0], "cpu", sequence[0][1])
    published = [0]
    stop = threading.Event()
    switches = [0]

    def switcher() -> None:
        i = 0
        while not stop.is_set() and i + 1 < len(sequence):
            i += 1
            mid, t = sequence[i]
            eng.switch(mid, "cpu", t)
            published[0] = i
            switches[0] += 1
            time.sleep(rng.uniform(0.0, 3e-4))  # let frames run; switches land anywhere

    results = []
    th = threading.Thread(target=switcher, daemon=True)
    th.start()
    try:
        for n in range(FRAMES):
            lo = published[0]
            img_i = n % len(images)
            res = eng.infer_array(images[img_i])
            hi = published[0]
            results.append((lo, hi, img_i, res))
    finally:
        stop.set()
        th.join(10)
    assert not th.is_alive()
    assert len(results) == FRAMES  # none lost
    assert switches[0] > FRAMES // 2  # switches really happened between and during frames
    seen = set()
    for lo, hi, img_i, res in results:
        window = sequence[lo : hi + 2]
        assert (res.member_id, res.threads) in window, (lo, hi, res.member_id)
        assert res.processor == "cpu"
        assert res.resolution == eng.config(res.member_id).r
        np.testing.assert_allclose(res.logits, expected[(res.member_id, img_i)], atol=1e-5)
        seen.add(res.member_id)
    assert len(seen) >= 2


def test_switch_between_frames_applies_to_the_next_frame() -> None:
    eng = engine("torch-dynamic")
    img = image_set(1)[0]
    order = [eng.members[i] for i in (2, 0, 1, 0, 2, 2, 1)]
    for mid in order:
        eng.switch(mid, "cpu", 2)
        assert eng.infer_array(img).member_id == mid
