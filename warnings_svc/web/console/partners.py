"""The console's partner page, ``/console/partners``: the subscriptions and, for the one chosen, its delivery
log with every attempt and a "send again" button (a plain form, so it works without JavaScript).

Operations and admin users see every subscription; department users only their own
(`web.api.partner_log.may_see`); other roles are refused the page. "Send again" posts the form with the session's
CSRF token (checked by `web.auth`) to ``/console/partners/deliveries/{id}/resend``, which sends again through
the same function as the API (`resend_as`: the same checks, the same audit entry) and goes back to the page
with the outcome named in the query (post, redirect, get: a reload does not send again).
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import Field
from yarl import URL

from warnings_svc.dissemination.partners import log
from warnings_svc.web.api.partner_log import (
    MAX_ID,
    SEES_ALL,
    DeliveryPath,
    resend_as,
    visible_subscription,
)
from warnings_svc.web.appkeys import ISSUING, POOL
from warnings_svc.web.auth import LANGUAGES, Forbidden
from warnings_svc.web.console.labels import (
    MSG_TYPE_NAMES,
    area_separator,
    beijing,
    hazard_name,
    level_name,
    name_in,
)
from warnings_svc.web.console.page import PARTNER_PAGE_ROLES, REGION_VIEWS, Page, page_for
from warnings_svc.web.operations import (
    LenientQuery,
    media_reply,
    operation,
    parse_path,
    parse_query,
    read_form,
)
from warnings_svc.web.write_lane import in_write_lane

MAX_SUBSCRIPTIONS = 500
LOG_PAGE = 30
_HTML = ("text/html",)


class PartnersQuery(LenientQuery):
    """The page's choices; a console page ignores what it does not know (as the other pages do)."""

    lang: Literal[LANGUAGES] | None = None  # type: ignore[valid-type]
    subscription: int | None = Field(None, ge=1, le=MAX_ID, description="The subscription whose log to show")
    before: int | None = Field(None, ge=1, le=MAX_ID, description="Older deliveries: those before this id")
    resent: int | None = Field(None, ge=1, le=MAX_ID, description="The delivery just sent again (a notice)")
    refused: (
        Literal["not_found", "not_resendable", "subscription_deleted", "subscription_inactive"] | None
    ) = None


def _viewer(page: Page) -> None:
    if page.user.role not in PARTNER_PAGE_ROLES:
        raise Forbidden(f"role {page.user.role.value!r} has no partner deliveries to see")


