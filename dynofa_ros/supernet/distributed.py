"""Devices, mixed precision and data-parallel training across processes (``torchrun``).

A run launched by ``torchrun`` (or ``srun torchrun``) finds ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK`` in its environment; :func:`setup` joins the process group (NCCL on GPUs, gloo on
CPUs or when several ranks share one GPU, which NCCL refuses). Each rank trains on its rows of
the same global batch, and the sandwich step stays what a single process computes:

* BatchNorm in training mode normalises with the statistics of the *global* batch
  (:func:`sync_batchnorm`: two differentiable all-reduces per layer), so the forward pass and,
  through the all-reduce's backward, the gradients equal the single-process ones;
* after the step's backward passes (largest, smallest, random sub-networks) the accumulated
  gradients are averaged over the ranks in one flat all-reduce (:func:`average_gradients`).
  This is what ``DistributedDataParallel`` does after ``no_sync`` accumulation, without its
  reducer, which expects one forward per backward and every parameter used in each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from dynofa_ros.errors import DynofaError

DEVICES = ("auto", "cuda", "cpu")
AMP_MODES = ("auto", "bf16", "fp16", "off")
DIST_BACKENDS = ("auto", "nccl", "gloo")


class DistributedError(DynofaError):
    """A device / precision / world-size choice this machine or run cannot honour."""


@dataclass(frozen=True)
class DistContext:
    """Where this process trains: its rank among ``world_size`` and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # None: a single process, no process group

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(f"environment variable {name}={raw!r} is not an integer") from None


def resolve_device(choice: str) -> torch.device:
    """``auto``: CUDA when a GPU is usable, else the CPU; ``cuda`` without one is an error."""
    if choice not in DEVICES:
        raise DistributedError(f"--device {choice!r} is unknown (one of: {', '.join(DEVICES)})")
    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise DistributedError(
            "--device cuda: no CUDA GPU is usable by PyTorch here "
            f"(torch {torch.__version__}); use --device cpu or auto"
        )
    return torch.device("cuda" if choice == "cuda" or (choice == "auto" and has_cuda) else "cpu")


def resolve_amp(choice: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: full float32). ``auto``: bf16 on a GPU that has it, else off."""
    if choice not in AMP_MODES:
        raise DistributedError(f"--amp {choice!r} is unknown (one of: {', '.join(AMP_MODES)})")
    if choice == "off":
        return None
    if choice == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    if choice == "fp16" and device.type != "cuda":
        raise DistributedError("--amp fp16 needs --device cuda (on a CPU use bf16 or off)")
    return torch.bfloat16 if choice == "bf16" else torch.float16


def world_from_env() -> tuple[int, int, int, int]:
    """(rank, world size, local rank, local world size) that torchrun put in the environment."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if world < 1 or not 0 <= rank < world or not 0 <= local_rank < max(1, local_world):
        raise DistributedError(
            f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={world} "
            f"LOCAL_RANK={local_rank} LOCAL_WORLD_SIZE={local_world}"
        )
    return rank, world, local_rank, local_world


def check_batch(batch_size: int, world_size: int) -> int:
    """Rows of the global batch each rank trains on; the world size must divide the batch."""
    if batch_size % world_size:
        raise DistributedError(
            f"--batch-size {batch_size} (the global batch) is not divisible by the world size "
            f"{world_size}; use a multiple of {world_size}"
        )
    return batch_size // world_size


def setup(
    device: str = "auto", backend: str = "auto", batch_size: int | None = None
) -> DistContext:
    """Pick the device and, under torchrun with more than one rank, join the process group.

    The batch check runs before the rendezvous, so a bad ``--batch-size`` fails at once on
    every rank instead of after minutes of waiting for peers."""
    rank, world, local_rank, local_world = world_from_env()
    if backend not in DIST_BACKENDS:
        raise DistributedError(
            f"--dist-backend {backend!r} is unknown (one of: {', '.join(DIST_BACKENDS)})"
        )
    dev = resolve_device(device)
    if batch_size is not None:
        check_batch(batch_size, world)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    if world == 1:
        return DistContext(device=dev)
    import torch.distributed as dist

    if backend == "auto":
        # NCCL refuses two ranks on one GPU ("Duplicate GPU detected"); gloo reduces through
        # the host instead
        shared_gpu = dev.type == "cuda" and local_world > torch.cuda.device_count()
        backend = "nccl" if dev.type == "cuda" and not shared_gpu else "gloo"
    if backend == "nccl" and dev.type != "cuda":
        raise DistributedError("--dist-backend nccl needs --device cuda (use gloo on CPUs)")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local_rank, local_world, dev, backend)


