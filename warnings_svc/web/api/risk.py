"""The risk database summary as JSON."""

from __future__ import annotations

import asyncio

from aiohttp import web

from risk_zoning.summary import summarise
from warnings_svc.web.appkeys import RISK_DATABASE
from warnings_svc.web.operations import json_answer, json_reply, operation


@operation(
    "Summary of the current risk database (as `risk-zoning summary --json`)",
    responses={200: json_reply("Summary")},
    problems=(503,),
)
async def risk_summary(request: web.Request) -> web.Response:
    """The risk database summary, as `risk-zoning summary --json` prints it."""
    db = await request.app[RISK_DATABASE].get()
    summary = await asyncio.get_running_loop().run_in_executor(None, summarise, db)
    return json_answer(summary)
