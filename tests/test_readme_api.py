"""The README's Python API examples stay true: each ```python block after an
``<!-- api-example`` marker runs as written (from the repository root, with
SOURCE_DATE_EPOCH), and what it prints is the ```text block that follows it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

EXAMPLE = re.compile(r"<!-- api-example.*?-->\n```python\n(.*?)```\n.*?```text\n(.*?)```\n", re.S)
EXAMPLES = EXAMPLE.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_python_api_examples() -> None:
    assert len(EXAMPLES) >= 2
    assert any("pl.read_csv" in code for code, _ in EXAMPLES)  # a Polars DataFrame
    assert any("pd.DataFrame" in code for code, _ in EXAMPLES)  # and a pandas one


@pytest.mark.parametrize(("code", "printed"), EXAMPLES, ids=[f"example-{i + 1}" for i in range(len(EXAMPLES))])
def test_a_readme_example_prints_what_the_readme_says(code: str, printed: str) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1767225600", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == printed
