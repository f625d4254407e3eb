"""Shared fixtures: a throwaway git repository as the working directory, and two ways to run
the tool: `run` calls main(argv) in process, `cli` runs a real process; a frozen `clock` at
T0 and a `bare_env` shell environment. Plain helper functions live in helpers.py."""

import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import freezegun
import pytest
from freezegun import freeze_time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orchestrator  # noqa: E402
from helpers import T0  # noqa: E402

# pytest's clock for test durations keeps real time while a test's is frozen (freezegun's
# default list misses `_pytest.timing`). Only that leaf module: freezegun judges by the
# caller's last few frames, and `_pytest` as a whole would unfreeze some of a test's calls.
freezegun.configure(extend_ignore_list=["_pytest.timing"])

# Property tests are bounded per example, never as a whole: a busy machine makes every
# example slower, and a bound on the whole run fails a correct test there. pytest-timeout's
# signal method arms ITIMER_REAL for the test; each example arms it again, so the limit is
# what one example may take, and an example that hangs still fails with its stack.
SECONDS_PER_EXAMPLE = 60


def bounded_example(inner):
    @functools.wraps(inner)
    def example(*args, **kwargs):
        if signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, signal.SIG_IGN, None) \
                and threading.current_thread() is threading.main_thread():
            signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_EXAMPLE)
        return inner(*args, **kwargs)
    example.bounded = True
    return example


def pytest_collection_modifyitems(items):
    for item in items:
        handle = getattr(getattr(item, "obj", None), "hypothesis", None)
        if handle is None:
            continue
        if not getattr(handle.inner_test, "bounded", False):
            handle.inner_test = bounded_example(handle.inner_test)


class Result:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    def __repr__(self):
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """An empty git repository, made the current directory; ORCHESTRATOR_STATE unset."""
    path = tmp_path / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    monkeypatch.chdir(path)
    monkeypatch.delenv("ORCHESTRATOR_STATE", raising=False)
    return path


@pytest.fixture
def state_path(repo):
    return repo / ".windsurf" / "orchestrator" / "session_state.yaml"


@pytest.fixture
def run(repo, capsys):
    """main(argv) in process; returns Result(code, out, err)."""
    def call(*argv):
        code = orchestrator.main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)
    return call


@pytest.fixture
def cli(repo):
    """The CLI as a real process with no terminal on stdin."""
    def call(*argv, input=None, env=None, cwd=None):
        full_env = {**os.environ, **(env or {})}
        full_env.pop("ORCHESTRATOR_STATE", None) if "ORCHESTRATOR_STATE" not in (env or {}) else None
        proc = subprocess.run([sys.executable, str(ROOT / "orchestrator.py"), *map(str, argv)],
                              input=input, capture_output=True, text=True, env=full_env,
                              cwd=cwd or repo, timeout=60)
        return Result(proc.returncode, proc.stdout, proc.stderr)
    return call


@pytest.fixture
def session(run):
    """Register a session: session("api", "backend") -> its id."""
    def make(session_id, *areas, focus="some work"):
        result = run("sync", "--session", session_id, "--focus", focus,
                     *[x for a in (areas or ("backend",)) for x in ("--area", a)])
        assert result.code == 0, result
        return session_id
    return make


@pytest.fixture
def clock():
    """Time frozen at T0 (helpers.T0); tick it to move on."""
    with freeze_time(T0) as frozen:
        yield frozen


@pytest.fixture
def bare_env(tmp_path):
    """What a fresh shell has: no virtualenv, no Python on PATH, only sh and git."""
    bin_dir = tmp_path / "bare-bin"
    bin_dir.mkdir()
    for tool in ("sh", "git"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}


@pytest.fixture(autouse=True, scope="session")
def private_user_folders(tmp_path_factory):
    """The tool caches validated states in the user's cache folder, and install keeps a
    launcher in the user's data folder: give the test run its own of both."""
    saved = {name: os.environ.get(name) for name in ("XDG_CACHE_HOME", "XDG_DATA_HOME")}
    for name in saved:
        os.environ[name] = str(tmp_path_factory.mktemp(name.lower()))
    yield
    for name, previous in saved.items():
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


@pytest.fixture
def ask(repo, capsys, monkeypatch):
    """ask(keys, *argv): run main(argv) as if in a terminal, typing `keys` (real questionary
    prompts on prompt_toolkit's pipe input and a dummy output)."""
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    def call(keys, *argv):
        with create_pipe_input() as pipe, monkeypatch.context() as patch:
            patch.setattr(orchestrator, "terminal_is_interactive", lambda: True)
            patch.setattr(orchestrator, "QUESTION_IO", {"input": pipe, "output": DummyOutput()})
            pipe.send_text(keys)
            code = orchestrator.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return call
