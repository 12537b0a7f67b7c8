"""``GET /api/v1/airings/{token}``: a broadcaster confirms that a warning went on air (`channels.broadcaster`) by
opening the link it was sent.

The token is the one-time link's secret (an HMAC of the delivery's key, unforgeable): no login. A confirmed
airing becomes evidence of reach for each area of the version, estimated as the area's population times the
broadcaster's audience share (`[[dispatch.radio_tv]]`). Confirming again changes nothing; an unknown token is
a 404 and writes nothing.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from warnings_svc.dissemination import area_outbox
from warnings_svc.web.appkeys import POOL, SETTINGS
from warnings_svc.web.operations import RequestModel, json_reply, operation, parse_path
from warnings_svc.web.problems import ApiProblem


class AiringPath(RequestModel):
    token: str = Field(pattern=r"^[A-Za-z0-9_-]{20,64}$", description="the token of the confirmation link")


@operation(
    "A broadcaster confirms that a warning went on air (the link sent with the insertion; no login)",
    path=AiringPath,
    responses={200: json_reply("Confirmed")},
    problems=(404,),
)
async def confirm_airing(request: web.Request) -> web.Response:
    """Store the airing as estimated reach of the version's areas (population times audience share)."""
    token = parse_path(request, AiringPath).token
    shares = {t.name: t.audience_share for t in request.app[SETTINGS].dispatch.radio_tv}
    async with request.app[POOL].acquire() as conn:
        confirmed = await area_outbox.confirm_airing(conn, token, shares)
    if confirmed is None:
        raise ApiProblem(404, "not_found", "no warning was sent with this confirmation link", "token")
    return web.json_response(confirmed)


def setup_airings(app: web.Application) -> None:
    app.router.add_get("/api/v1/airings/{token}", confirm_airing, name="airing_confirm")
