"""Pure policy: durations, scope geometry, lock conflicts, expiry, wording. No disk, no clock."""

from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

import orchestrator as o

T = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
NOW = o.iso(T)  # policy takes moments as the state holds them


# ---------------------------------------------------------------------------- parse_duration

@pytest.mark.parametrize("text, expected", [
    ("45m", timedelta(minutes=45)),
    ("2h", timedelta(hours=2)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("1d", timedelta(days=1)),
    ("90s", timedelta(seconds=90)),
    ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    (" 2H ", timedelta(hours=2)),          # surrounding blanks and case are forgiven
    ("30d", timedelta(days=30)),           # the longest lock allowed
])
def test_parse_duration_accepts(text, expected):
    assert o.parse_duration(text) == expected.total_seconds()


@pytest.mark.parametrize("text", ["", "   ", "2x", "h", "2", "2 h", "1m1h", "0m", "0h0m", "-1h",
                                  "+1h", "1.5h", "31d", "30d1s", "720h1m"])
def test_parse_duration_rejects_with_usage_error(text):
    with pytest.raises(o.OrchestratorError) as caught:
        o.parse_duration(text)
    assert caught.value.exit_code == o.EXIT_USAGE
    assert "--duration" in caught.value.message


def test_parse_duration_none_is_bad_input():
    with pytest.raises(o.OrchestratorError):
        o.parse_duration(None)


@pytest.mark.parametrize("text", ["9999999999d", "99999999999999999999s"])
def test_parse_duration_huge_number_is_bad_input_not_a_crash(text):
    with pytest.raises(o.OrchestratorError) as caught:
        o.parse_duration(text)
    assert caught.value.exit_code == o.EXIT_USAGE


# ---------------------------------------------------------------------------- scopes_overlap

@pytest.mark.parametrize("a, b", [
    ("src/api", "src/api"),                         # same path
    ("src/api/", "src/api"),                        # a trailing slash changes nothing
    ("src", "src/api/handlers.py"),                 # one inside the other
    ("src/api", "src"),
    ("src/*.py", "src/a*"),                         # both match src/a.py
    ("src/*", "src/a/b"),                           # src/* covers src/a, which holds src/a/b
    ("apps/*/checkout", "apps/web/checkout/x"),
    ("apps/*/checkout", "apps/web/*"),
    ("**/*.sql", "db/migrations/1.sql"),
    ("**/*.sql", "x.sql"),                          # ** may match no folder at all
    # A scope covers everything below it, so `docs` covers docs/schema.sql: a `**/*.sql`
    # claim overlaps every scope (db/migrations/1.py/x.sql would be under both).
    ("**/*.sql", "docs"),
    ("**/*.sql", "db/migrations/1.py"),
    ("**", "anything/at/all"),
    ("src/**/test", "src/test"),
    ("a/**/b", "a/x/y/b/z"),
    ("src/[ab].py", "src/a.py"),                    # character classes
    ("src/[a-c]x", "src/[c-e]x"),                   # ranges sharing c
    ("src/[!a].py", "src/b.py"),
    ("src/?.py", "src/a.py"),
    ("src/?.py", "src/[xy].py"),
])
def test_scopes_overlap(a, b):
    assert o.scopes_overlap(a, b)
    assert o.scopes_overlap(b, a)


@pytest.mark.parametrize("a, b", [
    ("docs", "src"),
    ("src/api", "src/api2"),                        # a prefix of the name is not a parent
    ("src/a", "src/ab"),
    ("src/*.py", "src/*.go"),
    ("src/*.py", "lib/*.py"),
    ("apps/*/checkout", "apps/web/cart"),
    ("db/*.sql", "db/migrations"),
    ("src/[ab].py", "src/c.py"),
    ("src/[a-b]x", "src/[c-e]x"),
    ("src/[!a].py", "src/a.py"),
    ("src/?.py", "src/ab.py"),
    ("src/a?", "src/abc"),
])
def test_scopes_do_not_overlap(a, b):
    assert not o.scopes_overlap(a, b)
    assert not o.scopes_overlap(b, a)


# ---------------------------------------------------------------------------- path_in_scope

@pytest.mark.parametrize("path, scope", [
    ("src/api", "src/api"),
    ("src/api/x.py", "src/api"),
    ("src/api/deep/er/x.py", "src"),
    ("src/a.py", "src/*.py"),
    ("src/sub/a.py", "src/**/*.py"),
    ("src/a.py", "src/**/*.py"),
    ("a.py", "**/*.py"),
    ("db/m/1.sql", "**/*.sql"),
    ("x", "**"),
    ("src/a/b", "src/a/**"),
    ("apps/web/checkout/pay.ts", "apps/*/checkout"),
    ("src/b.py", "src/[ab].py"),
])
def test_path_in_scope(path, scope):
    assert o.path_in_scope(path, scope)


@pytest.mark.parametrize("path, scope", [
    ("src", "src/api"),                 # the parent is not inside the child
    ("src/api2", "src/api"),
    ("src/sub/a.py", "src/*.py"),       # * stays within one segment
    ("src/a.go", "src/*.py"),
    ("lib/a.py", "src/**/*.py"),
    ("apps/web/cart", "apps/*/checkout"),
    ("src/c.py", "src/[ab].py"),
    ("src/a", "src/a/**"),              # as in git, `a/**` matches what is inside a, not a
])
def test_path_not_in_scope(path, scope):
    assert not o.path_in_scope(path, scope)


# Property: a path under two scopes proves those scopes overlap, and a concrete path under a
# scope overlaps it. Small alphabets keep collisions likely.
_names = st.sampled_from(["a", "b", "ab", "a.py", "b.py", "x.sql"])
_patterns = st.sampled_from(["a", "b", "*", "a*", "*.py", "?", "[ab]", "*.sql", "**"])
_paths = st.lists(_names, min_size=1, max_size=4).map("/".join)
_scopes = st.lists(st.one_of(_names, _patterns), min_size=1, max_size=4).map("/".join)


@settings(max_examples=300, deadline=None)
@given(path=_paths, first=_scopes, second=_scopes)
def test_property_common_path_means_overlap(path, first, second):
    if o.path_in_scope(path, first) and o.path_in_scope(path, second):
        assert o.scopes_overlap(first, second)
    if o.path_in_scope(path, first):
        assert o.scopes_overlap(path, first)


@settings(max_examples=200, deadline=None)
@given(first=_scopes, second=_scopes)
def test_property_overlap_is_symmetric(first, second):
    assert o.scopes_overlap(first, second) == o.scopes_overlap(second, first)


# ---------------------------------------------------------------------------- scope_specificity

def test_scope_specificity_orders_narrow_claims_first():
    ordered = ["**", "**/*.sql", "src", "src/*", "src/api", "src/api/*.py", "src/api/handlers.py"]
    ranks = [o.scope_specificity(s) for s in ordered]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)


