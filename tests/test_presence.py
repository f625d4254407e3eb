"""Presence (working, waiting, idle, stale, ended) from what the hooks and commands observe; a
session's end through each agent's end event; locks of a gone session taken over in the open.

Contracts followed, as stored late 2026:
- Claude Code, code.claude.com/docs/en/hooks: `SessionEnd` carries `session_id`,
  `transcript_path`, `cwd`, `hook_event_name` and `reason` (`clear`, `resume`, `logout`,
  `prompt_input_exit`, `other`); its default timeout is 1.5 s. `Notification` carries `message`
  and `notification_type`, which its matcher reads (`permission_prompt`, `idle_prompt`: the
  agent waits for its person). `Stop` fires when Claude finishes its answer.
- Cursor, cursor.com/docs/agent/hooks (Cursor 2.x): `sessionEnd` with the common fields
  (`conversation_id`, `generation_id`, `hook_event_name`, `cursor_version`, `workspace_roots`)
  and `session_id`, `reason`, `duration_ms`; `stop` with `status`, `loop_count`. Every hook
  answers a JSON object.
- Devin (Devin Local and the Devin CLI), docs.devin.ai/cli/extensibility/hooks/lifecycle-hooks:
  `SessionEnd` and `Stop` with `session_id`, `prompt_id`, `hook_event_name`,
  `transcript_path`, no `cwd` (DEVIN_PROJECT_DIR names the project).
- Windsurf, docs.windsurf.com/windsurf/cascade/hooks: no start or end event; `pre_user_prompt`
  and `post_cascade_response` with `trajectory_id`.
"""

import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

import orchestrator as o
from helpers import as_json, assert_usage_error, at, committed_repo, git, lock, lock_ok, read_state

CLI = "sh .windsurf/bin/orchestrator"


def presence(run):
    """{session id: (presence, last_seen)} as `status --json` shows them."""
    return {s["id"]: (s["presence"], s["last_seen"])
            for s in as_json(run("--json", "status"))["active_sessions"]}


