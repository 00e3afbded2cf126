"""Shared helpers of the benchmarks: the machine and versions, timing a child process, results files.

A child's peak RSS comes from ``os.wait4`` for exactly that child (``ru_maxrss``). Linux folds the
memory the forked process had before ``exec`` into that figure, so a parent holding a large table
would inflate every child's peak: the harness processes stay small and do all heavy work (data
generation, evaluation) in children too. ``harness_rss_mb`` is recorded with each run so that a
reader can check the floor.

``peak_rss_mb`` is exact but per process: the largest peak of the child or of any helper it forked and
waited for, never their sum. Work that runs helper processes beside the main one (the dedup flow's
planning, normalising and reading helpers) is therefore under-reported by it. ``peak_tree_mb`` is the
whole process tree's figure: every ~0.2 s while the child runs, the PSS (proportional set size: a
copy-on-write page shared by N processes counts 1/N in each, so once in the sum) of every process in
the child's session is summed, and the largest sum is kept. It is sampled: a peak shorter than the
interval can be missed, so it can read lower than the true peak of the tree (and lower than
``peak_rss_mb`` for a short spike). ``tree_samples`` says how many samples it rests on.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "bench" / "work"


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def machine_info() -> dict:
    """Platform, CPUs, memory and the load average (other work on the machine skews the figures)."""
    info = {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version()}
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # psutil is a dependency; tolerate its absence in a bare interpreter
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
        info["cpu_model"] = model
    except OSError:
        pass
    info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def versions(*packages: str) -> dict[str, str | None]:
    """Installed versions of the named distributions (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def self_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


PROC = Path("/proc")
TREE_SAMPLE_S = 0.2  # reading smaps_rollup of a 3 GB process takes a few ms: not more often than this


def _stat_parent_and_session(stat: str) -> tuple[int, int]:
    """(parent pid, session id) from the text of /proc/<pid>/stat. The command name (field 2, in
    parentheses) may itself hold spaces and parentheses, so the fields are counted from after its
    last ')'."""
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[3])  # state, ppid, pgrp, session


