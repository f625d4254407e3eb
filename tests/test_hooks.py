"""Enforcement: agent hooks fed as JSON to the installed command, worktrees sharing one state,
and the other agents' files merged into what a repository already has."""

import json
import os
import shutil
import subprocess
import sys

import pytest

import orchestrator
from helpers import claude_answer, claude_denial, git

CLI = "sh .windsurf/bin/orchestrator"


@pytest.fixture
def target(tmp_path):
    """A repository with the Windsurf and Claude Code packs installed and committed."""
    path = tmp_path / "shop"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "src").mkdir()
    (path / "src" / "api.py").write_text("x = 1\n")
    assert orchestrator.main(["install", "--target", str(path), "--agent", "windsurf",
                              "--agent", "claude"]) == 0
    git(path, "add", "-A")
    git(path, "commit", "-qm", "pack")
    return path


@pytest.fixture
def sh(bare_env):
    def call(command, cwd, stdin=None, env=None):
        return subprocess.run(["sh", "-c", command], cwd=cwd, env={**bare_env, **(env or {})},
                              input=stdin, capture_output=True, text=True, timeout=60,
                              executable=shutil.which("sh"))
    return call


@pytest.fixture
def hook(sh, target):
    """hook(event) feeds one Windsurf event to the hooks.json command, as Windsurf would."""
    command = json.loads((target / ".windsurf/hooks.json").read_text())["hooks"]["pre_write_code"][0]["command"]

    def call(action, trajectory, cwd=None, **tool_info):
        event = {"agent_action_name": action, "trajectory_id": trajectory, "execution_id": "e1",
                 "timestamp": "2026-11-25T16:00:00Z", "tool_info": tool_info}
        return sh(command, cwd or target, stdin=json.dumps(event))
    return call


def state(sh, target):
    result = sh(f"{CLI} status --json", target)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def setup_two_sessions(sh, target, allow_external_fixes=False):
    assert sh(f"{CLI} sync --session owner --focus 'own the api' --area backend", target).returncode == 0
    assert sh(f"{CLI} sync --session other --focus 'docs' --area docs", target).returncode == 0
    flags = " --allow-external-fixes" if allow_external_fixes else ""
    assert sh(f"{CLI} lock --session owner --area backend --scope src --reason 'moving the api'"
              f" --duration 1h{flags}", target).returncode == 0


def bind(hook, target, trajectory, session):
    result = hook("pre_run_command", trajectory, command_line=f"{CLI} update --session {session} --status in_progress",
                  cwd=str(target))
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------- Windsurf events

def test_write_into_another_sessions_lock_is_blocked_with_what_to_do(sh, target, hook):
    setup_two_sessions(sh, target)
    bind(hook, target, "traj-owner", "owner")
    bind(hook, target, "traj-other", "other")
    path = str(target / "src" / "api.py")
    assert hook("pre_write_code", "traj-owner", file_path=path, edits=[]).returncode == 0
    blocked = hook("pre_write_code", "traj-other", file_path=path, edits=[])
    assert blocked.returncode == 2
    lock = state(sh, target)["locks"][0]
    assert (f"Blocked: src/api.py is inside owner's lock on backend until {lock['expires_at']}"
            in blocked.stderr)
    assert '"moving the api"' in blocked.stderr
    assert "Ask the user" in blocked.stderr and "note --session other" in blocked.stderr
    assert blocked.stdout == ""


def test_a_conversation_bound_to_no_session_owns_nothing(sh, target, hook):
    setup_two_sessions(sh, target)
    blocked = hook("pre_write_code", "never-bound", file_path=str(target / "src/api.py"))
    assert blocked.returncode == 2
    assert "bound to no session" in blocked.stderr
    assert "ask the user" in blocked.stderr
    assert "--session owner" not in blocked.stderr  # it never coaches the agent past the block


def test_a_lock_allowing_external_fixes_lets_the_write_through_and_says_whose(sh, target, hook):
    setup_two_sessions(sh, target, allow_external_fixes=True)
    bind(hook, target, "traj-other", "other")
    allowed = hook("pre_write_code", "traj-other", file_path=str(target / "src/api.py"))
    assert allowed.returncode == 0
    assert "inside owner's lock on backend, which allows fixes" in allowed.stdout


def test_writes_outside_locks_and_into_expired_locks_pass_silently(sh, target, hook):
    setup_two_sessions(sh, target)
    outside = hook("pre_write_code", "t", file_path=str(target / "docs" / "new.md"))
    assert (outside.returncode, outside.stdout, outside.stderr) == (0, "", "")
    sh(f"{CLI} lock --session owner --area backend --scope src --reason r --duration 1s", target)
    import time
    time.sleep(1.2)
    expired = hook("pre_write_code", "t", file_path=str(target / "src/api.py"))
    assert (expired.returncode, expired.stderr) == (0, "")