def hook(run, monkeypatch, event):
    """One hook event through main(["hook"]) in process."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(event)))
    return run("hook")


def claude(name, conversation="conv-a", **fields):
    return {"session_id": conversation, "transcript_path": "/dev/null", "cwd": os.getcwd(),
            "permission_mode": "default", "hook_event_name": name, **fields}


def bind(run, monkeypatch, conversation, session_id):
    """The conversation runs the tool with --session: it is bound to that session."""
    event = claude("PostToolUse", conversation, tool_name="Bash", tool_use_id="t0",
                   tool_input={"command": f"{CLI} update --session {session_id} --status "
                                          "in_progress"})
    assert hook(run, monkeypatch, event).code == 0


# ---------------------------------------------------------------------------- thresholds

def test_a_silent_session_turns_idle_then_stale_and_comes_back_when_it_acts(clock, run, session):
    session("alpha")
    assert presence(run)["alpha"] == ("working", at())
    clock.tick(timedelta(minutes=10))
    assert presence(run)["alpha"][0] == "working"  # within ORCHESTRATOR_IDLE_AFTER (10m)
    clock.tick(timedelta(seconds=1))
    assert presence(run)["alpha"] == ("idle", at())
    clock.tick(timedelta(minutes=50))
    assert presence(run)["alpha"][0] == "stale"  # 60m and 1s silent
    assert run("check", "--session", "alpha").code == 0  # any command of alpha is a sign of life
    assert presence(run)["alpha"] == ("working", at(minutes=60, seconds=1))


def test_the_thresholds_come_from_the_environment(clock, run, session, monkeypatch):
    session("alpha")
    monkeypatch.setenv("ORCHESTRATOR_IDLE_AFTER", "90s")
    monkeypatch.setenv("ORCHESTRATOR_STALE_AFTER", "1h30m")
    clock.tick(timedelta(seconds=91))
    assert presence(run)["alpha"][0] == "idle"
    clock.tick(timedelta(minutes=89))
    assert presence(run)["alpha"][0] == "stale"


@pytest.mark.parametrize("name, value", [("ORCHESTRATOR_IDLE_AFTER", "ten minutes"),
                                         ("ORCHESTRATOR_STALE_AFTER", "0m"),
                                         ("ORCHESTRATOR_IDLE_AFTER", "3h")])
def test_a_bad_threshold_is_one_line_and_exit_2(clock, run, session, state_path, monkeypatch,
                                                name, value):
    session("alpha")
    before = state_path.read_bytes()
    monkeypatch.setenv(name, value)
    assert_usage_error(run("status"), name)
    assert_usage_error(run("sync", "--session", "alpha"), name)
    assert state_path.read_bytes() == before


def test_presence_and_last_seen_in_status_and_sync_json_and_the_report(clock, run, session):
    session("alpha")
    session("beta")
    clock.tick(timedelta(minutes=30))
    synced = as_json(run("--json", "sync", "--session", "beta"))
    shown = {s["id"]: (s["presence"], s["last_seen"]) for s in synced["active_sessions"]}
    assert shown == {"alpha": ("idle", at()), "beta": ("working", at(minutes=30))}
    report = run("status").out
    assert "alpha · in_progress · idle (last seen 30 min ago)" in report
    assert "beta · in_progress · working · started" in report


# ---------------------------------------------------------------------------- hooks observe

def test_every_hook_event_of_a_bound_conversation_is_a_sign_of_life(clock, run, session,
                                                                  monkeypatch):
    session("alpha")
    bind(run, monkeypatch, "conv-a", "alpha")
    clock.tick(timedelta(minutes=45))
    assert presence(run)["alpha"][0] == "idle"
    edit = claude("PreToolUse", tool_name="Edit", tool_use_id="t1",
                  tool_input={"file_path": os.path.join(os.getcwd(), "notes.md")})
    assert hook(run, monkeypatch, edit).code == 0
    assert presence(run)["alpha"] == ("working", at(minutes=45))


def test_a_waiting_agent_shows_as_waiting_until_it_acts_or_goes_stale(clock, run, session,
                                                                     monkeypatch, state_path):
    session("alpha")
    bind(run, monkeypatch, "conv-a", "alpha")
    clock.tick(timedelta(minutes=2))
    asked = claude("Notification", message="Claude needs your permission to use Bash",
                   notification_type="permission_prompt")
    assert hook(run, monkeypatch, asked).out == ""  # nothing for the agent to read
    assert presence(run)["alpha"] == ("waiting", at(minutes=2))
    # told to the state too, for other machines
    assert read_state(state_path)["active_sessions"][0]["waiting_since"] == at(minutes=2)
    clock.tick(timedelta(minutes=30))
    assert presence(run)["alpha"][0] == "waiting"  # a person away for lunch
    prompt = claude("UserPromptSubmit", prompt="go on")
    assert hook(run, monkeypatch, prompt).code == 0
    assert presence(run)["alpha"] == ("working", at(minutes=32))
    hook(run, monkeypatch, claude("Stop", stop_hook_active=False))
    clock.tick(timedelta(minutes=61))
    assert presence(run)["alpha"][0] == "stale"  # waiting all night is gone


def test_a_command_that_runs_long_keeps_its_session_working(clock, run, session, monkeypatch):
    session("alpha")
    bind(run, monkeypatch, "conv-a", "alpha")
    build = claude("PreToolUse", tool_name="Bash", tool_use_id="t9",
                   tool_input={"command": "make build"})
    assert hook(run, monkeypatch, build).code == 0
    clock.tick(timedelta(minutes=40))
    assert presence(run)["alpha"][0] == "working"
    clock.tick(timedelta(minutes=21))
    assert presence(run)["alpha"][0] == "stale"  # a command whose end never came


def test_the_state_is_told_at_most_once_a_minute(clock, run, session, monkeypatch, state_path):
    session("alpha")
    bind(run, monkeypatch, "conv-a", "alpha")
    edit = claude("PostToolUse", tool_name="Edit", tool_use_id="t1",
                  tool_input={"file_path": os.path.join(os.getcwd(), "notes.md")})
    clock.tick(timedelta(minutes=5))
    hook(run, monkeypatch, edit)
    told = state_path.read_bytes()
    assert read_state(state_path)["active_sessions"][0]["last_seen"] == at(minutes=5)
    for _ in range(5):
        clock.tick(timedelta(seconds=10))
        hook(run, monkeypatch, edit)
    assert state_path.read_bytes() == told
    assert presence(run)["alpha"] == ("working", at(minutes=5, seconds=50))
    clock.tick(timedelta(seconds=20))
    hook(run, monkeypatch, edit)
    assert read_state(state_path)["active_sessions"][0]["last_seen"] == at(minutes=6, seconds=10)


def test_windsurf_prompts_and_answers_mark_working_and_waiting(clock, run, session, monkeypatch):
    session("alpha")
    cascade = {"trajectory_id": "traj-1", "execution_id": "e1", "timestamp": at()}
    bind_event = {**cascade, "agent_action_name": "post_run_command",
                  "tool_info": {"command_line": f"{CLI} update --session alpha --status "
                                                "in_progress", "cwd": os.getcwd()}}
    hook(run, monkeypatch, bind_event)
    clock.tick(timedelta(minutes=1))
    answered = hook(run, monkeypatch, {**cascade, "agent_action_name": "post_cascade_response",
                                       "tool_info": {"response": "Done."}})
    assert answered.code == 0 and answered.out == ""
    assert presence(run)["alpha"] == ("waiting", at(minutes=1))
    clock.tick(timedelta(minutes=1))
    hook(run, monkeypatch, {**cascade, "agent_action_name": "pre_user_prompt",
                            "tool_info": {"user_prompt": "next"}})
    assert presence(run)["alpha"] == ("working", at(minutes=2))


# ---------------------------------------------------------------------------- take-over

def test_a_live_holders_lock_is_never_taken_over(clock, run, session, monkeypatch, state_path):
    session("alpha")
    session("beta")
    lock_ok(run, "alpha", "api", "src/api")
    clock.tick(timedelta(minutes=30))
    before = state_path.read_bytes()
    refused = lock(run, "beta", "api2", "src/api/x.py", extra=["--take-over"])
    assert refused.code == 1 and state_path.read_bytes() == before
    assert "alpha is idle, last seen 30 min ago" in refused.err
    assert "--take-over" not in refused.err.split("last seen 30 min ago")[1]
    bind(run, monkeypatch, "conv-a", "alpha")
    hook(run, monkeypatch, claude("Notification", notification_type="idle_prompt",
                                  message="Claude is waiting for your input"))
    before = state_path.read_bytes()
    waiting = as_json(lock(run, "beta", "api2", "src/api", extra=["--json", "--take-over"]))
    assert waiting["exit_code"] == 1 and state_path.read_bytes() == before
    assert waiting["conflicts"][0]["holder"]["presence"] == "waiting"
    assert "alpha is waiting" in waiting["error"]


def test_a_stale_holders_lock_is_taken_over_in_the_open(clock, run, session, state_path):
    session("alpha")
    session("beta")
    lock_ok(run, "alpha", "api", "src/api", "docs/api")
    lock_ok(run, "alpha", "web", "src/web")
    clock.tick(timedelta(hours=1, seconds=1))
    plain = lock(run, "beta", "api", "src/api/handlers")
    assert plain.code == 1
    assert "alpha is stale, last seen 1 h ago: `--take-over` takes its lock" in plain.err
    taken = lock(run, "beta", "api", "src/api/handlers", extra=["--take-over"])
    assert taken.code == 0, taken
    assert "Taken over from alpha" in taken.out
    state = read_state(state_path)
    mine = next(l for l in state["locks"] if l["owner"] == "beta")
    assert mine["scope"] == ["src/api/handlers", "src/api"]  # nothing alpha held became unheld
    assert mine["taken_over_from"] == ["alpha"]
    theirs = {l["area"]: l["scope"] for l in state["locks"] if l["owner"] == "alpha"}
    assert theirs == {"api": ["docs/api"], "web": ["src/web"]}  # what did not overlap stays
    (told,) = next(s for s in state["active_sessions"] if s["id"] == "alpha")["inbox"]
    assert "[beta] took over your lock on api" in told  # a message for alpha, delivered once
    assert "you were stale, last seen 1 h ago" in told
    report = run("status").out
    assert "taken over from alpha (gone: stale or ended)" in report


def test_sync_takes_over_too(clock, run, session, state_path):
    session("alpha")
    lock_ok(run, "alpha", "api", "src/api")
    clock.tick(timedelta(hours=1, minutes=30))  # stale, its lock still live
    result = run("--json", "sync", "--session", "beta", "--focus", "api work", "--area", "api",
                 "--lock-scope", "src/api", "--reason", "finish it", "--take-over")
    assert result.code == 0, result
    assert as_json(result)["taken_over_from"] == ["alpha"]
    assert [l["owner"] for l in read_state(state_path)["locks"]] == ["beta"]


def test_the_write_hook_names_a_gone_holder_and_the_way_out(clock, run, session, monkeypatch):
    session("alpha")
    session("beta")
    lock_ok(run, "alpha", "api", "src/api")
    bind(run, monkeypatch, "conv-b", "beta")
    clock.tick(timedelta(hours=1, minutes=5))
    edit = claude("PreToolUse", "conv-b", tool_name="Edit", tool_use_id="t1",
                  tool_input={"file_path": os.path.join(os.getcwd(), "src/api/x.py")})
    denied = hook(run, monkeypatch, edit)
    reason = json.loads(denied.out)["hookSpecificOutput"]["permissionDecisionReason"]
    assert "alpha is stale, last seen 1 h 5 min ago" in reason and "--take-over" in reason
    clock.tick(timedelta(minutes=1))
    run("check", "--session", "alpha")  # alpha is back: a live holder is named with its silence
    clock.tick(timedelta(minutes=3))
    reason = json.loads(hook(run, monkeypatch, edit).out)["hookSpecificOutput"][
        "permissionDecisionReason"]
    assert "alpha is working, last seen 3 min ago" in reason and "--take-over" not in reason


# ---------------------------------------------------------------------------- a session's end

@pytest.fixture
def shop(tmp_path):
    """A repository with every agent's pack installed; alpha locks src/api and src/web, and
    has changed src/web/page.py without committing it."""
    path = tmp_path / "shop"
    for name in ("src/api/a.py", "src/web/page.py", "docs/x.md"):
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text("x = 1\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "start")
    assert o.main(["install", "--target", str(path), "--agent", "windsurf", "--agent", "claude",
                   "--agent", "cursor", "--agent", "devin"]) == 0
    git(path, "add", "-A")
    git(path, "commit", "-qm", "pack")
    for command in (f"{CLI} sync --session alpha --focus api --area api",
                    f"{CLI} sync --session beta --focus docs --area docs",
                    f"{CLI} lock --session alpha --area api --scope src/api --reason r",
                    f"{CLI} lock --session alpha --area web --scope src/web --reason r"):
        subprocess.run(["sh", "-c", command], cwd=path, env=agent_env(path), check=True,
                       capture_output=True)
    (path / "src/web/page.py").write_text("x = 2\n")
    return path


def agent_env(shop, **extra):
    env = {key: value for key, value in os.environ.items() if key != "ORCHESTRATOR_STATE"}
    return {**env, "CLAUDE_PROJECT_DIR": str(shop), "CURSOR_PROJECT_DIR": str(shop),
            "DEVIN_PROJECT_DIR": str(shop), **extra}


def installed_line(shop, agent, event, matcher=""):
    """The command line `install` wrote for `event` into `agent`'s configuration."""
    if agent == "cursor":
        config = json.loads((shop / o.CURSOR_HOOKS_PATH).read_text())["hooks"]
        return next(e["command"] for e in config[event] if e.get("matcher", "") == matcher)
    if agent == "windsurf":
        return json.loads((shop / o.WINDSURF_HOOKS_PATH).read_text())["hooks"][event][0]["command"]
    config = (json.loads((shop / o.CLAUDE_SETTINGS_PATH).read_text())["hooks"] if agent == "claude"
              else json.loads((shop / o.DEVIN_HOOKS_PATH).read_text()))
    return next(e["hooks"][0]["command"] for e in config[event] if e["matcher"] == matcher)