def test_scope_specificity_literal_beats_glob_of_same_depth():
    assert o.scope_specificity("src/api") > o.scope_specificity("src/*")
    assert o.scope_specificity("apps/web/checkout") > o.scope_specificity("apps/*/checkout")


# ---------------------------------------------------------------------------- foreign_locks_overlapping

def make_lock(owner="api", area="backend", scope=("src/api",), expires_in=timedelta(hours=1),
              **extra):
    return {"area": area, "owner": owner, "scope": list(scope), "reason": "refactor",
            "expected_instability": False, "allow_external_fixes": False,
            "acquired_at": o.iso(T - timedelta(minutes=5)),
            "expires_at": o.iso(T + expires_in), **extra}


def state_with(*locks):
    state = o.empty_state()
    state["locks"] = list(locks)
    return state


def test_an_overlapping_live_lock_of_another_session_conflicts_whatever_its_area():
    lock = make_lock()
    assert o.foreign_locks_overlapping(state_with(lock), "web", ["src/api/x.py"], NOW) == [lock]
    assert o.foreign_locks_overlapping(state_with(lock), "web", ["src"], NOW) == [lock]
    assert o.foreign_locks_overlapping(state_with(lock), "web", ["docs", "src/*"], NOW) == [lock]


@pytest.mark.parametrize("owner, scope, lock", [
    ("api", ["src/api"], make_lock()),                          # own lock
    ("web", ["src/web"], make_lock()),                          # no overlap
    ("web", ["src/api"], make_lock(expires_in=timedelta(0))),   # expires exactly now
    ("web", ["src/api"], make_lock(expires_in=timedelta(seconds=-1))),
])
def test_no_conflict(owner, scope, lock):
    assert o.foreign_locks_overlapping(state_with(lock), owner, scope, NOW) == []


