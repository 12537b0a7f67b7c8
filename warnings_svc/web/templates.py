"""The HTML templates' environment, with gettext in the language of the page being rendered (`i18n`)."""

from __future__ import annotations

import jinja2

from warnings_svc.web.i18n import install_translations


def template_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("warnings_svc", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["thousands"] = lambda n: f"{n:,.0f}"
    install_translations(env)
    return env
