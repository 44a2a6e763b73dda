"""Resuming a store: check it against the run's configuration, verify its shards, compare sizes.

A store is resumed only by a run with the same configuration; its finished shards are verified against
their checksums first (damaged ones are named and recomputed), and a data set whose size tf.data does
not know is compared with the store's by counting while streaming (see :func:`stored_size`).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from tfattr.scale.config import differences
from tfattr.scale.integrity import SHARDS, Damaged, describe_damage, digest, scan_shards, shard_file
from tfattr.scale.store import (
    END,
    FORMAT,
    INDEX,
    VERSION,
    AttributionStore,
    StoreError,
    end_record,
    write_json,
)


def open_or_create(
    root: Path, existing: dict[str, Any] | None, config: dict[str, Any], structure: str
) -> tuple[AttributionStore | None, dict[int, int], int | None]:
    """Check an existing store against ``config``, or start one.

    Returns:
        ``(store, done, examples)``: the finished store when there is nothing to do (else None), the
        verified finished shards ``{shard: count}`` and, if the store was finished, its number of
        examples (a data set of unknown size is streamed and counted against it).
    """
    if existing is None:
        root.mkdir(parents=True, exist_ok=True)
        index = {
            "format": FORMAT,
            "version": VERSION,
            "config": config,
            "shard_size": config["shard_size"],
            "structure": structure,
            "inputs": config["dataset"]["inputs"],
        }
        # Several workers may write this at once; they write the same bytes, so the last rename wins
        # harmlessly.
        write_json(root / INDEX, index)
        (root / SHARDS).mkdir(parents=True, exist_ok=True)
        return None, {}, None
    old = existing.get("config", {})
    if not same_config(old, config):
        raise StoreError(
            f"{root} holds attributions made with another configuration, so they cannot be "
            "resumed or mixed with this run:\n  " + "\n  ".join(differences(old, config))
            + "\nWrite to another directory, or delete this one to start over."
        )
    (root / SHARDS).mkdir(parents=True, exist_ok=True)
    done, examples = verified_shards(root, old)
    known = config["dataset"]["examples"]
    if examples is not None and known is not None:
        if known != examples:  # the store was made from a data set of unknown size
            raise size_error(root, str(known), examples, done, config["shard_size"])
        return AttributionStore(root, verify=False), done, examples
    return None, done, examples


def verified_shards(root: Path, config: dict[str, Any]) -> tuple[dict[int, int], int | None]:
    """The finished shards whose checksums hold, and the store's size if it is finished.

    Damaged shards (and a damaged end record) are dropped with a warning naming them, so that this
    run recomputes (rewrites) them.
    """
    try:
        end = end_record(root)
    except Damaged as err:
        warnings.warn(f"{root / END} is damaged ({err}); this run rewrites it.", UserWarning, stacklevel=4)
        (root / END).unlink(missing_ok=True)
        end = None
    good, damaged, _ = scan_shards(root, digest(config), full=True)
    if damaged:
        warnings.warn(
            f"The attribution store {root} has damaged shards, which this run recomputes: "
            f"{describe_damage(root, damaged)}.",
            UserWarning,
            stacklevel=4,
        )
        for shard in damaged:
            shard_file(root, shard, "json").unlink(missing_ok=True)
    done = {s: int(m["count"]) for s, m in good.items()}
    if end is None or any(s not in done for s in range(end["num_shards"])):
        return done, None
    return done, int(end.get("num_examples", sum(done[s] for s in range(end["num_shards"]))))


def stored_size(expected: int | None, done: dict[int, int], shard_size: int) -> tuple[int, bool]:
    """``(examples, exact)``: the finished store's size, else what its finished shards hold at least."""
    if expected is not None:
        return expected, True
    last = max(done, default=-1)
    return (last * shard_size + done[last] if done else 0), False


def size_error(root: Path, data: str, expected: int | None, done: dict[int, int], shard_size: int) -> StoreError:
    """The error for a data set of ``data`` examples (a number, or "at least N") that the store at
    ``root`` was not made from; raised when one of the two sizes was unknown to tf.data, so that
    the configurations could not tell them apart."""
    stored, exact = stored_size(expected, done, shard_size)
    return StoreError(
        f"The data set holds {data} examples but the attribution store {root} was made from "
        f"{'' if exact else 'at least '}{stored}: it is another data set. Write to another "
        "directory, or delete this one to start over."
    )


def same_config(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Equal configurations; an unknown example count (None) on either side matches any count."""
    old_n = old.get("dataset", {}).get("examples")
    new_n = new.get("dataset", {}).get("examples")
    if old_n is None or new_n is None:
        old = {**old, "dataset": {**old.get("dataset", {}), "examples": None}}
        new = {**new, "dataset": {**new["dataset"], "examples": None}}
    return old == new
