"""`make bench`: what each command costs a user, as whole processes, beside its baselines.

Every figure is the wall time of one whole process started the way the installed launcher
starts the tool (`python -c "import orchestrator; ..."`, so the module's cached bytecode is
used), with PYTHONDONTWRITEBYTECODE unset as on users' machines (this workplace sets it).
Each series runs a few warm-up processes first and then reports the median, min and max of
the timed ones. The baselines, `python -c pass` and `python -c "import strictyaml"` (the
issue's), and `python -c "import strictyaml, gc; gc.freeze()"` (like for like: the tool's
entry point ends with the same gc.freeze(), which spares the exiting interpreter a full
collection), are timed in every run beside the commands (and alone before and after
everything); each command is shown as a ratio to each, using the baselines of its own runs,
so load from elsewhere on the machine weighs on numerator and denominator alike.

States, built with the tool's own emitter and read once by the tool before timing (so every
timed command reads its cache, as it does on an unchanged file):
  realistic   10 active sessions, 20 locks, 10 completed, 50 notes, 50 directives
  10 / 100 / 1000   that many entries in each of the five lists
Commands: check, status, hook (a Windsurf pre_write_code event: allowed, and blocked by another
session's lock; pre_run_command and post_run_command around a shell command, and a command line
that writes into a lock), note, lock, unlock, lock+unlock, sync (registering a new session). A
write runs on a fresh copy of the prepared state and its cache files; the copy is not timed.

The first read after a hand edit pays strictyaml's full validation: the bench times it once per
state (the process that fills the cache), not as a median. Then `make stress`'s load with 8
parallel writers gives throughput and lost operations. Targets (issue 9) are reported PASS or
MISS, never asserted: the exit status is 0 unless the bench itself broke.

    python scripts/bench.py [--quick] [--runs N] [--warmup N] [--sizes 10,100,1000]
                            [--stress-rounds N] [--json FILE]
"""

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
import orchestrator  # noqa: E402  (standard library only at import time; no strictyaml/jinja2)

PY = sys.executable
# Exactly how .windsurf/orchestrator/launcher runs the tool: an import, not a script.
LAUNCH = [PY, "-I", "-S", "-c", "import sys; p = sys.argv.pop(1).split('\\n'); sys.path[0:0] = p[:1]; "
          "sys.path += p[1:]; import orchestrator; sys.exit(orchestrator.run())",
          "\n".join(orchestrator.launcher_paths())]
BASELINES = {"pass": [PY, "-c", "pass"], "strictyaml": [PY, "-c", "import strictyaml"],
             "frozen": [PY, "-c", "import strictyaml, gc; gc.freeze()"]}
BASELINE_LABELS = {"pass": "python -c pass", "strictyaml": 'python -c "import strictyaml"',
                   "frozen": "... and gc.freeze() at exit"}
STATE_NAME = "session_state.yaml"
RESULTS_PATH = ROOT / "bench-results.json"

REALISTIC = {"active_sessions": 10, "locks": 20, "completed_sessions": 10, "global_notes": 50,
             "directive_log": 50}
ME = "session-0000"          # the session whose commands are timed
TRAJECTORY = "traj-0000"     # the Cascade conversation bound to ME

CHECK_TARGET = 1.5           # x `python -c pass`: check and the hook path
WRITE_TARGET = 1.2           # x `python -c "import strictyaml"`: note, lock
SCALE_TARGET = 10.0          # 1,000 entries against 100 entries
STRESS_WORKERS, STRESS_OPS_TARGET = 8, 20.0
SHARED_WRITE_TARGET = 4.0    # a write against a local bare remote, against the same write alone
SHARED_OPS_TARGET = 5.0      # operations a second, 8 writers across two clones
SHARED_READ_TARGET = 1.1     # check and the hook with a remote, against without one
FIRST_READ_SCALE = 10.0      # first read of a hand-written state: 1,000 against 100 per list
NOTES_SCALE = 5.5            # first read: 5,000 notes against 1,000
EDIT_TARGET = 3.0            # check after a one-entry hand edit, against check on the cache
SYNC_OUTPUT_TARGET = 2.0     # sync's output at 1,000 notes against 10 notes
SHIM_TARGET = 1.25           # x `python -c pass`: check and the hook through the shim (presence
                             # recorded; issue 28 allows 1.3)
END_TARGET_MS = 300          # the session end hook through the shim (issue 28)
RADAR_COLD_TARGET, RADAR_WARM_TARGET = 3.0, 1.2  # x status without the worktrees (issue 29)


class BenchBroke(Exception):
    """The bench itself could not measure (a command failed in a way it should not)."""


# ---------------------------------------------------------------------------- states

def iso(moment):
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def build_state(counts, now):
    """A plausible state with counts[key] entries per list; every lock is live for a week."""
    sessions, locks = counts["active_sessions"], counts["locks"]
    owners = max(sessions, 1)
    state = {key: [] for key in orchestrator.TOP_LEVEL_KEYS}
    for i in range(sessions):
        state["active_sessions"].append({
            "id": f"session-{i:04d}", "focus": f"Rework the area-{i} handlers and their tests",
            "status": ("in_progress", "discovery", "blocked")[i % 3] if i else "in_progress",
            "touched_areas": [f"area-{i}", f"src/area-{i}"],
            "risks": [f"area-{i} API callers may break"], "notes": [f"started from issue {i}"],
            "started_at": iso(now - timedelta(hours=3)),
            "last_updated": iso(now - timedelta(minutes=i % 50)),
            "worktree": f"/home/dev/repo-wt{i % 4}", "branch": f"feature/area-{i}",
            "trajectories": [f"traj-{i:04d}"], "touched_files": [f"src/area-{i}/main.py"],
        })
    for j in range(locks):
        state["locks"].append({
            "area": f"area-{j}", "owner": f"session-{j % owners:04d}",
            "scope": [f"src/area-{j}/**", f"tests/area-{j}"],
            "reason": f"Refactoring area-{j}: interfaces change",
            "expected_instability": j % 5 == 0,
            "allow_external_fixes": j % 4 == 2, "acquired_at": iso(now - timedelta(hours=1)),
            "expires_at": iso(now + timedelta(days=7)),
        })
    for k in range(counts["completed_sessions"]):
        state["completed_sessions"].append({
            "id": f"done-{k:04d}", "focus": f"Earlier work on area-{k}",
            "completed_at": iso(now - timedelta(days=1, minutes=k)),
            "outcome": "merged, tests green",
            "files_changed": [f"src/area-{k}/main.py", f"tests/area-{k}/test_main.py"],
        })
    for n in range(counts["global_notes"]):
        state["global_notes"].append(
            f"[session-{n % owners:04d}] heads-up {n}: CI is slow on area-{n}")
    for d in range(counts["directive_log"]):
        state["directive_log"].append({
            "session": f"session-{d % owners:04d}",
            "directive": f"@directive skip the intent scope check {d}",
            "reason": "the user asked for it", "timestamp": iso(now - timedelta(minutes=d)),
            "rule_overridden": ("intent_scope", "escalation", "lock_duration")[d % 3],
        })
    return state