def test_binding_moves_with_the_session_named_and_follows_registration(sh, target, hook):
    setup_two_sessions(sh, target)
    bind(hook, target, "traj", "other")
    bind(hook, target, "traj", "owner")
    sessions = {s["id"]: s.get("trajectories", []) for s in state(sh, target)["active_sessions"]}
    assert sessions == {"owner": ["traj"], "other": []}
    # A sync that registers a new session binds after it ran (post_run_command).
    line = f"{CLI} sync --session fresh --focus f --area ui"
    assert hook("pre_run_command", "traj-new", command_line=line).returncode == 0
    assert sh(line, target).returncode == 0
    assert hook("post_run_command", "traj-new", command_line=line).returncode == 0
    fresh = next(s for s in state(sh, target)["active_sessions"] if s["id"] == "fresh")
    assert fresh["trajectories"] == ["traj-new"]
    # Commands that are not the orchestrator's bind nothing.
    hook("pre_run_command", "traj-x", command_line="make test --session owner")
    assert all("traj-x" not in s.get("trajectories", []) for s in state(sh, target)["active_sessions"])


def test_post_write_records_touched_files_for_complete(sh, target, hook):
    setup_two_sessions(sh, target)
    bind(hook, target, "traj-owner", "owner")
    for _ in range(2):
        assert hook("post_write_code", "traj-owner", file_path=str(target / "src/api.py")).returncode == 0
    owner = next(s for s in state(sh, target)["active_sessions"] if s["id"] == "owner")
    assert owner["touched_files"] == ["src/api.py"]
    done = sh(f"{CLI} complete --session owner --outcome done --json", target)
    files = json.loads(done.stdout)["completed"]["files_changed"]
    assert "src/api.py" in files  # recorded by the hook, though git sees no change to it
    assert not [f for f in files if f.startswith(".windsurf/orchestrator/")]


def test_a_hook_that_cannot_read_the_state_lets_work_proceed(sh, target, hook):
    setup_two_sessions(sh, target)
    state_file = target / ".windsurf/orchestrator/session_state.yaml"
    state_file.write_text(state_file.read_text() + "bogus: [\n")
    result = hook("pre_write_code", "t", file_path=str(target / "src/api.py"))
    assert result.returncode == 0
    assert "orchestrator hook:" in result.stderr and "the action was allowed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("stdin", ["", "not json", "[1, 2]", '{"agent_action_name": 5}',
                                   '{"agent_action_name": "pre_write_code", "tool_info": {"file_path": 3}}'])
def test_bad_hook_input_lets_work_proceed(sh, target, stdin):
    result = sh(f"{CLI} hook", target, stdin=stdin)
    assert result.returncode == 0
    assert "Traceback" not in result.stderr


def test_other_events_pass(sh, target, hook):
    setup_two_sessions(sh, target)
    for action in ("pre_read_code", "post_read_code", "pre_user_prompt", "post_cascade_response",
                   "post_setup_worktree"):
        result = hook(action, "t", file_path=str(target / "src/api.py"))
        assert result.returncode == 0 and result.stderr == ""


# ---------------------------------------------------------------------------- Claude Code

def claude_event(name, tool, session_id, **tool_input):
    return json.dumps({"session_id": session_id, "hook_event_name": name, "tool_name": tool,
                       "tool_input": tool_input, "cwd": "/", "transcript_path": "/dev/null"})


def test_claude_code_pre_tool_use_blocks_edits_in_a_lock(sh, target):
    setup_two_sessions(sh, target)
    settings = json.loads((target / ".claude/settings.json").read_text())
    command = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    env = {"CLAUDE_PROJECT_DIR": str(target)}
    bind_event = claude_event("PreToolUse", "Bash", "claude-1",
                              command=f"{CLI} note --session other hello")
    assert sh(command, target, stdin=bind_event, env=env).returncode == 0
    edit = claude_event("PreToolUse", "Edit", "claude-1", file_path=str(target / "src/api.py"),
                        old_string="x", new_string="y")
    blocked = sh(command, target, stdin=edit, env=env)
    assert "owner's lock on backend" in claude_denial(blocked)
    docs = claude_event("PreToolUse", "Write", "claude-1", file_path=str(target / "docs/a.md"))
    assert claude_answer(sh(command, target, stdin=docs, env=env)) == {}


# ---------------------------------------------------------------------------- worktrees