def test_a_lock_with_one_second_left_still_conflicts():
    lock = make_lock(expires_in=timedelta(seconds=1))
    assert o.foreign_locks_overlapping(state_with(lock), "web", ["src/api"], NOW) == [lock]


def test_every_conflicting_lock_is_listed_whatever_its_area():
    first, second = make_lock(owner="api"), make_lock(owner="ops", scope=["src"])
    other = make_lock(owner="db", area="infra")
    apart = make_lock(owner="ui", area="frontend", scope=["web"])
    found = o.foreign_locks_overlapping(state_with(first, second, other, apart), "web",
                                        ["src/api"], NOW)
    assert found == [first, second, other]


# ---------------------------------------------------------------------------- expiry

def test_is_expired_boundary():
    assert o.is_expired(make_lock(expires_in=timedelta(0)), NOW)
    assert not o.is_expired(make_lock(expires_in=timedelta(seconds=1)), NOW)


MOMENTS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                       timezones=st.just(timezone.utc))


@settings(max_examples=300, deadline=None)
@given(MOMENTS, MOMENTS)
def test_moments_compare_as_strings_in_time_order(expires, now):
    """Expiry compares the state's ISO strings, not datetimes; it must agree with time."""
    expires, now = expires.replace(microsecond=0), now.replace(microsecond=0)
    lock = {"expires_at": o.iso(expires)}
    assert o.is_expired(lock, o.iso(now)) == (expires <= now)
    assert o.remaining_seconds(lock, o.iso(now)) == int((expires - now).total_seconds())


@pytest.mark.parametrize("moment", ["2025-03-01T12:00:00+00:00", "0999-01-02T03:04:05+00:00",
                                    "2024-02-29T23:59:59+00:00"])
def test_now_is_written_like_every_stored_moment(moment):
    with freeze_time(moment):
        assert o.utc_now() == moment == o.iso(datetime.fromisoformat(moment))
    assert o.moment_after(moment, 90) == o.iso(datetime.fromisoformat(moment) + timedelta(seconds=90))


def test_remaining_seconds_negative_when_expired():
    assert o.remaining_seconds(make_lock(expires_in=timedelta(minutes=-4)), NOW) == -240
    assert o.remaining_seconds(make_lock(expires_in=timedelta(minutes=12)), NOW) == 720


def test_sweep_expired_drops_only_expired_and_returns_them():
    live = make_lock(owner="api")
    gone = make_lock(owner="web", expires_in=timedelta(minutes=-1))
    now_exactly = make_lock(owner="ops", expires_in=timedelta(0))
    state = state_with(live, gone, now_exactly)
    swept = o.sweep_expired(state, NOW)
    assert swept == [gone, now_exactly]
    assert state["locks"] == [live]


def test_sweep_expired_with_nothing_expired_changes_nothing():
    live = make_lock()
    state = state_with(live)
    assert o.sweep_expired(state, NOW) == []
    assert state["locks"] == [live]


def test_live_locks():
    live, dead = make_lock(), make_lock(owner="web", expires_in=timedelta(seconds=-5))
    assert o.live_locks(state_with(live, dead), NOW) == [live]


# ---------------------------------------------------------------------------- humanize_seconds

@pytest.mark.parametrize("seconds, text", [
    (0, "under a minute"),
    (59, "under a minute"),
    (60, "1 min"),
    (720, "12 min"),
    (-240, "4 min"),                  # the sign is the caller's business ("expired ... ago")
    (3600, "1 h"),
    (5400, "1 h 30 min"),
    (7199, "1 h 59 min"),
    (86400, "1 d"),
    (90000, "1 d 1 h"),
    (90060, "1 d 1 h"),               # minutes are dropped once days are shown
    (30 * 86400, "30 d"),
])
def test_humanize_seconds(seconds, text):
    assert o.humanize_seconds(seconds) == text


@pytest.mark.parametrize("argv", [
    ["check"], ["check", "--session", "a-b"], ["check", "--json", "--area", "x", "--path", "y",
                                                  "--area", "z"],
    ["check", "--state", "s.yaml", "--path=p"], ["check", "--session", "a", "--session", "b"],
    ["hook"], ["hook", "--json", "--state", "x"],
])
def test_fast_path_parses_check_and_hook_exactly_like_argparse(argv):
    fast = o.parse_fast_path(argv)
    assert fast is not None
    assert vars(fast) == vars(o.parse_arguments(argv))