def copy_state(source_dir, target_dir):
    """The state file, every file beside it whose name starts with its name (its backup), and
    its cache, which the tool keeps in the user's cache folder under the state's path: copied
    there for the new path, as the tool would have left it after reading the copy once."""
    import marshal
    target_dir.mkdir(parents=True, exist_ok=True)
    for entry in source_dir.iterdir():
        if entry.name.startswith(STATE_NAME):
            shutil.copy2(entry, target_dir / entry.name)
    source = orchestrator.Store(source_dir / STATE_NAME)
    target = orchestrator.Store(target_dir / STATE_NAME)
    if os.path.exists(source.cache_path):
        with open(source.cache_path, "rb") as handle:
            cached = marshal.load(handle)
        cached["path"] = target.path
        with open(target.cache_path, "wb") as handle:
            marshal.dump(cached, handle)
    return target_dir / STATE_NAME


# ---------------------------------------------------------------------------- timing

def timed_env(state_path=None):
    """Users' environment: bytecode caches written and used; the given state file."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for name in ("ORCHESTRATOR_STATE", "ORCHESTRATOR_DEBUG", "ORCHESTRATOR_COMMAND"):
        env.pop(name, None)
    env["ORCHESTRATOR_LOCK_TIMEOUT"] = "30"
    if state_path is not None:
        env["ORCHESTRATOR_STATE"] = str(state_path)
    return env


def run_once(argv, env, cwd, stdin=None, expect=(0,)):
    """Wall seconds of one whole process; BenchBroke when its exit code is not the expected one."""
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, input=stdin or b"")
    elapsed = time.perf_counter() - started
    if proc.returncode not in expect:
        shown = " ".join(argv[len(LAUNCH):] if argv[:len(LAUNCH)] == LAUNCH else argv)
        raise BenchBroke(f"`{shown}` exited {proc.returncode} (expected {expect}): "
                         f"{proc.stderr.decode(errors='replace').strip()[-400:]}")
    return elapsed


def summary(samples):
    ms = [s * 1000 for s in samples]
    return {"median_ms": round(statistics.median(ms), 1), "min_ms": round(min(ms), 1),
            "max_ms": round(max(ms), 1), "runs": len(ms), "samples_ms": [round(v, 1) for v in ms]}


def series(one_run, warmup, runs):
    """Call one_run() warmup + runs times; it returns {name: seconds}; summaries per name."""
    for _ in range(warmup):
        one_run()
    collected = {}
    for _ in range(runs):
        for name, seconds in one_run().items():
            collected.setdefault(name, []).append(seconds)
    return {name: summary(values) for name, values in collected.items()}


def hook_event(file_path):
    return json.dumps({
        "agent_action_name": "pre_write_code", "trajectory_id": TRAJECTORY, "execution_id": "e",
        "timestamp": iso(datetime.now(timezone.utc)),
        "tool_info": {"file_path": str(file_path), "edits": []},
    }).encode("utf-8")


def run_event(action, command_line, cwd):
    """A Windsurf pre_run_command or post_run_command event for `command_line`."""
    return json.dumps({
        "agent_action_name": action, "trajectory_id": TRAJECTORY, "execution_id": "e",
        "timestamp": iso(datetime.now(timezone.utc)),
        "tool_info": {"command_line": command_line, "cwd": str(cwd)},
    }).encode("utf-8")


def make_repo(folder):
    """A git checkout the hook's file paths live in (a bare `.git` folder if git is missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["git", "init", "-q", str(folder)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        (folder / ".git").mkdir(exist_ok=True)
    for sub in ("src/area-1", "docs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    # Files in the locked areas, for the walk after a shell command: 20 areas of 50 files.
    for area in range(1, 21):
        for kind in ("src", "tests"):
            (folder / kind / f"area-{area}").mkdir(parents=True, exist_ok=True)
        for number in range(25):
            (folder / "src" / f"area-{area}" / f"module_{number}.py").write_text("x = 1\n")
            (folder / "tests" / f"area-{area}" / f"test_{number}.py").write_text("x = 1\n")
    return folder


# ---------------------------------------------------------------------------- one state

def bench_state(name, counts, work, repo, warmup, runs, now):
    """Prepare one state, time its first read (full validation) and every command on it."""
    prepared = work / f"state-{name}"
    prepared.mkdir()
    state_path = prepared / STATE_NAME
    state_path.write_text(orchestrator.emit_state(build_state(counts, now)), encoding="utf-8")
    size_bytes = state_path.stat().st_size
    env = timed_env(state_path)

    # The first read after a hand edit: no cache yet, so strictyaml validates the whole file.
    # This process also fills the cache every timed command below reads.
    unbounded = {**env, orchestrator.VALIDATION_BUDGET_ENV: "100000"}  # check may take its time
    first = run_once(LAUNCH + ["check", "--session", ME], unbounded, repo)
    cold = {"first_read_ms": round(first * 1000, 1), "command": f"check --session {ME}"}
    if not os.path.exists(orchestrator.Store(state_path).cache_path):
        print(f"  ! {name}: the tool left no cache for the state; every timed read below may "
              "validate in full", file=sys.stderr)

    allowed_event = hook_event(repo / "docs" / "guide.md")
    # src/area-1/** is locked by session-0001, and that lock forbids outside fixes: blocked.
    blocked_event = hook_event(repo / "src" / "area-1" / "main.py")

    def reads():
        return {
            "check": run_once(LAUNCH + ["check", "--session", ME], env, repo),
            "status": run_once(LAUNCH + ["status"], env, repo),
            "hook (allowed write)": run_once(LAUNCH + ["hook"], env, repo, stdin=allowed_event),
            "hook (blocked write)": run_once(LAUNCH + ["hook"], env, repo, stdin=blocked_event,
                                             expect=(2,)),
            # A shell command, before it runs (other sessions hold locks: its start is
            # marked) and after it (git lists what changed in their scopes).
            "hook (shell, before)": run_once(LAUNCH + ["hook"], env, repo, stdin=run_event(
                "pre_run_command", "make test", repo)),
            "hook (shell, after)": run_once(LAUNCH + ["hook"], env, repo, stdin=run_event(
                "post_run_command", "make test", repo)),
            "hook (shell, blocked)": run_once(LAUNCH + ["hook"], env, repo, stdin=run_event(
                "pre_run_command", "echo x > src/area-1/main.py", repo), expect=(2,)),
        }

    copies = [0]

    def fresh_copy():
        copies[0] += 1
        folder = work / f"run-{name}-{copies[0]}"
        path = copy_state(prepared, folder)
        return folder, path, timed_env(path)

    def writes():
        figures = {}
        folder, _, wenv = fresh_copy()
        figures["note"] = run_once(LAUNCH + ["note", "--session", ME, "CI", "is", "red", "on",
                                             "main,", "looking", "into", "it"], wenv, repo)
        shutil.rmtree(folder)
        folder, _, wenv = fresh_copy()
        figures["lock"] = run_once(LAUNCH + ["lock", "--session", ME, "--area", "bench-area",
                                             "--scope", "bench/new", "--reason", "bench write",
                                             "--duration", "2h"], wenv, repo)
        figures["unlock"] = run_once(LAUNCH + ["unlock", "--session", ME, "--area", "bench-area"],
                                     wenv, repo)
        figures["lock+unlock"] = figures["lock"] + figures["unlock"]
        shutil.rmtree(folder)
        folder, _, wenv = fresh_copy()
        figures["sync (register)"] = run_once(
            LAUNCH + ["sync", "--session", "bench-new", "--focus", "benchmark session",
                      "--area", "bench-area"], wenv, repo)
        shutil.rmtree(folder)
        return figures

    def one_run():  # baselines beside the commands, so load from elsewhere hits both alike
        figures = {f"baseline {key}": run_once(argv, env, repo) for key, argv in BASELINES.items()}
        figures.update(reads())
        figures.update(writes())
        return figures

    commands = series(one_run, warmup, runs)
    baselines = {key: commands.pop(f"baseline {key}") for key in BASELINES}
    return {"counts": counts, "state_bytes": size_bytes, "warmup": warmup, "runs": runs,
            "baselines": baselines, "first_read_after_hand_edit": cold, "commands": commands}


# ---------------------------------------------------------------------------- scale

def hand_written(state):
    """The state as a person lays it out, not as the tool writes it: entries at column 0,
    quoted timestamps, a comment every ten entries. Every entry's text is new to the tool."""
    import re
    lines, count = [], 0
    for line in orchestrator.emit_state(state, header=False).splitlines():
        if line.startswith("  - "):
            count += 1
            if count % 10 == 0:
                lines.append(f"# entry {count}")
        line = line[2:] if line.startswith("  ") else line
        lines.append(re.sub(r": (\d{4}-\d\d-\d\dT\S+)$", r': "\1"', line))
    return "\n".join(lines) + "\n"


def fresh_cache_env(work, state_path, label):
    """The timed environment with a cache folder of its own: nothing validated yet. check's
    validation budget is lifted, so that it validates what it must rather than defer it:
    the figures are the cost of validating."""
    env = timed_env(state_path)
    env["XDG_CACHE_HOME"] = str(work / f"cache-{label}")
    env[orchestrator.VALIDATION_BUDGET_ENV] = "100000"
    return env


def bench_scale(work, repo, now, runs):
    """Issue 16's figures: first reads of hand-written states, a one-entry hand edit, writers
    beside a validation, what `sync` prints as notes grow, and the installed shim."""
    figures = {"first_read_ms": {}, "sync_bytes": {}}
    states = {"100 per list": {key: 100 for key in orchestrator.TOP_LEVEL_KEYS},
              "1,000 per list": {key: 1000 for key in orchestrator.TOP_LEVEL_KEYS},
              "1,000 notes": {**{key: 0 for key in orchestrator.TOP_LEVEL_KEYS},
                              "active_sessions": 1, "global_notes": 1000},
              "5,000 notes": {**{key: 0 for key in orchestrator.TOP_LEVEL_KEYS},
                              "active_sessions": 1, "global_notes": 5000}}
    paths = {}
    for label, counts in states.items():
        folder = work / f"scale-{label.replace(',', '').replace(' ', '-')}"
        folder.mkdir()
        path = paths[label] = folder / STATE_NAME
        path.write_text(hand_written(build_state(counts, now)), encoding="utf-8")
        env = fresh_cache_env(work, path, folder.name)
        print(f"    first read, hand-written, {label} ...", flush=True)
        figures["first_read_ms"][label] = round(
            run_once(LAUNCH + ["status", "--json"], env, repo) * 1000, 1)

    # One entry edited by hand in the 1,000-entry state its cache already holds.
    path = paths["1,000 per list"]
    env = fresh_cache_env(work, path, "scale-1000-per-list")
    cached = series(lambda: {"check": run_once(LAUNCH + ["check", "--session", ME], env, repo)},
                    1, runs)["check"]
    text = path.read_text(encoding="utf-8")
    edits = []
    for number in range(runs):
        edited = text.replace("heads-up 500:", f"heads-up 500 (edit {number}):", 1)
        path.write_text(edited, encoding="utf-8")
        edits.append(run_once(LAUNCH + ["check", "--session", ME], env, repo))
        path.write_text(text, encoding="utf-8")
        run_once(LAUNCH + ["check", "--session", ME], env, repo)  # back to the cached text
    figures["check_cached_ms"] = cached["median_ms"]
    figures["check_after_one_edit_ms"] = summary(edits)["median_ms"]

    # Writers while another process validates a large hand edit (nothing cached).
    folder = work / "scale-writers"
    folder.mkdir()
    path = folder / STATE_NAME
    path.write_text(hand_written(build_state({key: 1000 for key in orchestrator.TOP_LEVEL_KEYS},
                                             now)), encoding="utf-8")
    env = fresh_cache_env(work, path, "scale-writers")
    env["ORCHESTRATOR_LOCK_TIMEOUT"] = "10"  # the default a user has
    validator = subprocess.Popen(LAUNCH + ["status"], env=env, cwd=repo,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.2)
    writers = [subprocess.Popen(LAUNCH + ["note", "--session", ME, f"writer {n}"], env=env,
                                cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for n in range(3)]
    codes = [w.wait() for w in writers]
    validator.wait()
    figures["writers_beside_validation"] = {"writers": len(codes),
                                            "exit_4": codes.count(4), "codes": codes}

    # What an agent reads from `sync` as the notes grow.
    for count in (10, 100, 1000):
        folder = work / f"scale-sync-{count}"
        folder.mkdir()
        path = folder / STATE_NAME
        counts = {**REALISTIC, "global_notes": count}
        path.write_text(orchestrator.emit_state(build_state(counts, now)), encoding="utf-8")
        proc = subprocess.run(LAUNCH + ["sync"], env=timed_env(path), cwd=repo,
                              capture_output=True)
        figures["sync_bytes"][str(count)] = len(proc.stdout)
    return figures


def bench_shared(work, runs, rounds):
    """Issue 19's figures: a write against a local bare remote beside the same write with no
    remote, check and the hook with and without one, and 8 writers across two clones."""
    def git(folder, *args):
        subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)

    remote = work / "shared-remote.git"
    git(work, "init", "-q", "--bare", str(remote))
    seed = work / "shared-seed"
    git(work, "init", "-q", str(seed))
    git(seed, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "--allow-empty",
        "-m", "init")
    git(seed, "push", "-q", str(remote), "HEAD:refs/heads/main")
    clones = []
    for name in ("a", "b"):
        git(work, "clone", "-q", str(remote), str(work / f"shared-{name}"))
        clones.append(work / f"shared-{name}")
    env = timed_env()
    env["ORCHESTRATOR_LOCK_TIMEOUT"] = "60"
    a, b = clones
    run_once(LAUNCH + ["sync", "--session", ME, "--focus", "bench", "--area", "area-1"], env, a)
    run_once(LAUNCH + ["lock", "--session", ME, "--area", "area-1", "--scope", "src/area-1",
                       "--reason", "bench"], env, a)
    event = json.dumps({"agent_action_name": "pre_write_code", "trajectory_id": TRAJECTORY,
                        "tool_info": {"file_path": str(a / "docs" / "x.md")}}).encode()
    number = [0]

    def one_run():
        number[0] += 1
        return {"note": run_once(LAUNCH + ["note", "--session", ME, f"bench {number[0]}"],
                                 env, a),
                "check": run_once(LAUNCH + ["check", "--session", ME], env, a),
                "hook": run_once(LAUNCH + ["hook"], env, a, stdin=event)}

    figures = {"local": series(one_run, 1, runs)}
    run_once(LAUNCH + ["remote", "enable"], env, a)
    run_once(LAUNCH + ["remote", "enable"], env, b)
    figures["shared"] = series(one_run, 1, runs)

    # 8 writers, 4 on each clone, each writing `rounds` notes one after another.
    sessions = [f"writer-{n}" for n in range(STRESS_WORKERS)]
    for n, session in enumerate(sessions):
        run_once(LAUNCH + ["sync", "--session", session, "--focus", "w", "--area", "w"], env,
                 clones[n % 2])
    started = time.perf_counter()
    script = ("import subprocess, sys\n"
              "argv, rounds, session = sys.argv[1].split('\\x1f'), int(sys.argv[2]), sys.argv[3]\n"
              "failed = 0\n"
              "for r in range(rounds):\n"
              "    failed += subprocess.run(argv + ['note', '--session', session, f'{session} "
              "{r}'], capture_output=True).returncode != 0\n"
              "print(failed)\n")
    workers = [subprocess.Popen([PY, "-c", script, "\x1f".join(LAUNCH), str(rounds), session],
                                cwd=clones[n % 2], env=env, stdout=subprocess.PIPE, text=True)
               for n, session in enumerate(sessions)]
    failed = sum(int(w.communicate()[0].strip() or 0) for w in workers)
    wall = time.perf_counter() - started
    text = subprocess.run(["git", "-C", str(remote), "show",
                           f"{orchestrator.DEFAULT_SHARED_REF}:{orchestrator.SHARED_FILE}"],
                          capture_output=True, text=True).stdout
    notes = orchestrator.parse_state_text(text, "remote")[0]["global_notes"]
    expected = {f"[{s}] {s} {r}" for s in sessions for r in range(rounds)}
    figures["writers"] = {"workers": STRESS_WORKERS, "clones": 2, "operations": len(expected),
                          "wall_seconds": round(wall, 2),
                          "ops_per_second": round(len(expected) / wall, 1),
                          "lost": len(expected - set(notes)), "failed": failed}
    return figures


def bench_shim(work, now, runs):
    """check, the hook and a write through the installed pack, as the agents run them."""
    repo = make_repo(work / "installed")
    env = timed_env()
    env["XDG_DATA_HOME"] = str(work / "data")
    env["XDG_CACHE_HOME"] = str(work / "cache-installed")
    code = subprocess.run(LAUNCH + ["install", "--target", str(repo)], env=env, cwd=repo,
                          capture_output=True).returncode
    if code != 0:
        raise BenchBroke(f"install into the bench repository exited {code}")
    state_path = repo / orchestrator.STATE_RELATIVE_PATH
    state_path.write_text(orchestrator.emit_state(build_state(REALISTIC, now)), encoding="utf-8")
    shim = ["sh", ".windsurf/bin/orchestrator"]
    hook_line = ["sh", "-c", orchestrator.HOOK_COMMAND]
    allowed = hook_event(repo / "docs" / "guide.md")
    run_once(shim + ["check", "--session", ME], env, repo)  # fills the cache
    # The end of ME's conversation, on the realistic state as it was before each run (the
    # restore and the check that reads it into the cache are not timed): the end hook runs
    # git status and releases ME's locks over unchanged files.
    end_event = json.dumps({"session_id": TRAJECTORY, "hook_event_name": "SessionEnd",
                            "cwd": str(repo), "reason": "prompt_input_exit",
                            "transcript_path": ""}).encode("utf-8")
    prepared = state_path.read_bytes()

    def timed_end():
        state_path.write_bytes(prepared)
        run_once(shim + ["check", "--session", ME], env, repo)
        return run_once(shim + ["hook"], env, repo, stdin=end_event)

    def one_run():
        return {"baseline pass": run_once(BASELINES["pass"], env, repo),
                "baseline strictyaml": run_once(BASELINES["strictyaml"], env, repo),
                "check (shim)": run_once(shim + ["check", "--session", ME], env, repo),
                "hook (shim)": run_once(shim + ["hook"], env, repo, stdin=allowed),
                "hook (hooks.json line)": run_once(hook_line, env, repo, stdin=allowed),
                "note (shim)": run_once(shim + ["note", "--session", ME, "bench"], env, repo),
                "session end hook (shim)": timed_end()}
    return series(one_run, 1, runs)


def bench_radar(work, runs):
    """The radar (issue 29): 10 sessions in 10 worktrees, each with 20 changed files (two of
    them the next session's too: one on the same lines, one not), against the same 10 sessions
    with no worktree of their own to look at; cold (the radar's cache removed before each
    run: every worktree read, every meeting pair merged in memory) and warm."""
    repo = work / "radar" / "main"
    repo.mkdir(parents=True)
    git = lambda cwd, *a: subprocess.run(["git", "-C", str(cwd), *a], check=True,
                                         capture_output=True)
    git(repo, "init", "-q", "-b", "main")
    for area in range(10):
        (repo / f"src/area-{area}").mkdir(parents=True)
        for number in range(30):
            (repo / f"src/area-{area}/m{number}.py").write_text(
                "".join(f"line {k}\n" for k in range(40)))
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "base")
    env = timed_env()
    env["XDG_CACHE_HOME"] = str(work / "cache-radar")
    for n in range(10):
        tree = work / "radar" / f"wt{n}"
        git(repo, "worktree", "add", "-q", "-b", f"w{n}", str(tree))
        run_once(LAUNCH + ["sync", "--session", f"s{n}", "--focus", "radar bench", "--area",
                           f"area-{n}"], env, tree)
        # 18 files of its own area (line 5 of each), and 2 of the next session's: the same
        # line 5 of m28 (a merge conflict), line 30 of m29 (an overlap that merges)
        for number in [*range(16), 28, 29]:
            path = tree / f"src/area-{n}/m{number}.py"
            path.write_text(path.read_text().replace("line 5\n", f"line 5 by s{n}\n"))
        for shared, line in ((f"src/area-{(n + 1) % 10}/m28.py", 5),
                             (f"src/area-{(n + 1) % 10}/m29.py", 30)):
            path = tree / shared
            path.write_text(path.read_text().replace(f"line {line}\n", f"line {line} s{n}\n"))
    state_path = repo / orchestrator.STATE_RELATIVE_PATH
    with_worktrees = state_path.read_bytes()
    without = with_worktrees.replace(str(work / "radar").encode(), b"/nowhere")
    cache = orchestrator.radar_cache_path(str(repo.resolve())).replace(
        orchestrator.user_cache_folder(), str(work / "cache-radar" / "session-orchestrator"))
    status = LAUNCH + ["status"]

    def one_run():
        state_path.write_bytes(without)
        run_once(status, env, repo)  # the state's cache for this content, not timed
        plain = run_once(status, env, repo)
        state_path.write_bytes(with_worktrees)
        run_once(status, env, repo)
        if os.path.exists(cache):
            os.unlink(cache)
        cold = run_once(status, env, repo)
        warm = run_once(status, env, repo)
        return {"status, no worktrees to read": plain, "status, radar cold": cold,
                "status, radar warm": warm}
    figures = series(one_run, 1, runs)
    found = json.loads(subprocess.run(LAUNCH + ["--json", "status"], env=env, cwd=repo,
                                      capture_output=True).stdout)["conflicts"]
    figures["found"] = {kind: sum(1 for c in found if c["kind"] == kind)
                        for kind in ("merge", "overlap")}
    return figures


