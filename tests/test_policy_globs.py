"""Scopes in git's glob language, judged by git itself.

A scope is a pathspec with the glob magic, and it covers everything below what it matches, so
the judge of "is PATH under SCOPE" is `git ls-files -- ':(glob)SCOPE' ':(glob)SCOPE/**'` in a
scratch repository whose index holds the generated paths (git 2.39; gitglossary "pathspec",
gitignore's wildmatch rules). Overlap is judged by exhaustive search: every path over a small
alphabet, up to a depth and name length that any common path of the generated scopes needs.
"""

import itertools
import os
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import orchestrator as o

# Characters that mean something to wildmatch, plus plain ones, plus one multi-byte letter
# (git matches bytes: `?` is one byte of it). `\` is left out: it is a path separator here.
SCOPE_PIECES = list("ab]![^-*?:/") + ["**", "[:alpha:]", "[:space:]", "é", "[a-b]", "[!a]"]
NAME_PIECES = list("ab]![^-*?:") + ["é", "ab", "a]", " "]


class GitJudge:
    """A scratch repository whose index is filled with paths, asked which a scope covers."""

    def __init__(self, folder):
        self.folder = str(folder)
        subprocess.run(["git", "init", "-q", self.folder], check=True)
        self.blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=self.folder,
                                   input=b"", capture_output=True, check=True).stdout.strip()
        self.env = {**os.environ, "GIT_INDEX_FILE": os.path.join(self.folder, "judge-index")}

    def covered(self, paths, scope):
        if os.path.exists(self.env["GIT_INDEX_FILE"]):
            os.unlink(self.env["GIT_INDEX_FILE"])
        entries = b"".join(b"100644 " + self.blob + b"\t" + p.encode() + b"\0" for p in paths)
        self.git(["update-index", "-z", "--add", "--index-info"], entries)
        listed = self.git(["ls-files", "-z", "--", f":(glob){scope}", f":(glob){scope}/**"])
        return {name.decode() for name in listed.split(b"\0") if name}

    def git(self, args, stdin=b""):
        return subprocess.run(["git", "-c", "core.ignorecase=false", *args], cwd=self.folder,
                              env=self.env, input=stdin, capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return GitJudge(tmp_path_factory.mktemp("judge"))


def tidy(text):
    """A scope as the tool stores it: no empty, `.` or `..` segments."""
    return "/".join(s for s in text.split("/") if s not in ("", ".", ".."))


scopes = st.lists(st.sampled_from(SCOPE_PIECES), min_size=1, max_size=8).map("".join).map(tidy) \
    .filter(bool)
names = st.lists(st.sampled_from(NAME_PIECES), min_size=1, max_size=2).map("".join)
path_sets = st.lists(st.lists(names, min_size=1, max_size=4).map("/".join), min_size=1,
                     max_size=12, unique=True)


def leaves(paths):
    """git's index cannot hold a file and a folder of one name: keep the deepest paths."""
    return sorted(p for p in paths if not any(q.startswith(p + "/") for q in paths))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scope=scopes, paths=path_sets)
def test_matching_agrees_with_git(judge, scope, paths):
    paths = leaves(paths)
    assert {p for p in paths if o.path_in_scope(p, scope)} == judge.covered(paths, scope)


@pytest.mark.parametrize("scope, inside, outside", [
    ("x/[!]]", ["x/a", "x/a/b"], ["x/]"]),                  # `]` first in a class is literal
    ("x/[^a]", ["x/b", "x/]", "x/^"], ["x/a"]),              # `^` negates, as in git and bash
    ("x/[]a]", ["x/]", "x/a"], ["x/b"]),
    ("app/[id]", ["app/i", "app/[id]/page.tsx"], ["app/x", "app/i2"]),  # literal text too
    ("src/*", ["src/a", "src/a/b.c"], ["src"]),
    ("src/**", ["src/a", "src/a/b"], ["src"]),
    ("src/**/b.c", ["src/b.c", "src/x/y/b.c"], ["src/x/b.cc"]),
    ("**/b.c", ["b.c", "x/b.c/y"], ["ab.c"]),
    ("src/a**", ["src/a", "src/ab/c"], ["src/b"]),          # after a literal start, as git does
    ("caf?", ["caf?"], ["café"]),                            # one byte, not one letter
    ("caf??", ["café"], ["cafe"]),
    ("src/[z-a]", ["src/z"], ["src/a", "src/m"]),            # a backwards range adds nothing
    ("src/[ab", ["src/[ab"], ["src/a"]),                     # unclosed: only the literal text
    ("x/[[:digit:]]", ["x/7"], ["x/a"]),
    ("x/[[:bogus:]]", [], ["x/b"]),                          # git gives up on the pattern
])
def test_git_glob_cases(judge, scope, inside, outside):
    assert [p for p in inside + outside if o.path_in_scope(p, scope)] == inside
    assert judge.covered(leaves(inside + outside), scope) == set(leaves(inside))


def test_posix_classes_agree_with_git_over_every_ascii_byte(judge):
    names = ["x" + chr(b) for b in range(1, 128) if chr(b) not in "/\\"]
    for name in o.POSIX_CLASSES:
        scope = f"x[[:{name.decode()}:]]"
        assert {p for p in names if o.path_in_scope(p, scope)} == judge.covered(names, scope), name


