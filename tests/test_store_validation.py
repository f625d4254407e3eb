"""Validation entry by entry (validate_state_text) against strictyaml's own whole-document
verdict, the judge: for any text, generated or hand-written, valid or not, both give the
same state, the same warnings, or the same error with the same line number."""

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orchestrator as o

LABEL = "state.yaml"


def whole_document(text):
    """strictyaml on the whole text: what the tool did before it validated entry by entry."""
    try:
        if o.is_blank_yaml(text):
            return "valid", o.empty_state(), []
        state, warnings = o.normalise_state(o.load_yaml(text, o.state_schema(), LABEL), LABEL)
        o.refuse_duplicate_sessions(state, text, LABEL)  # the one rule a schema cannot say
        return "valid", state, warnings
    except o.OrchestratorError as error:
        return "invalid", error.message, None


def by_entries(text, known=None):
    try:
        state, warnings, entries = o.validate_state_text(text, LABEL, known)
        return ("valid", state, warnings), entries
    except o.OrchestratorError as error:
        return ("invalid", error.message, None), {}


def assert_same_verdict(text, known=None):
    judged = whole_document(text)
    ours, entries = by_entries(text, known)
    assert ours == judged, text
    if judged[0] == "valid":  # and again with every entry known: nothing is validated twice
        again, _ = by_entries(text, entries)
        assert again == judged, text
    return entries


# ---------------------------------------------------------------------------- generated states

WORDS = ["x", "api", "hi: there", "a # b", "- dash", "[x]", "{y}", "'q'", '"dq"', "yes", "12",
         "2026-11-01", "  lead", "trail  ", "ünï", "a\nb", "*star", "&amp", "|", ">", "%p", "@at",
         "`tick`", "line\\back", "", "null", "~"]
text_values = st.one_of(st.sampled_from(WORDS), st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12))
ids = st.sampled_from(["a", "b-2", "api-work", "x1"] * 5 + ["Not_kebab"])
moments = st.sampled_from(["2026-11-01T10:00:00+00:00", "2026-11-01T10:00:00Z",
                           '"2026-11-01T10:00:00+00:00"', "2026-11-01 10:00:00",
                           "2026-11-01T12:00:00+02:00"] * 4 + ["2026-13-01", "not a time"])
flags = st.sampled_from(["true", "false", "True", "no"] * 4 + ["maybe"])
statuses = st.sampled_from(list(o.SESSION_STATUSES) * 4 + ["finished"])


def field_value(holds):
    return {"id": ids, "text": text_values, "status": statuses, "moment": moments,
            "flag": flags, "texts": st.lists(text_values, max_size=3),
            "count": st.sampled_from(["0", "3", "12", "-1"] * 4 + ["three", "1.5"])}[holds]


@st.composite
def entries(draw, key):
    if key == "global_notes":
        return draw(text_values)
    fields = {}
    for name, holds, presence in o.ENTRY_FIELDS[key]:
        if presence != o.REQUIRED and draw(st.booleans()):
            continue
        if draw(st.integers(0, 80)) == 0:
            continue  # now and then a required field goes missing
        fields[name] = draw(field_value(holds))
    return fields


@st.composite
def states(draw):
    keys = draw(st.permutations(o.TOP_LEVEL_KEYS))
    keys = keys[:draw(st.integers(0, len(keys)))]
    return [(key, draw(st.lists(entries(key), max_size=4))) for key in keys]


def scalar(draw, value):
    """`value` as one of the ways people quote; plain only where it is plainly safe, bar a
    few mischievous cases (a plain `- x`, `[x]`, `&a`), which make text strictyaml refuses."""
    style = draw(st.sampled_from(["plain", "double", "single", "tool"]))
    safe = value.replace(" ", "").replace("-", "").replace("_", "").isalnum() and value == value.strip()
    if style == "plain" and not safe and draw(st.integers(0, 9)):
        style = "tool"
    if style == "tool" or "\n" in value:
        return o.yaml_string(value)
    if style == "double":
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if style == "single":
        return "'" + value.replace("'", "''") + "'"
    return value