def _process_kb(proc_dir: Path) -> int | None:
    """PSS of one process in kB (``Pss:`` of smaps_rollup); its VmRSS where smaps_rollup cannot be read
    (an older kernel); None when neither can (the process has gone, or is a zombie)."""
    try:
        with open(proc_dir / "smaps_rollup", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return _rss_kb(proc_dir)


def session_memory_mb(session: int, proc: Path = PROC, above: float | None = None) -> float | None:
    """The summed PSS (MB) of every process whose session id is ``session`` and of their descendants in
    other sessions (a server the flow starts in a session of its own, so that a terminal's Ctrl-C
    does not reach it, is still the flow's); None without /proc. Processes that end between the
    listing and the reading are skipped.

    ``above``: the peak found so far (MB). Reading smaps_rollup walks a process's page tables and holds
    up its own memory calls meanwhile (sampled 5 times a second, it slowed a million-contact flow by a
    few seconds); their summed RSS, a counter per process, is read first, and PSS, never more than RSS,
    only where that sum is above the peak: else ``above`` is returned (no new peak)."""
    try:
        entries = [e for e in os.listdir(proc) if e.isdigit()]
    except OSError:
        return None
    children: dict[int, list[int]] = {}
    counted: list[int] = []
    for entry in entries:
        try:
            parent, sid = _stat_parent_and_session((proc / entry / "stat").read_text(encoding="ascii",
                                                                                      errors="replace"))
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
        if sid == session:
            counted.append(int(entry))
    seen = set(counted)
    while counted:  # the session's processes, then their children wherever they are
        pid = counted.pop()
        for child in children.get(pid, ()):
            if child not in seen:
                seen.add(child)
                counted.append(child)
    if above is not None:
        rss = [_rss_kb(proc / str(pid)) for pid in seen]
        if None not in rss and sum(rss) / 1024 <= above:  # (one not read: PSS is read, as without ``above``)
            return above
    return sum(_process_kb(proc / str(pid)) or 0 for pid in seen) / 1024


def _rss_kb(proc_dir: Path) -> int | None:
    """VmRSS of one process in kB; None when it cannot be read (gone, or a zombie)."""
    try:
        with open(proc_dir / "status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def run_child(args: list[str], timeout: float | None = None, env: dict | None = None, cwd: Path = ROOT) -> dict:
    """Run ``args`` as a child process; return wall and CPU seconds, peak memory, exit code, timeout flag
    and the tail of its output. A child still running after ``timeout`` seconds is killed (its process
    group) and reported with ``timed_out: True``.

    Two memory figures (MB): ``peak_rss_mb`` (``ru_maxrss`` from ``os.wait4``) is exact but per
    process, the largest single peak among the child and the helpers it reaped, never their sum;
    ``peak_tree_mb`` is the largest summed PSS of the child's whole session (the child and every helper
    it forked, shared copy-on-write pages counted once), sampled every ~0.2 s, so a peak shorter than
    that can be missed. ``tree_samples`` is the number of samples taken; ``peak_tree_mb`` is None
    where there is no /proc or no sample was taken. Where smaps_rollup cannot be read, VmRSS stands in
    for PSS (it counts shared pages in every process). A process that starts a session of its own
    (``setsid``) stays in the figure, with its own children, as long as its parent is in it."""
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    if env:
        full_env.update(env)
    harness_rss = self_rss_mb()
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True, errors="replace")
    # the output goes to a reader thread so that a chatty child cannot block on a full pipe
    import threading

    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    timed_out = False
    # start_new_session: the child's session id is its pid, and the helpers it forks inherit it
    tree_peak: float | None = None
    tree_samples = 0
    next_sample = start
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if timeout is not None and time.perf_counter() - start > timeout:
            timed_out = True
            os.killpg(proc.pid, 9)
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        if time.perf_counter() >= next_sample:
            tree = session_memory_mb(proc.pid, above=tree_peak)
            if tree is not None:
                tree_samples += 1
                tree_peak = max(tree_peak or 0.0, tree)
            next_sample = time.perf_counter() + TREE_SAMPLE_S
        time.sleep(0.05)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(timeout=10)
    output = "".join(lines)
    # CPU seconds (user + system, all threads) are the steadier figure on a shared machine
    return {"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "peak_tree_mb": None if tree_peak is None else round(tree_peak, 1), "tree_samples": tree_samples,
            "returncode": proc.returncode, "timed_out": timed_out, "harness_rss_mb": round(harness_rss, 1),
            "output_tail": output[-4000:]}


def python_child(module: str, *args: str) -> list[str]:
    """The command line running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *map(str, args)]


def append_result(name: str, record: dict, folder: Path = RESULTS) -> Path:
    """Append ``record`` to ``folder/<name>.json`` (a JSON list; older results are kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    records = load_results(path)
    records.append(record)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(records, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load_results(path: Path) -> list[dict]:
    """The records of one results file; a file that is not a JSON list is an error naming it."""
    path = Path(path)
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise ValueError(f"{path} holds {type(data).__name__}, expected a JSON list of records")
    return data


def median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def fmt(value) -> str:
    """A value for a markdown table cell."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:,.2f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def code_digest(*packages: str) -> dict:
    """What crm-dedup code ran: a digest of the packages' Python sources, and the git commit (read only)."""
    import hashlib

    h = hashlib.sha256()
    for pkg in packages:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            h.update(str(path.relative_to(ROOT)).encode())
            h.update(path.read_bytes())
    out = {"sources": h.hexdigest()[:16], "packages": list(packages)}
    try:
        out["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True, timeout=10).stdout.strip() or None
        changed = subprocess.run(["git", "status", "--porcelain", "--", *packages], cwd=ROOT, capture_output=True,
                                 text=True, timeout=10).stdout.split("\n")
        out["uncommitted"] = sorted(line[3:] for line in changed if line.strip())
    except (OSError, subprocess.SubprocessError):
        out["commit"] = None
    return out