def test_sessions_in_different_worktrees_share_one_state(sh, target, hook, tmp_path):
    worktree = tmp_path / "worktrees" / "feature"
    git(target, "worktree", "add", "-q", str(worktree), "-b", "feature")
    assert sh(f"{CLI} sync --session main-work --focus m --area backend", target).returncode == 0
    assert sh(f"{CLI} lock --session main-work --area backend --scope src --reason r",
              target).returncode == 0
    assert sh(f"{CLI} sync --session tree-work --focus t --area backend", worktree).returncode == 0
    seen = state(sh, worktree)
    by_id = {s["id"]: s for s in seen["active_sessions"]}
    assert by_id["tree-work"]["worktree"] == str(worktree.resolve())
    assert by_id["tree-work"]["branch"] == "feature"
    assert by_id["main-work"]["branch"] == "main"
    report = sh(f"{CLI} status", worktree).stdout
    assert "branch feature" in report and f"worktree: {worktree.resolve()}" in report
    assert "work in the same worktree" not in report
    # The hook in the worktree blocks an edit to the same path under the main session's lock.
    bind(hook, worktree, "traj-tree", "tree-work")
    blocked = hook("pre_write_code", "traj-tree", cwd=worktree,
                   file_path=str(worktree / "src" / "api.py"))
    assert blocked.returncode == 2 and "main-work's lock" in blocked.stderr


def test_two_sessions_in_one_worktree_are_warned_about(sh, target):
    sh(f"{CLI} sync --session a --focus a --area x", target)
    result = sh(f"{CLI} sync --session b --focus b --area y", target)
    assert f'~ a and b work in the same worktree "{target.resolve()}"' in result.stdout


# ---------------------------------------------------------------------------- merging into what is there

def test_install_merges_hooks_json_and_keeps_the_users_hooks(tmp_path):
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)  # install wants a repository
    (repo / ".windsurf").mkdir(parents=True)
    theirs = {"hooks": {"pre_write_code": [{"command": "./lint.sh", "show_output": True}],
                        "post_cascade_response": [{"command": "./log.sh"}]}, "extra": 1}
    (repo / ".windsurf/hooks.json").write_text(json.dumps(theirs))
    assert orchestrator.main(["install", "--target", str(repo)]) == 0
    merged = json.loads((repo / ".windsurf/hooks.json").read_text())
    assert merged["extra"] == 1
    assert merged["hooks"]["post_cascade_response"][0] == {"command": "./log.sh"}  # theirs first
    assert merged["hooks"]["post_cascade_response"][1]["command"] == orchestrator.HOOK_COMMAND
    assert merged["hooks"]["pre_write_code"][0] == {"command": "./lint.sh", "show_output": True}
    assert merged["hooks"]["pre_write_code"][1]["command"] == orchestrator.HOOK_COMMAND
    before = (repo / ".windsurf/hooks.json").read_text()
    assert orchestrator.main(["install", "--target", str(repo)]) == 0
    assert (repo / ".windsurf/hooks.json").read_text() == before


def test_install_keeps_a_hooks_json_it_cannot_read(tmp_path, capsys):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # install wants a repository
    (tmp_path / ".windsurf").mkdir()
    (tmp_path / ".windsurf/hooks.json").write_text("{ not json")
    assert orchestrator.main(["install", "--target", str(tmp_path)]) == 1  # Cascade unenforced
    assert (tmp_path / ".windsurf/hooks.json").read_text() == "{ not json"
    said = capsys.readouterr().out
    assert "not valid JSON" in said and "HOOKS NOT INSTALLED for windsurf" in said
    entries = said.split("add these entries by hand:\n", 1)[1]
    added = json.loads(entries[:entries.index("\n}\n") + 2])
    assert set(added["hooks"]) == set(orchestrator.WINDSURF_HOOKS)


def test_install_force_replaces_a_hooks_json_it_cannot_read_and_keeps_yours(tmp_path, capsys):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".windsurf").mkdir()
    (tmp_path / ".windsurf/hooks.json").write_text("{ not json")
    for _ in range(2):  # a second --force keeps the first copy: copies never collide
        (tmp_path / ".windsurf/hooks.json").write_text("{ not json")
        assert orchestrator.main(["install", "--target", str(tmp_path), "--force"]) == 0
    assert set(json.loads((tmp_path / ".windsurf/hooks.json").read_text())["hooks"]) == \
        set(orchestrator.WINDSURF_HOOKS)
    assert (tmp_path / ".windsurf/hooks.json.before-orchestrator").read_text() == "{ not json"
    assert (tmp_path / ".windsurf/hooks.json.before-orchestrator.2").read_text() == "{ not json"
    assert "replaced" in capsys.readouterr().out


@pytest.mark.parametrize("link, into", [(".gitignore", ".git/config"),
                                        (".windsurf/bin/orchestrator", ".git/hooks/post-checkout")])
