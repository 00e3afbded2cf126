"""`make bench`: run every benchmark in bench/, each as its own process, then write docs/benchmarks.md.

A benchmark is any module in bench/ other than the shared ones (common, data, run_all). Each runs
with its default arguments (``--quick`` passes the short arguments of QUICK_ARGS instead, for a
check that the harness works rather than for figures; benchmarks without quick arguments are skipped). A benchmark that fails is reported and the
others still run; the exit status is 1 if any failed.

docs/benchmarks.md is then made from every bench/results/*.json (a JSON list of records each;
older records are kept, and the page shows them too). A module may define
``markdown(records) -> str`` to render its own section; otherwise its records become a generic
table (one row per record, or per item of a list of results inside a record).

    python -m bench.run_all                      # everything, default arguments
    python -m bench.run_all --only splink_compare --only load_store
    python -m bench.run_all --docs-only           # only regenerate docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from pathlib import Path

from bench import common

log = logging.getLogger("bench.run_all")

SHARED = {"__init__", "common", "data", "run_all"}
# the order benchmarks run in; others found in bench/ follow in name order
ORDER = ["load_store", "merge_throughput", "review_pages", "flow_scale", "find_scale", "normalise_micro",
         "splink_compare"]
# short arguments for --quick: a check of the harness, not figures to publish (nothing is saved);
# a benchmark without an entry here is skipped by --quick
QUICK_ARGS = {
    "load_store": ["--sizes", "10000", "--no-save"],
    "merge_throughput": ["--groups", "1000", "--no-save"],
    "review_pages": ["--groups", "5000", "--repeat", "3", "--no-save"],
    "normalise_micro": ["--n", "50000", "--skip-2m"],
    "splink_compare": ["--sizes", "5000", "--runs", "1", "--no-save"],
}
DOCS = common.ROOT / "docs" / "benchmarks.md"
# names used in headings; other benchmarks get their module name
TITLES = {
    "splink_compare": "crm-dedup against Splink",
    "load_store": "Loading contacts from the store",
    "merge_throughput": "Merge throughput",
    "review_pages": "Review page response times",
    "find_scale": "Find at scale",
    "flow_scale": "Dedup flow, full and incremental",
}


def benchmarks(folder: Path = common.ROOT / "bench") -> list[str]:
    found = sorted(p.stem for p in folder.glob("*.py") if p.stem not in SHARED and not p.stem.startswith("_"))
    return [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]


def run(names: list[str], quick: bool, timeout: float | None) -> dict[str, dict]:
    """Each benchmark in its own process; returns exit code, wall time and output tail per name."""
    outcome = {}
    for name in names:
        if quick and name not in QUICK_ARGS:
            log.info("skipping bench.%s: it has no quick arguments", name)
            continue
        args = QUICK_ARGS.get(name, []) if quick else []
        log.info("running bench.%s %s", name, " ".join(args))
        start = time.perf_counter()
        m = common.run_child(common.python_child(f"bench.{name}", *args), timeout=timeout)
        outcome[name] = {"returncode": m["returncode"], "timed_out": m["timed_out"],
                         "wall_s": round(time.perf_counter() - start, 1)}
        status = "timed out" if m["timed_out"] else ("ok" if m["returncode"] == 0 else f"exit {m['returncode']}")
        log.info("bench.%s: %s in %.0f s", name, status, outcome[name]["wall_s"])
        if m["returncode"] != 0:
            log.error("bench.%s output (tail):\n%s", name, m["output_tail"])
    return outcome


# ---------------------------------------------------------------------------------------------
# docs/benchmarks.md


_fmt = common.fmt
table = common.md_table


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif not isinstance(v, list):
            out[key] = v
    return out


def _columns(rows: list[dict]) -> list[str]:
    """Every key of the rows, in order; a key that older rows lack goes right after the key it follows in
    the first row that has it (so a figure added later, e.g. full.peak_tree_mb, stands beside its
    neighbour full.peak_rss_mb rather than at the far end of the table)."""
    columns: list[str] = []
    for row in rows:
        previous = None
        for key in row:
            if key not in columns:
                columns.insert(columns.index(previous) + 1 if previous is not None else len(columns), key)
            previous = key
    return columns


def generic_markdown(records: list[dict]) -> str:
    """A table of every record: scalar fields (nested ones dotted), one row per item of an inner list
    of results; columns equal in every row are listed once above the table."""
    rows = []
    for r in records:
        body = {k: v for k, v in r.items() if k not in ("machine", "versions")}
        context = _flatten(body)
        inner = [v for v in body.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        if inner:
            for item in inner[0]:
                rows.append({**context, **_flatten(item)})
        else:
            rows.append(context)
    if not rows:
        return "No results yet."
    columns = _columns(rows)
    constant = {c: rows[0].get(c) for c in columns if len(rows) > 1 and all(row.get(c) == rows[0].get(c) for row in rows)}
    shown = [c for c in columns if c not in constant]
    parts = []
    if constant:
        parts.append("In every row: " + "; ".join(f"{k} = {_fmt(v)}" for k, v in constant.items()) + ".")
    parts.append(table(shown or columns, [[row.get(c) for c in (shown or columns)] for row in rows]))
    return "\n\n".join(parts)


def _machine_line(records: list[dict]) -> str:
    last = records[-1]
    m = last.get("machine", {})
    v = last.get("versions", {})
    bits = [f"last run {last.get('date', '?')}"]
    if m:
        cpu = m.get("cpu_model") or m.get("processor") or m.get("machine", "")
        bits.append(f"{m.get('cpu_count', '?')} CPUs {cpu}".strip() + f", {m.get('memory_gb', '?')} GB, "
                    f"Python {m.get('python', '?')}, {m.get('platform', '')}")
        if m.get("load_average"):
            bits.append("load average " + " / ".join(str(x) for x in m["load_average"]))
    if v:
        bits.append("versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val))
    return "Machine and versions (" + "; ".join(bits) + ")."


def render(results: Path = common.RESULTS) -> str:
    files = sorted(results.glob("*.json"))
    names = [f.stem for f in files]
    ordered = [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]
    out = ["# Benchmarks", "",
           "Generated by `make bench` (`python -m bench.run_all`) from `bench/results/*.json`; do not edit by "
           "hand (regenerate with `python -m bench.run_all --docs-only`). Every result is kept in those files; "
           "each section shows the latest figures first. The machine is shared: its load average is recorded "
           "with the results, and timings taken under load are slower than on an idle machine.", ""]
    for name in ordered:
        path = results / f"{name}.json"
        try:
            records = common.load_results(path)
        except (ValueError, json.JSONDecodeError) as exc:
            out += [f"## {TITLES.get(name, name)}", "", f"`{path.name}` could not be read: {exc}", ""]
            continue
        if not records:
            continue
        out += [f"## {TITLES.get(name, name)}", "", f"Results: `bench/results/{name}.json`, {len(records)} records. "
                + _machine_line(records), ""]
        section = None
        try:
            module = importlib.import_module(f"bench.{name}")
            if hasattr(module, "markdown"):
                section = module.markdown(records)
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the page
            log.warning("bench.%s cannot render its section (%s); using the generic table", name, exc)
        out += [section or generic_markdown(records), ""]
    return "\n".join(out).rstrip() + "\n"


def write_docs(path: Path = DOCS, results: Path = common.RESULTS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(results), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--only", action="append", help="run only this benchmark (repeatable)")
    ap.add_argument("--skip", action="append", default=[], help="do not run this benchmark (repeatable)")
    ap.add_argument("--quick", action="store_true", help="short arguments: check the harness, publish nothing")
    ap.add_argument("--docs-only", action="store_true", help="only regenerate docs/benchmarks.md")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per benchmark process")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    failed = []
    if not args.docs_only:
        names = [n for n in benchmarks() if (not args.only or n in args.only) and n not in args.skip]
        unknown = set(args.only or []) - set(benchmarks())
        if unknown:
            ap.error(f"no such benchmark in bench/: {', '.join(sorted(unknown))}")
        outcome = run(names, args.quick, args.timeout)
        failed = [n for n, o in outcome.items() if o["returncode"] != 0]
    path = write_docs()
    log.info("wrote %s", path)
    if failed:
        log.error("failed: %s", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
