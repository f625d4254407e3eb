"""The exact command lines `install` writes into the agents' hook configurations, run as the
agents run them: through a shell, from the folders an agent may start a hook in.

Contracts followed: Windsurf Cascade hooks (docs.windsurf.com/windsurf/cascade/hooks, the
page as of 2026-11: `.windsurf/hooks.json`, `{"hooks": {EVENT: [{"command", "show_output"}]}}`,
stdin `agent_action_name`, `trajectory_id`, `tool_info.file_path`, exit 2 blocks a pre-hook,
`working_directory` defaults to the workspace root) and Claude Code hooks
(code.claude.com/docs/en/hooks, as of 2026-11: `.claude/settings.json`, the command runs with
`$CLAUDE_PROJECT_DIR` set, stdin `session_id`, `transcript_path`, `cwd`, `permission_mode`,
`hook_event_name`, `tool_name`, `tool_input.file_path`, exit 2 from PreToolUse blocks and
shows stderr to Claude; a PreToolUse JSON answer on exit 0, `hookSpecificOutput` with
`permissionDecision: deny` and `permissionDecisionReason` shown to Claude, or
`additionalContext`; SessionStart's `additionalContext`) and Cursor's own hooks
(cursor.com/docs/agent/hooks, Cursor 2.x as of 2026-11: `.cursor/hooks.json` `{"version": 1,
"hooks": {EVENT: [{"command", "matcher"}]}}`, common fields `conversation_id`,
`generation_id`, `hook_event_name`, `workspace_roots`, `cursor_version`; `preToolUse` with
`tool_name`/`tool_input`, `beforeShellExecution`/`afterShellExecution` with `command`, `cwd`,
`afterFileEdit` with `file_path` and `edits`, `sessionStart`; answers `permission`,
`user_message`, `agent_message`, `additional_context`; exit 2 denies too; the command runs
with `$CURSOR_PROJECT_DIR` set)."""

import json
import os
import shutil
import subprocess

import pytest

import orchestrator
from helpers import claude_answer, claude_denial, git

CLI = "sh .windsurf/bin/orchestrator"
SHELLS = [pytest.param(shell, marks=pytest.mark.skipif(not shutil.which(shell),
                                                      reason=f"{shell} is not installed"))
          for shell in ("dash", "bash", "zsh")]


