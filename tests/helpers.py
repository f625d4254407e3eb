"""Plain helpers shared by several test files: `from helpers import ...`.

Fixtures live in conftest.py; this module holds ordinary functions and constants. It imports
`orchestrator`, which conftest.py makes importable by putting the repository root on sys.path.
"""

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone

import orchestrator as o

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def at(**delta):
    """ISO text of T0 + delta, as the state file holds it."""
    return o.iso(T0 + timedelta(**delta))


def read_state(path):
    state, _ = o.parse_state_text(path.read_text(encoding="utf-8"), str(path))
    return state


def as_json(result):
    """The single JSON object a --json command printed."""
    assert result.out.count("\n") == 1, result
    return json.loads(result.out)


def assert_usage_error(result, *names):
    """Exit 2, nothing on stdout, one 'orchestrator:' line on stderr naming `names`."""
    assert result.code == 2, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("orchestrator:"), result.err
    assert "Traceback" not in result.err
    for name in names:
        assert name in lines[0], (name, lines[0])


def lock(run, owner, area, *scopes, reason="work in progress", extra=()):
    """Run `lock` for `owner` on `area` with `scopes`; the Result, whatever its exit code."""
    argv = ["lock", "--session", owner, "--area", area, "--reason", reason, *extra]
    for scope in scopes:
        argv += ["--scope", scope]
    return run(*argv)


def lock_ok(run, owner, area, *scopes, reason="work in progress", extra=()):
    """lock(), asserting that it succeeded."""
    result = lock(run, owner, area, *scopes, reason=reason, extra=extra)
    assert result.code == 0, result
    return result


def git(cwd, *args):
    """git in `cwd` with a fixed author and committer; fails the test on a non-zero exit."""
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})


def claude_answer(result):
    """The `hookSpecificOutput` a Claude Code hook printed on stdout, {} when it printed
    nothing (code.claude.com/docs/en/hooks: JSON output, read on exit 0)."""
    assert result.returncode == 0, result
    return json.loads(result.stdout)["hookSpecificOutput"] if result.stdout.strip() else {}


def claude_denial(result):
    """The reason a Claude Code PreToolUse hook denied the tool call with, or "" when it did
    not deny (`permissionDecision: deny`, `permissionDecisionReason`)."""
    answer = claude_answer(result)
    if answer.get("permissionDecision") != "deny":
        return ""
    assert answer["hookEventName"] == "PreToolUse"
    return answer["permissionDecisionReason"]


def cursor_answer(result):
    """The JSON object a Cursor hook printed (cursor.com/docs/agent/hooks: every path of a
    permission hook answers one)."""
    return json.loads(result.stdout)


def committed_repo(path, files, branch="main"):
    """A git repository at `path` whose first commit holds `files` ({relative path: text})."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "base")
    return path
