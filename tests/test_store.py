"""The store: schema, emitter, hash-keyed cache, atomic writes with a backup, the
inter-process lock, and where the state file lives (checkouts, worktrees, overrides)."""

import errno
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orchestrator


def cache_of(state_path):
    """Where the tool caches this state: the user's cache folder (the tests' own)."""
    return __import__("pathlib").Path(orchestrator.Store(state_path).cache_path)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "orchestrator.py"


# ---------------------------------------------------------------------------- helpers

def folder_listing(path):
    return sorted(p.name for p in path.parent.iterdir())


def temp_files(path):
    return [name for name in folder_listing(path) if name.endswith(".tmp") or name.startswith(".")]


def keep_mtime(path, write):
    """Run `write()` on `path`, then put its old mtime (to the nanosecond) back."""
    before = os.stat(path)
    write()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert after.st_mtime_ns == before.st_mtime_ns
    return before, after


def git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                   cwd=cwd, check=True, capture_output=True)


def one_line(text):
    lines = text.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0], f"expected one line, got {text!r}"
    return lines[0]


# ---------------------------------------------------------------------------- 1. emitter round trip

# Characters and fragments that YAML treats specially, that ruamel treats as line breaks, or
# that are not printable in YAML and must be escaped.
SPECIALS = ['"', "'", "\\", ":", ": ", "#", " #", " ", "  ", "\n", "\r", "\r\n", "\t", "\x00",
            "\x1b[31m", "\x7f", "\x85", "\x9f", "\xa0", "\u2028", "\u2029", "\ufeff", "\ufffe",
            "\uffff", "\U0001f600", "\u200b", "-", "- ", "? ", "&a", "*a", "!tag", "%", "@",
            "`", "|", ">", "{", "}", "[", "]", ",", "~", "null", "Null", "yes", "no", "on",
            "true", "False", "0x1f", "0o17", "1e3", "1_000", ".inf", ".nan", "---", "...",
            "<<", "=", "2026-11-25T15:48:06+00:00", "2026-11-25", "\\n", "\\x41", "\\u0041",
            "é", "日本", "\u0301"]
CHARS = st.characters(exclude_categories=("Cs",))  # lone surrogates: the CLI refuses them
TEXTS = st.one_of(
    st.text(CHARS, max_size=24),
    st.lists(st.one_of(st.sampled_from(SPECIALS), st.text(CHARS, max_size=3)),
             max_size=6).map("".join),
)
TEXT_LISTS = st.lists(TEXTS, max_size=3)
SESSION_IDS = st.from_regex(r"\A[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,3}\Z")
TIMESTAMPS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
                          timezones=st.just(timezone.utc)).map(
    lambda moment: moment.replace(microsecond=0).isoformat())
VALUES = {"id": SESSION_IDS, "status": st.sampled_from(orchestrator.SESSION_STATUSES),
          "texts": TEXT_LISTS, "moment": TIMESTAMPS, "flag": st.booleans(), "text": TEXTS,
          "count": st.integers(min_value=0, max_value=10**9)}


@st.composite
def entries(draw, key):
    """Any valid entry of the list `key`, drawn from the module's own field table."""
    entry = {}
    for field, holds, presence in orchestrator.ENTRY_FIELDS[key]:
        if presence == orchestrator.OMISSIBLE and not draw(st.booleans()):
            continue
        entry[field] = draw(VALUES[holds])
    return entry


@st.composite
def states(draw):
    state = {}
    for key in orchestrator.TOP_LEVEL_KEYS:
        items = TEXTS if key == "global_notes" else entries(key)
        unique = {"unique_by": lambda e: e["id"]} if key == "active_sessions" else {}
        state[key] = draw(st.lists(items, max_size=3, **unique))  # ids are unique, or invalid
    return state


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states())
def test_emitter_round_trips_any_valid_state(state):
    text = orchestrator.emit_state(state)
    parsed, warnings = orchestrator.parse_state_text(text, "t")
    assert parsed == state
    assert warnings == []
    assert orchestrator.emit_state(parsed) == text  # stable: a second write changes nothing


@pytest.mark.parametrize("text", SPECIALS + ["", " lead", "trail ", "a: b #c", "x:", "line\n"])
def test_emitter_round_trips_each_special_text_everywhere(text):
    """Every special fragment on its own, in every kind of text field (a fixed floor under the
    property test above)."""
    state = {
        "active_sessions": [{"id": "api", "focus": text, "status": "blocked",
                             "touched_areas": [text], "risks": [text], "notes": [text],
                             "started_at": "2026-11-25T15:48:06+00:00",
                             "last_updated": "2026-11-25T15:48:06+00:00",
                             "worktree": text, "branch": text, "trajectories": [text],
                             "touched_files": [text]}],
        "locks": [{"area": text, "owner": "api", "scope": [text], "reason": text,
                   "expected_instability": True, "allow_external_fixes": False,
                   "acquired_at": "2026-11-25T15:48:06+00:00",
                   "expires_at": "2026-11-25T17:48:06+00:00"}],
        "completed_sessions": [{"id": "old", "focus": text, "completed_at": "2026-11-24T00:00:00+00:00",
                                "outcome": text, "files_changed": [text]}],
        "global_notes": [text],
        "directive_log": [{"session": "api", "directive": text, "reason": text,
                           "timestamp": "2026-11-25T15:48:06+00:00", "rule_overridden": text}],
    }
    assert orchestrator.parse_state_text(orchestrator.emit_state(state), "t")[0] == state


