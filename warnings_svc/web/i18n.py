"""The pages' interface texts in gettext catalogues, one per language, read at start-up and cached.

Message ids are the English texts; every text of a label table carries a context naming its table
(``console``, ``warning status``, ``first page``, ...), so the same English word may have two Chinese
translations. Python marks a text with ``N_(context, "English")``; a template calls ``_("English")`` or
``pgettext("context", "English")``; problem titles (``Problem(status, code, "Title")`` and the ``TITLES``
tables) are extracted as they are and translated where the HTML error page shows them. The catalogues are the
``.po`` files under ``warnings_svc/locale/<locale>/LC_MESSAGES/``; they are compiled in memory when first
used, so no ``.mo`` file is kept or shipped. A text missing from a catalogue shows as ``⟦English⟧`` and
``tests/unit/test_i18n.py`` fails until it is translated.

A translator, from the repository root (``pip install Babel``):

- a text was added or changed in the code: extract the template, then merge it into every catalogue::

      pybabel extract -F babel.cfg -k "N_:1c,2" -k "Problem:3" --add-comments=Translators: \\
          --no-location --sort-output --project=wuhai-warnings --version=0.1.0 \\
          -o warnings_svc/locale/messages.pot .
      pybabel update -i warnings_svc/locale/messages.pot -d warnings_svc/locale --no-fuzzy-matching \\
          --ignore-obsolete

  then fill in every empty ``msgstr`` in each ``messages.po`` (for ``en`` the English again);
- a new language: ``pybabel init -i warnings_svc/locale/messages.pot -d warnings_svc/locale -l <locale>``,
  translate its ``messages.po``, add the page language and its locale to `LOCALES` (and the language to
  ``web.auth.LANGUAGES``, which the pages accept);
- check: ``pytest tests/unit/test_i18n.py`` (every text translated in every catalogue, none left over).

The same from Python: `extract_messages` gives the catalogue the code asks for (``babel.messages.pofile``'s
``write_po`` writes it), ``Catalog.update`` merges it into a catalogue read with ``read_po``.
"""

from __future__ import annotations

import ast
import functools
import gettext
from collections.abc import Iterator, Mapping
from importlib import resources
from io import BytesIO
from pathlib import Path
from typing import IO, Any, NamedTuple

import jinja2
from babel.messages import frontend
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

DOMAIN = "messages"
DEFAULT_LANGUAGE = "zh"
LOCALES: Mapping[str, str] = {"zh": "zh_CN", "en": "en"}  # page language -> catalogue locale
# what a marker or a problem looks like to the extractor, beyond gettext's own names (pybabel's -k)
KEYWORDS: tuple[str, ...] = ("N_:1c,2", "Problem:3")
COMMENT_TAGS: tuple[str, ...] = ("Translators:",)
UNTRANSLATED = "⟦{}⟧"


class Message(NamedTuple):
    """A text to translate: its table (the gettext context) and its English text (the message id)."""

    context: str
    id: str


def N_(context: str, message: str) -> Message:
    """Mark `message` for extraction; it is translated when a page is rendered (`translate`)."""
    return Message(context, message)


class _Untranslated(gettext.NullTranslations):
    """The fallback behind a catalogue: a text it lacks shows as ``⟦text⟧`` (the tests look for that)."""

    def gettext(self, message: str) -> str:
        return UNTRANSLATED.format(message)

    def pgettext(self, context: str, message: str) -> str:
        return UNTRANSLATED.format(message)

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        return UNTRANSLATED.format(msgid1 if n == 1 else msgid2)

    def npgettext(self, context: str, msgid1: str, msgid2: str, n: int) -> str:
        return UNTRANSLATED.format(msgid1 if n == 1 else msgid2)


def locale_dir() -> Path:
    """Where the catalogues are (package data)."""
    return Path(str(resources.files("warnings_svc") / "locale"))


def catalogue_path(locale: str) -> Path:
    return locale_dir() / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(lang: str) -> gettext.GNUTranslations:
    """The catalogue of a page language, compiled in memory from its ``.po`` file once per process
    (fuzzy and empty entries are left out, so they show as untranslated)."""
    locale = LOCALES[lang]
    with catalogue_path(locale).open("rb") as po:
        catalogue = read_po(po, locale=locale, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalogue)
    compiled.seek(0)
    found = Translations(compiled, domain=DOMAIN)
    found.add_fallback(_Untranslated())
    return found


