"""One definition of a conflict, served by every surface: lock, sync --lock-scope, check,
status, build-failure and the write hook (all in process, through main(argv))."""

import io
import json
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import orchestrator as o
from helpers import as_json, lock, lock_ok

FUTURE = "2099-01-01T00:00:00+00:00"


def hook(run, monkeypatch, repo, conversation, path, action="pre_write_code"):
    """A Windsurf write event for `path` (relative to the repository) fed to `hook`
    (docs.windsurf.com/windsurf/cascade/hooks: agent_action_name, trajectory_id,
    tool_info.file_path absolute)."""
    event = {"agent_action_name": action, "trajectory_id": conversation, "execution_id": "e",
             "timestamp": "2026-12-01T10:00:00Z",
             "tool_info": {"file_path": str(repo / path), "edits": []}}
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(event)))
    return run("hook")


def bind(run, monkeypatch, conversation, session_id):
    event = {"agent_action_name": "pre_run_command", "trajectory_id": conversation,
             "tool_info": {"command_line": f"sh .windsurf/bin/orchestrator update --session "
                                           f"{session_id} --status in_progress", "cwd": "."}}
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(event)))
    assert run("hook").code == 0


# ---------------------------------------------------------------------------- the reproduction

def test_another_area_name_cannot_walk_into_a_locked_scope(run, session, repo, monkeypatch):
    """The issue's reproduction: types-refactor holds backend internal/domain/energy."""
    session("types-refactor", "backend")
    session("docs-fix", "docs")
    lock_ok(run, "types-refactor", "backend", "internal/domain/energy", reason="moving types")
    assert lock(run, "docs-fix", "backend", "internal/domain/energy").code == 1
    refused = lock(run, "docs-fix", "docs-comments", "internal/domain/energy/tariff.go")
    assert refused.code == 1 and refused.out == ""
    assert "locked by types-refactor" in refused.err and '"moving types"' in refused.err
    assert [l["owner"] for l in as_json(run("--json", "status"))["locks"]] == ["types-refactor"]
    # sync --lock-scope is the same decision
    sync = run("sync", "--session", "docs-fix", "--area", "docs", "--lock-scope",
               "internal/domain/energy/tariff.go", "--reason", "typo")
    assert sync.code == 1 and "locked by types-refactor" in sync.err
    # The owner writes its own files and fixes its own build.
    bind(run, monkeypatch, "t-owner", "types-refactor")
    assert hook(run, monkeypatch, repo, "t-owner", "internal/domain/energy/tariff.go").code == 0
    verdict = as_json(run("--json", "build-failure", "--session", "types-refactor", "--path",
                          "internal/domain/energy/tariff.go"))
    assert verdict["verdict"] == "fix"


def test_after_force_both_locks_stand_both_owners_write_everyone_else_is_blocked(
        run, session, repo, monkeypatch):
    for name in ("types-refactor", "docs-fix", "third"):
        session(name, "backend")
    lock_ok(run, "types-refactor", "backend", "internal/domain/energy", reason="moving types")
    forced = lock_ok(run, "docs-fix", "docs-comments", "internal/domain/energy/tariff.go",
                     reason="typo", extra=["--force"])
    assert "over the lock of types-refactor" in forced.out
    for conversation, name in (("t1", "types-refactor"), ("t2", "docs-fix"), ("t3", "third")):
        bind(run, monkeypatch, conversation, name)
    path = "internal/domain/energy/tariff.go"
    assert hook(run, monkeypatch, repo, "t1", path).code == 0
    assert hook(run, monkeypatch, repo, "t2", path).code == 0
    blocked = hook(run, monkeypatch, repo, "t3", path)
    assert blocked.code == 2 and "docs-fix's lock on docs-comments" in blocked.err
    for name, expected in (("types-refactor", "fix"), ("docs-fix", "fix"),
                           ("third", "report_only")):
        verdict = as_json(run("--json", "build-failure", "--session", name, "--path", path))
        assert verdict["verdict"] == expected, name
    assert run("check", "--session", "types-refactor", "--path", path).code == 0
    assert run("check", "--session", "third", "--path", path).code == 1
    status = run("status").out
    assert "! types-refactor and docs-fix lock the same paths" in status


