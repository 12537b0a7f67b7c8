"""Rendering made ready before the first warning: a serving process compiles the text templates of every
language and hazard, loads their locale data and compiles the CAP schema once it is up, rather than during
its first approval.

Without it the first approval a process serves renders the English texts cold: 54 ms instead of 11 ms when
idle, and two to three times that under load (bench/README.md, the public side under load).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from warnings_svc.documents.cap import CapTexts, render_cap, validate_cap
from warnings_svc.documents.message import Area, Issuer, WarningMessage
from warnings_svc.documents.texts import LANGUAGES, render_texts
from warnings_svc.vocabulary import HAZARD_LEVELS

_ISSUER = Issuer("warm-up@localhost", "00000000000000", "", "")
_AREA = Area("150302000000", "海勃湾区", "Haibowan")


def warm_up() -> int:
    """Render every hazard's highest level in every language once, and one CAP document; how many texts."""
    sent = datetime(2026, 7, 1, 2, tzinfo=UTC)
    rendered = 0
    for hazard, levels in HAZARD_LEVELS.items():
        msg = WarningMessage(
            identifier=f"00000000000000_{hazard}", msg_type="Alert", status="Exercise", hazard=hazard,
            level=levels[-1], areas=(_AREA,), sent=sent, onset=sent + timedelta(hours=1),
            expires=sent + timedelta(hours=25), issuer=_ISSUER,
        )  # fmt: skip
        texts: dict[str, CapTexts] = {}
        for lang in LANGUAGES:
            t = render_texts(msg, lang=lang)
            texts[lang] = CapTexts(t.headline, t.description, t.instruction, t.area_desc, t.event)
            rendered += 1
        if hazard == "heat":
            validate_cap(render_cap(msg, texts))
    return rendered