def fire(shop, line, event, **extra):
    return subprocess.run(["sh", "-c", line], cwd=shop, env=agent_env(shop, **extra),
                          input=json.dumps(event), capture_output=True, text=True, timeout=60)


# What each agent sends: (event that binds by running the tool, its installed (event, matcher),
# the end event, its installed (event, matcher), the waiting event, its (event, matcher)).
def claude_events(shop, conversation):
    common = {"session_id": conversation, "transcript_path": "/dev/null", "cwd": str(shop),
              "permission_mode": "default"}
    return ({**common, "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_use_id": "t1",
             "tool_input": {"command": f"{CLI} update --session alpha --status in_progress"}},
            ("PreToolUse", "Bash"),
            {**common, "hook_event_name": "SessionEnd", "reason": "prompt_input_exit"},
            ("SessionEnd", ""),
            {**common, "hook_event_name": "Notification", "message": "waiting",
             "notification_type": "idle_prompt"}, ("Notification", "idle_prompt|permission_prompt"))


def cursor_events(shop, conversation):
    common = {"conversation_id": conversation, "generation_id": "g1", "model": "m",
              "cursor_version": "2.1.0", "workspace_roots": [str(shop)], "user_email": None,
              "transcript_path": None}
    return ({**common, "hook_event_name": "beforeShellExecution", "cwd": str(shop),
             "command": f"{CLI} update --session alpha --status in_progress"},
            ("beforeShellExecution", ""),
            {**common, "hook_event_name": "sessionEnd", "session_id": conversation,
             "reason": "user_close", "duration_ms": 60000, "is_background_agent": False},
            ("sessionEnd", ""),
            {**common, "hook_event_name": "stop", "status": "completed", "loop_count": 0},
            ("stop", ""))


