"""pipelines.steps.import_step_modules imports, while Prefect's temporary server starts, every module of the
project that the dedup flow's steps import where they use it: none is left for a step to import on the way
(the list in import_step_modules would otherwise fall behind the steps' code unnoticed)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("crm", "matchers", "scoring", "merge_rules")


def imported_in_functions(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and sub.module and sub.module.split(".")[0] in PROJECT:
                    names.add(sub.module)
                elif isinstance(sub, ast.Import):
                    names |= {a.name for a in sub.names if a.name.split(".")[0] in PROJECT}
    return names


def test_the_steps_lazy_imports_are_all_done_before_the_flow():
    lazy = imported_in_functions(ROOT / "pipelines" / "steps.py")
    assert {"matchers.quality", "scoring.find", "merge_rules.plan", "scoring.report"} <= lazy  # (the parse finds them)
    code = ("import json, sys; import pipelines.steps as s; before = set(sys.modules); s.import_step_modules(); "
            f"print(json.dumps({{m: m in sys.modules for m in {sorted(lazy)!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert [m for m, done in loaded.items() if not done] == []
