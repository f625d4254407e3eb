"""A person at a terminal: questionary asks for what the flags left out.

Each flow is driven through real questionary prompts with prompt_toolkit's pipe input and a
dummy output; the keystrokes are what a person would type."""

import subprocess
import sys

import pytest

import orchestrator

DOWN, ENTER, SPACE, ESC, CTRL_C = "\x1b[B", "\r", " ", "\x1b", "\x03"


def state_of(run):
    import json
    result = run("status", "--json")
    assert result.code == 0
    return json.loads(result.out)


def test_sync_asks_id_focus_and_areas(ask, run):
    code, out, _ = ask("y" + "api-work" + ENTER + "Split the API" + ENTER + "backend, docs" + ENTER,
                       "sync")
    assert code == 0
    assert "Registered session api-work." in out
    [session] = state_of(run)["active_sessions"]
    assert (session["id"], session["focus"], session["touched_areas"]) == \
        ("api-work", "Split the API", ["backend", "docs"])


def test_sync_suggests_the_branch_name_as_id(ask, run, repo):
    subprocess.run(["git", "checkout", "-q", "-b", "feature/Energy_Tariffs"], cwd=repo, check=True)
    code, _, _ = ask("y" + ENTER + "Tariffs" + ENTER + "backend" + ENTER, "sync")
    assert code == 0
    assert state_of(run)["active_sessions"][0]["id"] == "feature-energy-tariffs"


def test_sync_offers_areas_already_in_the_state(ask, run, session):
    session("first", "backend", "frontend")
    # Areas known: backend, frontend. Tick the second one with Down + Space, type nothing else.
    code, _, _ = ask("y" + "second" + ENTER + "UI" + ENTER + DOWN + SPACE + ENTER + ENTER, "sync")
    assert code == 0
    assert orchestrator_session(run, "second")["touched_areas"] == ["frontend"]


def orchestrator_session(run, session_id):
    return next(s for s in state_of(run)["active_sessions"] if s["id"] == session_id)


def test_sync_declined_only_reports(ask, run):
    code, out, _ = ask("n", "sync")
    assert code == 0
    assert "ACTIVE SESSIONS (0)" in out
    assert state_of(run)["active_sessions"] == []


def test_validation_rejects_then_accepts(ask, run):
    # "Bad Id" is refused as it is typed; erase it and type a good one.
    code, _, _ = ask("y" + "Bad Id" + ENTER + "\x7f" * 6 + "good-id" + ENTER + "Focus" + ENTER +
                     "backend" + ENTER, "sync")
    assert code == 0
    assert state_of(run)["active_sessions"][0]["id"] == "good-id"


def test_interactive_lock_gives_the_same_lock_as_flags(ask, run, session):
    session("api", "backend")
    # session picked from the list, area picked from the list, scope typed, reason typed,
    # unstable yes, external fixes no, duration: a bad one first, then 90m.
    keys = (ENTER + ENTER + "src/api, src/db" + ENTER + "moving types" + ENTER + "y" + "n" +
            "\x7f\x7f" + "soon" + ENTER + "\x7f" * 4 + "90m" + ENTER)
    code, out, _ = ask(keys, "lock")
    assert code == 0, out
    [asked] = state_of(run)["locks"]
    assert run("unlock", "--session", "api", "--all").code == 0
    assert run("lock", "--session", "api", "--area", "backend", "--scope", "src/api", "--scope",
               "src/db", "--reason", "moving types", "--unstable", "--duration", "90m").code == 0
    [flagged] = state_of(run)["locks"]
    ignore = {"acquired_at", "expires_at", "remaining_seconds"}
    assert {k: v for k, v in asked.items() if k not in ignore} == \
        {k: v for k, v in flagged.items() if k not in ignore}


def test_lock_conflict_asks_and_defaults_to_no(ask, run, session, state_path):
    session("api", "backend")
    session("web", "backend")
    assert run("lock", "--session", "api", "--area", "backend", "--scope", "src",
               "--reason", "mine").code == 0
    before = state_path.read_bytes()
    code, out, err = ask(ENTER, "lock", "--session", "web", "--area", "backend", "--scope",
                         "src/web", "--reason", "theirs", "--duration", "1h")
    assert code == 1
    assert "locked by api" in out
    assert "lock not taken" in err
    assert state_path.read_bytes() == before


