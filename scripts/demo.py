"""`make demo`: three Cascade sessions share one scratch repository and coordinate.

Each step runs the real CLI as its own process, the way Cascade runs it, and prints the
command line, what it printed and its exit code. Nothing outside a temporary folder is touched.
"""

import json
import os
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


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@example.com",
                        "GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@example.com"})


def step(title):
    print(f"\n=== {title} ===\n")


def main():
    with tempfile.TemporaryDirectory(prefix="orchestrator-demo-") as scratch:
        repo = Path(scratch) / "shop"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        (repo / "README.md").write_text("shop\n")
        for path in ("internal/domain/energy/tariff.go", "migrations/0001_init.sql",
                     "apps/customer/checkout.tsx"):  # what the sessions below lock and edit
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text("\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "start")
        # Each session works in its own git worktree, as Windsurf's worktree mode gives it.
        trees = {}
        for name in ("energy-api", "checkout-ui", "db-tuning"):
            trees[name] = Path(scratch) / f"shop-{name}"
            git(repo, "worktree", "add", "-q", str(trees[name]), "-b", name)
        print(f"Scratch repository: {repo}, with worktrees {', '.join(t.name for t in trees.values())}")
        print("One state file for all of them: .windsurf/orchestrator/session_state.yaml in the "
              "main checkout\n")

        step("1. Three sessions start at once, each in its own worktree (three processes in parallel)")
        registrations = [
            ("energy-api", ("sync", "--session", "energy-api", "--focus",
                            "Split the energy tariff service", "--area", "backend")),
            ("checkout-ui", ("sync", "--session", "checkout-ui", "--focus", "New checkout page",
                             "--area", "frontend", "--area", "apps/customer")),
            ("db-tuning", ("sync", "--session", "db-tuning", "--focus", "Index the orders table",
                           "--area", "backend")),
        ]
        with ThreadPoolExecutor(3) as pool:
            procs = list(pool.map(lambda r: run(trees[r[0]], *r[1], show=False), registrations))
        registrations = [args for _, args in registrations]
        for args, proc in zip(registrations, procs):
            print(f"$ orchestrator.py {shlex.join(args)}  [exit {proc.returncode}]")
        listing = json.loads(run(repo, "status", "--json", show=False).stdout)
        print("\nAll three registrations landed; no update was lost. Active sessions:",
              ", ".join(s["id"] for s in listing["active_sessions"]))

        step("2. energy-api claims the tariff code; its builds will break for a while")
        run(trees["energy-api"], "lock", "--session", "energy-api", "--area", "backend",
            "--scope", "internal/domain/energy", "--reason", "moving tariff types to their own package",
            "--unstable", "--duration", "2h")

        step("3. db-tuning wants an overlapping part of backend: refused, nothing written")
        run(trees["db-tuning"], "lock", "--session", "db-tuning", "--area", "backend",
            "--scope", "internal/**/*.sql", "--reason", "add an index")

        step("4. db-tuning takes a scope that does not overlap, for a moment only (3s)")
        run(trees["db-tuning"], "lock", "--session", "db-tuning", "--area", "backend",
            "--scope", "migrations", "--reason", "add an index to orders", "--duration", "3s")

        step("5. The session-start check of a new conversation: silent unless it hits a lock")
        run(repo, "check", "--path", "web/index.html")
        run(repo, "check", "--path", "internal/domain/energy/tariff.go")

        step("6. checkout-ui's build fails inside energy-api's lock: may it fix it?")
        run(trees["checkout-ui"], "build-failure", "--session", "checkout-ui", "--path",
            "internal/domain/energy/tariff.go")

        step("7. checkout-ui leaves a note for everyone")
        run(trees["checkout-ui"], "note", "--session", "checkout-ui", "The staging API moved to port 8081")

        step("8. Status, from energy-api's point of view")
        run(trees["energy-api"], "status", "--session", "energy-api")

        step("9. Three seconds later db-tuning's lock has expired; the next sync sweeps it")
        time.sleep(3.2)
        run(repo, "sync")

        step("10. checkout-ui is done: its entry moves to the history, its locks are released")
        run(trees["checkout-ui"], "complete", "--session", "checkout-ui", "--outcome",
            "Checkout page behind a feature flag", "--file", "apps/customer/checkout.tsx")
        run(repo, "status")

        print("The state file as written (plain YAML, validated on every read and write):\n")
        print((repo / ".windsurf" / "orchestrator" / "session_state.yaml").read_text())


if __name__ == "__main__":
    main()
