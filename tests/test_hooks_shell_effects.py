"""Shell commands judged by what they change, not by how they are spelled: a corpus of command
forms grouped by how they write, each fed as its agent documents the event and answered as
that agent reads the answer; the report after a command; the enforcement files; the folder a
hook starts from; the environment.

Contracts followed (the pages as stored in late 2026):
- Claude Code hooks, code.claude.com/docs/en/hooks (Claude Code 2.x): PreToolUse on `Bash`
  with `tool_input.command` and `cwd`; the answer is `hookSpecificOutput.permissionDecision`
  `deny` or `ask` with `permissionDecisionReason`; PostToolUse's `additionalContext`.
- Cursor hooks, cursor.com/docs/agent/hooks (Cursor 2.x): `beforeShellExecution` with
  `command`, `cwd`, `conversation_id`, `workspace_roots`; the answer is `permission` `deny`
  or `ask` with `user_message`/`agent_message` (exit 2 also denies); `postToolUse` on `Shell`
  answers `additional_context`.
- Windsurf Cascade hooks, docs.windsurf.com/windsurf/cascade/hooks: `pre_run_command` with
  `tool_info.command_line` and `cwd`; exit 2 blocks, there is no `ask`, so an uncertain
  command runs and `post_run_command` (shown to the person) reports what it changed.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import orchestrator
from helpers import git

CLI = "sh .windsurf/bin/orchestrator"
AGENTS = ("windsurf", "claude", "cursor", "devin")
NO_ASK = ("windsurf", "devin")  # agents whose hooks cannot ask: an uncertain command runs
SHELLS = [shell for shell in ("dash", "bash", "zsh") if shutil.which(shell)]
PATCH = """--- a/src/api.py
+++ b/src/api.py
@@ -1 +1 @@
-x = 1
+x = 3
"""

# (command line, what the hook does: deny, ask or allow), grouped by how the command writes.
# `src` is another session's lock that allows no outside fixes; `lib` and `docs` are free.
CORPUS = {
    "redirections": [
        ("echo x > src/api.py", "deny"), ("echo x >> src/util.py", "deny"),
        ("echo x >| src/api.py", "deny"), ("echo X >& src/api.py", "deny"),
        ("echo x &> src/api.py", "deny"), ("cat <> src/api.py", "deny"),
        ("make 2> src/build.log", "deny"), ("echo x 2>&1 > docs/out.txt", "allow"),
        ("echo x > /dev/null", "allow"), ("cat src/api.py > lib/copy.py", "allow"),
    ],
    "writers": [
        ("sed -i s/x/y/ src/api.py", "deny"), ("sed -Ei s/x/y/ src/api.py", "deny"),
        ("sed -i.bak -e s/x/y/ src/api.py", "deny"), ("sed -n p src/api.py", "allow"),
        ("perl -pi -e s/x/y/ src/api.py", "deny"), ("tee -a src/api.py", "deny"),
        ("cp -t src lib/x.py", "deny"), ("cp lib/x.py src/", "deny"),
        ("cp src/api.py lib/", "allow"), ("install -t src lib/x.py", "deny"),
        ("dd if=/dev/zero of=src/api.py count=1", "deny"), ("ln -sf lib/x.py src/api.py", "deny"),
        ("ln -s ../src/api.py lib/link.py", "allow"), ("patch src/api.py fix.patch", "deny"),
        ("sort -o src/api.py src/api.py", "deny"), ("sort src/api.py", "allow"),
        ("uniq src/api.py src/out.py", "deny"), ("uniq src/api.py", "allow"),
        ("gzip src/api.py", "deny"), ("gzip -c src/api.py > lib/a.gz", "allow"),
        ("shred -u src/api.py", "deny"), ("chmod +x src/api.py", "deny"),
        ("touch src/new.py", "deny"), ("truncate -s 0 src/api.py", "deny"),
        ("mkdir src/more", "deny"), ("unlink src/api.py", "deny"),
    ],
    "folder operations": [
        ("rm -rf src", "deny"), ("rm -r src/ui", "deny"), ("rm src/api.py", "deny"),
        ("rmdir src/ui", "deny"), ("mv src lib2", "deny"), ("mv -t lib src/api.py", "deny"),
        ("mv lib/x.py lib/y.py", "allow"), ("rm -rf lib", "allow"), ("find src -delete", "deny"),
        ("find src -name '*.py'", "allow"), ("cp -r lib src/lib", "deny"),
    ],
    "git": [
        ("git checkout -- src/api.py", "deny"), ("git checkout HEAD -- src/api.py", "deny"),
        ("git -C . checkout -- src", "deny"), ("git checkout -- .", "deny"),
        ("git checkout .", "deny"), ("git restore .", "deny"),
        ("git restore --source=HEAD src", "deny"), ("git stash", "deny"),
        ("git stash push -u", "deny"), ("git reset --hard", "deny"),
        ("git reset --hard HEAD", "deny"), ("git clean -fd", "deny"), ("git rm src/util.py", "deny"),
        ("git mv src/util.py lib/util.py", "deny"), ("git apply fix.patch", "deny"),
        ("git restore --staged src/api.py", "allow"), ("git rm --cached src/util.py", "allow"),
        ("git clean -n -d", "allow"), ("git apply --check fix.patch", "allow"),
        ("git status", "allow"), ("git diff src", "allow"), ("git log -p src/api.py", "allow"),
        ("git checkout -- docs", "allow"), ("git add src/api.py", "allow"),
        ("git reset", "allow"), ("git stash list", "allow"),
    ],
    "prefixes": [
        ("command rm src/api.py", "deny"), ("env rm src/api.py", "deny"),
        ("env -i FOO=1 rm src/api.py", "deny"), ("nice -n 10 rm src/api.py", "deny"),
        ("timeout 5 rm src/api.py", "deny"), ("nohup rm src/api.py", "deny"),
        ("stdbuf -o0 sed -i s/x/y/ src/api.py", "deny"), ("time rm src/api.py", "deny"),
        ("FOO=1 rm src/api.py", "deny"), ("command -v rm", "allow"),
    ],
    "wrappers": [
        ("bash -c 'rm src/api.py'", "deny"), ('sh -c "echo x > src/api.py"', "deny"),
        ("bash -lc 'rm -rf src'", "deny"), ("zsh -c 'rm src/api.py'", "deny"),
        ("eval 'rm src/api.py'", "deny"), ("eval rm src/api.py", "deny"),
        ("if true; then rm src/api.py; fi", "deny"), ("f() { rm src/api.py; }; f", "deny"),
        ("bash -c 'cat src/api.py'", "allow"),
    ],
    "substitutions": [
        ("echo $(rm src/api.py)", "deny"), ("X=`touch src/q.py`", "deny"),
        ('echo "$(sed -i s/x/y/ src/api.py)"', "deny"), ("echo $(cat src/api.py)", "allow"),
    ],
    "cd tracking": [
        ("cd src && rm api.py", "deny"), ("cd src && cd - && rm src/api.py", "deny"),
        ("pushd src && rm api.py", "deny"), ("pushd src; popd; rm src/api.py", "deny"),
        ("(cd lib && rm x.py); rm src/api.py", "deny"), ("cd lib && rm x.py", "allow"),
        ("cd src/ui && rm ../api.py", "deny"), ("cd src && cd .. && rm lib/x.py", "allow"),
    ],
    "globs and braces": [
        ("rm src/*.py", "deny"), ("rm s*/api.py", "deny"), ("rm src/{api,util}.py", "deny"),
        ("rm 'src/*.py'", "deny"), ("rm lib/*.py", "allow"), ("echo src/*", "allow"),
        ("rm {lib,src}/x.py", "deny"),
    ],
    "uncertain": [
        ("rm $FILE", "ask"), ("rm src/$NAME", "ask"), ('echo x > "$OUT"', "ask"),
        ("rm lib/$NAME", "ask"),  # the variable may hold ../src
        ("find src -name '*.py' | xargs sed -i s/x/y/", "ask"), ("ls src | xargs cat", "allow"),
        ("find src -exec sed -i s/x/y/ {} +", "ask"), ("find lib -exec rm {} +", "allow"),
        ("find . -name '*.pyc' -delete", "allow"),  # find itself says what it would remove
        ("find . -name '*.py' -delete", "deny"), ("find src -name 'a*' -exec rm -f {} +", "deny"),
        ("find . -name __pycache__ -type d -exec rm -rf {} +", "allow"),
        ("alias w='rm src/api.py'; w", "ask"), ("python fix.py src/api.py", "ask"),
        ("node tool.js src", "ask"), ("prettier --write src/", "ask"), ("make -C src", "ask"),
        ("bash fix.sh src/api.py", "ask"), ("patch -p1 < fix.patch", "ask"),
        ("cd nowhere; rm src/api.py", "ask"), ("cd $DIR && rm api.py", "ask"),
        ("npm test", "allow"), ("pytest src", "allow"), ("./run.sh", "allow"),
        ("python -m pytest src", "allow"),
    ],
    "a hostile review": [
        ("rm src/api.py\n'", "deny"), ("echo $(true # it's\n); rm src/api.py", "deny"),
        ("echo ${x:-'}'}; rm src/api.py", "deny"), ("echo x > $'\\x73rc/api.py'", "deny"),
        ("echo $(( $(rm src/api.py) 1 ))", "deny"), ("echo ${x:-$(rm src/api.py)}", "deny"),
        ("cat <<EOF\n$(rm src/api.py)\nEOF", "deny"), ("eval eval eval eval eval rm src/api.py", "deny"),
        ("trap 'rm src/api.py' EXIT", "deny"), ("PS4='$(rm src/api.py)'; set -x; true", "ask"),
        ("BASH_ENV=lib/e.sh bash -c true", "ask"), ("{rm,src/api.py}", "deny"),
        ("echo x >! src/api.py", "deny"), ("bash <<< 'rm src/api.py'", "deny"),
        ("echo 'rm src/api.py' | sh", "ask"), (". <(echo rm src/api.py)", "ask"),
        ("flock lib/lk -c 'rm src/api.py'", "deny"), ("python3 -c \"import os; os.remove('src/api.py')\"", "ask"),
        ("node -e \"require('fs').unlinkSync('src/api.py')\"", "ask"),
        ("find lib -name x.py -exec rm src/api.py \\;", "ask"), ("echo x > ~+/src/api.py", "deny"),
        ("env -Csrc rm api.py", "deny"), ("HOME=src; cd; rm api.py", "ask"),
        ("ln -s ../src lib/l && echo x > lib/l/api.py", "deny"), ("cd lib; x=../src/api.py; rm \"$x\"", "deny"),
        ("shopt -s extglob\nrm @(src)/api.py", "ask"), ("chmod -w src/api.py", "deny"),
        ("sed -n 'w src/api.py' lib/x.py", "ask"), ("zstd -q -f lib/x.py -o src/api.py", "deny"),
        ("curl -s -osrc/api.py file:///etc/hostname", "deny"), ("tar -xf lib/a.tar", "ask"),
        ("git log -1 --output=src/api.py", "deny"), ("git config -f src/api.py a.b c", "deny"),
        ("git -c core.fsmonitor='rm src/api.py' status", "ask"),
        ("git config core.hooksPath lib", "deny"), ("echo x > .git/hooks/post-commit", "deny"),
        ("pytest --basetemp=src lib", "deny"), ("cd src && (( n > 1 )) && echo many", "allow"),
        ("cd src && [[ a > b ]] && echo gt", "allow"), ("[[ -f src/api.py ]] && echo yes", "allow"),
        ("awk '$1 > 5' lib/x.py", "allow"), ("find src -type f -exec wc -l {} \\;", "allow"),
        ("ruff check .", "allow"), ("black --check .", "allow"), ("cd src && npm test", "allow"),
        ("export PATH=$PATH:/opt/bin && make", "allow"), ("source .venv/bin/activate && pytest", "allow"),
        ("mkdir -p build && cd build && cmake ..", "allow"), ("tar -czf /tmp/out.tgz src", "allow"),
    ],
    "readers": [
        ("cat src/api.py", "allow"), ("grep -r x src", "allow"), ("ls -la src", "allow"),
        ("wc -l src/*.py", "allow"), ("head src/api.py", "allow"),
        ("diff src/api.py lib/x.py", "allow"), ("git show HEAD:src/api.py", "allow"),
        ('echo "> src/api.py"', "allow"), ("echo x # > src/api.py", "allow"),
        ("cat <<EOF\n> src/api.py\nEOF", "allow"), ("touch -r src/api.py lib/x.py", "allow"),
        ("truncate -r src/api.py lib/x.py", "allow"), ("cp -t lib src/api.py", "allow"),
        ("install -t lib src/api.py", "allow"), ("awk '{print}' src/api.py", "allow"),
    ],
    "enforcement": [
        ("echo 'exit 0' > .windsurf/bin/orchestrator", "deny"),
        ("rm .claude/settings.json", "deny"), ("sed -i s/x/y/ .cursor/hooks.json", "deny"),
        ("echo {} > .windsurf/hooks.json", "deny"), ("rm -rf .windsurf", "deny"),
        ("rm .git/hooks/pre-commit", "deny"), ("rm -rf .windsurf/orchestrator", "deny"),
        ("git clean -fdX", "deny"), ("git clean -fdx", "deny"), ("git stash -a", "deny"),
        ("rm -rf .", "deny"), ("cat .windsurf/hooks.json", "allow"),
    ],
}
FORMS = [pytest.param(line, expected, id=f"{group}: {line}")
         for group, forms in CORPUS.items() for line, expected in forms]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """One repository for the whole corpus (the pre-command hook changes no file)."""
    return make_shop(tmp_path_factory.mktemp("corpus") / "shop")


@pytest.fixture
def fresh(tmp_path):
    """A repository of its own, for a test that changes files."""
    return make_shop(tmp_path / "shop")


def make_shop(path):
    """The pack of all three agents installed and committed, `owner` holding `src` (no
    outside fixes) with uncommitted work in it, and the conversation `c-other` bound to the
    session `other`."""
    for name, text in {"src/api.py": "x = 1\n", "src/util.py": "y = 1\n",
                       "src/ui/app.js": "a\n", "lib/x.py": "z = 1\n",
                       "docs/guide.md": "guide\n", "README.md": "readme\n",
                       "fix.patch": PATCH}.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "start")
    assert orchestrator.main(["install", "--target", str(path), "--agent", "windsurf",
                              "--agent", "claude", "--agent", "cursor", "--agent", "devin"]) == 0
    git(path, "add", "-A")
    git(path, "commit", "-qm", "pack")
    env = {**os.environ, "PATH": os.environ["PATH"]}
    env.pop("ORCHESTRATOR_STATE", None)
    for command in (f"{CLI} sync --session owner --focus api --area backend",
                    f"{CLI} sync --session other --focus docs --area docs",
                    f"{CLI} lock --session owner --area backend --scope src --reason 'moving it'"
                    " --duration 1d"):
        subprocess.run(["sh", "-c", command], cwd=path, env=env, check=True, capture_output=True)
    bind = {"agent_action_name": "pre_run_command", "trajectory_id": "c-other",
            "tool_info": {"command_line": f"{CLI} update --session other --status in_progress",
                          "cwd": str(path)}}
    for event in ("pre", "post"):  # the command's before- and after-events, as Windsurf sends them
        bind["agent_action_name"] = f"{event}_run_command"
        subprocess.run(["sh", "-c", installed(path, "windsurf", event)], cwd=path, env=env,
                       check=True, input=json.dumps(bind), capture_output=True, text=True)
    (path / "src/api.py").write_text("x = 2  # the owner's work, not committed yet\n")
    (path / "src/owners_new.py").write_text("new\n")
    return path


def installed(target, agent, event="pre"):
    """The command line the agent's installed configuration runs for a shell command."""
    if agent == "windsurf":
        hooks = json.loads((target / ".windsurf/hooks.json").read_text())["hooks"]
        return hooks[f"{event}_run_command"][-1]["command"]
    if agent == "cursor":
        hooks = json.loads((target / ".cursor/hooks.json").read_text())["hooks"]
        return hooks["beforeShellExecution" if event == "pre" else "postToolUse"][-1]["command"]
    if agent == "devin":
        hooks = json.loads((target / ".devin/hooks.v1.json").read_text())
        entries = hooks["PreToolUse" if event == "pre" else "PostToolUse"]
        return next(e["hooks"][0]["command"] for e in entries if e["matcher"] == "exec")
    hooks = json.loads((target / ".claude/settings.json").read_text())["hooks"]
    entries = hooks["PreToolUse" if event == "pre" else "PostToolUse"]
    return next(e["hooks"][0]["command"] for e in entries if "Bash" in e["matcher"])


