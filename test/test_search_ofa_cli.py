"""From once-for-all's files to a family, through the CLI only: once-for-all-format latency
tables and predictor built in a temporary directory, a search without a checkpoint, the
conversions, then a random-weight w1.2 checkpoint through to the engine on a frame; bad input
(tables, predictor, classes, downloads) gives one line naming the file and writes nothing."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dynofa_ros import cli
from dynofa_ros.family import load_family
from dynofa_ros.search.predictor import AccuracyPredictor, ArchEncoder
from dynofa_ros.search.profile import layer_inventory
from dynofa_ros.supernet.data import FASHION_MNIST_DIR
from dynofa_ros.supernet.download import DownloadError, download
from dynofa_ros.supernet.network import ElasticMobileNetV3, preset

RES = (128, 144)
BOARD = "testboard"
FAST = ["--population", "16", "--generations", "2", "--random", "10", "--quiet"]


def _ofa_tables(d: Path, supernet: str, resolutions=RES) -> Path:
    """Tables exactly in once-for-all's format (no header): MAC-based synthetic means."""
    arch = preset(supernet)
    space = dataclasses.replace(arch.space, resolutions=tuple(resolutions))
    net = ElasticMobileNetV3(dataclasses.replace(arch, space=space))
    d.mkdir(parents=True, exist_ok=True)
    for r in resolutions:
        body = {
            k: {"count": 10, "mean": 0.01 + spec.macs * 1e-8, "std": 0.001}
            for k, spec in layer_inventory(net, r).items()
        }
        (d / f"{r}_lookup_table.yaml").write_text(yaml.safe_dump(body, sort_keys=True))
    return d


def _tutorial_predictor(path: Path) -> Path:
    """once-for-all tutorial's predictor layout: nn.Sequential of 128 inputs (0/2/4/6.*)."""
    torch.manual_seed(3)
    seq = torch.nn.Sequential(
        torch.nn.Linear(128, 400),
        torch.nn.ReLU(),
        torch.nn.Linear(400, 400),
        torch.nn.ReLU(),
        torch.nn.Linear(400, 400),
        torch.nn.ReLU(),
        torch.nn.Linear(400, 1),
    )
    with torch.no_grad():
        seq[6].bias.fill_(0.7)
        seq[6].weight.mul_(0.05)
    torch.save(seq.state_dict(), path)
    return path


def _run(capsys, args: list[str]) -> tuple[int, str, str]:
    rc = cli.main(args)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def ofa_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ofa")
    _ofa_tables(d / "tables", "ofa-w1.2")
    _tutorial_predictor(d / "acc_predictor.pth")
    return d


