"""Devin Local (Devin Desktop's default agent) and the Devin CLI: their hooks, as installed
by `install --agent devin`, fed Devin's payloads and answered as Devin reads the answer.

Contract followed (docs.devin.ai, stored late 2026): cli/extensibility/hooks/overview — hooks
live in `.devin/hooks.v1.json` with the events at the top level, each a list of `{"matcher":
REGEX on tool_name, "hooks": [{"type": "command", "command", "timeout"}]}`, the project folder
arrives as `DEVIN_PROJECT_DIR`, exit 2 (or a `"decision": "block"` object) blocks, other exits
do not; cli/extensibility/hooks/lifecycle-hooks — PreToolUse's stdin carries `tool_name`
(`exec`, `edit`, ...) and `tool_input` (`{"command": ..., "shell_id": "main"}` for exec),
PostToolUse adds `tool_response` `{success, output, error}`. Common fields as AGENT-HOOKS.md
gives them: `session_id`, `prompt_id`, `hook_event_name`, `transcript_path`; no `cwd`."""

import json
import os
import shutil
import subprocess

import pytest

import orchestrator
from helpers import git

CLI = "sh .windsurf/bin/orchestrator"
SHELLS = [shell for shell in ("dash", "bash", "zsh") if shutil.which(shell)]


@pytest.fixture
def shop(tmp_path):
    path = tmp_path / "shop"
    (path / "src").mkdir(parents=True)
    (path / "src/api.py").write_text("x = 1\n")
    (path / "docs").mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "start")
    assert orchestrator.main(["install", "--target", str(path), "--agent", "devin"]) == 0
    git(path, "add", "-A")
    git(path, "commit", "-qm", "pack")
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_STATE"}
    for command in (f"{CLI} sync --session owner --focus api --area backend",
                    f"{CLI} sync --session other --focus docs --area docs",
                    f"{CLI} lock --session owner --area backend --scope src --reason moving"):
        subprocess.run(["sh", "-c", command], cwd=path, env=env, check=True, capture_output=True)
    return path


def devin_command(shop, event, matcher):
    config = json.loads((shop / orchestrator.DEVIN_HOOKS_PATH).read_text())
    return next(entry["hooks"][0]["command"] for entry in config[event]
                if entry["matcher"] == matcher)


def devin_event(event, tool, tool_input, **extra):
    return {"session_id": "devin-1", "prompt_id": "p1", "hook_event_name": event,
            "transcript_path": "/dev/null", "tool_name": tool, "tool_input": tool_input, **extra}


def run(shop, tmp_path, command, event, shell="sh", cwd=None, **extra):
    env = {"PATH": os.path.dirname(shutil.which("git")) + ":/usr/bin:/bin", "HOME": str(tmp_path),
           "XDG_DATA_HOME": os.environ["XDG_DATA_HOME"],
           "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"], "DEVIN_PROJECT_DIR": str(shop),
           **extra}
    return subprocess.run([shutil.which(shell), "-c", command], cwd=cwd or shop, env=env,
                          input=json.dumps(event), capture_output=True, text=True, timeout=60)


def test_install_writes_devins_hooks_at_the_top_level_with_its_tool_names(shop):
    config = json.loads((shop / orchestrator.DEVIN_HOOKS_PATH).read_text())
    assert set(config) == {"PreToolUse", "PostToolUse", "SessionStart", "SessionEnd", "Stop",
                           "UserPromptSubmit"}
    assert [e["matcher"] for e in config["PreToolUse"]] == ["edit|write|apply_patch|multi_edit",
                                                             "exec"]
    assert (shop / ".devin/rules/orchestrator.md").exists()
    # /orchestrator as a skill a person invokes (docs.devin.ai/cli/extensibility/skills/
    # creating-skills: .devin/skills/NAME/SKILL.md, frontmatter name, description, triggers)
    skill = (shop / ".devin/skills/orchestrator/SKILL.md").read_text()
    frontmatter = skill.split("---\n")[1]
    assert "name: orchestrator" in frontmatter and "  - user" in frontmatter
    assert "sh .windsurf/bin/orchestrator sync" in skill
    again = orchestrator.main(["install", "--target", str(shop), "--agent", "devin"])
    assert again == 0 and json.loads((shop / orchestrator.DEVIN_HOOKS_PATH).read_text()) == config


@pytest.mark.parametrize("shell", SHELLS)
def test_devin_is_bound_by_its_shell_and_blocked_from_a_foreign_lock(shop, tmp_path, shell):
    """A Devin conversation binds by running the tool through `exec`, then its `edit` and its
    shell are denied inside the owner's lock (exit 2 with `decision: block`), and allowed
    elsewhere; from a subfolder too, where only DEVIN_PROJECT_DIR says where the project is."""
    exec_line = devin_command(shop, "PreToolUse", "exec")
    edit_line = devin_command(shop, "PreToolUse", "edit|write|apply_patch|multi_edit")
    bind = devin_event("PreToolUse", "exec", {"command": f"{CLI} update --session other "
                                                          "--status in_progress",
                                              "shell_id": "main"})
    assert run(shop, tmp_path, exec_line, bind, shell).returncode == 0
    edit = devin_event("PreToolUse", "edit", {"file_path": str(shop / "src/api.py"),
                                              "old_string": "x", "new_string": "y"})
    denied = run(shop, tmp_path, edit_line, edit, shell, cwd=shop / "docs")
    assert denied.returncode == 2, denied
    answer = json.loads(denied.stdout)
    assert answer["decision"] == "block" and "owner's lock on backend" in answer["reason"]
    shell_write = devin_event("PreToolUse", "exec", {"command": "rm -rf src", "shell_id": "main"})
    assert run(shop, tmp_path, exec_line, shell_write, shell).returncode == 2
    free = devin_event("PreToolUse", "edit", {"file_path": str(shop / "docs/x.md")})
    allowed = run(shop, tmp_path, edit_line, free, shell)
    assert allowed.returncode == 0 and allowed.stdout == ""
    patch = devin_event("PreToolUse", "apply_patch", {"patch": "*** Begin Patch\n"
                                                      "*** Update File: docs/a.md\n@@\n"
                                                      "*** Update File: src/api.py\n@@\n"
                                                      "*** End Patch\n"})
    assert run(shop, tmp_path, edit_line, patch, shell).returncode == 2