# ---------------------------------------------------------------------------- 1b. what a write validates

def record_validated_text(monkeypatch):
    """The YAML text each strictyaml validation of a write's changes reads."""
    texts = []
    real = orchestrator.load_yaml

    def spy(text, schema, label):
        if label == "the new entries":
            texts.append(text)
        return real(text, schema, label)

    monkeypatch.setattr(orchestrator, "load_yaml", spy)
    return texts


def test_a_write_validates_new_entries_whole_and_only_the_changed_fields_of_edited_ones(
        run, session, monkeypatch, clock):
    session("api", focus="reshape the api")
    texts = record_validated_text(monkeypatch)
    clock.tick(60)
    assert run("note", "--session", "api", "CI is red").code == 0
    assert run("lock", "--session", "api", "--area", "docs", "--scope", "docs/**",
               "--reason", "rewrite").code == 0
    note_text, lock_text = texts
    # The note is new; the session only gained a timestamp, so only that field is read again.
    assert "global_notes:\n  - \"[api] CI is red\"" in note_text
    assert "edited_active_sessions:\n  - last_updated: " in note_text
    assert "focus" not in note_text and "started_at" not in note_text
    # A new lock is checked in full, its owner's edit (one more area) field by field.
    assert "locks:\n  - area: docs\n    owner: api\n" in lock_text
    assert "expires_at: " in lock_text and "allow_external_fixes: false" in lock_text
    assert "edited_active_sessions:\n  - touched_areas:\n      - backend\n      - docs\n" in lock_text
    assert "focus" not in lock_text


def state_with(*sessions):
    state = orchestrator.empty_state()
    state["active_sessions"] = [dict(s) for s in sessions]
    return state


SESSION = {"id": "api", "focus": "f", "status": "in_progress", "touched_areas": [], "risks": [],
           "notes": [], "started_at": "2026-11-25T15:00:00+00:00",
           "last_updated": "2026-11-25T15:00:00+00:00"}


def test_changed_entries_reads_a_repeated_identity_or_a_dropped_field_as_a_new_entry():
    before = state_with(SESSION, {**SESSION, "focus": "twin"})  # a hand edit repeated the id
    after = state_with({**SESSION, "status": "blocked"}, {**SESSION, "focus": "twin"})
    new, edited = orchestrator.changed_entries(before, after)
    assert new == {"active_sessions": [after["active_sessions"][0]]} and edited == {}

    before = state_with({**SESSION, "worktree": "/w"})
    after = state_with({**SESSION, "status": "blocked"})  # worktree dropped: check it all
    new, edited = orchestrator.changed_entries(before, after)
    assert new == {"active_sessions": after["active_sessions"]} and edited == {}

    before = state_with(SESSION)
    after = state_with({**SESSION, "status": "blocked", "branch": "b"})
    assert orchestrator.changed_entries(before, after) == (
        {}, {"active_sessions": [{"status": "blocked", "branch": "b"}]})

    before = state_with({**SESSION, "worktree": False})
    after = state_with({**SESSION, "worktree": 0})  # equal in Python, not the same value
    assert orchestrator.changed_entries(before, after) == ({}, {"active_sessions": [{"worktree": 0}]})


@pytest.mark.parametrize("change", [{"status": "napping"}, {"last_updated": "soon"},
                                    {"id": "Not Kebab"}])
def test_an_edit_that_breaks_the_schema_is_an_internal_error(change):
    before = state_with(SESSION)
    after = state_with({**SESSION, **change})
    with pytest.raises(orchestrator.OrchestratorError, match="breaks the schema") as caught:
        orchestrator.validate_changes(before, after)
    assert caught.value.exit_code == orchestrator.EXIT_INTERNAL


def test_a_write_whose_change_breaks_the_schema_writes_nothing(run, session, state_path,
                                                               monkeypatch):
    session("api")
    before = state_path.read_bytes()
    monkeypatch.setattr(orchestrator, "check_status", lambda value, *allowed: value)  # a bug
    result = run("update", "--session", "api", "--status", "napping")
    assert result.code == orchestrator.EXIT_INTERNAL, result
    assert "breaks the schema" in one_line(result.err) and "nothing was written" in result.err
    assert state_path.read_bytes() == before


# ---------------------------------------------------------------------------- 2. hand-written files

SEED_STYLE = """\
# Shared state, written by hand in the seed's format.
active_sessions:
  - id: api-refactor          # kebab-case
    focus: "Refactor the API: v2 # not a comment"
    status: in_progress
    touched_areas:
      - backend
      - apps/customer
    risks: []
    notes: []
    started_at: 2026-11-25T15:48:06Z
    last_updated: "2026-11-25T17:50:00+02:00"

locks:
  - area: backend
    owner: api-refactor
    scope:
      - internal/domain/energy
      - "**/*.sql"
      - apps/*/checkout
    reason: 'Schema migration; it''s mid-flight'
    expected_instability: true
    allow_external_fixes: no
    expires_at: 2099-01-01T12:00:00+02:00

completed_sessions:
  - id: old-work
    focus: Docs
    completed_at: '2026-11-20T08:00:00Z'
    outcome: Rewrote the README
    files_changed: []

global_notes:
  - Deploy freeze on Friday
  - "quoted: with a colon"

directive_log: []   # nothing overridden yet
"""

