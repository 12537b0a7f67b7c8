"""Who is asking (bearer tokens, console sessions), CSRF checks, and the console's login and logout.

`authenticate` (a middleware, inside `answer_problems`) sets `USER`, `SCOPES` and `CSRF` on each request;
handlers call `require_user` with the roles (and scope) they need. Decisions where the issue is silent:

- A request with an `Authorization: Bearer` header is judged by the token alone; a token that is unknown,
  revoked or whose user is disabled is a 401 even on public routes, so a client learns at once. Bearer
  requests skip CSRF (browsers never add that header by themselves).
- Session cookie: HttpOnly, SameSite=Strict, Path=/, Secure over https (or when `warnings.public_url` is
  https, i.e. behind a TLS proxy); no Max-Age, so it ends with the browser (shared office machines) while
  the server ends it after 12 h or 2 h idle.
- Unsafe requests (POST, PUT, PATCH, DELETE) without a bearer token are refused when they come from another
  site: `Sec-Fetch-Site: cross-site`, or an `Origin` (including ``null``) whose host is neither this request's
  `Host` nor that of `warnings.public_url`. With a session cookie they must also carry the session's CSRF
  token: the `X-CSRF-Token` header, or the form field `csrf_token` of a urlencoded form (multipart bodies,
  i.e. uploads, must use the header: reading the body here would consume it).
- The login form takes `next` only when it is a local path (`safe_next`); anything else goes to /console/.
- Failed logins answer 401 and the rate limit 429 with `Retry-After`, both re-showing the form.
- A handler marked `writes_on_lane` does its write with `write_as`: the lookup of a bearer token is then made
  on the write lane in the same call as the write, one hand-over to the lane instead of two (under a flood of
  reads each hand-back waits for a turn of the reading loop). A request with no credentials is still refused
  first (`require_writer`); a bad token (401) or a token without the scope (403) is refused once the request
  itself has been read and checked.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import asyncpg
from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from warnings_svc.lifecycle.transitions import Role
from warnings_svc.web.accounts import (
    SCOPES as ALL_SCOPES,
)
from warnings_svc.web.accounts import (
    LoginFailed,
    RateLimited,
    User,
    authenticate_token,
    end_session,
    find_session,
    login,
)
from warnings_svc.web.appkeys import POOL, SETTINGS, TEMPLATES
from warnings_svc.web.client_address import client_address
from warnings_svc.web.i18n import N_, translate
from warnings_svc.web.operations import LenientQuery, media_reply, operation, parse_query, read_form
from warnings_svc.web.write_lane import in_write_lane

T = TypeVar("T")
H = TypeVar("H", bound=Callable[..., Any])
log = logging.getLogger(__name__)

USER = web.RequestKey[User | None]("user")
SCOPES = web.RequestKey[frozenset[str]]("scopes")
CSRF = web.RequestKey[str | None]("csrf")  # the session's CSRF token, for forms to carry; None without one
# A bearer token whose lookup waits for the write (`writes_on_lane`, `write_as`); None once looked up.
PENDING_TOKEN = web.RequestKey[str | None]("pending_token")
_WRITES_ON_LANE = "_writes_on_lane"
INVALID_TOKEN_DETAIL = "the bearer token is unknown or revoked, or its user is disabled"

SESSION_COOKIE = "wsvc_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
DEFAULT_NEXT = "/console/"
LOGIN_PATH = "/console/login"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
REALM = "warnings-svc"
MAX_NEXT_CHARS = 2000
# Routes that never need to know who asks: no session lookup for every stylesheet or probe.
_ANONYMOUS_ROUTES = frozenset({"static", "healthz", "readyz", "metrics"})
# Unsafe routes that need no CSRF token (the origin check still applies): a stale login form in a second tab
# must still work after logging in elsewhere, and logging in replaces the session anyway.
# The acknowledgement and relay pages and the partners' callback act on their link's token or signature, not
# on the session: a logged-in browser opening an acknowledgement link must still work. The public page's
# satisfaction form is anyone's (`web.satisfaction`): a logged-in user may score a warning like anybody.
_NO_CSRF_TOKEN_ROUTES = frozenset(
    {"login_submit", "ack_submit", "relay_submit", "ack_callback", "satisfaction_submit"}
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ---------------------------------------------------------------------------------------------- errors


class AuthError(Exception):
    """The request may not do this as it stands; `problem_headers` go onto the answer."""

    problem_headers: Mapping[str, str] = {}


class Unauthenticated(AuthError):
    """Nobody is logged in (or the bearer token is no good): 401 with a Bearer challenge."""

    def __init__(self, detail: str, *, invalid_token: bool = False) -> None:
        challenge = f'Bearer realm="{REALM}"' + (', error="invalid_token"' if invalid_token else "")
        self.problem_headers = {"WWW-Authenticate": challenge}
        super().__init__(detail)


class Forbidden(AuthError):
    """Logged in, but this role or token scope may not do this: 403."""

    def __init__(self, detail: str, *, missing_scope: str | None = None) -> None:
        if missing_scope is not None:  # RFC 6750 section 3.1
            self.problem_headers = {
                "WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", '
                f'scope="{missing_scope}"'
            }
        super().__init__(detail)


class CsrfRejected(Forbidden):
    """An unsafe request from another site, or without the session's CSRF token: 403."""


