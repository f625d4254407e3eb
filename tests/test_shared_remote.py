"""The state shared through the repository's git remote: a bare repository as the remote and
two clones as two machines, each with its own main checkout and local copy. Real git is the
engine and the judge: every write is a commit pushed on top of what was fetched, and the
server refuses a push that is not a fast-forward of what it holds.

Followed: git-push(1) (man.archlinux.org/man/git-push.1; git 2.39 here) for
`--force-with-lease=<refname>:<expect>` (the full commit id expected, an empty <expect>
meaning the ref must not exist yet) and `--porcelain`'s `[rejected]` and `[remote
rejected]` lines; git-daemon(1) for `--enable=receive-pack`."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

import orchestrator as o

STATE = ".windsurf/orchestrator/session_state.yaml"


def git(folder, *args, check=True, **kwargs):
    return subprocess.run(["git", "-C", str(folder), *args], check=check, capture_output=True,
                          text=True, **kwargs)


class Machine:
    """One clone of the shared repository, run as its own machine (ORCHESTRATOR_MACHINE)."""

    def __init__(self, folder, name):
        self.folder, self.name = folder, name

    def env(self):
        env = {key: value for key, value in os.environ.items()
               if key not in ("ORCHESTRATOR_STATE", "ORCHESTRATOR_COMMAND")}
        env["ORCHESTRATOR_MACHINE"] = self.name
        return env

    def run(self, *argv, timeout=120):
        proc = subprocess.run([sys.executable, os.path.join(o.HERE, "orchestrator.py"), *argv],
                              cwd=self.folder, env=self.env(), capture_output=True, text=True,
                              timeout=timeout)
        return proc

    def start(self, *argv):
        return subprocess.Popen([sys.executable, os.path.join(o.HERE, "orchestrator.py"), *argv],
                                cwd=self.folder, env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def state(self):
        return o.parse_state_text((self.folder / STATE).read_text(encoding="utf-8"), "t")[0]

    def lock(self, session, area, scope, reason="r"):
        return self.run("lock", "--session", session, "--area", area, "--scope", scope,
                        "--reason", reason)

    def sync(self, session, *areas):
        result = self.run("sync", "--session", session, "--focus", f"{session} work",
                          *[flag for area in areas or ("misc",) for flag in ("--area", area)])
        assert result.returncode == 0, result.stderr


def in_process(monkeypatch, machine):
    """main(argv) in this process, as `machine` would run it."""
    monkeypatch.chdir(machine.folder)
    monkeypatch.setenv("ORCHESTRATOR_MACHINE", machine.name)
    monkeypatch.delenv("ORCHESTRATOR_STATE", raising=False)


def assert_a_lock_on_b_refuses_a(a, b, scope):
    """b's session `web` locks src/web; a's session `api` is then refused `scope` inside it."""
    b.sync("web", "frontend")
    assert b.lock("web", "frontend", "src/web").returncode == 0
    refused = a.lock("api", "ui", scope)
    assert refused.returncode == 1 and "locked by web" in refused.stderr


def shared_state(remote):
    """The state on the remote's ref, read with git from the bare repository itself."""
    text = git(remote, "show", f"{o.DEFAULT_SHARED_REF}:{o.SHARED_FILE}").stdout
    return o.parse_state_text(text, "remote")[0]


