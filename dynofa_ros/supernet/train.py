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

Devices and ranks (:mod:`dynofa_ros.supernet.distributed`): on a GPU with optional mixed
precision (``amp``: bf16, or fp16 with a gradient scaler); under ``torchrun`` every rank trains
on its rows of the same global batch with the same sub-networks (seeded from the step),
BatchNorm normalises with global-batch statistics and the gradients are averaged before the
step, so N ranks compute what one process computes. Only rank 0 evaluates and writes the state,
log and checkpoint; the state does not depend on the number of ranks, so a run resumes on
another number of ranks (or on another device).
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
from dynofa_ros.supernet.data import ImageSet, ShardedBatches, batch_loader, prepare
from dynofa_ros.supernet.distributed import (
    AMP_MODES,
    DEVICES,
    DIST_BACKENDS,
    DistContext,
    all_mean,
    average_gradients,
    barrier,
    check_batch,
    resolve_amp,
    setup,
    sync_batchnorm,
    teardown,
    unsync_batchnorm,
)
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
    device: str = "auto"  # auto: cuda when available
    amp: str = "auto"  # auto: bf16 on a GPU that has it, else off
    workers: int | None = None  # loader processes (None: 4 on a GPU, 0 on the CPU)
    channels_last: bool = True
    dist_backend: str = "auto"  # auto: nccl on GPUs (one per rank), else gloo

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size <= 0 or self.lr <= 0:
            raise ValueError("epochs, batch size and learning rate must be positive")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"--optimizer {self.optimizer!r} is unknown (one of: {', '.join(OPTIMIZERS)})"
            )
        if self.n_random < 0:
            raise ValueError("--random must be >= 0")
        for name, value, allowed in (
            ("--device", self.device, DEVICES),
            ("--amp", self.amp, AMP_MODES),
            ("--dist-backend", self.dist_backend, DIST_BACKENDS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} {value!r} is unknown (one of: {', '.join(allowed)})")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"--workers must be >= 0, got {self.workers}")
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


def _full(x: Tensor) -> Tensor:
    """Logits in at least float32 (autocast may give half precision) for the losses."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


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
    *,
    scaler: dict[str, Any] | None = None,
) -> None:
    """Weights, optimizer state, epoch and log on the CPU: the same file whatever the device
    and number of ranks that wrote it."""
    from safetensors.torch import save_file

    def cpu(t: Tensor) -> Tensor:
        return t.detach().to("cpu", memory_format=torch.contiguous_format).contiguous().clone()

    names = {id(p): n for n, p in net.named_parameters()}
    tensors = {f"model/{k}": cpu(v) for k, v in net.state_dict().items()}
    for group in opt.param_groups:
        for p in group["params"]:
            for key, buf in opt.state.get(p, {}).items():
                if isinstance(buf, Tensor):
                    tensors[f"{_state_prefix(key)}{names[id(p)]}"] = cpu(buf)
    meta = {
        "format": STATE_FORMAT,
        "epoch_done": epoch_done,
        "history": history,
        "arch": opts.arch.to_dict(),
        "seed": opts.seed,
        "epochs": opts.epochs,
        "batch_size": opts.batch_size,
        "grad_scaler": scaler or {},
    }
    assert opts.state_path is not None
    with atomic_path(opts.state_path) as tmp:
        save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)})


def load_state(
    opts: TrainOptions, net: Supernet, opt: torch.optim.Optimizer
) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """(epochs done, history, gradient-scaler state) of ``opts.state_path``, loaded into
    ``net`` and ``opt`` (on their device)."""
    from safetensors import safe_open

    from dynofa_ros.supernet.checkpoint import CheckpointError, check_state_dict, load_tensors

    assert opts.state_path is not None
    tensors = load_tensors(opts.state_path)
    with safe_open(str(opts.state_path), "pt") as fh:
        meta = json.loads((fh.metadata() or {}).get("state", "{}"))
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{opts.state_path}: not a training state file")
    saved_arch = meta.get("arch") or {}
    if saved_arch != json.loads(json.dumps(opts.arch.to_dict())):
        raise CheckpointError(
            f"{opts.state_path}: saved by a run of another architecture "
            f"({saved_arch.get('name', '?')!r}, this run trains {opts.arch.name!r} with other "
            f"widths, classes or search space); remove it or drop --resume"
        )
    for key, value in (("seed", opts.seed), ("epochs", opts.epochs)):
        if meta.get(key) != value:
            raise CheckpointError(
                f"{opts.state_path}: saved by a run with {key} {meta.get(key)!r}, this run has "
                f"{value!r}; remove it or drop --resume"
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
        p = params[name]
        opt.state[p][key] = v.to(p.device) if v.ndim else v.clone()
    return (
        int(meta["epoch_done"]),
        list(meta.get("history", [])),
        dict(meta.get("grad_scaler") or {}),
    )


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
    opts: TrainOptions,
    train_set: ImageSet,
    val_set: ImageSet,
    test_set: ImageSet | None = None,
    ctx: DistContext | None = None,
) -> dict[str, Any]:
    """Train, write the checkpoint to ``opts.out`` (BN statistics of the reported sub-networks
    included) and return the summary stored in its metadata.

    ``ctx``: the device and rank; by default from :func:`setup` (the torchrun environment and
    ``opts.device``), joining and leaving the process group around the run."""
    own_ctx = ctx is None
    if ctx is None:
        ctx = setup(opts.device, opts.dist_backend, opts.batch_size)
    try:
        return _train(opts, train_set, val_set, test_set, ctx)
    finally:
        if own_ctx:
            teardown(ctx)


class _Sandwich:
    """One step of the sandwich rule: the largest sub-network on the labels, then the smallest
    and ``n_random`` random ones distilled from the largest's outputs (in-place distillation),
    gradients averaged over the ranks."""

    def __init__(  # noqa: PLR0917 - the training's state
        self,
        net: Any,
        opt: Any,
        scaler: Any,
        opts: TrainOptions,
        amp_dtype: Any,
        memory_format: Any,
        ctx: DistContext,
    ) -> None:
        self.net, self.opt, self.scaler, self.opts = net, opt, scaler, opts
        self.amp_dtype, self.memory_format, self.ctx = amp_dtype, memory_format, ctx
        self.params = list(net.parameters())

    def step(self, raw_images: Tensor, raw_labels: Tensor, cfgs: list[Any], sums: Tensor) -> None:
        """``cfgs``: the largest first. ``sums`` accumulates (largest, smallest, random loss,
        largest's accuracy)."""
        net, opts, scaler, device = self.net, self.opts, self.scaler, self.ctx.device
        mean, std = opts.arch.mean, opts.arch.std
        images = raw_images.to(device, non_blocking=True)
        labels = raw_labels.to(device, non_blocking=True)
        inputs: dict[int, Tensor] = {}

        def at(r: int) -> Tensor:
            if r not in inputs:
                inputs[r] = prepare(images, r, mean, std).contiguous(
                    memory_format=self.memory_format
                )
            return inputs[r]

        autocast = {"dtype": self.amp_dtype, "enabled": self.amp_dtype is not None}
        self.opt.zero_grad(set_to_none=True)
        largest, others = cfgs[0], cfgs[1:]
        net.set_active(largest)
        with torch.autocast(device.type, **autocast):
            out = net(at(largest.r))
            loss = F.cross_entropy(_full(out), labels, label_smoothing=opts.label_smoothing)
        scaler.scale(loss).backward()
        sums[0] += loss.detach()
        sums[3] += (out.detach().argmax(1) == labels).double().mean()
        # in-place distillation: the target is this rank's largest on this rank's rows
        teacher = F.softmax(_full(out.detach()), dim=1)
        for j, cfg in enumerate(others):
            net.set_active(cfg)
            with torch.autocast(device.type, **autocast):
                out = _full(net(at(cfg.r)))
                loss = opts.kd_ratio * soft_cross_entropy(out, teacher)
                if opts.kd_ratio < 1:
                    loss = loss + (1 - opts.kd_ratio) * F.cross_entropy(
                        out, labels, label_smoothing=opts.label_smoothing
                    )
            scaler.scale(loss).backward()
            sums[1 if j == 0 else 2] += loss.detach() / (1 if j == 0 else max(1, opts.n_random))
        average_gradients(self.params, self.ctx.world_size)
        scaler.step(self.opt)
        scaler.update()


def _start(
    opts: TrainOptions, ctx: DistContext, amp_dtype: Any, memory_format: Any
) -> tuple[Any, Any, Any, int, list[dict[str, Any]]]:
    """The network on its device, its optimiser and loss scaler, from scratch, from
    ``init_from`` or resumed: (net, optimiser, scaler, first epoch, history so far)."""
    device = ctx.device
    torch.manual_seed(opts.seed)
    net = build_supernet(opts.arch)
    # Module.to takes memory_format (torch documents it), its typed overloads leave it out
    net = net.to(device=device, memory_format=memory_format)  # type: ignore[call-overload]
    opt = make_optimizer(opts, net)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    history: list[dict[str, Any]]
    start_epoch, history = 0, []
    assert opts.state_path is not None
    if opts.init_from is not None:
        init_weights(net, opts.init_from)
    if opts.resume and opts.state_path.exists():
        start_epoch, history, scaler_state = load_state(opts, net, opt)
        if scaler_state and scaler.is_enabled():
            scaler.load_state_dict(scaler_state)
        if ctx.is_main:
            print(f"resuming from {opts.state_path} after epoch {start_epoch}", file=sys.stderr)
    if ctx.distributed:
        sync_batchnorm(net)
    return net, opt, scaler, start_epoch, history


def _save_on_cpu(
    net: Any, opts: TrainOptions, train_set: ImageSet, summary: dict[str, Any]
) -> None:
    """The checkpoint, loadable without a GPU (BN statistics moved along)."""
    net = net.to(device="cpu", memory_format=torch.contiguous_format)
    net.bn_stats = {
        sid: {k: (m.cpu(), v.cpu()) for k, (m, v) in stats.items()}
        for sid, stats in net.bn_stats.items()
    }
    save_checkpoint(opts.out, net, labels=train_set.classes, extra={"training": summary})


def _validate(
    net: Any, opts: TrainOptions, cfgs: dict[str, Any], train_set: ImageSet, val_set: ImageSet
) -> dict[str, float]:
    """``val_acc_<tag>`` of each sub-network, BN recalibrated; the statistics are dropped after
    (training goes on with running ones)."""
    out = {
        f"val_acc_{tag}": calibrate_and_evaluate(
            net, cfg, train_set, val_set, n_calib=opts.calib_images, limit=opts.eval_limit
        )
        for tag, cfg in cfgs.items()
    }
    net.bn_stats.clear()
    net.bn_stats_configs.clear()
    return out


def _open_log(  # noqa: PLR0917 - what the log says of the start
    opts: TrainOptions,
    ctx: DistContext,
    start_epoch: int,
    images: tuple[int, int],
    amp_dtype: Any,
    workers: int,
) -> JsonLog | None:
    """Rank 0's training log (appended to when resuming), opened with its start entry."""
    if not ctx.is_main:
        return None
    assert opts.log_path is not None
    log = JsonLog(opts.log_path, append=opts.resume and start_epoch > 0)
    log.write(
        {
            "event": "start",
            "command": opts.command,
            "start_epoch": start_epoch,
            "train_images": images[0],
            "val_images": images[1],
            "threads": torch.get_num_threads(),
            "device": str(ctx.device),
            "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
            "world_size": ctx.world_size,
            "dist_backend": ctx.backend,
            "workers": workers,
            "time": time.time(),
        }
    )
    return log


def _epoch_record(
    sums: Tensor, steps: int, ctx: DistContext, *, epoch: int, phase: str | None
) -> dict[str, Any]:
    """The epoch's mean losses and accuracy over every rank (one collective call)."""
    totals = sums.tolist()
    means = all_mean(
        {
            "loss_largest": totals[0] / steps,
            "train_acc_largest": totals[3] / steps,
            "loss_smallest": totals[1] / steps,
            "loss_random": totals[2] / steps,
        },
        ctx,
    )
    return {"event": "epoch", "epoch": epoch + 1, "phase": phase or "all", **means}


def _report_subnets(  # noqa: PLR0917 - the training's outputs
    net: Any,
    opts: TrainOptions,
    train_set: ImageSet,
    val_set: ImageSet,
    test_set: ImageSet | None,
    log: JsonLog | None,
) -> list[dict[str, Any]]:
    """After training (rank 0): calibrate and measure the reported sub-networks."""
    space = net.space
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
        assert log is not None
        log.write({"event": "report", **entry})
        print(json.dumps({k: v for k, v in entry.items() if k != "config"}), file=sys.stderr)
    return results


def _train(
    opts: TrainOptions,
    train_set: ImageSet,
    val_set: ImageSet,
    test_set: ImageSet | None,
    ctx: DistContext,
) -> dict[str, Any]:
    from tqdm import tqdm

    check_batch(opts.batch_size, ctx.world_size)
    device = ctx.device
    amp_dtype = resolve_amp(opts.amp, device)
    workers = opts.workers if opts.workers is not None else (4 if device.type == "cuda" else 0)
    main = ctx.is_main
    # channels-last makes the depthwise weight gradient ~3x faster on CPU (oneDNN) and lets
    # cuDNN use tensor cores under AMP
    memory_format = torch.channels_last if opts.channels_last else torch.contiguous_format
    net, opt, scaler, start_epoch, history = _start(opts, ctx, amp_dtype, memory_format)
    space = net.space
    assert opts.log_path is not None
    log = _open_log(opts, ctx, start_epoch, (len(train_set), len(val_set)), amp_dtype, workers)
    steps_per_epoch = len(train_set) // opts.batch_size
    sandwich = _Sandwich(net, opt, scaler, opts, amp_dtype, memory_format, ctx)
    images_per_rank = opts.batch_size // ctx.world_size
    t_start = time.time()
    for epoch in range(start_epoch, opts.epochs):
        phase = phase_of_epoch(opts, epoch)
        restrict = phase_space(space, phase)
        largest, smallest = _restricted_extremes(space, restrict)
        net.train()
        torch.manual_seed(opts.seed * 100003 + epoch + 7919 * ctx.rank)  # dropout, per rank
        batches = ShardedBatches(
            train_set,
            opts.batch_size,
            seed=opts.seed,
            epoch=epoch,
            pad=opts.augment_pad,
            flip=opts.augment_flip,
            rank=ctx.rank,
            world_size=ctx.world_size,
        )
        loader = batch_loader(batches, workers, pin_memory=device.type == "cuda")
        bar = tqdm(
            loader,
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{opts.epochs}",
            disable=not (opts.progress and main),
            file=sys.stderr,
            leave=False,
        )
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # largest, smallest, random, acc
        t_epoch = time.time()
        for i, (raw_images, raw_labels) in enumerate(bar):
            step = epoch * steps_per_epoch + i
            lr = lr_at(opts, step, steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            # the same sub-networks on every rank: drawn from (seed, epoch, step) only
            rng = random.Random(f"{opts.seed}-{epoch}-{i}")
            others = (
                []
                if phase == "full"
                else [smallest] + [space.sample(rng, **restrict) for _ in range(opts.n_random)]
            )
            sandwich.step(raw_images, raw_labels, [largest, *others], sums)
            if main and i % 20 == 0:
                avg = (sums / (i + 1)).tolist()  # one device sync per 20 steps
                bar.set_postfix(loss=f"{avg[0]:.3f}", acc=f"{avg[3]:.3f}", lr=f"{lr:.4f}")
                if log is not None and i % 100 == 0:
                    log.write(
                        {
                            "event": "step",
                            "epoch": epoch,
                            "step": step,
                            "lr": lr,
                            "loss_largest": avg[0],
                            "loss_smallest": avg[1],
                            "loss_random": avg[2],
                            "elapsed_s": time.time() - t_start,
                        }
                    )
        bar.close()
        epoch_s = time.time() - t_epoch
        record = _epoch_record(sums, steps_per_epoch, ctx, epoch=epoch, phase=phase)
        record["epoch_s"] = epoch_s
        record["images_per_s"] = steps_per_epoch * images_per_rank * ctx.world_size / epoch_s
        if not main:
            continue  # rank 0 evaluates and writes; the others go on to the next epoch
        if opts.eval_every and ((epoch + 1) % opts.eval_every == 0 or epoch + 1 == opts.epochs):
            record |= _validate(net, opts, {"largest": largest, "smallest": smallest},
                                train_set, val_set)  # fmt: skip
        history.append(record)
        assert log is not None
        log.write(record)
        print(json.dumps(record), file=sys.stderr)
        save_state(opts, net, opt, epoch + 1, history, scaler=scaler.state_dict() or None)

    unsync_batchnorm(net)
    if not main:
        barrier(ctx)  # wait for rank 0's report and checkpoint, then leave together
        return {"history": history, "rank": ctx.rank}
    results = _report_subnets(net, opts, train_set, val_set, test_set, log)
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
        "device": str(device),
        "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
        "world_size": ctx.world_size,
        "history": history,
        "subnets": results,
    }
    _save_on_cpu(net, opts, train_set, summary)
    assert log is not None
    log.write({"event": "done", "checkpoint": str(opts.out), "time": time.time()})
    log.close()
    barrier(ctx)
    return summary
