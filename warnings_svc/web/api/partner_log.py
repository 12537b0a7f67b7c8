"""The partner delivery log over HTTP: a subscription's deliveries with every attempt, one delivery, and "send
again" (`dissemination.partners.log`).

Routes (a login; the read scope to read, the write scope to resend):

- ``GET /api/v1/subscriptions/{id}/deliveries``: newest first, ``limit`` per page (default 50, at most 200);
  the answer's ``next`` is the URL of the following page (``before`` the last id of this one), null on the
  last page. ``state`` and ``warning_id`` narrow it; other parameters are refused.
- ``GET /api/v1/partner-deliveries/{id}``: one delivery and its attempts.
- ``POST /api/v1/partner-deliveries/{id}/resend``: back to pending, due now (202 with the delivery); 409 when it
  is pending or sending or its subscription was deleted, paused or disabled. It honours ``Idempotency-Key``
  as every write does (`web.idempotency`) and is recorded in the audit log (``partner_resend``, who, the
  state before and after).

Who: admin and operations users see and resend every delivery; anyone else only those of the subscriptions
they own (``svc.subscription.owner`` is their user name), so a department sees its own log and no other.
What a user may not see is answered as not found, as if it did not exist: a department cannot probe for other
departments' subscriptions. Acknowledgement calls (no subscription) are for admin and operations only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal

import asyncpg
from aiohttp import web
from pydantic import BaseModel, Field

from warnings_svc.dissemination.partners import log
from warnings_svc.dissemination.partners.states import PartnerDeliveryState
from warnings_svc.lifecycle import audit_log
from warnings_svc.lifecycle.transitions import Role
from warnings_svc.web.accounts import User
from warnings_svc.web.appkeys import ISSUING, POOL
from warnings_svc.web.auth import require_user, require_writer, write_as, writes_on_lane
from warnings_svc.web.operations import (
    RequestModel,
    json_answer,
    json_reply,
    operation,
    parse_body,
    parse_path,
    parse_query,
)
from warnings_svc.web.problems import ApiProblem

SEES_ALL: frozenset[Role] = frozenset({Role.admin, Role.operations})
MAX_ID = 2**63 - 1
DEFAULT_PAGE = 50
_STATUS_OF_CODE = {
    "not_found": 404,
    "not_resendable": 409,
    "subscription_deleted": 409,
    "subscription_inactive": 409,
}
_AUTHENTICATED = ("bearer", "session")


def may_see(user: User, owner: str | None) -> bool:
    """Whether `user` may see (and resend) what belongs to a subscription of `owner` (None: an
    acknowledgement call, which has no owner)."""
    return user.role in SEES_ALL or (owner is not None and owner == user.name)


@contextlib.contextmanager
def log_problems() -> Iterator[None]:
    """The log's refusals as problem documents."""
    try:
        yield
    except log.PartnerLogError as e:
        raise ApiProblem(_STATUS_OF_CODE.get(e.code, 409), e.code, str(e), "id") from e


# ---------------------------------------------------------------------------------------------- models


class SubscriptionPath(RequestModel):
    id: int = Field(ge=1, le=MAX_ID, description="The subscription's id")


class DeliveryPath(RequestModel):
    id: int = Field(ge=1, le=MAX_ID, description="The partner delivery's id")


class DeliveriesQuery(RequestModel):
    """Which deliveries of the subscription, newest first."""

    before: int | None = Field(
        None, ge=1, le=MAX_ID, description="Only deliveries with a smaller id (paging)"
    )
    limit: int = Field(DEFAULT_PAGE, ge=1, le=log.MAX_PAGE)
    state: PartnerDeliveryState | None = None
    warning_id: int | None = Field(None, ge=1, le=MAX_ID)


class ResendBody(RequestModel):
    """Sending again takes no fields: an empty body or none at all (anything else is refused)."""


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    latency_ms: int
    outcome: Literal["delivered", "temporary_failure", "permanent_failure"]
    status: int | None = Field(description="HTTP status or SMTP reply code, when there was one")
    error: str
    manual: bool = Field(description="The attempt after a person asked to send again")


class DeliveryOut(BaseModel):
    id: int
    subscription_id: int | None
    ack_request_id: int | None
    warning_id: int
    version: int
    msg_type: Literal["Alert", "Update", "Cancel"]
    channel: Literal["webhook", "email", "mqtt", "sms"]
    address: str = Field(
        description="Where it goes, without secrets (a URL's password and query values masked)"
    )
    message_id: str = Field(description="The idempotency key every attempt carries (webhook-id)")
    state: PartnerDeliveryState
    attempt_count: int
    next_attempt_at: datetime
    give_up_at: datetime
    last_status: int | None
    reason: str
    created_at: datetime
    done_at: datetime | None
    resendable: bool = Field(description="Whether send again may be asked now")
    attempts: list[AttemptOut] = Field(description="Every attempt, oldest first")


class SubscriptionOut(BaseModel):
    id: int
    owner: str
    name: str
    channel: Literal["webhook", "email", "mqtt", "sms"]
    address: str
    hazards: list[str]
    levels: list[str]
    areas: list[str]
    msg_types: list[str]
    state: Literal["active", "paused", "disabled"]
    reason: str
    created_at: datetime
    deleted_at: datetime | None