@pytest.fixture
def network(tmp_path):
    """A bare remote with one commit, and two clones of it: machines `a` and `b`."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    seed = tmp_path / "seed"
    git(tmp_path, "init", "-q", "-b", "main", str(seed))
    (seed / "README").write_text("shared\n")
    git(seed, "add", "README")
    git(seed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    git(seed, "push", "-q", str(remote), "main")
    machines = []
    for name in ("a", "b"):
        git(tmp_path, "clone", "-q", str(remote), str(tmp_path / name))
        machines.append(Machine(tmp_path / name, f"machine-{name}"))
    return remote, machines[0], machines[1]


@pytest.fixture
def shared(network):
    remote, a, b = network
    a.sync("api", "backend")
    assert a.run("remote", "enable").returncode == 0
    assert b.run("remote", "enable").returncode == 0
    return network


def test_enable_publishes_the_first_state_and_the_next_clone_adopts_it(network):
    remote, a, b = network
    a.sync("api", "backend")
    published = a.run("remote", "enable")
    assert published.returncode == 0 and "published" in published.stdout
    assert [s["id"] for s in shared_state(remote)["active_sessions"]] == ["api"]
    assert git(a.folder, "config", "orchestrator.remote").stdout.strip() == "origin"
    b.sync("local-only", "docs")  # b's own state before it joins: kept, never lost
    before = (b.folder / STATE).read_bytes()
    adopted = b.run("--json", "remote", "enable")
    payload = json.loads(adopted.stdout)
    assert adopted.returncode == 0 and payload["adopted"] is True
    assert [s["id"] for s in b.state()["active_sessions"]] == ["api"]
    assert (b.folder / (STATE + ".before-shared")).read_bytes() == before
    assert payload["kept"].endswith(".before-shared")
    assert git(b.folder, "status", "--porcelain", "--untracked-files=no").stdout == ""
    assert git(b.folder, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip() == "main"


def test_a_lock_on_one_machine_refuses_a_conflicting_lock_on_the_other(shared):
    remote, a, b = shared
    assert_a_lock_on_b_refuses_a(a, b, "src/web/x.ts")
    assert [lock["owner"] for lock in shared_state(remote)["locks"]] == ["web"]
    # build-failure on the other machine reads its local copy: the lock reached it
    verdict = a.run("--json", "build-failure", "--session", "api", "--path", "src/web/x.ts")
    assert json.loads(verdict.stdout)["verdict"] == "report_only"


def test_eight_writers_on_two_machines_lose_nothing(shared):
    remote, a, b = shared
    for machine, session in ((a, "api"), (b, "web")):
        machine.sync(session, "misc") if session != "api" else None
    writers = []
    for n in range(8):
        machine, session = (a, "api") if n % 2 == 0 else (b, "web")
        if n % 4 < 2:
            writers.append(machine.start("note", "--session", session, f"note {n}"))
        else:
            writers.append(machine.start("lock", "--session", session, "--area", f"area-{n}",
                                         "--scope", f"src/area-{n}", "--reason", f"r{n}"))
    results = [(w.wait(timeout=180), w.stderr.read()) for w in writers]
    assert [code for code, _ in results] == [0] * 8, results
    final = shared_state(remote)
    assert sorted(n for n in final["global_notes"]) == sorted(
        f"[{'api' if n % 2 == 0 else 'web'}] note {n}" for n in range(8) if n % 4 < 2)
    assert sorted(lock["area"] for lock in final["locks"]) == sorted(
        f"area-{n}" for n in range(8) if n % 4 >= 2)
    # every write is one commit on one line of history, nothing merged
    commits = git(remote, "rev-list", "--parents", o.DEFAULT_SHARED_REF).stdout.splitlines()
    assert all(len(line.split()) <= 2 for line in commits)
    history = json.loads(a.run("--json", "log", "-n", "50").stdout)["log"]
    assert len([e for e in history if e["command"] in ("note", "lock")]) == 8
    assert a.state() == final  # a read refreshes the local copy (log fetched it)


def test_a_push_overtaken_by_another_writer_is_applied_again_to_the_new_state(shared,
                                                                             monkeypatch):
    """Between this command's fetch and its push, machine b takes a conflicting lock: the
    push is refused by the server, the command is applied again, and now refused like any
    conflict. A note overtaken the same way lands beside the other writer's."""
    remote, a, b = shared
    b.sync("web", "frontend")
    real_publish = o.SharedRef.publish
    interleaved = []

    def publish(self, data, parent, message, author):
        if not interleaved:
            interleaved.append(b.lock("web", "frontend", "src/web"))
        return real_publish(self, data, parent, message, author)

    monkeypatch.setattr(o.SharedRef, "publish", publish)
    in_process(monkeypatch, a)
    code = o.main(["lock", "--session", "api", "--area", "ui", "--scope", "src/web/app.ts",
                   "--reason", "second"])
    assert interleaved[0].returncode == 0
    assert code == o.EXIT_REFUSED
    assert [lock["owner"] for lock in shared_state(remote)["locks"]] == ["web"]

    interleaved.clear()
    monkeypatch.setattr(o.SharedRef, "publish", lambda self, *args: (
        interleaved.append(b.run("note", "--session", "web", "from b")) if not interleaved
        else None) or real_publish(self, *args))
    assert o.main(["note", "--session", "api", "from a"]) == 0
    assert shared_state(remote)["global_notes"] == ["[web] from b", "[api] from a"]


def test_an_unreachable_remote_never_makes_a_write_look_taken(shared):
    remote, a, b = shared
    git(a.folder, "remote", "set-url", "origin", str(remote.parent / "gone.git"))
    before = (a.folder / STATE).read_bytes()
    refused = a.lock("api", "backend", "src/api")
    assert refused.returncode == o.EXIT_REMOTE
    assert "nothing was written" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert (a.folder / STATE).read_bytes() == before
    assert shared_state(remote)["locks"] == []
    status = a.run("status")  # a read still works, from the local copy, and says so
    assert status.returncode == 0 and "could not be refreshed" in status.stdout
    assert "api" in status.stdout
    assert a.run("check", "--session", "api").returncode == 0
    report = a.run("sync")  # the report-only sync too
    assert report.returncode == 0 and "could not be refreshed" in report.stdout