def test_cli_path_without_then_with_a_checkpoint_to_a_frame(ofa_dir, tmp_path, capsys) -> None:
    tables, pth = ofa_dir / "tables", ofa_dir / "acc_predictor.pth"
    # 1. search straight from once-for-all's files, no checkpoint; one impossible limit
    rec = tmp_path / "raw.search.json"
    rc, out, err = _run(capsys, [
        "search", "--supernet", "ofa-w1.2", "--profile", str(tables), "--predictor", str(pth),
        "--board", BOARD, "--limits-ms", "0.001,2,4", "--out", str(rec), *FAST,
    ])  # fmt: skip
    assert rc == 0, err
    assert "over resolutions 128,144" in out
    assert "[1/3] limit 0.001 ms: skipped" in out and "impossible" in out
    assert "[3/3] limit 4 ms: best" in out and f"({BOARD} table)" in out
    doc = json.loads(rec.read_text())
    limits = doc["search"]["limits"]
    assert "impossible" in limits[0] and [x["limit_ms"] for x in limits] == [0.001, 2.0, 4.0]
    best = [x["best"] for x in limits[1:]]
    assert all(b["latency_ms"] <= lim for b, lim in zip(best, (2.0, 4.0), strict=True))
    assert doc["latency_source"]["measured_on"] == BOARD
    assert doc["latency_source"]["origin"]["measured_by"] == "another board"
    assert doc["accuracy_source"]["kind"] == "predicted"
    assert doc["accuracy_source"]["predictor"]["file"] == str(pth)

    # 2. the one-off conversions, then the same search from the converted files
    conv, pred = tmp_path / "tables", tmp_path / "pred.safetensors"
    rc, out, err = _run(capsys, [
        "import-ofa-tables", str(tables), str(conv), "--supernet", "ofa-w1.2", "--board", BOARD,
    ])  # fmt: skip
    assert rc == 0, err
    assert "imported 2 latency tables" in out
    rc, out, err = _run(capsys, ["import-ofa-predictor", str(pth), str(pred)])
    assert rc == 0, err
    assert "layout ofa-tutorial, 128 inputs" in out
    rec2 = tmp_path / "conv.search.json"
    rc, out, err = _run(capsys, [
        "search", "--supernet", "ofa-w1.2", "--profile", str(conv), "--predictor", str(pred),
        "--limits-ms", "0.001,2,4", "--out", str(rec2), *FAST,
    ])  # fmt: skip
    assert rc == 0, err
    doc2 = json.loads(rec2.read_text())
    assert doc2["search"]["limits"] == limits  # same numbers from the converted files
    assert doc2["latency_source"]["measured_on"] == BOARD  # the board travels in the header

    # 3. a random-weight w1.2 checkpoint in once-for-all's layout -> family -> engine
    torch.manual_seed(0)
    state = ElasticMobileNetV3(preset("ofa-w1.2")).state_dict()
    torch.save({"state_dict": state}, tmp_path / "w12.pth")
    ckpt = tmp_path / "w12.safetensors"
    rc, out, err = _run(capsys, ["import-ofa", str(tmp_path / "w12.pth"), str(ckpt)])
    assert rc == 0, err
    assert "ofa-w1.2" in out
    fam_path = tmp_path / "w12.cpu.family.json"
    rc, out, err = _run(capsys, [
        "search", "--checkpoint", str(ckpt), "--profile", str(conv), "--predictor", str(pred),
        "--resolutions", "128", "--limits-ms", "0.001,3", "--family-size", "2",
        "--record-threads", "1", "--repeat", "2", "--out", str(fam_path),
        "--plot", str(tmp_path / "p.png"), *FAST,
    ])  # fmt: skip
    assert rc == 0, err
    assert f"[{BOARD} table]" in out and "[cpu-onnxruntime-t1 here]" in out
    fam = load_family(fam_path)
    assert fam.supernet["kind"] == "ofa-w1.2" and fam.bn_statistics is None
    assert {m.accuracy_source for m in fam.members} == {"predicted"}
    lat = fam.provenance["latency_source"]
    assert lat["measured_on"] == BOARD and lat["setting"]["backend"] == "table"
    for m in fam.members:  # the latency recorded per member is this machine's, labelled so
        assert [(r.backend, r.threads) for r in m.latency] == [("onnxruntime", 1)]
        searched = fam.provenance["search"]["members"][m.id]
        assert m.accuracy == pytest.approx(searched["accuracy"])

    from dynofa_ros.engine.engine import Engine

    engine = Engine.load(ckpt, fam_path, progress=False)
    try:
        frame = np.random.default_rng(0).integers(0, 255, (96, 120, 3), dtype=np.uint8)
        res = engine.infer_array(frame)
        assert res.member_id in {m.id for m in fam.members} and res.resolution == 128
        assert len(res.class_ids) == 5 and all(0 <= i < 1000 for i in res.class_ids)
    finally:
        engine.close()


def _one_line_error(capsys, args: list[str], *needles: str) -> str:
    rc, _out, err = _run(capsys, args)
    assert rc == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_table_dir_missing_a_resolution_or_of_another_width(ofa_dir, tmp_path, capsys) -> None:
    base = ["--predictor", str(ofa_dir / "acc_predictor.pth"), *FAST]
    out = tmp_path / "s.json"
    _one_line_error(capsys, [
        "search", "--supernet", "ofa-w1.2", "--profile", str(ofa_dir / "tables"),
        "--resolutions", "128,160", "--out", str(out), *base,
    ], "160_lookup_table.yaml", str(ofa_dir / "tables"))  # fmt: skip
    w10 = _ofa_tables(tmp_path / "w10", "ofa-w1.0", (128,))
    _one_line_error(capsys, [
        "search", "--supernet", "ofa-w1.2", "--profile", str(w10), "--out", str(out), *base,
    ], "128_lookup_table.yaml", "for super-network ofa-w1.0, not ofa-w1.2")  # fmt: skip
    _one_line_error(capsys, [
        "import-ofa-tables", str(w10), str(tmp_path / "conv"), "--board", BOARD,
    ], "128_lookup_table.yaml", "ofa-w1.0, not ofa-w1.2")  # fmt: skip
    assert not out.exists() and not (tmp_path / "conv").exists()