def devin_events(shop, conversation):
    common = {"session_id": conversation, "prompt_id": "p1", "transcript_path": "/dev/null"}
    return ({**common, "hook_event_name": "PreToolUse", "tool_name": "exec",
             "tool_input": {"command": f"{CLI} update --session alpha --status in_progress",
                            "shell_id": "main"}},
            ("PreToolUse", "exec"),
            {**common, "hook_event_name": "SessionEnd"}, ("SessionEnd", ""),
            {**common, "hook_event_name": "Stop"}, ("Stop", ""))


AGENT_EVENTS = {"claude": claude_events, "cursor": cursor_events, "devin": devin_events}


def state_of(shop):
    return read_state(shop / o.STATE_RELATIVE_PATH)


def presence_in(shop):
    proc = subprocess.run(["sh", "-c", f"{CLI} --json status"], cwd=shop, env=agent_env(shop),
                          capture_output=True, text=True, check=True)
    return {s["id"]: s["presence"] for s in json.loads(proc.stdout)["active_sessions"]}


@pytest.mark.parametrize("agent", sorted(AGENT_EVENTS))
def test_a_sessions_end_releases_unchanged_locks_and_keeps_the_ones_over_uncommitted_work(
        shop, agent):
    bind_event, bind_at, end_event, end_at, waiting_event, waiting_at = AGENT_EVENTS[agent](
        shop, f"{agent}-conv")
    assert fire(shop, installed_line(shop, agent, *bind_at), bind_event).returncode == 0
    waited = fire(shop, installed_line(shop, agent, *waiting_at), waiting_event)
    assert waited.returncode == 0
    if agent == "cursor":
        assert json.loads(waited.stdout) == {}  # stop answers no followup_message
    assert presence_in(shop)["alpha"] == "waiting"
    ended = fire(shop, installed_line(shop, agent, *end_at), end_event)
    assert ended.returncode == 0, ended
    assert "alpha's last conversation ended" in ended.stderr  # the hook's log
    state = state_of(shop)
    assert [(l["area"], l.get("left_uncommitted")) for l in state["locks"]] == [
        ("web", ["src/web/page.py"])]
    alpha = next(s for s in state["active_sessions"] if s["id"] == "alpha")
    assert "trajectories" not in alpha and alpha["ended_at"]
    assert presence_in(shop) == {"alpha": "ended", "beta": "working"}
    note = state["global_notes"][-1]
    assert "Released api" in note and "Kept web over uncommitted work (src/web/page.py)" in note
    report = subprocess.run(["sh", "-c", f"{CLI} status"], cwd=shop, env=agent_env(shop),
                            capture_output=True, text=True).stdout
    assert "left by alpha (ended) over uncommitted work: src/web/page.py" in report
    before = (shop / o.STATE_RELATIVE_PATH).read_bytes()
    again = fire(shop, installed_line(shop, agent, *end_at), end_event)
    assert again.returncode == 0 and (shop / o.STATE_RELATIVE_PATH).read_bytes() == before
    # another session takes the kept lock over, without --force, and everyone sees it
    taken = subprocess.run(["sh", "-c", f"{CLI} lock --session beta --area web --scope src/web "
                                        "--reason 'finish the page' --take-over"],
                           cwd=shop, env=agent_env(shop), capture_output=True, text=True)
    assert taken.returncode == 0, taken.stderr
    assert [l["owner"] for l in state_of(shop)["locks"]] == ["beta"]