@pytest.fixture
def target(tmp_path):
    """A repository with a first commit made before the pack, then the Windsurf and Claude
    Code and Cursor packs installed and committed."""
    path = tmp_path / "shop"
    (path / "src" / "deep").mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "src" / "api.py").write_text("x = 1\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "before the pack")
    assert orchestrator.main(["install", "--target", str(path), "--agent", "windsurf",
                              "--agent", "claude", "--agent", "cursor"]) == 0
    git(path, "add", "-A")
    git(path, "commit", "-qm", "pack")
    return path


def env_for(tmp_path, shell, extra=None):
    """What an agent's hook process has: a PATH with the shell, sh and git, a HOME."""
    bin_dir = tmp_path / f"bin-{shell}"
    if not bin_dir.exists():
        bin_dir.mkdir()
        for tool in {"sh", "git", shell}:
            (bin_dir / tool).symlink_to(shutil.which(tool))
    return {"PATH": str(bin_dir), "HOME": str(tmp_path), **(extra or {})}


def installed(target, agent):
    """The command line the agent's installed configuration runs."""
    if agent == "windsurf":
        config = json.loads((target / ".windsurf/hooks.json").read_text())
        return config["hooks"]["pre_write_code"][-1]["command"]
    if agent == "cursor":
        config = json.loads((target / ".cursor/hooks.json").read_text())
        return config["hooks"]["preToolUse"][-1]["command"]
    settings = json.loads((target / ".claude/settings.json").read_text())
    return settings["hooks"]["PreToolUse"][-2]["hooks"][0]["command"]


def run_hook(command, shell, cwd, env, event):
    return subprocess.run([shutil.which(shell), "-c", command], cwd=cwd, env=env,
                          input=json.dumps(event), capture_output=True, text=True, timeout=60)


def windsurf_write(conversation, file_path):
    return {"agent_action_name": "pre_write_code", "trajectory_id": conversation,
            "execution_id": "e1", "timestamp": "2026-12-01T10:00:00Z",
            "tool_info": {"file_path": str(file_path), "edits": [{"old_string": "x",
                                                                  "new_string": "y"}]}}


def claude_edit(conversation, file_path, cwd):
    return {"session_id": conversation, "transcript_path": "/dev/null", "cwd": str(cwd),
            "permission_mode": "default", "hook_event_name": "PreToolUse", "tool_name": "Edit",
            "tool_input": {"file_path": str(file_path), "old_string": "x", "new_string": "y"}}


def sh(command, cwd, env):
    result = subprocess.run(["sh", "-c", command], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def setup_lock(target, env):
    sh(f"{CLI} sync --session owner --focus api --area backend", target, env)
    sh(f"{CLI} sync --session other --focus docs --area docs", target, env)
    sh(f"{CLI} lock --session owner --area backend --scope src --reason 'moving the api'",
       target, env)


# ---------------------------------------------------------------------------- failing open

@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("agent", ["windsurf", "claude", "cursor"])
@pytest.mark.parametrize("damage", ["missing", "a folder", "a dangling link", "garbage"])
def test_a_missing_or_broken_shim_never_blocks(target, tmp_path, shell, agent, damage):
    command = installed(target, agent)
    shim = target / ".windsurf/bin/orchestrator"
    shim.unlink()
    if damage == "a folder":
        shim.mkdir()
    elif damage == "a dangling link":
        shim.symlink_to(tmp_path / "nowhere")
    elif damage == "garbage":
        shim.write_text("if then fi (((\n")
    event = windsurf_write("t", target / "src/api.py")
    for cwd in (target, target / "src", tmp_path, "/"):
        for project_dir in ({"CLAUDE_PROJECT_DIR": str(target)}, {"CLAUDE_PROJECT_DIR": ""}, {},
                            {"CURSOR_PROJECT_DIR": str(target)}, {"CURSOR_PROJECT_DIR": ""}):
            result = run_hook(command, shell, cwd, env_for(tmp_path, shell, project_dir), event)
            assert result.returncode == 0, (cwd, project_dir, result)
            if agent == "cursor":  # Cursor takes anything but a JSON object as a failure
                assert json.loads(result.stdout) == {}, result
            if damage in ("missing", "a folder", "a dangling link"):
                assert result.stderr.count("\n") == 1, result.stderr
                assert "the action was allowed" in result.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_a_missing_launcher_or_python_never_blocks(target, tmp_path, shell):
    command = installed(target, "windsurf")
    env = env_for(tmp_path, shell)
    launcher = target / orchestrator.LAUNCHER_PATH
    launcher.write_text(launcher.read_text().replace(orchestrator.sys.executable,
                                                     str(tmp_path / "gone/python")))
    assert run_hook(command, shell, target, env, windsurf_write("t", target / "src/api.py")) \
        .returncode == 0
    launcher.unlink()
    assert run_hook(command, shell, target, env, windsurf_write("t", target / "src/api.py")) \
        .returncode == 0


# ---------------------------------------------------------------------------- still blocking

def bind_windsurf(target, env, conversation, session_id, cwd=None):
    event = {"agent_action_name": "pre_run_command", "trajectory_id": conversation,
             "tool_info": {"command_line": f"{CLI} update --session {session_id} --status "
                                           "in_progress", "cwd": str(cwd or target)}}
    result = run_hook(installed(target, "windsurf"), "sh", cwd or target, env, event)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_a_foreign_write_is_blocked_from_every_folder_a_windsurf_hook_starts_in(
        target, tmp_path, shell):
    env = env_for(tmp_path, shell)
    setup_lock(target, env)
    bind_windsurf(target, env, "t-other", "other")
    command = installed(target, "windsurf")
    newer = tmp_path / "wt-new"
    git(target, "worktree", "add", "-q", str(newer), "-b", "new")
    older = tmp_path / "wt-old"  # checked out from before the pack: no shim in it
    git(target, "worktree", "add", "-q", str(older), "-b", "old", "HEAD~1")
    assert not (older / ".windsurf").exists()
    for cwd, file_path in ((target, target / "src/api.py"),
                           (target / "src/deep", target / "src/api.py"),
                           (newer, newer / "src/api.py"),
                           (older, older / "src/api.py")):
        result = run_hook(command, shell, cwd, env, windsurf_write("t-other", file_path))
        assert result.returncode == 2, (cwd, result)
        assert "owner's lock on backend" in result.stderr
        allowed = run_hook(command, shell, cwd, env, windsurf_write("t-other", file_path.parent
                                                                    / "../docs/a.md"))
        assert allowed.returncode == 0, (cwd, allowed)


@pytest.mark.parametrize("shell", SHELLS)
def test_a_claude_edit_is_blocked_whatever_folder_the_hook_runs_in(target, tmp_path, shell):
    """The reproduction: hook run from / with CLAUDE_PROJECT_DIR set exited 0."""
    env = env_for(tmp_path, shell, {"CLAUDE_PROJECT_DIR": str(target)})
    setup_lock(target, env)
    command = installed(target, "claude")
    bind = {"session_id": "claude-1", "transcript_path": "/dev/null", "cwd": str(target),
            "hook_event_name": "PreToolUse", "tool_name": "Bash",
            "tool_input": {"command": f"{CLI} note --session other hello"}}
    assert run_hook(command, shell, "/", env, bind).returncode == 0
    for cwd in ("/", tmp_path, target / "src"):
        result = run_hook(command, shell, cwd, env,
                          claude_edit("claude-1", target / "src/api.py", target))
        assert "owner's lock on backend" in claude_denial(result), (cwd, result)


def test_a_hook_started_in_another_repository_applies_this_ones_locks(target, tmp_path):
    """A multi-repository workspace: Windsurf runs the hook from the other repository's root,
    which has the pack too; the file's own repository's state decides."""
    env = env_for(tmp_path, "sh")
    setup_lock(target, env)
    bind_windsurf(target, env, "t-other", "other")
    neighbour = tmp_path / "neighbour"
    neighbour.mkdir()
    git(neighbour, "init", "-q", "-b", "main")
    assert orchestrator.main(["install", "--target", str(neighbour)]) == 0
    result = run_hook(installed(neighbour, "windsurf"), "sh", neighbour, env,
                      windsurf_write("t-other", target / "src/api.py"))
    assert result.returncode == 2 and "owner's lock on backend" in result.stderr
    free = run_hook(installed(neighbour, "windsurf"), "sh", neighbour, env,
                    windsurf_write("t-other", neighbour / "src/api.py"))
    assert free.returncode == 0


# ---------------------------------------------------------------------------- binding

@pytest.mark.parametrize("line, binds", [
    (f"echo {CLI} note --session owner hi", False),
    (f"grep -r '{CLI} lock --session owner' .", False),
    (f"ls  # {CLI} note --session owner hi", False),
    (f'printf "%s" "{CLI} note --session owner hi"', False),
    (f"{CLI} status --session owner", False),
    (f"{CLI} --json lock --session owner --area backend --scope src --reason r", True),
    (f"cd src && FOO=1 {CLI} note --session owner hi", True),
    (f"{CLI} note --json --session=owner hi", True),
    (f"bash -c '{CLI} update --session owner --status blocked'", True),
    # found by a hostile review: quoted operators, here-documents, look-ups, dry runs
    (f'echo ";" {CLI} note --session owner hi', False),
    (f"cat <<'EOF'\n{CLI} note --session owner hi\nEOF", False),
    (f"command -v {CLI} note --session owner hi", False),
    (f"sh -n {CLI[3:]} note --session owner hi", False),
    (f"{CLI} note --session owner --help", False),
    (f"{CLI} --state /tmp/elsewhere.yaml note --session owner hi", False),
    (f'{CLI} update --add-note "#42 started" --session owner', True),
    (f'echo "#"; {CLI} note --session owner hi', True),
    (f"timeout 60 {CLI} note --session owner hi", True),
    (f'bash -o pipefail -c "{CLI} note --session owner hi"', True),
])
def test_only_a_real_invocation_binds(target, tmp_path, line, binds):
    env = env_for(tmp_path, "sh")
    setup_lock(target, env)
    event = {"agent_action_name": "pre_run_command", "trajectory_id": "t-x",
             "tool_info": {"command_line": line, "cwd": str(target)}}
    assert run_hook(installed(target, "windsurf"), "sh", target, env, event).returncode == 0
    status = json.loads(sh(f"{CLI} status --json", target, env).stdout)
    owner = next(s for s in status["active_sessions"] if s["id"] == "owner")
    assert ("t-x" in owner.get("trajectories", [])) == binds
    # Bound, its writes into owner's lock pass; not bound, they are blocked.
    write = run_hook(installed(target, "windsurf"), "sh", target, env,
                     windsurf_write("t-x", target / "src/api.py"))
    assert write.returncode == (0 if binds else 2)
    if not binds:
        assert "ask the user" in write.stderr and "--session owner" not in write.stderr


def test_reinstall_replaces_the_old_hook_command_instead_of_adding_one(tmp_path):
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)  # install wants a repository
    (repo / ".windsurf").mkdir(parents=True)
    (repo / ".claude").mkdir()
    old = {"hooks": {"pre_write_code": [{"command": "./lint.sh"},
                                        {"command": "sh .windsurf/bin/orchestrator hook",
                                         "show_output": True}]}}
    (repo / ".windsurf/hooks.json").write_text(json.dumps(old))
    old_claude = {"hooks": {"PreToolUse": [{"matcher": "Edit|Write|MultiEdit|NotebookEdit", "hooks": [
        {"type": "command", "command": 'sh "$CLAUDE_PROJECT_DIR/.windsurf/bin/orchestrator" hook'}]}]}}
    (repo / ".claude/settings.json").write_text(json.dumps(old_claude))
    assert orchestrator.main(["install", "--target", str(repo), "--agent", "windsurf",
                              "--agent", "claude"]) == 0
    hooks = json.loads((repo / ".windsurf/hooks.json").read_text())["hooks"]["pre_write_code"]
    assert [h["command"] for h in hooks] == ["./lint.sh", orchestrator.HOOK_COMMAND]
    claude = json.loads((repo / ".claude/settings.json").read_text())["hooks"]["PreToolUse"]
    commands = [h["command"] for block in claude for h in block["hooks"]]
    assert commands == [orchestrator.CLAUDE_HOOK_COMMAND] * len(
        orchestrator.CLAUDE_HOOKS["PreToolUse"])  # one per matcher, the old one replaced


# ---------------------------------------------------------------------------- where the hook starts and what a path really is

def test_a_nested_repository_inside_a_locked_folder_is_still_that_folders(target, tmp_path):
    """A submodule, or any folder holding its own .git, inside another session's lock."""
    env = env_for(tmp_path, "sh")
    setup_lock(target, env)
    bind_windsurf(target, env, "t-other", "other")
    nested = target / "src" / "vendored"
    nested.mkdir()
    git(nested, "init", "-q")
    result = run_hook(installed(target, "windsurf"), "sh", target, env,
                      windsurf_write("t-other", nested / "lib.c"))
    assert result.returncode == 2 and "owner's lock on backend" in result.stderr


def test_a_write_through_a_symlink_is_judged_where_it_lands(target, tmp_path):
    """`current -> lib`: owner holds `current`, other holds `lib`. owner's write to
    current/x.go lands in lib/x.go, inside other's lock: the hook blocks it and build-failure
    says report_only; other writes lib/x.go freely. (Git tracks `current` as a link, so the
    change git sees is lib/x.go's.)"""
    env = env_for(tmp_path, "sh")
    (target / "lib").mkdir()
    (target / "current").symlink_to("lib")
    sh(f"{CLI} sync --session owner --focus a --area backend", target, env)
    sh(f"{CLI} sync --session other --focus b --area docs", target, env)
    sh(f"{CLI} lock --session owner --area backend --scope current --reason r", target, env)
    sh(f"{CLI} lock --session other --area docs --scope lib --reason r", target, env)
    bind_windsurf(target, env, "t-owner", "owner")
    bind_windsurf(target, env, "t-other", "other")
    result = run_hook(installed(target, "windsurf"), "sh", target, env,
                      windsurf_write("t-owner", target / "current/x.go"))
    assert result.returncode == 2 and "other's lock on docs" in result.stderr, result
    verdict = subprocess.run(["sh", "-c", f"{CLI} --json build-failure --session owner --path "
                              "current/x.go"], cwd=target, env=env, capture_output=True,
                             text=True, timeout=60)
    assert verdict.returncode == 1 and json.loads(verdict.stdout)["verdict"] == "report_only"
    theirs = run_hook(installed(target, "windsurf"), "sh", target, env,
                      windsurf_write("t-other", target / "lib/x.go"))
    assert theirs.returncode == 0, theirs


@pytest.mark.parametrize("shell", SHELLS)
def test_claude_in_a_worktree_older_than_the_pack_blocks_from_anywhere(target, tmp_path, shell):
    older = tmp_path / "wt-old"
    git(target, "worktree", "add", "-q", str(older), "-b", "old", "HEAD~1")
    env = env_for(tmp_path, shell, {"CLAUDE_PROJECT_DIR": str(older)})
    setup_lock(target, env)
    bind = {"session_id": "c-1", "transcript_path": "/dev/null", "cwd": str(older),
            "hook_event_name": "PreToolUse", "tool_name": "Bash",
            "tool_input": {"command": f"{CLI} note --session other hello"}}
    command = installed(target, "claude")
    assert run_hook(command, shell, "/", env, bind).returncode == 0
    result = run_hook(command, shell, "/", env, claude_edit("c-1", older / "src/api.py", older))
    assert "owner's lock on backend" in claude_denial(result), result


def test_a_hook_started_where_no_pack_is_uses_the_users_launcher(target, tmp_path):
    """Windsurf running the hook from a neighbouring repository without the pack (or from
    `/`): install's per-user launcher still decides by the file's own repository."""
    env = env_for(tmp_path, "sh", {"XDG_DATA_HOME": os.environ["XDG_DATA_HOME"]})
    setup_lock(target, env)
    bind_windsurf(target, env, "t-other", "other")
    neighbour = tmp_path / "plain"
    neighbour.mkdir()
    git(neighbour, "init", "-q")
    for cwd in (neighbour, "/"):
        result = run_hook(installed(target, "windsurf"), "sh", cwd, env,
                          windsurf_write("t-other", target / "src/api.py"))
        assert result.returncode == 2 and "owner's lock on backend" in result.stderr, cwd
        free = run_hook(installed(target, "windsurf"), "sh", cwd, env,
                        windsurf_write("t-other", neighbour / "x.py"))
        assert (free.returncode, free.stderr) == (0, ""), cwd


def test_an_agent_cannot_edit_the_shared_state_by_hand(target, tmp_path):
    env = env_for(tmp_path, "sh")
    setup_lock(target, env)
    bind_windsurf(target, env, "t-owner", "owner")
    result = run_hook(installed(target, "windsurf"), "sh", target, env,
                      windsurf_write("t-owner", target / orchestrator.STATE_RELATIVE_PATH))
    assert result.returncode == 2 and "changes only through" in result.stderr


# ---------------------------------------------------------------------------- writes through the shell

@pytest.mark.parametrize("line, blocked", [
    ("echo x > src/api.py", True),
    ("printf x >> src/api.py 2>&1", True),
    ("cat README | tee src/api.py", True),
    ("sed -i s/x/y/ src/api.py", True),
    ("sed -i -e s/x/y/ src/api.py", True),
    ("cp /tmp/other.py src/api.py", True),
    ("mv src/api.py /tmp/away.py", True),
    ("rm -f src/api.py", True),
    ("touch src/new.py", True),
    ("git checkout -- src/api.py", True),
    ("git restore src/api.py", True),
    ("cat src/api.py", False),
    ('echo "> src/api.py"', False),
    ("echo x > docs/notes.md", False),
    ("git checkout main", False),
])
@pytest.mark.parametrize("agent", ["windsurf", "claude", "cursor"])
def test_a_shell_command_writing_into_a_foreign_lock_is_blocked(target, tmp_path, line, blocked,
                                                                agent):
    """Windsurf pre_run_command (tool_info.command_line, cwd), Claude Code PreToolUse on Bash
    (tool_input.command) and Cursor beforeShellExecution (command, cwd), as their pages
    document; each answer read as that agent reads it."""
    env = env_for(tmp_path, "sh", {"CLAUDE_PROJECT_DIR": str(target),
                                   "CURSOR_PROJECT_DIR": str(target)})
    setup_lock(target, env)
    (target / "src/api.py").write_text("x = 2  # the owner's work, not committed yet\n")

    def event(conversation, command_line):
        if agent == "windsurf":
            return {"agent_action_name": "pre_run_command", "trajectory_id": conversation,
                    "tool_info": {"command_line": command_line, "cwd": str(target)}}
        if agent == "claude":
            return {"session_id": conversation, "transcript_path": "/dev/null",
                    "cwd": str(target), "permission_mode": "default",
                    "hook_event_name": "PreToolUse", "tool_name": "Bash",
                    "tool_use_id": "t1", "tool_input": {"command": command_line}}
        return {"conversation_id": conversation, "generation_id": "g1",
                "hook_event_name": "beforeShellExecution", "workspace_roots": [str(target)],
                "command": command_line, "cwd": str(target)}

    if agent == "windsurf":
        command = installed(target, "windsurf")
    elif agent == "claude":
        command = installed(target, "claude")
    else:
        command = json.loads((target / ".cursor/hooks.json").read_text())["hooks"][
            "beforeShellExecution"][-1]["command"]

    def denial(result):
        if agent == "windsurf":
            return result.stderr if result.returncode == 2 else ""
        if agent == "claude":
            return claude_denial(result)
        answer = json.loads(result.stdout)
        assert (result.returncode == 2) == (answer.get("permission") == "deny"), result
        return answer.get("agent_message", "") if answer.get("permission") == "deny" else ""

    for conversation, session_id in (("c-other", "other"), ("c-owner", "owner")):
        bound = run_hook(command, "sh", target, env,
                         event(conversation, f"{CLI} update --session {session_id} --status "
                                             "in_progress"))
        assert denial(bound) == "", bound
    result = run_hook(command, "sh", target, env, event("c-other", line))
    if blocked:
        assert "owner's lock on backend" in denial(result), result
    else:
        assert denial(result) == "", result
    # the owner's own shell writes pass
    assert denial(run_hook(command, "sh", target, env, event("c-owner", line))) == ""


def test_claude_bash_and_cursors_renamed_events_are_judged_alike(target, tmp_path):
    """Claude Code's Bash tool (tool_input.command), and Cursor running Claude Code's hooks
    with its own names: preToolUse/postToolUse, the Shell and Write tools, conversation_id
    (as the issue reports Cursor's third-party hooks send them). A post event is never
    answered as a pre event."""
    env = env_for(tmp_path, "sh", {"CLAUDE_PROJECT_DIR": str(target)})
    setup_lock(target, env)
    command = installed(target, "claude")
    claude = {"session_id": "c1", "transcript_path": "/dev/null", "cwd": str(target),
              "hook_event_name": "PreToolUse", "tool_name": "Bash",
              "tool_input": {"command": "echo x > src/api.py"}}
    assert "owner's lock on backend" in claude_denial(run_hook(command, "sh", target, env, claude))
    cursor = {"conversation_id": "k1", "cwd": str(target), "hook_event_name": "preToolUse",
              "tool_name": "Shell", "tool_input": {"command": "echo x > src/api.py"}}
    assert run_hook(command, "sh", target, env, cursor).returncode == 2
    cursor_write = {"conversation_id": "k1", "cwd": str(target), "hook_event_name": "preToolUse",
                    "tool_name": "Write", "tool_input": {"file_path": str(target / "src/api.py")}}
    assert run_hook(command, "sh", target, env, cursor_write).returncode == 2
    for name in ("postToolUse", "PostToolUse", "somethingElse"):
        after = {**cursor_write, "hook_event_name": name}
        assert run_hook(command, "sh", target, env, after).returncode == 0, name
    bind = {**cursor, "tool_input": {"command": f"{CLI} note --session owner hi"}}
    assert run_hook(command, "sh", target, env, bind).returncode == 0
    assert run_hook(command, "sh", target, env, cursor_write).returncode == 0  # now owner's


# ---------------------------------------------------------------------------- Claude Code's session start

def test_claude_code_gets_the_always_on_rule_in_claude_md_beside_the_users_text(tmp_path):
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    (repo / "CLAUDE.md").write_text("# Our project\n\nRun make test.\n")
    for _ in range(2):
        assert orchestrator.main(["install", "--target", str(repo), "--agent", "claude"]) == 0
    text = (repo / "CLAUDE.md").read_text()
    assert text.startswith("# Our project\n\nRun make test.\n")
    assert text.count(orchestrator.AGENTS_MD_BEGIN) == 1
    assert "build-failure" in text and "Claude Code" in text


def test_session_start_runs_the_check_and_says_nothing_without_a_conflict(target, tmp_path):
    """SessionStart (code.claude.com/docs/en/hooks: `source` is startup, resume, clear or
    compact; a command hook's stdout becomes context)."""
    env = env_for(tmp_path, "sh", {"CLAUDE_PROJECT_DIR": str(target)})
    setup_lock(target, env)
    sh(f"{CLI} update --session other --add-area src/api.py", target, env)
    command = json.loads((target / ".claude/settings.json").read_text())["hooks"][
        "SessionStart"][-1]["hooks"][0]["command"]
    bind = {"session_id": "c1", "transcript_path": "/dev/null", "cwd": str(target),
            "hook_event_name": "PreToolUse", "tool_name": "Bash",
            "tool_input": {"command": f"{CLI} note --session other hello"}}
    assert run_hook(installed(target, "claude"), "sh", target, env, bind).returncode == 0

    def start(conversation, source):
        return run_hook(command, "sh", target, env, {
            "session_id": conversation, "transcript_path": "/dev/null", "cwd": str(target),
            "hook_event_name": "SessionStart", "source": source})
    conflict = claude_answer(start("c1", "resume"))
    assert conflict["hookEventName"] == "SessionStart"
    assert conflict["additionalContext"].startswith("Conflict: other's")
    assert (start("fresh", "startup").returncode, start("fresh", "startup").stdout) == (0, "")
    cleared = claude_answer(start("after-clear", "clear"))
    assert "starts with no session" in cleared["additionalContext"]
    sh(f"{CLI} unlock --session owner --all", target, env)
    assert start("c1", "resume").stdout == ""


# ---------------------------------------------------------------------------- commits

def commit(cwd, env, *extra):
    full = {**env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "commit", "-qm", "change", *extra], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=60)


