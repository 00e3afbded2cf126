"""Find at scale: contacts generated like the demo's, from file to groups with primaries.

For each size, three child processes (so that the measured one holds only its own work):

1. generate: ``crm.demo.generate_contacts_frames(n, seed)`` written to parquet files (contacts,
   communications, truth) in bench/work/find_scale_<n>_<seed>/;
2. find (the measured process): read the two parquet files, ``RoleTable.from_crm``,
   ``scoring.find.find_duplicates`` with default settings, write groups.parquet. Its whole-process
   wall time and peak RSS come from ``os.wait4`` (exact, but per process), and ``peak_tree_mb`` is
   the sampled peak of the summed PSS of it and its helpers running together (bench/common.py); it
   reports its own seconds and peak RSS after each stage (``FindResult.timings``, ``ru_maxrss`` when
   the stage ends), its CPU seconds, and the peak RSS of the helper processes that normalise phones
   and e-mails (``RUSAGE_CHILDREN``);
3. evaluate: pairwise precision, recall and F1 and B-cubed against the generator's truth, and the
   commonest truth notes among the false-positive pairs.

Targets (issues 3 and 4): normalise + block + compare of 1,000,000 contacts under 25 s and 2.5 GB;
the whole find, file to groups with primaries, under 30 s and 3 GB. ``find_s`` is reading the files
plus every stage of the find, in the measured process; ``process_wall_s`` adds interpreter start-up,
imports and writing groups.parquet. Results are appended to bench/results/find_scale.json with the
date, machine (load average included: the machine is shared) and versions.

    python -m bench.find_scale --sizes 10000,100000,1000000
    python -m bench.find_scale --sizes 100000 --no-save
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import sys
import time
from pathlib import Path

from bench.common import WORK, append_result, fmt, machine_info, md_table, now_iso, python_child, run_child, versions

log = logging.getLogger("bench.find_scale")

TARGETS = {"nbc_s": 25.0, "nbc_mb": 2500.0, "find_s": 30.0, "find_mb": 3000.0}
NBC = ("normalise", "block", "compare")
VERSIONS = ("pandas", "numpy", "scipy", "rapidfuzz", "phonenumbers", "recordlinkage", "pyarrow")


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _current_rss_mb() -> float | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return round(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except OSError:
        return None


# -- children --------------------------------------------------------------------------------

def child_generate(n: int, seed: int, folder: Path) -> None:
    from crm.demo import generate_contacts_frames

    start = time.perf_counter()
    contacts, comms, truth = generate_contacts_frames(n, seed=seed)
    generate_s = time.perf_counter() - start
    folder.mkdir(parents=True, exist_ok=True)
    contacts.to_parquet(folder / "contacts.parquet", index=False)
    comms.to_parquet(folder / "communications.parquet", index=False)
    truth.to_parquet(folder / "truth.parquet", index=False)
    print(json.dumps({"generate_s": round(generate_s, 2), "contacts": len(contacts), "communications": len(comms),
                      "true_clusters": int(truth["cluster"].nunique())}))


class _StageMemory(logging.Handler):
    """When scoring.find logs the end of a stage: peak RSS so far, current RSS, and this process's CPU
    seconds in the stage (helpers excluded; on a busy machine CPU seconds vary less than wall time)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.stages: dict[str, dict] = {}
        self.cpu = time.process_time()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "stage %s took %.2f s" and record.args:
            now = time.process_time()
            self.stages[str(record.args[0])] = {"peak_rss_mb": _rss_mb(), "rss_mb": _current_rss_mb(),
                                                "cpu_s": round(now - self.cpu, 2)}
            self.cpu = now