def shell_event(agent, conversation, command_line, cwd, phase="pre", tool_use="t1"):
    """The event each agent documents for a shell command, before or after it runs."""
    if agent == "windsurf":
        return {"agent_action_name": f"{phase}_run_command", "trajectory_id": conversation,
                "execution_id": "e1", "timestamp": "2026-12-06T10:00:00Z",
                "tool_info": {"command_line": command_line, "cwd": str(cwd)}}
    if agent == "devin":  # docs.devin.ai/cli/extensibility/hooks/lifecycle-hooks: no cwd
        return {"session_id": conversation, "prompt_id": "p1", "transcript_path": "/dev/null",
                "hook_event_name": "PreToolUse" if phase == "pre" else "PostToolUse",
                "tool_name": "exec", "tool_input": {"command": command_line, "shell_id": "main"},
                **({} if phase == "pre" else {"tool_response": {"success": True, "output": "",
                                                                "error": None}})}
    if agent == "claude":
        return {"session_id": conversation, "transcript_path": "/dev/null", "cwd": str(cwd),
                "permission_mode": "default",
                "hook_event_name": "PreToolUse" if phase == "pre" else "PostToolUse",
                "tool_name": "Bash", "tool_use_id": tool_use,
                "tool_input": {"command": command_line}}
    if phase == "pre":
        return {"conversation_id": conversation, "generation_id": "g1",
                "hook_event_name": "beforeShellExecution", "cursor_version": "2.1",
                "workspace_roots": [str(cwd)], "command": command_line, "cwd": str(cwd)}
    return {"conversation_id": conversation, "generation_id": "g1",
            "hook_event_name": "postToolUse", "cursor_version": "2.1",
            "workspace_roots": [str(cwd)], "tool_name": "Shell",
            "tool_input": {"command": command_line, "cwd": str(cwd)},
            "tool_output": "", "cwd": str(cwd)}