def test_a_commit_into_a_foreign_lock_is_refused_and_the_owners_goes_through(target, tmp_path):
    """A real `git commit` runs the pre-commit hook install wrote into the common hooks
    folder: refused from the main checkout (a person outside any session owns nothing),
    allowed from the owner's worktree, and --no-verify still commits."""
    env = env_for(tmp_path, "sh")
    own = tmp_path / "wt-owner"
    git(target, "worktree", "add", "-q", str(own), "-b", "owner-work")
    sh(f"{CLI} sync --session owner --focus api --area backend", own, env)
    sh(f"{CLI} lock --session owner --area backend --scope src --reason 'moving the api'",
       own, env)
    (target / "src/api.py").write_text("x = 2\n")
    (target / "README").write_text("free\n")
    git(target, "add", "-A")
    refused = commit(target, env)
    assert refused.returncode == 1, refused
    assert "src/api.py" in refused.stderr and "owner's lock on backend" in refused.stderr
    assert "--no-verify" in refused.stderr
    git(target, "restore", "--staged", "src/api.py")
    assert commit(target, env).returncode == 0  # the rest commits
    git(target, "add", "-A")
    assert commit(target, env, "--no-verify").returncode == 0
    (own / "src/api.py").write_text("x = 3\n")
    git(own, "add", "-A")
    assert commit(own, env).returncode == 0, "the owner commits its own files"


