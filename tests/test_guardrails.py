"""Behaviour added after a review and a new-user trial: each promise the README makes about it."""

import json
import subprocess
import sys

import orchestrator
from helpers import as_json


def test_a_missing_dependency_is_a_one_line_exit_2(run, session, monkeypatch):
    session("api", "backend")
    monkeypatch.setitem(sys.modules, "strictyaml", None)  # as if it were not installed
    result = run("note", "--session", "api", "hello")
    assert result.code == 2
    assert result.err.startswith("orchestrator: strictyaml is not installed for ")
    assert "make install" in result.err and len(result.err.splitlines()) == 1


def test_sync_of_an_existing_id_keeps_its_focus_and_says_so(run, session):
    session("api", "backend", focus="Split the API")
    result = run("sync", "--session", "api", "--focus", "Something else", "--area", "backend")
    assert result.code == 0
    assert 'Its focus stays "Split the API"' in result.out
    assert "new session id" in result.out


def test_update_cannot_complete_a_session(run, session, state_path):
    session("api", "backend")
    before = state_path.read_bytes()
    result = run("update", "--session", "api", "--status", "completed")
    assert result.code == 2 and "complete --session api --outcome" in result.err
    assert state_path.read_bytes() == before


def test_an_unsigned_note_cannot_pass_for_a_sessions(run):
    assert run("note", "[api] deploy now").code == 0
    assert run("note", "plain words").code == 0
    notes = as_json(run("status", "--json"))["global_notes"]
    assert notes == ["(unsigned) [api] deploy now", "plain words"]


def test_an_emptied_state_file_with_a_backup_is_damage(run, session, state_path):
    session("api", "backend")
    state_path.write_text("")
    result = run("status")
    assert result.code == 3 and "is empty, but the tool's last copy holds entries" in result.err
    assert state_path.read_text() == ""


def test_paths_typed_in_a_subfolder_are_relative_to_it(run, session, repo, monkeypatch):
    session("api", "backend")
    run("lock", "--session", "api", "--area", "backend", "--scope", "internal/energy",
        "--reason", "r")
    (repo / "internal").mkdir()
    monkeypatch.chdir(repo / "internal")
    result = run("build-failure", "--session", "web", "--path", "energy/tariff.go")
    assert result.code == 1 and result.out.startswith("Verdict: report_only")
    assert run("check", "--path", "elsewhere.go").code == 0


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


def test_the_process_entry_point_is_main_then_a_frozen_collector(repo, session, capsys,
                                                                 monkeypatch):
    """run() (the launcher's and `python orchestrator.py`'s entry) returns main()'s exit code
    and freezes the garbage collector, so the exiting interpreter skips a last full collection."""
    import gc
    session("api", "backend")
    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    monkeypatch.setattr(sys, "argv", ["orchestrator.py", "build-failure", "--session", "web",
                                      "--area", "backend"])
    assert orchestrator.run() == orchestrator.main(sys.argv[1:])
    assert frozen == [True]
    launcher = (orchestrator.WORKFLOWS_DIR + "/launcher.sh.j2")
    with open(launcher, encoding="utf-8") as handle:
        assert "sys.exit(orchestrator.run())" in handle.read()
