"""Datasets: IDX files (Fashion-MNIST) and ImageFolder trees, a fixed validation split, and the
one preprocessing function both training and ``dynofa infer`` use.

Images are kept in memory as ``uint8`` tensors ``(N, C, H, W)`` (Fashion-MNIST is 47 MB); batches
are augmented, resized to the sub-network's resolution and normalised on the fly in torch.
Image files are decoded with OpenCV (``torchvision.io`` is not available on this torch build).
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dynofa_ros.errors import DynofaError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")
VALIDATION_SEED = 20240611  # fixed: the validation split never depends on the training seed


class DataError(DynofaError):
    """A dataset that cannot be read; the message names the file."""


@dataclass
class ImageSet:
    """Images ``uint8 (N, C, H, W)`` with labels ``int64 (N,)`` and class names."""

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.numel())

    def subset(self, index: Tensor) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index], self.classes)


# ------------------------------------------------------------------------------------ IDX
_IDX_DTYPES: dict[int, type[np.generic] | np.dtype[Any]] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (optionally gzipped, recognised by its magic bytes)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read IDX file {p}: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"IDX file {p} is not valid gzip ({exc}); is it truncated?") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{p} is not an IDX file (bad magic number)")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {p} is truncated (header)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - header != count * dtype.itemsize:
        raise DataError(
            f"IDX file {p} holds {len(raw) - header} data bytes, its header announces "
            f"{count * dtype.itemsize}; is it truncated?"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DataError(f"no {stem}[.gz] in {directory}")


def load_idx_pair(
    images: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    classes: Sequence[str] | None = None,
) -> ImageSet:
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim != 4:
        raise DataError(f"IDX images {images} must be 3-D or 4-D, got shape {x.shape}")
    if x.dtype != np.uint8:
        raise DataError(f"IDX images {images} must be uint8, got {x.dtype}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(
            f"IDX labels {labels} do not match images {images} ({y.shape} vs {x.shape})"
        )
    n_classes = int(y.max()) + 1
    names = tuple(classes) if classes is not None else tuple(str(i) for i in range(n_classes))
    if len(names) < n_classes:
        raise DataError(f"{labels} has label {n_classes - 1} but only {len(names)} class names")
    return ImageSet(torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64)), names)


def load_fashion_mnist(
    root: str | os.PathLike[str] = FASHION_MNIST_DIR, split: str = "train"
) -> ImageSet:
    """``split``: ``train`` (60000) or ``test`` (10000); files gzipped or not."""
    d = Path(root)
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    return load_idx_pair(
        _find(d, f"{prefix}-images-idx3-ubyte"),
        _find(d, f"{prefix}-labels-idx1-ubyte"),
        FASHION_MNIST_LABELS,
    )


# ------------------------------------------------------------------------------ ImageFolder
def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file with OpenCV: ``uint8`` ``(H, W)`` grey or ``(H, W, 3)`` BGR."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise DataError(f"cannot read image {p}: no such file")
    data = np.fromfile(p, dtype=np.uint8)
    img: np.ndarray | None = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise DataError(f"cannot decode image {p} (not an image OpenCV can read, or truncated)")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DataError(f"image {p} has unsupported sample type {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    return img


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """Grey ``(H, W)`` or BGR ``(H, W, 3)`` to ``channels`` (1: grey, 3: RGB), ``(H, W, C)``."""
    import cv2

    if channels == 1:
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        return img[:, :, None]
    if channels == 3:
        if img.ndim == 2:
            return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise ValueError(f"networks with {channels} input channels are not supported (1 or 3)")


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(H, W[, C])`` to ``size x size``: bilinear (half-pixel centres, what training's
    ``F.interpolate(..., mode='bilinear')`` does) unless shrinking by more than 2x, where area
    averaging avoids aliasing."""
    import cv2

    h, w = img.shape[:2]
    if (h, w) == (size, size):
        out = img
    else:
        interp = cv2.INTER_AREA if min(h, w) > 2 * size else cv2.INTER_LINEAR
        out = cv2.resize(img, (size, size), interpolation=interp)
    if out.ndim == 2:
        out = out[:, :, None]
    return out