# ---------------------------------------------------------------------------- overlap, exhaustively

# Scopes of at most two segments of at most two pieces each, every piece one character or a
# star: any path both cover then needs at most three folders and names of at most two
# characters from a, ] and c (c stands for every other character), or the text of one of the
# scopes (a scope also matches its own text) and names below it.
OVERLAP_PIECES = ["a", "]", "*", "?", "**", "[a]", "[!a]", "[]a]", "[^]]", "[a-c]", "[[:alpha:]]"]
ALL_NAMES = ["".join(chars) for size in (1, 2) for chars in itertools.product("a]c", repeat=size)]
small_scopes = st.lists(st.lists(st.sampled_from(OVERLAP_PIECES), min_size=1, max_size=2)
                        .map("".join), min_size=1, max_size=2).map("/".join)


class Walker:
    """Follows a scope's automaton down a tree of paths, as path_in_scope does for one path,
    so that thousands of paths cost one step each."""

    def __init__(self, scope):
        self.automaton = o.scope_automaton(scope)

    def step(self, states, covered, text):
        edges, accepting = self.automaton.edges, self.automaton.accepting
        for byte in text.encode():
            if byte == ord("/") and any(accepting[s] for s in states):
                covered = True
            states = {t for s in states for mask, t in edges[s] if mask & (1 << byte)}
        return states, covered or any(accepting[s] for s in states)


def some_path_under_both(first, second):
    walkers = Walker(first), Walker(second)
    starts = [("", ({0}, False), ({0}, False))]
    starts += [(text, *(w.step({0}, False, text) for w in walkers)) for text in (first, second)]
    frontier = [(path, a, b, 0) for path, a, b in starts]
    while frontier:
        path, (states_a, covered_a), (states_b, covered_b), depth = frontier.pop()
        if path and covered_a and covered_b:
            return True
        if depth == 3 or not (states_a or covered_a) or not (states_b or covered_b):
            continue  # nothing below can be covered by both
        for name in ALL_NAMES:
            text = f"/{name}" if path else name
            frontier.append((path + text, walkers[0].step(states_a, covered_a, text),
                             walkers[1].step(states_b, covered_b, text), depth + 1))
    return False


@settings(max_examples=200, deadline=None)
@given(first=small_scopes, second=small_scopes)
def test_overlap_is_exact(first, second):
    """scopes_overlap says yes exactly when some path is under both."""
    common = some_path_under_both(first, second)
    assert o.scopes_overlap(first, second) == common
    assert o.scopes_overlap(second, first) == common


def test_the_exhaustive_walk_agrees_with_path_in_scope():
    paths = ["a", "a/b", "]/c/ab", "c/]]/a"]
    for scope in ["*", "a/**", "[!a]/?", "**/a", "]"]:
        walker = Walker(scope)
        for path in paths:
            assert walker.step({0}, False, path)[1] == o.path_in_scope(path, scope)


@pytest.mark.parametrize("a, b, overlap", [
    ("x/[!]]", "x/a", True),          # was missed: `[!]]` read as `[!]` then `]`
    ("x/[!]]", "x/]", False),
    ("x/[^a]", "x/a", False),          # `^` negates
    ("x/[^a]", "x/^", True),
    ("src/[a-c]x", "src/[c-e]x", True),
    ("src/[a-b]x", "src/[c-e]x", False),
    ("src/[!a-y]", "src/[x-z]", True),  # only z is in both
    ("src/[!a-z]", "src/[a-z]", False),
    ("src/[z-a]", "src/a", False),     # a backwards range adds nothing to its first character
    ("src/[ab", "src/*", True),        # an unclosed class: the scope's own text is a path
    ("src/[ab", "src/a", False),
    ("*/[ab[]a]", "x/?a]", True),      # a `[` inside a class is a member
    ("a/**", "a", True),
    ("**/a", "b/**", True),
])
def test_overlap_cases(a, b, overlap):
    assert o.scopes_overlap(a, b) == overlap
    assert o.scopes_overlap(b, a) == overlap


def test_paths_thousands_of_folders_deep_are_matched_without_recursion():
    deep = "/".join(["d"] * 5000) + "/x.sql"
    assert o.path_in_scope(deep, "**/*.sql")
    assert o.path_in_scope(deep, "d/**")
    assert not o.path_in_scope(deep, "**/*.py")
    assert o.scopes_overlap(deep, "src/**/*.sql") is False
    assert o.scopes_overlap(deep, "d/*/d/**/*.sql")


def test_a_scope_with_more_than_eight_double_stars_is_refused(run, session):
    session("api", "backend")
    scope = "/".join(["**", "a"] * 9)
    result = run("lock", "--session", "api", "--area", "x", "--scope", scope, "--reason", "r")
    assert result.code == 2 and "more than 8 `**` segments" in result.err


@pytest.mark.parametrize("path", ["a/b", "a/x/y/b", "a/b/c", "b", "a/bb"])
def test_repeated_double_stars_mean_one(path):
    assert o.path_in_scope(path, "a/**/**/**/b") == o.path_in_scope(path, "a/**/b")
