"""Partners' subscriptions (`/api/v1/subscriptions...`): department and admin users subscribe an endpoint to
the warnings they want; operations users may read them all.

A webhook subscription's secret (``whsec_...``) is in the answer to its creation and to a rotation, never
again; after a rotation the old secret keeps signing beside the new one for `[partners] rotation_overlap_s`.
A webhook URL is checked before anything is written: its host must resolve, and an address on a private,
loopback or link-local network is refused unless `[partners] allow_private` names it (SSRF guard; the
dispatcher checks again at every attempt).

Department users see and change only their own subscriptions; only an admin links a subscription to a
department (that link lets a partner system acknowledge warnings for the department).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Literal, TypeVar

import asyncpg
from aiohttp import web
from pydantic import Field, model_validator

from channels.webhooks.client import EndpointRefused, check_endpoint
from risk_zoning.store import UnitRecord, region_units
from warnings_svc.dissemination.partners import subscriptions as subs
from warnings_svc.dissemination.partners.log import shown_address
from warnings_svc.lifecycle.transitions import Role
from warnings_svc.web.accounts import User
from warnings_svc.web.appkeys import POOL, RISK_DATABASE, SETTINGS
from warnings_svc.web.auth import (
    Forbidden,
    require_user,
    require_writer,
    settle_pending_token,
    write_as,
    writes_on_lane,
)
from warnings_svc.web.idempotency import UNKEPT_FIELDS
from warnings_svc.web.operations import (
    RequestModel,
    json_answer,
    json_reply,
    operation,
    parse_body,
    parse_path,
)
from warnings_svc.web.problems import ApiProblem

_T = TypeVar("_T")
_AUTHENTICATED = ("bearer", "session")
_WRITE_PROBLEMS = (400, 401, 403, 404, 409, 413, 415, 422)
_OWNERS = (Role.department, Role.admin)
_READERS = (Role.department, Role.admin, Role.operations)
_STATUS = {"invalid": 422, "not_found": 404, "conflict": 409, "forbidden": 403}
Hazard = Literal["heat", "rainstorm", "frost", "sandstorm"]
LevelName = Literal["blue", "yellow", "orange", "red"]
MsgType = Literal["Alert", "Update", "Cancel"]


class SubscriptionPath(RequestModel):
    id: int = Field(ge=1, lt=2**63, description="The subscription's id")


class SubscriptionBody(RequestModel):
    """A subscription: the channel and its address (`url` for a webhook, `email`, `topic` for MQTT under the
    service's partner prefix, `phone` for SMS), and what it wants (each list empty or absent: all)."""

    channel: Literal["webhook", "email", "mqtt", "sms"]
    url: str | None = Field(None, max_length=2000, description="webhook: the https URL to POST to")
    email: str | None = Field(None, max_length=254)
    topic: str | None = Field(None, max_length=600, description="mqtt: topic under the partner prefix")
    phone: str | None = Field(None, max_length=40)
    hazards: list[Hazard] = Field(default_factory=list, max_length=4)
    levels: list[LevelName] = Field(default_factory=list, max_length=4)
    areas: list[str] = Field(default_factory=list, max_length=subs.MAX_AREAS, description="12-digit codes")
    msg_types: list[MsgType] = Field(default_factory=list, max_length=3)
    name: str = Field("", max_length=80)
    department: str | None = Field(None, max_length=64, description="a department's code (admins only)")

    @model_validator(mode="after")
    def _one_address(self) -> SubscriptionBody:
        field = _ADDRESS_FIELD[self.channel]
        given = [f for f in _ADDRESS_FIELD.values() if getattr(self, f) is not None]
        if given != [field]:
            raise ValueError(f"a {self.channel} subscription gives `{field}` and no other address")
        return self

    def address(self) -> str:
        return str(getattr(self, _ADDRESS_FIELD[self.channel]))


_ADDRESS_FIELD = {"webhook": "url", "email": "email", "mqtt": "topic", "sms": "phone"}


def setup_subscriptions_api(app: web.Application) -> None:
    app.router.add_get("/api/v1/subscriptions", list_subscriptions, name="subscriptions")
    app.router.add_post("/api/v1/subscriptions", create_subscription, name="create_subscription")
    app.router.add_get("/api/v1/subscriptions/{id}", get_subscription, name="subscription")
    app.router.add_put("/api/v1/subscriptions/{id}", replace_subscription, name="replace_subscription")
    app.router.add_delete("/api/v1/subscriptions/{id}", delete_subscription, name="delete_subscription")
    app.router.add_post("/api/v1/subscriptions/{id}/pause", pause_subscription, name="pause_subscription")
    app.router.add_post("/api/v1/subscriptions/{id}/resume", resume_subscription, name="resume_subscription")
    app.router.add_post("/api/v1/subscriptions/{id}/rotate", rotate_secret, name="rotate_subscription_secret")


@contextmanager
def _answers() -> Iterator[None]:
    try:
        yield
    except subs.SubscriptionError as e:
        raise ApiProblem(_STATUS.get(e.code, 409), e.code, str(e), e.field) from e


async def _units(request: web.Request) -> dict[str, UnitRecord]:
    """The region's units: from the risk database this process holds, else read once."""
    held = request.app[RISK_DATABASE].held()
    if held is not None:
        return {u.code: u for u in held.units}
    async with request.app[POOL].acquire() as conn:
        return await region_units(conn, request.app[SETTINGS].region)


async def _checked(request: web.Request, body: SubscriptionBody) -> subs.SubscriptionSpec:
    """The body as a subscription spec, every field checked (a webhook's host resolved and vetted)."""
    with _answers():
        spec = subs.check_spec(
            body.channel,
            body.address(),
            hazards=body.hazards,
            levels=body.levels,
            areas=body.areas,
            msg_types=body.msg_types,
            name=body.name,
            units=await _units(request),
        )
    settings = request.app[SETTINGS].partners
    if spec.channel == "email" and settings.smtp is None:
        raise ApiProblem(422, "invalid", "email subscriptions need [partners.smtp] configured", "channel")
    if spec.channel == "mqtt" and settings.mqtt_broker is None:
        raise ApiProblem(
            422, "invalid", "MQTT subscriptions need [partners] mqtt_broker configured", "channel"
        )
    if spec.channel == "sms" and not request.app[SETTINGS].dispatch.sms:
        raise ApiProblem(
            422, "invalid", "SMS subscriptions need an SMS endpoint ([[dispatch.sms]])", "channel"
        )
    if spec.channel == "webhook":  # last: it resolves the host
        try:
            await check_endpoint(spec.address, request.app[SETTINGS].partners.allow_private)
        except EndpointRefused as e:
            raise ApiProblem(422, "invalid", str(e), "url") from e
    return spec


async def _department_id(conn, code: str | None) -> int | None:  # type: ignore[no-untyped-def]
    if code is None:
        return None
    found = await conn.fetchval("SELECT id FROM svc.department WHERE code = $1 AND retired_at IS NULL", code)
    if found is None:
        raise ApiProblem(422, "invalid", f"no department {code[:64]!r}", "department")
    return int(found)


def _may_change(user: User, found: subs.Subscription | None, subscription_id: int) -> subs.Subscription:
    if found is None or (user.role is not Role.admin and found.owner != user.name):
        raise ApiProblem(404, "not_found", f"no subscription {subscription_id}", "id")
    return found


def _owner_role(user: User) -> None:
    if user.role not in _OWNERS:
        raise Forbidden(f"role {user.role.value!r} may not do this; it needs department or admin")


@writes_on_lane
@operation(
    "Subscribe an endpoint to warnings (department or admin); the answer has the webhook's secret, shown once",
    body=SubscriptionBody,
    responses={201: json_reply("The subscription, with `secret` for a webhook", headers=("Location",))},
    problems=_WRITE_PROBLEMS,
    security=_AUTHENTICATED,
)
async def create_subscription(request: web.Request) -> web.Response:
    await _owner_first(request)  # who asks, before the body makes the server resolve anything
    body = await parse_body(request, SubscriptionBody)
    spec = await _checked(request, body)

    async def work(conn, user: User):  # type: ignore[no-untyped-def]
        _owner_role(user)
        if body.department is not None and user.role is not Role.admin:
            raise Forbidden("only an admin links a subscription to a department")
        department_id = await _department_id(conn, body.department)
        async with conn.transaction():
            if user.role is not Role.admin and await subs.count_of(conn, user.name) >= subs.MAX_PER_OWNER:
                raise ApiProblem(
                    409, "conflict", f"at most {subs.MAX_PER_OWNER} subscriptions per user; delete some first"
                )
            return await subs.create(conn, user.name, _with_department(spec, department_id))

    with _answers():
        found, secret = await write_as(request, work)
    answer = found.to_json() | {"secret": secret or None}
    location = request.app.router["subscription"].url_for(id=str(found.id))
    return _with_secret(json_answer(answer, status=201, headers={"Location": str(location)}))


async def _owner_first(request: web.Request) -> None:
    """Refuse at once (401, 403) anyone but a department or admin user, a bearer token looked up now."""
    await settle_pending_token(request)
    require_user(request, *_OWNERS)


def _with_secret(response: web.Response) -> web.Response:
    """An answer carrying a secret shown once: an `Idempotency-Key` replay has it null (never stored)."""
    response[UNKEPT_FIELDS] = ("secret",)
    return response


def _with_department(spec: subs.SubscriptionSpec, department_id: int | None) -> subs.SubscriptionSpec:
    return subs.SubscriptionSpec(
        spec.channel, spec.address, spec.hazards, spec.levels, spec.areas, spec.msg_types, spec.name,
        department_id,
    )  # fmt: skip


@operation(
    "Subscriptions: a department user's own; an admin's or operations user's, everyone's",
    responses={200: json_reply("Subscriptions")},
    problems=(401, 403),
    security=_AUTHENTICATED,
)
async def list_subscriptions(request: web.Request) -> web.Response:
    user = require_user(request, *_READERS, scope="read")
    if request.query:
        raise ApiProblem(400, "invalid", f"unknown parameter {next(iter(request.query))[:40]!r}", None)
    owner = user.name if user.role is Role.department else None
    async with request.app[POOL].acquire() as conn:
        found = await subs.listed(conn, owner)
    return json_answer({"subscriptions": [_as_seen_by(user, s) for s in found]})


def _as_seen_by(user: User, found: subs.Subscription) -> dict[str, object]:
    """A subscription as `user` sees it: a webhook URL's password and query values masked for anyone but
    its owner (they may hold the partner's own tokens)."""
    shown = found.to_json()
    if found.owner != user.name:
        shown["address"] = shown_address(found.channel, found.address)
    return shown


@operation(
    "One subscription (never its secret)",
    path=SubscriptionPath,
    responses={200: json_reply("The subscription")},
    problems=(401, 403, 404),
    security=_AUTHENTICATED,
)
async def get_subscription(request: web.Request) -> web.Response:
    user = require_user(request, *_READERS, scope="read")
    sid = parse_path(request, SubscriptionPath).id
    async with request.app[POOL].acquire() as conn:
        found = await subs.get(conn, sid)
    if found is None or (user.role is Role.department and found.owner != user.name):
        raise ApiProblem(404, "not_found", f"no subscription {sid}", "id")
    return json_answer(_as_seen_by(user, found))


@writes_on_lane
@operation(
    "Replace what a subscription asks for (its secret and state stay)",
    path=SubscriptionPath,
    body=SubscriptionBody,
    responses={200: json_reply("The subscription")},
    problems=_WRITE_PROBLEMS,
    security=_AUTHENTICATED,
)
async def replace_subscription(request: web.Request) -> web.Response:
    await _owner_first(request)
    sid = parse_path(request, SubscriptionPath).id
    body = await parse_body(request, SubscriptionBody)
    spec = await _checked(request, body)

    async def work(conn, user: User):  # type: ignore[no-untyped-def]
        _owner_role(user)
        async with conn.transaction():
            current = _may_change(user, await subs.get(conn, sid, lock=True), sid)
            if body.department is not None and user.role is not Role.admin:
                raise Forbidden("only an admin links a subscription to a department")
            department_id = (
                await _department_id(conn, body.department)
                if body.department is not None
                else current.department_id
            )
            return await subs.update(conn, sid, _with_department(spec, department_id))

    with _answers():
        found, secret = await write_as(request, work)
    if secret:  # it became a webhook: its new secret, shown this once
        return _with_secret(json_answer(found.to_json() | {"secret": secret}))
    return json_answer(found.to_json())


async def _on_own(request: web.Request, act: Callable[[asyncpg.Connection, int, User], Awaitable[_T]]) -> _T:
    """`act(conn, id, user)` on the subscription in the path, on the write lane, for its owner (or an admin),
    the subscription locked in the transaction; 404 for anyone else's, `SubscriptionError`s as problems."""
    require_writer(request)
    sid = parse_path(request, SubscriptionPath).id

    async def work(conn: asyncpg.Connection, user: User) -> _T:
        _owner_role(user)
        async with conn.transaction():
            _may_change(user, await subs.get(conn, sid, lock=True), sid)
            return await act(conn, sid, user)

    with _answers():
        return await write_as(request, work)


async def _change(request: web.Request, action: str) -> web.Response:
    found = await _on_own(
        request, lambda conn, sid, user: subs.change_state(conn, sid, action, f"{action}d by {user.name}")
    )
    return json_answer(found.to_json())


@writes_on_lane
@operation(
    "Pause a subscription: nothing is sent to it until it is resumed",
    path=SubscriptionPath,
    responses={200: json_reply("The subscription")},
    problems=_WRITE_PROBLEMS,
    security=_AUTHENTICATED,
)
async def pause_subscription(request: web.Request) -> web.Response:
    return await _change(request, "pause")


@writes_on_lane
@operation(
    "Resume a paused or disabled subscription",
    path=SubscriptionPath,
    responses={200: json_reply("The subscription")},
    problems=_WRITE_PROBLEMS,
    security=_AUTHENTICATED,
)
async def resume_subscription(request: web.Request) -> web.Response:
    return await _change(request, "resume")


@writes_on_lane
@operation(
    "Delete a subscription (its delivery log stays)",
    path=SubscriptionPath,
    responses={204: json_reply("Deleted")},
    problems=_WRITE_PROBLEMS,
    security=_AUTHENTICATED,
)
async def delete_subscription(request: web.Request) -> web.Response:
    await _on_own(request, lambda conn, sid, _: subs.delete(conn, sid))
    return web.Response(status=204)


@writes_on_lane
@operation(
    "A new webhook secret, shown once; the old one still signs beside it for the rotation's overlap",
    path=SubscriptionPath,
    responses={200: json_reply("The subscription, with the new `secret`")},
    problems=_WRITE_PROBLEMS,
    security=_AUTHENTICATED,
)
async def rotate_secret(request: web.Request) -> web.Response:
    overlap = request.app[SETTINGS].partners.rotation_overlap_s
    found, secret = await _on_own(request, lambda conn, sid, _: subs.rotate(conn, sid, overlap))
    return _with_secret(json_answer(found.to_json() | {"secret": secret}))
