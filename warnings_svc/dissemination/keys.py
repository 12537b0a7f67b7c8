"""Secrets the service makes for itself and keeps in `data_dir/keys`: the keys of the links it gives out
(broadcasters' airing confirmations, relayers' standing links), so that links sent before a restart work."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def kept_secret(data_dir: Path, filename: str) -> bytes:
    """The secret in `data_dir/keys/filename`: made once (32 random bytes, readable by the owner only), then
    read. Processes starting together agree: the first to create it wins and the others read it."""
    path = data_dir / "keys" / filename
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
    return path.read_bytes()
