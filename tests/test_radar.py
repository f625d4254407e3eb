"""The radar: overlaps nobody declared and merge conflicts predicted before anyone merges.

The judge is git itself: real worktrees and branches, `git merge-tree --write-tree` (git 2.38
and later, git-scm.com/docs/git-merge-tree: exit 1 and the conflicted files' names with
`--name-only`) deciding what merges, and git's own view of refs, the stash, the index and the
files, compared byte for byte before and after."""

import hashlib
import io
import json
import os
import subprocess
import sys
import time

import pytest

import orchestrator as o
from helpers import committed_repo, git

CLI = [sys.executable, os.path.join(o.HERE, "orchestrator.py")]


def tool(cwd, *argv, env=None):
    proc = subprocess.run([*CLI, *argv], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**{k: v for k, v in os.environ.items()
                                  if k != "ORCHESTRATOR_STATE"}, **(env or {})})
    return proc


@pytest.fixture
def two(tmp_path):
    """A repository with a base commit, alpha in the main checkout on `main`, beta in a linked
    worktree on `feature`."""
    (tmp_path / "main").mkdir()
    (tmp_path / "main" / "blob.bin").write_bytes(bytes(range(256)) * 4)
    main = committed_repo(tmp_path / "main", {
        "f.txt": "one\ntwo\nthree\nfour\nfive\nsix\nseven\n", "other.txt": "x\n",
        "old_name.py": "def f():\n    return 1\n"})
    side = tmp_path / "side"
    git(main, "worktree", "add", "-q", "-b", "feature", str(side))
    assert tool(main, "sync", "--session", "alpha", "--focus", "a", "--area", "a").returncode == 0
    assert tool(side, "sync", "--session", "beta", "--focus", "b", "--area", "b").returncode == 0
    # The edits below are made by no agent (no hook event says the worktrees changed), so a
    # radar that looked during setup would look again only RADAR_RECHECK_SECONDS later:
    # each test starts cold.
    cache = o.radar_cache_path(str(main.resolve()))
    if os.path.exists(cache):
        os.unlink(cache)
    return main, side


def conflicts(cwd):
    proc = tool(cwd, "--json", "status")
    assert proc.returncode == 0, proc.stderr
    return [(c["kind"], c["sessions"], c["paths"]) for c in json.loads(proc.stdout)["conflicts"]
            if c["kind"] in ("overlap", "merge")]


def edit(path, old, new):
    path.write_text(path.read_text().replace(old, new))


def git_view(*checkouts):
    """What a user would see of git: every ref, the stash list, each worktree's index and
    files (hashes), HEAD."""
    view = []
    for checkout in checkouts:
        def run(*a, checkout=checkout):
            return subprocess.run(["git", "-C", str(checkout), *a], capture_output=True,
                                  check=False).stdout
        index_path = run("rev-parse", "--path-format=absolute", "--git-path",
                         "index").decode().strip()
        files = {}
        for folder, _, names in os.walk(checkout):
            if ".git" in folder.split(os.sep):
                continue
            for name in names:
                path = os.path.join(folder, name)
                if ".git" not in name and ".windsurf" not in path:
                    files[os.path.relpath(path, checkout)] = hashlib.sha1(
                        open(path, "rb").read()).hexdigest()
        view.append((run("for-each-ref"), run("stash", "list"), run("rev-parse", "HEAD"),
                     open(index_path, "rb").read(), sorted(files.items())))
    return view


def test_the_same_lines_on_both_sides_are_a_merge_conflict_and_git_is_untouched(two):
    main, side = two
    edit(main / "f.txt", "two", "TWO from alpha")
    edit(side / "f.txt", "two", "two from beta")
    before = git_view(main, side)
    assert conflicts(main) == [("merge", ["alpha", "beta"], ["f.txt"])]
    assert conflicts(side) == [("merge", ["alpha", "beta"], ["f.txt"])]  # both are told
    assert git_view(main, side) == before
    report = tool(main, "status").stdout
    assert "! alpha and beta: git cannot merge their changes to f.txt" in report


def test_different_hunks_of_one_file_are_an_overlap_only(two):
    main, side = two
    edit(main / "f.txt", "one", "ONE")
    edit(side / "f.txt", "seven", "SEVEN")
    assert conflicts(main) == [("overlap", ["alpha", "beta"], ["f.txt"])]
    assert "git merges them cleanly" in tool(main, "status").stdout


def test_unrelated_files_are_nothing(two):
    main, side = two
    edit(main / "f.txt", "one", "ONE")
    edit(side / "other.txt", "x", "y")
    assert conflicts(main) == []


def test_one_side_committed_and_the_other_not(two):
    main, side = two
    time.sleep(1.1)  # a commit of the session's own, after the second it started in
    edit(side / "f.txt", "three", "three, committed by beta")
    git(side, "commit", "-qam", "beta's work")
    edit(main / "f.txt", "three", "three, alpha not yet committed")
    assert conflicts(main) == [("merge", ["alpha", "beta"], ["f.txt"])]


