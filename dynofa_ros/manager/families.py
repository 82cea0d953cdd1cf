"""Families whose latency records come from the simulated Xavier NX (no torch, no search).

:func:`simulated_family` tables each member's :class:`~dynofa_ros.platform.workload.Workload` on
the simulated board at every frequency (GPU) and every frequency x thread count (CPU), the way
``dynofa search --platform sim-xavier-nx`` records its members. ``BUILTIN`` names the families
built this way from the published Dynamic-OFA figures (ImageNet, Xavier NX): the six-member GPU
family (published accuracy; workloads estimated, see docs/simulator.md) as eager PyTorch runs it
and as ONNX Runtime runs it, and the two published ends of the CPU family. Scenarios name them
``builtin:<name>``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from dynofa_ros.family import Family, FamilyMember, LatencyRecord
from dynofa_ros.platform.sim import NXModel, reference_latency_ms
from dynofa_ros.platform.workload import PUBLISHED_CPU_ENDS, PUBLISHED_GPU_FAMILY, Workload


def simulated_family(
    name: str,
    processor: str,
    members: Sequence[tuple[str, float, Workload]],
    *,
    processors: Sequence[str] = ("cuda", "cpu"),
    cpu_threads: Sequence[int] = (1, 2, 3, 4, 5, 6),
    model: NXModel | None = None,
) -> Family:
    """A family of ``(id, top-1, workload)`` members with noise-free simulated latency records
    (backend ``simulated``), ordered by latency on ``processor``."""
    m = model or NXModel()
    out: list[FamilyMember] = []
    for member_id, accuracy, w in members:
        records: list[LatencyRecord] = []
        if "cuda" in processors:
            for f in m.gpu_frequencies_khz:
                ms = reference_latency_ms(w, "cuda", f, model=m)
                records.append(LatencyRecord("cuda", "simulated", 0, f, ms))
        if "cpu" in processors:
            for t in cpu_threads:
                for f in m.cpu_frequencies_khz:
                    ms = reference_latency_ms(w, "cpu", f, t, model=m)
                    records.append(LatencyRecord("cpu", "simulated", t, f, ms))
        out.append(
            FamilyMember(
                id=member_id,
                config={},
                accuracy=accuracy,
                macs=w.macs,
                params=w.params,
                latency=tuple(records),
                accuracy_source="published",
                workload=w.to_dict(),
            )
        )

    def key(fm: FamilyMember) -> float:
        ms = fm.latency_ms(processor)
        return float("inf") if ms is None else ms

    return Family(
        name=name,
        processor=processor,
        supernet={"kind": "simulated"},
        members=tuple(sorted(out, key=key)),
        provenance={"latency": "simulated Xavier NX (noise-free reference latency)"},
    )


def published_gpu_family() -> Family:
    """The published Dynamic-OFA GPU family (members ``a``..``f``) on the simulated NX."""
    members = [
        (m.workload.name.rsplit("-", 1)[-1], m.top1, m.workload) for m in PUBLISHED_GPU_FAMILY
    ]
    return simulated_family("published-nx-gpu", "cuda", members)


def published_gpu_family_onnxruntime() -> Family:
    """The same members deployed with ONNX Runtime's CUDA provider (the simulated NX's
    ``onnxruntime`` cost model: ~55 µs host cost per kernel instead of eager PyTorch's ~0.6 ms
    per layer), so a frame is GPU-bound and the GPU clock sets its latency (11-30 ms at the top
    clock, 55-210 ms at the lowest)."""
    members = [
        (m.workload.name.rsplit("-", 1)[-1], m.top1, replace(m.workload, runtime="onnxruntime"))
        for m in PUBLISHED_GPU_FAMILY
    ]
    return simulated_family("published-nx-gpu-onnxruntime", "cuda", members)


def published_cpu_family() -> Family:
    """The two published ends of the Dynamic-OFA CPU family on the simulated NX."""
    members = [
        (m.workload.name.removeprefix("dynofa-cpu-"), m.top1, m.workload)
        for m in PUBLISHED_CPU_ENDS
    ]
    return simulated_family("published-nx-cpu", "cpu", members)


BUILTIN: dict[str, Callable[[], Family]] = {
    "published-nx-gpu": published_gpu_family,
    "published-nx-gpu-onnxruntime": published_gpu_family_onnxruntime,
    "published-nx-cpu": published_cpu_family,
}


def workload_of(member: FamilyMember) -> Workload:
    """The member's simulator workload (families written for the simulated NX carry one)."""
    if member.workload is None:
        raise ValueError(
            f"family member {member.id!r} has no 'workload' (the simulated NX needs one: use a "
            "family written by `dynofa search --platform sim-xavier-nx`)"
        )
    return Workload.from_dict(member.workload)