def test_what_a_devin_command_changed_in_a_lock_is_reported_after_it(shop, tmp_path):
    exec_line = devin_command(shop, "PreToolUse", "exec")
    post_line = devin_command(shop, "PostToolUse", "exec")
    bind = devin_event("PreToolUse", "exec", {"command": f"{CLI} note --session other hi"})
    run(shop, tmp_path, exec_line, bind)
    script = "./tidy.sh"
    assert run(shop, tmp_path, exec_line, devin_event("PreToolUse", "exec",
                                                      {"command": script})).returncode == 0
    (shop / "src/api.py").unlink()
    after = run(shop, tmp_path, post_line, devin_event(
        "PostToolUse", "exec", {"command": script},
        tool_response={"success": True, "output": "", "error": None}))
    assert after.returncode == 0
    context = json.loads(after.stdout)["hookSpecificOutput"]["additionalContext"]
    assert "src/api.py deleted inside owner's lock on backend" in context


def test_a_missing_shim_never_blocks_devin(shop, tmp_path):
    """No shim in the checkout and no launcher kept per user: the edit goes through."""
    (shop / orchestrator.SHIM_PATH).unlink()
    edit = devin_event("PreToolUse", "edit", {"file_path": str(shop / "src/api.py")})
    nothing = tmp_path / "no-data"
    nothing.mkdir()
    result = run(shop, tmp_path, devin_command(shop, "PreToolUse", "edit|write|apply_patch|"
                                                                   "multi_edit"), edit,
                 XDG_DATA_HOME=str(nothing))
    assert result.returncode == 0 and "the action was allowed" in result.stderr


@pytest.fixture
def both(shop):
    """Devin's own hooks and Claude Code's, which Devin also loads from `.claude/`
    (docs.devin.ai/cli/extensibility/hooks/overview, Where Hooks Live)."""
    assert orchestrator.main(["install", "--target", str(shop), "--agent", "devin",
                              "--agent", "claude"]) == 0
    return shop


def claude_command(shop, event, matcher):
    settings = json.loads((shop / orchestrator.CLAUDE_SETTINGS_PATH).read_text())
    return next(entry["hooks"][0]["command"] for entry in settings["hooks"][event]
                if entry["matcher"] == matcher)


def test_a_claude_hook_devin_runs_judges_devins_payload(both, tmp_path):
    """`.claude/settings.json` holds matchers for Devin's tool names too: Devin's `edit` into
    the lock is denied through it, answered in Devin's contract."""
    line = claude_command(both, "PreToolUse", "edit|write|apply_patch|multi_edit")
    edit = devin_event("PreToolUse", "edit", {"file_path": str(both / "src/api.py")})
    denied = run(both, tmp_path, line, edit)
    assert denied.returncode == 2 and json.loads(denied.stdout)["decision"] == "block"


def test_both_hook_files_answering_one_devin_event_act_once(both, tmp_path):
    """One Devin command seen by the `.devin/` and the `.claude/` hooks: both deny a write into
    the lock alike; after a command, the report comes once and nothing is recorded twice."""
    devin_pre = devin_command(both, "PreToolUse", "exec")
    claude_pre = claude_command(both, "PreToolUse", "exec")
    devin_post = devin_command(both, "PostToolUse", "exec")
    claude_post = claude_command(both, "PostToolUse", "exec")
    bind = devin_event("PreToolUse", "exec", {"command": f"{CLI} note --session other hi"})
    for line in (devin_pre, claude_pre):
        assert run(both, tmp_path, line, bind).returncode == 0
    bound = {**bind, "hook_event_name": "PostToolUse",
             "tool_response": {"success": True, "output": "", "error": None}}
    for line in (devin_post, claude_post):  # the command ran: its after-events come
        run(both, tmp_path, line, bound)
    write = devin_event("PreToolUse", "exec", {"command": "echo x > src/api.py"})
    assert [run(both, tmp_path, line, write).returncode for line in (devin_pre, claude_pre)] == [2, 2]
    tidy = devin_event("PreToolUse", "exec", {"command": "./tidy.sh && echo x > docs/n.md"})
    for line in (devin_pre, claude_pre):
        assert run(both, tmp_path, line, tidy).returncode == 0
    (both / "src/api.py").unlink()
    (both / "docs/n.md").write_text("x\n")
    after = devin_event("PostToolUse", "exec", {"command": "./tidy.sh && echo x > docs/n.md"},
                        tool_response={"success": True, "output": "", "error": None})
    said = [run(both, tmp_path, line, after).stdout for line in (devin_post, claude_post)]
    assert sum("src/api.py deleted" in text for text in said) == 1, said
    status = json.loads(subprocess.run(["sh", "-c", f"{CLI} status --json"], cwd=both,
                                       capture_output=True, text=True, check=True).stdout)
    other = next(s for s in status["active_sessions"] if s["id"] == "other")
    assert other["trajectories"] == ["devin-1"] and other["touched_files"] == ["docs/n.md"]
    assert sum("src/api.py deleted" in note for note in status["global_notes"]) == 1