def translate(message: Message, lang: str) -> str:
    """A marked text in a page language."""
    return translations(lang).pgettext(message.context, message.id)


def translate_known(message: str, lang: str) -> str:
    """A text the catalogue may not know (a problem title from elsewhere): its translation, or itself."""
    found = translations(lang).gettext(message)
    return message if found == UNTRANSLATED.format(message) else found


def bilingual(message: str) -> str:
    """A text for a page that knows no language (the error page): Chinese, then the English message id;
    the message alone when the catalogue does not know it."""
    chinese = translate_known(message, DEFAULT_LANGUAGE)
    return message if chinese == message else f"{chinese} {message}"


def other_language(lang: str) -> str:
    """The language a page's switch link leads to (the pages have two)."""
    return "en" if lang == "zh" else "zh"


# ---------------------------------------------------------------------------------------------- templates


def _page_language(context: jinja2.runtime.Context) -> str:
    lang = context.get("lang", DEFAULT_LANGUAGE)
    return lang if lang in LOCALES else DEFAULT_LANGUAGE


@jinja2.pass_context
def _gettext(context: jinja2.runtime.Context, message: str) -> str:
    return translations(_page_language(context)).gettext(message)


@jinja2.pass_context
def _ngettext(context: jinja2.runtime.Context, singular: str, plural: str, n: int) -> str:
    return translations(_page_language(context)).ngettext(singular, plural, n)


@jinja2.pass_context
def _pgettext(context: jinja2.runtime.Context, message_context: str, message: str) -> str:
    return translations(_page_language(context)).pgettext(message_context, message)


@jinja2.pass_context
def _npgettext(
    context: jinja2.runtime.Context, message_context: str, singular: str, plural: str, n: int
) -> str:
    return translations(_page_language(context)).npgettext(message_context, singular, plural, n)


def install_translations(env: jinja2.Environment) -> None:
    """Give templates gettext (``_``, ``gettext``, ``pgettext``, ``{% trans %}``) in the language of the
    page being rendered: its ``lang`` variable, Chinese when it has none. One environment serves every
    language, so the callables look the language up per render rather than binding one catalogue
    (``install_gettext_translations`` would)."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(  # type: ignore[attr-defined]  # added by the extension
        gettext=_gettext, ngettext=_ngettext, pgettext=_pgettext, npgettext=_npgettext, newstyle=True
    )
    env.globals["bilingual"] = bilingual


# ---------------------------------------------------------------------------------------------- extraction


def extract_problem_titles(
    fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: Mapping[str, Any]
) -> Iterator[tuple[int, str | None, str, list[str]]]:
    """A Babel extractor for the problem modules: the title of every ``Problem(status, code, "Title")``, the
    values of a ``TITLES`` table and the default of its ``.get(status, "Title")``."""
    titles: list[tuple[int, int, str]] = []
    for node in ast.walk(ast.parse(fileobj.read())):
        found: list[ast.expr] = []
        if isinstance(node, ast.Call) and _name(node.func) == "Problem" and len(node.args) >= 3:
            found = [node.args[2]]
        elif isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_name(t).endswith("TITLES") for t in targets):
                found = [v for v in node.value.values if v is not None]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and _name(node.func.value).endswith("TITLES")
            and len(node.args) == 2
        ):
            found = [node.args[1]]
        titles.extend(
            (value.lineno, value.col_offset, value.value)
            for value in found
            if isinstance(value, ast.Constant) and isinstance(value.value, str)
        )
    for lineno, _, title in sorted(titles):
        yield lineno, None, title, []


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def extract_messages(root: Path, config: Path) -> Catalog:
    """Every text the code and templates under `root` ask for, as the extraction `config` (``babel.cfg``)
    maps their files: what ``pybabel extract`` writes to ``messages.pot``."""
    parse_mapping = getattr(frontend, "parse_mapping_cfg", None) or frontend.parse_mapping  # Babel < 2.15
    with config.open(encoding="utf-8") as f:
        method_map, options_map = parse_mapping(f, str(config))
    keywords = {**DEFAULT_KEYWORDS, **frontend.parse_keywords(list(KEYWORDS))}
    catalogue = Catalog(domain=DOMAIN, project="wuhai-warnings")
    for filename, lineno, message, comments, context in extract_from_dir(
        str(root),
        method_map,
        options_map,
        keywords=keywords,
        comment_tags=COMMENT_TAGS,
    ):
        catalogue.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalogue
