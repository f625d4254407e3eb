"""The Windsurf pack: rendered files, install into other repositories, and every command line
the pack tells Cascade to run, executed from a bare shell the way Cascade would."""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

import orchestrator
from helpers import git

ROOT = Path(orchestrator.HERE)
COMMAND_LINE = re.compile(r"^\s*(sh \.windsurf/bin/orchestrator\b.*?)\s+#\s*(.+)$")
SAMPLE_VALUES = {
    "<session-id>": "demo-session", "<area>": "backend", "<path>": "src/api/handler.py",
    "<scope>": "src/api", "<focus>": "Demo focus", "<reason>": "demo reason",
    "<duration>": "1h", "<text>": "demo note", "<outcome>": "demo done", "<rule>": "intent_scope",
    "<directive>": "@directive demo", "<status>": "blocked", "<risk>": "demo risk",
    "<other-session>": "other-session",
}


@pytest.fixture
def target(tmp_path):
    """A repository with one commit, the pack installed and committed."""
    path = tmp_path / "target"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("target\n")
    assert orchestrator.main(["install", "--target", str(path)]) == 0
    git(path, "add", "-A")
    git(path, "commit", "-qm", "pack")
    return path


def shell(command, cwd, env):
    return subprocess.run(["sh", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, executable=shutil.which("sh"))


def pack_command_lines():
    """(command, allowed exit codes) for every annotated command line of the rendered pack."""
    found = []
    for path, text in orchestrator.render_pack().items():
        for line in text.splitlines():
            match = COMMAND_LINE.match(line)
            if match:
                codes = {int(code) for code in re.findall(r"(\d+):", match.group(2))}
                found.append((path, match.group(1), codes))
    return found


def fill(command):
    for placeholder, value in SAMPLE_VALUES.items():
        command = command.replace(placeholder, value)
    assert "<" not in command, f"unknown placeholder in {command}"
    return command


# ---------------------------------------------------------------------------- rendered files

def test_every_pack_file_is_within_windsurf_limits():
    for path, text in orchestrator.render_pack().items():
        assert len(text) <= 12000, f"{path} has {len(text)} characters"
        if path.endswith(".md"):
            assert text.startswith("---\n")
            frontmatter = text.split("---\n")[1]
            fields = dict(line.split(": ", 1) for line in frontmatter.strip().splitlines())
            if "/workflows/" in path:
                assert set(fields) == {"description"} and fields["description"].strip()
            else:
                assert fields == {"trigger": "always_on"}


def test_committed_pack_of_this_repository_is_not_stale():
    for path, text in orchestrator.render_pack().items():
        committed = ROOT / path
        assert committed.exists(), f"{path} missing: run `orchestrator.py install --target .`"
        assert committed.read_text(encoding="utf-8") == text, \
            f"{path} is stale: run `.venv/bin/python orchestrator.py install --target .`"


def test_workflow_has_a_section_for_every_subcommand():
    text = orchestrator.render_pack()[".windsurf/workflows/orchestrator.md"]
    for section in ("sync", "lock", "unlock", "status", "complete", "note", "Build failures",
                    "Directives", "audit"):
        assert re.search(rf"^### {section}\b", text, re.M), section


def test_pack_holds_every_command_the_workflow_promises():
    commands = {line.split()[2] for _, line, _ in pack_command_lines()}
    assert commands >= {"sync", "lock", "renew", "unlock", "status", "update", "complete",
                        "note", "check", "build-failure", "directive", "audit"}


def test_no_flag_in_the_pack_that_the_cli_lacks():
    parser = orchestrator.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    known_anywhere = {flag for sub in subparsers.values() for flag in sub._option_string_actions}
    for path, line, _ in pack_command_lines():
        words = shlex.split(fill(line))
        sub = subparsers[words[2]]
        for word in words[3:]:
            if word.startswith("--"):
                assert word in sub._option_string_actions, f"{path}: {words[2]} has no {word}"
    for path, text in orchestrator.render_pack().items():
        if not path.endswith(".md"):
            continue  # the shim's own git flags are not ours
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]+", text):
            assert flag in known_anywhere, f"{path} mentions {flag}, which no command has"


