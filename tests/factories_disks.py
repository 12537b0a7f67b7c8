"""Disk faults put in at the inbox's own file-system seam (`ingest.Disk`). The tests run as root in CI, where
`chmod` stops nothing, so the fault is the `OSError` the kernel would raise, not a permission bit."""

from __future__ import annotations

import errno
from pathlib import Path

from warnings_svc.forecast.ingest import Disk


def _inside(path: Path, folder: Path) -> bool:
    return path.parent.resolve() == folder.resolve() or folder.resolve() in path.parent.resolve().parents


class ReadOnlyFolder(Disk):
    """`folder` is on a read-only file system (until `heal()`): nothing in it can be renamed, removed or
    written; reading and copying out of it work."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.broken = True

    def heal(self) -> None:
        self.broken = False

    def _refuse(self, *paths: Path) -> None:
        if self.broken and any(_inside(p, self.folder) for p in paths):
            raise OSError(errno.EROFS, "Read-only file system", str(paths[0]))

    def rename(self, source: Path, target: Path) -> None:
        self._refuse(source, target)
        super().rename(source, target)

    def remove(self, path: Path) -> None:
        self._refuse(path)
        super().remove(path)

    def write_text(self, path: Path, text: str) -> None:
        self._refuse(path)
        super().write_text(path, text)


class FullFolder(Disk):
    """`folder` is on another file system with `free_bytes` left (until `heal()`): a rename into it is EXDEV,
    and writing past the free space stops there with ENOSPC, leaving what was written, as a real disk does."""

    def __init__(self, folder: Path, free_bytes: int) -> None:
        self.folder = folder
        self.free_bytes = free_bytes
        self.broken = True

    def heal(self) -> None:
        self.broken = False

    def _write(self, target: Path, data: bytes) -> None:
        room = len(data) if not self.broken else min(len(data), self.free_bytes)
        target.write_bytes(data[:room])
        if self.broken:
            self.free_bytes -= room
        if room < len(data):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))

    def rename(self, source: Path, target: Path) -> None:
        if _inside(target, self.folder) and not _inside(source, self.folder):
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(source))
        super().rename(source, target)

    def copy(self, source: Path, target: Path) -> None:
        if _inside(target, self.folder) and not source.is_dir():
            self._write(target, source.read_bytes())
        else:  # a folder is copied file by file through this method
            super().copy(source, target)

    def write_text(self, path: Path, text: str) -> None:
        if not _inside(path, self.folder):
            super().write_text(path, text)
        else:
            self._write(path, text.encode())