def test_a_remote_that_refuses_the_push_is_its_own_exit_code(shared):
    remote, a, b = shared
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'policy: no pushes today' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = (a.folder / STATE).read_bytes()
    result = a.run("note", "--session", "api", "hello")
    assert result.returncode == o.EXIT_REMOTE and "refused" in result.stderr
    assert (a.folder / STATE).read_bytes() == before
    assert shared_state(remote)["global_notes"] == []


def test_an_invalid_state_pushed_by_hand_is_never_used_or_overwritten(shared):
    remote, a, b = shared
    work = b.folder
    blob = git(work, "hash-object", "-w", "--stdin", input="locks: [broken\n").stdout.strip()
    tree = git(work, "mktree", input=f"100644 blob {blob}\t{o.SHARED_FILE}\n").stdout.strip()
    parent = git(remote, "rev-parse", o.DEFAULT_SHARED_REF).stdout.strip()
    commit = git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit-tree", tree, "-p",
                 parent, "-m", "by hand").stdout.strip()
    git(work, "push", "-q", "origin", f"{commit}:{o.DEFAULT_SHARED_REF}")
    before = (a.folder / STATE).read_bytes()
    result = a.run("note", "--session", "api", "hello")
    assert result.returncode == o.EXIT_STATE and "not used or overwritten" in result.stderr
    assert (a.folder / STATE).read_bytes() == before
    assert git(remote, "rev-parse", o.DEFAULT_SHARED_REF).stdout.strip() == commit


def test_log_shows_who_did_what_where_and_filters_by_session(shared):
    remote, a, b = shared
    b.sync("web", "frontend")
    assert a.run("note", "--session", "api", "hi").returncode == 0
    entries = json.loads(b.run("--json", "log").stdout)["log"]
    assert [(e["command"], e["session"], e["machine"]) for e in entries[:2]] == [
        ("note", "api", "machine-a"), ("sync", "web", "machine-b")]
    only = json.loads(b.run("--json", "log", "--session", "web").stdout)["log"]
    assert {e["session"] for e in only} == {"web"}
    text = b.run("log", "-n", "1").stdout
    assert "machine-a" in text and "api" in text and "note" in text


def test_a_take_over_across_machines_is_refused_while_the_holder_lives_and_logged_when_gone(
        shared, monkeypatch):
    """Another machine's session is seen through the shared state only (its hooks' records stay
    on its machine): live while its writes are recent, then stale; a take-over is a commit of
    its own in the shared history, and the former owner's machine sees who took what."""
    remote, a, b = shared
    assert a.lock("api", "backend", "src/api").returncode == 0
    b.sync("web", "frontend")
    monkeypatch.setenv("ORCHESTRATOR_IDLE_AFTER", "2s")
    monkeypatch.setenv("ORCHESTRATOR_STALE_AFTER", "4s")
    take = ("lock", "--session", "web", "--area", "api", "--scope", "src/api/x.py", "--reason",
            "finish it", "--take-over")
    early = b.run(*take)
    assert early.returncode == 1 and "api is working" in early.stderr
    time.sleep(5)
    taken = b.run(*take)
    assert taken.returncode == 0, taken.stderr
    entries = json.loads(a.run("--json", "log").stdout)["log"]
    assert (entries[0]["command"], entries[0]["session"], entries[0]["machine"]) == (
        "lock --take-over", "web", "machine-b")
    seen_on_a = json.loads(a.run("--json", "status").stdout)
    (moved,) = seen_on_a["locks"]
    assert moved["owner"] == "web" and moved["taken_over_from"] == ["api"]
    (told,) = next(s for s in seen_on_a["active_sessions"] if s["id"] == "api")["inbox"]
    assert "[web] took over your lock on api" in told


