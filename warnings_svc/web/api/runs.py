"""Forecast runs (uploads scored and stored) and the warning proposals scored from them."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Literal

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import Field

from risk_zoning import HAZARDS
from warnings_svc.forecast.proposals import PROPOSAL_STATUSES, fetch_run, find_proposals
from warnings_svc.forecast.runs import (
    RejectedRun,
    new_upload_folder,
    upload_path,
)
from warnings_svc.lifecycle.transitions import Role
from warnings_svc.web.appkeys import POOL, RUN_SCORER, SETTINGS
from warnings_svc.web.auth import (
    require_user,
)
from warnings_svc.web.operations import (
    LenientQuery,
    RequestModel,
    json_answer,
    json_reply,
    operation,
    parse_path,
    parse_query,
)
from warnings_svc.web.problems import ApiProblem

# Longer names are refused: the stored file's name (numbered, reduced to safe characters) must stay within
# the 255 bytes a file system allows.
MAX_FILENAME_CHARS = 200


class UploadQuery(LenientQuery):
    """Query of an upload whose body is the file itself."""

    filename: str = Field(
        "forecast.nc",
        max_length=MAX_FILENAME_CHARS,
        description="The file's name (a body that is one NetCDF file)",
    )


class RunPath(RequestModel):
    id: int = Field(ge=0, lt=10**18, description="The run's id")


class ProposalsQuery(RequestModel):
    """Which proposals, newest first."""

    status: Literal[PROPOSAL_STATUSES] = "open"  # type: ignore[valid-type]
    hazard: Literal[HAZARDS] | None = None  # type: ignore[valid-type]
    limit: int = Field(50, ge=1, le=500)


# Proposals are internal until a warning is issued: reading them needs a login (any role, the read scope).
_READERS = ("bearer", "session")
_RUN_SCORED = json_reply("Scored and stored: run summary and proposals", headers=("Location",))


@operation(
    "Upload a forecast run (NetCDF files, multipart; or one file as the body with ?filename=); it is "
    "scored off the event loop and stored with its proposals",
    query=UploadQuery,
    body_media={
        "multipart/form-data": {
            "type": "object",
            "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
        },
        "application/x-netcdf": {"type": "string", "format": "binary"},
    },
    responses={201: _RUN_SCORED, 200: json_reply("The same run was stored before (same file contents)")},
    problems=(400, 401, 403, 413, 422, 503),
    security=("bearer", "session"),
)
async def upload_run(request: web.Request) -> web.Response:
    """Score an uploaded forecast run (multipart files, or one NetCDF body with ?filename=) and store it."""
    require_user(request, Role.forecaster, Role.approver, Role.operations, scope="write")
    query = parse_query(request, UploadQuery)
    if RUN_SCORER not in request.app:
        raise ApiProblem(400, "not_scoring", "this server does not score forecast runs", "run")
    settings = request.app[SETTINGS]
    loop = asyncio.get_running_loop()
    folder = await loop.run_in_executor(None, new_upload_folder, settings.data_dir)
    # streamed to disk as it comes: a run's files can be large, and memory is not where they belong
    received = _UploadStream(folder, settings.scoring.max_upload_mib * 2**20)
    try:
        if request.content_type.startswith("multipart/"):
            await _save_parts(request, received)
        else:
            await received.save(query.filename, request.content.iter_chunked(2**20))
        files = sorted(p for p in folder.iterdir() if p.stat().st_size)
        if not files:
            raise ApiProblem(400, "no_file", "no forecast file in the request", "file")
        try:
            outcome = await request.app[RUN_SCORER].ingest(files, settings.region)
        except RejectedRun as e:
            raise RejectedRun(received.as_uploaded(str(e))) from None
    finally:
        await loop.run_in_executor(None, partial(shutil.rmtree, folder, ignore_errors=True))
    body = {
        "run_id": outcome.run_id,
        "new": outcome.new,
        "proposal_ids": outcome.proposal_ids,
        **outcome.result,
    }
    return json_answer(
        body, status=201 if outcome.new else 200, headers={"Location": f"/api/v1/runs/{outcome.run_id}"}
    )


async def _save_parts(request: web.Request, received: _UploadStream) -> None:
    """Save every file part of a multipart body; a body that is no readable multipart (no boundary, a part's
    headers not HTTP, cut short) is a 400."""
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.filename:
                await received.save(part.filename, _part_chunks(part))
    except (ValueError, HttpProcessingError) as e:
        raise _unreadable_multipart(e) from e


class _UploadStream:
    """Writes an upload's files into its folder chunk by chunk (off the event loop), refusing the request
    with 413 once it holds more than `limit` bytes in all. Remembers each file's name as uploaded."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = folder
        self.limit = limit
        self.files = 0
        self.size = 0
        self.uploaded_names: dict[Path, str] = {}

    def as_uploaded(self, message: str) -> str:
        """`message` naming each file as it was uploaded, never by where this server keeps it."""
        for path, name in self.uploaded_names.items():
            message = message.replace(str(path), name)
        message = message.replace(f"{self.folder}/", "").replace(str(self.folder), "the upload")
        for path, name in self.uploaded_names.items():
            message = message.replace(path.name, name)
        return message

    async def save(self, name: str, chunks: AsyncIterator[bytes]) -> None:
        if len(name) > MAX_FILENAME_CHARS:
            raise ApiProblem(
                400, "invalid", f"a file name is longer than {MAX_FILENAME_CHARS} characters", "file"
            )
        self.files += 1
        path = upload_path(self.folder, self.files, name)
        # shown in messages: one line of printable text, whatever the client sent
        self.uploaded_names[path] = "".join(c if c.isprintable() else "?" for c in name)
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(None, path.open, "wb")
        try:
            async for chunk in chunks:
                self.size += len(chunk)
                if self.size > self.limit:
                    raise ApiProblem(
                        413,
                        "too_large",
                        f"the upload is larger than {self.limit // 2**20} MiB ([scoring] max_upload_mib)",
                        "file",
                    )
                await loop.run_in_executor(None, out.write, chunk)
        finally:
            await loop.run_in_executor(None, out.close)


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    try:
        while chunk := await part.read_chunk(2**20):
            yield chunk
    except (ValueError, HttpProcessingError) as e:
        raise _unreadable_multipart(e) from e