@st.composite
def hand_written(draw):
    """A state laid out the way people write one: any indentation, comments, blank lines,
    `[]`, flow lists, quoted or plain scalars; then perhaps CRLF, a BOM, or damage."""
    lines = []
    for key, items in draw(states()):
        if not items and draw(st.booleans()):
            lines.append(f"{key}: []" + draw(st.sampled_from(["", "  # none yet"])))
            continue
        lines.append(key + ":" + draw(st.sampled_from(["", "  # the list"])))
        dash = " " * draw(st.sampled_from([0, 2, 4]))
        for item in items:
            if draw(st.integers(0, 5)) == 0:
                lines.append(draw(st.sampled_from(["", "# a note", dash + "# indented note"])))
            if key == "global_notes":
                lines.append(f"{dash}- {scalar(draw, item)}")
                continue
            inner = dash + " " * draw(st.sampled_from([2, 3]))
            first = True
            for name, value in item.items():
                lead = f"{dash}- " if first else inner
                lead = lead if not first or len(lead) == len(inner) else f"{dash}-" + " " * (
                    len(inner) - len(dash) - 1)
                first = False
                if isinstance(value, list):
                    if not value or draw(st.integers(0, 3)) == 0:
                        lines.append(f"{lead}{name}: [{', '.join(scalar(draw, v) for v in value)}]")
                    else:
                        lines.append(f"{lead}{name}:")
                        lines.extend(f"{inner}  - {scalar(draw, v)}" for v in value)
                else:
                    lines.append(f"{lead}{name}: {scalar(draw, value)}")
            if first:
                lines.append(f"{dash}- {{}}")
    text = "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))
    damage = draw(st.sampled_from(["none"] * 20 + ["crlf", "bom", "tab", "duplicate key",
                                                  "anchor", "drop line", "indent line",
                                                  "junk line", "flow entry", "cr"]))
    all_lines = text.split("\n")
    at = draw(st.integers(0, max(len(all_lines) - 1, 0)))
    if damage == "crlf":
        text = text.replace("\n", "\r\n")
    elif damage == "bom":
        text = "\ufeff" + text
    elif damage == "cr":
        text = text.replace("\n", "\r", 1)
    elif damage == "tab":
        all_lines[at] = "\t" + all_lines[at]
        text = "\n".join(all_lines)
    elif damage == "duplicate key" and lines:
        text = text + lines[0] + "\n"
    elif damage == "anchor":
        text = text.replace(": ", ": &a ", 1).replace("- ", "- *a ", 1)
    elif damage == "drop line":
        del all_lines[at]
        text = "\n".join(all_lines)
    elif damage == "indent line":
        all_lines[at] = " " + all_lines[at]
        text = "\n".join(all_lines)
    elif damage == "junk line":
        all_lines.insert(at, draw(st.sampled_from(["---", "...", "%YAML 1.2", "junk", "  - x",
                                                   "other_key:", "locks: [a]", "- loose"])))
        text = "\n".join(all_lines)
    elif damage == "flow entry":
        text += "global_notes: [a, b]\n"
    return text


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hand_written())
def test_entry_by_entry_equals_the_whole_document(text):
    assert_same_verdict(text)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(o.TOP_LEVEL_KEYS), st.data()), max_size=0),
       hand_written(), hand_written())
def test_entries_known_from_another_text_never_change_the_verdict(_, first, second):
    """A cache filled from one text (an earlier version of the file) is used for another."""
    entries = assert_same_verdict(first)
    assert_same_verdict(second, entries)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_tools_own_layout_splits_and_equals_the_whole_document(data):
    state = {key: [] for key in o.TOP_LEVEL_KEYS}
    for key, items in data.draw(states()):
        state[key] = items
    try:
        text = o.emit_state(state)
    except Exception:
        return  # not a state the tool would hold (a missing field, a bad moment)
    assert_same_verdict(text)


# ---------------------------------------------------------------------------- hand-written files

TOOL_LAYOUT = """\
# Session Orchestrator shared state.
active_sessions:
  - id: api-work
    focus: Split the tariff service
    status: in_progress
    touched_areas:
      - backend
    risks: []
    notes: []
    started_at: 2026-11-01T10:00:00+00:00
    last_updated: 2026-11-01T10:00:00+00:00
locks: []
completed_sessions: []
global_notes:
  - The staging API moved to port 8081
directive_log: []
"""

