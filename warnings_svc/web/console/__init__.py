"""The forecaster console: proposals and warnings on a map of the region, one page per warning with its impact
preview, history and the lifecycle actions (server-rendered; `static/console.js` calls the write API).

Pages are rendered in this package from the same store functions the API uses; every change goes through the
write API (`web.api.warnings`), so roles, the two-person rule and budgets are enforced in one place. The page
only hides what the user's role cannot do and explains a disabled approval.

Decisions where the issue is silent:

- The map is inline SVG drawn from the risk database's unit outlines (longitude scaled by cos(latitude)),
  cached per risk database version: no tiles, no fonts, no network. A unit is filled with the colour of the
  highest warning in force (issued, not an exercise) that names it or a unit around it; open proposals are
  dashed outlines of their polygons (of their areas when they have none).
- Chinese by default; ``?lang=en`` switches and is remembered in a cookie (links carry it too). The texts are
  in the gettext catalogues (`web.i18n`).
- The impact preview lists the departments a warning calls and their duty chains from the registry
  (`dissemination.partners.registry.departments_in`): those of the warned units, of the towns inside them and
  of the city around them that respond to the hazard at the level. Departments seeded by the demo are
  labelled as demo data; an empty registry is said so, with a link to its page.
- Admins manage the registry on ``/console/departments`` (`departments`): plain HTML forms with the session's
  CSRF token, every change in one transaction with its audit entry.
- An issued version shows the texts that went out (stored at issue); any other shows what it would say if
  approved now (`lifecycle.store.preview`), with budget problems in red.

Modules: `labels` (texts, through the catalogues), `map` (projection and drawing, pure), `region` (the drawn
region, cached per risk database version), `page` (what every page shares), `home` and `warning` (the two
pages: thin handlers over the store's read functions and a context builder each), `departments` (the
registry's pages, admins only), `partners` (the partner subscriptions and their delivery log, with "send
again"), `openapi` (their description), `operations` (the operations view: delivery, coverage and escalation of the
warnings in force; `progress` reads it, `plot` draws it).
"""

from __future__ import annotations

from aiohttp import web

from warnings_svc.web.appkeys import SETTINGS
from warnings_svc.web.console.acknowledgements import console_call_list
from warnings_svc.web.console.departments import setup_departments
from warnings_svc.web.console.home import console_home
from warnings_svc.web.console.map import Projection, RegionView, geometry_path, map_context
from warnings_svc.web.console.openapi import OPENAPI_PATHS
from warnings_svc.web.console.operations import setup_operations
from warnings_svc.web.console.page import ASSETS, REGION_VIEWS, asset_urls
from warnings_svc.web.console.partners import setup_partners_page
from warnings_svc.web.console.region import RegionViews
from warnings_svc.web.console.warning import console_warning
from warnings_svc.web.events import setup_events


def setup_console(app: web.Application) -> None:
    """The console pages and the live event stream they subscribe to (`events.setup_events`).

    Hashes the static files now, so a missing one stops the start.
    """
    app[REGION_VIEWS] = RegionViews(app[SETTINGS].region)
    app[ASSETS] = asset_urls()
    app.router.add_get("/console/", console_home, name="console")
    app.router.add_get("/console/warnings/{id}", console_warning, name="console_warning")
    setup_departments(app)
    setup_partners_page(app)
    setup_operations(app)
    app.router.add_get("/console/acknowledgements", console_call_list, name="console_call_list")
    setup_events(app)


__all__ = [
    "OPENAPI_PATHS",
    "Projection",
    "RegionView",
    "RegionViews",
    "console_home",
    "console_warning",
    "geometry_path",
    "map_context",
    "setup_console",
]
