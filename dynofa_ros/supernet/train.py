"""Sandwich-rule training of the super-network with in-place distillation.

Each step trains, on one augmented batch, the largest sub-network (cross-entropy on the labels),
the smallest and ``n_random`` random ones (distillation from the largest's detached soft output,
mixed with cross-entropy by ``kd_ratio``), accumulating gradients, then takes one SGD step. Each
sub-network sees the batch at its own resolution (largest: the largest resolution, smallest: the
smallest, random ones: a random one).

Optional progressive shrinking: a list of phases ``name:epochs`` run in order, each restricting
which values are sampled: ``full`` (largest only), ``kernel`` (elastic kernel), ``depth`` (+ elastic
depth), ``expand`` (+ elastic expand ratio, the whole space).

Determinism: every random draw is a function of (seed, epoch, step): data order, augmentation,
sub-network sampling and dropout, so a run resumed from its last epoch checkpoint continues
exactly as the uninterrupted run. The resume state (weights, momentum buffers, epoch, log) is a
safetensors file written atomically after each epoch.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynofa_ros.fileio import atomic_path
from dynofa_ros.supernet.checkpoint import save_checkpoint
from dynofa_ros.supernet.config import SearchSpace, SubnetConfig
from dynofa_ros.supernet.data import ImageSet, augment, iterate, prepare
from dynofa_ros.supernet.evaluate import accuracy, calibrate_and_evaluate
from dynofa_ros.supernet.network import (
    AnyArchitecture,
    Supernet,
    architecture_kind,
    build_supernet,
)

PHASES = ("full", "kernel", "depth", "expand")
OPTIMIZERS = ("sgd", "adamw")
STATE_FORMAT = "dynofa-train-state"


@dataclass
class TrainOptions:
    arch: AnyArchitecture
    out: Path
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 4e-5
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    n_random: int = 1
    kd_ratio: float = 0.5
    phases: list[tuple[str, int]] = field(default_factory=list)  # empty: full space throughout
    seed: int = 0
    augment_pad: int = 2
    augment_flip: bool = True
    calib_images: int = 2000
    report_random: int = 6
    eval_every: int = 1
    eval_limit: int | None = None  # validation images per epoch evaluation (None: all)
    state_path: Path | None = None  # default: <out>.state.safetensors
    log_path: Path | None = None  # default: <out>.log.jsonl
    resume: bool = False
    init_from: Path | None = None  # start from this checkpoint's weights (fine-tuning)
    progress: bool = True
    command: str = ""
    optimizer: str = "sgd"  # "sgd" (Nesterov, the CNN's) or "adamw" (what a ViT needs)

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size <= 0 or self.lr <= 0:
            raise ValueError("epochs, batch size and learning rate must be positive")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"--optimizer {self.optimizer!r} is unknown (one of: {', '.join(OPTIMIZERS)})"
            )
        if self.n_random < 0:
            raise ValueError("--random must be >= 0")
        if not 0.0 <= self.kd_ratio <= 1.0:
            raise ValueError("--kd-ratio must be in [0, 1]")
        if self.phases and architecture_kind(self.arch) != "mobilenetv3":
            raise ValueError(
                f"--phases (progressive shrinking of kernel / depth / expand) applies to the "
                f"MobileNetV3 space only, not to a {architecture_kind(self.arch)!r} super-network"
            )
        if self.phases:
            names = [p for p, _ in self.phases]
            bad = [p for p in names if p not in PHASES]
            if bad:
                raise ValueError(f"unknown phase {bad[0]!r} (phases: {', '.join(PHASES)})")
            if sum(e for _, e in self.phases) != self.epochs:
                raise ValueError(
                    f"phase epochs add up to {sum(e for _, e in self.phases)}, --epochs is "
                    f"{self.epochs}"
                )
        self.out = Path(self.out)
        if self.state_path is None:
            self.state_path = self.out.with_name(self.out.name + ".state.safetensors")
        if self.log_path is None:
            self.log_path = self.out.with_name(self.out.name + ".log.jsonl")


def parse_phases(text: str) -> list[tuple[str, int]]:
    """``"kernel:3,depth:3,expand:6"`` → ``[("kernel", 3), ...]``."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, n = part.partition(":")
        if name not in PHASES or not n.isdigit() or int(n) <= 0:
            raise ValueError(
                f"bad phase {part!r}: expected NAME:EPOCHS with NAME one of {', '.join(PHASES)}"
            )
        out.append((name, int(n)))
    return out