# ---------------------------------------------------------------------------- report

def ratio(value, base):
    return round(value / base, 2) if base else None


def add_ratios(figures, baselines, key="median_ms"):
    """Ratios to the baselines measured in the same runs as the figures."""
    for name in BASELINES:
        figures[f"x_{name}"] = ratio(figures[key], baselines[name]["median_ms"])


def print_table(title, rows):
    print(f"\n{title}")
    print(f"  {'command':<34}{'median ms':>10}{'min':>9}{'max':>9}{'x pass':>9}"
          f"{'x strictyaml':>14}{'x frozen':>10}")
    for label, f in rows:
        print(f"  {label:<34}{f['median_ms']:>10.1f}{f['min_ms']:>9.1f}{f['max_ms']:>9.1f}"
              f"{f.get('x_pass') or 0:>9.2f}{f.get('x_strictyaml') or 0:>14.2f}"
              f"{f.get('x_frozen') or 0:>10.2f}")


def describe_counts(counts):
    if counts == REALISTIC:
        return ("10 active sessions, 20 locks, 10 completed, 50 notes, 50 directives")
    sizes = set(counts.values())
    return f"{sizes.pop():,} entries per list" if len(sizes) == 1 else json.dumps(counts)


def print_scale(scale):
    print("\nscale (hand-written states: entries at column 0, quoted timestamps, comments)")
    for label, ms in scale["first_read_ms"].items():
        print(f"  first read, {label:<28}{ms:>10.1f} ms")
    print(f"  check, 1,000 per list, cached          {scale['check_cached_ms']:>10.1f} ms")
    print(f"  check after a one-entry hand edit      {scale['check_after_one_edit_ms']:>10.1f} ms")
    writers = scale["writers_beside_validation"]
    print(f"  {writers['writers']} writers while another process validates: exit codes "
          f"{writers['codes']}")
    for count, size in scale["sync_bytes"].items():
        print(f"  sync prints at {count:>5} notes           {size:>10,} bytes")
    shim = scale["shim"]
    for name, figures in shim.items():
        print(f"  {name:<38}{figures['median_ms']:>10.1f} ms")
    for name, figures in scale["radar"].items():
        if name == "found":
            print(f"  the radar found {figures['merge']} merge conflicts and "
                  f"{figures['overlap']} overlaps")
        else:
            print(f"  {name:<38}{figures['median_ms']:>10.1f} ms")


