"""Forecast runs (uploads scored and stored) and the warning proposals scored from them."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

from aiohttp import BodyPartReader, web

from risk_zoning import HAZARDS
from warnings_svc.forecast.proposals import PROPOSAL_STATUSES, fetch_run, find_proposals
from warnings_svc.forecast.runs import (
    new_upload_folder,
    upload_path,
)
from warnings_svc.lifecycle.transitions import Role
from warnings_svc.web.appkeys import POOL, RUN_SCORER, SETTINGS
from warnings_svc.web.auth import (
    require_user,
)
from warnings_svc.web.errors import NotFoundError, RequestError
from warnings_svc.web.problems import ApiProblem

log = logging.getLogger(__name__)


async def upload_run(request: web.Request) -> web.Response:
    """Score an uploaded forecast run (multipart files, or one NetCDF body with ?filename=) and store it."""
    require_user(request, Role.forecaster, Role.approver, Role.operations, scope="write")
    if RUN_SCORER not in request.app:
        raise RequestError("run", "this server does not score forecast runs")
    settings = request.app[SETTINGS]
    loop = asyncio.get_running_loop()
    folder = await loop.run_in_executor(None, new_upload_folder, settings.data_dir)
    try:
        # streamed to disk as it comes: a run's files can be large, and memory is not where they belong
        received = _UploadStream(folder, settings.scoring.max_upload_mib * 2**20)
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, BodyPartReader) and part.filename:
                    await received.save(part.filename, _part_chunks(part))
        else:
            await received.save(
                request.query.get("filename", "forecast.nc"), request.content.iter_chunked(2**20)
            )
        files = sorted(p for p in folder.iterdir() if p.stat().st_size)
        if not files:
            raise RequestError("file", "no forecast file in the request")
        outcome = await request.app[RUN_SCORER].ingest(files, settings.region)
    finally:
        await loop.run_in_executor(None, partial(shutil.rmtree, folder, ignore_errors=True))
    body = {
        "run_id": outcome.run_id,
        "new": outcome.new,
        "proposal_ids": outcome.proposal_ids,
        **outcome.result,
    }
    return web.json_response(
        body,
        status=201 if outcome.new else 200,
        headers={"Location": f"/api/v1/runs/{outcome.run_id}"},
        dumps=partial(json.dumps, ensure_ascii=False),
    )


class _UploadStream:
    """Writes an upload's files into its folder chunk by chunk (off the event loop), refusing the request
    with 413 once it holds more than `limit` bytes in all."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = folder
        self.limit = limit
        self.files = 0
        self.size = 0

    async def save(self, name: str, chunks: AsyncIterator[bytes]) -> None:
        self.files += 1
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(None, upload_path(self.folder, self.files, name).open, "wb")
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
    while chunk := await part.read_chunk(2**20):
        yield chunk


async def get_run(request: web.Request) -> web.Response:
    """A stored run: its summary and the proposals scored from it."""
    try:
        run_id = int(request.match_info["id"])
    except ValueError as e:
        raise RequestError("id", "run id must be an integer") from e
    async with request.app[POOL].acquire() as conn:
        body = await fetch_run(conn, run_id)
    if body is None:
        raise NotFoundError("id", f"no forecast run {run_id}")
    return web.json_response(body, dumps=partial(json.dumps, ensure_ascii=False))


async def list_proposals(request: web.Request) -> web.Response:
    """Proposals, newest first: `status` (default open), optional `hazard`, `limit` (default 50, at most 500)."""
    status = request.query.get("status", "open")
    if status not in PROPOSAL_STATUSES:
        raise RequestError("status", f"unknown status {status!r}; use one of {', '.join(PROPOSAL_STATUSES)}")
    hazard = request.query.get("hazard")
    if hazard is not None and hazard not in HAZARDS:
        raise RequestError("hazard", f"unknown hazard {hazard!r}; known hazards: {', '.join(HAZARDS)}")
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError as e:
        raise RequestError("limit", "limit must be an integer") from e
    if not 1 <= limit <= 500:
        raise RequestError("limit", "limit must be between 1 and 500")
    async with request.app[POOL].acquire() as conn:
        body = await find_proposals(conn, status=status, hazard=hazard, limit=limit)
    return web.json_response({"proposals": body}, dumps=partial(json.dumps, ensure_ascii=False))