def test_predictor_of_another_layout_or_resolution(ofa_dir, tmp_path, capsys) -> None:
    nas = AccuracyPredictor(ArchEncoder(image_size_list=(128, 144, 160)))
    torch.save({"state_dict": nas.state_dict()}, tmp_path / "nas3.pth")
    dst = tmp_path / "p.safetensors"
    _one_line_error(
        capsys,
        ["import-ofa-predictor", str(tmp_path / "nas3.pth"), str(dst)],
        "nas3.pth",
        "123 inputs",
        "encodes 3 resolutions",
    )
    assert not dst.exists()
    rc, _, err = _run(  # with its resolutions named it converts
        capsys,
        [
            "import-ofa-predictor",
            str(tmp_path / "nas3.pth"),
            str(dst),
            "--resolutions",
            "128,144,160",
        ],
    )
    assert rc == 0, err
    # ResNet-style keys: not once-for-all's MBv3 predictor at all
    torch.save({"net.0.weight": torch.zeros(4, 4)}, tmp_path / "other.pth")
    _one_line_error(
        capsys,
        ["import-ofa-predictor", str(tmp_path / "other.pth"), str(tmp_path / "o.safetensors")],
        "other.pth",
    )
    # the tutorial predictor cannot encode 260 (once-for-all's code would index past its bits)
    _ofa_tables(tmp_path / "t260", "ofa-w1.2", (260,))
    _one_line_error(capsys, [
        "search", "--supernet", "ofa-w1.2", "--profile", str(tmp_path / "t260"),
        "--predictor", str(ofa_dir / "acc_predictor.pth"), *FAST,
    ], "acc_predictor.pth", "resolution 260", "112..239")  # fmt: skip


def test_tutorial_encoding_bins_resolutions_as_once_for_all() -> None:
    enc = ArchEncoder(image_size_list=tuple(range(112, 225, 16)), layout="ofa-tutorial")
    assert enc.resolution_bit(220) == enc.resolution_bit(208) == 6
    assert enc.resolution_bit(239) == 7 and enc.resolution_bit(112) == 0
    nas = ArchEncoder(image_size_list=tuple(range(128, 261, 4)))
    assert nas.resolution_bit(260) == len(nas.image_size_list) - 1
    with pytest.raises(Exception, match="220"):
        ArchEncoder().resolution_bit(226)


@pytest.mark.skipif(
    not any(FASHION_MNIST_DIR.glob("train-images-idx3-ubyte*")),
    reason="dataset-fashion-mnist not installed",
)
def test_validation_data_of_other_classes_is_an_error(ofa_dir, tmp_path, capsys) -> None:
    torch.manual_seed(0)
    torch.save(ElasticMobileNetV3(preset("ofa-w1.0")).state_dict(), tmp_path / "w10.pth")
    ckpt = tmp_path / "w10.safetensors"
    assert cli.main(["import-ofa", str(tmp_path / "w10.pth"), str(ckpt), "--quiet"]) == 0
    capsys.readouterr()
    w10 = _ofa_tables(tmp_path / "w10t", "ofa-w1.0", (128,))
    args = ["search", "--checkpoint", str(ckpt), "--profile", str(w10)]
    args += ["--predictor", str(ofa_dir / "acc_predictor.pth"), *FAST]
    _one_line_error(
        capsys,
        [*args, "--data", str(FASHION_MNIST_DIR)],
        str(FASHION_MNIST_DIR),
        "10 grey classes",
        str(ckpt),
        "1000 classes",
    )
    folder = tmp_path / "imgs"
    for c in ("a", "b", "c"):
        (folder / c).mkdir(parents=True)
    _one_line_error(
        capsys, [*args, "--data", str(folder)], str(folder), "3 classes", str(ckpt), "1000"
    )
    assert not list(tmp_path.glob("*.family.json"))