def targets(results, baselines, stress, scale=None, shared=None):
    found = []

    def target(name, measured, limit, passed, unit=""):
        found.append({"target": name, "measured": measured, "limit": limit,
                      "verdict": "PASS" if passed else "MISS", "unit": unit})

    real = results.get("realistic")
    if real:
        for command in ("check", "hook (allowed write)", "hook (blocked write)",
                        "hook (shell, before)", "hook (shell, after)", "hook (shell, blocked)"):
            x = real["commands"][command]["x_pass"]
            target(f"{command}, realistic state, cached: <= {CHECK_TARGET}x python -c pass",
                   x, CHECK_TARGET, x <= CHECK_TARGET, "x")
        for command in ("note", "lock"):
            x = real["commands"][command]["x_strictyaml"]
            target(f"{command} (a whole write), realistic state: <= {WRITE_TARGET}x "
                   "import strictyaml",
                   x, WRITE_TARGET, x <= WRITE_TARGET, "x")
        for command in ("note", "lock"):  # the tool's run() freezes the collector; so does this
            found.append({"target": f"{command}, like for like: against import strictyaml "
                                    "that also ends with gc.freeze() (not the issue's baseline)",
                          "measured": real["commands"][command]["x_frozen"], "limit": None,
                          "verdict": "REPORT", "unit": "x"})
    small, large = results.get("100"), results.get("1000")
    if small and large:
        for command, figures in large["commands"].items():
            if command == "lock+unlock":
                continue
            before = small["commands"][command]["median_ms"]
            grow = ratio(figures["median_ms"], before)
            above = ratio(figures["median_ms"] - large["baselines"]["pass"]["median_ms"],
                          before - small["baselines"]["pass"]["median_ms"])
            target(f"{command}: 1,000 entries <= {SCALE_TARGET:g}x 100 entries", grow,
                   SCALE_TARGET, grow <= SCALE_TARGET, "x")
            found[-1]["above_python_start"] = above
    if stress:
        ok = (stress["ops_per_second"] >= STRESS_OPS_TARGET and stress["lost"] == 0
              and stress["failed"] == 0 and stress["duplicated"] == 0)
        target(f"{stress['workers']} parallel writers: >= {STRESS_OPS_TARGET:g} ops/s, nothing "
               "lost, duplicated or failed",
               f"{stress['ops_per_second']} ops/s, lost {stress['lost']}, duplicated "
               f"{stress['duplicated']}, failed {stress['failed']}", STRESS_OPS_TARGET, ok)
    for result in results.values():
        cold = result["first_read_after_hand_edit"]
        what = describe_counts(result["counts"])
        found.append({"target": f"first read after a hand edit ({what}), full strictyaml "
                                "validation",
                      "measured": cold["first_read_ms"],
                      "limit": None, "verdict": "REPORT", "unit": "ms",
                      "x_pass": cold["x_pass"], "x_strictyaml": cold["x_strictyaml"]})
    if scale:
        first = scale["first_read_ms"]
        grow = round(first["1,000 per list"] / first["100 per list"], 2)
        target(f"first read of a hand-written state: 1,000 per list <= {FIRST_READ_SCALE:g}x "
               "100 per list", grow, FIRST_READ_SCALE, grow <= FIRST_READ_SCALE, "x")
        grow = round(first["5,000 notes"] / first["1,000 notes"], 2)
        target(f"first read: 5,000 notes <= {NOTES_SCALE:g}x 1,000 notes", grow, NOTES_SCALE,
               grow <= NOTES_SCALE, "x")
        edit = round(scale["check_after_one_edit_ms"] / scale["check_cached_ms"], 2)
        target(f"check after a one-entry hand edit (1,000 per list) <= {EDIT_TARGET:g}x check "
               "on the cached state", edit, EDIT_TARGET, edit <= EDIT_TARGET, "x")
        writers = scale["writers_beside_validation"]
        target("no writer gets exit 4 while another process validates a large state",
               writers["exit_4"], 0, writers["exit_4"] == 0, " with exit 4")
        sizes = scale["sync_bytes"]
        grow = round(sizes["1000"] / sizes["10"], 2)
        target(f"sync's output at 1,000 notes <= {SYNC_OUTPUT_TARGET:g}x at 10 notes", grow,
               SYNC_OUTPUT_TARGET, grow <= SYNC_OUTPUT_TARGET, "x")
        shim = scale["shim"]
        base, strict = shim["baseline pass"]["median_ms"], shim["baseline strictyaml"]["median_ms"]
        for name in ("check (shim)", "hook (shim)", "hook (hooks.json line)"):
            x = round(shim[name]["median_ms"] / base, 2)
            target(f"{name} <= {SHIM_TARGET:g}x python -c pass", x, SHIM_TARGET,
                   x <= SHIM_TARGET, "x")
        x = round(shim["note (shim)"]["median_ms"] / strict, 2)
        target(f"note (shim) <= {WRITE_TARGET:g}x import strictyaml", x, WRITE_TARGET,
               x <= WRITE_TARGET, "x")
        radar = scale["radar"]
        plain = radar["status, no worktrees to read"]["median_ms"]
        for name, limit in (("status, radar cold", RADAR_COLD_TARGET),
                            ("status, radar warm", RADAR_WARM_TARGET)):
            x = round(radar[name]["median_ms"] / plain, 2)
            target(f"{name} (10 worktrees, 20 changed files each) <= {limit:g}x status "
                   "without them", x, limit, x <= limit, "x")
        ms = round(shim["session end hook (shim)"]["median_ms"])
        target(f"session end hook (shim), realistic state <= {END_TARGET_MS} ms", ms,
               END_TARGET_MS, ms <= END_TARGET_MS, " ms")
    if shared:
        local, remote = shared["local"], shared["shared"]
        x = round(remote["note"]["median_ms"] / local["note"]["median_ms"], 2)
        target(f"a write (note) through a local bare remote <= {SHARED_WRITE_TARGET:g}x the "
               "same write with no remote", x, SHARED_WRITE_TARGET, x <= SHARED_WRITE_TARGET, "x")
        for name in ("check", "hook"):
            x = round(remote[name]["median_ms"] / local[name]["median_ms"], 2)
            target(f"{name} with a remote <= {SHARED_READ_TARGET:g}x without one", x,
                   SHARED_READ_TARGET, x <= SHARED_READ_TARGET, "x")
        w = shared["writers"]
        ok = w["ops_per_second"] >= SHARED_OPS_TARGET and w["lost"] == 0 and w["failed"] == 0
        target(f"{w['workers']} writers across two clones: >= {SHARED_OPS_TARGET:g} ops/s, "
               "nothing lost", f"{w['ops_per_second']} ops/s, lost {w['lost']}, failed "
               f"{w['failed']}", SHARED_OPS_TARGET, ok)
    return found