def phase_space(space: SearchSpace, phase: str | None) -> dict[str, Sequence[int]]:
    """The value lists a phase samples from (keyword arguments of ``SearchSpace.sample``)."""
    if phase in (None, "expand"):
        return {}
    restrict: dict[str, Sequence[int]] = {
        "expand_list": [max(space.expand_list)],
    }
    if phase in ("full", "kernel"):
        restrict["depth_list"] = [max(space.depth_list)]
    if phase == "full":
        restrict["ks_list"] = [max(space.ks_list)]
    return restrict


def _restricted_extremes(space: Any, restrict: dict[str, Sequence[int]]) -> tuple[Any, Any]:
    if not restrict:
        return space.largest(), space.smallest()
    ks = restrict.get("ks_list", space.ks_list)
    e = restrict.get("expand_list", space.expand_list)
    d = restrict.get("depth_list", space.depth_list)
    small = SubnetConfig(
        ks=(min(ks),) * 20, e=(min(e),) * 20, d=(min(d),) * 5, r=min(space.resolutions)
    )
    return space.largest(), small


def phase_of_epoch(opts: TrainOptions, epoch: int) -> str | None:
    if not opts.phases:
        return None
    acc = 0
    for name, n in opts.phases:
        acc += n
        if epoch < acc:
            return name
    return opts.phases[-1][0]


def soft_cross_entropy(logits: Tensor, target_probs: Tensor) -> Tensor:
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(1).mean()


def make_optimizer(opts: TrainOptions, net: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(net, opts.weight_decay)
    if opts.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=opts.lr)
    return torch.optim.SGD(groups, lr=opts.lr, momentum=opts.momentum, nesterov=True)


def param_groups(net: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        if p.ndim > 1 and not name.endswith("_matrix"):
            decay.append(p)
        else:
            no_decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_at(opts: TrainOptions, step: int, steps_per_epoch: int) -> float:
    total = opts.epochs * steps_per_epoch
    warm = int(opts.warmup_epochs * steps_per_epoch)
    if step < warm:
        return opts.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return 0.5 * opts.lr * (1.0 + math.cos(math.pi * t))


# ------------------------------------------------------------------------------- resume state
def _state_prefix(key: str) -> str:
    """Key prefix of one optimizer state entry (SGD's momentum keeps its original name)."""
    return "momentum/" if key == "momentum_buffer" else f"optim/{key}/"


def save_state(
    opts: TrainOptions,
    net: Supernet,
    opt: torch.optim.Optimizer,
    epoch_done: int,
    history: list[dict[str, Any]],
) -> None:
    from safetensors.torch import save_file

    names = {id(p): n for n, p in net.named_parameters()}
    tensors = {f"model/{k}": v.detach().contiguous().clone() for k, v in net.state_dict().items()}
    for group in opt.param_groups:
        for p in group["params"]:
            for key, buf in opt.state.get(p, {}).items():
                if isinstance(buf, Tensor):
                    tensors[f"{_state_prefix(key)}{names[id(p)]}"] = (
                        buf.detach().contiguous().clone()
                    )
    meta = {
        "format": STATE_FORMAT,
        "epoch_done": epoch_done,
        "history": history,
        "arch": opts.arch.to_dict(),
        "seed": opts.seed,
        "epochs": opts.epochs,
    }
    assert opts.state_path is not None
    with atomic_path(opts.state_path) as tmp:
        save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)})


def load_state(
    opts: TrainOptions, net: Supernet, opt: torch.optim.Optimizer
) -> tuple[int, list[dict[str, Any]]]:
    from safetensors import safe_open

    from dynofa_ros.supernet.checkpoint import CheckpointError, check_state_dict, load_tensors

    assert opts.state_path is not None
    tensors = load_tensors(opts.state_path)
    with safe_open(str(opts.state_path), "pt") as fh:
        meta = json.loads((fh.metadata() or {}).get("state", "{}"))
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{opts.state_path}: not a training state file")
    if (
        meta.get("arch") != json.loads(json.dumps(opts.arch.to_dict()))
        or meta.get("seed") != opts.seed
        or meta.get("epochs") != opts.epochs
    ):
        raise CheckpointError(
            f"{opts.state_path}: saved by a run with another architecture, seed or epoch "
            f"count; remove it or drop --resume"
        )
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
    check_state_dict(net.state_dict(), weights, str(opts.state_path))
    net.load_state_dict(weights, strict=False)
    params = dict(net.named_parameters())
    for k, v in tensors.items():
        if k.startswith("momentum/"):
            key, name = "momentum_buffer", k[len("momentum/") :]
        elif k.startswith("optim/"):
            key, _, name = k[len("optim/") :].partition("/")
        else:
            continue
        if name not in params:
            raise CheckpointError(f"{opts.state_path}: unexpected key {k!r}")
        opt.state[params[name]][key] = v.clone()
    return int(meta["epoch_done"]), list(meta.get("history", []))