# ---------------------------------------------------------------------------------------------- middleware


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Set `USER`, `SCOPES` and `CSRF` from a bearer token or the session cookie; refuse forged requests."""
    request[USER] = None
    request[SCOPES] = frozenset()
    request[CSRF] = None
    request[PENDING_TOKEN] = None
    resource = request.match_info.route.resource
    if resource is not None and resource.name in _ANONYMOUS_ROUTES:
        return await handler(request)
    unsafe = request.method not in SAFE_METHODS
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        token = credentials.strip()
        if unsafe and getattr(request.match_info.handler, _WRITES_ON_LANE, False):
            request[PENDING_TOKEN] = token  # looked up with the write (`write_as`)
            return await handler(request)
        found = await _look_up(request, unsafe, lambda conn: authenticate_token(conn, token))
        if found is None:
            raise Unauthenticated(INVALID_TOKEN_DETAIL, invalid_token=True)
        request[USER], request[SCOPES] = found
        return await handler(request)
    if unsafe:
        _refuse_cross_site(request)
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        session = await _look_up(request, unsafe, lambda conn: find_session(conn, session_id))
        if session is not None:
            request[USER] = session.user
            request[SCOPES] = ALL_SCOPES
            request[CSRF] = session.csrf
            if unsafe and (resource is None or resource.name not in _NO_CSRF_TOKEN_ROUTES):
                await _check_csrf(request, session.csrf)
    return await handler(request)


async def _look_up(
    request: web.Request, unsafe: bool, work: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    """Who asks: a write's lookup runs on the write lane with the write itself (`web.write_lane`), so that
    under a flood of reads it does not wait for the reading loop's turns."""
    if unsafe:
        return await in_write_lane(request, work)
    async with request.app[POOL].acquire() as conn:
        return await work(conn)


def _refuse_cross_site(request: web.Request) -> None:
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        raise CsrfRejected("cross-site requests may not change anything")
    origin = request.headers.get("Origin")
    if origin is None:
        return  # not a browser, or an old one; SameSite=Strict and the CSRF token still hold
    allowed = {request.host.lower()}
    public_url = request.app[SETTINGS].warnings.public_url
    if public_url:
        allowed.add(urlsplit(public_url).netloc.lower())
    if urlsplit(origin).netloc.lower() not in allowed:  # "null" has no netloc
        raise CsrfRejected(f"requests from origin {origin[:100]!r} may not change anything here")


async def _check_csrf(request: web.Request, expected: str) -> None:
    offered: object = request.headers.get(CSRF_HEADER)
    if offered is None and request.content_type == "application/x-www-form-urlencoded":
        offered = (await read_form(request)).get(CSRF_FIELD)  # cached: the handler reads the same form
    if not isinstance(offered, str) or not hmac.compare_digest(offered.encode(), expected.encode()):
        raise CsrfRejected(
            f"missing or wrong CSRF token (send the {CSRF_HEADER} header or a {CSRF_FIELD} field)"
        )


def writes_on_lane(handler: H) -> H:
    """Mark a handler that writes with `write_as`: its bearer token is looked up with the write (the module)."""
    setattr(handler, _WRITES_ON_LANE, True)
    return handler


def require_writer(request: web.Request, scope: str = "write") -> None:
    """Refuse at once (401, 403) a write whose caller is already known not to qualify; a bearer token that waits
    for the write is judged there (`write_as`)."""
    if request.get(PENDING_TOKEN) is None:
        require_user(request, scope=scope)


async def write_as(
    request: web.Request, work: Callable[[asyncpg.Connection, User], Awaitable[T]], *, scope: str = "write"
) -> T:
    """`work(conn, user)` on the write lane, for the user making the request, who must hold `scope`; with a
    bearer token not yet looked up, the lookup runs first in the same call."""
    token = request.get(PENDING_TOKEN)
    if token is None:
        user = require_user(request, scope=scope)
        return await in_write_lane(request, lambda conn: work(conn, user))

    async def as_holder(conn: asyncpg.Connection) -> tuple[tuple[User, frozenset[str]], T]:
        found = await _holder_of(conn, token, scope)
        return found, await work(conn, found[0])

    (request[USER], request[SCOPES]), answer = await in_write_lane(request, as_holder)
    request[PENDING_TOKEN] = None
    return answer