SEED_STYLE_STATE = {
    "active_sessions": [{
        "id": "api-refactor", "focus": "Refactor the API: v2 # not a comment",
        "status": "in_progress", "touched_areas": ["backend", "apps/customer"], "risks": [],
        "notes": [], "started_at": "2026-11-25T15:48:06+00:00",
        "last_updated": "2026-11-25T15:50:00+00:00"}],
    "locks": [{
        "area": "backend", "owner": "api-refactor",
        "scope": ["internal/domain/energy", "**/*.sql", "apps/*/checkout"],
        "reason": "Schema migration; it's mid-flight", "expected_instability": True,
        "allow_external_fixes": False, "expires_at": "2099-01-01T10:00:00+00:00"}],
    "completed_sessions": [{
        "id": "old-work", "focus": "Docs", "completed_at": "2026-11-20T08:00:00+00:00",
        "outcome": "Rewrote the README", "files_changed": []}],
    "global_notes": ["Deploy freeze on Friday", "quoted: with a colon"],
    "directive_log": [],
}


def write_state(state_path, text, mode="w"):
    state_path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        state_path.write_bytes(text)
    else:
        state_path.write_text(text, encoding="utf-8")
    return state_path.read_bytes()


def test_seed_format_file_parses_to_normalised_state():
    state, warnings = orchestrator.parse_state_text(SEED_STYLE, "t")
    assert state == SEED_STYLE_STATE
    assert warnings == []


def test_seed_format_file_loads_through_the_store_and_validate(run, state_path):
    original = write_state(state_path, SEED_STYLE)
    assert orchestrator.Store(state_path).load() == SEED_STYLE_STATE
    result = run("validate", "--json")
    assert result.code == 0, result
    payload = json.loads(result.out)
    assert payload["counts"] == {key: len(SEED_STYLE_STATE[key]) for key in orchestrator.TOP_LEVEL_KEYS}
    assert payload["warnings"] == []
    assert orchestrator.Store(state_path).load() == SEED_STYLE_STATE  # now from the cache
    assert state_path.read_bytes() == original


def test_seed_format_file_loads_through_status_and_is_left_untouched(run, state_path):
    original = write_state(state_path, SEED_STYLE)
    result = run("status", "--json")
    assert result.code == 0, result
    payload = json.loads(result.out)
    for session in payload["active_sessions"]:  # what status adds: presence, last seen
        assert session.pop("presence") in orchestrator.PRESENCES and session.pop("last_seen")
    for key in orchestrator.TOP_LEVEL_KEYS:
        if key != "locks":
            assert payload[key] == SEED_STYLE_STATE[key]
    (lock,) = payload["locks"]
    assert {k: lock[k] for k in SEED_STYLE_STATE["locks"][0]} == SEED_STYLE_STATE["locks"][0]
    assert lock["expired"] is False and lock["remaining_seconds"] > 0
    assert state_path.read_bytes() == original  # status changes nothing, comments included


def test_seed_format_file_accepts_a_write_and_keeps_its_content(run, state_path):
    write_state(state_path, SEED_STYLE)
    assert run("note", "hello").code == 0
    state = orchestrator.parse_state_text(state_path.read_text(encoding="utf-8"), "t")[0]
    assert state == {**SEED_STYLE_STATE,
                     "global_notes": SEED_STYLE_STATE["global_notes"] + ["hello"]}


@pytest.mark.parametrize("text, expected", [
    ("", {}),
    ("# nothing here yet\n\n   # still nothing\n", {}),
    ("global_notes:\n  - only notes\n", {"global_notes": ["only notes"]}),
    ("locks: []\n# the rest is missing\ndirective_log: []\n", {}),
    ("completed_sessions:\n  - id: done\n    completed_at: 2026-11-20T08:00:00-05:00\n",
     {"completed_sessions": [{"id": "done", "focus": "", "completed_at": "2026-11-20T13:00:00+00:00",
                              "outcome": "", "files_changed": []}]}),
])
def test_partial_empty_and_comment_only_files_load(run, state_path, text, expected):
    full = {**orchestrator.empty_state(), **expected}
    assert orchestrator.parse_state_text(text, "t") == (full, [])
    original = write_state(state_path, text)
    result = run("status", "--json")
    assert result.code == 0, result
    payload = json.loads(result.out)
    assert {key: payload[key] for key in orchestrator.TOP_LEVEL_KEYS} == full
    assert state_path.read_bytes() == original


def test_first_write_to_a_partial_file_writes_all_five_keys(run, state_path):
    write_state(state_path, "global_notes:\n  - only notes\n")
    assert run("note", "second").code == 0
    text = state_path.read_text(encoding="utf-8")
    for key in orchestrator.TOP_LEVEL_KEYS:
        assert f"\n{key}:" in "\n" + text
    assert orchestrator.parse_state_text(text, "t")[0]["global_notes"] == ["only notes", "second"]