class DeliveryPage(BaseModel):
    subscription: SubscriptionOut
    deliveries: list[DeliveryOut] = Field(description="Newest first")
    next: str | None = Field(description="The next page's URL; null on the last page")


# ---------------------------------------------------------------------------------------------- handlers


@operation(
    "A subscription's delivery log, newest first, with every attempt (status, latency, error); paged by "
    "`before` (the answer's `next`). The owner, admin and operations only.",
    path=SubscriptionPath,
    query=DeliveriesQuery,
    responses={200: json_reply("The deliveries", DeliveryPage)},
    problems=(400, 401, 403, 404),
    security=_AUTHENTICATED,
)
async def subscription_deliveries(request: web.Request) -> web.Response:
    """GET /api/v1/subscriptions/{id}/deliveries."""
    user = require_user(request, scope="read")
    subscription_id = parse_path(request, SubscriptionPath).id
    query = parse_query(request, DeliveriesQuery)
    with log_problems():
        async with request.app[POOL].acquire() as conn:
            subscription = await visible_subscription(conn, user, subscription_id)
            found = await log.deliveries(
                conn,
                subscription_id=subscription_id,
                warning_id=query.warning_id,
                state=query.state,
                before_id=query.before,
                limit=query.limit,
            )
    next_url = None
    if len(found) == query.limit:
        wanted: dict[str, int | str] = {"before": found[-1].id, "limit": query.limit}
        wanted |= {"state": str(query.state)} if query.state else {}
        wanted |= {"warning_id": query.warning_id} if query.warning_id else {}
        next_url = str(request.rel_url.with_query(wanted))
    return json_answer(
        {
            "subscription": subscription.to_json(),
            "deliveries": [d.to_json() for d in found],
            "next": next_url,
        }
    )


async def visible_subscription(
    conn: asyncpg.Connection, user: User, subscription_id: int
) -> log.Subscription:
    """The subscription when `user` may see it; `PartnerLogError` ``not_found`` otherwise (as if none)."""
    subscription = await log.subscription(conn, subscription_id)
    if not may_see(user, subscription.owner):
        raise log.PartnerLogError("not_found", f"no subscription {subscription_id}")
    return subscription


@operation(
    "One partner delivery with every attempt. The subscription's owner, admin and operations only.",
    path=DeliveryPath,
    responses={200: json_reply("The delivery", DeliveryOut)},
    problems=(401, 403, 404),
    security=_AUTHENTICATED,
)
async def partner_delivery(request: web.Request) -> web.Response:
    """GET /api/v1/partner-deliveries/{id}."""
    user = require_user(request, scope="read")
    delivery_id = parse_path(request, DeliveryPath).id
    with log_problems():
        async with request.app[POOL].acquire() as conn:
            found = await log.delivery(conn, delivery_id)
        if not may_see(user, found.owner):
            raise log.PartnerLogError("not_found", f"no partner delivery {delivery_id}")
    return json_answer(found.to_json())


@writes_on_lane
@operation(
    "Send a delivery again (delivered, dead or dropped): back to pending, due now, attempts kept; 409 when it "
    "is pending or sending or its subscription was deleted, paused or disabled. The subscription's owner, "
    "admin and operations.",
    path=DeliveryPath,
    body=ResendBody,
    body_required=False,
    responses={202: json_reply("Queued again: the delivery as it now stands", DeliveryOut)},
    problems=(400, 401, 403, 404, 409, 413, 415, 422),
    security=_AUTHENTICATED,
)
async def resend_delivery(request: web.Request) -> web.Response:
    """POST /api/v1/partner-deliveries/{id}/resend."""
    require_writer(request)
    delivery_id = parse_path(request, DeliveryPath).id
    await parse_body(request, ResendBody, optional=True)
    audit_key = request.app[ISSUING].audit_key
    with log_problems():
        resent = await write_as(
            request, lambda conn, user: resend_as(conn, user, delivery_id, audit_key=audit_key)
        )
    return json_answer(resent.to_json(), status=202)


async def resend_as(
    conn: asyncpg.Connection, user: User, delivery_id: int, *, audit_key: bytes | None
) -> log.Delivery:
    """`log.resend` for `user`, who must be allowed to see the delivery, recorded in the audit log in the same
    transaction (the API and the console both send again through here)."""
    async with conn.transaction():
        before = await log.delivery(conn, delivery_id)
        if not may_see(user, before.owner):
            raise log.PartnerLogError("not_found", f"no partner delivery {delivery_id}")
        resent = await log.resend(conn, delivery_id, user.name)
        await audit_log.append(
            conn,
            at=datetime.now(UTC),
            actor=user.name,
            action="partner_resend",
            subject=f"partner_delivery:{delivery_id}",
            before={"state": str(before.state), "give_up_at": before.give_up_at.isoformat()},
            after={"state": str(resent.state), "give_up_at": resent.give_up_at.isoformat()},
            key=audit_key,
        )
    return resent


def setup_partner_log(app: web.Application) -> None:
    """Register the delivery log's routes."""
    app.router.add_get(
        "/api/v1/subscriptions/{id}/deliveries", subscription_deliveries, name="subscription_deliveries"
    )
    app.router.add_get("/api/v1/partner-deliveries/{id}", partner_delivery, name="partner_delivery")
    app.router.add_post("/api/v1/partner-deliveries/{id}/resend", resend_delivery, name="resend_delivery")
