"""Warming up rendering: after `warm_up`, every language's text templates are compiled and the CAP schema is
loaded, so that a serving process's first approval compiles nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_warm_up_compiles_every_languages_templates_and_the_cap_schema() -> None:
    # in a fresh interpreter: this test process may have rendered texts already
    script = textwrap.dedent(
        """
        import warnings_svc.documents.cap as cap
        import warnings_svc.documents.texts as texts
        from warnings_svc.documents.warm import warm_up

        assert cap._schema is None
        print(warm_up())
        cached = {key[1] for key in texts._environment().cache._mapping}  # (loader, name) -> template
        print(sorted({name.split("/")[0] for name in cached}))
        print(cap._schema is not None)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split("\n")[:3] == ["8", "['en', 'zh-CN']", "True"]  # 4 hazards x 2 languages