def test_a_merge_conflict_with_another_machines_branch_is_predicted_from_the_fetched_branch(
        shared):
    """b's session works on branch feat-web (committed, pushed) and its hooks record README;
    a's session changes the same lines without committing. a fetches: its report predicts the
    merge conflict from b's branch as fetched, and says how old that is."""
    remote, a, b = shared
    git(b.folder, "checkout", "-q", "-b", "feat-web")
    b.sync("web", "frontend")
    time.sleep(1.1)  # b's commit comes after the second its session started in
    (b.folder / "README").write_text("shared, as web has it\n")
    git(b.folder, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "web's work")
    git(b.folder, "push", "-q", "origin", "feat-web")
    for event in ({"tool_name": "Bash", "hook_event_name": "PostToolUse",
                   "tool_input": {"command": "sh .windsurf/bin/orchestrator update --session "
                                             "web --status in_progress"}},
                  {"tool_name": "Write", "hook_event_name": "PostToolUse",
                   "tool_input": {"file_path": str(b.folder / "README"), "content": "x"}}):
        proc = subprocess.run([sys.executable, os.path.join(o.HERE, "orchestrator.py"), "hook"],
                              cwd=b.folder, env=b.env(), text=True, capture_output=True,
                              input=json.dumps({"session_id": "conv-web", "cwd": str(b.folder),
                                                "transcript_path": "", "tool_use_id": "t",
                                                **event}), timeout=60)
        assert proc.returncode == 0, proc.stderr
    (a.folder / "README").write_text("shared, as api has it\n")
    git(a.folder, "fetch", "-q", "origin")
    payload = json.loads(a.run("--json", "status").stdout)
    (merge,) = [c for c in payload["conflicts"] if c["kind"] == "merge"]
    assert merge["sessions"] == ["api", "web"] and merge["paths"] == ["README"]
    assert merge["remote"]["session"] == "web"
    assert merge["remote"]["ref"] == "refs/remotes/origin/feat-web"
    assert 0 <= merge["remote"]["fetched_seconds"] < 120
    report = a.run("status").stdout
    assert "web's side is refs/remotes/origin/feat-web as fetched" in report


def test_a_session_records_its_machine_and_other_machines_paths_are_not_used_here(shared):
    remote, a, b = shared
    b.sync("web", "frontend")
    assert a.run("status").returncode == 0  # refreshes a's copy first
    sessions = {s["id"]: s for s in a.state()["active_sessions"]}
    assert sessions["api"]["machine"] == "machine-a" and sessions["web"]["machine"] == "machine-b"
    assert not o.is_on_machine(sessions["web"], "machine-a")
    # equal worktree paths on two machines are two worktrees, not one shared by both
    state = {**o.empty_state(), "active_sessions": [
        {**sessions["api"], "worktree": "/w"}, {**sessions["web"], "worktree": "/w"}]}
    assert o.shared_worktrees(state) == []
    state["active_sessions"][1]["machine"] = "machine-a"
    assert o.shared_worktrees(state) == [{"worktree": "/w", "sessions": ["api", "web"]}]


def test_a_stale_copy_is_refreshed_in_the_background_while_reads_answer_at_once(shared):
    remote, a, b = shared
    git(a.folder, "config", "orchestrator.maxAge", "0")
    b.sync("web", "frontend")
    assert b.lock("web", "frontend", "src/web").returncode == 0
    assert [lock["owner"] for lock in a.state()["locks"]] == []  # a has not looked yet
    assert a.run("check", "--session", "api").returncode == 0  # answers from its copy
    deadline = time.monotonic() + 60  # bounded wait for the detached refresh, not a timing
    while time.monotonic() < deadline and not a.state()["locks"]:
        time.sleep(0.2)
    assert [lock["owner"] for lock in a.state()["locks"]] == ["web"]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_machines_coordinate_over_a_real_network_transport(tmp_path, network):
    """git daemon with receive-pack enabled, on 127.0.0.1 and an ephemeral port."""
    remote, a, b = network
    port = free_port()
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all",
                               "--enable=receive-pack", f"--base-path={tmp_path}",
                               "--listen=127.0.0.1", f"--port={port}", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"git://127.0.0.1:{port}/remote.git"
        deadline = time.monotonic() + 30
        while git(a.folder, "ls-remote", url, check=False).returncode != 0:
            assert time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.1)
        for machine in (a, b):
            git(machine.folder, "remote", "set-url", "origin", url)
        a.sync("api", "backend")
        assert a.run("remote", "enable").returncode == 0
        assert b.run("remote", "enable").returncode == 0
        assert_a_lock_on_b_refuses_a(a, b, "src/web")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


def test_disable_keeps_the_local_copy_and_leaves_the_ref(shared):
    remote, a, b = shared
    before = (a.folder / STATE).read_bytes()
    result = a.run("remote", "disable")
    assert result.returncode == 0 and "no longer shared" in result.stdout
    assert (a.folder / STATE).read_bytes() == before
    assert git(remote, "rev-parse", o.DEFAULT_SHARED_REF).returncode == 0
    assert a.run("note", "--session", "api", "local only").returncode == 0
    assert shared_state(remote)["global_notes"] == []
    assert json.loads(a.run("--json", "remote", "status").stdout)["shared"] is False