def child_find(folder: Path) -> None:
    import pandas as pd

    from matchers.table import RoleTable
    from scoring.find import find_duplicates

    find_log = logging.getLogger("scoring.find")
    find_log.setLevel(logging.INFO)
    start = time.perf_counter()
    contacts = pd.read_parquet(folder / "contacts.parquet")
    comms = pd.read_parquet(folder / "communications.parquet")
    table = RoleTable.from_crm("contact", contacts, comms)
    del contacts, comms
    read_s = time.perf_counter() - start
    read_rss = _rss_mb()
    memory = _StageMemory()
    find_log.addHandler(memory)
    result = find_duplicates(table)
    find_s = time.perf_counter() - start
    result.groups[["id", "group_id", "is_primary", "tier"]].to_parquet(folder / "groups.parquet", index=False)
    usage, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = result.summary()
    print(json.dumps({
        "read_s": round(read_s, 2), "read_peak_rss_mb": read_rss, "find_s": round(find_s, 2),
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
        "stage_memory": memory.stages,
        "self_peak_rss_mb": _rss_mb(), "helpers_peak_rss_mb": round(children.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "helpers_cpu_s": round(children.ru_utime + children.ru_stime, 1),
        "candidate_pairs": summary["candidate_pairs"], "scored_pairs": summary["scored_pairs"],
        "groups": summary["groups"], "records_in_groups": summary["records_in_groups"],
        "groups_per_tier": summary["groups_per_tier"], "largest_group": summary["largest_group"],
        "blocking": result.blocking[["rule", "pairs", "skipped_keys"]].to_dict("records"),
        "prior": result.model.prior,
    }))


def child_evaluate(folder: Path) -> None:
    import numpy as np
    import pandas as pd

    from scoring.evaluate import evaluate_groups

    groups = pd.read_parquet(folder / "groups.parquet")
    truth = pd.read_parquet(folder / "truth.parquet").set_index("entity_id")
    g = groups.set_index("id")["group_id"]
    figures = evaluate_groups(g, truth["cluster"].reindex(g.index))
    # false-positive pairs inside the found groups, by the truth notes of their two records
    members = groups[groups["group_id"].duplicated(keep=False)][["id", "group_id"]]
    pairs = members.merge(members, on="group_id", suffixes=("_a", "_b"))
    pairs = pairs[pairs["id_a"] < pairs["id_b"]]
    wrong = pairs[truth["cluster"].reindex(pairs["id_a"]).to_numpy() != truth["cluster"].reindex(pairs["id_b"]).to_numpy()]
    notes = pd.Series([" | ".join(sorted(x)) for x in zip(truth["note"].reindex(wrong["id_a"]).fillna(""),
                                                           truth["note"].reindex(wrong["id_b"]).fillna(""))],
                      dtype=object)
    top = notes.value_counts().head(8)
    print(json.dumps({**{k: (round(v, 5) if isinstance(v, float) else int(v)) for k, v in figures.items()},
                      "false_positive_pairs": int(len(wrong)),
                      "false_positive_notes": [{"notes": k, "pairs": int(v)} for k, v in top.items()],
                      "groups_checked": int(np.unique(members["group_id"]).size)}))


# -- harness ---------------------------------------------------------------------------------

def _last_json(output: str) -> dict:
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"the child printed no result:\n{output[-2000:]}")


