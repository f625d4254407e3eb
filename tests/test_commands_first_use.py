"""What a person meets the first time: paths and scopes that mean the same from every folder,
a clear refusal outside a repository, and messages that say what to do."""

import json
import os
import subprocess
import sys

import pytest

import orchestrator
from helpers import git

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------- one meaning per path

def test_a_scope_resolves_from_the_folder_the_command_runs_in_like_a_path(run, session, repo,
                                                                           monkeypatch):
    """From internal/domain/energy, `--scope tariff.go` and `--path tariff.go` both mean
    internal/domain/energy/tariff.go."""
    session("api")
    session("ui")
    folder = repo / "internal" / "domain" / "energy"
    folder.mkdir(parents=True)
    (folder / "tariff.go").write_text("package energy\n")
    monkeypatch.chdir(folder)
    locked = run("--json", "lock", "--session", "api", "--area", "backend", "--scope",
                 "tariff.go", "--reason", "moving tariff types")
    assert locked.code == 0, locked
    payload = json.loads(locked.out)
    assert payload["lock"]["scope"] == ["internal/domain/energy/tariff.go"]
    assert payload["matches_nothing_yet"] == []
    verdict = json.loads(run("--json", "build-failure", "--session", "ui", "--path",
                             "tariff.go").out)
    assert verdict["verdict"] == "report_only"
    up = run("lock", "--session", "api", "--area", "schema", "--scope", "../../../db/**",
             "--reason", "r")
    assert up.code == 0 and "db/**" in up.out
    out = run("lock", "--session", "api", "--area", "x", "--scope", "../../../../x",
              "--reason", "r")
    assert out.code == 2 and "leaves the repository" in out.err


def test_a_scope_on_nothing_yet_is_allowed_and_said(run, session, repo):
    session("api")
    result = run("lock", "--session", "api", "--area", "new", "--scope", "services/billing/**",
                 "--reason", "creating it")
    assert result.code == 0
    assert "Nothing exists yet at services/billing/**" in result.out


# ---------------------------------------------------------------------------- outside a repository