def test_missing_file_is_an_empty_state_and_status_does_not_create_it(run, state_path):
    result = run("status", "--json")
    assert result.code == 0, result
    payload = json.loads(result.out)
    assert {key: payload[key] for key in orchestrator.TOP_LEVEL_KEYS} == orchestrator.empty_state()
    assert not state_path.exists()


NAIVE = """\
active_sessions:
  - id: api
    focus: f
    status: discovery
    started_at: 2026-11-25T15:48:06
    worktree: /somewhere
    branch: main
"""


def test_naive_timestamp_is_read_as_utc_with_a_warning(run, state_path):
    state, warnings = orchestrator.parse_state_text(NAIVE, "t")
    assert state["active_sessions"][0]["started_at"] == "2026-11-25T15:48:06+00:00"
    assert len(warnings) == 1 and "started_at" in warnings[0] and "UTC" in warnings[0]

    write_state(state_path, NAIVE)
    for _ in range(2):  # the second run is served from the cache: the warning must survive it
        result = run("status", "--json")
        assert result.code == 0, result
        payload = json.loads(result.out)
        assert payload["active_sessions"][0]["started_at"] == "2026-11-25T15:48:06+00:00"
        assert payload["warnings"] == warnings
    result = run("validate", "--json")
    assert result.code == 0, result
    assert json.loads(result.out)["warnings"] == warnings


FULL_ENTRIES = {
    "active_sessions": {"id": "api", "focus": "f", "status": "blocked", "touched_areas": ["a"],
                        "risks": ["r"], "notes": ["n"], "started_at": "2026-11-25T15:00:00+00:00",
                        "last_updated": "2026-11-25T16:00:00+00:00", "worktree": "/w",
                        "branch": "b", "trajectories": ["t"], "touched_files": ["x.py"]},
    "locks": {"area": "a", "owner": "api", "scope": ["src"], "reason": "r",
              "expected_instability": True, "allow_external_fixes": False,
              "acquired_at": "2026-11-25T15:00:00+00:00", "expires_at": "2026-11-25T17:00:00+00:00"},
    "completed_sessions": {"id": "old", "focus": "f", "completed_at": "2026-11-24T00:00:00+00:00",
                           "outcome": "o", "files_changed": ["x.py"]},
    "directive_log": {"session": "api", "directive": "d", "reason": "r",
                      "timestamp": "2026-11-25T15:00:00+00:00", "rule_overridden": "rule"},
}
# Written out here, not read from the module's table, so that a slip in the table shows.
MUST_HAVE = {"active_sessions": {"id", "focus", "status", "started_at"},
             "locks": {"area", "owner", "scope", "reason", "expected_instability",
                       "allow_external_fixes", "expires_at"},
             "completed_sessions": {"id", "completed_at"},
             "directive_log": {"session", "directive", "reason", "timestamp", "rule_overridden"}}
FILLED_IN = {"touched_areas": [], "risks": [], "notes": [], "focus": "", "outcome": "",
             "files_changed": [], "last_updated": "2026-11-25T15:00:00+00:00"}  # = started_at


@pytest.mark.parametrize("key, field", [(key, field) for key, entry in FULL_ENTRIES.items()
                                        for field in entry])
def test_a_hand_written_entry_without_a_field(key, field):
    """Required fields are refused when missing; the rest are filled in or stay out."""
    entry = {name: value for name, value in FULL_ENTRIES[key].items() if name != field}
    text = orchestrator.emit_state({**orchestrator.empty_state(), key: [entry]})
    if field in MUST_HAVE[key]:
        with pytest.raises(orchestrator.OrchestratorError, match=field) as caught:
            orchestrator.parse_state_text(text, "t")
        assert caught.value.exit_code == orchestrator.EXIT_STATE
        return
    read = orchestrator.parse_state_text(text, "t")[0][key][0]
    if field in FILLED_IN:
        assert read == {**entry, field: FILLED_IN[field]}
    else:
        assert read == entry


# ---------------------------------------------------------------------------- 3. the cache

def test_same_size_same_mtime_hand_edit_is_seen(run, session, state_path):
    session("api", focus="aaaa")
    assert json.loads(run("status", "--json").out)["active_sessions"][0]["focus"] == "aaaa"
    text = state_path.read_text(encoding="utf-8")
    assert "focus: aaaa" in text
    before, after = keep_mtime(state_path, lambda: state_path.write_text(
        text.replace("focus: aaaa", "focus: bbbb"), encoding="utf-8"))
    assert before.st_size == after.st_size
    assert json.loads(run("status", "--json").out)["active_sessions"][0]["focus"] == "bbbb"


def test_same_size_same_mtime_breaking_edit_is_refused(run, session, state_path):
    session("api")
    assert run("status").code == 0
    text = state_path.read_text(encoding="utf-8")
    keep_mtime(state_path, lambda: state_path.write_text(
        text.replace("status: in_progress", "status: in_progresX"), encoding="utf-8"))
    broken = state_path.read_bytes()
    result = run("note", "--session", "api", "hello")
    assert result.code == 3, result
    assert result.out == ""
    assert "line" in one_line(result.err)
    assert state_path.read_bytes() == broken
    assert run("status").code == 3