# ------------------------------------------------------------------------------------ training
def init_weights(net: Supernet, path: Path) -> None:
    """Load the weights of checkpoint ``path`` (same architecture) into ``net``: a new schedule
    on top of a trained super-network (fine-tuning, or continuing with more epochs)."""
    from dynofa_ros.supernet.checkpoint import CheckpointError, load_checkpoint

    ck = load_checkpoint(path)
    if ck.arch.to_dict() != net.arch.to_dict():
        raise CheckpointError(
            f"--init {path}: its architecture ({ck.arch.name}) differs from the preset being "
            f"trained ({net.arch.name})"
        )
    net.load_state_dict(ck.net.state_dict())


class JsonLog:
    def __init__(self, path: Path, append: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def report_configs(space: Any, seed: int, n_random: int) -> list[Any]:
    """Largest, smallest, the uniform middle and ``n_random`` seeded random sub-networks."""
    rng = random.Random(f"report-{seed}")
    # other families say what their middle is
    mid = _cnn_middle(space) if isinstance(space, SearchSpace) else space.middle()
    cfgs = [space.largest(), space.smallest(), mid]
    while len(cfgs) < 3 + n_random:
        c = space.sample(rng)
        if all(c.id != o.id for o in cfgs):
            cfgs.append(c)
    return cfgs


def _cnn_middle(space: SearchSpace) -> SubnetConfig:
    return SubnetConfig(
        ks=(sorted(space.ks_list)[len(space.ks_list) // 2],) * 20,
        e=(sorted(space.expand_list)[len(space.expand_list) // 2],) * 20,
        d=(sorted(space.depth_list)[len(space.depth_list) // 2],) * 5,
        r=sorted(space.resolutions)[len(space.resolutions) // 2],
    )


def train(
    opts: TrainOptions, train_set: ImageSet, val_set: ImageSet, test_set: ImageSet | None = None
) -> dict[str, Any]:
    """Train, write the checkpoint to ``opts.out`` (BN statistics of the reported sub-networks
    included) and return the summary stored in its metadata."""
    from tqdm import tqdm

    torch.manual_seed(opts.seed)
    net = build_supernet(opts.arch)
    # channels-last makes the depthwise weight gradient ~3x faster on CPU (oneDNN)
    net = net.to(memory_format=torch.channels_last)
    space = net.space
    opt = make_optimizer(opts, net)
    start_epoch, history = 0, []
    assert opts.state_path is not None and opts.log_path is not None
    if opts.init_from is not None:
        init_weights(net, opts.init_from)
    if opts.resume and opts.state_path.exists():
        start_epoch, history = load_state(opts, net, opt)
        print(f"resuming from {opts.state_path} after epoch {start_epoch}", file=sys.stderr)
    log = JsonLog(opts.log_path, append=opts.resume and start_epoch > 0)
    log.write(
        {
            "event": "start",
            "command": opts.command,
            "start_epoch": start_epoch,
            "train_images": len(train_set),
            "val_images": len(val_set),
            "threads": torch.get_num_threads(),
            "time": time.time(),
        }
    )
    steps_per_epoch = len(train_set) // opts.batch_size
    mean, std = opts.arch.mean, opts.arch.std
    t_start = time.time()
    for epoch in range(start_epoch, opts.epochs):
        phase = phase_of_epoch(opts, epoch)
        restrict = phase_space(space, phase)
        largest, smallest = _restricted_extremes(space, restrict)
        net.train()
        torch.manual_seed(opts.seed * 100003 + epoch)  # dropout
        gen = torch.Generator().manual_seed(opts.seed * 1000003 + epoch)
        batches = iterate(train_set, opts.batch_size, shuffle=True, gen=gen, drop_last=True)
        bar = tqdm(
            batches,
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{opts.epochs}",
            disable=not opts.progress,
            file=sys.stderr,
            leave=False,
        )
        sums = {"largest": 0.0, "smallest": 0.0, "random": 0.0, "acc_largest": 0.0}
        t_epoch = time.time()
        for i, (raw_images, labels) in enumerate(bar):
            step = epoch * steps_per_epoch + i
            lr = lr_at(opts, step, steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            images = augment(raw_images, gen, opts.augment_pad, opts.augment_flip)
            inputs: dict[int, Tensor] = {}

            def at(r: int, images: Tensor = images, inputs: dict[int, Tensor] = inputs) -> Tensor:
                if r not in inputs:
                    inputs[r] = prepare(images, r, mean, std).contiguous(
                        memory_format=torch.channels_last
                    )
                return inputs[r]

            rng = random.Random(f"{opts.seed}-{epoch}-{i}")
            opt.zero_grad(set_to_none=True)
            net.set_active(largest)
            out = net(at(largest.r))
            loss = F.cross_entropy(out, labels, label_smoothing=opts.label_smoothing)
            loss.backward()
            sums["largest"] += loss.item()
            sums["acc_largest"] += float((out.argmax(1) == labels).float().mean())
            teacher = F.softmax(out.detach(), dim=1)
            others = (
                []
                if phase == "full"
                else [smallest] + [space.sample(rng, **restrict) for _ in range(opts.n_random)]
            )
            for j, cfg in enumerate(others):
                net.set_active(cfg)
                out = net(at(cfg.r))
                loss = opts.kd_ratio * soft_cross_entropy(out, teacher)
                if opts.kd_ratio < 1:
                    loss = loss + (1 - opts.kd_ratio) * F.cross_entropy(
                        out, labels, label_smoothing=opts.label_smoothing
                    )
                loss.backward()
                sums["smallest" if j == 0 else "random"] += loss.item() / (
                    1 if j == 0 else max(1, opts.n_random)
                )
            opt.step()
            if i % 20 == 0:
                bar.set_postfix(
                    loss=f"{sums['largest'] / (i + 1):.3f}",
                    acc=f"{sums['acc_largest'] / (i + 1):.3f}",
                    lr=f"{lr:.4f}",
                )
            if i % 100 == 0:
                log.write(
                    {
                        "event": "step",
                        "epoch": epoch,
                        "step": step,
                        "lr": lr,
                        "loss_largest": sums["largest"] / (i + 1),
                        "loss_smallest": sums["smallest"] / (i + 1),
                        "loss_random": sums["random"] / (i + 1),
                        "elapsed_s": time.time() - t_start,
                    }
                )
        bar.close()
        record: dict[str, Any] = {
            "event": "epoch",
            "epoch": epoch + 1,
            "phase": phase or "all",
            "loss_largest": sums["largest"] / steps_per_epoch,
            "train_acc_largest": sums["acc_largest"] / steps_per_epoch,
            "loss_smallest": sums["smallest"] / steps_per_epoch,
            "loss_random": sums["random"] / steps_per_epoch,
            "epoch_s": time.time() - t_epoch,
        }
        if opts.eval_every and ((epoch + 1) % opts.eval_every == 0 or epoch + 1 == opts.epochs):
            for tag, cfg in (("largest", largest), ("smallest", smallest)):
                record[f"val_acc_{tag}"] = calibrate_and_evaluate(
                    net, cfg, train_set, val_set, n_calib=opts.calib_images, limit=opts.eval_limit
                )
            net.bn_stats.clear()
            net.bn_stats_configs.clear()
        history.append(record)
        log.write(record)
        print(json.dumps(record), file=sys.stderr)
        save_state(opts, net, opt, epoch + 1, history)

    # ---- after training: calibrate and measure the reported sub-networks
    net.eval()
    results = []
    for cfg in report_configs(space, opts.seed, opts.report_random):
        calib_t = time.time()
        val_acc = calibrate_and_evaluate(net, cfg, train_set, val_set, n_calib=opts.calib_images)
        entry = {
            "id": cfg.id,
            "config": cfg.to_dict(),
            "macs": net.macs(cfg),
            "params": net.params(cfg),
            "val_accuracy": val_acc,
        }
        if test_set is not None:
            entry["test_accuracy"] = accuracy(net, cfg, test_set)
        entry["eval_s"] = round(time.time() - calib_t, 2)
        results.append(entry)
        log.write({"event": "report", **entry})
        print(json.dumps({k: v for k, v in entry.items() if k != "config"}), file=sys.stderr)
    summary = {
        "command": opts.command,
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(opts).items()
            if k not in ("arch", "command", "progress")
        },
        "train_images": len(train_set),
        "val_images": len(val_set),
        "test_images": len(test_set) if test_set is not None else 0,
        "train_seconds": round(time.time() - t_start, 1),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "history": history,
        "subnets": results,
    }
    net = net.to(memory_format=torch.contiguous_format)
    save_checkpoint(opts.out, net, labels=train_set.classes, extra={"training": summary})
    log.write({"event": "done", "checkpoint": str(opts.out), "time": time.time()})
    log.close()
    return summary