def test_a_new_untracked_file_on_both_sides(two):
    main, side = two
    (main / "new.py").write_text("alpha = 1\n")
    (side / "new.py").write_text("beta = 2\n")
    before = git_view(main, side)
    assert conflicts(main) == [("merge", ["alpha", "beta"], ["new.py"])]
    assert git_view(main, side) == before  # still untracked, the index as it was


def test_a_rename_on_one_side_and_an_edit_on_the_other_merge(two):
    main, side = two
    git(side, "mv", "old_name.py", "new_name.py")
    edit(main / "old_name.py", "return 1", "return 2")
    assert conflicts(main) == [("overlap", ["alpha", "beta"], ["old_name.py"])]


def test_a_binary_file_changed_on_both_sides(two):
    main, side = two
    (main / "blob.bin").write_bytes(b"alpha" + bytes(range(256)))
    (side / "blob.bin").write_bytes(b"beta" + bytes(range(256)))
    assert conflicts(main) == [("merge", ["alpha", "beta"], ["blob.bin"])]


def test_check_exits_1_for_a_merge_conflict_and_reports_an_overlap_without_changing_it(two):
    main, side = two
    edit(main / "f.txt", "one", "ONE")
    edit(side / "f.txt", "seven", "SEVEN")
    overlap = tool(main, "check", "--session", "alpha")
    assert overlap.returncode == 0 and "Overlap: alpha and beta both changed f.txt" in overlap.stdout
    edit(side / "f.txt", "ONE", "one")  # no-op on beta's side
    edit(side / "f.txt", "one", "uno")
    found = tool(main, "--json", "check", "--session", "alpha")
    assert found.returncode == 1
    payload = json.loads(found.stdout)
    assert [(c["kind"], c["paths"]) for c in payload["conflicts"]] == [("merge", ["f.txt"])]
    quiet = tool(main, "check", "--session", "alpha", "--path", "other.txt")
    assert quiet.returncode == 1  # the merge conflict stands whatever path is asked about


def test_a_gone_session_is_not_on_the_radar(two):
    main, side = two
    edit(main / "f.txt", "two", "TWO from alpha")
    edit(side / "f.txt", "two", "two from beta")
    env = {"ORCHESTRATOR_IDLE_AFTER": "1s", "ORCHESTRATOR_STALE_AFTER": "1s"}
    time.sleep(2.2)
    proc = tool(main, "--json", "status", env=env)
    assert [c for c in json.loads(proc.stdout)["conflicts"] if c["kind"] == "merge"] == []


def test_an_unchanged_pair_costs_no_git_process(two, monkeypatch):
    """Warm: the second report reads HEAD and the index from git's files and the cache; no
    git process runs."""
    main, side = two
    edit(main / "f.txt", "two", "TWO from alpha")
    edit(side / "f.txt", "two", "two from beta")
    assert conflicts(main)  # cold: fills the cache
    monkeypatch.chdir(main)
    calls = []
    real = o.run_in_own_group
    monkeypatch.setattr(o, "run_in_own_group", lambda argv, *a, **k: calls.append(argv) or
                        real(argv, *a, **k))
    assert o.main(["--json", "status"]) == 0
    assert calls == []


def test_a_git_too_old_to_predict_is_said_once_and_overlaps_are_still_reported(two, monkeypatch,
                                                                              capsys):
    main, side = two
    edit(main / "f.txt", "two", "TWO from alpha")
    edit(side / "f.txt", "two", "two from beta")
    monkeypatch.chdir(main)
    monkeypatch.setattr(o, "git_version", lambda checkout: (2, 30, 1))
    assert o.main(["status"]) == 0
    first = capsys.readouterr()
    assert "needs git 2.38 or later (this machine has 2.30.1)" in first.out + first.err
    assert "~ alpha and beta both changed f.txt: tell each other before either merges" in first.out
    assert o.main(["status"]) == 0
    again = capsys.readouterr()
    assert "2.38" not in again.out + again.err  # said once


