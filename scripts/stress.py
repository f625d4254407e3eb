"""`make stress`: parallel sessions hammer one state file; prints what a person compares run to run.

Every worker is a Cascade session of its own: round after round it registers, locks, renews,
notes, logs a directive, updates, unlocks and completes, each step a real process of the CLI.
A reader checks meanwhile that the file on disk always validates. At the end every note and
every directive must be there exactly once (nothing lost), every command must have succeeded
(nothing failed), and no session or lock may be left over (nothing stray).

    python scripts/stress.py [--workers 8] [--rounds 5] [--json FILE]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import orchestrator  # noqa: E402

# Import the module like the installed launcher does, so its bytecode is reused.
LAUNCH = [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); "
          "import orchestrator; sys.exit(orchestrator.run())", str(ROOT)]


def session_steps(worker, round_number):
    sid = f"w{worker}-r{round_number}"
    area = f"area-{worker}"
    return [
        ["sync", "--session", sid, "--focus", f"stress {sid}", "--area", area],
        ["lock", "--session", sid, "--area", area, "--scope", f"{area}/r{round_number}",
         "--reason", "stress", "--duration", "10m"],
        ["renew", "--session", sid, "--duration", "20m"],
        ["note", "--session", sid, f"note from {sid}"],
        ["directive", "--session", sid, "--rule", "stress_rule", "--directive", f"d {sid}",
         "--reason", "stress"],
        ["update", "--session", sid, "--status", "blocked", "--add-note", "waiting"],
        ["unlock", "--session", sid, "--area", area],
        ["complete", "--session", sid, "--outcome", "stressed", "--file", f"{area}/x.py"],
    ]


def run_stress(workers=8, rounds=5, folder=None):
    """Run the load; return the figures (and the problems found, if any)."""
    folder = Path(folder or tempfile.mkdtemp(prefix="orchestrator-stress-"))
    state = folder / "session_state.yaml"
    env = {**os.environ, "ORCHESTRATOR_STATE": str(state), "ORCHESTRATOR_LOCK_TIMEOUT": "30"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    latencies, failures = [], []
    record = threading.Lock()

    def worker(number):
        for round_number in range(rounds):
            for step in session_steps(number, round_number):
                started = time.perf_counter()
                proc = subprocess.run(LAUNCH + step, env=env, cwd=folder, capture_output=True,
                                      text=True, stdin=subprocess.DEVNULL)
                elapsed = time.perf_counter() - started
                with record:
                    latencies.append(elapsed)
                    if proc.returncode != 0:
                        failures.append(f"{' '.join(step[:3])}: exit {proc.returncode} "
                                        f"{proc.stderr.strip()}")

    invalid_reads, reads, stop = [], [0], threading.Event()

    def reader():
        # Samples the file every 50 ms: validating it nonstop would take a core from the writers.
        while not stop.wait(0.05):
            try:
                text = state.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue
            reads[0] += 1
            try:
                orchestrator.parse_state_text(text, str(state))
            except orchestrator.OrchestratorError as error:
                invalid_reads.append(error.message)

    watcher = threading.Thread(target=reader, daemon=True)
    watcher.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(worker, range(workers)))
    wall = time.perf_counter() - started
    stop.set()
    watcher.join()

    final = orchestrator.Store(state).validate_bytes(state.read_bytes())
    expected = {f"[w{w}-r{r}] note from w{w}-r{r}" for w in range(workers) for r in range(rounds)}
    notes = final["global_notes"]
    directives = [d["directive"] for d in final["directive_log"]]
    lost = (len(expected - set(notes)) +
            len({f"d w{w}-r{r}" for w in range(workers) for r in range(rounds)} - set(directives)))
    duplicated = (len(notes) - len(set(notes))) + (len(directives) - len(set(directives)))
    stray = len(final["active_sessions"]) + len(final["locks"])
    ordered = sorted(latencies)
    return {
        "workers": workers, "rounds": rounds, "operations": len(latencies),
        "lost": lost, "duplicated": duplicated, "failed": len(failures), "stray": stray,
        "invalid_reads": len(invalid_reads), "reads_checked": reads[0],
        "wall_seconds": round(wall, 2), "ops_per_second": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "failures": failures[:5], "invalid": invalid_reads[:3],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    figures = run_stress(args.workers, args.rounds)
    print(f"{figures['workers']} parallel sessions x {figures['rounds']} rounds x "
          f"{len(session_steps(0, 0))} commands, each a real process")
    for key in ("operations", "lost", "duplicated", "failed", "stray", "invalid_reads",
                "reads_checked", "wall_seconds", "ops_per_second", "p50_ms", "p99_ms", "max_ms"):
        print(f"  {key:<15} {figures[key]}")
    for problem in figures["failures"] + figures["invalid"]:
        print(f"  ! {problem}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    bad = figures["lost"] or figures["duplicated"] or figures["failed"] or figures["stray"] \
        or figures["invalid_reads"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
