"""The benchmark harness: child measurement, results files, docs rendering, and a small crm-dedup against
Splink run (Splink's side only where splink is installed, i.e. after `make bench`)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# bench/ is not an installed package (pyproject installs the pipeline's packages only): import it from
# the project folder, as `python -m bench.run_all` does
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common, run_all  # noqa: E402

HAS_SPLINK = importlib.util.find_spec("splink") is not None


def test_run_child_measures_wall_time_and_peak_memory_of_that_child():
    code = "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.3)"
    m = common.run_child([sys.executable, "-c", code])
    assert m["returncode"] == 0 and not m["timed_out"]
    assert m["wall_s"] >= 0.3
    # the 300 MB it touched plus an interpreter; a child forked from a big process (a pytest worker)
    # starts with the parent's resident pages counted until it execs
    assert 300 <= m["peak_rss_mb"] < max(300, m["harness_rss_mb"]) + 200


def test_run_child_reports_failure_and_timeout():
    failed = common.run_child([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    assert failed["returncode"] == 3 and "boom" in failed["output_tail"]
    slow = common.run_child([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
    assert slow["timed_out"] and slow["wall_s"] < 10


def test_run_child_sums_the_memory_of_the_child_and_its_helpers_running_together():
    # the child forks a helper first (so that neither shares the other's pages), then each touches
    # 150 MB of its own and holds it for 1.5 s; each reports its own high-water mark
    code = textwrap.dedent("""\
        import os, time
        pid = os.fork()
        b = bytearray(150 * 2**20)
        b[::4096] = b"x" * len(b[::4096])
        time.sleep(1.5)
        hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        # one write each: the child runs unbuffered and print() would interleave the two lines
        os.write(1, f"{'helper' if pid == 0 else 'parent'} {int(hwm.split()[1]) // 1024}\\n".encode())
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        """)
    m = common.run_child([sys.executable, "-c", code])
    assert m["returncode"] == 0, m["output_tail"]
    own = dict(line.split() for line in m["output_tail"].split("\n") if line.strip())
    assert set(own) == {"helper", "parent"} and all(150 <= int(mb) < 200 for mb in own.values())
    # 1.5 s together, sampled every 0.2 s
    assert m["tree_samples"] >= 5
    # the tree figure sees both at once...
    assert m["peak_tree_mb"] >= 280
    # ...ru_maxrss sees one process at a time: the larger of the two, or the harness's own pages the
    # child held before exec when the harness (a pytest worker) is larger
    assert m["peak_rss_mb"] < max(200, m["harness_rss_mb"] + 20)


def test_session_memory_sums_pss_of_the_session_and_falls_back_to_rss(tmp_path):
    def process(pid: int, comm: str, session: int, files: dict[str, str], parent: int = 1) -> None:
        folder = tmp_path / str(pid)
        folder.mkdir()
        (folder / "stat").write_text(f"{pid} ({comm}) S {parent} {session} {session} 0 -1 4194560 100 0 0 0\n")
        for name, text in files.items():
            (folder / name).write_text(text)

    rollup = "55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:  300000 kB\nPss:  {} kB\nPss_Anon:  1 kB\n"
    # a command name holding spaces and parentheses; the session is read after its last ')'
    process(40, "python (x) 7 7", 40, {"smaps_rollup": rollup.format(102400)})
    # a helper: PSS, not its RSS that counts the pages shared with its parent
    process(41, "helper", 40, {"smaps_rollup": rollup.format(51200), "status": "VmRSS:\t300000 kB\n"})
    # no smaps_rollup (an older kernel): VmRSS
    process(42, "old", 40, {"status": "Name:\told\nVmRSS:\t 25600 kB\n"})
    # gone between listing and reading (or a zombie): skipped
    process(43, "gone", 40, {"status": "Name:\tgone\nState:\tZ (zombie)\n"})
    (tmp_path / "44").mkdir()
    # another session, and /proc entries that are not processes
    process(50, "other", 7, {"smaps_rollup": rollup.format(999999)})
    # a server the command started in a session of its own, and that server's child: still the command's
    process(60, "server", 60, {"smaps_rollup": rollup.format(2048)}, parent=40)
    process(61, "server child", 60, {"smaps_rollup": rollup.format(1024)}, parent=60)
    (tmp_path / "self").mkdir()
    (tmp_path / "meminfo").write_text("MemTotal: 1 kB\n")
    assert common.session_memory_mb(40, proc=tmp_path) == (102400 + 51200 + 25600 + 2048 + 1024) / 1024
    assert common.session_memory_mb(8, proc=tmp_path) == 0
    assert common.session_memory_mb(40, proc=tmp_path / "missing") is None


def test_session_memory_reads_pss_only_where_the_summed_rss_is_above_the_peak_so_far(tmp_path):
    def process(pid: int, session: int, rss_kb: int, pss_kb: int | None) -> None:
        folder = tmp_path / str(pid)
        folder.mkdir()
        (folder / "stat").write_text(f"{pid} (p{pid}) S 1 {session} {session} 0 -1 4194560 100 0 0 0\n")
        (folder / "status").write_text(f"Name:\tp{pid}\nVmRSS:\t{rss_kb} kB\n")
        if pss_kb is not None:
            (folder / "smaps_rollup").write_text(f"Rss:  {rss_kb} kB\nPss:  {pss_kb} kB\n")

    process(40, 40, 200 * 1024, 150 * 1024)
    process(41, 40, 100 * 1024, 40 * 1024)  # a helper sharing pages with its parent: RSS counts them again
    assert common.session_memory_mb(40, proc=tmp_path) == 190
    # RSS 300 MB in all: PSS cannot be above a peak of 300 MB, so it is not read
    assert common.session_memory_mb(40, proc=tmp_path, above=300) == 300
    # below the RSS sum, PSS is read: a peak of 250 MB stands when the PSS sum is less...
    assert common.session_memory_mb(40, proc=tmp_path, above=250) == 190
    # ...and a process whose RSS cannot be read (gone meanwhile, a zombie) means PSS is read
    (tmp_path / "41" / "status").write_text("Name:\tp41\nState:\tZ (zombie)\n")
    assert common.session_memory_mb(40, proc=tmp_path, above=1000) == 190


def test_docs_show_the_tree_figure_beside_peak_rss_and_a_dash_for_older_records(tmp_path):
    from bench import find_scale

    old = {"date": "2026-01-01", "backend": "sqlite", "full": {"wall_s": 10.0, "peak_rss_mb": 900.0}}
    new = {"date": "2026-01-02", "backend": "sqlite", "full": {"wall_s": 9.0, "peak_rss_mb": 950.0,
                                                               "peak_tree_mb": 1400.0}}
    text = run_all.generic_markdown([old, new])
    assert "| date | full.wall_s | full.peak_rss_mb | full.peak_tree_mb |" in text
    assert "| 2026-01-01 | 10 | 900 | — |" in text and "| 2026-01-02 | 9 | 950 | 1,400 |" in text
    rows = [{"date": "2026-01-01", "size": 1000, "peak_rss_mb": 900.0},
            {"date": "2026-01-02", "size": 1000, "peak_rss_mb": 950.0, "peak_tree_mb": 1400.0}]
    lines = find_scale.markdown(rows).splitlines()
    header = next(line for line in lines if line.startswith("| date"))
    assert "| peak MB | tree MB |" in header
    assert any(line.startswith("| 2026-01-02 | 1,000 | — | — | 950 | 1,400 |") for line in lines)
    assert any(line.startswith("| 2026-01-01 | 1,000 | — | — | 900 | — |") for line in lines)


def test_append_result_keeps_older_records_and_rejects_a_broken_file(tmp_path):
    common.append_result("x", {"date": "1", "v": 1}, tmp_path)
    common.append_result("x", {"date": "2", "v": 2}, tmp_path)
    assert [r["v"] for r in common.load_results(tmp_path / "x.json")] == [1, 2]
    (tmp_path / "y.json").write_text('"not a list"')
    with pytest.raises(ValueError, match="y.json"):
        common.load_results(tmp_path / "y.json")


def test_docs_render_other_benchmarks_generically(tmp_path):
    records = [{"date": "2026-01-01", "bench": "pages", "groups": 100, "machine": {"cpu_count": 2},
                "pages": [{"page": "first", "median_ms": 12.5}, {"page": "last", "median_ms": 30.25}]}]
    (tmp_path / "pages.json").write_text(json.dumps(records))
    text = run_all.render(tmp_path)
    assert "## pages" in text
    assert "| page | median_ms |" in text and "| last | 30.25 |" in text
    assert "groups = 100" in text  # the same in every row: said once


def test_benchmarks_found_in_bench_exclude_the_shared_modules():
    names = run_all.benchmarks()
    assert "splink_compare" in names
    assert not {"common", "data", "run_all"} & set(names)


@pytest.mark.slow
def test_crm_dedup_against_splink_at_5000_records(tmp_path):
    # 5,000 rather than 2,000: at 2,000 Splink 5.0's EM drives an m probability to exactly 0 on this
    # data and refuses it ("m_probability value 0.0 is below the minimum allowed value")
    tools = "crm,splink" if HAS_SPLINK else "crm"
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.splink_compare", "--sizes", "5000", "--runs", "1", "--tools", tools,
           "--work", str(tmp_path / "work"), "--results", str(results), "--u-max-pairs", "1e6"]
    done = subprocess.run(cmd, cwd=common.ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [record] = common.load_results(results / "splink_compare.json")
    assert record["size"] == 5000 and record["data"]["records"] == 5000
    assert record["machine"]["cpu_count"] and record["versions"]["crm-dedup"]
    names = ["crm-dedup", "splink"] if HAS_SPLINK else ["crm-dedup"]
    assert sorted(record["tools_results"]) == names
    for name in names:
        r = record["tools_results"][name]
        assert [x["returncode"] for x in r["runs"]] == [0], textwrap.shorten(str(r["runs"]), 2000)
        assert r["wall_s"] > 0 and r["peak_rss_mb"] > 50
        assert r["peak_tree_mb"] >= r["peak_rss_mb"] * 0.5  # the process tree is measured as well
        assert r["candidate_pairs"] > record["data"]["true_pairs"] / 2
        assert "accuracy" in r, f"{name}: no accuracy (its evaluation failed):\n{done.stderr[-3000:]}"
        acc = r["accuracy"]
        assert acc["records"] == 5000 and acc["true_pairs"] == record["data"]["true_pairs"]
        assert 0.5 < acc["f1"] <= 1 and 0 < acc["precision"] <= 1 and 0 < acc["recall"] <= 1
        assert r["stage_s"]
    if HAS_SPLINK:
        s = record["tools_results"]["splink"]
        assert s["normalise_wall_s"] > 0 and s["wall_with_normalise_s"] > s["wall_s"]
        assert set(s["stage_s"]) >= {"estimate_u", "estimate_m_em", "predict", "cluster"}
    assert "normalise" in record["tools_results"]["crm-dedup"]["stage_s"]
    text = run_all.render(results)
    assert "crm-dedup against Splink" in text and "5,000" in text


def test_memory_against_splink_compares_the_process_trees_where_both_were_sampled():
    from bench.splink_compare import _targets

    crm = {"wall_s": 10, "peak_rss_mb": 900.0, "peak_tree_mb": 1500.0, "accuracy": {"f1": 0.99}}
    splink = {"wall_s": 30, "peak_rss_mb": 1200.0, "peak_tree_mb": 1250.0}
    memory = _targets(1_000_000, {"crm-dedup": crm, "splink": splink})["memory_at_most_splink"]
    assert memory == {"value": 1500.0, "splink": 1250.0, "measure": "peak_tree_mb", "met": False}
    older = _targets(1_000_000, {"crm-dedup": {**crm, "peak_tree_mb": None}, "splink": splink})
    assert older["memory_at_most_splink"]["measure"] == "peak_rss_mb" and older["memory_at_most_splink"]["met"]


def test_flow_bench_over_every_entity_type_measures_the_default_flow(tmp_path, monkeypatch):
    """bench.flow_scale --every-entity: a demo CRM with companies and leads, the flow over all three
    types in a measured child process; the record says so and holds each type's groups."""
    from bench import flow_scale

    monkeypatch.setattr(flow_scale, "WORK", tmp_path)
    record = flow_scale.bench_one("sqlite", 400, timeout=600, incremental=False, every_entity=True)
    full = record["full"]
    assert full["returncode"] == 0 and not full["timed_out"], record.get("error_tail")
    assert record["entity_types"] == "contact, company, lead"
    assert full["wall_s"] > 0 and full["peak_tree_mb"] >= full["peak_rss_mb"] * 0.5
    steps = full["flow_steps"]
    assert {"contact:find", "company:find", "lead:find", "leads_vs_clients", "propose"} <= set(steps)