def test_a_worktree_of_a_clone_shares_through_the_same_remote(shared):
    remote, a, b = shared
    tree = a.folder.parent / "a-feature"
    git(a.folder, "worktree", "add", "-q", "-b", "feature", str(tree))
    in_tree = Machine(tree, a.name)
    assert in_tree.run("note", "--session", "api", "from the worktree").returncode == 0
    assert shared_state(remote)["global_notes"] == ["[api] from the worktree"]


def test_what_a_hook_records_reaches_the_remote(shared):
    """A Windsurf pre_run_command that runs the tool binds the conversation, and a
    post_write_code records the touched file: both are writes, pushed like any other."""
    remote, a, b = shared
    tool = os.path.join(o.HERE, "orchestrator.py")
    for event in ({"agent_action_name": "pre_run_command", "trajectory_id": "t-1",
                   "tool_info": {"command_line": f"python {tool} note --session api hi",
                                 "cwd": str(a.folder)}},
                  {"agent_action_name": "post_write_code", "trajectory_id": "t-1",
                   "tool_info": {"file_path": str(a.folder / "src" / "api.py")}}):
        proc = subprocess.run([sys.executable, tool, "hook"], cwd=a.folder, env=a.env(),
                              input=json.dumps(event), capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
    (session,) = shared_state(remote)["active_sessions"]
    assert session["trajectories"] == ["t-1"] and session["touched_files"] == ["src/api.py"]


def test_a_push_cut_off_after_the_server_took_it_counts_as_written(shared, monkeypatch):
    """The server's post-receive hook outlasts the push's time limit: what the ref holds
    decides, so the note is written once and reported as written (not "nothing written",
    which would make the user run it again)."""
    remote, a, b = shared
    hook = remote / "hooks" / "post-receive"
    hook.write_text("#!/bin/sh\nsleep 4\n")
    hook.chmod(0o755)
    monkeypatch.setattr(o, "NETWORK_SECONDS", 1)
    in_process(monkeypatch, a)
    assert o.main(["note", "--session", "api", "once"]) == 0
    hook.unlink()
    assert shared_state(remote)["global_notes"] == ["[api] once"]
    assert a.state()["global_notes"] == ["[api] once"]


def test_a_stuck_lock_on_the_server_is_a_refusal_not_a_race(shared):
    remote, a, b = shared
    (remote / "refs" / "orchestrator" / "state.lock").write_text("")
    result = a.run("note", "--session", "api", "hello")
    assert result.returncode == o.EXIT_REMOTE and "did not take the write" in result.stderr
    assert a.state()["global_notes"] == []


def test_a_hand_edit_of_the_local_copy_is_kept_when_the_shared_state_replaces_it(shared):
    remote, a, b = shared
    path = a.folder / STATE
    edited = path.read_text(encoding="utf-8").replace("global_notes: []",
                                                      "global_notes:\n  - by hand")
    path.write_text(edited, encoding="utf-8")
    status = a.run("status")
    assert status.returncode == 0 and "kept in" in status.stderr
    (kept,) = path.parent.glob("session_state.yaml.local-*")
    assert kept.read_text(encoding="utf-8") == edited
    assert a.state()["global_notes"] == []  # the copy holds the shared state again


def test_a_state_path_spelled_through_a_symlink_still_shares(shared, tmp_path):
    remote, a, b = shared
    link = tmp_path / "linked-a"
    link.symlink_to(a.folder)
    env = a.env()
    env["ORCHESTRATOR_STATE"] = str(link / STATE)
    proc = subprocess.run([sys.executable, os.path.join(o.HERE, "orchestrator.py"), "note",
                           "--session", "api", "through the link"], cwd=a.folder, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert shared_state(remote)["global_notes"] == ["[api] through the link"]


def test_a_remote_that_never_answers_holds_up_no_read(shared, tmp_path):
    """A refresh running against a remote that accepts and never answers does not hold the
    local lock: status answers from the local copy (exit 0, saying so), not exit 4."""
    remote, a, b = shared
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        git(a.folder, "remote", "set-url", "origin",
            f"git://127.0.0.1:{silent.getsockname()[1]}/remote.git")
        refresh = a.start("remote", "refresh")
        time.sleep(0.5)  # the refresh is waiting on the remote now
        env = a.env()
        env["ORCHESTRATOR_LOCK_TIMEOUT"] = "2"
        status = subprocess.run([sys.executable, os.path.join(o.HERE, "orchestrator.py"),
                                 "status"], cwd=a.folder, env=env, capture_output=True,
                                text=True, timeout=120)
        assert status.returncode == 0, status.stderr
        assert "could not be refreshed" in status.stdout
        refresh.kill()
        refresh.wait(timeout=30)
    finally:
        silent.close()


def test_a_push_cut_off_that_landed_and_was_built_on_is_not_applied_twice(shared, monkeypatch):
    """The push lands, another machine writes on top of it, and only then does this one give
    up waiting: our commit in the ref's history means written, whatever came after."""
    remote, a, b = shared
    real_git = o.SharedRef.git

    def git_then_cut_off(self, *args, **kwargs):
        proc = real_git(self, *args, **kwargs)
        if args[0] == "push":
            assert b.run("note", "--session", "api", "from b").returncode == 0
            raise o.RemoteUnavailable("origin did not answer within 20 s")
        return proc

    monkeypatch.setattr(o.SharedRef, "git", git_then_cut_off)
    in_process(monkeypatch, a)
    assert o.main(["note", "--session", "api", "from a"]) == 0
    monkeypatch.setattr(o.SharedRef, "git", real_git)
    assert shared_state(remote)["global_notes"] == ["[api] from a", "[api] from b"]


def test_a_push_cut_off_on_its_way_is_not_called_unwritten(shared, monkeypatch, capsys):
    """The ref still holds the parent: the push may yet arrive, so the user is told to look
    before running the command again, not that nothing was written."""
    remote, a, b = shared
    real_git = o.SharedRef.git

    def cut_off(self, *args, **kwargs):
        if args[0] == "push":
            raise o.RemoteUnavailable("origin did not answer within 20 s")
        return real_git(self, *args, **kwargs)

    monkeypatch.setattr(o.SharedRef, "git", cut_off)
    in_process(monkeypatch, a)
    assert o.main(["note", "--session", "api", "maybe"]) == o.EXIT_REMOTE
    err = capsys.readouterr().err
    assert "may still arrive" in err and "nothing was written" not in err


def test_refreshes_beside_writes_make_no_write_fail(shared):
    """Detached refreshes fetch beside locked writes on the same clone: each lands on a ref of
    its own, so neither fights the other over one (every write and refresh succeeds)."""
    remote, a, b = shared
    b.sync("web", "frontend")
    script = ("import subprocess, sys\n"
              "fails = sum(subprocess.run(sys.argv[1:], capture_output=True).returncode != 0 "
              "for _ in range(6))\nprint(fails)\n")
    tool = [sys.executable, os.path.join(o.HERE, "orchestrator.py")]
    jobs = [subprocess.Popen([sys.executable, "-c", script, *tool, *argv], cwd=machine.folder,
                             env=machine.env(), stdout=subprocess.PIPE, text=True)
            for machine, argv in ((a, ["remote", "refresh"]), (a, ["remote", "refresh"]),
                                  (a, ["note", "--session", "api", "n"]),
                                  (b, ["note", "--session", "web", "n"]))]
    assert [int(job.communicate(timeout=300)[0]) for job in jobs] == [0, 0, 0, 0]
    assert len(shared_state(remote)["global_notes"]) == 12


def test_offline_messages_give_gits_reason_and_what_to_do(shared):
    remote, a, b = shared
    git(a.folder, "config", "orchestrator.maxAge", "0")
    git(a.folder, "remote", "set-url", "origin", str(remote.parent / "nowhere.git"))
    write = a.run("note", "--session", "api", "hi")
    assert write.returncode == o.EXIT_REMOTE
    assert "does not appear to be a git repository" in write.stderr
    assert "remote disable" in write.stderr and "nothing was written" in write.stderr
    assert a.run("check", "--session", "api").returncode == 0  # starts a refresh, which fails
    marker = a.folder / ".windsurf/orchestrator/shared-refresh-failed"
    deadline = time.monotonic() + 60  # bounded wait for the detached refresh, not a timing
    while time.monotonic() < deadline and not marker.exists():
        time.sleep(0.2)
    verdict = a.run("build-failure", "--session", "api", "--area", "backend")
    assert "could not be refreshed" in verdict.stdout and "nowhere.git" in verdict.stdout
    assert "could not be refreshed" in a.run("remote", "status").stdout


def test_enabling_again_never_replaces_an_earlier_kept_copy(shared):
    remote, a, b = shared
    assert b.run("remote", "disable").returncode == 0
    b.sync("solo", "docs")
    assert b.run("remote", "enable").returncode == 0
    assert b.run("remote", "disable").returncode == 0
    b.sync("solo-again", "docs")
    again = b.run("remote", "enable")
    assert again.returncode == 0 and "sync --session" in again.stdout
    kept = sorted(p.name for p in (b.folder / STATE).parent.glob("*.before-shared*"))
    assert len(kept) == 2, kept


def test_reports_show_each_sessions_machine_beside_its_worktree(shared):
    remote, a, b = shared
    b.sync("web", "frontend")
    out = a.run("status").stdout
    assert "(on machine-b)" in out and "(on machine-a)" in out


def test_a_write_overtaken_every_time_gives_up_with_exit_4(shared, monkeypatch, capsys):
    """Applied again SHARED_ATTEMPTS times, each overtaken: exit 4, nothing written."""
    remote, a, b = shared
    attempts = []

    def always_overtaken(self, *args):
        attempts.append(1)
        raise o.RemoteMoved("moved")

    monkeypatch.setattr(o.SharedRef, "publish", always_overtaken)
    monkeypatch.setattr(o, "wait_to_retry", lambda attempt: None)
    in_process(monkeypatch, a)
    assert o.main(["note", "--session", "api", "never"]) == o.EXIT_BUSY
    assert len(attempts) == o.SHARED_ATTEMPTS
    assert "kept moving" in capsys.readouterr().err
    assert shared_state(remote)["global_notes"] == [] and a.state()["global_notes"] == []


# ---------------------------------------------------------------------------- a hostile ref

def push_by_hand(work, remote, text=None, kind="commit"):
    """Point the shared ref at what a hostile or careless clone would push: a commit holding
    `text` as the state, or (kind) a tree, an annotated tag or a blob."""
    git(work, "fetch", "-q", "origin", o.DEFAULT_SHARED_REF)  # the parent's objects
    blob = git(work, "hash-object", "-w", "--stdin", input=text or "").stdout.strip()
    tree = git(work, "mktree", input=f"100644 blob {blob}\t{o.SHARED_FILE}\n").stdout.strip()
    parent = git(remote, "rev-parse", o.DEFAULT_SHARED_REF).stdout.strip()
    commit = git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit-tree", tree, "-p",
                 parent, "-m", "by hand").stdout.strip()
    target = {"commit": commit, "tree": tree, "blob": blob}.get(kind)
    if kind == "tag":
        git(work, "-c", "user.name=t", "-c", "user.email=t@t", "tag", "-a", "-m", "t",
            "hostile", commit)
        target = git(work, "rev-parse", "hostile").stdout.strip()
    git(work, "push", "-q", "--force", "origin", f"{target}:{o.DEFAULT_SHARED_REF}")
    return target


@pytest.mark.parametrize("text", ["", "# Session Orchestrator shared state\n",
                                  "active_sessions: []\nlocks: []\n"])
def test_a_ref_emptied_by_hand_never_empties_a_clone(shared, text):
    """A commit on the ref holding an empty, comment-only or entry-less state, while the
    clone's copy holds entries: exit 3 on every read and write, the copy and its backup left
    as they were, and the hook still judges from the last good state."""
    remote, a, b = shared
    assert a.lock("api", "backend", "src/api").returncode == 0
    push_by_hand(b.folder, remote, text)
    state_file = a.folder / STATE
    before = state_file.read_bytes(), (a.folder / (STATE + ".bak")).read_bytes()
    for argv in (("status",), ("note", "--session", "api", "hi"), ("remote", "refresh")):
        result = a.run(*argv)
        assert result.returncode == o.EXIT_STATE, (argv, result.stderr)
        assert "holds no entry at all" in result.stderr and "remote disable" in result.stderr
    assert (state_file.read_bytes(), (a.folder / (STATE + ".bak")).read_bytes()) == before
    verdict = a.run("--json", "build-failure", "--session", "someone", "--path", "src/api/x.py")
    assert json.loads(verdict.stdout)["verdict"] == "report_only"


@pytest.mark.parametrize("kind", ["tree", "tag", "blob"])
def test_a_ref_pointing_at_no_commit_is_refused_not_adopted(shared, kind):
    remote, a, b = shared
    push_by_hand(b.folder, remote, (a.folder / STATE).read_text(), kind=kind)
    before = (a.folder / STATE).read_bytes()
    for argv in (("status",), ("note", "--session", "api", "hi")):
        result = a.run(*argv)
        assert result.returncode == o.EXIT_STATE, (argv, result.stderr)
        assert "not a commit" in result.stderr
    assert (a.folder / STATE).read_bytes() == before


def test_texts_on_the_ref_are_held_to_the_limits_of_typed_input(shared, monkeypatch, capsys):
    """A note far longer than `note` accepts is refused (exit 3, nothing adopted); a state
    larger than any state needs is refused before it is read."""
    remote, a, b = shared
    text = (a.folder / STATE).read_text()
    push_by_hand(b.folder, remote, text.replace("global_notes: []",
                                                "global_notes:\n  - " + "x" * 2500))
    result = a.run("status")
    assert result.returncode == o.EXIT_STATE and "a text of 2500 characters" in result.stderr
    in_process(monkeypatch, a)
    monkeypatch.setattr(o, "MAX_SHARED_BYTES", 1000)
    assert o.main(["status"]) == o.EXIT_STATE
    assert "more than a state ever needs" in capsys.readouterr().err


def test_a_failed_local_git_step_of_a_shared_write_is_exit_3_not_70(shared, monkeypatch, capsys):
    """Fault injection at the process boundary: git's hash-object fails as on a full disk."""
    remote, a, b = shared
    in_process(monkeypatch, a)
    real = o.SharedRef.git

    def full_disk(self, *args, **kwargs):
        if args and args[0] == "hash-object":
            return subprocess.CompletedProcess(args, 128, b"",
                                               b"error: write error: No space left on device\n")
        return real(self, *args, **kwargs)
    monkeypatch.setattr(o.SharedRef, "git", full_disk)
    before = git(remote, "rev-parse", o.DEFAULT_SHARED_REF).stdout
    assert o.main(["note", "--session", "api", "hi"]) == o.EXIT_STATE
    err = capsys.readouterr().err
    assert "No space left on device" in err and "nothing was written anywhere" in err
    assert git(remote, "rev-parse", o.DEFAULT_SHARED_REF).stdout == before


def test_a_hung_remote_leaves_no_process_behind_and_says_how_to_go_on(shared, tmp_path,
                                                                      monkeypatch, capsys):
    """An ssh remote whose transport never answers: at the timeout git and its ssh child are
    ended together, and the message says `remote disable`."""
    remote, a, b = shared
    pids = tmp_path / "pids"
    fake_ssh = tmp_path / "fake-ssh"
    fake_ssh.write_text(f"#!/bin/sh\necho $$ >> {pids}\nexec sleep 120\n")
    fake_ssh.chmod(0o755)
    git(a.folder, "remote", "set-url", "origin", "ssh://example.invalid/remote.git")
    in_process(monkeypatch, a)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(fake_ssh))
    monkeypatch.setattr(o, "NETWORK_SECONDS", 2)
    assert o.main(["note", "--session", "api", "hi"]) == o.EXIT_REMOTE
    assert "remote disable" in capsys.readouterr().err
    started = [int(pid) for pid in pids.read_text().split()]
    assert started
    for pid in started:
        deadline = time.monotonic() + 30  # bounded wait for the kernel to reap it
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the transport process {pid} outlived the command")