def test_lock_conflict_confirmed_forces(ask, run, session):
    session("api", "backend")
    session("web", "backend")
    run("lock", "--session", "api", "--area", "backend", "--scope", "src", "--reason", "mine")
    code, out, _ = ask("y", "lock", "--session", "web", "--area", "backend", "--scope", "src/web",
                       "--reason", "theirs", "--duration", "1h")
    assert code == 0
    assert "Taken with --force over the lock of api" in out
    assert {l["owner"] for l in state_of(run)["locks"]} == {"api", "web"}


def test_a_gone_holder_is_offered_as_a_take_over_not_a_force(clock, ask, run, session):
    """When every holder in the way is stale or ended, the question offers --take-over (yes by
    default); the lock moves in the open, never doubled as --force would."""
    session("api", "backend")
    session("web", "backend")
    run("lock", "--session", "api", "--area", "backend", "--scope", "src", "--reason", "mine")
    clock.tick(3700)  # api silent for over an hour: stale
    run("update", "--session", "web", "--add-note", "still here")
    code, out, _ = ask("\r", "lock", "--session", "web", "--area", "backend", "--scope",
                       "src/web", "--reason", "theirs", "--duration", "1h")
    assert code == 0, out
    assert "api is stale" in out and "Taken over from api" in out
    (lock,) = state_of(run)["locks"]
    assert lock["owner"] == "web" and lock["taken_over_from"] == ["api"]


def test_unlock_lists_own_locks_then_confirms(ask, run, session):
    session("api", "backend", "infra")
    run("lock", "--session", "api", "--area", "backend", "--scope", "src", "--reason", "a")
    run("lock", "--session", "api", "--area", "infra", "--scope", "deploy", "--reason", "b")
    code, out, _ = ask(DOWN + ENTER + ENTER, "unlock", "--session", "api")
    assert code == 0
    assert "Released api's lock on infra" in out
    assert [l["area"] for l in state_of(run)["locks"]] == ["backend"]


def test_unlock_all_choice(ask, run, session):
    session("api", "backend")
    run("lock", "--session", "api", "--area", "backend", "--scope", "src", "--reason", "a")
    code, _, _ = ask(DOWN + ENTER + ENTER, "unlock", "--session", "api")
    assert code == 0
    assert state_of(run)["locks"] == []


def test_unlock_declined_confirmation_writes_nothing(ask, run, session, state_path):
    session("api", "backend")
    run("lock", "--session", "api", "--area", "backend", "--scope", "src", "--reason", "a")
    before = state_path.read_bytes()
    code, _, err = ask(ENTER + "n", "unlock", "--session", "api")
    assert code == 130
    assert "cancelled" in err
    assert state_path.read_bytes() == before


def test_renew_asks_duration(ask, run, session):
    session("api", "backend")
    run("lock", "--session", "api", "--area", "backend", "--scope", "src", "--reason", "a",
        "--duration", "10m")
    code, out, _ = ask("\x7f\x7f" + "3h" + ENTER, "renew", "--session", "api")
    assert code == 0
    assert "3 h from now" in out


def test_update_asks_status_note_and_risk(ask, run, session):
    session("api", "backend")
    # statuses: discovery, in_progress (current), blocked, completed -> Down once = blocked
    code, _, _ = ask(DOWN + ENTER + "waiting on review" + ENTER + ENTER, "update",
                     "--session", "api")
    assert code == 0
    entry = orchestrator_session(run, "api")
    assert entry["status"] == "blocked"
    assert entry["notes"] == ["waiting on review"]
    assert entry["risks"] == []


def test_complete_offers_files_from_git(ask, run, session, repo):
    session("api", "src")
    (repo / "src").mkdir()
    (repo / "src" / "a.py").write_text("x = 1\n")
    (repo / "notes.txt").write_text("drift\n")
    # outcome typed; both files offered and ticked; untick the second (notes.txt sorts first).
    code, out, _ = ask("Split done" + ENTER + SPACE + ENTER, "complete", "--session", "api")
    assert code == 0, out
    [record] = state_of(run)["completed_sessions"]
    assert record["files_changed"] == ["src/a.py"]
    assert record["outcome"] == "Split done"


def test_note_and_directive_ask(ask, run, session):
    session("api", "backend")
    assert ask("Deploys are frozen" + ENTER, "note")[0] == 0
    assert state_of(run)["global_notes"] == ["Deploys are frozen"]
    code, _, _ = ask(ENTER + "Intent Scope" + ENTER + "@directive fix docs" + ENTER + "asked" + ENTER,
                     "directive")
    assert code == 0
    assert state_of(run)["directive_log"][0]["rule_overridden"] == "intent_scope"


