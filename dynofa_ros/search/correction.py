"""A correction of the per-layer table's prediction, fitted on measured whole networks.

Why: a layer timed alone is not the layer inside a network. Measured here (ONNX Runtime, one
thread, the Fashion-MNIST super-network), the sum of standalone layers under-predicts whole
networks by about a fifth, and by about the same *fraction* for small and large networks: a
network's layers run one after the other on caches that hold the previous layer's weights and
activations, not their own, and the interpreter's per-node work between layers (reorders,
residual adds, the output copy) exists only in the graph. A constant per network cannot model
that; a small linear model of features the table already gives can:

    corrected = sum_i coefficient_i * feature_i(table, layers)

with the features below, fitted by non-negative least squares on *relative* error (every
network counts the same, whatever its latency), on networks the profile measured whole, and
validated on others (``dynofa profile`` reports both). Non-negative coefficients keep the model
monotone (a network with a slower layer is never predicted faster), so a search cannot exploit
a negative weight.

The correction is stored beside the tables of its setting as ``latency_correction.json``, with
its provenance (networks it was fitted on, setting, fit error, date) and the SHA-256 of each
table file it was fitted on: a table measured again makes the old correction refuse to load
rather than silently mis-correct. The tables themselves stay once-for-all's YAML, unchanged.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dynofa_ros.fileio import atomic_write_text
from dynofa_ros.search.errors import LatencyTableError

CORRECTION_FILE = "latency_correction.json"
CORRECTION_FORMAT = "dynofa-latency-correction"
CORRECTION_VERSION = 1

#: feature name -> what it is (ms unless said); each is computed from the table and the keys.
FEATURES: dict[str, str] = {
    "layers_ms": "sum of the table's mean of the network's layers (ms)",
    "call_ms": "the table's per-network call overhead (ms)",
    "layers": "number of layers (count: its coefficient is ms per layer)",
    "weights_mb": "float32 weights of the layers in MB, from the keys (cache misses: a network's "
    "weights outgrow the caches a layer alone keeps its own in)",
}
DEFAULT_FEATURES = ("layers_ms", "call_ms", "layers", "weights_mb")
#: a fit needs this many networks per feature (and at least MIN_FIT_NETWORKS) to fit signal,
#: not the noise of a few measurements
NETWORKS_PER_FEATURE = 4
MIN_FIT_NETWORKS = 12


class _Table(Protocol):
    @property
    def overhead_ms(self) -> float: ...

    def query(self, key: str) -> float: ...


def minimum_networks(n_features: int = len(DEFAULT_FEATURES)) -> int:
    """Fewest measured networks a correction of ``n_features`` features is fitted on."""
    return max(MIN_FIT_NETWORKS, NETWORKS_PER_FEATURE * n_features)


def feature_values(
    table: _Table, keys: Sequence[str], names: Sequence[str] = DEFAULT_FEATURES
) -> list[float]:
    """The features ``names`` of the network made of layers ``keys`` under ``table``."""
    out = []
    for name in names:
        if name == "layers_ms":
            out.append(math.fsum(table.query(k) for k in keys))
        elif name == "call_ms":
            out.append(float(table.overhead_ms))
        elif name == "layers":
            out.append(float(len(keys)))
        elif name == "weights_mb":
            out.append(4e-6 * sum(key_weights(k) for k in keys))
        else:
            raise LatencyTableError(
                f"latency correction feature {name!r} is unknown (allowed: {', '.join(FEATURES)})"
            )
    return out


def key_weights(key: str) -> int:
    """Weights (convolution / linear, BN folded) of the layer ``key`` describes; 0 for a key of
    another kind (its time is in the table either way)."""
    from dynofa_ros.search.lut import parse_key

    k = parse_key(key)
    cin = k.input_shape[-1]
    cout = k.output_shape[-1]
    if k.kind == "Conv":
        return cin * cout * 9
    if k.kind in ("Conv_1", "Conv_2", "Logits"):
        return cin * cout
    if k.kind == "expanded_conv":
        mid, ks = k.fields["expand"], k.fields["kernel"]
        w = (cin * mid if mid != cin else 0) + mid * ks * ks + mid * cout
        if k.fields["se"]:
            w += 2 * mid * max(8, mid // 4)
        return w
    return 0


def nnls_relative(rows: Sequence[Sequence[float]], targets: Sequence[float]) -> list[float]:
    """Non-negative coefficients ``c`` minimising ``sum(((row . c) - y) / y) ** 2``.

    Exact by enumeration of the active set: with a handful of features (2**k - 1 least-squares
    solves of k columns) this is simpler and as exact as Lawson-Hanson."""
    import numpy as np

    a = np.asarray(rows, dtype=float)
    y = np.asarray(targets, dtype=float)
    if a.ndim != 2 or len(a) != len(y) or len(y) == 0:
        raise ValueError("nnls_relative: rows and targets must be non-empty and the same length")
    if (y <= 0).any() or not np.isfinite(a).all() or not np.isfinite(y).all():
        raise ValueError("nnls_relative: targets must be positive and everything finite")
    aw, yw = a / y[:, None], np.ones_like(y)
    k = a.shape[1]
    best: tuple[float, np.ndarray] | None = None
    for size in range(1, k + 1):
        for cols in itertools.combinations(range(k), size):
            sub = aw[:, cols]
            x, *_ = np.linalg.lstsq(sub, yw, rcond=None)
            if (x < 0).any():
                continue
            resid = float(np.sum((sub @ x - yw) ** 2))
            if best is None or resid < best[0] - 1e-15:
                full = np.zeros(k)
                full[list(cols)] = x
                best = (resid, full)
    if best is None:  # every non-empty subset needs a negative coefficient: predict nothing
        return [0.0] * k
    return [float(v) for v in best[1]]


@dataclass(frozen=True)
class LatencyCorrection:
    """``predict = sum(coefficients[i] * feature[i])``; see the module docstring."""

    features: tuple[str, ...]
    coefficients: tuple[float, ...]
    tables_sha256: Mapping[str, str] = field(default_factory=dict)  # resolution -> file hash
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.features) != len(self.coefficients) or not self.features:
            raise LatencyTableError(
                f"latency correction: {len(self.features)} features but "
                f"{len(self.coefficients)} coefficients"
            )
        for name, c in zip(self.features, self.coefficients, strict=True):
            if name not in FEATURES:
                raise LatencyTableError(
                    f"latency correction feature {name!r} is unknown "
                    f"(allowed: {', '.join(FEATURES)})"
                )
            if not math.isfinite(c) or c < 0:
                raise LatencyTableError(
                    f"latency correction coefficient of {name!r} is {c!r} (must be finite, >= 0)"
                )

    def predict(self, table: _Table, keys: Sequence[str]) -> float:
        values = feature_values(table, list(keys), self.features)
        return math.fsum(c * v for c, v in zip(self.coefficients, values, strict=True))

    # ----------------------------------------------------------------------------- file I/O
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CORRECTION_FORMAT,
            "version": CORRECTION_VERSION,
            "model": "predicted_ms = sum(coefficient * feature)",
            "features": {n: FEATURES[n] for n in self.features},
            "coefficients": dict(zip(self.features, self.coefficients, strict=True)),
            "tables_sha256": dict(self.tables_sha256),
            "provenance": dict(self.provenance),
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        p = Path(directory) / CORRECTION_FILE
        atomic_write_text(p, json.dumps(self.to_dict(), indent=2) + "\n")
        return p

    @classmethod
    def from_dict(cls, doc: Any, source: str = "latency correction") -> LatencyCorrection:
        if not isinstance(doc, Mapping):
            raise LatencyTableError(f"{source}: not a JSON object")
        if doc.get("format") != CORRECTION_FORMAT or doc.get("version") != CORRECTION_VERSION:
            raise LatencyTableError(
                f"{source}: format {doc.get('format')!r} version {doc.get('version')!r} is not "
                f"{CORRECTION_FORMAT!r} version {CORRECTION_VERSION}"
            )
        coeffs = doc.get("coefficients")
        if not isinstance(coeffs, Mapping) or not coeffs:
            raise LatencyTableError(f"{source}: 'coefficients' must be a non-empty object")
        try:
            values = tuple(float(v) for v in coeffs.values())
        except (TypeError, ValueError):
            raise LatencyTableError(f"{source}: 'coefficients' must be numbers") from None
        sha = doc.get("tables_sha256") or {}
        if not isinstance(sha, Mapping):
            raise LatencyTableError(f"{source}: 'tables_sha256' must be an object")
        try:
            return cls(
                tuple(str(k) for k in coeffs),
                values,
                {str(k): str(v) for k, v in sha.items()},
                dict(doc.get("provenance") or {}),
            )
        except LatencyTableError as exc:
            raise LatencyTableError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyCorrection:
        p = Path(path)
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise LatencyTableError(
                f"cannot read latency correction {p}: {exc.strerror or exc}"
            ) from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LatencyTableError(f"latency correction {p} is not valid JSON ({exc})") from exc
        return cls.from_dict(doc, str(p))

    def check_tables(self, hashes: Mapping[int, str], where: str) -> None:
        """Refuse tables other than those this correction was fitted on."""
        for r, digest in hashes.items():
            fitted = self.tables_sha256.get(str(r))
            if fitted is not None and fitted != digest:
                raise LatencyTableError(
                    f"{where}/{CORRECTION_FILE} was fitted on another {r}_lookup_table.yaml "
                    "(the table changed since): run `dynofa profile` again, or delete the "
                    "correction to use the table alone"
                )


def file_sha256(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fit_correction(
    samples: Iterable[tuple[_Table, Sequence[str], float]],
    *,
    features: Sequence[str] = DEFAULT_FEATURES,
    tables_sha256: Mapping[str, str] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> LatencyCorrection:
    """Fit on ``(table, layer keys, measured ms)`` of whole networks; refuses too few of them
    (:func:`minimum_networks`) with a one-line :class:`LatencyTableError`."""
    data = list(samples)
    need = minimum_networks(len(features))
    if len(data) < need:
        raise LatencyTableError(
            f"{len(data)} measured network(s) are too few to fit the latency correction "
            f"({len(features)} features need at least {need}; with fewer it would fit noise)"
        )
    rows = [feature_values(t, list(k), features) for t, k, _ in data]
    measured = [float(m) for _, _, m in data]
    if any(not math.isfinite(m) or m <= 0 for m in measured):
        raise LatencyTableError("latency correction: every measured latency must be > 0 ms")
    coeffs = nnls_relative(rows, measured)
    return LatencyCorrection(
        tuple(features),
        tuple(coeffs),
        dict(tables_sha256 or {}),
        dict(provenance or {}),
    )
