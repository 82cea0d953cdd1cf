"""Import a once-for-all ``OFAMobileNetV3`` state dict (w1.0 / w1.2) into the project's format.

once-for-all's released checkpoints (``ofa_mbv3_d234_e346_k357_w1.0`` / ``_w1.2``) are
``{"state_dict": ...}`` pickles of ``OFAMobileNetV3``; older ones name the MBConv
``mobile_inverted_conv`` instead of ``conv``, and some use ``bn.bn`` / ``conv.conv`` /
``linear.linear`` where others use single names. The renaming ``OFAMobileNetV3.load_state_dict``
does is done here too, then every key and shape is checked against ``ofa-w1.0`` / ``ofa-w1.2``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import cast

from torch import Tensor

from dynofa_ros.supernet.checkpoint import CheckpointError, check_state_dict
from dynofa_ros.supernet.network import PRESETS, Architecture, ElasticMobileNetV3, preset

OFA_PRESETS = ("ofa-w1.0", "ofa-w1.2")
# The resolutions an imported network accepts: once-for-all trains 128..224 step 4, and its
# specialised networks run up to 260; a member at any of these runs in the engine.
IMPORT_RESOLUTIONS = tuple(range(128, 261, 4))


def normalise_ofa_keys(
    state: Mapping[str, Tensor], expected: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """once-for-all's key renaming (``OFAMobileNetV3.load_state_dict``), towards ``expected``."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        k = key[len("module.") :] if key.startswith("module.") else key
        k = k.replace(".mobile_inverted_conv.", ".conv.")
        if k not in expected:
            for a, b in (
                (".bn.bn.", ".bn."),
                (".conv.conv.weight", ".conv.weight"),
                (".linear.linear.", ".linear."),
                (".linear.", ".linear.linear."),
                ("bn.", "bn.bn."),
                ("conv.weight", "conv.conv.weight"),
            ):
                if a in k and k.replace(a, b) in expected:
                    k = k.replace(a, b)
                    break
        out[k] = value
    return out


def detect_preset(state: Mapping[str, Tensor]) -> str:
    """``ofa-w1.0`` or ``ofa-w1.2`` from the classifier / first-conv widths."""
    for name in OFA_PRESETS:
        want = ElasticMobileNetV3(cast(Architecture, PRESETS[name])).state_dict()
        keys = (
            "first_conv.conv.weight",
            "final_expand_layer.conv.weight",
            "classifier.linear.weight",
        )
        if all(k in state and tuple(state[k].shape) == tuple(want[k].shape) for k in keys):
            return name
    shapes = {
        k: tuple(state[k].shape)
        for k in ("first_conv.conv.weight", "classifier.linear.weight")
        if k in state
    }
    raise CheckpointError(
        f"not an OFA-MobileNetV3 w1.0 / w1.2 state dict (first conv / classifier shapes {shapes})"
    )


def import_ofa_state_dict(
    state: Mapping[str, Tensor],
    name: str | None = None,
    source: str = "state dict",
    resolutions: Sequence[int] | None = None,
) -> ElasticMobileNetV3:
    """A super-network with once-for-all's weights (checked key by key); its search space
    accepts ``resolutions`` (default: the preset's)."""
    probe = ElasticMobileNetV3(cast(Architecture, preset(name or "ofa-w1.0"))).state_dict()
    normalised = normalise_ofa_keys(state, probe)
    name = name or detect_preset(normalised)
    arch = cast(Architecture, preset(name))  # the OFA presets are MobileNetV3 architectures
    if resolutions is not None:
        arch = dataclasses.replace(
            arch, space=dataclasses.replace(arch.space, resolutions=tuple(resolutions))
        )
    net = ElasticMobileNetV3(arch)
    expected = net.state_dict()
    normalised = normalise_ofa_keys(state, expected)
    check_state_dict(expected, normalised, source)
    full = dict(expected)
    for k, v in normalised.items():
        full[k] = v.to(expected[k].dtype)
    net.load_state_dict(full)
    net.eval()
    return net
