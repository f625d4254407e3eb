"""Each agent's documented hook payloads, field by field, fed to the exact command line its
installed configuration runs, and its answer read the way that agent reads it.

Contracts followed:
- Cursor's own hooks: cursor.com/docs/agent/hooks (Cursor 2.x, page as of 2026-11).
  `.cursor/hooks.json` is `{"version": 1, "hooks": {EVENT: [{"command", "matcher"?}]}}`;
  every payload has `conversation_id`, `generation_id`, `model`, `hook_event_name`,
  `cursor_version`, `workspace_roots`, `user_email`; `beforeShellExecution` adds `command`
  and `cwd`; `afterShellExecution` adds `command`, `output`, `duration`; `afterFileEdit` adds
  `file_path` (absolute) and `edits`; `preToolUse` adds `tool_name`, `tool_input`,
  `tool_use_id`; `sessionStart` adds `session_id`, `is_background_agent`, `composer_mode`.
  A permission hook answers `{"permission": "allow"|"deny"|"ask", "user_message",
  "agent_message"}` (exit 2 denies as well); `sessionStart` answers `additional_context`;
  hooks run with `$CURSOR_PROJECT_DIR` set to the project.
- Claude Code: code.claude.com/docs/en/hooks (as of 2026-11). Payloads carry `session_id`,
  `transcript_path`, `cwd`, `permission_mode`, `hook_event_name`, and for tool events
  `tool_name`, `tool_input`, `tool_use_id` (PostToolUse also `tool_response`). On exit 0 the
  hook's JSON is read: `hookSpecificOutput.permissionDecision: "deny"` with
  `permissionDecisionReason` (shown to Claude) blocks; `additionalContext` is added to
  Claude's context (PreToolUse, PostToolUse, SessionStart).
- Windsurf Cascade: docs.windsurf.com/windsurf/cascade/hooks (as of 2026-11):
  `agent_action_name`, `trajectory_id`, `execution_id`, `timestamp`, `tool_info`
  (`command_line` and `cwd` for run_command events); exit 2 blocks a pre-hook; stdout is
  shown to the person when `show_output` is true.
"""

import itertools
import json
import shutil
import subprocess
import sys
import time

import pytest

import orchestrator
from helpers import claude_answer, claude_denial, git

CLI = "sh .windsurf/bin/orchestrator"