def test_the_git_hook_chains_to_the_one_that_was_there(tmp_path):
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    hooks = repo / ".git/hooks"
    (hooks / "pre-commit").write_text("#!/bin/sh\necho theirs > \"$(git rev-parse --show-toplevel)/ran\"\n")
    (hooks / "pre-commit").chmod(0o755)
    for _ in range(2):
        assert orchestrator.main(["install", "--target", str(repo)]) == 0
    assert (hooks / "pre-commit.before-orchestrator").read_text().startswith("#!/bin/sh\necho")
    (repo / "x").write_text("1\n")
    git(repo, "add", "x")
    assert commit(repo, env_for(tmp_path, "sh")).returncode == 0
    assert (repo / "ran").read_text() == "theirs\n"


def test_users_of_the_pre_commit_framework_get_an_entry_that_refuses_the_commit(
        target, tmp_path, capsys):
    """The framework (pre-commit.com: a `repo: local` hook runs `entry` with `language:
    system` from the repository root) replaces git's hook on `pre-commit install`; install
    prints the local hook to add, and that entry refuses a commit into a foreign lock."""
    import strictyaml
    env = env_for(tmp_path, "sh")
    setup_lock(target, env)
    (target / ".pre-commit-config.yaml").write_text("repos: []\n")
    capsys.readouterr()
    assert orchestrator.main(["install", "--target", str(target)]) == 0
    printed = capsys.readouterr().out
    snippet = printed.split("as a local hook:\n", 1)[1]
    hook = strictyaml.load(snippet).data[0]["hooks"][0]
    assert hook["language"] == "system" and hook["pass_filenames"] == "false"
    (target / "src/api.py").write_text("x = 9\n")
    git(target, "add", "-A")
    entry = subprocess.run(["sh", "-c", hook["entry"]], cwd=target, env=env,
                           capture_output=True, text=True, timeout=60)
    assert entry.returncode == 1 and "owner's lock on backend" in entry.stderr, entry


