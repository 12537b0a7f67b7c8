"""When an inbox entry is taken: once it has settled, or at once when its producer marks the folder complete."""

from __future__ import annotations

from pathlib import Path

from warnings_svc.forecast.runs import COMPLETE_MARKER, Inbox


def run_folder(inbox: Inbox, name: str, *, complete: bool) -> Path:
    entry = inbox.inbox / name
    entry.mkdir()
    (entry / "run_instant.nc").write_bytes(b"grid")
    (entry / "run_accum.nc").write_bytes(b"grid")
    if complete:
        (entry / COMPLETE_MARKER).touch()
    return entry


def test_a_folder_just_written_waits_to_settle_and_one_marked_complete_is_taken_at_the_first_poll(
    tmp_path: Path,
) -> None:
    inbox = Inbox(tmp_path, settle_seconds=3600)
    waiting = run_folder(inbox, "run-a", complete=False)
    marked = run_folder(inbox, "run-b", complete=True)
    assert inbox.ready() == [marked]
    assert inbox.ready() == [marked]  # the other still waits for its settling time
    assert waiting.exists()
    # the marker is the producer's word, not a forecast file: it is never scored
    assert [f.name for f in inbox.files_of(marked)] == ["run_accum.nc", "run_instant.nc"]


def test_a_single_file_named_like_the_marker_is_not_an_entry(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path, settle_seconds=0)
    (inbox.inbox / COMPLETE_MARKER).touch()  # dropped at the top of the inbox, it marks nothing
    assert inbox.ready() == [] and inbox.ready() == []