def cli_in(folder, *argv, env=None):
    full = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_STATE"}
    full.update(env or {})
    return subprocess.run([sys.executable, os.path.join(ROOT, "orchestrator.py"), *argv],
                          cwd=folder, env=full, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("argv", [["status"], ["sync", "--session", "a", "--focus", "f",
                                                "--area", "x"], ["check"]])
def test_outside_a_repository_a_command_refuses_and_writes_nothing(tmp_path, argv):
    plain = tmp_path / "plain"
    (plain / "sub").mkdir(parents=True)
    for folder in (plain, plain / "sub"):
        result = cli_in(folder, *argv)
        assert result.returncode == 2, result
        assert "not inside a git repository" in result.stderr
        assert "--state" in result.stderr and result.stderr.count("\n") == 1
    assert not any(plain.rglob("*.yaml")) and not (plain / ".windsurf").exists()
    given = cli_in(plain, "--state", str(tmp_path / "s.yaml"), *argv)
    assert given.returncode in (0, 1), given


def test_install_refuses_a_folder_that_is_no_repository(tmp_path):
    result = cli_in(tmp_path, "install", "--target", str(tmp_path))
    assert result.returncode == 2 and "is not a git repository" in result.stderr
    assert "Commit the files above" not in result.stdout
    assert not (tmp_path / ".windsurf").exists()


# ---------------------------------------------------------------------------- messages

@pytest.mark.parametrize("typed, meant", [("--areas", "--area"), ("--sesion", "--session"),
                                          ("--unstabel", "--unstable")])
def test_a_misspelled_flag_gets_a_suggestion(run, typed, meant):
    argv = ["lock", "--session", "a", "--area", "b", "--scope", "c", "--reason", "r"]
    result = run(*argv, typed, *([] if typed == "--unstabel" else ["x"]))
    assert result.code == 2 and f"did you mean {meant}?" in result.err


def test_a_duration_without_unit_suggests_one(run, session):
    session("api")
    result = run("lock", "--session", "api", "--area", "b", "--scope", "c", "--reason", "r",
                 "--duration", "90")
    assert result.code == 2 and "did you mean 90m (minutes) or 90h (hours)?" in result.err


def test_an_unknown_session_message_starts_a_sentence(run, session):
    session("ui-polish")
    result = run("note", "--session", "ui-polsh", "hello")
    assert result.code == 2
    assert "No active session 'ui-polsh'. Did you mean 'ui-polish'?" in result.err


def test_status_says_when_the_viewer_does_not_exist(run, session):
    session("api")
    assert "as nobody (no active session of that name)" in run("status", "--session",
                                                               "nobody").out
    assert "(no active session" not in run("status", "--session", "api").out


def test_update_lists_only_the_statuses_it_takes(run, session):
    session("api")
    wrong = run("update", "--session", "api", "--status", "nope")
    assert wrong.code == 2 and "completed" not in wrong.err
    done = run("update", "--session", "api", "--status", "done")
    assert done.code == 2 and "complete --session api" in done.err


def test_renew_says_when_nothing_changed(clock, run, session):
    session("api")
    assert run("lock", "--session", "api", "--area", "b", "--scope", "c", "--reason", "r",
               "--duration", "4h").code == 0
    result = run("--json", "renew", "--session", "api", "--duration", "1h")
    payload = json.loads(result.out)
    assert result.code == 0 and payload["renewed"] == [] and len(payload["unchanged"]) == 1
    text = run("renew", "--session", "api", "--duration", "1h").out
    assert text.startswith("Not renewed: b already runs until") and "nothing changed" in text


def test_sync_force_names_whose_lock_it_overrode(run, session):
    session("api")
    session("ui")
    assert run("lock", "--session", "api", "--area", "b", "--scope", "src", "--reason",
               "r").code == 0
    result = run("sync", "--session", "ui", "--area", "front", "--lock-scope", "src/x",
                 "--reason", "mine", "--force")
    assert result.code == 0 and "Taken with --force over the lock of api" in result.out


def test_every_session_flag_has_help(capsys):
    for command in ("lock", "renew", "unlock", "update", "complete", "directive"):
        assert orchestrator.main([command, "--help"]) == 0
        shown = capsys.readouterr().out
        session_line = next(l for l in shown.splitlines() if l.strip().startswith("--session"))
        assert len(session_line.split()) > 2, (command, session_line)


def test_build_failure_words_an_own_area_and_keeps_the_fix_note_outside_quotes(run, session):
    session("api")
    session("ui")
    assert run("lock", "--session", "api", "--area", "frontend", "--scope", "web", "--reason",
               "r", "--allow-external-fixes").code == 0
    own = run("build-failure", "--session", "api", "--area", "frontend")
    assert "frontend is your own lock" in own.out
    assert "shared state written by other sessions" not in own.out
    other = run("build-failure", "--session", "ui", "--path", "web/x.ts")
    command = next(l for l in other.out.splitlines() if " note --session ui " in l)
    assert command.rstrip().endswith("' WHAT")


# ---------------------------------------------------------------------------- questions that fit

ENTER, BACKSPACE = "\r", "\x7f"


def test_lock_with_no_session_offers_to_register_one_first(ask, run):
    keys = ("y" + "api-work" + ENTER + "Split the API" + ENTER + "backend" + ENTER  # sync
            + "backend" + ENTER + "src" + ENTER + "moving things" + ENTER + "n" + "n" + ENTER)
    code, out, _ = ask(keys, "lock")
    assert code == 0, out
    assert "Registered session api-work." in out and "Locked backend for api-work" in out


def test_lock_with_no_session_declined_stops_before_any_other_question(ask):
    code, _, err = ask("n", "lock")
    assert code == 2 and "register one first" in err


def test_the_duration_default_is_shown_not_typed_and_errors_name_no_flag(ask, run, session,
                                                                          monkeypatch):
    session("api")
    shown = []
    real_text = orchestrator.Asker.text

    def spy(self, message, default="", check=None, optional=False):
        if message.startswith("For how long?"):
            shown.append((message, default, check and _error_of(check, "2 hours")))
        return real_text(self, message, default, check, optional)
    monkeypatch.setattr(orchestrator.Asker, "text", spy)
    code, out, _ = ask(ENTER + "src" + ENTER + "r" + ENTER + "n" + "n" + ENTER,  # area: backend
                       "lock", "--session", "api")
    assert code == 0 and "(2 h)" in out  # Enter took the default
    [(message, default, error)] = shown
    assert "Enter for 2h" in message and default == ""
    assert error and "--duration" not in error and "is not a duration" in error


def _error_of(check, answer):
    try:
        check(answer)
    except orchestrator.OrchestratorError as error:
        return orchestrator.regex(r"^(?:[a-z-]+: )?--[a-z-]+ ").sub("", error.message)
    return None


def test_build_failure_asks_where_in_a_terminal(ask, run, session):
    session("api")
    assert run("lock", "--session", "api", "--area", "backend", "--scope", "src",
               "--reason", "r").code == 0
    code, out, _ = ask(ENTER + "src/x.py" + ENTER, "build-failure")  # session: api (first)
    assert code == 0 and "Verdict: fix" in out


@pytest.mark.parametrize("area", ["my area; rm -rf", "a | b", "x && y", "$(id)", "`id`", "a > b"])
def test_an_area_that_is_a_pasted_command_line_is_refused(run, session, area):
    session("api")
    result = run("lock", "--session", "api", "--area", area, "--scope", "src", "--reason", "r")
    assert result.code == 2 and "belongs to a shell command line" in result.err


def test_check_in_a_terminal_asks_whose_areas(ask, run, session):
    session("api", "backend")
    session("ui", "src/api/x.py")
    assert run("lock", "--session", "api", "--area", "backend", "--scope", "src/api",
               "--reason", "r").code == 0
    code, out, _ = ask("\x1b[B" + ENTER, "check")  # the second session: ui
    assert code == 1 and "api" in out


def test_a_yaml_error_names_the_line_where_the_broken_part_begins(run, session, state_path):
    session("api")
    lines = state_path.read_text(encoding="utf-8").splitlines()
    number = next(i for i, line in enumerate(lines) if line.strip().startswith("focus:"))
    lines[number] = "    focus: [never closed"
    state_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run("status")
    assert result.code == 3
    assert f"in what begins at line {number + 1}" in result.err
    assert result.err.count(str(state_path)) <= 1  # the path once; the hint names it shorter


def test_an_existing_area_with_a_shell_character_can_still_be_released(run, session, state_path):
    session("api")
    assert run("lock", "--session", "api", "--area", "rnd", "--scope", "lab", "--reason",
               "r").code == 0
    text = state_path.read_text(encoding="utf-8")
    state_path.write_text(text.replace("area: rnd", 'area: "R&D"'), encoding="utf-8")
    assert run("unlock", "--session", "api", "--area", "R&D").code == 0


def test_build_failure_without_a_session_prints_a_placeholder_not_none(run, session):
    session("api")
    assert run("lock", "--session", "api", "--area", "b", "--scope", "src", "--reason", "r",
               "--allow-external-fixes").code == 0
    out = run("build-failure", "--path", "src/x.py").out
    assert "--session <your-session>" in out and "None" not in out


def test_the_launcher_puts_no_current_folder_before_the_standard_library(tmp_path):
    """A `re.py` in the repository must not shadow the standard library's `re`."""
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    assert orchestrator.main(["install", "--target", str(repo)]) == 0
    (repo / "re.py").write_text("raise SystemExit('shadowed')\n")
    result = subprocess.run(["sh", ".windsurf/bin/orchestrator", "status"], cwd=repo,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "shadowed" not in result.stderr + result.stdout