async def settle_pending_token(request: web.Request) -> None:
    """Look up now a bearer token that waits for the write, for what must know the user before the handler
    runs (an `Idempotency-Key` is kept per user)."""
    token = request.get(PENDING_TOKEN)
    if token is not None:
        request[USER], request[SCOPES] = await in_write_lane(request, lambda conn: _holder_of(conn, token))
        request[PENDING_TOKEN] = None


async def _holder_of(
    conn: asyncpg.Connection, token: str, scope: str | None = None
) -> tuple[User, frozenset[str]]:
    found = await authenticate_token(conn, token)
    if found is None:
        raise Unauthenticated(INVALID_TOKEN_DETAIL, invalid_token=True)
    if scope is not None:
        _require_scope(found[1], scope)
    return found


def _require_scope(scopes: frozenset[str], scope: str) -> None:
    if scope not in scopes:
        raise Forbidden(f"this token lacks the {scope!r} scope", missing_scope=scope)


def require_user(request: web.Request, *roles: Role, scope: str = "write") -> User:
    """The user making the request, who must hold one of `roles` (any role when none are given) and `scope`.

    `Unauthenticated` (401) when nobody is logged in; `Forbidden` (403) for a wrong role or missing scope.
    """
    user = request.get(USER)
    if user is None:
        raise Unauthenticated("log in, or send an Authorization: Bearer token")
    _require_scope(request.get(SCOPES, frozenset()), scope)
    if roles and user.role not in roles:
        raise Forbidden(
            f"role {user.role.value!r} may not do this; it needs {' or '.join(r.value for r in roles)}"
        )
    return user


def login_location(request: web.Request) -> str:
    """Where to send a browser that must log in first, coming back to this page afterwards."""
    return f"{LOGIN_PATH}?next={quote(request.path_qs, safe='/')}"


def safe_next(value: object) -> str:
    """`value` when it is a path on this site (no scheme, host or backslash tricks), else `DEFAULT_NEXT`.

    >>> safe_next("/console/warnings/7?lang=en"), safe_next("//evil.example/"), safe_next("https://x/")
    ('/console/warnings/7?lang=en', '/console/', '/console/')
    """
    if not isinstance(value, str) or not value.startswith("/") or len(value) > MAX_NEXT_CHARS:
        return DEFAULT_NEXT
    if (
        value.startswith("//")
        or "\\" in value
        or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value)
    ):
        return DEFAULT_NEXT
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else DEFAULT_NEXT


# ---------------------------------------------------------------------------------------------- pages

LANGUAGES: tuple[str, ...] = ("zh", "en")  # of the pages (texts: `i18n`; messages: texts.LANGUAGES)
# The login page's texts outside its template (the template has its own, `i18n`)
LOGIN_FAILED = N_("login", "Wrong user name or password.")
# Translators: {minutes} is a whole number of minutes
LOGIN_LIMITED = N_("login", "Too many failed sign-ins; try again in {minutes} min.")


def _lang(value: object) -> str:
    return value if isinstance(value, str) and value in LANGUAGES else "zh"


def _secure(request: web.Request) -> bool:
    public_url = request.app[SETTINGS].warnings.public_url
    return request.secure or bool(public_url and public_url.startswith("https://"))