def _unreadable_multipart(error: Exception) -> ApiProblem:
    text = error.message if isinstance(error, HttpProcessingError) else str(error)
    first = (text.strip().splitlines() or [type(error).__name__])[0][:200]
    return ApiProblem(400, "invalid_multipart", f"the multipart body cannot be read: {first}", "file")


@operation(
    "A stored forecast run and the proposals scored from it (proposals are internal: log in)",
    path=RunPath,
    responses={200: json_reply("Run")},
    problems=(401, 403, 404),
    security=_READERS,
)
async def get_run(request: web.Request) -> web.Response:
    """A stored run: its summary and the proposals scored from it (any logged-in user with the read scope)."""
    require_user(request, scope="read")
    run_id = parse_path(request, RunPath).id
    async with request.app[POOL].acquire() as conn:
        body = await fetch_run(conn, run_id)
    if body is None:
        raise ApiProblem(404, "not_found", f"no forecast run {run_id}", "id")
    return json_answer(body)


@operation(
    "Warning proposals, newest first (internal until a warning is issued: log in)",
    query=ProposalsQuery,
    responses={200: json_reply("Proposals")},
    problems=(400, 401, 403),
    security=_READERS,
)
async def list_proposals(request: web.Request) -> web.Response:
    """Proposals, newest first: `status` (default open), optional `hazard`, `limit` (default 50, at most 500);
    any logged-in user with the read scope."""
    require_user(request, scope="read")
    query = parse_query(request, ProposalsQuery)
    async with request.app[POOL].acquire() as conn:
        body = await find_proposals(conn, status=query.status, hazard=query.hazard, limit=query.limit)
    return json_answer({"proposals": body})