@pytest.mark.parametrize("garbage", [
    b"", b"\xff\xfe\x00garbage", b"{not json", b'{"format": 1, "sha256": "00", "state": 5}',
    b"null", b"{}",
])
def test_garbage_cache_is_harmless(run, session, state_path, garbage):
    session("api")
    cache = cache_of(state_path)
    assert cache.exists()
    cache.write_bytes(garbage)
    result = run("status", "--json")
    assert result.code == 0, result
    assert [s["id"] for s in json.loads(result.out)["active_sessions"]] == ["api"]
    cache.write_bytes(garbage)
    assert run("note", "--session", "api", "still fine").code == 0
    assert orchestrator.parse_state_text(state_path.read_text(encoding="utf-8"),
                                         "t")[0]["global_notes"] == ["[api] still fine"]


def test_cache_of_another_format_is_ignored(run, session, state_path):
    session("api")
    digest = hashlib.sha256(state_path.read_bytes()).hexdigest()
    cache = cache_of(state_path)
    forged = orchestrator.empty_state()
    forged["global_notes"] = ["from an older cache layout"]
    cache.write_text(json.dumps({"format": orchestrator.CACHE_FORMAT + 1, "sha256": digest,
                                 "warnings": [], "state": forged}), encoding="utf-8")
    payload = json.loads(run("status", "--json").out)
    assert [s["id"] for s in payload["active_sessions"]] == ["api"]
    assert payload["global_notes"] == []


@pytest.mark.parametrize("garbage", [b"[1, 2]", b"42", b'"text"'])
def test_cache_holding_json_that_is_not_an_object_is_harmless(run, session, state_path, garbage):
    session("api")
    cache_of(state_path).write_bytes(garbage)
    result = run("status", "--json")
    assert result.code == 0, result


def test_load_of_unchanged_state_does_not_call_strictyaml(run, session, state_path, monkeypatch):
    session("api")
    expected = orchestrator.parse_state_text(state_path.read_text(encoding="utf-8"), "t")[0]

    def refuse(*args, **kwargs):
        raise AssertionError("strictyaml parse on an unchanged, validated state")

    monkeypatch.setattr(orchestrator, "validate_state_text", refuse)
    assert orchestrator.Store(state_path).load() == expected
    result = run("status", "--json")
    assert result.code == 0, result
    # A hand edit must bring the parser back: the cache is keyed by content, not trusted blindly.
    state_path.write_text(state_path.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="unchanged, validated"):
        orchestrator.Store(state_path).load()


def test_a_write_refreshes_the_cache(run, session, state_path, monkeypatch):
    session("api")
    assert run("note", "fresh").code == 0
    monkeypatch.setattr(orchestrator, "validate_state_text",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("parsed again")))
    assert orchestrator.Store(state_path).load()["global_notes"] == ["fresh"]


def test_unchanged_load_imports_no_strictyaml(repo, session, state_path):
    session("api")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import orchestrator; "
            "s = orchestrator.Store(sys.argv[2]).load(); "
            "print(len(s['active_sessions']), 'strictyaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), str(state_path)],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "False"]


# ---------------------------------------------------------------------------- 4. corrupt files

def session_yaml(**overrides):
    fields = {"id": "api", "focus": "f", "status": "in_progress",
              "started_at": "2026-11-25T15:48:06+00:00"}
    fields.update(overrides)
    body = "".join(f"    {k}: {v}\n" for k, v in fields.items())
    return "active_sessions:\n  - " + body[4:]


# (name, file bytes, line the error must name or None)
CORRUPT = [
    ("bad-yaml", b"active_sessions:\n  - id: api\n   focus: [\n", 3),
    ("unterminated-quote", b'global_notes:\n  - "never closed\n', None),
    ("unknown-key", b"locks: []\nbogus: 1\n", 2),
    ("unknown-field", session_yaml(colour="red").encode(), 6),
    ("bad-session-id", session_yaml(id="Bad_ID").encode(), 2),
    ("bad-status", session_yaml(status="sleeping").encode(), 4),
    ("non-utf8", b"global_notes:\n  - caf\xe9\n", None),
    ("timestamp-not-a-timestamp", session_yaml(started_at="yesterday").encode(), 5),
    ("impossible-date", session_yaml(started_at="2026-13-45T00:00:00Z").encode(), 5),
    ("list-not-mapping", b"- a\n- b\n", None),
    ("tab-indent", b"global_notes:\n\t- a\n", 2),
]

WRITERS = [
    ("sync", "--session", "api", "--focus", "f", "--area", "backend"),
    ("sync",),
    ("lock", "--session", "api", "--area", "backend", "--scope", "src", "--reason", "r"),
    ("note", "--session", "api", "hello"),
    ("note", "hello"),
    ("update", "--session", "api", "--add-note", "n"),
    ("complete", "--session", "api", "--outcome", "done"),
    ("unlock", "--session", "api", "--all"),
    ("renew", "--session", "api"),
]