def teardown(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


# ------------------------------------------------------------------------------- gradients
def average_gradients(params: list[nn.Parameter], world_size: int) -> None:
    """Average the accumulated gradients over the ranks in one flat all-reduce.

    Parameters without a gradient are left alone: every rank ran the same sub-networks, so the
    same ones have none, and the optimizer skips them as in a single process."""
    if world_size == 1:
        return
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(world_size)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def all_mean(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Rank-averaged scalars (epoch losses for the log)."""
    if not ctx.distributed or not values:
        return values
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    if ctx.backend == "gloo":
        t = t.cpu()
    dist.all_reduce(t)
    t /= ctx.world_size
    return dict(zip(keys, t.tolist(), strict=True))


# ------------------------------------------------------------------------------- batch norm
class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over the ranks: the gradient of a sum seen by every rank is the
    sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, t: Tensor) -> Tensor:
        import torch.distributed as dist

        out = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        import torch.distributed as dist

        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out


def _sync_bn_forward(self: Any, x: Tensor) -> Tensor:
    """Training-mode forward of an ElasticBatchNorm2d with global-batch statistics."""
    if not self.training or self._calibration is not None:
        parent: Any = type(self).__mro__[1]  # the class this synchronised one derives from
        out: Tensor = parent.forward(self, x)
        return out
    c = x.size(1)
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # statistics in fp32+
    n_local = xf.new_tensor([float(x.numel() // c)])
    total: Tensor = _AllReduceSum.apply(  # type: ignore[no-untyped-call]  # torch leaves it untyped
        torch.cat([xf.sum(dim=(0, 2, 3)), n_local])
    )
    n = total[-1]
    mean = total[:c] / n
    sq: Tensor = _AllReduceSum.apply(  # type: ignore[no-untyped-call]  # torch leaves it untyped
        (xf - mean.view(1, -1, 1, 1)).square().sum(dim=(0, 2, 3))
    )
    var = sq / n  # biased, what normalisation uses
    weight: Tensor = self.weight[:c]
    bias: Tensor = self.bias[:c]
    with torch.no_grad():
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            m = (
                1.0 / float(self.num_batches_tracked)
                if self.momentum is None
                else float(self.momentum)
            )
            unbiased = var.detach() * (n / torch.clamp(n - 1, min=1.0))
            self.running_mean[:c].mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var[:c].mul_(1 - m).add_(unbiased, alpha=m)
    scale = weight.to(xf.dtype) * torch.rsqrt(var + self.eps)
    shift = bias.to(xf.dtype) - mean * scale
    y = xf * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    return y.to(x.dtype)


_SYNC_CLASSES: dict[type, type] = {}


def sync_batchnorm(net: nn.Module) -> int:
    """Make every elastic BatchNorm of ``net`` use global-batch statistics in training (the
    instances' class is swapped to a subclass; weights, buffers and keys are unchanged).
    Returns how many layers were converted (0 for a network without BatchNorm)."""
    from dynofa_ros.supernet.ops import ElasticBatchNorm2d

    count = 0
    for m in net.modules():
        cls = type(m)
        if isinstance(m, ElasticBatchNorm2d) and cls not in _SYNC_CLASSES.values():
            if cls not in _SYNC_CLASSES:
                _SYNC_CLASSES[cls] = type(
                    f"Sync{cls.__name__}", (cls,), {"forward": _sync_bn_forward}
                )
            m.__class__ = _SYNC_CLASSES[cls]
            count += 1
    return count


def unsync_batchnorm(net: nn.Module) -> None:
    """Undo :func:`sync_batchnorm` (evaluation and export see the plain classes)."""
    back = {v: k for k, v in _SYNC_CLASSES.items()}
    for m in net.modules():
        if type(m) in back:
            m.__class__ = back[type(m)]
