"""Append-only, tamper-evident audit log: each entry carries the SHA-256 of its content and its predecessor's.

Entry n's ``hash`` covers its canonical bytes (`canonical_bytes`: every field but ``hash``, including
``seq`` and ``prev_hash``), so editing, deleting, inserting or reordering entries breaks the chain at the
first entry touched, and `verify` names that entry and why.

What a plain hash chain cannot catch, and what closes it:

- Somebody who can write the store can rewrite entry k and *recompute* every later hash: the chain is
  consistent again. Give a ``key`` (kept outside the database, in the service's secrets) and the hash
  becomes HMAC-SHA256 with that key: without the key no valid hash can be computed, so a rewrite by someone
  with only database access fails `verify`.
- Cutting entries off the end leaves a valid shorter chain. Keep the head (``VerifyResult.head``, count)
  somewhere else too (a daily report, another system) and pass it as ``head``: `verify` then refuses a
  chain that does not reach it.

``before``/``after`` are stored as their canonical JSON values (datetimes become UTC ISO 8601 strings), so
an entry read back from a JSON column hashes to the same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64  # prev_hash of the first entry


class AuditError(Exception):
    """A value the audit log cannot record deterministically; one line."""


@dataclass(frozen=True)
class AuditEntry:
    """One action in the log: who did what to which subject, when, with the state before and after."""

    seq: int  # 1, 2, 3, ... without gaps
    at: datetime  # timezone-aware
    actor: str
    action: str
    subject: str  # "warning:42", "user:li"
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    prev_hash: str  # hex; GENESIS for seq 1
    hash: str  # hex SHA-256 (or HMAC-SHA256) of canonical_bytes


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of `verify`: ok with the count and head hash, or the first break with its seq and why."""

    ok: bool
    count: int  # entries verified before the first break (all of them when ok)
    head: str  # hash of the last verified entry (GENESIS when none)
    broken_seq: int | None = None  # the seq the first bad entry should have had (its position from 1)
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.count} entries, head {self.head}"
        return f"broken at seq {self.broken_seq}: {self.reason}"


def canonical_bytes(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    prev_hash: str,
) -> bytes:
    """Deterministic JSON of an entry's fields but ``hash``: sorted keys, no spaces, UTF-8, UTC times.

    Equal content gives equal bytes whatever the dict order or the time zone of the same instant:
    ``at=datetime(2017, 7, 9, 16, tzinfo=UTC+8)`` is written ``"2017-07-09T08:00:00.000000+00:00"``.
    """
    fields = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "before": before,
        "after": after,
        "prev_hash": prev_hash,
    }
    return json.dumps(
        _plain(fields, "entry"), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def chain(
    prev: AuditEntry | None,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    key: bytes | None = None,
) -> AuditEntry:
    """The entry that follows ``prev`` (or the first entry when ``prev`` is None), hashed (with ``key``: HMAC)."""
    if at.utcoffset() is None:
        raise AuditError("at must be timezone-aware")
    fields: dict[str, Any] = {
        "seq": 1 if prev is None else prev.seq + 1,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "before": None if before is None else _plain(before, "before"),
        "after": None if after is None else _plain(after, "after"),
        "prev_hash": GENESIS if prev is None else prev.hash,
    }
    return AuditEntry(**fields, hash=_digest(canonical_bytes(**fields), key))


def verify(
    entries: Iterable[AuditEntry], key: bytes | None = None, *, head: str | None = None
) -> VerifyResult:
    """Walk ``entries`` in order and report the first break, or ok with the count and the head hash.

    ``head``, when given, is a head hash kept elsewhere: the chain must contain it (else: truncated).
    """
    count, last = 0, GENESIS
    seen_head = head is None or head == GENESIS
    for entry in entries:
        expected = count + 1
        try:
            content = canonical_bytes(
                seq=entry.seq,
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                subject=entry.subject,
                before=entry.before,
                after=entry.after,
                prev_hash=entry.prev_hash,
            )
        except (AuditError, AttributeError, TypeError, ValueError) as e:
            return _broken(count, last, f"unreadable entry: {e}")
        if not hmac.compare_digest(_digest(content, key).encode(), str(entry.hash).encode()):
            return _broken(count, last, "content does not match its hash (edited, or wrong key)")
        if entry.seq != expected:
            what = "missing or reordered entries" if entry.seq > expected else "duplicate or reordered entry"
            return _broken(count, last, f"expected seq {expected}, found {entry.seq} ({what})")
        if entry.prev_hash != last:
            return _broken(count, last, "prev_hash does not match the previous entry (replaced or rewritten)")
        count, last = expected, entry.hash
        seen_head = seen_head or last == head
    if not seen_head:
        return VerifyResult(
            False,
            count,
            last,
            count + 1,
            f"chain never reaches the expected head {head} (truncated or rewritten)",
        )
    return VerifyResult(True, count, last)


def _broken(count: int, last: str, reason: str) -> VerifyResult:
    return VerifyResult(False, count, last, count + 1, reason)


def _digest(content: bytes, key: bytes | None) -> str:
    if key is None:
        return hashlib.sha256(content).hexdigest()
    return hmac.new(key, content, hashlib.sha256).hexdigest()


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON types, with datetimes as UTC ISO 8601 strings; refuses what JSON cannot keep exactly."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AuditError(f"{where}: {value} has no JSON form")
        return value
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise AuditError(f"{where}: datetime {value.isoformat()} has no time zone")
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise AuditError(f"{where}: key {k!r} is not a string")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise AuditError(f"{where}: {type(value).__name__} has no canonical JSON form")
