"""Accuracy predictor: a small MLP over a one-hot architecture encoding, as in once-for-all.

:class:`AccuracyPredictor` has exactly the ``state_dict`` layout of once-for-all's
``ofa.nas.accuracy_predictor.AccuracyPredictor`` (``layers.{0,1,2}.0.weight|bias`` — three
Linear+ReLU layers of ``hidden_size`` (400) units —, ``layers.3.weight`` without bias, and a
``base_acc`` scalar added to the output), and :class:`ArchEncoder` reproduces the encodings its
weights expect:

* ``"ofa-nas"`` (``ofa.nas.accuracy_predictor.MobileNetArchEncoder``): one-hot resolution first,
  then for each of the 20 blocks one-hot kernel size, then for each block one-hot expand ratio;
  blocks beyond a stage's depth are all zeros (depth is implied);
* ``"ofa-tutorial"`` (the published ``acc_predictor.pth`` of once-for-all's tutorial, a plain
  ``nn.Sequential`` of 128 inputs): 60 kernel-size bits, 60 expand bits, then 8 resolution bits for
  112..224 step 16. Its final layer's bias is loaded as ``base_acc`` (the same function).

Outputs are top-1 accuracy as a fraction in [0, 1] (once-for-all's convention). Predictor files are
safetensors with the encoder and training report in the JSON metadata (no pickle); once-for-all's
``.pth`` state dicts are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

from dynofa_ros.fileio import atomic_path
from dynofa_ros.search.errors import PredictorError

N_STAGES = 5
MAX_DEPTH = 4
N_BLOCKS = N_STAGES * MAX_DEPTH
FORMAT = "dynofa-accuracy-predictor"
VERSION = 1
OFA_RESOLUTIONS = tuple(range(128, 225, 4))  # once-for-all's MBv3 predictor / search space
TUTORIAL_RESOLUTIONS = tuple(range(112, 225, 16))  # r_onehot[(r - 112) // 16], 8 bits


# ------------------------------------------------------------------------------------ encoding
@dataclass(frozen=True)
class ArchEncoder:
    """One-hot encoding of (ks, e, d, r) in once-for-all's layout (see module docstring)."""

    image_size_list: tuple[int, ...] = OFA_RESOLUTIONS
    ks_list: tuple[int, ...] = (3, 5, 7)
    expand_list: tuple[int, ...] = (3, 4, 6)
    depth_list: tuple[int, ...] = (2, 3, 4)
    layout: str = "ofa-nas"  # "ofa-nas" (resolution bits first) | "ofa-tutorial" (last)

    def __post_init__(self) -> None:
        if self.layout not in ("ofa-nas", "ofa-tutorial"):
            raise PredictorError(f"encoder layout {self.layout!r} is not ofa-nas / ofa-tutorial")
        for name in ("image_size_list", "ks_list", "expand_list", "depth_list"):
            values = tuple(int(v) for v in getattr(self, name))
            if not values or len(set(values)) != len(values):
                raise PredictorError(f"encoder field {name!r} must be distinct values: {values}")
            object.__setattr__(self, name, values)

    @property
    def max_depth(self) -> int:
        return max(self.depth_list)

    @property
    def n_blocks(self) -> int:
        return N_STAGES * self.max_depth

    @property
    def n_dim(self) -> int:
        return len(self.image_size_list) + self.n_blocks * (
            len(self.ks_list) + len(self.expand_list)
        )

    def _offsets(self) -> tuple[int, int, int]:
        nk, ne = self.n_blocks * len(self.ks_list), self.n_blocks * len(self.expand_list)
        if self.layout == "ofa-nas":
            return len(self.image_size_list), len(self.image_size_list) + nk, 0  # k, e, r
        return 0, nk, nk + ne

    def encode(self, arch: Any) -> np.ndarray:
        """Feature vector of a ``SubnetConfig`` or a dict with ks / e / d and r (or image_size,
        or once-for-all tutorial's ``r: [r]``)."""
        if isinstance(arch, Mapping):
            ks, e, d = arch["ks"], arch["e"], arch["d"]
            r = arch["image_size"] if "image_size" in arch else arch["r"]
            if isinstance(r, (list, tuple)):
                r = r[0]
        else:
            ks, e, d, r = arch.ks, arch.e, arch.d, arch.r
        k_off, e_off, r_off = self._offsets()
        feature = np.zeros(self.n_dim, dtype=np.float32)
        nk, ne = len(self.ks_list), len(self.expand_list)
        for i in range(self.n_blocks):
            stage, j = divmod(i, self.max_depth)
            if j < d[stage]:
                try:
                    feature[k_off + i * nk + self.ks_list.index(ks[i])] = 1
                    feature[e_off + i * ne + self.expand_list.index(e[i])] = 1
                except ValueError:
                    raise PredictorError(
                        f"block {i}: kernel {ks[i]} / expand {e[i]} is outside the encoder's "
                        f"{list(self.ks_list)} / {list(self.expand_list)}"
                    ) from None
        feature[r_off + self.resolution_bit(int(r))] = 1
        return feature

    def resolution_bit(self, r: int) -> int:
        """Index of resolution ``r`` among the resolution bits, as once-for-all encodes it.

        ``ofa-nas`` (``MobileNetArchEncoder``): only the listed sizes. ``ofa-tutorial``
        (``spec2feats``): bit ``(r - first) // step``, so 220 shares 208's bit; once-for-all's
        code wraps a negative index silently and fails past the last bit, here both are errors."""
        sizes = self.image_size_list
        if self.layout == "ofa-tutorial" and len(sizes) > 1:
            step = sizes[1] - sizes[0]
            bit = (r - sizes[0]) // step
            if not 0 <= bit < len(sizes):
                raise PredictorError(
                    f"resolution {r} is outside what the predictor encodes ({sizes[0]}.."
                    f"{sizes[0] + len(sizes) * step - 1}, one bit per {step} px as "
                    "once-for-all's tutorial predictor)"
                )
            return bit
        if r not in sizes:
            raise PredictorError(f"resolution {r} is not one the predictor encodes ({list(sizes)})")
        return sizes.index(r)

    def check_resolutions(self, resolutions: Sequence[int], source: str = "predictor") -> None:
        """Raise naming ``source`` when a resolution of the search cannot be encoded."""
        for r in resolutions:
            try:
                self.resolution_bit(int(r))
            except PredictorError as exc:
                raise PredictorError(f"{source}: {exc}") from None

    def encode_many(self, archs: Sequence[Any]) -> np.ndarray:
        if not archs:
            return np.zeros((0, self.n_dim), dtype=np.float32)
        return np.stack([self.encode(a) for a in archs])

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ArchEncoder:
        try:
            return cls(
                image_size_list=tuple(raw["image_size_list"]),
                ks_list=tuple(raw["ks_list"]),
                expand_list=tuple(raw["expand_list"]),
                depth_list=tuple(raw["depth_list"]),
                layout=str(raw.get("layout", "ofa-nas")),
            )
        except (KeyError, TypeError) as exc:
            raise PredictorError(f"encoder description is incomplete: {exc}") from exc

    @classmethod
    def for_space(cls, space: Any) -> ArchEncoder:
        """The encoder of a ``SearchSpace`` (ofa-nas layout)."""
        return cls(
            image_size_list=tuple(space.resolutions),
            ks_list=tuple(space.ks_list),
            expand_list=tuple(space.expand_list),
            depth_list=tuple(space.depth_list),
        )


