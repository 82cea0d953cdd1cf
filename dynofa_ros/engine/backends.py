"""Prepared runners: one object per (member, processor[, threads]) that runs ``(1, C, r, r)``
float32 input to ``(1, classes)`` logits.

Everything is built at start-up (:func:`prepare`); a runner only runs. ONNX Runtime sessions are
thread-safe and run without a lock. PyTorch runners share one lock per engine: torch's intra-op
thread count is process-wide, and the dynamic super-network is one module whose active
sub-network (a few integers and BN statistic references, ``set_active``) is set at the start of
the frame that needs it, in the frame's own thread, so a switch from another thread never
touches a network in use.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from dynofa_ros import validate
from dynofa_ros.engine.errors import EngineError

PROCESSORS = ("cpu", "cuda")


class Runner:
    """Runs one prepared sub-network; subclasses hold what it needs (session, module)."""

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


# ------------------------------------------------------------------------------ ONNX Runtime
def ort_providers(processor: str) -> list[str]:
    """Execution providers for ``processor``: TensorRT and CUDA when this onnxruntime has them
    (falling back to CPU for unsupported nodes), else CPU."""
    import onnxruntime as ort

    if processor == "cpu":
        return ["CPUExecutionProvider"]
    have = set(ort.get_available_providers())
    out = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in have]
    return [*out, "CPUExecutionProvider"]


def ort_has_gpu() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


class OrtRunner(Runner):
    """One ``InferenceSession`` of an exported sub-network."""

    def __init__(self, onnx_model: bytes, processor: str, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_model, opts, providers=ort_providers(processor))
        self.input_name = self.session.get_inputs()[0].name
        self.outputs = [self.session.get_outputs()[0].name]
        self.providers = tuple(self.session.get_providers())
        if processor != "cpu" and self.providers[0] == "CPUExecutionProvider":
            raise EngineError(
                f"processor {processor!r}: onnxruntime could not start a GPU execution provider "
                f"(it runs {', '.join(self.providers)}); allowed here: cpu"
            )

    def run(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.session.run(self.outputs, {self.input_name: x})[0]
        return out


# ------------------------------------------------------------------------------ PyTorch
class _TorchRunner(Runner):
    def __init__(self, processor: str, threads: int, lock: threading.Lock) -> None:
        import torch

        self.torch = torch
        self.device = torch.device("cuda" if processor == "cuda" else "cpu")
        self.cuda = processor == "cuda"
        self.threads = max(1, int(threads))
        self.lock = lock

    def _forward(self, module: Any, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        if not self.cuda and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            t = torch.from_numpy(x)
            if self.cuda:
                t = t.to(self.device, non_blocking=False)
            y = module(t)
            out: np.ndarray = y.cpu().numpy() if self.cuda else y.numpy()
            return out


class TorchStaticRunner(_TorchRunner):
    """An extracted static sub-network (eager PyTorch)."""

    def __init__(self, module: Any, processor: str, threads: int, lock: threading.Lock) -> None:
        super().__init__(processor, threads, lock)
        self.module = module

    def run(self, x: np.ndarray) -> np.ndarray:
        with self.lock:
            return self._forward(self.module, x)


class TorchDynamicRunner(_TorchRunner):
    """A sub-network of the one shared super-network: ``set_active`` (BN swap) at frame start
    when the network last ran another member."""

    def __init__(
        self, net: Any, cfg: Any, processor: str, threads: int, lock: threading.Lock
    ) -> None:
        super().__init__(processor, threads, lock)
        self.net = net
        self.cfg = cfg

    def run(self, x: np.ndarray) -> np.ndarray:
        with self.lock:
            if self.net.active is not self.cfg:
                self.net.set_active(self.cfg)
            return self._forward(self.net, x)


def dynamic_net_on(net: Any, processor: str) -> Any:
    """The super-network for ``processor``: itself on CPU; a copy on the GPU with its stored BN
    statistics moved along (they are plain tensors, not buffers)."""
    if processor == "cpu":
        return net
    import copy

    gpu = copy.deepcopy(net).to("cuda")
    gpu.bn_stats = {
        sid: {k: (m.to("cuda"), v.to("cuda")) for k, (m, v) in stats.items()}
        for sid, stats in net.bn_stats.items()
    }
    gpu.set_active(gpu.active)
    return gpu.eval()


def torch_has_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def gpu_available(backend: str) -> bool:
    try:
        return BACKENDS[backend].has_gpu()
    except Exception:  # a broken CUDA install means no GPU here
        return False


# ------------------------------------------------------------------------------ registry
class Backend:
    """How one backend turns the family's members into runners, for one ``Engine.load``:
    :meth:`member` builds what a member's runners share, :meth:`runner` one runner of it.

    ``net`` is the super-network (``None`` when prepared ONNX files stand in for it: only
    ONNX Runtime can run those); ``prepared`` those files (``engine.prepared``)."""

    requires = "torch"  # the package it needs (``runtime_versions.require``)
    reads_prepared = False  # runs the prepared ONNX files when a family has them

    def __init__(self, net: Any, prepared: Any, lock: threading.Lock) -> None:
        self.net, self.prepared, self.lock = net, prepared, lock

    @staticmethod
    def has_gpu() -> bool:
        return torch_has_gpu()

    def member(self, member_id: str, cfg: Any) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def runner(self, processor: str, threads: int) -> Runner:  # pragma: no cover - interface
        raise NotImplementedError


class OrtBackend(Backend):
    requires = "onnxruntime"
    reads_prepared = True
    _model = b""

    @staticmethod
    def has_gpu() -> bool:
        return ort_has_gpu()

    def member(self, member_id: str, cfg: Any) -> None:
        if self.prepared is not None:
            self._model = self.prepared.model_bytes(member_id)
        else:
            from dynofa_ros.supernet.export import export_onnx

            self._model = export_onnx(self.net, cfg)

    def runner(self, processor: str, threads: int) -> Runner:
        return OrtRunner(self._model, processor, threads)


class TorchStaticBackend(Backend):
    _static: Any = None

    def member(self, member_id: str, cfg: Any) -> None:
        self._static = self.net.extract(cfg).eval()

    def runner(self, processor: str, threads: int) -> Runner:
        module = self._static
        if processor != "cpu":
            import copy

            module = copy.deepcopy(module).to("cuda").eval()
        return TorchStaticRunner(module, processor, threads, self.lock)


class TorchDynamicBackend(Backend):
    _cfg: Any = None

    def __init__(self, net: Any, prepared: Any, lock: threading.Lock) -> None:
        super().__init__(net, prepared, lock)
        self._nets: dict[str, Any] = {}  # processor -> the super-network there (one each)

    def member(self, member_id: str, cfg: Any) -> None:
        self._cfg = cfg

    def runner(self, processor: str, threads: int) -> Runner:
        if processor not in self._nets:
            self._nets[processor] = dynamic_net_on(self.net, processor)
        return TorchDynamicRunner(self._nets[processor], self._cfg, processor, threads, self.lock)


# name -> backend, as ``Engine.load(backend=...)`` and the nodes' ``backend`` parameter name it
BACKENDS: dict[str, type[Backend]] = {
    "onnxruntime": OrtBackend,
    "torch-static": TorchStaticBackend,
    "torch-dynamic": TorchDynamicBackend,
}


def check_choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    return validate.choice(value, name, allowed, EngineError)