def test_review_bench_types_a_stored_phone_as_people_do():
    from bench.review_pages import typed_phone

    assert typed_phone("+7 9161234567") == "+7 (916) 123-45-67"
    assert typed_phone("8 (916) 123-45-67") == "+7 (916) 123-45-67"
    assert typed_phone("9161234567") == "+7 (916) 123-45-67"
    assert typed_phone("+44 20 7946 0958") == "442 079 460 958"
    with pytest.raises(ValueError, match="'n/a'"):
        typed_phone("n/a")


def test_review_bench_searches_values_of_its_own_data_and_finds_their_groups(tmp_path):
    import re

    from bench import review_pages

    db = tmp_path / "review.db"
    review_pages.build(db, 60)
    url = f"sqlite:///{db}"
    terms = review_pages.search_terms(url, 60, review_pages.MANAGER_ID)
    assert set(terms) == {"surname", "full_name", "latin", "phone", "id", "own_surname"}
    assert re.fullmatch(r"[А-ЯЁ][а-яё]+", terms["surname"]) and re.fullmatch(r"[A-Z][a-z]+", terms["latin"])
    assert re.fullmatch(r"[А-ЯЁ][а-яё]+ [А-ЯЁ][а-яё]+", terms["full_name"])
    assert re.fullmatch(r"\+7 \(\d{3}\) \d{3}-\d\d-\d\d", terms["phone"]) and re.fullmatch(r"#\d+", terms["id"])
    pages = {p["page"]: p for p in review_pages.time_pages(url, 60, 1)}
    searches = {name: p for name, p in pages.items() if "search" in name}
    assert len(searches) == 6
    # every search is a real one: it lists groups, and the id and the phone the group of that one record
    assert all(p["rows"] >= 1 and p["q"] and p["capped"] is False for p in searches.values())
    assert pages["search: record id"]["rows"] == 1 and pages["search: phone as typed"]["rows"] == 1
    assert pages["search: full name"]["rows"] < pages["search: common surname"]["rows"]