@dataclass(frozen=True)
class SpaceEncoder:
    """The encoding a non-MobileNetV3 search space defines itself (``space.encode(cfg)``, e.g.
    the ViT's one-hot embed / depth / per-layer heads and MLP ratio); stored in predictor files
    as the space's kind and value lists."""

    space: Any
    layout: str = "space"

    @property
    def n_dim(self) -> int:
        return len(self.space.encode(self.space.largest()))

    def encode(self, arch: Any) -> np.ndarray:
        if isinstance(arch, Mapping):
            arch = self.space.config_from_dict(arch)
        try:
            return np.asarray(self.space.encode(self.space.validate(arch)), dtype=np.float32)
        except ValueError as exc:
            raise PredictorError(f"cannot encode {arch}: {exc}") from None

    def encode_many(self, archs: Sequence[Any]) -> np.ndarray:
        if not archs:
            return np.zeros((0, self.n_dim), dtype=np.float32)
        return np.stack([self.encode(a) for a in archs])

    def to_dict(self) -> dict[str, Any]:
        return {"layout": self.layout, "kind": self.space.kind, "space": self.space.to_dict()}


def encoder_for_space(space: Any) -> ArchEncoder | SpaceEncoder:
    """The predictor encoding of a super-network's search space: its own when it defines one
    (``space.encode``), else once-for-all's MobileNetV3 layout."""
    if hasattr(space, "encode"):
        return SpaceEncoder(space)
    return ArchEncoder.for_space(space)


