"""rosbag2 input / output without ROS tooling (the pure-Python ``rosbags`` package).

- :func:`typestore`: ``Stores.ROS2_KILTED`` plus this package's messages, registered from the
  ``msg/*.msg`` text the ROS build uses (so the type hashes equal those rosidl generates);
- :class:`BagWriter`: writes a bag (rosbag2 version 9, storage ``sqlite3`` or ``mcap``) into a
  hidden temporary directory beside the target and renames it into place only when complete: an
  interrupted or failed write never leaves a bag at the target path;
- :class:`BagReader`: opens a bag directory (or a bare ``.db3`` / ``.mcap`` file) and turns every
  problem (missing / corrupt metadata or storage, a type without definition, a definition that
  differs from this package's) into a :class:`BagError` naming the bag and the topic.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from dynofa_ros.errors import DynofaError
from dynofa_ros.resources import share_dir

STORAGES: dict[str, StoragePlugin] = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
BAG_VERSION: Literal[8, 9] = 9
PACKAGE = "dynofa_ros"


class BagError(DynofaError):
    """A bag that cannot be read or written as asked; names the bag, topic or type."""


def storage_plugin(name: str) -> StoragePlugin:
    try:
        return STORAGES[name]
    except KeyError:
        raise BagError(
            f"storage {name!r} is not supported; allowed: {', '.join(STORAGES)}"
        ) from None


def msg_dir() -> Path:
    """The package's ``msg/`` folder (source tree or ``share/dynofa_ros/msg`` when installed)."""
    return share_dir() / "msg"


def _build_typestore() -> Any:
    store = get_typestore(Stores.ROS2_KILTED)
    files = sorted(msg_dir().glob("*.msg"))
    if not files:
        raise BagError(f"no message definitions found in {msg_dir()}")
    types: dict[str, Any] = {}
    for path in files:
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


@cache
def typestore() -> Any:
    """The typestore with standard Kilted types and this package's messages (shared, cached;
    do not register other types in it)."""
    return _build_typestore()


def stamp(ns: int) -> Any:
    """``builtin_interfaces/msg/Time`` for ``ns`` nanoseconds."""
    Time = typestore().types["builtin_interfaces/msg/Time"]
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def header(ns: int, frame_id: str = "") -> Any:
    Header = typestore().types["std_msgs/msg/Header"]
    return Header(stamp=stamp(ns), frame_id=frame_id)


def stamp_ns(msg: Any) -> int:
    """Nanoseconds of a message's ``header.stamp``."""
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


def serialize(msg: Any, msgtype: str | None = None) -> bytes:
    return bytes(typestore().serialize_cdr(msg, msgtype or msg.__msgtype__))