def test_a_glob_overlap_of_the_dangerous_kind_is_refused(run, session):
    session("a", "x")
    session("b", "x")
    lock_ok(run, "a", "x", "x/[!]]")
    refused = lock(run, "b", "x", "x/a")
    assert refused.code == 1 and "locked by a" in refused.err


def test_same_area_disjoint_scopes_is_no_conflict_and_status_agrees(run, session):
    session("a", "backend")
    session("b", "backend")
    lock_ok(run, "a", "backend", "src/api")
    lock_ok(run, "b", "backend", "src/web")
    conflicts = run("status").out.split("CONFLICTS")[1].split("ACTIVE SESSIONS")[0]
    assert "!" not in conflicts  # (both work in one worktree: that warning may stand)
    # A bare area name still meets the other's lock, for a session holding none there.
    assert run("check", "--area", "backend").code == 1
    assert run("check", "--session", "a", "--area", "backend").code == 0


def test_check_names_a_lock_that_allows_outside_fixes_as_a_notice(run, session):
    session("owner", "backend")
    lock_ok(run, "owner", "backend", "src", extra=["--allow-external-fixes"])
    result = run("check", "--session", "docs", "--path", "src/x.py")
    assert result.code == 0
    assert result.out.startswith("Notice: docs's planned work runs into 1 lock that allows fixes")
    assert "you may edit" in result.out and "Do not edit" not in result.out
    payload = as_json(run("--json", "check", "--path", "src/x.py"))
    assert payload["conflicts"] == [] and len(payload["fix_and_notify"]) == 1
    verdict = as_json(run("--json", "build-failure", "--session", "docs", "--path", "src/x.py"))
    assert verdict["verdict"] == "fix_and_notify"


# ---------------------------------------------------------------------------- every surface agrees

SESSIONS = ("s1", "s2", "s3")
SCOPES = ["src", "src/api", "src/*.py", "src/api/*.py", "**/*.py", "docs", "src/[ab]*", "lib/**"]
FILES = ["src/api/a.py", "src/b.py", "src/a.md", "docs/x.md", "lib/c.py", "src/api/z.go"]

locks_strategy = st.lists(st.tuples(st.sampled_from(SESSIONS),
                                    st.lists(st.sampled_from(SCOPES), min_size=1, max_size=2,
                                             unique=True),
                                    st.booleans()), max_size=4)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(locks=locks_strategy, asker=st.sampled_from(SESSIONS), path=st.sampled_from(FILES))
def test_check_build_failure_hook_and_status_give_one_answer(run, repo, state_path, monkeypatch,
                                                             locks, asker, path):
    """Locks written as a forced or hand-made state may overlap in any way; for a file path,
    build-failure's verdict, check's exit code, the hook's exit code and the conflicts status
    reports for a session touching that path always agree."""
    now = "2026-12-01T10:00:00+00:00"
    state = o.empty_state()
    state["active_sessions"] = [
        {"id": s, "focus": "f", "status": "in_progress", "touched_areas": [path], "risks": [],
         "notes": [], "started_at": now, "last_updated": now, "trajectories": [f"t-{s}"]}
        for s in SESSIONS]
    state["locks"] = [
        {"area": f"area-{i}", "owner": owner, "scope": scopes, "reason": "r",
         "expected_instability": False, "allow_external_fixes": allow,
         "acquired_at": now, "expires_at": FUTURE}
        for i, (owner, scopes, allow) in enumerate(locks)]
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(o.emit_state(state))
    verdict = as_json(run("--json", "build-failure", "--session", asker, "--path", path))
    checked = run("--json", "check", "--session", asker, "--path", path)
    hooked = hook(run, monkeypatch, repo, f"t-{asker}", path)
    blocking = [c for c in o.sessions_in_foreign_locks(state, now, asker)
                if not c["lock"]["allow_external_fixes"]]
    report_only = verdict["verdict"] == "report_only"
    assert (checked.code == 1) == report_only
    assert (hooked.code == 2) == report_only
    assert bool(blocking) == report_only
    if verdict["verdict"] == "fix_and_notify":
        assert json.loads(checked.out)["fix_and_notify"]
        assert "allows fixes by other sessions" in hooked.out
    if any(owner == asker and any(o.path_in_scope(path, s) for s in scopes)
           for owner, scopes, _ in locks):
        assert verdict["verdict"] == "fix"  # never blocked inside its own lock