def test_clear_only_unbinds_and_the_next_conversations_end_ends_the_session(shop):
    """/clear (reason `clear`): the person goes on in the same window; the cleared conversation
    is unbound and ends nothing. The new conversation binds with its first command, and its
    end is the session's end."""
    bind_event, bind_at, end_event, end_at, _, _ = claude_events(shop, "conv-1")
    fire(shop, installed_line(shop, "claude", *bind_at), bind_event)
    cleared = fire(shop, installed_line(shop, "claude", *end_at), {**end_event, "reason": "clear"})
    assert cleared.returncode == 0 and cleared.stdout == ""
    alpha = next(s for s in state_of(shop)["active_sessions"] if s["id"] == "alpha")
    assert "trajectories" not in alpha and "ended_at" not in alpha
    assert {l["area"] for l in state_of(shop)["locks"]} == {"api", "web"}
    after_clear, _, next_end, _, _, _ = claude_events(shop, "conv-1b")
    fire(shop, installed_line(shop, "claude", *bind_at), after_clear)
    fire(shop, installed_line(shop, "claude", *end_at), next_end)
    assert presence_in(shop)["alpha"] == "ended"
    assert [l["area"] for l in state_of(shop)["locks"]] == ["web"]


def test_the_end_of_one_of_two_conversations_ends_nothing(shop):
    """A second conversation of alpha runs a long command; the first one ends meanwhile."""
    bind_event, bind_at, end_event, end_at, _, _ = claude_events(shop, "conv-1")
    fire(shop, installed_line(shop, "claude", *bind_at), bind_event)
    second_bind, _, _, _, _, _ = claude_events(shop, "conv-2")
    fire(shop, installed_line(shop, "claude", *bind_at), second_bind)
    build = {**second_bind, "tool_use_id": "t2", "tool_input": {"command": "sleep 600"}}
    assert fire(shop, installed_line(shop, "claude", *bind_at), build).returncode == 0
    assert fire(shop, installed_line(shop, "claude", *end_at), end_event).returncode == 0
    state = state_of(shop)
    alpha = next(s for s in state["active_sessions"] if s["id"] == "alpha")
    assert alpha["trajectories"] == ["conv-2"] and "ended_at" not in alpha
    assert {l["area"] for l in state["locks"]} == {"api", "web"}
    assert presence_in(shop)["alpha"] == "working"