HAND_WRITTEN = [
    TOOL_LAYOUT,
    TOOL_LAYOUT.replace("\n", "\r\n"),
    "\ufeff" + TOOL_LAYOUT,
    TOOL_LAYOUT.replace("2026-11-01T10:00:00+00:00", '"2026-11-01T10:00:00+00:00"', 1),
    TOOL_LAYOUT.replace("2026-11-01T10:00:00+00:00", "2026-11-01 10:00:00", 1),
    TOOL_LAYOUT.replace("  - id: api-work", "- id: api-work").replace("\n    ", "\n  "),
    TOOL_LAYOUT.replace("global_notes:\n", "global_notes:\n\n# why\n  # indented\n"),
    TOOL_LAYOUT.replace("    risks: []", "\trisks: []"),
    TOOL_LAYOUT + "locks: []\n",
    TOOL_LAYOUT.replace("  - The staging", "  - &n The staging") + "  - *n\n",
    TOOL_LAYOUT.replace("global_notes:\n  - The staging API moved to port 8081\n",
                        "global_notes: [one, two]\n"),
    TOOL_LAYOUT.replace("    focus: Split the tariff service",
                        "    focus: Split the\n      tariff service"),
    TOOL_LAYOUT.replace("    focus: Split the tariff service", "    focus: |\n      Split\n      it"),
    TOOL_LAYOUT.replace("    focus: Split the tariff service", "    focus: |+\n      Split\n\n"),
    TOOL_LAYOUT.replace("  - The staging API moved to port 8081", '  - "multi\n  line"'),
    TOOL_LAYOUT.replace("  - The staging API moved to port 8081", "  - a\n  -\n  - b"),
    TOOL_LAYOUT.replace("status: in_progress", "status: finished"),
    TOOL_LAYOUT.replace("    status: in_progress\n", ""),
    TOOL_LAYOUT.replace("    notes: []", "    notes: []\n    notes: [x]"),
    TOOL_LAYOUT.replace("active_sessions:", "active_sessions:\n"),
    TOOL_LAYOUT.replace("locks: []", "locks:"),
    TOOL_LAYOUT.replace("locks: []", "locks: [] # empty"),
    TOOL_LAYOUT.replace("locks: []", "locks: []# not a comment"),
    TOOL_LAYOUT.replace("locks: []", "locks:\n  - {area: a, owner: b, scope: [x], reason: r,"
                        " expected_instability: true, allow_external_fixes: false,"
                        " expires_at: 2026-11-02T10:00:00+00:00}"),
    TOOL_LAYOUT.replace("locks: []", "locks:\n  - {area: a,\n owner: b}"),
    TOOL_LAYOUT.replace("directive_log: []", "unknown: []"),
    "---\n" + TOOL_LAYOUT,
    TOOL_LAYOUT + "...\n",
    "  " + TOOL_LAYOUT.replace("\n", "\n  "),
    "# only a comment\n",
    "",
    "global_notes:\n  - a\n   - b\n",
    "global_notes:\n    - a\n  - b\n",
    "global_notes:\n  - a\n  b\n",
    "global_notes:\n  - a\n    b\n",
    "global_notes:\n  - a\u2028b\n",
    "global_notes:\n  - a\x85b\n",
    "global_notes:\n  -\tb\n",
    "global_notes:\n  - first\n  - |\n    second",  # a block scalar at the very end, no \n
    "global_notes:\n  - >\n    folded\r\n    text",
    TOOL_LAYOUT.rstrip("\n").replace("directive_log: []", "directive_log:\n  - session: a\n"
                                      "    directive: d\n    reason: |\n      why\n"
                                      "    timestamp: 2026-11-01T10:00:00+00:00\n"
                                      "    rule_overridden: r"),
]


@pytest.mark.parametrize("text", HAND_WRITTEN)
def test_hand_written_files_get_strictyamls_verdict(text):
    assert_same_verdict(text)


def test_a_hand_edit_of_one_entry_validates_that_entry_only(monkeypatch):
    text = o.emit_state({**o.empty_state(), "global_notes": [f"note {i}" for i in range(200)]})
    _, _, entries = o.validate_state_text(text, LABEL)
    edited = text.replace('"note 17"\n', '"note seventeen"\n')
    validated = []
    real = o.load_yaml
    monkeypatch.setattr(o, "load_yaml", lambda t, schema, label, **k: validated.append(t) or
                        real(t, schema, label, **k))
    state, _, _ = o.validate_state_text(edited, LABEL, entries)
    assert validated == ['global_notes:\n  - "note seventeen"\n']
    assert state["global_notes"][17] == "note seventeen"