@pytest.mark.parametrize("argv", [
    ["check", "--help"], ["check", "--bogus"], ["check", "--session"], ["check", "--area", "--x"],
    ["status"], ["--json", "check"], [],
])
def test_fast_path_leaves_everything_unusual_to_argparse(argv):
    assert o.parse_fast_path(argv) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children,
                                                                       max_size=4),
    max_leaves=20)


@given(json_values, st.sampled_from([None, 2]))
@settings(max_examples=200, deadline=None)
def test_hook_json_reader_agrees_with_json(value, indent):
    import json
    text = json.dumps(value, indent=indent)
    assert o.load_json(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "garbage", '{"a": 1} x', '{"a": 1,}', "{", "[1, 2"])
def test_hook_json_reader_refuses_what_json_refuses(text):
    with pytest.raises(ValueError):
        o.load_json(text)


def test_backslashes_and_slashes_are_one_separator():
    assert o.scopes_overlap("src\\api", "src/api/handler.py")
    assert o.path_in_scope("src/api/x.py", "src\\api")


def test_case_is_folded_only_where_the_file_system_ignores_it():
    assert not o.path_in_scope("Src/API/x.py", "src/api")
    assert not o.scopes_overlap("SRC/*.PY", "src/a.py")
    assert o.path_in_scope("Src/API/x.py", "src/api", fold_case=True)
    assert o.scopes_overlap("SRC/*.PY", "src/a.py", fold_case=True)
    lock = {"area": "api", "owner": "a", "scope": ["Src/API"], "reason": "", "expires_at":
            "2099-01-01T00:00:00+00:00", "allow_external_fixes": False,
            "expected_instability": False}
    state = {**o.empty_state(), "locks": [lock]}
    now = "2026-01-01T00:00:00+00:00"
    assert o.build_failure_verdict(state, "b", now, path="src/api/x.py")[0] == "fix"
    assert o.build_failure_verdict(state, "b", now, path="src/api/x.py",
                                   fold_case=True)[0] == "report_only"


def test_case_insensitive_file_system_is_detected(tmp_path, monkeypatch):
    (tmp_path / ".git").mkdir()
    sensitive = not (tmp_path / ".GIT").exists()
    assert o.file_system_ignores_case(str(tmp_path)) is (not sensitive)
    monkeypatch.setattr(o.os, "name", "nt")
    assert o.file_system_ignores_case(str(tmp_path)) is True


scope_text = st.lists(st.sampled_from(["src", "api", "a*", "*", "**", "x.py", "[ab]", "b?"]),
                      min_size=1, max_size=4).map("/".join)


@given(st.lists(st.lists(scope_text, min_size=1, max_size=3), min_size=1, max_size=8), scope_text)
@settings(max_examples=300, deadline=None)
def test_lock_index_finds_exactly_what_comparing_every_lock_finds(scope_lists, query):
    locks = [{"area": "a", "owner": f"s{i}", "scope": scopes} for i, scopes in enumerate(scope_lists)]
    brute = [lock for lock in locks if any(o.scopes_overlap(query, s) for s in lock["scope"])]
    assert o.LockIndex(locks).overlapping(query) == brute


@pytest.mark.parametrize("argv", [
    ["lock", "--session", "a", "--area", "b", "--scope", "c", "--reason", "r", "--unstable"],
    ["--json", "status", "--session", "a"], ["--state", "x.yaml", "note", "hi", "there"],
    ["sync", "--session", "a", "--area", "x", "--area", "y", "--lock-scope", "p"],
    ["audit", "--threshold", "2"], ["install", "--agent", "claude", "--agent", "cursor"],
])
def test_building_only_the_named_subcommand_parses_the_same(argv):
    full = o.build_parser().parse_args(argv)
    assert vars(o.parse_arguments(argv)) == {"state": None, "json": False, **vars(full)}


def test_named_command_skips_global_flags():
    assert o.named_command(["--state", "note", "lock"]) == "lock"
    assert o.named_command(["--json", "status"]) == "status"
    assert o.named_command(["--help"]) is None and o.named_command(["bogus"]) is None