@pytest.mark.parametrize("name, data, line", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_file_refused_by_every_writer(run, session, state_path, name, data, line):
    session("api")
    backup = state_path.with_name(state_path.name + ".bak")
    good = backup.read_bytes()
    write_state(state_path, data)
    for argv in WRITERS:
        result = run(*argv)
        assert result.code == 3, (argv, result)
        assert result.out == "", (argv, result)
        message = one_line(result.err)
        if line is not None:
            assert f"line {line}" in message, (argv, message)
        named = (str(backup), os.path.relpath(backup))  # as typed from here: the shorter
        assert any(n in message for n in named) and "restore" in message, (argv, message)
        assert state_path.read_bytes() == data, argv
        assert backup.read_bytes() == good, argv

        result = run("--json", *argv)
        assert result.code == 3, (argv, result)
        payload = json.loads(one_line(result.out))
        assert "error" in payload and any(n in payload["error"] for n in named)
        assert state_path.read_bytes() == data, argv

    for argv in (("status",), ("validate",), ("check", "--area", "backend")):
        result = run(*argv)
        assert result.code == 3, (argv, result)
        assert result.out == ""
        one_line(result.err)
    assert state_path.read_bytes() == data
    # The hint's remedy works: the backup is the last good state.
    state_path.write_bytes(backup.read_bytes())
    assert run("note", "--session", "api", "back").code == 0


def test_corrupt_file_without_backup_names_no_backup(run, state_path):
    data = write_state(state_path, b"locks: []\nbogus: 1\n")
    result = run("note", "hello")
    assert result.code == 3, result
    message = one_line(result.err)
    assert "line 2" in message and ".bak" not in message
    assert state_path.read_bytes() == data
    assert not state_path.with_name(state_path.name + ".bak").exists()
    assert not cache_of(state_path).exists()  # nothing cached
    assert temp_files(state_path) == []


def test_corrupt_file_through_the_real_cli(cli, session, state_path):
    session("api")
    data = write_state(state_path, session_yaml(status="sleeping").encode())
    result = cli("lock", "--session", "api", "--area", "backend", "--scope", "src", "--reason", "r")
    assert result.code == 3, result
    assert result.out == ""
    assert "line 4" in one_line(result.err) and "Traceback" not in result.err
    assert state_path.read_bytes() == data


# ---------------------------------------------------------------------------- 5. atomic writes, backup

def test_every_write_leaves_backup_equal_to_state_and_no_temp_files(run, session, state_path):
    clock = freeze_time("2026-11-25T15:48:06+00:00")
    frozen = clock.start()
    try:
        check_every_write(run, session, state_path, frozen)
    finally:
        clock.stop()


def check_every_write(run, session, state_path, frozen):
    backup = state_path.with_name(state_path.name + ".bak")
    steps = [
        lambda: session("api"),
        lambda: run("lock", "--session", "api", "--area", "backend", "--scope", "src",
                    "--reason", "r"),
        lambda: run("note", "--session", "api", "hi"),
        lambda: run("update", "--session", "api", "--status", "blocked"),
        lambda: run("renew", "--session", "api"),
        lambda: run("unlock", "--session", "api", "--all"),
        lambda: run("complete", "--session", "api", "--outcome", "done"),
    ]
    previous = None
    for step in steps:
        frozen.tick(60)  # every step changes the file, renew included
        result = step()
        assert getattr(result, "code", 0) == 0, result
        current = state_path.read_bytes()
        assert current != previous
        assert backup.read_bytes() == current
        assert temp_files(state_path) == []
        previous = current
    # beside the state: its backup, its lock, and the record of when the session last acted
    assert folder_listing(state_path) == ["seen-" + orchestrator.seen_record_path(
        orchestrator.Store(str(state_path)), "session:api").split("seen-")[1],
        "session_state.yaml", "session_state.yaml.bak", "session_state.yaml.lock"]
    assert cache_of(state_path).exists()  # in the user's cache folder, not beside the state
    assert run("validate").code == 0


def test_failed_replace_leaves_state_byte_for_byte(run, session, state_path, monkeypatch):
    session("api")
    original = state_path.read_bytes()

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(orchestrator.os, "replace", full_disk)
    result = run("note", "--session", "api", "lost")
    assert result.code == 3, result
    assert "No space left" in one_line(result.err)
    assert state_path.read_bytes() == original


def test_failed_write_leaves_no_temp_file(run, session, state_path, monkeypatch):
    session("api")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(orchestrator.os, "fsync", full_disk)
    assert run("note", "--session", "api", "lost").code == 3
    assert temp_files(state_path) == []


# ---------------------------------------------------------------------------- 6. parallel writers

def run_validate(state_path):
    return subprocess.run([sys.executable, str(SCRIPT), "--state", str(state_path), "validate"],
                          capture_output=True, timeout=60).returncode


@pytest.mark.slow
def test_parallel_writers_lose_no_note(repo, state_path):
    workers, per_worker = 8, 15
    env = {**os.environ, "ORCHESTRATOR_LOCK_TIMEOUT": "60"}
    env.pop("ORCHESTRATOR_STATE", None)

    def worker(w):
        codes = []
        for n in range(per_worker):
            proc = subprocess.run([sys.executable, str(SCRIPT), "--state", str(state_path),
                                   "note", f"w{w}-n{n}"], capture_output=True, text=True,
                                  env=env, cwd=repo, timeout=60)
            codes.append((proc.returncode, proc.stderr))
        return codes

    done = threading.Event()
    torn = []

    def reader():
        """Atomic replace: a reader sees the old file or the new one, never half of one."""
        while not done.is_set():
            try:
                data = state_path.read_bytes()
            except FileNotFoundError:
                data = None
            if data is None:
                time.sleep(0.002)
                continue
            if not (data.startswith(b"# Session Orchestrator") and data.endswith(b"directive_log: []\n")):
                torn.append(data)
            time.sleep(0.002)

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        with ThreadPoolExecutor(workers) as pool:
            results = [r for rs in pool.map(worker, range(workers)) for r in rs]
    finally:
        done.set()
        watcher.join()
    assert all(code == 0 for code, _ in results), [r for r in results if r[0]]
    assert torn == []
    state = orchestrator.parse_state_text(state_path.read_text(encoding="utf-8"), "t")[0]
    notes = state["global_notes"]
    assert len(notes) == workers * per_worker
    assert set(notes) == {f"w{w}-n{n}" for w in range(workers) for n in range(per_worker)}
    for w in range(workers):  # each writer's notes stay in its own order
        mine = [n for n in notes if n.startswith(f"w{w}-")]
        assert mine == [f"w{w}-n{n}" for n in range(per_worker)]
    assert state_path.with_name(state_path.name + ".bak").read_bytes() == state_path.read_bytes()
    assert temp_files(state_path) == []
    assert run_validate(state_path) == 0


def test_parallel_sessions_register_and_lock_without_loss(repo, state_path):
    env = {**os.environ}
    env.pop("ORCHESTRATOR_STATE", None)
    ids = [f"s{i}" for i in range(6)]
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), "--json", "sync", "--session", sid,
                               "--focus", "work", "--area", f"area-{sid}", "--lock-scope",
                               f"src/{sid}", "--reason", "parallel"],
                              cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for sid in ids]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    state = orchestrator.parse_state_text(state_path.read_text(encoding="utf-8"), "t")[0]
    assert sorted(s["id"] for s in state["active_sessions"]) == ids
    assert sorted(l["owner"] for l in state["locks"]) == ids