# ------------------------------------------------------------------------------ downloads
class _Server:
    """A loopback HTTP server of in-memory files, with Range support; ``cut`` paths send only
    half their bytes on the first request (a dropped connection)."""

    def __init__(self, files: dict[str, bytes], cut: set[str] | None = None) -> None:
        self.files = files
        self.cut = set(cut or ())
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.cut:
                    server.cut.discard(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def serve() -> Iterator:
    servers = []

    def start(files: dict[str, bytes], cut: set[str] | None = None) -> _Server:
        s = _Server(files, cut)
        s.thread.start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.httpd.shutdown()
        s.httpd.server_close()


def test_import_ofa_downloads_into_the_cache_once(serve, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DYNOFA_CACHE_DIR", raising=False)
    torch.manual_seed(1)
    pth = tmp_path / "w12.pth"
    torch.save({"state_dict": ElasticMobileNetV3(preset("ofa-w1.2")).state_dict()}, pth)
    data = pth.read_bytes()
    srv = serve({"/w12": data})
    sha = hashlib.sha256(data).hexdigest()
    dst = tmp_path / "out.safetensors"
    args = ["import-ofa", "ofa-w1.2", str(dst), "--url", srv.url("/w12"), "--sha256", sha]
    rc, out, err = _run(capsys, args)
    assert rc == 0, err
    cached = tmp_path / "cache" / "dynofa" / "ofa" / "ofa_mbv3_d234_e346_k357_w1.2"
    assert cached.read_bytes() == data and "ofa-w1.2" in out
    assert not list(cached.parent.glob("*.part"))
    dst.unlink()
    rc, out, err = _run(capsys, args)  # from the cache: no second request
    assert rc == 0 and dst.is_file() and len(srv.requests) == 1


def test_download_resumes_after_a_dropped_connection(serve, tmp_path) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    srv = serve({"/f": data}, cut={"/f"})
    dest = tmp_path / "f"
    with pytest.raises(DownloadError, match="run the command again to resume"):
        download(srv.url("/f"), dest, progress=False)
    part = tmp_path / "f.part"
    assert not dest.exists() and 0 < part.stat().st_size < len(data)
    sha = hashlib.sha256(data).hexdigest()
    assert download(srv.url("/f"), dest, sha256=sha, progress=False) == dest
    assert dest.read_bytes() == data and not part.exists()
    assert srv.requests[1][1] == f"bytes={len(data) // 2}-"  # resumed, not restarted


def test_checksum_mismatch_keeps_nothing(serve, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DYNOFA_CACHE_DIR", str(tmp_path / "cache"))
    srv = serve({"/w": b"x" * 1000})
    line = _one_line_error(capsys, [
        "import-ofa", "ofa-w1.0", str(tmp_path / "o.safetensors"), "--url", srv.url("/w"),
        "--sha256", "0" * 64, "--quiet",
    ], "ofa_mbv3_d234_e346_k357_w1.0", "checksum mismatch", "expected " + "0" * 64)  # fmt: skip
    assert "sha256 " + hashlib.sha256(b"x" * 1000).hexdigest() in line
    assert (
        not list((tmp_path / "cache").rglob("*ofa_mbv3*"))
        and not (tmp_path / "o.safetensors").exists()
    )


def test_corrupt_download_is_named_and_dropped(serve, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DYNOFA_CACHE_DIR", str(tmp_path / "cache"))
    srv = serve({"/w": b"<html>not the weights</html>"})
    _one_line_error(capsys, [
        "import-ofa", "ofa-w1.2", str(tmp_path / "o.safetensors"), "--url", srv.url("/w"),
        "--quiet",
    ], "ofa_mbv3_d234_e346_k357_w1.2", "not a readable PyTorch state dict")  # fmt: skip
    assert not list((tmp_path / "cache").rglob("*ofa_mbv3*"))
    assert not (tmp_path / "o.safetensors").exists()
    # a cached file altered after its download no longer matches the checksum kept for it
    srv.files["/w"] = b"abc"
    dest = tmp_path / "cache" / "c"
    download(srv.url("/w"), dest, progress=False)
    dest.write_bytes(b"abd")
    with pytest.raises(DownloadError, match=r"c: checksum mismatch"):
        download(srv.url("/w"), dest, progress=False)