# ---------------------------------------------------------------------------- deep paths

def test_paths_a_thousand_folders_deep_work_in_check_build_failure_and_the_hook(
        run, session, repo, monkeypatch):
    session("owner", "db")
    session("other", "ui")
    lock_ok(run, "owner", "db", "src/**/*.sql", reason="schema move")
    bind(run, monkeypatch, "t-other", "other")
    deep = "src/" + "d/" * 1200 + "x.sql"
    assert run("check", "--session", "other", "--path", deep).code == 1
    verdict = run("--json", "build-failure", "--session", "other", "--path", deep)
    assert verdict.code == 1 and json.loads(verdict.out)["verdict"] == "report_only"
    blocked = hook(run, monkeypatch, repo, "t-other", deep)
    assert blocked.code == 2, blocked
    assert hook(run, monkeypatch, repo, "t-other", deep[:-4] + ".py").code == 0


def test_status_marks_a_lock_that_allows_outside_fixes_apart_from_a_conflict(run, session):
    session("owner", "backend")
    session("docs", "docs/guide")
    lock_ok(run, "owner", "backend", "docs", extra=["--allow-external-fixes"])
    conflicts = run("status").out.split("CONFLICTS")[1].split("ACTIVE SESSIONS")[0]
    assert '~ docs works on "docs/guide", inside owner\'s lock' in conflicts
    assert "! docs" not in conflicts


# ---------------------------------------------------------------------------- one scope, one meaning

def test_a_scope_naming_an_existing_file_covers_only_that_file_on_every_surface(
        run, session, repo, monkeypatch):
    """With src/**/*.py locked, src/ui/app.js (a file on disk) is free for lock, check,
    build-failure and the write hook alike; a folder, or a path with nothing on disk yet,
    covers what is below it, and the refusal names a path both scopes claim."""
    (repo / "src/ui").mkdir(parents=True)
    (repo / "src/ui/app.js").write_text("a\n")
    session("py", "python")
    session("web", "web")
    lock_ok(run, "py", "python", "src/**/*.py")
    bind(run, monkeypatch, "t-web", "web")
    assert run("check", "--session", "web", "--path", "src/ui/app.js").code == 0
    assert as_json(run("--json", "build-failure", "--session", "web", "--path",
                       "src/ui/app.js"))["verdict"] == "fix"
    assert hook(run, monkeypatch, repo, "t-web", "src/ui/app.js").code == 0
    lock_ok(run, "web", "web", "src/ui/app.js")
    for scope, example in (("src/ui", "src/ui/x.py"), ("src/later", "src/later/x.py")):
        refused = lock(run, "web", "web-2", scope)
        assert refused.code == 1, refused
        assert f"(both claim {example})" in refused.err, refused.err
    assert run("check", "--session", "web", "--path", "src/ui").code == 1


@pytest.mark.parametrize("a, b, a_file, b_file, example", [
    ("src", "src/**/*.py", False, False, "src/x.py"),
    ("src/ui/app.js", "src/**/*.py", True, False, None),
    ("src/ui/app.js", "src/**/*.py", False, False, "src/ui/app.js/x.py"),
    ("src/ui/app.js", "src/ui", True, False, "src/ui/app.js"),
    ("src/ui/app.js", "src/ui/app.js/deeper", True, False, None),
    ("docs", "src/**", False, False, None),
    ("a/*/c", "a/b/*", False, False, "a/b/c"),
])
def test_overlap_example_is_a_path_both_scopes_cover(a, b, a_file, b_file, example):
    found = o.overlap_example(a, b, a_is_file=a_file, b_is_file=b_file)
    assert found == example
    if found is not None:
        for scope, is_file in ((a, a_file), (b, b_file)):
            assert o.path_in_scope(found, scope)
            assert not is_file or found == scope