def test_committed_files_hold_no_machine_specific_path(target):
    for path in orchestrator.render_pack():
        text = (target / path).read_text()
        for machine_path in (str(target), str(ROOT), os.path.dirname(os.path.realpath(
                shutil.which("python3") or "/usr/bin/python3"))):
            assert machine_path not in text, f"{path} mentions {machine_path}"
    launcher = (target / orchestrator.LAUNCHER_PATH).read_text()
    assert str(ROOT) in launcher  # the per-machine part holds them instead
    ignored = subprocess.run(["git", "check-ignore", orchestrator.LAUNCHER_PATH,
                              ".windsurf/orchestrator/session_state.yaml"], cwd=target,
                             capture_output=True, text=True)
    assert ignored.returncode == 0 and len(ignored.stdout.splitlines()) == 2


# ---------------------------------------------------------------------------- every command line, from a bare shell

@pytest.mark.slow
def test_every_command_line_of_the_pack_runs_and_exits_as_the_prompt_says(target, bare_env):
    register = fill('sh .windsurf/bin/orchestrator sync --session <session-id> --focus "<focus>" '
                    '--area <area> --area src')
    lines = pack_command_lines()
    assert len(lines) >= 14
    for path, line, codes in lines:
        assert codes, f"{path}: no exit codes noted for {line}"
        assert shell(register, target, bare_env).returncode == 0
        result = shell(fill(line), target, bare_env)
        assert result.returncode in codes, (path, line, result.returncode, result.stdout,
                                            result.stderr)
        assert "Traceback" not in result.stderr


def test_report_only_and_conflict_paths_exit_as_the_prompt_says(target, bare_env):
    """The exit-1 branches the prompts describe, with another session holding the area."""
    cli = "sh .windsurf/bin/orchestrator"
    assert shell(f"{cli} sync --session owner --focus own --area backend", target, bare_env).returncode == 0
    assert shell(f'{cli} lock --session owner --area backend --scope src/api --reason "mid-move" '
                 "--unstable", target, bare_env).returncode == 0
    assert shell(f"{cli} sync --session demo-session --focus x --area backend", target,
                 bare_env).returncode == 0
    failure = shell(fill(f"{cli} build-failure --session <session-id> --path <path>"), target, bare_env)
    assert failure.returncode == 1
    assert ('Build failed in backend. This area is locked by owner: "mid-move". Expected '
            "instability: yes. I will not attempt a fix.") in failure.stdout
    check = shell(fill(f"{cli} check --area <area> --path <path>"), target, bare_env)
    assert check.returncode == 1 and "locked" not in check.stderr and "owner" in check.stdout
    lock = shell(fill(f'{cli} lock --session <session-id> --area <area> --scope <scope> '
                      f'--reason "<reason>" --duration <duration>'), target, bare_env)
    assert lock.returncode == 1


