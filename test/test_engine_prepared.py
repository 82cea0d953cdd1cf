"""Prepared ONNX files (``dynofa export-family``): the engine runs them without torch, gives
the logits of the engine that exports at start-up, and refuses files that no longer match."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_engine_support import CHECKPOINT, ROOT, engine, image_set, tiny_family

from dynofa_ros.engine import Engine, EngineError
from dynofa_ros.engine.prepared import MANIFEST, export_family, prepared_dir, read_prepared


def copy_family(folder: Path) -> Path:
    """The tiny family (JSON + BN statistics) in ``folder``, apart from the shared one."""
    src, _ = tiny_family()
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, folder / src.name)
    shutil.copy(src.parent / "tiny.bn.safetensors", folder / "tiny.bn.safetensors")
    return folder / src.name


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A family with its prepared ONNX files beside it (no checkpoint in that folder)."""
    family = copy_family(tmp_path_factory.mktemp("prepared"))
    export_family(CHECKPOINT, family)
    return family


def logits_of(eng: Engine, images: np.ndarray) -> dict[str, list[list[float]]]:
    out = {}
    for m in eng.members:
        eng.switch(m, "cpu", 1)
        out[m] = [list(eng.infer_array(img).logits) for img in images]
    return out


def test_export_writes_a_checked_file_per_member(prepared: Path) -> None:
    folder = prepared_dir(prepared)
    assert folder == prepared.with_name("tiny.onnx")
    p = read_prepared(folder)
    ref = engine("onnxruntime")
    assert [m.id for m in p.members] == list(ref.members)
    assert p.labels == ref.labels
    for m in p.members:
        assert (folder / m.file).stat().st_size > 10_000
        assert m.resolution == ref.resolution(m.id)
        assert len(p.model_bytes(m.id)) == (folder / m.file).stat().st_size


def test_prepared_engine_gives_the_exporting_engines_logits(prepared: Path) -> None:
    images = image_set(4)
    ref = engine("onnxruntime")
    with Engine.load(CHECKPOINT, prepared, threads=(1, 2), progress=False) as eng:
        assert eng.members == ref.members and eng.labels == ref.labels
        assert eng.checkpoint_path == CHECKPOINT
        got, want = logits_of(eng, images), logits_of(ref, images)
        for m in eng.members:
            np.testing.assert_allclose(got[m], want[m], rtol=0, atol=1e-5)
            assert eng.workload(m) == ref.workload(m)
            assert eng.resolution(m) == ref.resolution(m)


TORCHLESS = textwrap.dedent(
    """
    import json, sys
    sys.modules["torch"] = None  # this interpreter has no usable torch
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("torch is importable")
    import numpy as np
    from dynofa_ros.engine import Engine
    from dynofa_ros.errors import DynofaError

    family, bare, checkpoint, images = sys.argv[1:5]
    imgs = np.load(images)
    out = {}
    with Engine.load(checkpoint, family, progress=False) as eng:
        for m in eng.members:
            eng.switch(m, "cpu", 1)
            out[m] = [list(eng.infer_array(img).logits) for img in imgs]
    try:
        Engine.load(checkpoint, bare, progress=False)
    except DynofaError as exc:
        out["bare_error"] = str(exc)
    print(json.dumps(out))
    """
)


def test_prepared_family_loads_and_runs_with_torch_absent(prepared: Path, tmp_path: Path) -> None:
    """A board with no usable torch: the prepared family runs on ONNX Runtime; the same family
    without prepared files fails with one line that says what to do."""
    images = image_set(3)
    np.save(tmp_path / "images.npy", images)
    bare = copy_family(tmp_path / "bare")
    missing_checkpoint = tmp_path / "not-shipped.safetensors"  # the robot got no checkpoint
    proc = subprocess.run(
        [sys.executable, "-c", TORCHLESS, str(prepared), str(bare), str(missing_checkpoint),
         str(tmp_path / "images.npy")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    bare_error = got.pop("bare_error")
    assert "\n" not in bare_error
    assert "torch is installed but cannot be imported" in bare_error
    assert "export-family" in bare_error
    want = logits_of(engine("onnxruntime"), images)
    assert set(got) == set(want)
    for m in want:
        np.testing.assert_allclose(got[m], want[m], rtol=0, atol=1e-5)


def test_stale_or_damaged_prepared_files_are_refused(prepared: Path, tmp_path: Path) -> None:
    family = copy_family(tmp_path / "f")
    shutil.copytree(prepared_dir(prepared), prepared_dir(family))
    Engine.load(CHECKPOINT, family, progress=False).close()  # the copy itself is fine

    # another super-network file than the one exported
    other = ROOT / "models" / "fmnist_vit_small.safetensors"
    with pytest.raises(EngineError, match=r"checkpoint .*fmnist_vit_small.*export-family"):
        Engine.load(other, family, progress=False)

    # a damaged graph file
    folder = prepared_dir(family)
    manifest = json.loads((folder / MANIFEST).read_text())
    victim = folder / manifest["members"][1]["file"]
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2])
    with pytest.raises(EngineError, match=r"does not match its sha256"):
        Engine.load(CHECKPOINT, family, progress=False)
    victim.write_bytes(good)

    # the family changed after the export: one member's config differs
    doc = json.loads(family.read_text())
    mid = doc["members"][0]["id"]
    doc["members"][0]["config"]["r"] = 28
    family.write_text(json.dumps(doc))
    with pytest.raises(EngineError, match=rf"member {mid} has another config"):
        Engine.load(CHECKPOINT, family, progress=False)

    # a manifest that is not one
    family.write_text(prepared.read_text())
    (folder / MANIFEST).write_text("{")
    with pytest.raises(EngineError, match=r"manifest.json is not valid JSON"):
        Engine.load(CHECKPOINT, family, progress=False)


def test_export_family_cli(prepared: Path, tmp_path: Path) -> None:
    family = copy_family(tmp_path / "cli")
    proc = subprocess.run(
        [sys.executable, "-m", "dynofa_ros.cli", "export-family", str(family), "--checkpoint",
         str(CHECKPOINT), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{prepared_dir(family)} (3 members)"
    a, b = read_prepared(prepared_dir(family)), read_prepared(prepared_dir(prepared))
    assert [m.sha256 for m in a.members] == [m.sha256 for m in b.members]  # deterministic

    bad = subprocess.run(
        [sys.executable, "-m", "dynofa_ros.cli", "export-family", str(tmp_path / "none.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "cannot read family file" in bad.stderr
