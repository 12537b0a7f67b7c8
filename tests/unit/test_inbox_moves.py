"""Moving runs to archive/ and quarantine/: whole or not at all, on one file system or across two."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tests.factories_disks import FullFolder, ReadOnlyFolder
from warnings_svc.forecast.ingest import Disk, archive, move_entry, quarantine


def a_run_folder(inbox: Path) -> Path:
    run = inbox / "run1"
    run.mkdir(parents=True)
    (run / "t.nc").write_bytes(b"t" * 3000)
    (run / "p.nc").write_bytes(b"p" * 3000)
    return run


def test_across_file_systems_a_folder_is_copied_checked_and_then_removed(tmp_path: Path) -> None:
    run = a_run_folder(tmp_path / "inbox")
    (tmp_path / "archive").mkdir()
    target = archive(run, tmp_path / "archive", FullFolder(tmp_path / "archive", free_bytes=10**6))
    assert sorted(p.name for p in target.iterdir()) == ["p.nc", "t.nc"]
    assert (target / "t.nc").read_bytes() == b"t" * 3000
    assert not any((tmp_path / "inbox").iterdir())  # no hidden leftover either


def test_a_copy_that_cannot_finish_is_removed_and_the_original_stays(tmp_path: Path) -> None:
    run = a_run_folder(tmp_path / "inbox")
    (tmp_path / "archive").mkdir()
    with pytest.raises(OSError) as failed:
        archive(run, tmp_path / "archive", FullFolder(tmp_path / "archive", free_bytes=4000))
    assert failed.value.errno == errno.ENOSPC
    assert not any((tmp_path / "archive").iterdir())
    assert sorted(p.name for p in run.iterdir()) == ["p.nc", "t.nc"]


class Corrupting(FullFolder):
    """A copy that silently loses its last byte."""

    def _write(self, target: Path, data: bytes) -> None:
        target.write_bytes(data[:-1])


def test_a_copy_that_differs_from_the_original_is_not_kept(tmp_path: Path) -> None:
    source = tmp_path / "inbox" / "a.nc"
    source.parent.mkdir()
    source.write_bytes(b"abc")
    (tmp_path / "archive").mkdir()
    with pytest.raises(OSError, match="differs"):
        move_entry(source, tmp_path / "archive" / "a.nc", Corrupting(tmp_path / "archive", free_bytes=10))
    assert not any((tmp_path / "archive").iterdir()) and source.read_bytes() == b"abc"


def test_an_original_that_cannot_be_removed_leaves_no_second_copy(tmp_path: Path) -> None:
    class ReadOnlyInboxOtherDisk(ReadOnlyFolder):
        def rename(self, source: Path, target: Path) -> None:
            if source.parent != target.parent:
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            super().rename(source, target)

    source = tmp_path / "inbox" / "a.nc"
    source.parent.mkdir()
    source.write_bytes(b"abc")
    (tmp_path / "archive").mkdir()
    with pytest.raises(OSError) as failed:
        archive(source, tmp_path / "archive", ReadOnlyInboxOtherDisk(tmp_path / "inbox"))
    assert failed.value.errno == errno.EROFS
    assert not any((tmp_path / "archive").iterdir()) and source.read_bytes() == b"abc"


def test_a_quarantined_file_gets_its_reason_on_one_file_system(tmp_path: Path) -> None:
    source = tmp_path / "inbox" / "bad.nc"
    source.parent.mkdir()
    source.write_text("junk")
    target = quarantine(source, tmp_path / "quarantine", "bad.nc: not\nNetCDF", Disk())
    assert target.read_text() == "junk" and not source.exists()
    assert target.with_name(target.name + ".reason").read_text() == "bad.nc: not NetCDF\n"
    assert len(list((tmp_path / "quarantine").iterdir())) == 2


def test_a_reason_that_does_not_fit_leaves_nothing_in_the_quarantine(tmp_path: Path) -> None:
    source = tmp_path / "inbox" / "bad.nc"
    source.parent.mkdir()
    source.write_text("junk")
    (tmp_path / "quarantine").mkdir()
    with pytest.raises(OSError):
        quarantine(source, tmp_path / "quarantine", "why", FullFolder(tmp_path / "quarantine", free_bytes=2))
    assert not any((tmp_path / "quarantine").iterdir()) and source.read_text() == "junk"