def load_image_folder(
    root: str | os.PathLike[str], channels: int, size: int, classes: Sequence[str] | None = None
) -> ImageSet:
    """An ImageFolder tree (``root/<class>/<image>``), decoded with OpenCV and resized to
    ``size`` (the largest resolution of the network) once, kept as ``uint8`` in memory."""
    r = Path(root)
    if not r.is_dir():
        raise DataError(f"image folder {r} does not exist")
    names = (
        tuple(classes)
        if classes is not None
        else tuple(sorted(p.name for p in r.iterdir() if p.is_dir()))
    )
    if not names:
        raise DataError(f"image folder {r} has no class sub-folders")
    images, labels = [], []
    for label, name in enumerate(names):
        folder = r / name
        if not folder.is_dir():
            raise DataError(f"image folder {r} has no sub-folder for class {name!r}")
        for f in sorted(folder.rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                img = resize_image(to_channels(read_image(f), channels), size)
                images.append(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))))
                labels.append(label)
    if not images:
        raise DataError(f"image folder {r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return ImageSet(torch.stack(images), torch.tensor(labels, dtype=torch.int64), names)


# ------------------------------------------------------------------------------------ splits
def split_validation(
    full: ImageSet, n_val: int, seed: int = VALIDATION_SEED
) -> tuple[ImageSet, ImageSet]:
    """A fixed (seeded) split of a training set into (train, validation)."""
    if not 0 < n_val < len(full):
        raise ValueError(f"validation size {n_val} must be between 1 and {len(full) - 1}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(full), generator=g)
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    return full.subset(train_idx), full.subset(val_idx)


def fashion_mnist_splits(
    root: str | os.PathLike[str] = FASHION_MNIST_DIR, n_val: int = 5000
) -> tuple[ImageSet, ImageSet, ImageSet]:
    """(train 55000, validation 5000 carved from the training set, test 10000)."""
    train, val = split_validation(load_fashion_mnist(root, "train"), n_val)
    return train, val, load_fashion_mnist(root, "test")


# ------------------------------------------------------------------------- batches in torch
def normalise(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def prepare(images: Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``uint8 (B, C, H, W)`` → float (torch's default dtype, float32 unless changed),
    resized to ``size`` (bilinear), normalised."""
    x = images.to(torch.get_default_dtype()).div_(255.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return normalise(x, mean, std)


def augment(images: Tensor, gen: torch.Generator, pad: int = 2, flip: bool = True) -> Tensor:
    """Random translation by up to ``pad`` pixels (zero fill) and horizontal flip, per image."""
    b, _, h, w = images.shape
    if pad > 0:
        padded = F.pad(images, (pad, pad, pad, pad))
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        rows = dy.view(b, 1) + torch.arange(h).view(1, h)  # (B, H)
        cols = dx.view(b, 1) + torch.arange(w).view(1, w)  # (B, W)
        bi = torch.arange(b).view(b, 1, 1)
        out = padded.permute(0, 2, 3, 1)[bi, rows.view(b, h, 1), cols.view(b, 1, w)]
        images = out.permute(0, 3, 1, 2).contiguous()
    if flip:
        mask = torch.rand(b, generator=gen) < 0.5
        images = torch.where(mask.view(b, 1, 1, 1), images.flip(3), images)
    return images


def iterate(
    data: ImageSet,
    batch_size: int,
    *,
    shuffle: bool = False,
    gen: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """``(uint8 images, labels)`` batches."""
    n = len(data)
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i : i + batch_size]
        yield data.images[idx], data.labels[idx]


# ------------------------------------------------------------- training batches (any rank)
def step_seed(seed: int, epoch: int, step: int) -> int:
    """Seed of the augmentation of one global batch: a function of (seed, epoch, step) only,
    so a resumed run, any number of ranks and any number of loader workers draw the same."""
    return ((seed * 1_000_003 + epoch) * 1_000_033 + step) % (2**63)


class ShardedBatches(torch.utils.data.Dataset[tuple[Tensor, Tensor]]):
    """Item ``i``: global batch ``i`` of an epoch (``batch_size`` images in the seeded epoch
    order, augmented with :func:`step_seed`), of which this rank keeps rows
    ``[rank * b, (rank + 1) * b)`` with ``b = batch_size // world_size``.

    Every rank augments the whole global batch (``uint8``, cheap next to the network) and keeps
    its rows, so the union over ranks is exactly the single-process batch."""

    def __init__(
        self,
        data: ImageSet,
        batch_size: int,
        *,
        seed: int,
        epoch: int,
        pad: int = 2,
        flip: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} ranks")
        self.data = data
        self.batch_size = batch_size
        self.seed, self.epoch = seed, epoch
        self.pad, self.flip = pad, flip
        self.rows = slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        self.order = torch.randperm(len(data), generator=gen)

    def __len__(self) -> int:
        return len(self.data) // self.batch_size

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        gen = torch.Generator().manual_seed(step_seed(self.seed, self.epoch, i))
        images = augment(self.data.images[idx], gen, self.pad, self.flip)
        return images[self.rows].contiguous(), self.data.labels[idx][self.rows].contiguous()


def batch_loader(
    batches: ShardedBatches, workers: int = 0, pin_memory: bool = False
) -> torch.utils.data.DataLoader[tuple[Tensor, Tensor]]:
    """A loader over :class:`ShardedBatches` (already batched): ``workers`` processes prepare
    the next batches while the device trains; pinned memory makes the copy to a GPU
    asynchronous."""
    if workers < 0:
        raise ValueError(f"--workers must be >= 0, got {workers}")
    return torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers else None,
    )