def verdict_of(agent, code, out):
    """deny, ask or allow, read from the answer as the agent reads it."""
    if agent == "windsurf":
        return "deny" if code == 2 else "allow"
    answer = json.loads(out) if out.strip() else {}
    if agent == "devin":
        assert (code == 2) == (answer.get("decision") == "block"), (code, answer)
        return "deny" if code == 2 else "allow"
    if agent == "claude":
        assert code == 0
        return answer.get("hookSpecificOutput", {}).get("permissionDecision", "allow")
    decision = answer.get("permission", "allow")
    assert (code == 2) == (decision == "deny"), (code, answer)
    return decision


def in_process(monkeypatch, capsys, target, event):
    monkeypatch.chdir(target)
    monkeypatch.delenv("ORCHESTRATOR_STATE", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(event)))
    code = orchestrator.main(["hook"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("line, expected", FORMS)
def test_each_form_gets_its_layer_from_every_agent(shop, monkeypatch, capsys, line, expected):
    """In process, the event of each agent: deny where the command certainly changes a file in
    the lock (or the enforcement), ask where its words do not tell (Windsurf has no ask and
    lets it run), allow otherwise."""
    for agent in AGENTS:
        code, out, err = in_process(monkeypatch, capsys, shop,
                                    shell_event(agent, "c-other", line, shop))
        wanted = "allow" if agent in NO_ASK and expected == "ask" else expected
        assert verdict_of(agent, code, out) == wanted, (agent, out, err)
    assert (shop / "src/api.py").read_text().startswith("x = 2")  # nothing ran


@pytest.mark.parametrize("line, expected", FORMS)
def test_each_form_through_every_installed_command_line(shop, tmp_path, line, expected):
    """The same answers from the exact command line each agent's installed configuration
    runs, started by dash, bash and zsh as an agent would start it."""
    env = {"PATH": os.path.dirname(shutil.which("git")) + ":/usr/bin:/bin",
           "HOME": str(tmp_path), "XDG_DATA_HOME": os.environ["XDG_DATA_HOME"],
           "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"],
           "CLAUDE_PROJECT_DIR": str(shop), "CURSOR_PROJECT_DIR": str(shop),
           "DEVIN_PROJECT_DIR": str(shop)}
    for agent in AGENTS:
        wanted = "allow" if agent in NO_ASK and expected == "ask" else expected
        event = json.dumps(shell_event(agent, "c-other", line, shop))
        for shell in SHELLS:
            result = subprocess.run([shutil.which(shell), "-c", installed(shop, agent)],
                                    cwd=shop, env=env, input=event, capture_output=True,
                                    text=True, timeout=60)
            assert verdict_of(agent, result.returncode, result.stdout) == wanted, (
                agent, shell, result)


# ---------------------------------------------------------------------------- after the command

@pytest.mark.parametrize("agent", AGENTS)
def test_what_a_command_created_changed_deleted_or_moved_is_reported_and_noted(
        fresh, monkeypatch, capsys, agent):
    """A command the words did not show as a writer (a script) runs; after it, every file it
    created, changed, deleted or moved inside the owner's lock is reported where the agent
    reads it (Claude Code's PostToolUse additionalContext, Cursor's postToolUse
    additional_context, Windsurf's post_run_command output shown to the person) and noted in
    the state for the owner. Files git ignores are nobody's work and are not reported."""
    (fresh / ".gitignore").write_text((fresh / ".gitignore").read_text() + "*.pyc\n")
    time.sleep(0.05)  # past the file system's clock tick of the owner's last write
    pre = shell_event(agent, "c-other", "./tidy.sh", fresh, tool_use="t-tidy")
    code, out, _ = in_process(monkeypatch, capsys, fresh, pre)
    assert verdict_of(agent, code, out) == "allow"
    (fresh / "src/created.py").write_text("new\n")
    (fresh / "src/util.py").write_text("y = 2\n")
    (fresh / "src/ui/app.js").unlink()
    os.rename(fresh / "src/owners_new.py", fresh / "src/renamed.py")
    (fresh / "src/cache.pyc").write_text("ignored\n")
    post = shell_event(agent, "c-other", "./tidy.sh", fresh, phase="post", tool_use="t-tidy")
    code, out, err = in_process(monkeypatch, capsys, fresh, post)
    assert code == 0
    if agent == "claude":
        said = json.loads(out)["hookSpecificOutput"]["additionalContext"]
    elif agent == "cursor":
        said = json.loads(out)["additional_context"]
    else:
        said = out
    for part in ("src/created.py created", "src/util.py changed", "src/ui/app.js deleted",
                 "src/owners_new.py moved to src/renamed.py", "inside owner's lock on backend"):
        assert part in said, (part, said)
    assert "cache.pyc" not in said
    status = json.loads(subprocess.run(["sh", "-c", f"{CLI} status --json"], cwd=fresh,
                                       capture_output=True, text=True, check=True).stdout)
    note = [n for n in status["global_notes"] if "owner's lock" in n]
    assert len(note) == 1 and "src/ui/app.js deleted" in note[0] and "owner:" in note[0]


def test_a_command_that_changes_nothing_in_a_lock_reports_nothing(fresh, monkeypatch, capsys):
    time.sleep(0.05)  # past the file system's clock tick of the owner's last write
    pre = shell_event("claude", "c-other", "./build.sh", fresh, tool_use="t-build")
    in_process(monkeypatch, capsys, fresh, pre)
    (fresh / "lib/out.txt").write_text("built\n")
    post = shell_event("claude", "c-other", "./build.sh", fresh, phase="post", tool_use="t-build")
    code, out, _ = in_process(monkeypatch, capsys, fresh, post)
    assert code == 0 and out == ""


# ---------------------------------------------------------------------------- the enforcement

@pytest.mark.parametrize("path", [".windsurf/bin/orchestrator", ".windsurf/hooks.json",
                                  ".claude/settings.json", ".cursor/hooks.json",
                                  ".git/hooks/pre-commit"])
def test_an_edit_tool_cannot_switch_the_enforcement_off(shop, monkeypatch, capsys, path):
    """Claude Code's Write tool (PreToolUse, tool_input.file_path) on each enforcement file,
    while another session holds a live lock: denied, saying a person can change it."""
    event = {"session_id": "c-other", "transcript_path": "/dev/null", "cwd": str(shop),
             "permission_mode": "default", "hook_event_name": "PreToolUse", "tool_name": "Write",
             "tool_input": {"file_path": str(shop / path), "content": "exit 0\n"}}
    code, out, _ = in_process(monkeypatch, capsys, shop, event)
    answer = json.loads(out)["hookSpecificOutput"]
    assert answer["permissionDecision"] == "deny"
    assert "A person can change it by hand" in answer["permissionDecisionReason"]


def test_the_enforcement_files_are_free_when_nobody_else_holds_a_lock(
        fresh, monkeypatch, capsys):
    subprocess.run(["sh", "-c", f"{CLI} unlock --session owner --all"], cwd=fresh, check=True,
                   capture_output=True)
    event = shell_event("claude", "c-other", "echo '{}' > .cursor/hooks.json", fresh)
    code, out, _ = in_process(monkeypatch, capsys, fresh, event)
    assert verdict_of("claude", code, out) == "allow"


def test_a_removed_state_is_not_read_as_empty_and_can_be_restored(fresh):
    """`rm -rf .windsurf/orchestrator` by hand (or `git clean -X`): the state and its .bak are
    gone, but the copy kept in the user's cache folder makes every command refuse with exit 3
    and print the command that restores it; after it, the locks are back."""
    state_folder = fresh / ".windsurf/orchestrator"
    shutil.rmtree(state_folder)
    env = {**os.environ}
    env.pop("ORCHESTRATOR_STATE", None)
    result = subprocess.run([sys.executable, str(orchestrator.__file__), "status"], cwd=fresh,
                            env=env, capture_output=True, text=True)
    assert result.returncode == 3, result
    restore = result.stderr.split("`")[1]
    assert restore.startswith("mkdir -p ") and " && cp " in restore
    subprocess.run(["sh", "-c", restore], check=True)
    result = subprocess.run([sys.executable, str(orchestrator.__file__), "status", "--json"],
                            cwd=fresh, env=env, capture_output=True, text=True)
    assert result.returncode == 0
    assert [lock["owner"] for lock in json.loads(result.stdout)["locks"]] == ["owner"]


# ---------------------------------------------------------------------------- where the hook starts

@pytest.mark.parametrize("agent", AGENTS)
def test_a_nested_repository_with_its_own_uninstalled_pack_never_decides(fresh, tmp_path, agent):
    """A nested repository (a vendored library, a submodule's checkout) with the pack committed
    but never installed on this machine, as the hook's folder and as the agent's project
    folder: an edit of the parent's locked file is still denied, by the parent's state."""
    nested = fresh / "vendor/lib"
    nested.mkdir(parents=True)
    git(nested, "init", "-q", "-b", "main")
    (nested / "a.txt").write_text("a\n")
    shutil.copytree(fresh / ".windsurf/bin", nested / ".windsurf/bin")
    git(nested, "add", "-A")
    git(nested, "commit", "-qm", "nested with a pack")
    env = {"PATH": os.path.dirname(shutil.which("git")) + ":/usr/bin:/bin",
           "HOME": str(tmp_path), "XDG_DATA_HOME": os.environ["XDG_DATA_HOME"],
           "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"],
           "CLAUDE_PROJECT_DIR": str(nested), "CURSOR_PROJECT_DIR": str(nested)}
    line = f"echo x > {fresh / 'src/api.py'}"
    event = shell_event(agent, "c-other", line, nested)
    if agent == "cursor":
        event["workspace_roots"] = [str(nested)]
    result = subprocess.run(["sh", "-c", installed(fresh, agent)], cwd=nested, env=env,
                            input=json.dumps(event), capture_output=True, text=True, timeout=60)
    assert verdict_of(agent, result.returncode, result.stdout) == "deny", result


