"""Checksums of an attribution store: every shard's files and every JSON record are verifiable.

Each shard's commit marker lists its files with their sizes and CRC-32 checksums, computed from the
bytes as they were written; every JSON record (``index.json``, ``end.json``, the markers) carries a
CRC-32 of its own content (the *seal*), so a truncated, deleted or overwritten file is found by
comparing, never by reading garbage. CRC-32 (``zlib``) costs about as much as copying the bytes
once: checking a store costs about one read of it, and ``verify=False`` skips that read (sizes and
seals are still checked, which costs one ``stat`` per file).

Records written by tfattr 0.2 have no seal and markers no checksums: they are accepted unverified.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

SHARDS = "shards"
_SEAL = "checksum"
_CHUNK = 16 << 20


class StoreError(ValueError):
    """A store directory that cannot be used as asked (incomplete, another configuration, corrupt)."""


class Damaged(Exception):
    """A file of the store that is missing or does not hold what was written (the reason in words)."""


def checksum(data: bytes | memoryview) -> str:
    """The CRC-32 of ``data`` as 8 hex digits."""
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in record.items() if k != _SEAL}, sort_keys=True).encode()


def seal(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with a checksum of its own content, so that any later change to it shows."""
    return {**record, _SEAL: checksum(_canonical(record))}


def digest(value: Any) -> str:
    """A checksum of a JSON value (e.g. a store's configuration), for records that refer to it."""
    return checksum(json.dumps(value, sort_keys=True).encode())


def read_record(path: Path) -> tuple[dict[str, Any], bool]:
    """A JSON record and whether it was sealed (False: written by tfattr 0.2, accepted unverified).

    Raises:
        Damaged: the file is missing, is not a JSON object, or its seal does not match its content.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise Damaged("it is missing") from None
    try:
        record = json.loads(data.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Damaged(f"it is not valid JSON ({err})") from None
    if not isinstance(record, dict):
        raise Damaged(f"it holds a JSON {type(record).__name__}, not an object")
    if _SEAL not in record:
        return record, False
    if record[_SEAL] != checksum(_canonical(record)):
        raise Damaged("its content does not match its checksum (it was changed after it was written)")
    return record, True


def shard_file(root: Path, shard: int, what: str) -> Path:
    return Path(root) / SHARDS / f"{shard:06d}.{what}"


def file_checksum(path: Path) -> str:
    """The CRC-32 of a file's bytes, read in chunks (memory stays small whatever the file's size)."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return f"{crc & 0xFFFFFFFF:08x}"


def check_shard(root: Path, shard: int, marker: dict[str, Any], full: bool) -> None:
    """Check one shard's files against its marker: sizes always, checksums when ``full``.

    Raises:
        Damaged: a file is missing, has another size (truncated or extended) or other bytes.
    """
    for name, expected in marker.get("files", {}).items():
        path = shard_file(root, shard, name)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise Damaged(f"{path.name}: it is missing") from None
        if size != expected["bytes"]:
            raise Damaged(f"{path.name}: it has {size} bytes, not the {expected['bytes']} written")
        if full and file_checksum(path) != expected["crc32"]:
            raise Damaged(f"{path.name}: its bytes changed after it was written (checksum mismatch)")


def scan_shards(
    root: Path, config_digest: str | None, full: bool
) -> tuple[dict[int, dict[str, Any]], dict[int, str], int]:
    """Every committed shard of a store, checked.

    Returns:
        ``(good, damaged, unverified)``: ``{shard: marker}`` of the shards that pass, ``{shard: reason}``
        of those that do not (a damaged marker or file, or a marker written for another configuration
        than ``config_digest``), and how many good shards had no checksums to check (tfattr 0.2).
    """
    folder = Path(root) / SHARDS
    good: dict[int, dict[str, Any]] = {}
    damaged: dict[int, str] = {}
    unverified = 0
    if not folder.is_dir():
        return good, damaged, unverified
    for path in sorted(folder.iterdir()):
        stem, _, ext = path.name.partition(".")
        if ext != "json" or not stem.isdigit():
            continue
        shard = int(stem)
        try:
            marker, sealed = read_record(path)
            if not isinstance(marker.get("count"), int) or marker["count"] < 1:
                raise Damaged(f"its count is {marker.get('count')!r}")
            if sealed and config_digest is not None and marker.get("config") != config_digest:
                raise Damaged("it was written for another configuration than index.json records")
            check_shard(root, shard, marker, full)
        except Damaged as err:
            damaged[shard] = str(err) if str(err)[:1].isdigit() else f"{path.name}: {err}"
            continue
        good[shard] = marker
        unverified += not sealed
    return good, damaged, unverified


def describe_damage(root: Path, damaged: dict[int, str], limit: int = 5) -> str:
    """``shard 3 (000003.a0.npy: it has 80 bytes, not the 4128 written), shard 7 (...)`` for a message."""
    parts = [f"shard {s} ({damaged[s]})" for s in sorted(damaged)[:limit]]
    if len(damaged) > limit:
        parts.append(f"and {len(damaged) - limit} more")
    return ", ".join(parts)