def test_entries_of_the_same_text_share_no_object_a_command_could_change_twice():
    lock = {"area": "api", "owner": "a", "scope": ["src/api"], "reason": "", "expected_instability":
            False, "allow_external_fixes": False, "expires_at": "2026-11-01T12:00:00+00:00"}
    text = o.emit_state({**o.empty_state(), "locks": [lock, dict(lock)]})
    for known in (None, by_entries(text)[1]):  # validated now, and taken from the cache
        state, _, _ = o.validate_state_text(text, LABEL, known)
        first, second = state["locks"]
        assert first == second and first is not second
        first["scope"].append("src/other")
        assert second["scope"] == ["src/api"]


# ---------------------------------------------------------------------------- through the commands

def hand_edit(state_path, old, new):
    text = state_path.read_text(encoding="utf-8")
    assert old in text
    state_path.write_text(text.replace(old, new), encoding="utf-8")


def test_a_hook_and_check_that_would_stall_let_work_go_on(run, session, state_path, monkeypatch):
    """A budget of 0 s stands for a state too large to validate in the time they have."""
    session("api")
    assert run("note", "--session", "api", "first").code == 0
    hand_edit(state_path, '"[api] first"', '"[api] edited by hand"')
    monkeypatch.setenv(o.VALIDATION_BUDGET_ENV, "0")
    checked = run("check", "--session", "api")
    assert checked.code == 0 and checked.out.startswith("Not checked:")
    assert "the next command validates" in checked.out and checked.out.count("\n") == 1
    event = '{"agent_action_name": "pre_write_code", "trajectory_id": "t", "tool_info": ' \
            '{"file_path": "src/x.py"}}'
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(event))
    hooked = run("hook")
    assert hooked.code == 0 and hooked.err.count("\n") == 1
    assert "the action was allowed" in hooked.err
    assert run("status").code == 0  # no budget: validates, and caches what it validated
    assert run("check", "--session", "api").out == ""


def test_check_and_the_hook_validate_when_there_is_time(run, session, state_path, monkeypatch):
    session("api")
    assert run("note", "--session", "api", "first").code == 0
    hand_edit(state_path, '"[api] first"', '"[api] edited"')
    monkeypatch.setenv(o.VALIDATION_BUDGET_ENV, "30")
    assert run("check", "--session", "api").out == ""
    hand_edit(state_path, '"[api] edited"', "[unclosed")
    broken = run("check", "--session", "api")
    assert broken.code == 3 and "line" in broken.err


def test_a_write_validates_before_it_takes_the_lock(run, session, state_path, monkeypatch):
    """Nothing is parsed while the inter-process lock is held when the file stays as it was
    validated: other writers never wait for a validation."""
    session("api")
    for number in range(30):
        assert run("note", "--session", "api", f"note {number}").code == 0
    hand_edit(state_path, '"[api] note 7"', '"[api] note seven, by hand"')
    held, under_lock = [False], []
    real_enter, real_exit = o.InterProcessLock.__enter__, o.InterProcessLock.__exit__
    real_validate = o.validate_state_text

    def enter(self):
        result = real_enter(self)
        held[0] = True
        return result

    def leave(self, *exc):
        held[0] = False
        return real_exit(self, *exc)

    def validate(*args, **kwargs):
        under_lock.append(held[0])
        return real_validate(*args, **kwargs)
    monkeypatch.setattr(o.InterProcessLock, "__enter__", enter)
    monkeypatch.setattr(o.InterProcessLock, "__exit__", leave)
    monkeypatch.setattr(o, "validate_state_text", validate)
    assert run("note", "--session", "api", "after the edit").code == 0
    assert under_lock == [False]


def test_an_upgrade_that_keeps_the_schema_validates_nothing_again(run, session, state_path,
                                                                  monkeypatch):
    session("api")
    assert run("note", "--session", "api", "kept").code == 0
    hand_edit(state_path, '"[api] kept"', '"[api] kept, by hand"')
    assert run("status").code == 0  # validates the edit, caches its entries
    validated = []
    real = o.load_yaml
    monkeypatch.setattr(o, "load_yaml", lambda *a, **k: validated.append(a[0]) or real(*a, **k))
    monkeypatch.setattr(o, "code_version", lambda: "a newer module")  # every whole cache stale
    assert run("status").code == 0 and validated == []
    monkeypatch.setattr(o, "code_version", lambda: "newer still")
    monkeypatch.setattr(o, "_entries_key", ["a newer schema"])  # entries validated again
    assert run("status").code == 0 and validated


