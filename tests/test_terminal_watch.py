"""`watch`, the live board: its frame to the letter, and the real thing in a terminal under
tmux (a lock taken in another process appears, the countdown runs, `q` quits, the state is
left as it was)."""

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

import orchestrator as o

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOW = "2026-12-01T10:00:00+00:00"


def board_state():
    state = o.empty_state()
    state["active_sessions"] = [
        {"id": "api", "focus": "Split the tariff service", "status": "in_progress",
         "touched_areas": ["backend"], "risks": [], "notes": [], "branch": "feature/tariffs",
         "started_at": "2026-12-01T08:00:00+00:00", "last_updated": "2026-12-01T09:55:00+00:00"},
        {"id": "ui", "focus": "Checkout page", "status": "blocked",
         "touched_areas": ["src/api/x.py"], "risks": [], "notes": [],
         "started_at": "2026-12-01T09:00:00+00:00", "last_updated": "2026-12-01T09:59:30+00:00"}]
    state["locks"] = [
        {"area": "backend", "owner": "api", "scope": ["src/api"], "reason": "moving types",
         "expected_instability": True, "allow_external_fixes": False,
         "acquired_at": "2026-12-01T09:00:00+00:00", "expires_at": "2026-12-01T11:00:00+00:00"}]
    state["global_notes"] = [f"[api] note {n}" for n in range(5)]
    return state


def test_the_frame_to_the_letter():
    frame = o.watch_frame(board_state(), NOW, 80, 24, color=False)
    assert frame == [
        "Session Orchestrator · watch · 2026-12-01 10:00:00 UTC · q quits",
        "CONFLICTS",
        "  ! ui on src/api/x.py inside api's lock on backend",
        "SESSIONS (2)",
        "  api          in_progress feature/tariffs idle 5m    Split the tariff service",
        "  ui           blocked                     idle 30s   Checkout page",
        "LOCKS (1)",
        "  backend    api          [#####-----] 1h left   unstable, no fixes src/api",
        "NOTES (5, newest 3)",
        "  - [api] note 2",
        "  - [api] note 3",
        "  - [api] note 4",
    ]


def test_the_board_groups_sessions_by_what_a_person_should_look_at_first():
    """Conflicts first, then who waits for the person, gone sessions that still hold locks,
    the working, and last the idle (and gone ones holding nothing)."""
    state = board_state()
    state["active_sessions"] += [
        {**state["active_sessions"][1], "id": "docs", "focus": "Guide", "status": "in_progress"},
        {**state["active_sessions"][1], "id": "old", "focus": "Left over", "status": "in_progress"}]
    seen = {"api": ("stale", "2026-12-01T08:30:00+00:00"),
            "ui": ("waiting", "2026-12-01T09:58:00+00:00"),
            "docs": ("working", "2026-12-01T09:59:50+00:00"),
            "old": ("ended", "2026-12-01T07:00:00+00:00")}
    presence = {k: {"presence": p, "last_seen": t} for k, (p, t) in seen.items()}
    frame = o.watch_frame(state, NOW, 90, 30, color=False, presence=presence)
    start = frame.index("WAITING FOR YOU (1)")
    assert frame[start:start + 9] == [
        "WAITING FOR YOU (1)",
        "  ui           blocked                     waiting 2m    Checkout page",
        "GONE, HOLDING LOCKS (1)",
        "  api          in_progress feature/tariffs stale   1h30m Split the tariff service",
        "WORKING (1)",
        "  docs         in_progress                 working 10s   Guide",
        "IDLE OR GONE (1)",
        "  old          in_progress                 ended   3h    Left over",
        "LOCKS (1)",
    ]


def test_the_frame_fits_a_small_terminal_and_colours_only_when_asked():
    state = board_state()
    state["global_notes"] = ["x" * 200]
    small = o.watch_frame(state, NOW, 40, 8, color=False)
    assert len(small) == 8 and all(len(line) <= 40 for line in small)
    assert small[-1].startswith("  … ") and "more lines" in small[-1]
    assert not any("\x1b" in line for line in small)
    assert any("\x1b[" in line for line in o.watch_frame(state, NOW, 80, 24, color=True))


