"""Installed the way Python tools are: a wheel with the `orchestrator` command and its
templates, installed into a fresh virtualenv, installing a pack whose hook enforces; the
reference generated from the parser; evidence kept when something breaks."""

import io
import json
import os
import shutil
import subprocess
import sys
import tomllib

import pytest

import orchestrator as o
from helpers import committed_repo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_version_is_one_in_pyproject_and_the_module(capsys):
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        project = tomllib.load(handle)["project"]
    assert project["version"] == o.__version__
    assert project["scripts"]["orchestrator"] == "orchestrator:run"
    assert o.main(["--version"]) == 0
    assert capsys.readouterr().out == f"orchestrator {o.__version__}\n"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The project's wheel, built from a copy of the sources (the build writes build/ and
    *.egg-info beside them), without the network: setuptools from the test environment."""
    source = tmp_path_factory.mktemp("source")
    for name in ("orchestrator.py", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source)
    for folder in ("prompts", "workflows"):
        shutil.copytree(os.path.join(ROOT, folder), source / folder)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(source)], check=True,
                   capture_output=True, timeout=300)
    (built,) = out.glob("session_orchestrator-*.whl")
    return built


def test_the_wheel_installs_a_command_whose_pack_enforces_locks(wheel, tmp_path):
    """pip into a fresh virtualenv (the dependencies come from the test environment's
    site-packages, as if pip had fetched them): `orchestrator --version`, `install --target`
    a scratch repository, and a Claude Code edit into another session's lock denied through
    the installed pack's hook command line."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True,
                   timeout=300)
    command = venv / "bin" / "orchestrator"
    share = venv / "share" / "session-orchestrator"
    assert (share / "prompts" / "messages.txt").is_file()
    assert (share / "workflows" / "shim.sh.j2").is_file()
    site = next(p for p in sys.path if p.endswith("site-packages"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env["PYTHONPATH"] = site
    version = subprocess.run([str(command), "--version"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert version.stdout.strip() == f"orchestrator {o.__version__}", version.stderr
    repo = committed_repo(tmp_path / "repo", {"src/api/a.py": "x = 1\n"})
    installed = subprocess.run([str(command), "install", "--target", str(repo), "--agent",
                                "claude"], env=env, cwd=repo, capture_output=True, text=True,
                               timeout=60)
    assert installed.returncode == 0, installed.stderr
    assert str(venv) in (repo / o.LAUNCHER_PATH).read_text()  # this installation runs the pack
    shim = ["sh", str(repo / o.SHIM_PATH)]
    plain = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # what an agent hands a hook
    for argv in (["sync", "--session", "owner", "--focus", "api", "--area", "api"],
                 ["sync", "--session", "other", "--focus", "docs", "--area", "docs"],
                 ["lock", "--session", "owner", "--area", "api", "--scope", "src/api",
                  "--reason", "moving"]):
        done = subprocess.run(shim + argv, env=plain, cwd=repo, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    hooks = json.loads((repo / o.CLAUDE_SETTINGS_PATH).read_text())["hooks"]["PreToolUse"]
    line = next(h["hooks"][0]["command"] for h in hooks if "Edit" in h["matcher"])
    bind = next(h["hooks"][0]["command"] for h in hooks if h["matcher"] == "Bash")
    event = {"session_id": "c1", "cwd": str(repo), "hook_event_name": "PreToolUse",
             "transcript_path": "", "tool_use_id": "t"}
    subprocess.run(["sh", "-c", bind], cwd=repo, env={**plain, "CLAUDE_PROJECT_DIR": str(repo)},
                   input=json.dumps({**event, "tool_name": "Bash", "tool_input": {
                       "command": "sh .windsurf/bin/orchestrator update --session other "
                                  "--status in_progress"}}), text=True, capture_output=True)
    denied = subprocess.run(["sh", "-c", line], cwd=repo,
                            env={**plain, "CLAUDE_PROJECT_DIR": str(repo)}, text=True,
                            capture_output=True, input=json.dumps({
                                **event, "tool_name": "Edit",
                                "tool_input": {"file_path": str(repo / "src/api/a.py")}}))
    answer = json.loads(denied.stdout)["hookSpecificOutput"]
    assert answer["permissionDecision"] == "deny" and "owner's lock on api" in answer[
        "permissionDecisionReason"]


def test_every_command_and_flag_is_documented_and_the_reference_is_not_stale():
    missing = [(name, flag) for name, (_, flags) in o.COMMAND_FLAGS.items()
               for flag, _, help_text, _ in flags if not help_text]
    assert missing == []
    check = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "cli_reference.py"),
                            "--check"], capture_output=True)
    assert check.returncode == 0, "docs/cli.md is stale: run python scripts/cli_reference.py"
    reference = open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8").read()
    for name, (_, flags) in o.COMMAND_FLAGS.items():
        assert f"## {name}\n" in reference
        for flag, *_ in flags:
            assert f"`{flag}`" in reference, (name, flag)


def test_the_readme_is_read_in_five_minutes_and_links_what_exists():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert len(readme.encode("utf-8")) <= 16 * 1024
    import re
    for target in re.findall(r"\]\(((?:docs/)?[A-Za-z-]+\.md)", readme):
        assert os.path.isfile(os.path.join(ROOT, target)), target


def test_an_internal_error_keeps_its_traceback_with_the_version(run, monkeypatch):
    def broken(ctx, args):
        raise RuntimeError("a bug")
    monkeypatch.setitem(o.COMMANDS, "status", broken)
    result = run("status")
    assert result.code == o.EXIT_INTERNAL
    log = os.path.join(o.user_cache_folder(), o.ERROR_LOG)
    assert f"the traceback is in {log}" in result.err
    kept = open(log, encoding="utf-8").read()
    assert f"orchestrator {o.__version__}" in kept and "RuntimeError: a bug" in kept
    assert "Traceback (most recent call last)" in kept


def test_a_hook_that_failed_open_says_where_its_traceback_is(run, monkeypatch):
    def broken(ctx, event):
        raise KeyError("surprise")
    monkeypatch.setattr(o, "handle_hook_event", broken)
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({
        "agent_action_name": "pre_write_code", "trajectory_id": "t",
        "tool_info": {"file_path": "/x"}})))
    result = run("hook")
    assert result.code == 0  # the agent goes on
    assert "the action was allowed (the traceback is in" in result.err
    assert "KeyError: 'surprise'" in open(os.path.join(o.user_cache_folder(), o.ERROR_LOG),
                                          encoding="utf-8").read()