@st.composite
def plain_command_lines(draw):
    """A command line of a fast-path command, drawn from its flags in COMMAND_FLAGS: any of
    them, in any order, repeatable ones repeated, values written `--flag v` or `--flag=v`."""
    command = draw(st.sampled_from(o.FAST_PATH_COMMANDS))
    words = [command]
    for flag, kind, _, _ in draw(st.permutations(o.COMMAND_FLAGS[command][1])):
        times = draw(st.integers(0, 2 if kind in (o.VALUES, o.TEXT) else 1))
        for _ in range(times):
            value = draw(st.sampled_from(["a", "b c", "x.py", "="]))
            if kind == o.SWITCH:
                words.append(flag)
            elif kind == o.TEXT:
                words.append(draw(st.sampled_from(["hello", "two words"])))
            elif draw(st.booleans()):
                words.append(f"{flag}={value}")
            else:
                words += [flag, value]
    if draw(st.booleans()):
        words.insert(draw(st.sampled_from([0, len(words)])), "--json")
    return words


@given(plain_command_lines())
@settings(max_examples=300, deadline=None)
def test_the_fast_parser_reads_any_plain_command_line_as_argparse_does(argv):
    """Both parsers are built from one table; argparse is the judge of what a line means."""
    fast = o.parse_fast_path(argv)
    if argv[0] == "--json":
        assert fast is None  # a global flag first: argparse's
        return
    assert fast is not None, argv
    assert vars(fast) == vars(o.parse_arguments(argv)), argv


@pytest.mark.parametrize("argv", [
    ["sync"], ["sync", "--session", "a", "--focus", "f x", "--area", "b", "--area", "c",
               "--lock-scope", "p", "--reason", "r", "--unstable", "--force", "--json"],
    ["lock", "--session", "a", "--area", "b", "--scope", "c", "--scope", "d", "--reason", "r",
     "--allow-external-fixes", "--duration", "1h"],
    ["renew", "--session", "a"], ["unlock", "--session", "a", "--all"],
    ["update", "--session=a", "--status", "blocked", "--add-note", "n", "--add-risk", "r"],
    ["complete", "--session", "a", "--outcome", "done", "--file", "x", "--file", "y"],
    ["note", "hello", "world", "--session", "a"], ["note"], ["note", "--json", "hi"],
    ["directive", "--session", "a", "--rule", "R", "--directive", "d", "--reason", "r"],
])
def test_fast_path_parses_every_write_exactly_like_argparse(argv):
    fast = o.parse_fast_path(argv)
    assert fast is not None
    assert vars(fast) == vars(o.parse_arguments(argv))


@pytest.mark.parametrize("argv", [
    ["lock", "--sess", "a"], ["lock", "--unstable=yes"], ["note", "--", "-x"], ["note", "-5"],
    ["sync", "--help"], ["validate"], ["audit"], ["install"], ["status"],
])
def test_fast_path_leaves_unusual_writes_to_argparse(argv):
    assert o.parse_fast_path(argv) is None


def test_a_count_agrees_with_its_noun():
    assert [f"{o.Count(n):lock}" for n in (0, 1, 2)] == ["0 locks", "1 lock", "2 locks"]
    assert f"{o.Count(3)}" == "3"
    assert o.message("session_completed", session="api", locks=1, files=2) == (
        "Completed api: released 1 lock, recorded 2 changed files")


# ---------------------------------------------------------------------------- rules commands enforce

LATER = o.iso(T + timedelta(minutes=30))


def a_state(*locks, sessions=("api", "web")):
    state = o.empty_state()
    for session_id in sessions:
        o.register_session(state, session_id, "focus", ["backend"], "in_progress", NOW)
    state["locks"] = [{"area": area, "owner": owner, "scope": [scope], "reason": "r",
                       "expected_instability": False, "allow_external_fixes": False,
                       "acquired_at": NOW, "expires_at": until}
                      for owner, area, scope, until in locks]
    return state


def test_renew_extends_from_now_and_never_shortens_a_lock():
    far, near = o.iso(T + timedelta(hours=5)), o.iso(T + timedelta(minutes=40))
    state = a_state(("api", "backend", "src/api", far), ("api", "docs", "docs", near),
                    ("web", "web", "src/web", near))
    mine, extended = o.renew_locks(state, "api", None, 3600, LATER)
    assert [lock["area"] for lock in mine] == ["backend", "docs"]
    assert [lock["area"] for lock in extended] == ["docs"]
    assert state["locks"][0]["expires_at"] == far  # asked for less than it had: kept
    assert state["locks"][1]["expires_at"] == o.iso(T + timedelta(minutes=90))
    assert state["locks"][2]["expires_at"] == near  # another session's lock: untouched
    assert o.find_session(state, "api")["last_updated"] == LATER