def bench_one(n: int, seed: int, timeout: float, reuse: bool) -> dict:
    folder = WORK / f"find_scale_{n}_{seed}"
    record = {"date": now_iso(), "bench": "find_scale", "size": n, "seed": int(seed),
              "generator": "crm.demo.generate_contacts_frames", "machine": machine_info(),
              "versions": {"python": sys.version.split()[0], **versions(*VERSIONS)}, "targets": TARGETS}
    if reuse and (folder / "truth.parquet").exists():
        record["generate"] = {"reused": True}
    else:
        gen = run_child(python_child("bench.find_scale", "--child", "generate", "--n", n, "--seed", seed,
                                     "--folder", folder), timeout=timeout)
        if gen["returncode"] != 0:
            raise RuntimeError(f"generating {n} contacts failed:\n{gen['output_tail']}")
        record["generate"] = _last_json(gen["output_tail"])
    run = run_child(python_child("bench.find_scale", "--child", "find", "--folder", folder), timeout=timeout)
    if run["returncode"] != 0 or run["timed_out"]:
        record.update({"failed": True, "timed_out": run["timed_out"], "output_tail": run["output_tail"][-2000:]})
        return record
    found = _last_json(run["output_tail"])
    record.update({"process_wall_s": round(run["wall_s"], 2), "peak_rss_mb": run["peak_rss_mb"],
                   "peak_tree_mb": run["peak_tree_mb"], "harness_rss_mb": run["harness_rss_mb"], **found})
    t = found["timings"]
    record["nbc_s"] = round(sum(t.get(s, 0.0) for s in NBC), 2)
    record["nbc_peak_rss_mb"] = found["stage_memory"].get("compare", {}).get("peak_rss_mb")
    ev = run_child(python_child("bench.find_scale", "--child", "evaluate", "--folder", folder), timeout=timeout)
    record["quality"] = _last_json(ev["output_tail"]) if ev["returncode"] == 0 else {"failed": ev["output_tail"][-2000:]}
    record["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if n >= 1_000_000:
        record["target_met"] = {
            "nbc": bool(record["nbc_s"] < TARGETS["nbc_s"] and (record["nbc_peak_rss_mb"] or 0) < TARGETS["nbc_mb"]),
            # the memory of the whole process tree where it was measured (helpers normalise beside the
            # main process), else the largest process's
            "find": bool(found["find_s"] < TARGETS["find_s"]
                         and max(run["peak_rss_mb"], run.get("peak_tree_mb") or 0) < TARGETS["find_mb"]),
        }
    return record


def markdown(records: list[dict]) -> str:
    """The section of docs/benchmarks.md: one row per run, newest first."""
    stages = ("normalise", "block", "compare", "train", "score", "group", "primary", "explain")
    rows = []
    for r in sorted(records, key=lambda x: x.get("date", ""), reverse=True):
        t, q = r.get("timings", {}), r.get("quality", {})
        rows.append([r.get("date"), r.get("size"), r.get("find_s"), r.get("process_wall_s"), r.get("peak_rss_mb"),
                     r.get("peak_tree_mb"), r.get("nbc_s"), r.get("nbc_peak_rss_mb")] + [t.get(s) for s in stages] + [
                     r.get("cpu_s"), r.get("candidate_pairs"), q.get("precision"), q.get("recall"), q.get("f1"),
                     " / ".join(fmt(x) for x in r.get("machine", {}).get("load_average", []))])
    header = ["date", "size", "find s", "process s", "peak MB", "tree MB", "n+b+c s", "n+b+c MB",
              *[f"{s} s" for s in stages], "CPU s", "candidates", "precision", "recall", "F1", "load avg"]
    return ("Whole find of generated contacts, file to groups with primaries (`python -m bench.find_scale`). "
            f"Targets at 1,000,000: normalise + block + compare under {TARGETS['nbc_s']:g} s and "
            f"{TARGETS['nbc_mb']:g} MB; whole find under {TARGETS['find_s']:g} s and {TARGETS['find_mb']:g} MB. "
            "Timings under a high load average are slower than on an idle machine.\n\n" + md_table(header, rows)
            + "\n\n" + MEMORY_NOTE)


MEMORY_NOTE = """\
Peak MB is the measured process's own peak RSS (exact, per process). Tree MB is the peak of the summed
PSS of that process and its helpers (shared copy-on-write pages counted once), sampled every 0.2 s, so
a shorter spike can be missed; runs from before it was recorded show —. While it normalises, one
forked helper process normalises phones and e-mails beside it (`helpers_peak_rss_mb` in the JSON,
about 1.2 GB of RSS at a million contacts, most of it pages shared with the parent it was forked
from). Its own memory was measured once on 2026-11-27 from `/proc/self/smaps_rollup` (Private_Clean +
Private_Dirty) after each chunk it normalised: 327 MB at most, at a time when the main process held at
most 2.0 GB; so the two processes together stayed under 2.5 GB during normalisation too.

On 2026-11-27 (machine otherwise idle, three runs at 1,000,000 contacts) the find took 24.4 to 25.7 s
(whole process 26.3 to 27.7 s) at a peak of 2.60 to 2.65 GB, and normalise + block + compare 15.4 to
16.1 s at a peak of 2.22 to 2.28 GB: both targets met. The earlier rows were slower mostly in
normalisation (31 s): phones and e-mails are now normalised in bulk over arrays (pyarrow) instead of
one distinct value at a time, and pairs are compared a million at a time instead of two."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--reuse-data", action="store_true", help="keep generated files from an earlier run")
    parser.add_argument("--keep-data", action="store_true", help="leave the generated files in bench/work")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--child", choices=["generate", "find", "evaluate"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "generate":
        child_generate(args.n, args.seed, args.folder)
        return 0
    if args.child == "find":
        child_find(args.folder)
        return 0
    if args.child == "evaluate":
        child_evaluate(args.folder)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for n in (int(x) for x in args.sizes.split(",") if x.strip()):
        log.info("find_scale: %d contacts", n)
        record = bench_one(n, args.seed, args.timeout, args.reuse_data)
        t = record.get("timings", {})
        log.info("%d contacts: find %.1f s (process %.1f s, CPU %s s + helpers %s s), peak %.0f MB (tree %s MB); "
                 "normalise+block+compare %.1f s, peak %s MB; stages %s; P/R/F1 %s", n,
                 record.get("find_s", float("nan")), record.get("process_wall_s", float("nan")),
                 record.get("cpu_s"), record.get("helpers_cpu_s"), record.get("peak_rss_mb", float("nan")),
                 record.get("peak_tree_mb"),
                 record.get("nbc_s", float("nan")), record.get("nbc_peak_rss_mb"),
                 {k: (v, record.get("stage_memory", {}).get(k, {}).get("cpu_s"),
                      record.get("stage_memory", {}).get(k, {}).get("peak_rss_mb")) for k, v in t.items()},
                 {k: record.get("quality", {}).get(k) for k in ("precision", "recall", "f1")})
        if not args.no_save:
            append_result("find_scale", record)
        if not args.keep_data:
            shutil.rmtree(WORK / f"find_scale_{n}_{args.seed}", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