def test_a_broken_tool_never_refuses_a_commit(target, tmp_path):
    env = env_for(tmp_path, "sh")
    (target / orchestrator.LAUNCHER_PATH).unlink()
    (target / "src/api.py").write_text("x = 5\n")
    git(target, "add", "-A")
    assert commit(target, env).returncode == 0


def test_a_new_windsurf_worktree_is_checked_for_the_pack(target, tmp_path):
    """post_setup_worktree (tool_info.worktree_path, root_workspace_path): silent when the
    worktree has the pack; says what to run when it was made from before the pack."""
    env = env_for(tmp_path, "sh")
    command = json.loads((target / ".windsurf/hooks.json").read_text())["hooks"][
        "post_setup_worktree"][-1]["command"]
    newer, older = tmp_path / "wt-new", tmp_path / "wt-old"
    git(target, "worktree", "add", "-q", str(newer), "-b", "new")
    git(target, "worktree", "add", "-q", str(older), "-b", "old", "HEAD~1")

    def setup(worktree):
        return run_hook(command, "sh", target, env, {
            "agent_action_name": "post_setup_worktree", "trajectory_id": "t",
            "tool_info": {"worktree_path": str(worktree), "root_workspace_path": str(target)}})
    assert (setup(newer).returncode, setup(newer).stdout) == (0, "")
    told = setup(older)
    assert told.returncode == 0 and "older than the pack" in told.stdout
    elsewhere = tmp_path / "elsewhere"
    git(tmp_path, "init", "-q", str(elsewhere))
    assert "not a worktree of this repository" in setup(elsewhere).stdout