@pytest.mark.parametrize("variable", ["PYTHONINSPECT", "PYTHONSTARTUP", "PYTHONIOENCODING",
                                      "PYTHONPATH", "PYTHONWARNINGS"])
def test_the_environment_cannot_turn_a_denial_into_an_allow(shop, tmp_path, variable):
    """The launcher runs Python isolated (-I): what the agent's environment sets for Python
    changes no verdict."""
    (tmp_path / "startup.py").write_text("import sys; sys.exit(0)\n")
    (tmp_path / "orchestrator.py").write_text("def run():\n    return 0\n")
    value = {"PYTHONSTARTUP": str(tmp_path / "startup.py"), "PYTHONIOENCODING": "latin-1",
             "PYTHONPATH": str(tmp_path), "PYTHONWARNINGS": "error"}.get(variable, "1")
    env = {"PATH": os.path.dirname(shutil.which("git")) + ":/usr/bin:/bin", "HOME": str(tmp_path),
           "XDG_DATA_HOME": os.environ["XDG_DATA_HOME"],
           "XDG_CACHE_HOME": os.environ["XDG_CACHE_HOME"], variable: value}
    event = shell_event("windsurf", "c-other", "rm src/api.py", shop)
    result = subprocess.run(["sh", "-c", installed(shop, "windsurf")], cwd=shop, env=env,
                            input=json.dumps(event), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result


# ---------------------------------------------------------------------------- the enforcement table in docs/agents.md

def readme_examples(row_title, column):
    """The example commands the enforcement table (docs/agents.md) gives in one cell."""
    import re
    readme = (orchestrator.HERE + "/docs/agents.md")
    row = next(line for line in open(readme, encoding="utf-8").read().splitlines()
               if line.startswith(f"| **{row_title}**"))
    cell = re.split(r"(?<!\\)\|", row)[column + 2]
    examples = [e.replace("\\|", "|") for e in re.findall(r"`([^`]+)`", cell)]
    return [e for e in examples if " " in e and not e.split()[0].endswith(":")]


def test_the_readme_table_holds_for_every_agent(shop, monkeypatch, capsys):
    """What docs/agents.md says each agent denies and asks about, run as written."""
    denied, asked = readme_examples("denied before it runs", 0), readme_examples("asked, the person decides", 1)
    assert len(denied) >= 8 and len(asked) >= 5, (denied, asked)
    for examples, expected in ((denied, "deny"), (asked, "ask")):
        for line in examples:
            for agent in AGENTS:
                code, out, err = in_process(monkeypatch, capsys, shop,
                                            shell_event(agent, "c-other", line, shop))
                wanted = "allow" if agent in NO_ASK and expected == "ask" else expected
                assert verdict_of(agent, code, out) == wanted, (line, agent, out, err)