def encoder_from_dict(raw: Mapping[str, Any]) -> ArchEncoder | SpaceEncoder:
    """The encoder a predictor file's metadata describes."""
    if raw.get("layout") != "space":
        return ArchEncoder.from_dict(raw)
    from dynofa_ros.supernet.vit_config import KIND, ViTSpace

    if raw.get("kind") != KIND:
        raise PredictorError(f"predictor encoder kind {raw.get('kind')!r} is unknown ({KIND!r})")
    try:
        return SpaceEncoder(ViTSpace.from_dict(raw["space"]))
    except (KeyError, ValueError) as exc:
        raise PredictorError(f"predictor encoder description is invalid: {exc}") from exc


# ----------------------------------------------------------------------------------- the MLP
class AccuracyPredictor(nn.Module):
    """once-for-all's AccuracyPredictor (same parameters and names), CPU, no checkpoint I/O."""

    def __init__(
        self, encoder: ArchEncoder | SpaceEncoder, hidden_size: int = 400, n_layers: int = 3
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        layers: list[nn.Module] = []
        for i in range(n_layers):
            layers.append(
                nn.Sequential(
                    nn.Linear(encoder.n_dim if i == 0 else hidden_size, hidden_size),
                    nn.ReLU(inplace=True),
                )
            )
        layers.append(nn.Linear(hidden_size, 1, bias=False))
        self.layers = nn.Sequential(*layers)
        self.base_acc = nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.layers(x).squeeze(-1) + self.base_acc
        return out

    @torch.no_grad()
    def predict(self, archs: Sequence[Any]) -> np.ndarray:
        """Predicted top-1 (fraction) of each architecture."""
        if len(archs) == 0:
            return np.zeros(0)
        was = self.training
        self.eval()
        try:
            x = torch.from_numpy(self.encoder.encode_many(archs))
            out: np.ndarray = self(x).double().numpy()
            return out
        finally:
            self.train(was)

    def load_ofa_state_dict(self, state: Mapping[str, Tensor], source: str = "state dict") -> None:
        """Load once-for-all's AccuracyPredictor state dict (or the tutorial's Sequential, whose
        keys are ``0.*, 2.*, 4.*, 6.*``), naming the first key that does not fit."""
        state = dict(state)
        if "0.weight" in state and "layers.0.0.weight" not in state:
            state = _tutorial_to_nas(state, self.n_layers, source)
        expected = self.state_dict()
        missing = [k for k in expected if k not in state]
        extra = [k for k in state if k not in expected]
        if missing or extra:
            raise PredictorError(
                f"{source}: not a once-for-all AccuracyPredictor state dict with {self.n_layers} "
                f"layers (missing {missing[:2]}, unexpected {extra[:2]})"
            )
        for k, t in state.items():
            if tuple(t.shape) != tuple(expected[k].shape):
                raise PredictorError(
                    f"{source}: key {k!r} has shape {tuple(t.shape)}, this predictor needs "
                    f"{tuple(expected[k].shape)} (encoder dimension {self.encoder.n_dim}, "
                    f"hidden {self.hidden_size})"
                )
        self.load_state_dict({k: v.float() for k, v in state.items()})


def _tutorial_to_nas(state: Mapping[str, Tensor], n_layers: int, source: str) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for i in range(n_layers):
        for p in ("weight", "bias"):
            if f"{2 * i}.{p}" not in state:
                raise PredictorError(f"{source}: missing key '{2 * i}.{p}'")
            out[f"layers.{i}.0.{p}"] = state[f"{2 * i}.{p}"]
    last = 2 * n_layers
    if f"{last}.weight" not in state:
        raise PredictorError(f"{source}: missing key '{last}.weight'")
    out[f"layers.{n_layers}.weight"] = state[f"{last}.weight"]
    bias = state.get(f"{last}.bias")
    out["base_acc"] = bias.reshape(1) if bias is not None else torch.zeros(1)
    known = {f"{2 * i}.{p}" for i in range(n_layers + 1) for p in ("weight", "bias")}
    extra = sorted(set(state) - known)
    if extra:
        raise PredictorError(f"{source}: unexpected key {extra[0]!r}")
    return out


def load_ofa_predictor(
    path: str | os.PathLike[str],
    encoder: ArchEncoder | None = None,
    hidden_size: int = 400,
    resolutions: Sequence[int] | None = None,
) -> AccuracyPredictor:
    """A predictor from once-for-all's ``.pth`` (``{"state_dict": ...}`` wrapper accepted).

    Without ``encoder``: the tutorial's 128-input file gets the ``ofa-tutorial`` encoding, any
    other the ``ofa-nas`` encoding of once-for-all's MBv3 space: ``resolutions`` (the
    ``image_size_list`` it was trained with), by default 128..224 step 4; the file's input width
    must fit (20 blocks x 6 bits + one bit per resolution), else the error says how many."""
    p = Path(path)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise PredictorError(f"cannot read predictor {p}: no such file") from exc
    except Exception as exc:
        raise PredictorError(f"{p}: not a readable PyTorch state dict ({exc})") from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise PredictorError(f"{p}: does not hold a state dict (name -> tensor)")
    if encoder is None:
        first = obj.get("0.weight", obj.get("layers.0.0.weight"))
        tutorial = "0.weight" in obj and first is not None and first.shape[1] == 128
        if tutorial:
            encoder = ArchEncoder(image_size_list=TUTORIAL_RESOLUTIONS, layout="ofa-tutorial")
        else:
            encoder = ArchEncoder(image_size_list=tuple(resolutions or OFA_RESOLUTIONS))
            n_in = int(first.shape[1]) if first is not None and first.ndim == 2 else None
            if n_in is not None and n_in != encoder.n_dim:
                n_res = n_in - (encoder.n_dim - len(encoder.image_size_list))
                raise PredictorError(
                    f"{p}: the predictor's first layer takes {n_in} inputs; once-for-all's "
                    f"MBv3 encoding with {len(encoder.image_size_list)} resolutions needs "
                    f"{encoder.n_dim}"
                    + (
                        f" (this file encodes {n_res} resolutions: give them as "
                        "--predictor-resolutions)"
                        if n_res > 0
                        else " (not a once-for-all MBv3 predictor)"
                    )
                )
    pred = AccuracyPredictor(encoder, hidden_size=hidden_size)
    pred.load_ofa_state_dict(obj, str(p))
    return pred.eval()


# ------------------------------------------------------------------------------ rank metrics
def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), 1-based."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's rank correlation (Pearson on average ranks)."""
    rx, ry = _ranks(np.asarray(x)), _ranks(np.asarray(y))
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def kendall_tau(x: ArrayLike, y: ArrayLike) -> float:
    """Kendall's tau-b (ties accounted for), O(n²): fine for hundreds of samples."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(a)
    if n < 2:
        return float("nan")
    i, j = np.triu_indices(n, k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    concordant_minus_discordant = float(np.sum(da * db))
    n0 = len(i)
    n1 = n0 - float(np.sum(da == 0))
    n2 = n0 - float(np.sum(db == 0))
    if n1 == 0 or n2 == 0:
        return float("nan")
    return concordant_minus_discordant / math.sqrt(n1 * n2)


# ------------------------------------------------------------------------------------ training
@dataclass
class FitReport:
    n_train: int
    n_test: int
    epochs: int
    train_rmse: float
    test_rmse: float
    test_spearman: float
    test_kendall: float
    test_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"accuracy predictor: {self.n_train} training / {self.n_test} held-out sub-networks; "
            f"held-out RMSE {self.test_rmse * 100:.2f} pts, Spearman {self.test_spearman:.3f}, "
            f"Kendall {self.test_kendall:.3f}"
        )


def fit_predictor(
    archs: Sequence[Any],
    accuracies: Sequence[float],
    encoder: ArchEncoder | SpaceEncoder,
    *,
    test_fraction: float = 0.2,
    hidden_size: int = 400,
    epochs: int = 300,
    lr: float = 1e-3,
    weight_decay: float = 0.05,  # L2 (Adam): the MLP is large for a few hundred samples
    seed: int = 0,
) -> tuple[AccuracyPredictor, FitReport]:
    """Train on measured (architecture, accuracy) pairs; report rank correlation on a held-out
    part. The returned predictor is retrained on all pairs after the held-out report."""
    if len(archs) != len(accuracies):
        raise PredictorError("need one accuracy per architecture")
    n = len(archs)
    if n < 10:
        raise PredictorError(f"need at least 10 measured sub-networks to fit a predictor, got {n}")
    y_all = np.asarray(accuracies, dtype=np.float32)
    x_all = encoder.encode_many(archs)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test = max(2, round(n * test_fraction)) if test_fraction > 0 else 0
    test_idx, train_idx = perm[:n_test], perm[n_test:]

    def train(idx: np.ndarray) -> tuple[AccuracyPredictor, float]:
        torch.manual_seed(seed)
        model = AccuracyPredictor(encoder, hidden_size=hidden_size)
        x = torch.from_numpy(x_all[idx])
        y = torch.from_numpy(y_all[idx])
        # train on standardised targets (accuracy differences are small), then fold the scale
        # into the last (bias-free) layer and the mean into base_acc: once-for-all's layout
        mean, std = float(y.mean()), max(float(y.std()) if len(idx) > 1 else 0.0, 1e-4)
        y_norm = (y - mean) / std
        opt = torch.optim.Adam(
            [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        gen = torch.Generator().manual_seed(seed)
        batch = min(128, len(idx))
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(idx), generator=gen)
            for s in range(0, len(idx), batch):
                b = order[s : s + batch]
                loss = torch.mean((model(x[b]) - y_norm[b]) ** 2)
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it untyped
                opt.step()
            sched.step()
        model.eval()
        last = model.layers[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():
            last.weight.mul_(std)
            model.base_acc.fill_(mean)
        with torch.no_grad():
            rmse = float(torch.sqrt(torch.mean((model(x) - y) ** 2)))
        return model, rmse

    ids = [getattr(a, "id", str(i)) for i, a in enumerate(archs)]
    if n_test:
        model, train_rmse = train(train_idx)
        with torch.no_grad():
            pred = model(torch.from_numpy(x_all[test_idx])).numpy()
        truth = y_all[test_idx]
        test_rmse = float(np.sqrt(np.mean((pred - truth) ** 2)))
        rho, tau = spearman(pred, truth), kendall_tau(pred, truth)
    else:
        train_rmse, test_rmse, rho, tau = float("nan"), float("nan"), float("nan"), float("nan")
    final, full_rmse = train(np.arange(n))
    report = FitReport(
        n_train=len(train_idx),
        n_test=n_test,
        epochs=epochs,
        train_rmse=train_rmse if n_test else full_rmse,
        test_rmse=test_rmse,
        test_spearman=rho,
        test_kendall=tau,
        test_ids=[ids[i] for i in test_idx],
    )
    return final, report


# ------------------------------------------------------------------------------------ file I/O
def save_predictor(
    path: str | os.PathLike[str],
    predictor: AccuracyPredictor,
    extra: Mapping[str, Any] | None = None,
) -> None:
    from safetensors.torch import save_file

    meta = {
        "format": FORMAT,
        "version": VERSION,
        "encoder": predictor.encoder.to_dict(),
        "hidden_size": predictor.hidden_size,
        "n_layers": predictor.n_layers,
        **dict(extra or {}),
    }
    tensors = {k: v.detach().contiguous().clone() for k, v in predictor.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"dynofa": json.dumps(meta)})


def load_predictor(path: str | os.PathLike[str]) -> tuple[AccuracyPredictor, dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    try:
        with safe_open(str(p), framework="pt") as fh:
            meta_text = (fh.metadata() or {}).get("dynofa")
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
    except FileNotFoundError as exc:
        raise PredictorError(f"cannot read predictor {p}: no such file") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        raise PredictorError(f"{p}: corrupt predictor file ({exc})") from exc
    if meta_text is None:
        raise PredictorError(f"{p}: no 'dynofa' metadata; not a dynofa predictor file")
    meta = json.loads(meta_text)
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise PredictorError(
            f"{p}: predictor format {meta.get('format')!r} version {meta.get('version')!r} is not "
            f"{FORMAT!r} version {VERSION}"
        )
    pred = AccuracyPredictor(
        encoder_from_dict(meta["encoder"]),
        hidden_size=int(meta["hidden_size"]),
        n_layers=int(meta["n_layers"]),
    )
    pred.load_ofa_state_dict(tensors, str(p))
    return pred.eval(), meta