class BagWriter:
    """Write a bag atomically: ``with BagWriter(path, "mcap") as w: w.write(topic, type, ns, msg)``.

    The bag is written to ``<parent>/.<name>.partial-XXXX/<name>`` and renamed to ``path`` when
    the ``with`` block ends without an exception; otherwise (exception, Ctrl-C) the partial
    directory is removed. ``overwrite=True`` replaces an existing bag only at that final rename.
    ``custom_data`` goes into ``metadata.yaml`` (rosbag2 ``custom_data``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        storage: str = "sqlite3",
        *,
        overwrite: bool = False,
        custom_data: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.plugin = storage_plugin(storage)
        self.storage = storage
        self.overwrite = overwrite
        self.custom_data = dict(custom_data or {})
        if self.path.exists() and not overwrite:
            raise BagError(f"{self.path} exists already; choose another path or overwrite it")
        if not self.path.name or self.path.name in (".", ".."):
            raise BagError(f"bag path {str(path)!r} has no name")
        self._tmpdir: Path | None = None
        self._writer: Writer | None = None
        self._connections: dict[tuple[str, str], Any] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = Path(
            tempfile.mkdtemp(prefix=f".{self.path.name}.partial-", dir=self.path.parent)
        )
        try:
            writer = Writer(
                self._tmpdir / self.path.name, version=BAG_VERSION, storage_plugin=self.plugin
            )
            for key, value in self.custom_data.items():
                writer.set_custom_data(key, value)
            writer.open()
        except BaseException:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            raise
        self._writer = writer
        return self

    def connection(self, topic: str, msgtype: str) -> Any:
        key = (topic, msgtype)
        conn = self._connections.get(key)
        if conn is None:
            assert self._writer is not None, "use BagWriter in a with block"
            if msgtype not in typestore().types:
                raise BagError(f"topic {topic}: message type {msgtype!r} is unknown")
            conn = self._writer.add_connection(topic, msgtype, typestore=typestore())
            self._connections[key] = conn
            self.counts.setdefault(topic, 0)
        return conn

    def write_raw(self, topic: str, msgtype: str, timestamp_ns: int, data: bytes) -> None:
        """Write serialized CDR bytes (e.g. received with ``raw=True`` in rclpy)."""
        conn = self.connection(topic, msgtype)
        assert self._writer is not None
        self._writer.write(conn, int(timestamp_ns), data)
        self.counts[topic] += 1

    def write(self, topic: str, msgtype: str, timestamp_ns: int, msg: Any) -> None:
        self.write_raw(topic, msgtype, timestamp_ns, serialize(msg, msgtype))

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._tmpdir is not None and self._writer is not None
        tmpdir, writer = self._tmpdir, self._writer
        self._writer = None
        try:
            if exc_type is None:
                writer.close()
                self._install(tmpdir / self.path.name)
            else:
                with contextlib.suppress(Exception):
                    writer.close()
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def _install(self, built: Path) -> None:
        if not self.path.exists():
            os.rename(built, self.path)
            return
        # Overwrite: move the old bag aside, move the new one in, then delete the old one.
        trash = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.old-", dir=self.path.parent))
        try:
            os.rename(self.path, trash / "old")
            os.rename(built, self.path)
        finally:
            shutil.rmtree(trash, ignore_errors=True)


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int


_READ_ERRORS = (
    ReaderError,
    WriterError,
    sqlite3.Error,
    KeyError,
    ValueError,
    EOFError,
    AssertionError,
)


class BagReader:
    """A bag opened for reading; a context manager. Messages come in time order."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag {self.path} does not exist")
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            raise BagError(f"{self.path} is not a rosbag2 bag: no metadata.yaml in the directory")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except (*_READ_ERRORS, OSError) as exc:
            raise BagError(f"cannot read bag {self.path}: {_reason(exc)}") from None
        self._registered: set[str] = set()
        self._store = typestore()  # replaced by a private copy before registering bag types

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._reader.close()

    @property
    def storage(self) -> str:
        files = list(self.path.glob("*.mcap")) if self.path.is_dir() else [self.path]
        return "mcap" if any(p.suffix == ".mcap" for p in files) else "sqlite3"

    @property
    def custom_data(self) -> dict[str, str]:
        metadata = getattr(self._reader.storage, "metadata", None)
        return dict(getattr(metadata, "custom", None) or {})

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time) if self.message_count else 0

    @property
    def end_ns(self) -> int:
        return int(self._reader.end_time) if self.message_count else 0

    @property
    def message_count(self) -> int:
        return int(self._reader.message_count)

    def topics(self) -> dict[str, TopicInfo]:
        out: dict[str, TopicInfo] = {}
        for name, info in self._reader.topics.items():
            out[name] = TopicInfo(name, info.msgtype or "?", int(info.msgcount))
        return out

    def check_type(self, topic: str) -> str:
        """Make sure messages on ``topic`` can be decoded; return the type name.

        A type this package knows must have the same definition (hash) as here; a type it does
        not know must come with its definition in the bag.
        """
        conns = [c for c in self._reader.connections if c.topic == topic]
        if not conns:
            raise BagError(f"bag {self.path}: no topic {topic}")
        store = self._store
        for conn in conns:
            msgtype = conn.msgtype
            if msgtype in self._registered:
                continue
            if msgtype in store.types:
                if conn.digest and conn.digest.startswith("RIHS01_"):
                    have = store.hash_rihs01(msgtype)
                    if have != conn.digest:
                        where = (
                            f"msg/{msgtype.rsplit('/', 1)[-1]}.msg"
                            if msgtype.startswith(f"{PACKAGE}/")
                            else "this ROS release"
                        )
                        raise BagError(
                            f"bag {self.path}, topic {topic}: the bag's {msgtype} differs from "
                            f"{where} (hash {conn.digest[:20]}… != {have[:20]}…); record it "
                            "again with this version"
                        )
            elif conn.msgdef.data:
                try:
                    from rosbags.typesys import get_types_from_idl

                    data = conn.msgdef.data
                    if data.startswith("=" * 80 + "\nIDL: ") or data.lstrip().startswith("module"):
                        sep = "=" * 80 + "\n"
                        types: dict[str, Any] = {}
                        for part in data.split(sep)[1:] if data.startswith(sep) else [data]:
                            idl = part.split("\n", 1)[1] if part.startswith("IDL: ") else part
                            types.update(get_types_from_idl(idl))
                    else:
                        types = get_types_from_msg(data, msgtype)
                    if store is typestore():
                        store = self._store = _build_typestore()
                    store.register(types)
                except Exception as exc:
                    raise BagError(
                        f"bag {self.path}, topic {topic}: cannot parse the definition of "
                        f"{msgtype}: {exc}"
                    ) from None
            else:
                raise BagError(
                    f"bag {self.path}, topic {topic}: unknown message type {msgtype!r} (not a "
                    "standard or dynofa_ros type, and the bag has no definition for it)"
                )
            self._registered.add(msgtype)
        return conns[0].msgtype

    def raw_messages(
        self, topics: Collection[str] | None = None
    ) -> Iterator[tuple[str, str, int, bytes]]:
        """``(topic, msgtype, timestamp_ns, cdr_bytes)`` in time order."""
        conns = [c for c in self._reader.connections if topics is None or c.topic in topics]
        if not conns:
            return
        try:
            for conn, timestamp, data in self._reader.messages(connections=conns):
                yield conn.topic, conn.msgtype, int(timestamp), bytes(data)
        except (*_READ_ERRORS, OSError) as exc:
            raise BagError(f"cannot read bag {self.path}: {_reason(exc)}") from None

    def restamp(self, msgtype: str, data: bytes, ns: int) -> bytes:
        """``data`` (CDR of a message with a header) with ``header.stamp`` set to ``ns``."""
        from dataclasses import replace

        msg = self._store.deserialize_cdr(data, msgtype)
        msg = replace(msg, header=replace(msg.header, stamp=stamp(ns)))
        return bytes(self._store.serialize_cdr(msg, msgtype))

    def messages(self, topics: Collection[str]) -> Iterator[tuple[str, int, Any]]:
        """``(topic, timestamp_ns, message)`` deserialized, in time order."""
        present = set(self.topics())
        wanted = [t for t in topics if t in present]
        for topic in wanted:
            self.check_type(topic)
        store = self._store
        for topic, msgtype, timestamp, data in self.raw_messages(wanted):
            try:
                msg = store.deserialize_cdr(data, msgtype)
            except Exception as exc:
                raise BagError(
                    f"bag {self.path}, topic {topic}: a {msgtype} message at {timestamp} ns "
                    f"cannot be decoded ({type(exc).__name__}: {exc}); the bag is corrupt"
                ) from None
            yield topic, timestamp, msg


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.Error):
        return f"the sqlite3 storage is corrupt or truncated ({text})"
    if isinstance(exc, ReaderError | OSError):
        return text
    return f"the bag is corrupt or truncated ({type(exc).__name__}: {text})"