@pytest.mark.parametrize("key", [CTRL_C, ESC])
def test_cancel_writes_nothing(ask, run, session, state_path, key):
    session("api", "backend")
    before = state_path.read_bytes()
    # A cancel key as the first keystroke of a select (area) and of a text question (scope).
    code, out, err = ask(key, "lock", "--session", "api")
    assert code == 130
    assert err.strip() == "orchestrator: cancelled, nothing written"
    code, out, err = ask(key, "lock", "--session", "api", "--area", "backend")
    assert code == 130
    assert err.strip() == "orchestrator: cancelled, nothing written"
    assert state_path.read_bytes() == before


def test_no_terminal_never_asks(cli):
    result = cli("lock", input="")
    assert result.code == 2
    assert "missing --session, --area, --scope, --reason" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_importing_the_module_imports_no_question_library():
    code = ("import sys, orchestrator; "
            "bad = [m for m in ('questionary', 'prompt_toolkit', 'jinja2') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=orchestrator.HERE,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_and_hook_on_a_validated_state_import_no_heavy_module(run, session, repo):
    """The session-start check and the write hook run all the time: on an unchanged, already
    validated state they import neither strictyaml nor argparse, json, re or datetime."""
    session("api", "backend")
    run("lock", "--session", "api", "--area", "backend", "--scope", "src", "--reason", "r")
    run("status")  # the state is validated and cached
    event = ('{"agent_action_name": "pre_write_code", "trajectory_id": "t", "tool_info": '
             f'{{"file_path": "{repo}/docs/a.md"}}}}')
    heavy = ("strictyaml", "argparse", "json", "re", "jinja2", "questionary", "prompt_toolkit",
             "pathlib", "datetime")
    for argv, stdin in ((["check", "--path", "docs/a.md", "--area", "frontend"], ""),
                        (["hook"], event)):
        # what the tool imported: a coverage run has imported some of these before it starts
        code = ("import sys; before = set(sys.modules); sys.path.insert(0, sys.argv[1]); "
                f"import orchestrator; rc = orchestrator.main({argv!r}); "
                f"loaded = [m for m in {heavy!r} if m in sys.modules and m not in before]; "
                "print(rc, loaded)")
        proc = subprocess.run([sys.executable, "-c", code, str(orchestrator.HERE)], cwd=repo,
                              input=stdin, capture_output=True, text=True)
        assert proc.stdout.strip() == "0 []", (argv, proc.stdout, proc.stderr)


def test_a_new_area_is_checked_as_typed_with_the_flags_rule(ask, run, session):
    """`widgets; rm` is a pasted command line, which --area refuses: the question refuses it
    as it is typed (it cannot submit), so no later step fails naming a flag nobody typed."""
    session("api", "backend")
    erase = "\x7f" * len("widgets; rm")
    keys = (DOWN + ENTER + "widgets; rm" + ENTER + erase + "widgets" + ENTER + "src/w" + ENTER
            + "because" + ENTER + "n" + "n" + ENTER)
    code, out, err = ask(keys, "lock", "--session", "api")
    assert code == 0, (out, err)
    assert "--area" not in err
    assert [lock["area"] for lock in state_of(run)["locks"]] == ["widgets"]


def test_a_rule_is_checked_as_typed_with_the_flags_rule(ask, run, session):
    session("api", "backend")
    erase = "\x7f" * len("Build Failure!")
    keys = ("Build Failure!" + ENTER + erase + "Build Failure" + ENTER + "skip it" + ENTER
            + "the user said so" + ENTER)
    code, out, err = ask(keys, "directive", "--session", "api")
    assert code == 0, (out, err)
    assert state_of(run)["directive_log"][0]["rule_overridden"] == "build_failure"


@pytest.mark.parametrize("command", ["unlock", "renew"])
def test_unlock_and_renew_offer_only_sessions_that_hold_locks(ask, run, session, command):
    session("idle", "docs")
    session("holder", "backend")
    assert run("lock", "--session", "holder", "--area", "backend", "--scope", "src",
               "--reason", "r").code == 0
    # The first (and only) choice is holder: Enter takes it; the rest is answered by default.
    code, out, err = ask(ENTER + ENTER + ENTER, command)
    assert code == 0, (out, err)
    assert "idle" not in out
    assert ("backend" in out) if command == "renew" else ("holder" in out)


def test_unlock_with_no_lock_anywhere_says_so_before_asking(ask, session):
    session("idle", "docs")
    code, out, err = ask("", "unlock")
    assert code == 1 and "no session holds a lock" in err
