"""At exit the CLI's objects are frozen after every other exit handler has run, so that Python's final
garbage collection does not walk them (pipelines.cli.no_collection_at_exit)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r'''
import atexit, gc, sys
from pipelines.cli import no_collection_at_exit

no_collection_at_exit()
kept = [[i] for i in range(100_000)]  # what a run leaves alive at its end
# registered later, so run earlier: Prefect's workers and the temporary server stop before the freeze
atexit.register(lambda: print("handler", gc.get_freeze_count(), flush=True))


def collecting(phase, info):
    if phase == "start":
        sys.stdout.write(f"collection {gc.get_freeze_count()}\n")
        sys.stdout.flush()


gc.callbacks.append(collecting)
'''


def test_the_final_collection_skips_what_the_run_left_alive():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert lines[0] == "handler 0", done.stdout  # the other handlers run first, nothing frozen yet
    frozen = [int(line.split()[1]) for line in lines if line.startswith("collection ")]
    assert frozen and min(frozen) >= 100_000, done.stdout  # then every collection at exit skips them
