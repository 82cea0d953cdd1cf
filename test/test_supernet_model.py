"""The embedded default super-network ships with a card that matches its weights."""

from __future__ import annotations

import json
from pathlib import Path

from dynofa_ros.supernet.card import card_from_checkpoint, sha256_file
from dynofa_ros.supernet.checkpoint import read_metadata

MODELS = Path(__file__).resolve().parent.parent / "models"
WEIGHTS = MODELS / "fmnist_mbv3_small.safetensors"
CARD = MODELS / "fmnist_mbv3_small.json"


def test_card_matches_the_weights_file():
    card = json.loads(CARD.read_text())
    assert card["sha256"] == sha256_file(WEIGHTS)
    assert WEIGHTS.stat().st_size <= 20 * 2**20
    fresh = card_from_checkpoint(WEIGHTS)
    for key in ("command", "subnets", "labels", "architecture", "train_seconds"):
        assert card[key] == fresh[key], key
    labels = (MODELS / "fmnist_mbv3_small.labels.txt").read_text().splitlines()
    assert labels == card["labels"] == read_metadata(WEIGHTS)["labels"]
    assert len(labels) == 10 and labels[0] == "T-shirt/top"


def test_card_records_command_and_accuracies_of_at_least_seven_subnets():
    card = json.loads(CARD.read_text())
    assert card["command"].startswith("dynofa train ")
    assert card["data"]["test_images"] == 10000
    subnets = card["subnets"]
    assert len(subnets) >= 7 and len({s["id"] for s in subnets}) == len(subnets)
    largest, smallest = subnets[0], subnets[1]
    assert largest["macs"] == max(s["macs"] for s in subnets)
    assert smallest["macs"] == min(s["macs"] for s in subnets)
    for s in subnets:
        assert 0.5 < s["test_accuracy"] <= 1.0
    # the goals of the issue, on the 10k test set
    assert largest["test_accuracy"] >= 0.91
    assert smallest["test_accuracy"] >= 0.87
    assert card["train_seconds"] <= 45 * 60