def test_install_never_writes_through_a_symlink_into_git(tmp_path, capsys, link, into):
    """A repository that carries a symlink into its own .git: what install would write there
    becomes git's own (its config, a hook that runs on every checkout)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / link).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / into).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / into).write_text("theirs\n") if not (tmp_path / into).exists() else None
    before = (tmp_path / into).read_bytes()
    os.symlink(os.path.relpath(tmp_path / into, (tmp_path / link).parent), tmp_path / link)
    orchestrator.main(["install", "--target", str(tmp_path)])
    assert (tmp_path / into).read_bytes() == before
    assert "leads into .git" in capsys.readouterr().out


def test_install_merges_claude_settings(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # install wants a repository
    (tmp_path / ".claude").mkdir()
    theirs = {"permissions": {"allow": ["Bash(make:*)"]},
              "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command",
                                                                      "command": "echo hi"}]}]}}
    (tmp_path / ".claude/settings.json").write_text(json.dumps(theirs))
    for _ in range(2):
        assert orchestrator.main(["install", "--target", str(tmp_path), "--agent", "claude"]) == 0
    merged = json.loads((tmp_path / ".claude/settings.json").read_text())
    assert merged["permissions"] == theirs["permissions"]
    pre = merged["hooks"]["PreToolUse"]
    assert pre[0] == theirs["hooks"]["PreToolUse"][0]
    assert [b["matcher"] for b in pre[1:]] == ["Edit|Write|MultiEdit|NotebookEdit", "Bash",
                                               "edit|write|apply_patch|multi_edit", "exec"]
    assert len(merged["hooks"]["PostToolUse"]) == len(orchestrator.CLAUDE_HOOKS["PostToolUse"])
    command = (tmp_path / ".claude/commands/orchestrator.md").read_text()
    assert command.startswith("---\ndescription:") and "$ARGUMENTS" in command
    assert "Claude Code sessions" in command and "Cascade" not in command


def test_install_cursor_rule(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # install wants a repository
    assert orchestrator.main(["install", "--target", str(tmp_path), "--agent", "cursor"]) == 0
    rule = (tmp_path / ".cursor/rules/orchestrator.mdc").read_text()
    assert rule.startswith("---\ndescription:") and "alwaysApply: true" in rule
    assert "build-failure" in rule and len(rule) <= 12000
    assert not (tmp_path / ".windsurf/workflows").exists()
    assert (tmp_path / ".windsurf/bin/orchestrator").exists()


def test_install_agents_md_section_keeps_the_rest_and_is_replaced_not_repeated(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # install wants a repository
    (tmp_path / "AGENTS.md").write_text("# Project\n\nBuild with make.\n")
    assert orchestrator.main(["install", "--target", str(tmp_path), "--agent", "agents-md"]) == 0
    first = (tmp_path / "AGENTS.md").read_text()
    assert first.startswith("# Project\n\nBuild with make.\n")
    assert first.count(orchestrator.AGENTS_MD_BEGIN) == 1
    (tmp_path / "AGENTS.md").write_text(first + "\n## Later notes\nkeep me\n")
    assert orchestrator.main(["install", "--target", str(tmp_path), "--agent", "agents-md"]) == 0
    second = (tmp_path / "AGENTS.md").read_text()
    assert second.count(orchestrator.AGENTS_MD_BEGIN) == 1
    assert second.endswith("## Later notes\nkeep me\n") and "Build with make." in second


def test_the_hook_ignores_files_of_other_repositories(run, session, repo, tmp_path, monkeypatch):
    session("api", "src")
    run("lock", "--session", "api", "--area", "backend", "--scope", "src", "--reason", "r")
    other = tmp_path / "other"
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    for root, expected in ((other, 0), (repo, 2)):
        event = {"agent_action_name": "pre_write_code", "trajectory_id": "t",
                 "tool_info": {"file_path": str(root / "src" / "x.py")}}
        monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(json.dumps(event)))
        assert run("hook").code == expected


def test_read_only_commands_and_mentions_do_not_bind_a_conversation(run, session, monkeypatch):
    session("api", "backend")
    for line in ("sh .windsurf/bin/orchestrator status --session api",
                 "echo see the orchestrator docs: use --session api",
                 "sh .windsurf/bin/orchestrator build-failure --session api --area x"):
        assert orchestrator.session_named_in_command(line) is None, line
    assert orchestrator.session_named_in_command(
        "sh .windsurf/bin/orchestrator note --session api hi") == "api"
    assert orchestrator.session_named_in_command(
        "python /opt/so/orchestrator.py lock --session=api --area a") == "api"
