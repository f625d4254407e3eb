"""`make demo`: three Cascade sessions share one scratch repository and coordinate.

Each step runs the real CLI as its own process, the way Cascade runs it, and prints the
command line, what it printed and its exit code. Nothing outside a temporary folder is touched.
"""

import json
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "orchestrator.py"


def run(repo, *args, show=True):
    proc = subprocess.run([sys.executable, str(TOOL), *args], cwd=repo, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    if show:
        show_result(args, proc)
    return proc


def show_result(args, proc):
    print(f"$ orchestrator.py {shlex.join(args)}")
    for line in (proc.stdout + proc.stderr).rstrip().splitlines():
        print(f"  {line}")
    print(f"  [exit {proc.returncode}]\n")


def step(title):
    print(f"\n=== {title} ===\n")


def main():
    with tempfile.TemporaryDirectory(prefix="orchestrator-demo-") as scratch:
        repo = Path(scratch) / "shop"
        repo.mkdir()
        subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
        print(f"Scratch repository: {repo}")
        print("State file: .windsurf/orchestrator/session_state.yaml inside it\n")

        step("1. Three sessions start at once and register (three processes in parallel)")
        registrations = [
            ("sync", "--session", "energy-api", "--focus", "Split the energy tariff service",
             "--area", "backend"),
            ("sync", "--session", "checkout-ui", "--focus", "New checkout page",
             "--area", "frontend", "--area", "apps/customer"),
            ("sync", "--session", "db-tuning", "--focus", "Index the orders table",
             "--area", "backend"),
        ]
        with ThreadPoolExecutor(3) as pool:
            procs = list(pool.map(lambda a: run(repo, *a, show=False), registrations))
        for args, proc in zip(registrations, procs):
            print(f"$ orchestrator.py {shlex.join(args)}  [exit {proc.returncode}]")
        listing = json.loads(run(repo, "status", "--json", show=False).stdout)
        print("\nAll three registrations landed; no update was lost. Active sessions:",
              ", ".join(s["id"] for s in listing["active_sessions"]))

        step("2. energy-api claims the tariff code; its builds will break for a while")
        run(repo, "lock", "--session", "energy-api", "--area", "backend",
            "--scope", "internal/domain/energy", "--reason", "moving tariff types to their own package",
            "--unstable", "--duration", "2h")

        step("3. db-tuning wants an overlapping part of backend: refused, nothing written")
        run(repo, "lock", "--session", "db-tuning", "--area", "backend",
            "--scope", "internal/**/*.sql", "--reason", "add an index")

        step("4. db-tuning takes a scope that does not overlap, for a moment only (3s)")
        run(repo, "lock", "--session", "db-tuning", "--area", "backend",
            "--scope", "migrations", "--reason", "add an index to orders", "--duration", "3s")

        step("5. The session-start check of a new conversation: silent unless it hits a lock")
        run(repo, "check", "--path", "web/index.html")
        run(repo, "check", "--path", "internal/domain/energy/tariff.go")

        step("6. checkout-ui leaves a note for everyone")
        run(repo, "note", "--session", "checkout-ui", "The staging API moved to port 8081")

        step("7. Status, from energy-api's point of view")
        run(repo, "status", "--session", "energy-api")

        step("8. Three seconds later db-tuning's lock has expired; the next sync sweeps it")
        time.sleep(3.2)
        run(repo, "sync")

        step("9. checkout-ui is done: its entry moves to the history, its locks are released")
        run(repo, "complete", "--session", "checkout-ui", "--outcome",
            "Checkout page behind a feature flag", "--file", "apps/customer/checkout.tsx")
        run(repo, "status")

        print("The state file as written (plain YAML, validated on every read and write):\n")
        print((repo / ".windsurf" / "orchestrator" / "session_state.yaml").read_text())


if __name__ == "__main__":
    main()