def test_a_command_missing_a_flag_exits_2_without_waiting(target, bare_env):
    result = subprocess.run(["sh", ".windsurf/bin/orchestrator", "lock"], cwd=target,
                            env=bare_env, capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "missing --session, --area, --scope, --reason" in result.stderr


def test_hints_name_the_installed_command(target, bare_env):
    cli = "sh .windsurf/bin/orchestrator"
    shell(f"{cli} sync --session owner --focus own --area backend", target, bare_env)
    shell(f'{cli} lock --session owner --area backend --scope src --reason r --allow-external-fixes',
          target, bare_env)
    result = shell(f"{cli} build-failure --session other --path src/x.py", target, bare_env)
    assert result.returncode == 0
    assert f"{cli} note --session other 'Fixed the build in src/x.py" in result.stdout


def test_pack_works_from_a_worktree_made_after_the_pack_was_committed(target, bare_env, tmp_path):
    cli = "sh .windsurf/bin/orchestrator"
    assert shell(f"{cli} sync --session main-work --focus m --area backend", target,
                 bare_env).returncode == 0
    worktree = tmp_path / "worktrees" / "feature"
    git(target, "worktree", "add", "-q", str(worktree), "-b", "feature")
    assert not (worktree / orchestrator.LAUNCHER_PATH).exists()
    result = shell(f"{cli} sync --session tree-work --focus t --area frontend --json", worktree,
                   bare_env)
    assert result.returncode == 0, result.stderr
    seen = shell(f"{cli} status --json", target, bare_env)
    assert '"tree-work"' in seen.stdout and '"main-work"' in seen.stdout
    assert not (worktree / ".windsurf" / "orchestrator").exists()
    from_subfolder = worktree / "deep" / "er"
    from_subfolder.mkdir(parents=True)
    result = shell("sh ../../.windsurf/bin/orchestrator status --json", from_subfolder, bare_env)
    assert result.returncode == 0 and '"tree-work"' in result.stdout


def test_shim_without_a_launcher_says_how_to_install(target, bare_env):
    (target / orchestrator.LAUNCHER_PATH).unlink()
    result = shell("sh .windsurf/bin/orchestrator status", target, bare_env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "orchestrator.py install --target" in result.stderr


# ---------------------------------------------------------------------------- install

def test_install_is_idempotent(target, capsys):
    capsys.readouterr()
    assert orchestrator.main(["install", "--target", str(target)]) == 0
    out = capsys.readouterr().out
    for path in orchestrator.render_pack():
        assert re.search(rf"unchanged\s+{re.escape(path)}", out)
    assert "windsurf.cascadeCommandsAllowList" in out
    assert '"sh .windsurf/bin/orchestrator"' in out
    assert (target / ".gitignore").read_text().count(".windsurf/orchestrator/") == 1
    assert subprocess.run(["git", "status", "--porcelain"], cwd=target, capture_output=True,
                          text=True).stdout == ""


def test_install_keeps_a_file_the_user_changed_and_shows_the_difference(target, capsys):
    workflow = target / ".windsurf/workflows/orchestrator.md"
    workflow.write_text(workflow.read_text().replace("# /orchestrator", "# /orchestrator (ours)"))
    mine = workflow.read_text()
    capsys.readouterr()
    assert orchestrator.main(["install", "--target", str(target)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"kept\s+\.windsurf/workflows/orchestrator\.md", out)
    assert "-# /orchestrator (ours)" in out and "+# /orchestrator" in out
    assert "--force" in out
    assert workflow.read_text() == mine
    assert orchestrator.main(["install", "--target", str(target), "--force"]) == 0
    assert workflow.read_text() == orchestrator.render_pack()[".windsurf/workflows/orchestrator.md"]


def test_install_upgrades_its_own_untouched_older_output(target):
    rule = target / ".windsurf/rules/orchestrator.md"
    older = orchestrator.mark_generated("---\ntrigger: always_on\n---\nan older version\n", "md")
    rule.write_text(older)
    assert orchestrator.untouched_generated(older)
    assert orchestrator.main(["install", "--target", str(target)]) == 0
    assert rule.read_text() == orchestrator.render_pack()[".windsurf/rules/orchestrator.md"]


def test_install_appends_to_an_existing_gitignore(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # install wants a repository
    (tmp_path / ".gitignore").write_text("node_modules/")
    assert orchestrator.main(["install", "--target", str(tmp_path)]) == 0
    assert (tmp_path / ".gitignore").read_text().splitlines()[0] == "node_modules/"
    assert ".windsurf/orchestrator/" in (tmp_path / ".gitignore").read_text().splitlines()


def test_install_into_a_missing_folder_is_bad_input(tmp_path, capsys):
    assert orchestrator.main(["install", "--target", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_launcher_imports_the_module_rather_than_running_it(target):
    launcher = (target / orchestrator.LAUNCHER_PATH).read_text()
    assert "import orchestrator" in launcher
    assert "orchestrator.py" not in launcher.split("exec", 1)[1]


def test_a_clone_without_the_tool_installed_never_blocks_the_agent(target, bare_env):
    (target / orchestrator.LAUNCHER_PATH).unlink()
    event = '{"agent_action_name": "pre_write_code", "trajectory_id": "t", "tool_info": {}}'
    result = subprocess.run(["sh", ".windsurf/bin/orchestrator", "hook"], cwd=target,
                            env=bare_env, input=event, capture_output=True, text=True)
    assert result.returncode == 0 and "not installed" in result.stderr


def test_a_launcher_whose_python_is_gone_says_so_and_never_blocks(target, bare_env):
    launcher = target / orchestrator.LAUNCHER_PATH
    launcher.write_text(launcher.read_text().replace(orchestrator.sys.executable, "/nonexistent/python"))
    for argv, code in ((["hook"], 0), (["status"], 2)):
        result = subprocess.run(["sh", ".windsurf/bin/orchestrator", *argv], cwd=target,
                                env=bare_env, input="{}", capture_output=True, text=True)
        assert result.returncode == code and "run install again" in result.stderr


def test_install_into_a_subfolder_of_a_repository_is_refused(target, capsys):
    (target / "sub").mkdir()
    assert orchestrator.main(["install", "--target", str(target / "sub")]) == 2
    assert f"give its root: --target {target}" in capsys.readouterr().err