def _login_page(
    request: web.Request,
    lang: str,
    next_path: str,
    *,
    name: str = "",
    error: str = "",
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    other = "en" if lang == "zh" else "zh"
    switch = f"{LOGIN_PATH}?lang={other}" + (
        f"&next={quote(next_path, safe='/')}" if next_path != DEFAULT_NEXT else ""
    )
    html = (
        request.app[TEMPLATES]
        .get_template("login.html")
        .render(lang=lang, next=next_path, name=name, error=error, switch_url=switch)
    )
    response = web.Response(status=status, text=html, content_type="text/html", headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


class PageQuery(LenientQuery):
    """A page's language and where to go next: a person typed them, so odd values fall back to defaults."""

    lang: str = Field("zh", description="Language of the page", json_schema_extra={"enum": list(LANGUAGES)})
    next: str = Field(DEFAULT_NEXT, description="A local path to go on to after login")

    @field_validator("lang", mode="before")
    @classmethod
    def _known_language(cls, value: object) -> str:
        return _lang(value)

    @field_validator("next", mode="before")
    @classmethod
    def _local_path(cls, value: object) -> str:
        return safe_next(value)


class LoginForm(BaseModel):
    """The login form's fields (a url-encoded form)."""

    name: str
    password: str = Field(json_schema_extra={"format": "password"})
    next: str | None = None
    lang: str | None = Field(None, json_schema_extra={"enum": list(LANGUAGES)})


_HTML_PAGE = ("text/html",)


@operation(
    "Console login form (HTML; Chinese, English with ?lang=en)",
    query=PageQuery,
    responses={
        200: media_reply("The form", *_HTML_PAGE),
        303: media_reply("Already logged in: on to `next`"),
    },
)
async def login_form(request: web.Request) -> web.Response:
    """GET /console/login: the form (zh-CN, ?lang=en); someone already logged in goes on to `next`."""
    query = parse_query(request, PageQuery)
    if request[USER] is not None:
        return web.Response(status=303, headers={"Location": query.next})
    return _login_page(request, query.lang, query.next)


@operation(
    "Log in with name and password: sets the session cookie, goes on to `next` (a local path)",
    query=PageQuery,
    body=LoginForm,
    body_type="application/x-www-form-urlencoded",
    responses={
        303: media_reply("Logged in: session cookie set, on to `next`"),
        400: media_reply("Name or password missing, or with a NUL character: the form again", *_HTML_PAGE),
        401: media_reply("Wrong name or password: the form again", *_HTML_PAGE),
        429: media_reply("Too many failed logins (Retry-After): the form again", *_HTML_PAGE),
    },
    problems=(403,),
)
async def login_submit(request: web.Request) -> web.Response:
    """POST /console/login: check the password, start a session, set its cookie and go on to `next`."""
    form = await read_form(request)
    lang = _lang(form.get("lang", request.query.get("lang")))
    next_path = safe_next(form.get("next", request.query.get("next")))
    name, password = form.get("name"), form.get("password")
    # no account has a NUL in its name (nor can PostgreSQL's text hold one): the form again, not a lookup
    if not isinstance(name, str) or not isinstance(password, str) or "\x00" in name + password:
        return _login_page(request, lang, next_path, error=translate(LOGIN_FAILED, lang), status=400)
    try:
        async with request.app[POOL].acquire() as conn:
            client = client_address(
                request.remote, request.headers.get("X-Forwarded-For"), request.app[SETTINGS].trusted_proxies
            )
            session_id, session = await login(conn, name, password, remote_address=client)
            if previous := request.cookies.get(SESSION_COOKIE):
                await end_session(conn, previous)  # a new id at every login: no session fixation
    except RateLimited as e:
        minutes = -(-e.retry_after // 60)
        error = translate(LOGIN_LIMITED, lang).format(minutes=minutes)
        return _login_page(
            request, lang, next_path, name=name, error=error, status=429, headers=e.problem_headers
        )
    except LoginFailed:
        challenge = {"WWW-Authenticate": f'Bearer realm="{REALM}"'}
        return _login_page(
            request,
            lang,
            next_path,
            name=name,
            error=translate(LOGIN_FAILED, lang),
            status=401,
            headers=challenge,
        )
    response = web.Response(status=303, headers={"Location": next_path, "Cache-Control": "no-store"})
    response.set_cookie(
        SESSION_COOKIE, session_id, path="/", httponly=True, samesite="Strict", secure=_secure(request)
    )
    log.info("console login", extra={"user": session.user.name})
    return response


@operation(
    "End the console session (with its CSRF token: csrf_token field or X-CSRF-Token)",
    query=PageQuery,
    responses={303: media_reply("Logged out: on to the login form")},
    problems=(403,),
    security=("session",),
)
async def logout(request: web.Request) -> web.Response:
    """POST /console/logout: end the session (CSRF-checked like any unsafe request), forget the cookie."""
    lang = parse_query(request, PageQuery).lang
    if session_id := request.cookies.get(SESSION_COOKIE):
        async with request.app[POOL].acquire() as conn:
            await end_session(conn, session_id)
    location = LOGIN_PATH + (f"?lang={lang}" if lang != "zh" else "")
    response = web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def setup_auth(app: web.Application) -> None:
    """Add the login and logout routes (the `authenticate` middleware is in `create_app`'s list)."""
    app.router.add_get(LOGIN_PATH, login_form, name="login")
    app.router.add_post(LOGIN_PATH, login_submit, name="login_submit")
    app.router.add_post("/console/logout", logout, name="logout")


# ---------------------------------------------------------------------------------------------- OpenAPI

OPENAPI_SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "A token from `warnings-svc user token`"},
    "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE, "description": "Console login"},
}
