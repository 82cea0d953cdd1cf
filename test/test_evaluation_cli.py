"""``dynofa scenario generate | check | list`` and ``dynofa report`` as a user runs them: separate
processes, exit codes, one-line errors, Ctrl-C during generation."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from test_evaluation_report import robot_run

from dynofa_ros.evaluation import bagio
from dynofa_ros.evaluation import topics as T
from dynofa_ros.evaluation.records import read_frames_csv, write_results
from dynofa_ros.processes import interruptible

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="Fashion-MNIST (dataset-fashion-mnist) not installed",
)


def dynofa(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynofa_ros.cli", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], command: str) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"dynofa {command}: error: "), err
    return err


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "tiny.bag"
    proc = dynofa("scenario", "generate", "tiny", "-o", out, "--storage", "mcap")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {out} (mcap, 15 frames, 3 s,")
    assert "/camera/image_raw" in proc.stdout and proc.stderr == ""
    return out


def test_generate_then_check(bag: Path) -> None:
    proc = dynofa("scenario", "check", bag)
    assert proc.returncode == 0, proc.stderr
    assert "scenario:  tiny (1 model(s): classifier on camera, target 60 ms)" in proc.stdout
    assert "camera: /camera/image_raw 15 frames, ground truth /camera/ground_truth (15)" in (
        proc.stdout
    )
    assert "missing:   nothing\nreplay plan: scenario tiny (3.000 s)" in proc.stdout
    assert "model classifier: /camera/image_raw (raw rgb8, 64x64, 5.00 fps)" in proc.stdout
    assert "time base: header" in proc.stdout
    listing = dynofa("scenario", "list")
    names = [line.split()[0] for line in listing.stdout.splitlines()]
    assert listing.returncode == 0 and {"tiny", "steady", "two_models"} <= set(names)


def test_bad_scenarios_and_storage_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nduration_s: 5\ncorunners: [{t: 9, name: x, processor: cuda, "
                   "share: 0.5}]\n")  # fmt: skip
    err = one_line_error(dynofa("scenario", "generate", bad, "-o", tmp_path / "b"), "scenario")
    assert "'corunners[0].t' = 9" in err and "0.0 <= t <= 5.0" in err
    bad.write_text("name: bad\nduration_s: 5\ncamera: {encoding: yuv422}\n")
    err = one_line_error(dynofa("scenario", "generate", bad, "-o", tmp_path / "b"), "scenario")
    assert "'camera.encoding' = 'yuv422'" in err and "rgb8, bgr8, mono8" in err
    err = one_line_error(
        dynofa("scenario", "generate", "tiny", "-o", tmp_path / "b", "--storage", "db3"),
        "scenario",
    )
    assert "storage 'db3' is not supported; allowed: sqlite3, mcap" in err
    err = one_line_error(dynofa("scenario", "generate", "nope", "-o", tmp_path / "b"), "scenario")
    assert "not a bundled scenario" in err and "tiny" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # nothing written


def test_check_names_corrupt_bags_unknown_types_and_missing_topics(
    tmp_path: Path, bag: Path
) -> None:
    cut = shutil.copytree(bag, tmp_path / "cut")
    (storage,) = cut.glob("*.mcap")
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    err = one_line_error(dynofa("scenario", "check", cut), "scenario")
    assert f"cannot read bag {cut}" in err

    nodef = tmp_path / "nodef"
    with Writer(nodef, version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
        cam = w.add_connection("/camera/image_raw", T.IMAGE, typestore=bagio.typestore())
        w.add_connection(T.SCENARIO_CORUNNER, "acme_msgs/msg/Load", msgdef="",
                         rihs01="RIHS01_" + "0" * 64)  # fmt: skip
        Image = bagio.typestore().types[T.IMAGE]
        image = Image(header=bagio.header(1, "camera"), height=1, width=1, encoding="mono8",
                      is_bigendian=0, step=1, data=np.zeros(1, np.uint8))  # fmt: skip
        w.write(cam, 1, bagio.serialize(image))
    err = one_line_error(dynofa("scenario", "check", nodef), "scenario")
    assert "/scenario/corunner" in err and "acme_msgs/msg/Load" in err

    nocam = tmp_path / "nocam"
    with bagio.BagWriter(nocam, "mcap") as w:
        Temperature = bagio.typestore().types[T.TEMPERATURE]
        w.write(T.SCENARIO_AMBIENT, T.TEMPERATURE, 1,
                Temperature(header=bagio.header(1), temperature=20.0, variance=0.0))  # fmt: skip
    err = one_line_error(dynofa("scenario", "check", nocam), "scenario")
    assert "has no camera topic" in err and T.SCENARIO_AMBIENT in err

    err = one_line_error(dynofa("scenario", "check", tmp_path / "absent"), "scenario")
    assert "does not exist" in err


def test_report_cli_writes_a_report_and_names_bad_inputs(tmp_path: Path, bag: Path) -> None:
    run = robot_run()
    results = write_results(tmp_path / "robot.results.jsonl", run)
    out = tmp_path / "report"
    proc = dynofa("report", results, "-o", out, "--title", "Robot")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f"report: {out / 'report.html'} (Markdown: "
                                        f"{out / 'report.md'})")  # fmt: skip
    assert (out / "report.md").read_text().startswith("# Robot\n")
    assert read_frames_csv(out / "frames_robot_log.csv") == run.frames

    err = one_line_error(dynofa("report", tmp_path / "none.results.jsonl", "-o", out), "report")
    assert "none.results.jsonl do not exist" in err
    bad = tmp_path / "bad.results.jsonl"
    bad.write_text(results.read_text().splitlines()[0] + '\n{"record": "frame", "t_s": 0')
    err = one_line_error(dynofa("report", bad, "-o", tmp_path / "r2"), "report")
    assert f"{bad}:2: not JSON" in err
    err = one_line_error(dynofa("report", bag, "-o", tmp_path / "r2"), "report")
    assert "no classification results" in err and "scenario bag" in err
    assert not (tmp_path / "r2" / "report.md").exists()


def test_ctrl_c_during_generation_leaves_nothing(tmp_path: Path) -> None:
    big = tmp_path / "in" / "big.yaml"
    big.parent.mkdir()
    big.write_text("name: big\nduration_s: 600\ncamera: {fps: 30, width: 256, height: 256}\n")
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dynofa_ros.cli", "scenario", "generate", str(big),
         "-o", str(out / "big.bag")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible,  # noqa: PLW1509 - one signal call, before exec
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            written = [p for p in out.rglob("*") if p.is_file() and p.stat().st_size > 200_000]
            if written:  # frames are being written into the partial directory
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        assert next(p.name for p in out.iterdir()).startswith(".big.bag.partial-")
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and err.strip() == "dynofa scenario: interrupted"
    assert list(out.iterdir()) == []  # neither a bag nor its partial directory