def test_a_good_fetch_clears_an_earlier_refresh_failure(shared):
    remote, a, b = shared
    marker = a.folder / ".windsurf/orchestrator/shared-refresh-failed"
    marker.write_text("origin did not answer within 20 s")
    assert "could not be refreshed" in a.run("remote", "status").stdout
    assert a.run("remote", "refresh").returncode == 0
    assert "could not be refreshed" not in a.run("remote", "status").stdout
    marker.write_text("origin did not answer within 20 s")
    assert a.run("note", "--session", "api", "hi").returncode == 0  # a push clears it too
    assert not marker.exists()


def test_enabling_the_same_ref_again_changes_nothing_and_says_so(shared):
    remote, a, b = shared
    before = (b.folder / STATE).read_bytes()
    again = b.run("remote", "enable")
    assert again.returncode == 0 and "already shared" in again.stdout
    assert "sync --session" not in again.stdout
    assert (b.folder / STATE).read_bytes() == before
    assert not list((b.folder / STATE).parent.glob("*.before-shared*"))


def test_log_for_a_session_without_history_says_so(shared):
    remote, a, b = shared
    result = a.run("log", "--session", "nobody")
    assert result.returncode == 0
    assert result.stdout.strip() == (f"No write by session nobody in the recent history on "
                                     f"origin {o.DEFAULT_SHARED_REF}")


def test_kept_copies_made_within_one_second_never_overwrite_each_other(shared):
    remote, a, b = shared
    for round_number in range(4):
        assert b.run("remote", "disable").returncode == 0
        b.sync(f"solo-{round_number}", "docs")
        assert b.run("remote", "enable").returncode == 0
    kept = sorted((b.folder / STATE).parent.glob("*.before-shared*"))
    assert len(kept) == 4, kept
    assert len({p.read_bytes() for p in kept}) == 4


def test_watch_shows_how_old_the_shared_copy_is():
    frame = o.watch_frame(o.empty_state(), "2026-12-06T10:00:00+00:00", 120, 20, color=False,
                          shared_age="12 s old")
    assert "shared copy 12 s old" in frame[0]