@operation(
    "Partner subscriptions and the delivery log of one, with every attempt and send again (HTML; operations, "
    "admin and department users, who see their own)",
    query=PartnersQuery,
    responses={
        200: media_reply("The page", *_HTML),
        303: media_reply("Not logged in: on to /console/login?next=..."),
        400: media_reply("A parameter that is not of its form: an error page", *_HTML),
        403: media_reply("A role with no partner deliveries: an error page", *_HTML),
        404: media_reply("No such subscription, or not this user's: the page saying so", *_HTML),
    },
    security=("session",),
)
async def console_partners(request: web.Request) -> web.Response:
    """GET /console/partners: the subscriptions the user may see and the chosen one's delivery log."""
    page = page_for(request)
    _viewer(page)
    query = parse_query(request, PartnersQuery)
    owner = None if page.user.role in SEES_ALL else page.user.name
    chosen, deliveries, missing = None, [], None
    async with request.app[POOL].acquire() as conn:
        view = await request.app[REGION_VIEWS].get(conn)
        subscriptions = await log.subscriptions(conn, owner=owner, limit=MAX_SUBSCRIPTIONS)
        wanted = query.subscription or (subscriptions[0].id if subscriptions else None)
        if wanted is not None:
            try:
                chosen = await visible_subscription(conn, page.user, wanted)
            except log.PartnerLogError:  # none, or not this user's: the same answer
                missing = wanted
            else:
                deliveries = await log.deliveries(
                    conn, subscription_id=chosen.id, before_id=query.before, limit=LOG_PAGE
                )
    lang = page.lang

    def filters(s: log.Subscription) -> dict[str, str]:
        """Each filter as names in one line; empty when the filter is empty (everything)."""
        sep = area_separator(lang)
        return {
            "hazards": sep.join(hazard_name(h, lang) for h in s.hazards),
            "levels": sep.join(level_name(v, lang) for v in s.levels),
            "areas": sep.join(view.name(a, lang) for a in s.areas),
            "msg_types": sep.join(name_in(MSG_TYPE_NAMES, m, lang) for m in s.msg_types),
        }

    def row(s: log.Subscription) -> dict[str, Any]:
        return {"s": s, "filters": filters(s), "url": _page_url(page, subscription=s.id)}

    def delivery(d: log.Delivery) -> dict[str, Any]:
        return {
            "d": d,
            "created": beijing(d.created_at, "%m-%d %H:%M:%S"),
            "msg_type": name_in(MSG_TYPE_NAMES, d.msg_type, lang),
            "attempts": [{"a": a, "started": beijing(a.started_at, "%m-%d %H:%M:%S")} for a in d.attempts],
            "resend_url": f"/console/partners/deliveries/{d.id}/resend"
            + ("?lang=en" if lang == "en" else ""),
            "warning_url": page.url(f"/console/warnings/{d.warning_id}"),
        }

    older = None
    if chosen is not None and len(deliveries) == LOG_PAGE:
        older = _page_url(page, subscription=chosen.id, before=deliveries[-1].id)
    return page.render(
        "console/partners.html",
        status=200 if missing is None else 404,
        missing=missing,
        subscriptions=[row(s) for s in subscriptions],
        chosen=None if chosen is None else row(chosen),
        deliveries=[delivery(d) for d in deliveries],
        older=older,
        resent=query.resent,
        refused=query.refused,
    )


def _page_url(page: Page, **query: int | str) -> str:
    url = URL("/console/partners").with_query({**query, **({"lang": "en"} if page.lang == "en" else {})})
    return str(url)


@operation(
    "Send a partner delivery again from the console (form with csrf_token), then back to the page",
    path=DeliveryPath,
    responses={
        303: media_reply(
            "Done, or refused (also a delivery this user may not see: not found): back to /console/partners, "
            "the outcome in the query"
        ),
        400: media_reply("A form that cannot be read: an error page", *_HTML),
        404: media_reply("No such delivery id: an error page", *_HTML),
    },
    problems=(403,),  # no CSRF token, or another site (an error page, as for every console form)
    security=("session",),
)
async def console_resend(request: web.Request) -> web.Response:
    """POST /console/partners/deliveries/{id}/resend."""
    page = page_for(request)  # the role is resend_as' to judge: what a user may not see is not found
    delivery_id = parse_path(request, DeliveryPath).id
    form = await read_form(request)
    raw = form.get("subscription")
    subscription = int(raw) if isinstance(raw, str) and raw.isdigit() and 0 < len(raw) < 19 else None
    audit_key = request.app[ISSUING].audit_key
    outcome: dict[str, Any] = {}
    try:
        resent = await in_write_lane(
            request, lambda conn: resend_as(conn, page.user, delivery_id, audit_key=audit_key)
        )
        outcome = {"resent": delivery_id}
        subscription = subscription or resent.subscription_id
    except log.PartnerLogError as e:
        outcome = {"refused": e.code}
    query = outcome | ({"subscription": subscription} if subscription else {})
    raise web.HTTPSeeOther(_page_url(page, **query))


def setup_partners_page(app: web.Application) -> None:
    """Register the partner page and its send-again form."""
    app.router.add_get("/console/partners", console_partners, name="console_partners")
    app.router.add_post(
        "/console/partners/deliveries/{id}/resend", console_resend, name="console_partner_resend"
    )