# ---------------------------------------------------------------------------- 7. lock timeout, dead holder

def hold_lock(state_path):
    lock_path = state_path.with_name(state_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+b")
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def test_held_lock_times_out_with_exit_4(cli, session, state_path):
    session("api")
    original = state_path.read_bytes()
    handle = hold_lock(state_path)
    try:
        started = time.monotonic()
        result = cli("note", "--session", "api", "blocked", env={"ORCHESTRATOR_LOCK_TIMEOUT": "0.2"})
        elapsed = time.monotonic() - started
        assert result.code == 4, result
        assert result.out == ""
        assert "locked" in one_line(result.err)
        assert elapsed < 5
        result = cli("--json", "lock", "--session", "api", "--area", "b", "--scope", "x",
                     "--reason", "r", env={"ORCHESTRATOR_LOCK_TIMEOUT": "0.2"})
        assert result.code == 4, result
        assert "error" in json.loads(one_line(result.out))
        assert state_path.read_bytes() == original
    finally:
        handle.close()
    assert cli("note", "--session", "api", "free again").code == 0


def test_holder_killed_with_sigkill_does_not_wedge(cli, session, state_path):
    session("api")
    lock_path = state_path.with_name(state_path.name + ".lock")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys, time\n"
         "f = open(sys.argv[1], 'a+b')\n"
         "fcntl.flock(f.fileno(), fcntl.LOCK_EX)\n"
         "print('locked', flush=True)\n"
         "time.sleep(120)\n", str(lock_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        # It really holds the lock: a writer gives up.
        assert cli("note", "x", env={"ORCHESTRATOR_LOCK_TIMEOUT": "0.2"}).code == 4
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        assert holder.returncode == -signal.SIGKILL
        started = time.monotonic()
        result = cli("note", "--session", "api", "after the crash",
                     env={"ORCHESTRATOR_LOCK_TIMEOUT": "5"})
        assert result.code == 0, result
        assert time.monotonic() - started < 3
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
    state = orchestrator.parse_state_text(state_path.read_text(encoding="utf-8"), "t")[0]
    assert state["global_notes"] == ["[api] after the crash"]


def test_bad_lock_timeout_value_is_bad_input(run, session, state_path, monkeypatch):
    session("api")
    original = state_path.read_bytes()
    monkeypatch.setenv("ORCHESTRATOR_LOCK_TIMEOUT", "soon")
    result = run("note", "x")
    assert result.code == 2, result
    assert "ORCHESTRATOR_LOCK_TIMEOUT" in one_line(result.err)
    assert state_path.read_bytes() == original


# ---------------------------------------------------------------------------- 8. where the state lives

@pytest.fixture
def worktree(repo):
    git("commit", "--allow-empty", "-q", "-m", "init", cwd=repo)
    path = repo.parent / "wt"
    git("worktree", "add", "-q", str(path), "-b", "feature", cwd=repo)
    return path


def test_session_from_a_worktree_is_seen_from_the_main_checkout(cli, repo, worktree, state_path):
    result = cli("sync", "--session", "feat", "--focus", "feature work", "--area", "backend",
                 cwd=worktree)
    assert result.code == 0, result
    assert state_path.is_file()
    assert not (worktree / ".windsurf").exists()
    payload = json.loads(cli("status", "--json", cwd=repo).out)
    (entry,) = payload["active_sessions"]
    assert entry["id"] == "feat"
    assert entry["branch"] == "feature"
    assert Path(entry["worktree"]).resolve() == worktree.resolve()
    # And the other way round, from a subfolder of the worktree.
    sub = worktree / "deep" / "er"
    sub.mkdir(parents=True)
    assert cli("note", "--session", "feat", "from deep", cwd=sub).code == 0
    assert json.loads(cli("status", "--json", cwd=repo).out)["global_notes"] == ["[feat] from deep"]
    assert not (sub / ".windsurf").exists()


def test_session_from_a_detached_worktree_does_not_break_status(run, repo, worktree, monkeypatch):
    detached = repo.parent / "detached"
    git("worktree", "add", "-q", "--detach", str(detached), cwd=repo)
    monkeypatch.chdir(detached)
    assert run("sync", "--session", "bisect", "--focus", "f", "--area", "backend").code == 0
    monkeypatch.chdir(repo)
    result = run("status", "--json")
    assert result.code == 0, result
    assert [s["id"] for s in json.loads(result.out)["active_sessions"]] == ["bisect"]


def test_main_checkout_session_seen_from_worktree(run, repo, worktree, monkeypatch):
    assert run("sync", "--session", "main-work", "--focus", "f", "--area", "backend").code == 0
    monkeypatch.chdir(worktree)
    payload = json.loads(run("status", "--json").out)
    assert [s["id"] for s in payload["active_sessions"]] == ["main-work"]
    assert payload["active_sessions"][0]["branch"] == "main"


def test_state_found_from_a_subfolder(run, repo, state_path, monkeypatch):
    assert run("sync", "--session", "api", "--focus", "f", "--area", "backend").code == 0
    sub = repo / "src" / "pkg"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert run("note", "--session", "api", "from sub").code == 0
    payload = json.loads(run("status", "--json").out)
    assert [s["id"] for s in payload["active_sessions"]] == ["api"]
    assert payload["global_notes"] == ["[api] from sub"]
    assert not (sub / ".windsurf").exists()
    assert orchestrator.parse_state_text(state_path.read_text(encoding="utf-8"),
                                         "t")[0]["global_notes"] == ["[api] from sub"]


def test_state_flag_and_environment_override(run, repo, state_path, monkeypatch, tmp_path):
    by_flag = tmp_path / "elsewhere" / "flag.yaml"
    by_env = tmp_path / "env" / "env.yaml"

    assert run("--state", by_flag, "note", "via flag before").code == 0
    assert run("note", "--state", by_flag, "via flag after").code == 0
    assert orchestrator.parse_state_text(by_flag.read_text(encoding="utf-8"), "t")[0][
        "global_notes"] == ["via flag before", "via flag after"]
    assert not state_path.exists()

    monkeypatch.setenv("ORCHESTRATOR_STATE", str(by_env))
    assert run("note", "via env").code == 0
    assert orchestrator.parse_state_text(by_env.read_text(encoding="utf-8"), "t")[0][
        "global_notes"] == ["via env"]
    assert not state_path.exists()

    # The flag beats the environment.
    assert run("--state", by_flag, "note", "flag wins").code == 0
    assert orchestrator.parse_state_text(by_env.read_text(encoding="utf-8"), "t")[0][
        "global_notes"] == ["via env"]
    assert json.loads(run("--state", by_flag, "status", "--json").out)["global_notes"][-1] == "flag wins"

    # A relative override is taken from the current directory.
    monkeypatch.delenv("ORCHESTRATOR_STATE")
    assert run("--state", "rel/state.yaml", "note", "relative").code == 0
    assert (repo / "rel" / "state.yaml").is_file()
    assert not state_path.exists()


def test_environment_override_reaches_a_real_process(cli, repo, tmp_path, state_path):
    target = tmp_path / "shared.yaml"
    result = cli("note", "from env", env={"ORCHESTRATOR_STATE": str(target)})
    assert result.code == 0, result
    assert orchestrator.parse_state_text(target.read_text(encoding="utf-8"), "t")[0][
        "global_notes"] == ["from env"]
    assert not state_path.exists()


def test_a_stale_editor_buffer_saved_over_a_lock_is_noticed_and_the_lock_kept(run, session,
                                                                              state_path):
    """An editor holding the file from before a `lock` saves it: the lock is gone from the
    file, and the next read says so, keeps it beside the state and gives the restore command."""
    session("api")
    stale = state_path.read_bytes()  # what the editor's buffer holds
    assert run("lock", "--session", "api", "--area", "backend", "--scope", "src",
               "--reason", "r").code == 0
    state_path.write_bytes(stale)
    status = run("status")
    assert status.code == 0
    assert "api's lock on backend" in status.err and "vanished" in status.err
    assert "cp .windsurf/orchestrator/session_state.yaml.bak" in status.err
    assert "vanished" in status.out  # the report says it too, until the next write
    lost = state_path.parent / "session_state.yaml.lost"
    kept, _ = orchestrator.parse_state_text(lost.read_text(encoding="utf-8"), "lost")
    assert [lock["owner"] for lock in kept["locks"]] == ["api"]
    state_path.write_bytes((state_path.parent / "session_state.yaml.bak").read_bytes())
    assert run("--json", "status").out.count('"owner": "api"') == 1
