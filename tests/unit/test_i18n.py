"""The pages' translation catalogues: complete in every language, nothing left over, in step with the template."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from warnings_svc.web.console.labels import LABELS, labels
from warnings_svc.web.i18n import (
    LOCALES,
    N_,
    UNTRANSLATED,
    catalogue_path,
    extract_messages,
    extract_problem_titles,
    locale_dir,
    translate,
    translate_known,
)
from warnings_svc.web.problems import Problem
from warnings_svc.web.templates import template_environment

ROOT = Path(__file__).resolve().parents[2]
Key = tuple[str | None, str]


@pytest.fixture(scope="module")
def asked() -> set[Key]:
    """Every (context, message id) the code and the templates ask for."""
    return _keys(extract_messages(ROOT, ROOT / "babel.cfg"))


def _keys(catalogue: Catalog) -> set[Key]:
    return {(m.context, m.id) for m in catalogue if m.id}


def _read(path: Path) -> Catalog:
    with path.open("rb") as f:
        return read_po(f)


def test_the_extraction_finds_the_console_labels_the_login_page_and_the_problem_titles(
    asked: set[Key],
) -> None:
    assert ("console", "Warning map") in asked
    assert ("login", "Sign in") in asked  # from login.html
    assert ("first page", "provisional code") in asked  # from index.html
    assert (None, "Not found") in asked  # problems.py: TITLES[404]
    assert (None, "Conflict with the current state") in asked  # problems.py: TITLES
    assert (None, "Refused") in asked  # problems.py: TITLES.get(status, "Refused")
    assert len(asked) > 200


@pytest.mark.parametrize("locale", sorted(LOCALES.values()))
def test_every_text_the_code_asks_for_is_translated_and_not_fuzzy(asked: set[Key], locale: str) -> None:
    catalogue = _read(catalogue_path(locale))
    entries = {(m.context, m.id): m for m in catalogue if m.id}
    missing = sorted(asked - set(entries), key=str)
    empty = sorted((k for k in asked & set(entries) if not entries[k].string), key=str)
    fuzzy = sorted((k for k in asked & set(entries) if entries[k].fuzzy), key=str)
    assert not missing, f"{locale}: not in the catalogue (pybabel update, then translate): {missing}"
    assert not empty, f"{locale}: not translated: {empty}"
    assert not fuzzy, f"{locale}: fuzzy (check the translation, then drop the flag): {fuzzy}"


@pytest.mark.parametrize("locale", sorted(LOCALES.values()))
def test_no_catalogue_holds_a_text_the_code_no_longer_asks_for(asked: set[Key], locale: str) -> None:
    catalogue = _read(catalogue_path(locale))
    left_over = sorted(_keys(catalogue) - asked, key=str)
    assert not left_over, f"{locale}: no longer used (pybabel update --ignore-obsolete): {left_over}"
    assert not catalogue.obsolete


def test_the_template_lists_exactly_what_the_code_asks_for(asked: set[Key]) -> None:
    assert _keys(_read(locale_dir() / "messages.pot")) == asked


def test_every_catalogue_is_valid_gettext_with_placeholders_kept() -> None:
    for locale in LOCALES.values():
        for message in _read(catalogue_path(locale)):
            if message.id:
                assert message.check() == [], (locale, message.id)
                for placeholder in ("{level}", "{minutes}"):
                    assert (placeholder in message.id) == (placeholder in message.string), (
                        locale,
                        message.id,
                    )


def test_the_console_labels_read_as_before_in_both_languages() -> None:
    zh, en = labels("zh"), labels("en")
    assert (zh["map"], en["map"]) == ("预警地图", "Warning map")
    assert (zh["lang_other"], en["lang_other"]) == ("English", "中文")
    assert (zh["demo_data"], en["demo_data"]) == ("示例数据/demo data", "demo data/示例数据")
    assert set(zh) == set(en) == set(LABELS)
    assert not [v for v in [*zh.values(), *en.values()] if v.startswith("⟦")]


def test_a_text_missing_from_the_catalogue_is_marked_and_a_problem_title_falls_back_to_itself() -> None:
    assert translate(N_("console", "No such text anywhere"), "zh") == UNTRANSLATED.format(
        "No such text anywhere"
    )
    assert translate_known("No such title", "zh") == "No such title"
    assert translate_known("Not found", "zh") == "未找到"


def test_the_problem_extractor_reads_titles_from_calls_and_tables() -> None:
    source = (
        b'P = Problem(404, "x", "Gone")\n_TITLES = {400: "Bad"}\nt = _TITLES.get(s, "Other")\nf(1, "no")\n'
    )
    assert [m for _, _, m, _ in extract_problem_titles(io.BytesIO(source), [], [], {})] == [
        "Gone",
        "Bad",
        "Other",
    ]


@pytest.mark.parametrize("lang", sorted(LOCALES))
def test_the_login_and_error_pages_render_with_no_untranslated_text(lang: str) -> None:
    env = template_environment()
    login = env.get_template("login.html").render(
        lang=lang, next="/console/", name="", error="", switch_url="/"
    )
    error = env.get_template("error.html").render(
        problem=Problem(404, "not-found", "Not found"), detail="no such thing", request_id="r1"
    )
    assert "⟦" not in login and "⟦" not in error
    assert ("登录" if lang == "zh" else "Sign in") in login
    assert "404 · 未找到 Not found" in error