def module_digest():
    return hashlib.sha256((ROOT / "orchestrator.py").read_bytes()).hexdigest()[:16]


def machine():
    def version(package):
        try:
            from importlib.metadata import version as get
            return get(package)
        except Exception:
            return None

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    return {"platform": platform.platform(), "python": platform.python_version(),
            "implementation": platform.python_implementation(), "executable": PY,
            "cpu_count": os.cpu_count(), "strictyaml": version("strictyaml"),
            "jinja2": version("jinja2"), "commit": git("rev-parse", "--short", "HEAD"),
            "worktree_dirty": bool(git("status", "--porcelain")),
            "orchestrator_sha256": module_digest(),
            "pythondontwritebytecode_in_timed_runs": False}


# ---------------------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer runs (1 warm-up, 5 timed; 3 at 1,000 entries), 2 stress rounds")
    parser.add_argument("--runs", type=int,
                        help="timed runs per series (default 15; a third, at least 3, at 1,000)")
    parser.add_argument("--warmup", type=int,
                        help="warm-up runs per series (default 3; at most 1 at 1,000 entries)")
    parser.add_argument("--sizes", default="10,100,1000",
                        help="entries per list, comma-separated (default 10,100,1000)")
    parser.add_argument("--stress-rounds", type=int, help="rounds per stress worker (default 5; "
                                                          "0 skips the stress figure)")
    parser.add_argument("--no-scale", action="store_true",
                        help="skip the hand-written large states, sync's output and the shim")
    parser.add_argument("--no-shared", action="store_true",
                        help="skip the state shared through a local bare remote")
    parser.add_argument("--json", metavar="FILE", default=str(RESULTS_PATH),
                        help="where to write the figures (default bench-results.json)")
    args = parser.parse_args(argv)
    runs = args.runs or (5 if args.quick else 15)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    large_runs = max(3, runs // 3) if args.runs or not args.quick else 3
    large_warmup = min(warmup, 1)
    stress_rounds = (args.stress_rounds if args.stress_rounds is not None
                     else 2 if args.quick else 5)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes takes numbers, e.g. 10,100,1000")
    if runs < 1 or warmup < 0 or any(s < 1 for s in sizes):
        parser.error("--runs must be at least 1, --warmup and --sizes not negative")

    started = time.perf_counter()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    info = machine()
    print(f"Session Orchestrator bench: {info['platform']}, Python {info['python']}, "
          f"{info['cpu_count']} CPUs, strictyaml {info['strictyaml']}, commit {info['commit']}"
          f"{' (dirty)' if info['worktree_dirty'] else ''}")
    print(f"whole processes via the launcher's import; PYTHONDONTWRITEBYTECODE unset; "
          f"{warmup} warm-up + {runs} timed runs ({large_warmup} + {large_runs} at 1,000+ entries)")

    work = Path(tempfile.mkdtemp(prefix="orchestrator-bench-"))
    results, stress, broke, scale, shared = {}, None, None, None, None
    try:
        repo = make_repo(work / "repo")
        env = timed_env()
        # Bytecode first: compile the module and everything it imports, with caches written.
        warm = LAUNCH + ["--help"]
        for argv in (warm, [PY, "-c", "import strictyaml, jinja2, fnmatch, shlex"]):
            run_once(argv, env, repo)

        def baseline_pass():
            return {name: run_once(argv, env, repo) for name, argv in BASELINES.items()}

        before = series(baseline_pass, warmup, runs)
        plan = [("realistic", REALISTIC)] + [
            (str(n), {key: n for key in orchestrator.TOP_LEVEL_KEYS}) for n in sizes]
        for name, counts in plan:
            big = max(counts.values()) >= 1000
            print(f"  timing {name} ({describe_counts(counts)}) ...", flush=True)
            results[name] = bench_state(name, counts, work, repo,
                                        large_warmup if big else warmup,
                                        large_runs if big else runs, now)
        after = series(baseline_pass, 0, runs)
        if not args.no_scale:
            print("  scale: hand-written states, a one-entry edit, writers, sync's output ...",
                  flush=True)
            scale = bench_scale(work, repo, now, runs)
            print("  the installed shim ...", flush=True)
            scale["shim"] = bench_shim(work, now, runs)
            print("  the radar over 10 worktrees ...", flush=True)
            scale["radar"] = bench_radar(work, max(3, runs // 3))
        if not args.no_shared:
            print("  the state shared through a local bare remote ...", flush=True)
            shared = bench_shared(work, runs, 3 if args.quick else 5)
        baselines = {}
        for key in BASELINES:
            samples = before[key]["samples_ms"] + after[key]["samples_ms"]
            baselines[key] = {**summary([s / 1000 for s in samples]), "label": BASELINE_LABELS[key],
                              "median_before_ms": before[key]["median_ms"],
                              "median_after_ms": after[key]["median_ms"]}
        if stress_rounds > 0:
            print(f"  stress: {STRESS_WORKERS} parallel writers x {stress_rounds} rounds ...",
                  flush=True)
            from stress import run_stress
            (work / "stress").mkdir()
            try:
                stress = run_stress(STRESS_WORKERS, stress_rounds, work / "stress")
            except Exception as error:  # report what was measured, then exit 1
                broke = f"the stress run failed: {type(error).__name__}: {error}"
    except BenchBroke as error:
        print(f"bench: broke: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)

    for figures in baselines.values():
        add_ratios(figures, baselines)
    for result in results.values():
        for figures in [*result["baselines"].values(), *result["commands"].values()]:
            add_ratios(figures, result["baselines"])
        add_ratios(result["first_read_after_hand_edit"], result["baselines"], "first_read_ms")
    print_table("baselines alone, before and after all states", [(BASELINE_LABELS[k], v)
                                                                  for k, v in baselines.items()])
    for result in results.values():
        cold = result["first_read_after_hand_edit"]
        title = (f"{name}: {describe_counts(result['counts'])} ({result['state_bytes']:,} bytes), "
                 f"cache warm; {result['warmup']} warm-up + {result['runs']} runs, baselines "
                 "interleaved with the commands")
        print_table(title, [(BASELINE_LABELS[k], v) for k, v in result["baselines"].items()]
                    + list(result["commands"].items()))
        print(f"  {'first read after a hand edit':<34}{cold['first_read_ms']:>10.1f}"
              f"{'(once)':>18}{cold['x_pass']:>9.2f}{cold['x_strictyaml']:>14.2f}"
              f"{cold['x_frozen']:>10.2f}")
    if stress:
        print(f"\nstress: {stress['workers']} parallel writers x {stress['rounds']} rounds: "
              f"{stress['operations']} operations in {stress['wall_seconds']} s = "
              f"{stress['ops_per_second']} ops/s; lost {stress['lost']}, duplicated "
              f"{stress['duplicated']}, failed {stress['failed']}, stray {stress['stray']}, "
              f"invalid reads {stress['invalid_reads']}; p50 {stress['p50_ms']} ms, "
              f"p99 {stress['p99_ms']} ms")
        for problem in stress["failures"] + stress["invalid"]:
            print(f"  ! {problem}")
    if scale:
        print_scale(scale)
    if shared:
        print_table("shared through a local bare remote: the same commands with and without it",
                    [(f"{name}, {where}", shared[where][name]) for name in ("note", "check", "hook")
                     for where in ("local", "shared")])
        w = shared["writers"]
        print(f"  {w['workers']} writers on {w['clones']} clones: {w['operations']} notes in "
              f"{w['wall_seconds']} s = {w['ops_per_second']} ops/s; lost {w['lost']}, "
              f"failed {w['failed']}")
    verdicts = targets(results, baselines, stress, scale, shared)
    print("\ntargets (reported, not asserted)")
    for t in verdicts:
        measured = t["measured"]
        shown = f"{measured}{t['unit']}" if isinstance(measured, (int, float)) else measured
        if "above_python_start" in t:
            shown += f" ({t['above_python_start']}x for the part above python -c pass)"
        if "x_pass" in t:
            shown += f" ({t['x_pass']}x pass, {t['x_strictyaml']}x strictyaml)"
        print(f"  {t['verdict']:<7}{t['target']}: {shown}")
    elapsed = round(time.perf_counter() - started, 1)
    info["orchestrator_changed_during_bench"] = module_digest() != info["orchestrator_sha256"]
    if info["orchestrator_changed_during_bench"]:
        print("\n! orchestrator.py changed while the bench ran: the figures mix two versions")
    print(f"\nbench took {elapsed} s")

    payload = {"generated_at": iso(datetime.now(timezone.utc)), "machine": info,
               "settings": {"runs": runs, "warmup": warmup, "large_runs": large_runs,
                            "large_warmup": large_warmup, "sizes": sizes, "quick": args.quick,
                            "stress_rounds": stress_rounds},
               "baselines": baselines, "states": results, "stress": stress, "scale": scale,
               "shared": shared,
               "targets": verdicts, "elapsed_seconds": elapsed, "broke": broke}
    Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"figures written to {args.json}")
    if broke:
        print(f"bench: broke: {broke}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