def test_entries_of_the_same_text_are_never_one_object():
    text = o.emit_state({**o.empty_state(), "completed_sessions": [
        {"id": "aa", "focus": "f", "completed_at": "2026-11-01T10:00:00+00:00",
         "outcome": "done", "files_changed": []}] * 2})
    state, _, _ = o.validate_state_text(text, LABEL)
    first, second = state["completed_sessions"]
    first["files_changed"].append("only the first")
    assert second["files_changed"] == []


def test_two_active_sessions_with_one_id_are_an_invalid_state(run, session, state_path):
    """A hand edit that copies a session: every command naming the id would act on both, so
    the state is refused (exit 3), naming both lines, and left as it is."""
    session("api")
    text = state_path.read_text(encoding="utf-8")
    block = text[text.index("  - id: api"):text.index("locks:")]
    state_path.write_text(text.replace(block, block + block), encoding="utf-8")
    before = state_path.read_bytes()
    for argv in (("validate",), ("status",), ("update", "--session", "api", "--status", "blocked")):
        result = run(*argv)
        assert result.code == 3, result
        second = 4 + block.count("\n")  # the copy starts where the first one ends
        assert f"two active sessions have the id api (line 4 and line {second})" in result.err, \
            result.err
    assert state_path.read_bytes() == before


def test_an_invalid_state_is_parsed_once_per_command(run, session, state_path, monkeypatch):
    session("api")
    hand_edit(state_path, "status: in_progress", "status: napping")
    parsed = []
    real = o.validate_state_text
    monkeypatch.setattr(o, "validate_state_text", lambda *a, **k: parsed.append(1) or real(*a, **k))
    result = run("note", "--session", "api", "hello")
    assert result.code == 3 and len(parsed) == 1


@pytest.mark.slow
def test_a_whole_document_parse_stops_at_the_deadline_even_when_misjudged(run, session,
                                                                          state_path,
                                                                          monkeypatch):
    """A state that cannot be cut (a document marker) and an estimate that says "quick": the
    timer still ends the parse at the budget, and check lets work go on."""
    session("api")
    notes = "".join(f"  - note {n} with some words in it\n" for n in range(3000))
    state_path.write_text("---\n" + state_path.read_text(encoding="utf-8").replace(
        "global_notes: []\n", "global_notes:\n" + notes), encoding="utf-8")
    monkeypatch.setattr(o, "WHOLE_PARSE_SECONDS_PER_LINE", 0.0)
    monkeypatch.setenv(o.VALIDATION_BUDGET_ENV, "0.05")
    import signal
    handler = signal.signal(signal.SIGALRM, lambda *_: None)  # a caller's timer, armed
    signal.setitimer(signal.ITIMER_REAL, 100)
    try:
        checked = run("check", "--session", "api")
        left = signal.getitimer(signal.ITIMER_REAL)[0]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)
    assert checked.code == 0 and checked.out.startswith("Not checked:"), checked
    assert 90 < left < 100  # the caller's timer is back, with the time it had left
    monkeypatch.delenv(o.VALIDATION_BUDGET_ENV)
    assert run("status").code == 0  # no budget: the whole document is validated


def test_strictyaml_loads_dateutils_parser_only_for_the_first_timestamp():
    """Validating a note or a flag never pays for dateutil.parser (a third of strictyaml's
    import); the first timestamp loads the real module, which then reads it as strictyaml
    would."""
    code = ("import sys, orchestrator as o; sy = o.import_strictyaml(); "
            "before = 'dateutil.parser._parser' in sys.modules; "
            "o.load_yaml('a: x', sy.Map({'a': sy.Str()}), 't'); "
            "after_text = 'dateutil.parser._parser' in sys.modules; "
            "moment = o.load_yaml('a: 2026-11-01T10:00:00+02:00', sy.Map({'a': sy.Datetime()}), "
            "'t')['a']; "
            "print(before, after_text, 'dateutil.parser._parser' in sys.modules, "
            "moment.isoformat(), sys.modules['dateutil'].parser is sys.modules['dateutil.parser'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=o.HERE, capture_output=True,
                          text=True)
    assert proc.stdout.split() == ["False", "False", "True", "2026-11-01T10:00:00+02:00", "True"], \
        proc.stdout + proc.stderr