def test_the_commit_guard_knows_which_machine_a_worktree_path_is_on(target, monkeypatch, capsys):
    """Two clones at the same path on two machines (dev containers) share one state: on
    machine a, the session registered from this path on machine a commits its own locked
    file, and a commit into machine b's session's lock is refused; --json prints one object."""
    monkeypatch.chdir(target)
    monkeypatch.delenv("ORCHESTRATOR_STATE", raising=False)
    (target / "docs").mkdir()
    for machine, session, scope in (("box-a", "mine", "src"), ("box-b", "theirs", "docs")):
        monkeypatch.setenv("ORCHESTRATOR_MACHINE", machine)
        assert orchestrator.main(["sync", "--session", session, "--focus", "f", "--area", "a"]) == 0
        assert orchestrator.main(["lock", "--session", session, "--area", "a", "--scope", scope,
                                  "--reason", "r"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("ORCHESTRATOR_MACHINE", "box-a")
    (target / "src/api.py").write_text("x = 2\n")
    git(target, "add", "src/api.py")
    assert orchestrator.main(["--json", "commit-check"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer == {"allowed": True, "session": "mine", "refused": [], "message": ""}
    (target / "docs/guide.md").write_text("theirs\n")
    git(target, "add", "docs/guide.md")
    assert orchestrator.main(["--json", "commit-check"]) == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["allowed"] is False and answer["session"] == "mine"
    assert answer["refused"] == [{"path": "docs/guide.md", "owner": "theirs", "area": "a"}]