def test_an_end_hook_killed_midway_loses_nothing_and_releases_nothing_by_half(shop):
    bind_event, bind_at, end_event, end_at, _, _ = claude_events(shop, "conv-k")
    fire(shop, installed_line(shop, "claude", *bind_at), bind_event)
    state_file = shop / o.STATE_RELATIVE_PATH
    before = state_file.read_bytes()
    # Another writer holds the state's lock: the end hook waits for it, and is killed there.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); import orchestrator as o\n"
        "with o.Transaction(o.Store(sys.argv[2])) as state:\n"
        "    print('held', flush=True); time.sleep(30)\n"), o.HERE, str(state_file)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        end = subprocess.Popen(["sh", "-c", installed_line(shop, "claude", *end_at)], cwd=shop,
                               env=agent_env(shop), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
        end.stdin.write(json.dumps(end_event).encode())
        end.stdin.close()
        time.sleep(0.5)
        os.killpg(end.pid, signal.SIGKILL)
        end.wait(timeout=10)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert state_file.read_bytes() == before  # the old state whole: nothing half-released
    assert o.main(["--state", str(state_file), "validate"]) == 0
    again = fire(shop, installed_line(shop, "claude", *end_at), end_event)
    assert again.returncode == 0
    assert [l["area"] for l in state_of(shop)["locks"]] == ["web"]


def test_a_session_that_comes_back_after_its_end_is_working_again(shop):
    bind_event, bind_at, end_event, end_at, _, _ = claude_events(shop, "conv-1")
    fire(shop, installed_line(shop, "claude", *bind_at), bind_event)
    fire(shop, installed_line(shop, "claude", *end_at), end_event)
    assert presence_in(shop)["alpha"] == "ended"
    again, _, _, _, _, _ = claude_events(shop, "conv-new")
    fire(shop, installed_line(shop, "claude", *bind_at), again)
    assert presence_in(shop)["alpha"] == "working"
    alpha = next(s for s in state_of(shop)["active_sessions"] if s["id"] == "alpha")
    assert alpha["trajectories"] == ["conv-new"]


def test_install_adds_the_end_waiting_and_prompt_events_to_every_agent(shop):
    claude_config = json.loads((shop / o.CLAUDE_SETTINGS_PATH).read_text())["hooks"]
    assert {"SessionEnd", "Notification", "Stop", "UserPromptSubmit"} <= set(claude_config)
    assert {"sessionEnd", "stop"} <= set(json.loads((shop / o.CURSOR_HOOKS_PATH).read_text())["hooks"])
    assert {"SessionEnd", "Stop", "UserPromptSubmit"} <= set(
        json.loads((shop / o.DEVIN_HOOKS_PATH).read_text()))
    assert {"pre_user_prompt", "post_cascade_response"} <= set(
        json.loads((shop / o.WINDSURF_HOOKS_PATH).read_text())["hooks"])


# ---------------------------------------------------------------------------- what a review found

def test_a_planted_record_is_skipped_and_the_hook_still_blocks(clock, run, session, monkeypatch,
                                                               state_path):
    """A record no hook wrote (a time of inf, nan, or still to come) is not believed: reports
    work, and a gone session is not kept alive by a record from the future."""
    session("alpha")
    session("beta")
    lock_ok(run, "alpha", "api", "src/api")
    bind(run, monkeypatch, "conv-b", "beta")
    folder = state_path.parent
    (folder / "seen-00000000-1").write_text("working\ninf\nx")
    (folder / "seen-00000001-1").write_text("working\nnan\ny")
    planted = o.seen_record_path(o.Store(str(state_path)), "session:alpha")
    with open(planted, "w") as handle:
        handle.write(f"working\n{4102444800.0:020.6f}\nsession:alpha")  # 2100-01-01
    clock.tick(timedelta(hours=1, minutes=1))
    assert presence(run)["alpha"][0] == "stale"
    edit = claude("PreToolUse", "conv-b", tool_name="Edit", tool_use_id="t1",
                  tool_input={"file_path": os.path.join(os.getcwd(), "src/api/x.py")})
    denied = json.loads(hook(run, monkeypatch, edit).out)["hookSpecificOutput"]
    assert denied["permissionDecision"] == "deny"


def test_a_failed_command_and_a_report_are_no_sign_of_life(clock, run, session):
    session("alpha")
    clock.tick(timedelta(hours=2))
    assert run("update", "--session", "alpha", "--status", "bogus").code == 2
    assert run("status", "--session", "alpha").code == 0
    assert presence(run)["alpha"][0] == "stale"
    assert run("update", "--session", "alpha", "--add-note", "back").code == 0
    assert presence(run)["alpha"][0] == "working"


def test_waiting_and_prompts_tell_the_state_at_most_once_a_minute(clock, run, session,
                                                                  monkeypatch, state_path):
    session("alpha")
    bind(run, monkeypatch, "conv-a", "alpha")
    clock.tick(timedelta(minutes=3))
    hook(run, monkeypatch, claude("Stop", stop_hook_active=False))  # told: 3 minutes on
    told = state_path.read_bytes()
    for _ in range(4):
        clock.tick(timedelta(seconds=10))
        hook(run, monkeypatch, claude("UserPromptSubmit", prompt="go"))
        hook(run, monkeypatch, claude("Stop", stop_hook_active=False))
    assert state_path.read_bytes() == told
    assert presence(run)["alpha"] == ("waiting", at(minutes=3, seconds=40))


def end_alpha(shop, cwd=None):
    bind_event, bind_at, end_event, end_at, _, _ = claude_events(shop, "conv-e")
    if cwd:
        bind_event = {**bind_event, "cwd": str(cwd)}
        end_event = {**end_event, "cwd": str(cwd)}
    assert fire(shop, installed_line(shop, "claude", *bind_at), bind_event).returncode == 0
    ended = fire(shop, installed_line(shop, "claude", *end_at), end_event)
    assert ended.returncode == 0, ended
    return {l["area"]: l.get("left_uncommitted") for l in state_of(shop)["locks"]}


def lock_alpha(shop, area, scope):
    subprocess.run(["sh", "-c", f"{CLI} lock --session alpha --area {area} --scope '{scope}' "
                                "--reason r"], cwd=shop, env=agent_env(shop), check=True,
                   capture_output=True)


def test_an_end_keeps_a_lock_over_changes_inside_a_nested_repository(shop):
    nested = shop / "vendor" / "lib"
    nested.mkdir(parents=True)
    git(nested, "init", "-q", "-b", "main")
    (nested / "f.c").write_text("int x;\n")
    lock_alpha(shop, "vendor", "vendor/lib/**/*.c")
    assert end_alpha(shop)["vendor"] == ["vendor/lib/"]  # git names the repository, not its files


def test_an_end_keeps_a_lock_over_changes_inside_a_submodule(shop, tmp_path):
    upstream = committed_repo(tmp_path / "upstream", {"x.c": "int x;\n"})
    git(shop, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(upstream),
        "vendor/lib")
    git(shop, "commit", "-qm", "submodule")
    (shop / "vendor/lib/x.c").write_text("int y;\n")
    lock_alpha(shop, "vendor", "vendor/lib/x.c")
    assert end_alpha(shop)["vendor"] == ["vendor/lib/"]


def test_an_end_keeps_a_lock_over_an_edit_git_was_told_not_to_see(shop):
    git(shop, "update-index", "--assume-unchanged", "docs/x.md")
    (shop / "docs/x.md").write_text("edited\n")
    lock_alpha(shop, "docs", "docs")
    assert end_alpha(shop)["docs"] == ["docs/x.md"]


def test_an_end_looks_at_the_worktree_the_session_moved_to(shop, tmp_path):
    """alpha registered in the main checkout, then went on in a linked worktree: the end,
    sent from there, looks at both."""
    (shop / "src/web/page.py").write_text("x = 1\n")  # nothing uncommitted in the main one
    other = tmp_path / "other"
    git(shop, "worktree", "add", "-q", "-b", "side", str(other))
    (other / "src/api/a.py").write_text("changed there\n")
    assert end_alpha(shop, cwd=other) == {"api": ["src/api/a.py"]}