def test_two_sessions_in_one_checkout_hear_about_each_others_writes(tmp_path, monkeypatch,
                                                                   capsys):
    """Claude Code's PreToolUse/PostToolUse (code.claude.com/docs/en/hooks): alpha's hook
    records its edit of f.txt; beta, in the same checkout, is told before it writes there, and
    never blocked."""
    repo = committed_repo(tmp_path / "repo", {"f.txt": "x\n"})
    monkeypatch.chdir(repo)
    monkeypatch.delenv("ORCHESTRATOR_STATE", raising=False)
    for who in ("alpha", "beta"):
        assert o.main(["sync", "--session", who, "--focus", who, "--area", who]) == 0
    capsys.readouterr()

    def hook(conversation, name, tool, tool_input):
        event = {"session_id": conversation, "transcript_path": "", "cwd": str(repo),
                 "hook_event_name": name, "tool_name": tool, "tool_input": tool_input,
                 "tool_use_id": "t"}
        monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(event)))
        code = o.main(["hook"])
        return code, capsys.readouterr().out

    for who in ("alpha", "beta"):
        hook(f"c-{who}", "PostToolUse", "Bash",
             {"command": f"sh .windsurf/bin/orchestrator update --session {who} --status "
                         "in_progress"})
    write = {"file_path": str(repo / "f.txt"), "content": "y\n"}
    hook("c-alpha", "PostToolUse", "Write", write)
    code, out = hook("c-beta", "PreToolUse", "Write", write)
    assert code == 0
    context = json.loads(out)["hookSpecificOutput"]
    assert "permissionDecision" not in context
    assert "f.txt has been changed by alpha in this worktree" in context["additionalContext"]
    code, out = hook("c-alpha", "PreToolUse", "Write", write)
    assert out == ""  # alpha is not told about its own change
    (repo / "f.txt").write_text("y\n")
    report = json.loads(subprocess.run([*CLI, "--json", "status"], cwd=repo, capture_output=True,
                                       text=True).stdout)
    hook("c-beta", "PostToolUse", "Write", write)
    report = json.loads(subprocess.run([*CLI, "--json", "status"], cwd=repo, capture_output=True,
                                       text=True).stdout)
    kinds = {(c["kind"], tuple(c["paths"])) for c in report["conflicts"]}
    assert ("overlap", ("f.txt",)) in kinds and ("worktree", (str(repo.resolve()),)) in kinds


def test_a_same_size_edit_in_the_second_of_the_index_is_seen(two):
    """An edit of the same size, with the file's time set back to what git recorded and the
    index's to that same second ("racy git"), is seen by the radar as `git status` sees it.
    (git smudges racily clean entries when it writes an index, so this holds whether or not
    the radar's copy of the index keeps the index's time; it keeps it, as git's own does.)"""
    main, side = two
    for path, git_index in ((main / "f.txt", main / ".git/index"),
                            (side / "f.txt", main / ".git/worktrees/side/index")):
        stamp = os.stat(path).st_mtime_ns
        edit(path, "one" if path.parent == main else "seven",
             "ONE" if path.parent == main else "SEVEN")
        os.utime(path, ns=(stamp, stamp))  # same size, same time as git recorded
        os.utime(git_index, ns=(stamp, stamp))  # and the index written in that second
        assert "f.txt" in subprocess.run(["git", "--no-optional-locks", "status", "--porcelain"],
                                         cwd=path.parent,
                                         capture_output=True, text=True).stdout
    assert conflicts(main) == [("overlap", ["alpha", "beta"], ["f.txt"])]


def every_file_in(folder):
    return sorted((os.path.relpath(os.path.join(root, name), folder),
                   os.path.getsize(os.path.join(root, name)))
                  for root, _, names in os.walk(folder) for name in names)


def test_the_radar_writes_nothing_into_the_repository_not_even_objects(two):
    """With a split index too (whose shared files git would write beside a temporary index):
    every file under .git is as it was, objects included; the radar's own objects live in
    the user's cache."""
    main, side = two
    git(main, "config", "core.splitIndex", "true")
    for checkout in (main, side):
        git(checkout, "update-index", "--split-index")
    edit(main / "f.txt", "two", "TWO from alpha")
    edit(side / "f.txt", "two", "two from beta")
    (side / "new.txt").write_text("untracked\n")
    before = every_file_in(main / ".git")
    assert conflicts(main) == [("merge", ["alpha", "beta"], ["f.txt"])]
    assert conflicts(side) == [("merge", ["alpha", "beta"], ["f.txt"])]
    assert every_file_in(main / ".git") == before


def test_a_worktree_path_the_state_names_is_read_only_when_git_lists_it(two, tmp_path):
    """A state from another machine, or from anyone who can push it, may name any folder: a
    repository whose config runs a command (core.fsmonitor) is never read unless it is one of
    this repository's worktrees."""
    main, side = two
    evil = committed_repo(tmp_path / "evil", {"f.txt": "one\n"})
    marker = tmp_path / "PWNED"
    git(evil, "config", "core.fsmonitor", f"touch {marker}; false")
    state_path = main / o.STATE_RELATIVE_PATH
    state = o.parse_state_text(state_path.read_text(), "s")[0]
    planted = dict(state["active_sessions"][1], id="planted", worktree=str(evil),
                   touched_files=["f.txt"])
    state["active_sessions"].append(planted)
    state_path.write_text(o.emit_state(state))
    edit(main / "f.txt", "two", "TWO")
    found = conflicts(main)
    assert not marker.exists()
    assert found == [("overlap", ["alpha", "planted"], ["f.txt"])]  # its recorded files only