def test_without_a_terminal_watch_prints_one_status_and_exits(run, session):
    session("api")
    result = run("watch")
    assert result.code == 0 and "ACTIVE SESSIONS (1)" in result.out


# ---------------------------------------------------------------------------- in a real terminal

tmux = pytest.mark.skipif(not shutil.which("tmux"), reason="tmux is not installed")


def capture(socket, name):
    return subprocess.run(["tmux", "-L", socket, "capture-pane", "-p", "-t", name],
                          capture_output=True, text=True).stdout


def wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


@tmux
def test_watch_in_a_terminal_shows_a_new_lock_counts_down_and_quits_on_q(repo, run, session):
    session("api")
    session("ui")
    state = repo / ".windsurf/orchestrator/session_state.yaml"
    socket, name = f"orch-{uuid.uuid4().hex[:8]}", "board"
    env = {**os.environ, "ORCHESTRATOR_STATE": str(state), "NO_COLOR": "1", "TERM": "xterm"}
    command = f"{sys.executable} {os.path.join(ROOT, 'orchestrator.py')} watch"
    subprocess.run(["tmux", "-L", socket, "new-session", "-d", "-s", name, "-x", "80", "-y",
                    "24", command], env=env, cwd=repo, check=True)
    try:
        assert wait_for(lambda: "WORKING (2)" in capture(socket, name)), capture(socket, name)
        first = capture(socket, name).splitlines()[0]
        assert run("lock", "--session", "api", "--area", "backend", "--scope", "src",
                   "--reason", "moving types", "--duration", "1h").code == 0
        shown = wait_for(lambda: "backend" in capture(socket, name), seconds=3)
        assert shown, capture(socket, name)
        assert "LOCKS (1)" in capture(socket, name)
        later = wait_for(lambda: capture(socket, name).splitlines()[0] != first, seconds=3)
        assert later, "the clock did not move"
        before = state.read_bytes()
        subprocess.run(["tmux", "-L", socket, "send-keys", "-t", name, "q"], check=True)
        gone = wait_for(lambda: subprocess.run(["tmux", "-L", socket, "has-session", "-t", name],
                                               capture_output=True).returncode != 0, seconds=5)
        assert gone, "q did not quit"
        assert state.read_bytes() == before  # watch never writes the state
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


def test_the_frame_shows_what_status_shows_for_a_folder(run, session, repo):
    """An area that is a folder of the checkout covers the locks inside it, as in status."""
    (repo / "src" / "api").mkdir(parents=True)
    session("api", "backend")
    session("ui", "src/api")
    assert run("lock", "--session", "api", "--area", "backend", "--scope", "src/api/x.py",
               "--reason", "r").code == 0
    assert "! ui works on" in run("status").out
    state = o.Store(repo / ".windsurf/orchestrator/session_state.yaml").load()
    ctx_is_folder = lambda path: o.is_glob(path) or (repo / path).is_dir()
    frame = o.watch_frame(state, o.utc_now(), 100, 24, color=False, is_folder=ctx_is_folder)
    assert any(line.startswith("  ! ui on src/api") for line in frame), frame


def test_wide_characters_count_as_two_columns():
    from wcwidth import wcswidth
    state = board_state()
    state["active_sessions"][0]["focus"] = "料金サービスを分割する作業を続けています" * 2
    frame = o.watch_frame(state, NOW, 80, 24, color=False)
    assert all(wcswidth(line) <= 80 for line in frame), frame


def test_the_board_shows_each_sessions_unread_count():
    state = board_state()
    state["active_sessions"][1]["inbox"] = ["2026-12-01T09:00:00+00:00 [api] a", "x"]
    presence = {s["id"]: {"presence": "working", "last_seen": NOW} for s in state["active_sessions"]}
    frame = o.watch_frame(state, NOW, 90, 30, color=False, presence=presence)
    assert "  ui           blocked                     working 0s    ✉2 Checkout page" in frame