def test_an_expired_lock_is_not_renewed():
    state = a_state(("api", "backend", "src/api", NOW))
    assert o.renew_locks(state, "api", "backend", 3600, LATER) == ([], [])
    assert o.find_session(state, "api")["last_updated"] == NOW


def test_only_the_owner_may_release_a_lock():
    live = o.iso(T + timedelta(hours=2))
    state = a_state(("web", "backend", "src/api", live))
    assert o.release_locks(state, "api", "backend", LATER) == ([], ["web"])
    assert len(state["locks"]) == 1
    released, held_by = o.release_locks(state, "web", "backend", LATER)
    assert [lock["owner"] for lock in released] == ["web"] and held_by == []
    assert state["locks"] == []


def test_releasing_all_takes_only_the_owners_locks():
    live = o.iso(T + timedelta(hours=2))
    state = a_state(("api", "a", "a", live), ("api", "b", "b", NOW), ("web", "c", "c", live))
    released, _ = o.release_locks(state, "api", None, LATER)
    assert [lock["area"] for lock in released] == ["a", "b"]  # expired ones too
    assert [lock["owner"] for lock in state["locks"]] == ["web"]


def test_update_adds_notes_as_given_and_risks_and_areas_once():
    session = a_state()["active_sessions"][0]
    o.update_session(session, LATER, "blocked", ["n", "n"], ["backend", "ui", "ui"], ["r", "r"])
    o.update_session(session, LATER, None, [], ["ui"], ["r"])
    assert session["status"] == "blocked"
    assert session["notes"] == ["n", "n"]
    assert session["touched_areas"] == ["backend", "ui"]
    assert session["risks"] == ["r"]
    assert session["last_updated"] == LATER


@pytest.mark.parametrize("text, author, note", [
    ("build is red", "api", "[api] build is red"),
    ("build is red", None, "build is red"),
    ("[api] I am api", None, "(unsigned) [api] I am api"),  # never passes for a signed note
    ("[x] signed anyway", "web", "[web] [x] signed anyway"),
])
def test_a_note_is_signed_by_its_author_and_an_unsigned_one_cannot_pass_for_signed(
        text, author, note):
    assert o.signed_note(text, author) == note


def test_touched_files_are_recorded_once_each():
    session = a_state()["active_sessions"][0]
    assert o.add_touched_files(session, ["a.py", "b.py", "a.py"]) == ["a.py", "b.py"]
    assert o.add_touched_files(session, ["b.py", "c.py"]) == ["c.py"]
    assert o.add_touched_files(session, ["c.py"]) == []
    assert session["touched_files"] == ["a.py", "b.py", "c.py"]


def test_an_existing_session_keeps_its_focus_and_says_so():
    session = a_state()["active_sessions"][0]
    assert o.kept_focus(session, False, "something else") == "focus"
    assert o.kept_focus(session, False, "  focus ") is None  # the same, differently spaced
    assert o.kept_focus(session, False, None) is None
    assert o.kept_focus(session, True, "something else") is None  # just registered with it


def test_registering_an_existing_session_adds_areas_and_keeps_the_rest():
    state = a_state()
    session, created = o.register_session(state, "api", "new focus", ["backend", "ui"],
                                          "blocked", LATER)
    assert created is False
    assert (session["focus"], session["status"]) == ("focus", "in_progress")
    assert session["touched_areas"] == ["backend", "ui"]
    assert session["last_updated"] == LATER


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30, 23, 59, 59)),
       st.sampled_from([timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-8)]))
def test_epoch_seconds_reads_a_moment_as_datetime_does(moment, offset):
    """The arithmetic reading of the state's moments (the hooks' presence) agrees with
    datetime, the judge, on every day from year 1 to 9999, and other offsets go to it."""
    aware = moment.replace(microsecond=0, tzinfo=timezone(offset))
    assert o.epoch_seconds(aware.isoformat()) == int(aware.timestamp())