@pytest.fixture
def target(tmp_path):
    """A repository with every agent's pack installed; owner locks src (no outside fixes)
    and shared (outside fixes allowed); other works on docs."""
    path = tmp_path / "shop"
    for folder in ("src", "shared", "docs"):
        (path / folder).mkdir(parents=True)
        (path / folder / "a.py").write_text("x = 1\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "start")
    assert orchestrator.main(["install", "--target", str(path), "--agent", "windsurf",
                              "--agent", "claude", "--agent", "cursor"]) == 0
    env = agent_env(tmp_path, path)
    run(f"{CLI} sync --session owner --focus api --area backend", path, env)
    run(f"{CLI} sync --session other --focus docs --area docs", path, env)
    run(f"{CLI} lock --session owner --area backend --scope src --reason 'moving the api'",
        path, env)
    run(f"{CLI} lock --session owner --area shared --scope shared --reason 'tidying' "
        "--allow-external-fixes", path, env)
    return path


def agent_env(tmp_path, project):
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        for tool in ("sh", "git"):
            (bin_dir / tool).symlink_to(shutil.which(tool))
        (bin_dir / "python3").symlink_to(sys.executable)  # what a script in a command runs
    return {"PATH": str(bin_dir), "HOME": str(tmp_path), "CURSOR_PROJECT_DIR": str(project),
            "CLAUDE_PROJECT_DIR": str(project)}


def run(command, cwd, env, stdin=None):
    result = subprocess.run(["sh", "-c", command], cwd=cwd, env=env, input=stdin,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result
    return result


def hook(command, event, cwd, env):
    return subprocess.run(["sh", "-c", command], cwd=cwd, env=env, input=json.dumps(event),
                          capture_output=True, text=True, timeout=60)


def session(target, env, session_id):
    state = json.loads(run(f"{CLI} --json status", target, env).stdout)
    return next(s for s in state["active_sessions"] if s["id"] == session_id)


# ---------------------------------------------------------------------------- Cursor

def cursor_commands(target):
    """{event: (command, matcher)} as the installed .cursor/hooks.json has them."""
    config = json.loads((target / ".cursor/hooks.json").read_text())
    assert config["version"] == 1
    return {event: (entries[-1]["command"], entries[-1].get("matcher"))
            for event, entries in config["hooks"].items()}


def cursor_event(name, target, conversation="conv-1", **fields):
    return {"conversation_id": conversation, "generation_id": "gen-1", "model": "some-model",
            "hook_event_name": name, "cursor_version": "2.1.0",
            "workspace_roots": [str(target)], "user_email": None, **fields}


def test_install_writes_cursors_native_hooks_and_merges_with_the_users(tmp_path):
    repo = tmp_path / "r"
    (repo / ".cursor").mkdir(parents=True)
    git(repo, "init", "-q")
    theirs = {"version": 1, "hooks": {"afterFileEdit": [{"command": "./format.sh"}],
                                      "stop": [{"command": "./audit.sh"}]}}
    (repo / ".cursor/hooks.json").write_text(json.dumps(theirs))
    assert orchestrator.main(["install", "--target", str(repo), "--agent", "cursor"]) == 0
    merged = json.loads((repo / ".cursor/hooks.json").read_text())
    assert merged["version"] == 1
    assert merged["hooks"]["stop"][0] == {"command": "./audit.sh"}  # theirs kept, first
    assert merged["hooks"]["afterFileEdit"][0] == {"command": "./format.sh"}
    assert set(merged["hooks"]) >= {"sessionStart", "preToolUse", "beforeShellExecution",
                                    "postToolUse", "postToolUseFailure", "afterFileEdit",
                                    "sessionEnd", "stop"}
    for event, entries in merged["hooks"].items():
        ours = [e for e in entries if e["command"] == orchestrator.CURSOR_HOOK_COMMAND]
        assert len(ours) == 1, event
    before = (repo / ".cursor/hooks.json").read_text()
    assert orchestrator.main(["install", "--target", str(repo), "--agent", "cursor"]) == 0
    assert (repo / ".cursor/hooks.json").read_text() == before


def test_install_keeps_a_cursor_hooks_file_of_another_version(tmp_path, capsys):
    (tmp_path / ".cursor").mkdir()
    git(tmp_path, "init", "-q")
    (tmp_path / ".cursor/hooks.json").write_text('{"version": 2, "hooks": {}}')
    assert orchestrator.main(["install", "--target", str(tmp_path), "--agent", "cursor"]) == 1
    assert (tmp_path / ".cursor/hooks.json").read_text() == '{"version": 2, "hooks": {}}'
    said = capsys.readouterr().out
    assert "version 2 of Cursor's hooks file" in said and "HOOKS NOT INSTALLED for cursor" in said


@pytest.mark.parametrize("cwd", ["project", "root"])
def test_cursor_binds_from_the_shell_blocks_foreign_writes_and_records_edits(target, tmp_path,
                                                                               cwd):
    env = agent_env(tmp_path, target)
    commands = cursor_commands(target)
    folder = target if cwd == "project" else "/"
    shell, _ = commands["beforeShellExecution"]
    bind = cursor_event("beforeShellExecution", target, command=f"{CLI} note --session other hi",
                        cwd=str(target))
    result = hook(shell, bind, folder, env)
    assert (result.returncode, json.loads(result.stdout)) == (0, {})
    assert "conv-1" in session(target, env, "other")["trajectories"]

    write, matcher = commands["preToolUse"]
    assert "Write" in matcher.split("|")
    edit = cursor_event("preToolUse", target, tool_name="Write", tool_use_id="t1",
                        tool_input={"file_path": str(target / "src/a.py"), "content": "y"})
    denied = hook(write, edit, folder, env)
    answer = json.loads(denied.stdout)
    assert denied.returncode == 2 and answer["permission"] == "deny"
    assert "owner's lock on backend" in answer["agent_message"]
    assert "owner's lock on backend" in answer["user_message"]
    free = hook(write, {**edit, "tool_input": {"file_path": str(target / "docs/a.py")}}, folder,
                env)
    assert (free.returncode, json.loads(free.stdout)) == (0, {})
    shared = hook(write, {**edit, "tool_input": {"file_path": str(target / "shared/a.py")}},
                  folder, env)
    assert shared.returncode == 0
    assert "allows fixes by other sessions" in json.loads(shared.stdout)["agent_message"]

    redirect = cursor_event("beforeShellExecution", target, command="echo y > src/a.py",
                            cwd=str(target))
    refused = hook(shell, redirect, folder, env)
    assert refused.returncode == 2 and json.loads(refused.stdout)["permission"] == "deny"

    after, _ = commands["afterFileEdit"]
    edited = cursor_event("afterFileEdit", target, file_path=str(target / "docs/a.py"),
                          edits=[{"old_string": "x", "new_string": "y"}])
    recorded = hook(after, edited, folder, env)
    assert (recorded.returncode, json.loads(recorded.stdout)) == (0, {})
    assert session(target, env, "other")["touched_files"] == ["docs/a.py"]


def test_cursor_session_start_puts_a_conflict_into_the_conversation(target, tmp_path):
    env = agent_env(tmp_path, target)
    commands = cursor_commands(target)
    run(f"{CLI} update --session other --add-area src/a.py", target, env)
    shell, _ = commands["beforeShellExecution"]
    hook(shell, cursor_event("beforeShellExecution", target, cwd=str(target),
                             command=f"{CLI} note --session other hi"), target, env)
    start, _ = commands["sessionStart"]
    payload = cursor_event("sessionStart", target, session_id="conv-1",
                           is_background_agent=False, composer_mode="agent")
    result = hook(start, payload, target, env)
    assert result.returncode == 0
    assert json.loads(result.stdout)["additional_context"].startswith("Conflict: other's")
    quiet = hook(start, {**payload, "conversation_id": "conv-new", "session_id": "conv-new"},
                 target, env)
    assert (quiet.returncode, json.loads(quiet.stdout)) == (0, {})


def test_a_post_event_is_never_answered_as_a_pre_event_in_any_agent(target, tmp_path):
    env = agent_env(tmp_path, target)
    edit_into_lock = str(target / "src/a.py")
    cursor, _ = cursor_commands(target)["afterFileEdit"]
    after = hook(cursor, cursor_event("afterFileEdit", target, file_path=edit_into_lock,
                                      edits=[]), target, env)
    assert (after.returncode, json.loads(after.stdout)) == (0, {})
    claude = json.loads((target / ".claude/settings.json").read_text())["hooks"]["PostToolUse"][
        0]["hooks"][0]["command"]
    post = {"session_id": "c1", "transcript_path": "/dev/null", "cwd": str(target),
            "permission_mode": "default", "hook_event_name": "PostToolUse", "tool_name": "Edit",
            "tool_use_id": "t1", "tool_input": {"file_path": edit_into_lock},
            "tool_response": {"filePath": edit_into_lock, "success": True}}
    assert claude_denial(hook(claude, post, target, env)) == ""
    windsurf = json.loads((target / ".windsurf/hooks.json").read_text())["hooks"][
        "post_write_code"][-1]["command"]
    event = {"agent_action_name": "post_write_code", "trajectory_id": "t1",
             "execution_id": "e1", "timestamp": "2026-12-01T10:00:00Z",
             "tool_info": {"file_path": edit_into_lock, "edits": []}}
    assert hook(windsurf, event, target, env).returncode == 0


# ---------------------------------------------------------------------------- Claude Code

def claude_commands(target):
    settings = json.loads((target / ".claude/settings.json").read_text())
    return {(event, block.get("matcher")): block["hooks"][0]["command"]
            for event, blocks in settings["hooks"].items() for block in blocks}


TOOL_USES = itertools.count(1)


def claude_event(name, target, tool, tool_input, conversation="c1", tool_use=None, **extra):
    """A tool event; each tool call has its own tool_use_id, shared by its Pre and Post."""
    return {"session_id": conversation, "transcript_path": "/tmp/t.jsonl", "cwd": str(target),
            "permission_mode": "default", "hook_event_name": name, "tool_name": tool,
            "tool_use_id": tool_use or f"toolu_{next(TOOL_USES)}", "tool_input": tool_input,
            **extra}


def test_claude_reads_whose_lock_an_allowed_edit_is_in(target, tmp_path):
    env = agent_env(tmp_path, target)
    commands = claude_commands(target)
    bash = commands[("PreToolUse", "Bash")]
    hook(bash, claude_event("PreToolUse", target, "Bash",
                            {"command": f"{CLI} note --session other hi"}), target, env)
    edit = commands[("PreToolUse", "Edit|Write|MultiEdit|NotebookEdit")]
    shared = claude_answer(hook(edit, claude_event(
        "PreToolUse", target, "Edit", {"file_path": str(target / "shared/a.py"),
                                       "old_string": "x", "new_string": "y"}), target, env))
    assert "permissionDecision" not in shared  # the usual permission flow goes on
    assert shared["hookEventName"] == "PreToolUse"
    assert "owner's lock on shared" in shared["additionalContext"]
    assert "note --session other" in shared["additionalContext"]
    denied = hook(edit, claude_event("PreToolUse", target, "Write",
                                     {"file_path": str(target / "src/a.py"), "content": "y"}),
                  target, env)
    assert "Do not edit it" in claude_denial(denied)


# ---------------------------------------------------------------------------- after a command

# The path is built at run time: nothing in the command line names it.
SCRIPTED_WRITE = "python3 -c \"open('sr' + 'c/a.py', 'w').write('changed')\""


def test_what_a_command_changed_inside_a_foreign_lock_is_reported_and_recorded(target, tmp_path):
    """A script writes a locked file (nothing in its command line says so): Claude Code's
    PostToolUse on Bash reports it as additionalContext and records it as touched."""
    env = agent_env(tmp_path, target)
    bash = claude_commands(target)[("PreToolUse", "Bash")]
    post_bash = claude_commands(target)[("PostToolUse", "Bash")]
    hook(bash, claude_event("PreToolUse", target, "Bash",
                            {"command": f"{CLI} note --session other hi"}), target, env)
    (target / "src/before.py").write_text("changed before the command\n")
    time.sleep(0.05)
    pre = claude_event("PreToolUse", target, "Bash", {"command": SCRIPTED_WRITE},
                       tool_use="toolu_script")
    assert claude_answer(hook(bash, pre, target, env)) == {}  # not seen in the line: allowed
    run(SCRIPTED_WRITE, target, env)
    post = claude_event("PostToolUse", target, "Bash", {"command": SCRIPTED_WRITE},
                        tool_use="toolu_script",
                        tool_response={"stdout": "", "stderr": "", "interrupted": False})
    said = claude_answer(hook(post_bash, post, target, env))
    assert said["hookEventName"] == "PostToolUse"
    assert "src/a.py changed inside owner's lock on backend" in said["additionalContext"]
    assert "before.py" not in said["additionalContext"]
    # Reported, not attributed: a script's own writes may as well be the owner's work.
    assert "src/a.py" not in session(target, env, "other").get("touched_files", [])
    again = claude_answer(hook(post_bash, post, target, env))  # the start mark was used up
    assert again == {}


def test_cursor_and_windsurf_report_after_a_command_too(target, tmp_path):
    env = agent_env(tmp_path, target)
    shell, _ = cursor_commands(target)["beforeShellExecution"]
    after, matcher = cursor_commands(target)["postToolUse"]
    assert matcher == "Shell"
    hook(shell, cursor_event("beforeShellExecution", target, cwd=str(target),
                             command=f"{CLI} note --session other hi"), target, env)
    script = "python3 -c \"open('shared/a.py', 'w').write('changed')\""
    before = hook(shell, cursor_event("beforeShellExecution", target, command=script,
                                      cwd=str(target)), target, env)
    assert json.loads(before.stdout) == {}
    run(script, target, env)
    reported = hook(after, cursor_event("postToolUse", target, tool_name="Shell",
                                        tool_use_id="t9", cwd=str(target),
                                        tool_input={"command": script},
                                        tool_output="", duration=12), target, env)
    assert reported.returncode == 0
    context = json.loads(reported.stdout)["additional_context"]
    assert "shared/a.py changed inside owner's lock on shared" in context
    assert "shared/a.py" not in session(target, env, "other").get("touched_files", [])

    windsurf = json.loads((target / ".windsurf/hooks.json").read_text())["hooks"]
    pre_run = windsurf["pre_run_command"][-1]["command"]
    post_run = windsurf["post_run_command"][-1]
    assert post_run["show_output"] is True
    event = {"agent_action_name": "pre_run_command", "trajectory_id": "t-w",
             "execution_id": "e1", "timestamp": "2026-12-01T10:00:00Z",
             "tool_info": {"command_line": f"{CLI} note --session other hi", "cwd": str(target)}}
    hook(pre_run, event, target, env)
    event["tool_info"]["command_line"] = SCRIPTED_WRITE
    assert hook(pre_run, event, target, env).returncode == 0
    run(SCRIPTED_WRITE, target, env)
    event["agent_action_name"] = "post_run_command"
    said = hook(post_run["command"], event, target, env)
    assert said.returncode == 0 and "src/a.py changed inside owner's lock" in said.stdout
    assert "tell the user now" in said.stdout


def test_the_owner_is_told_nothing_about_its_own_lock(target, tmp_path):
    env = agent_env(tmp_path, target)
    bash = claude_commands(target)[("PreToolUse", "Bash")]
    post_bash = claude_commands(target)[("PostToolUse", "Bash")]
    hook(bash, claude_event("PreToolUse", target, "Bash",
                            {"command": f"{CLI} note --session owner hi"}), target, env)
    hook(bash, claude_event("PreToolUse", target, "Bash", {"command": SCRIPTED_WRITE},
                            tool_use="toolu_own"), target, env)
    run(SCRIPTED_WRITE, target, env)
    post = claude_event("PostToolUse", target, "Bash", {"command": SCRIPTED_WRITE},
                        tool_use="toolu_own")
    assert claude_answer(hook(post_bash, post, target, env)) == {}


@pytest.mark.parametrize("walk_limit", [orchestrator.WALK_LIMIT, 1])
def test_only_files_git_tracks_or_would_add_and_written_after_the_start_count(
        tmp_path, monkeypatch, walk_limit):
    """Judged by real git: ignored build output is not a change, nor is a file written before
    the command started; past the walk's limit git lists the scopes itself, same answer."""
    monkeypatch.setattr(orchestrator, "WALK_LIMIT", walk_limit)
    repo = tmp_path / "r"
    (repo / "src" / "build").mkdir(parents=True)
    (repo / "src" / "old.py").write_text("x\n")
    (repo / "one.txt").write_text("x\n")
    (repo / ".gitignore").write_text("build/\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    (repo / "src" / "untracked_before.py").write_text("x\n")
    marker = tmp_path / "marker"
    time.sleep(0.02)
    marker.write_text("")
    started = marker.stat().st_mtime_ns
    (repo / "src" / "old.py").write_text("changed\n")
    (repo / "src" / "new.py").write_text("new\n")
    (repo / "src" / "build" / "out.o").write_text("binary\n")
    (repo / "one.txt").write_text("changed\n")
    found = orchestrator.files_written_in_scopes_after(str(repo), ["src", "one.txt", "docs/**"],
                                                       started)
    assert sorted(found) == ["one.txt", "src/new.py", "src/old.py"]
    assert orchestrator.files_written_in_scopes_after(str(repo), ["elsewhere"], started) == []


# ---------------------------------------------------------------------------- what other kinds of writes and commands report

def bind_claude(target, env, conversation, session_id):
    bash = claude_commands(target)[("PreToolUse", "Bash")]
    hook(bash, claude_event("PreToolUse", target, "Bash",
                            {"command": f"{CLI} note --session {session_id} hi"},
                            conversation=conversation), target, env)


@pytest.mark.parametrize("line", ["cd src && echo y > a.py", "(cd src; sed -i s/x/y/ a.py)",
                                  "cd {target}/src && touch new.py", "echo y > docs/link.py",
                                  "echo y > docs/srcdir/a.py"])
def test_a_write_after_cd_or_through_a_symlink_is_blocked(target, tmp_path, line):
    env = agent_env(tmp_path, target)
    (target / "docs/link.py").symlink_to("../src/a.py")
    (target / "docs/srcdir").symlink_to("../src")
    bind_claude(target, env, "c1", "other")
    bash = claude_commands(target)[("PreToolUse", "Bash")]
    event = claude_event("PreToolUse", target, "Bash",
                         {"command": line.format(target=target)})
    assert "owner's lock on backend" in claude_denial(hook(bash, event, target, env))
    edit = claude_commands(target)[("PreToolUse", "Edit|Write|MultiEdit|NotebookEdit")]
    through_link = claude_event("PreToolUse", target, "Write",
                                {"file_path": str(target / "docs/link.py"), "content": "y"})
    assert "owner's lock on backend" in claude_denial(hook(edit, through_link, target, env))


def test_cursors_delete_and_claudes_notebook_edit_are_judged_as_writes(target, tmp_path):
    env = agent_env(tmp_path, target)
    edit = claude_commands(target)[("PreToolUse", "Edit|Write|MultiEdit|NotebookEdit")]
    notebook = claude_event("PreToolUse", target, "NotebookEdit",
                            {"notebook_path": str(target / "src/a.ipynb"), "new_source": "x"})
    assert "owner's lock on backend" in claude_denial(hook(edit, notebook, target, env))
    write, _ = cursor_commands(target)["preToolUse"]
    delete = cursor_event("preToolUse", target, tool_name="Delete", tool_use_id="d1",
                          tool_input={"path": str(target / "src/a.py")})
    result = hook(write, delete, target, env)
    assert result.returncode == 2 and json.loads(result.stdout)["permission"] == "deny"


def test_a_failed_command_is_reported_too(target, tmp_path):
    """PostToolUseFailure (code.claude.com/docs/en/hooks: fired when a tool call fails)."""
    env = agent_env(tmp_path, target)
    bind_claude(target, env, "c1", "other")
    bash = claude_commands(target)[("PreToolUse", "Bash")]
    failed = claude_commands(target)[("PostToolUseFailure", "Bash")]
    line = SCRIPTED_WRITE + " && false"
    hook(bash, claude_event("PreToolUse", target, "Bash", {"command": line}, tool_use="tf"),
         target, env)
    subprocess.run(["sh", "-c", line], cwd=target, env=env, timeout=60)
    event = claude_event("PostToolUseFailure", target, "Bash", {"command": line},
                         tool_use="tf", error="Command failed with exit code 1")
    said = claude_answer(hook(failed, event, target, env))
    assert said["hookEventName"] == "PostToolUseFailure"
    assert "src/a.py changed inside owner's lock" in said["additionalContext"]


def test_overlapping_commands_of_one_conversation_each_get_their_report(target, tmp_path):
    env = agent_env(tmp_path, target)
    bind_claude(target, env, "c1", "other")
    bash = claude_commands(target)[("PreToolUse", "Bash")]
    post = claude_commands(target)[("PostToolUse", "Bash")]
    for tool_use in ("first", "second"):
        hook(bash, claude_event("PreToolUse", target, "Bash", {"command": "make"},
                                tool_use=tool_use), target, env)
    run(SCRIPTED_WRITE, target, env)
    for tool_use in ("second", "first"):
        said = claude_answer(hook(post, claude_event("PostToolUse", target, "Bash",
                                                     {"command": "make"}, tool_use=tool_use),
                                  target, env))
        assert "src/a.py changed inside owner's lock" in said["additionalContext"], tool_use


def test_the_owners_own_recorded_work_is_reported_but_not_recorded_as_ours(target, tmp_path):
    env = agent_env(tmp_path, target)
    bind_claude(target, env, "c-other", "other")
    bind_claude(target, env, "c-owner", "owner")
    bash = claude_commands(target)[("PreToolUse", "Bash")]
    post = claude_commands(target)[("PostToolUse", "Bash")]
    post_edit = claude_commands(target)[("PostToolUse", "Edit|Write|MultiEdit|NotebookEdit")]
    hook(bash, claude_event("PreToolUse", target, "Bash", {"command": "make test"},
                            conversation="c-other", tool_use="m"), target, env)
    (target / "src/a.py").write_text("the owner's edit\n")  # the owner edits meanwhile
    hook(post_edit, claude_event("PostToolUse", target, "Edit",
                                 {"file_path": str(target / "src/a.py")},
                                 conversation="c-owner"), target, env)
    said = claude_answer(hook(post, claude_event("PostToolUse", target, "Bash",
                                                 {"command": "make test"},
                                                 conversation="c-other", tool_use="m"),
                              target, env))
    assert "if not, it was owner's own work" in said["additionalContext"]
    assert "src/a.py" not in session(target, env, "other").get("touched_files", [])


def test_an_unbound_conversation_is_told_but_nothing_is_recorded(target, tmp_path):
    env = agent_env(tmp_path, target)
    bash = claude_commands(target)[("PreToolUse", "Bash")]
    post = claude_commands(target)[("PostToolUse", "Bash")]
    hook(bash, claude_event("PreToolUse", target, "Bash", {"command": "make"},
                            conversation="nobody", tool_use="n"), target, env)
    run(SCRIPTED_WRITE, target, env)
    said = claude_answer(hook(post, claude_event("PostToolUse", target, "Bash",
                                                 {"command": "make"}, conversation="nobody",
                                                 tool_use="n"), target, env))
    assert "src/a.py changed inside owner's lock" in said["additionalContext"]
    assert "touched files" not in said["additionalContext"]


def test_staged_copied_and_linked_changes_are_seen(tmp_path):
    """Judged by real git: a change already staged (a script that runs `git add`, a merge),
    a copy that keeps the old modification time (`cp -p`), a new symlink; and many files at
    once go to git by the scopes' globs, not one pathspec a file."""
    repo = tmp_path / "r"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "staged.py").write_text("x\n")
    (repo / "src" / "old.py").write_text("old\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    marker = tmp_path / "marker"
    time.sleep(0.02)
    marker.write_text("")
    started = marker.stat().st_mtime_ns
    (repo / "src" / "staged.py").write_text("y\n")
    git(repo, "add", "src/staged.py")
    shutil.copy2(repo / "src" / "old.py", repo / "src" / "copied.py")
    (repo / "src" / "link.py").symlink_to("old.py")
    found = orchestrator.files_written_in_scopes_after(str(repo), ["src"], started)
    assert sorted(found) == ["src/copied.py", "src/link.py", "src/staged.py"]
    for number in range(orchestrator.LITERAL_PATHSPECS + 5):
        (repo / "src" / f"gen_{number}.py").write_text("g\n")
    many = orchestrator.files_written_in_scopes_after(str(repo), ["src"], started)
    assert len(many) == orchestrator.LITERAL_PATHSPECS + 5 + 3
