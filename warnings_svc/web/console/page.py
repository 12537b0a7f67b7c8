"""What every console page shares: the user, the page's language (query, cookie, Chinese), the labels, the
CSRF token, the static files' URLs, the security headers; and the console's application keys."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web

from warnings_svc.lifecycle.transitions import PERMISSIONS, Action, Role, WarningStatus
from warnings_svc.web.accounts import User
from warnings_svc.web.appkeys import TEMPLATES
from warnings_svc.web.auth import CSRF, LANGUAGES, USER, login_location
from warnings_svc.web.console.labels import ROLE_NAMES, SCRIPT_LABELS, labels, name_in
from warnings_svc.web.console.region import RegionViews

LANG_COOKIE = "console_lang"
EDITABLE: frozenset[WarningStatus] = frozenset(
    {WarningStatus.draft, WarningStatus.pending_approval, WarningStatus.returned}
)
ISSUED_FAMILY: frozenset[WarningStatus] = frozenset(
    {WarningStatus.issued, WarningStatus.updated, WarningStatus.cancelled, WarningStatus.expired}
)
# Who the partner page (`console.partners`) is for, and the navigation links to
PARTNER_PAGE_ROLES: frozenset[Role] = frozenset({Role.operations, Role.admin, Role.department})
# Who the operations view (`console.operations`) is for
OPERATIONS_ROLES: frozenset[Role] = frozenset({Role.operations, Role.approver, Role.admin})

# Console pages are ours alone: no framing (clickjacking of the approve button), scripts and styles only
# from this site, no inline script.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

REGION_VIEWS = web.AppKey("console_region_views", RegionViews)
ASSETS = web.AppKey("console_assets", dict)
ASSET_FILES: Mapping[str, str] = {"style": "style.css", "css": "console.css", "js": "console.js"}


def asset_urls() -> dict[str, str]:
    """The console's static files by URL with a content hash, so a browser never runs a stale script."""
    folder = resources.files("warnings_svc") / "static"
    return {
        key: f"/static/{name}?v={hashlib.sha256((folder / name).read_bytes()).hexdigest()[:12]}"
        for key, name in ASSET_FILES.items()
    }


@dataclass
class Page:
    """What every console page needs: who, in which language, the CSRF token and the asset URLs."""

    request: web.Request
    user: User
    lang: str
    set_cookie: bool
    t: dict[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return path + ("?lang=en" if self.lang == "en" else "")

    def switch_url(self) -> str:
        return self.request.path + ("?lang=zh" if self.lang == "en" else "?lang=en")

    def can(self, action: Action) -> bool:
        return self.user.role in PERMISSIONS[action]

    @property
    def admin(self) -> bool:
        """Whether the user administers the service (the registry of departments, ...)."""
        return self.user.role == Role.admin

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        """The page as HTML (with the language cookie when the query just chose the language)."""
        html = (
            self.request.app[TEMPLATES]
            .get_template(template)
            .render(
                lang=self.lang,
                t=self.t,
                user={
                    "name": self.user.name,
                    "display": self.user.display_name or self.user.name,
                    "role": name_in(ROLE_NAMES, str(self.user.role), self.lang),
                    "admin": self.admin,
                    "can_see_partners": self.user.role in PARTNER_PAGE_ROLES,
                    "can_see_operations": self.user.role in OPERATIONS_ROLES,
                },
                csrf=self.request.get(CSRF) or "",
                home_url=self.url("/console/"),
                departments_url=self.url("/console/departments"),
                switch_url=self.switch_url(),
                script_labels={k: self.t[k] for k in SCRIPT_LABELS},
                assets=self.request.app[ASSETS],
                **context,
            )
        )
        response = web.Response(text=html, content_type="text/html", status=status, headers=SECURITY_HEADERS)
        if self.set_cookie:
            response.set_cookie(LANG_COOKIE, self.lang, path="/console/", samesite="Strict", httponly=True)
        return response


def page_for(request: web.Request) -> Page:
    """The page's user (or a redirect to the login form) and language (query, then cookie, then Chinese)."""
    asked = request.query.get("lang")
    lang = asked if asked in LANGUAGES else request.cookies.get(LANG_COOKIE, "zh")
    lang = lang if lang in LANGUAGES else "zh"
    user = request.get(USER)
    if user is None:
        location = login_location(request) + ("&lang=en" if lang == "en" else "")
        raise web.HTTPSeeOther(location)
    return Page(
        request, user, lang, asked in LANGUAGES and asked != request.cookies.get(LANG_COOKIE), labels(lang)
    )
