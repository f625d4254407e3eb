"""Session Orchestrator: parallel agent sessions on one repository coordinate through one
state file.

    argv -> checked input -> (inter-process lock, load) -> pure policy -> (atomic save) -> render

Every session registers itself (`sync`), claims advisory locks on the areas it changes
(`lock`), asks before touching a broken area (`build-failure`) and leaves a record when it is
done (`complete`). All of it lives in `.windsurf/orchestrator/session_state.yaml`, shared by
every checkout and worktree of the repository. This module is the only writer of that file:
strictyaml's schema is the authority on what a valid state is; caches keyed by the file's
bytes (and each entry's) spare strictyaml's parse of what it has seen; a small emitter for
the fixed schema writes it back.

The domain:
- A session is an id (kebab-case), a focus, a status and the areas it touches. Agents'
  conversations (Windsurf's trajectory_id, Claude Code's session_id, Cursor's
  conversation_id) are bound to a session when one runs this tool with `--session S`; the
  hooks then know who is acting.
- A lock is owner (a session) + area (a label people choose) + scopes (globs in git's
  language, relative to the repository's root), with a reason and an expiry. Areas decide
  nothing: two locks conflict when some path matches a scope of each, whatever the areas are
  called; `lock` refuses a scope that overlaps another session's live lock.
- A conflict, in reports, is two sessions' live locks that overlap, or a session's touched
  areas or paths inside another session's lock.
- The verdict on a path (build-failure, check, the write hook) comes from the one lock that
  decides it: the asker's own lock wherever it covers the path, else the covering lock with
  the most specific scope, else the stricter. No lock, or one's own: fix; another's lock that
  allows outside fixes: fix and notify; another's lock: report only (the hook blocks).

Where the state lives: one file in the repository's main checkout, which every worktree
uses. Shared across machines (`remote enable`), the authority is a commit on a ref of the
git remote, every write a compare-and-swap of that ref, and the file is the local copy that
reads use; worktree paths and bound conversations mean something only on their machine.

Sections, in the order data flows (none uses a later one; tests/test_module_layout.py):
  1. constants — exit codes, limits, the one table of each entry's fields
  2. errors — the kinds of failure and their exit codes, mapped in one place
  3. text — what may be typed and printed
  4. schema — strictyaml's schema; validating the state entry by entry
  5. emitter — writing the state back in the tool's fixed layout
  6. store — the file, its lock, caches and backup; transactions
  7. sharing through git — SharedRef, the state on a ref of the remote, and
      SharedCopy, what sharing adds to a store
  8. policy: time — moments and durations
  9. policy: paths — git's glob language, scope matching and overlap
  10. policy: sessions and locks — conflicts, placing and releasing locks
  11. policy: build failures, directives, intent — verdicts, the audit, drift
  12. the clock, git and the files — the reads policy decides on
  13. presence — who is working, waiting, idle, stale or ended, from what the hooks
      saw; a session's end
  14. radar — overlaps nobody declared, and merge conflicts predicted in memory by git
  15. messages — notes addressed to sessions, delivered once
  16. input checks — flags and values; every command's flags, declared once
  17. rendering — reports and messages from templates
  18. hooks — each agent's events and answers, the shell reader, the verdicts, the report
      after a command
  19. the pack — install: the workflows, prompts, hooks and shim
  20. questions (a person at a terminal) — questionary for what is missing
  21. output — one JSON line or text
  22. commands — parse -> load -> policy -> save -> render, one function each
  23. command line — the context, argparse's parser, main()

Exit codes: 0 done; 1 refused or conflict found (nothing written); 2 bad input or usage
(nothing written); 3 the state file cannot be read or breaks the schema (file untouched);
4 the state stayed locked by another command for too long, or other writers kept overtaking
this one on the shared remote (nothing written); 5 the shared git remote could not be reached
or refused the write (nothing written anywhere); 70 internal
error (a bug; one line, no traceback); 130 cancelled.
"""

# Only what every command needs is imported here. The session-start check and the write hook
# run all the time, so `re`, `json`, `pathlib`, `argparse`, `datetime`, jinja2, strictyaml and
# questionary are imported where they are used (measured: `re` alone adds half of
# `python -c pass`, `datetime` a sixth).
import marshal
import os
import sys
import time

# ---------------------------------------------------------------------------- constants

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_STATE, EXIT_BUSY = 0, 1, 2, 3, 4
EXIT_BLOCKED = 2  # what the agents' pre-hooks take as "do not do this"
EXIT_REMOTE = 5  # the shared remote could not be reached or refused the write
EXIT_INTERNAL, EXIT_CANCELLED = 70, 130

__version__ = "0.9.0"  # pyproject.toml's version (tests/test_packaging.py holds them equal)
HERE = os.path.dirname(os.path.realpath(__file__))


def data_folder(name):
    """A folder of templates: beside the module in a clone; where pip, pipx or uv installed it
    (pyproject.toml's data-files), under the share/ folder of the environment the module is
    in: found from the module's own place (PREFIX/lib/pythonX.Y/site-packages), since the
    pack's launcher runs Python without `site`, which is what sets sys.prefix in a venv."""
    beside = os.path.join(HERE, name)
    if os.path.isdir(beside):
        return beside
    folder = HERE
    for _ in range(4):
        folder = os.path.dirname(folder)
        installed = os.path.join(folder, "share", "session-orchestrator", name)
        if os.path.isdir(installed):
            return installed
    return os.path.join(sys.prefix, "share", "session-orchestrator", name)


PROMPTS_DIR = data_folder("prompts")
WORKFLOWS_DIR = data_folder("workflows")
STATE_FOLDER = ".windsurf/orchestrator"  # the state, its lock and backup, the launcher
STATE_RELATIVE_PATH = STATE_FOLDER + "/session_state.yaml"
# The pack's paths in a repository, spelled here only: the hooks judge them, install writes them.
SHIM_PATH = ".windsurf/bin/orchestrator"  # committed; every agent's hooks and commands call it
LAUNCHER_PATH = STATE_FOLDER + "/launcher"  # per machine, git-ignored
WINDSURF_HOOKS_PATH = ".windsurf/hooks.json"
CLAUDE_SETTINGS_PATH = ".claude/settings.json"
CURSOR_HOOKS_PATH = ".cursor/hooks.json"
DEVIN_HOOKS_PATH = ".devin/hooks.v1.json"
GIT_HOOKS_FOLDER = ".git/hooks"  # in the main checkout: the commit guard, and any hook git runs
AGENTS = ("windsurf", "claude", "cursor", "devin", "agents-md")  # what `install --agent` serves
STATE_ENV = "ORCHESTRATOR_STATE"
LOCK_TIMEOUT_ENV = "ORCHESTRATOR_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_SECONDS = 10.0
CACHE_FORMAT = 3  # bump when the cached shape of the state changes

TOP_LEVEL_KEYS = ("active_sessions", "locks", "completed_sessions", "global_notes", "directive_log")
SESSION_STATUSES = ("discovery", "in_progress", "blocked", "completed")
DEFAULT_STATUS = "in_progress"
DEFAULT_LOCK_DURATION = "2h"
MAX_LOCK_SECONDS = 30 * 24 * 3600
COMPLETED_KEPT = 10
AUDIT_THRESHOLD = 3  # overrides of one rule after which `audit` proposes a new default
EXPIRING_SOON_SECONDS = 15 * 60
SESSION_ID_PATTERN = r"[a-z0-9]+(?:-[a-z0-9]+)*"  # kebab-case; the schema's Regex too
MAX_ID_CHARS = 64
MAX_AREA_CHARS = 200
MAX_GLOBSTARS = 8  # `**` segments in one scope
MAX_FLOW_NESTING = 64  # [ and { nested in a state file; the schema needs two
MAX_CONVERSATION_CHARS = 200  # a hook event's conversation id, as the state may store it
UNUSABLE_CONVERSATION = ""  # stands for one that is too long or holds control characters
MAX_PATH_CHARS = 32767  # the longest path Windows allows; Linux allows deeper ones through cd
MAX_TEXT_CHARS = 2000
# Presence (what the hooks saw of each session): silent longer than IDLE_AFTER is idle, longer
# than STALE_AFTER stale; the state is told at most once a FOLD_SECONDS per session.
IDLE_AFTER_ENV, STALE_AFTER_ENV = "ORCHESTRATOR_IDLE_AFTER", "ORCHESTRATOR_STALE_AFTER"
DEFAULT_IDLE_AFTER, DEFAULT_STALE_AFTER = "10m", "60m"
PRESENCE_FOLD_SECONDS = 60
NOTES_SHOWN = 10  # the newest notes a report shows (global, and each session's); --all-notes



# The fields of each list's entries, in the order they are written: (name, what it holds,
# whether a file must have it). The strictyaml schema, the emitter and the reader all follow
# this one table (global_notes holds plain text).
#   holds: "id" a session id, "text", "status" one of SESSION_STATUSES, "texts" a list of
#          text, "moment" a timestamp, "flag" true or false, "count" a whole number
#   REQUIRED; DEFAULTED may be left out, the reader fills it in ([], "", or for last_updated
#   started_at); OMISSIBLE may be left out and stays out (fields the seed does not have)
REQUIRED, DEFAULTED, OMISSIBLE = "required", "defaulted", "omissible"
ENTRY_FIELDS = {
    "active_sessions": (
        ("id", "id", REQUIRED), ("focus", "text", REQUIRED), ("status", "status", REQUIRED),
        ("touched_areas", "texts", DEFAULTED), ("risks", "texts", DEFAULTED),
        ("notes", "texts", DEFAULTED), ("started_at", "moment", REQUIRED),
        ("last_updated", "moment", DEFAULTED), ("worktree", "text", OMISSIBLE),
        ("branch", "text", OMISSIBLE), ("trajectories", "texts", OMISSIBLE),
        ("touched_files", "texts", OMISSIBLE), ("machine", "text", OMISSIBLE),
        ("last_seen", "moment", OMISSIBLE), ("waiting_since", "moment", OMISSIBLE),
        ("ended_at", "moment", OMISSIBLE), ("inbox", "texts", OMISSIBLE),
        ("inbox_read", "texts", OMISSIBLE), ("notes_seen", "count", OMISSIBLE)),
    "locks": (
        ("area", "text", REQUIRED), ("owner", "id", REQUIRED), ("scope", "texts", REQUIRED),
        ("reason", "text", REQUIRED), ("expected_instability", "flag", REQUIRED),
        ("allow_external_fixes", "flag", REQUIRED), ("acquired_at", "moment", OMISSIBLE),
        ("expires_at", "moment", REQUIRED), ("taken_over_from", "texts", OMISSIBLE),
        ("left_uncommitted", "texts", OMISSIBLE)),
    "completed_sessions": (
        ("id", "id", REQUIRED), ("focus", "text", DEFAULTED),
        ("completed_at", "moment", REQUIRED), ("outcome", "text", DEFAULTED),
        ("files_changed", "texts", DEFAULTED)),
    "directive_log": (
        ("session", "id", REQUIRED), ("directive", "text", REQUIRED),
        ("reason", "text", REQUIRED), ("timestamp", "moment", REQUIRED),
        ("rule_overridden", "text", REQUIRED)),
}
# What names an entry across a write (see changed_entries); other lists' entries are only added.
ENTRY_IDENTITY = {"active_sessions": ("id",), "locks": ("owner", "area")}
EDITED_PREFIX = "edited_"  # the changed fields of edited entries, in the document a write checks


_regexes: dict = {}


def regex(source):
    """`source` compiled, and `re` imported, on first use only."""
    compiled = _regexes.get(source)
    if compiled is None:
        import re
        compiled = _regexes[source] = re.compile(source)
    return compiled


def unique_in_order(values):
    return list(dict.fromkeys(values))


# ---------------------------------------------------------------------------- errors

class OrchestratorError(Exception):
    """A failure the user can act on: one line of text, and `details` for --json. Its kind
    (a subclass below) says what went wrong; EXIT_CODES maps kinds to exit codes."""

    def __init__(self, message, details=None):
        super().__init__(message)
        self.message = message
        self.details = details or {}

    @property
    def exit_code(self):
        return next(code for kind, code in EXIT_CODES if isinstance(self, kind))


class UsageError(OrchestratorError):
    """The command line or a value on it is wrong; or a question was answered wrongly."""


class Refused(OrchestratorError):
    """The policy says no: a conflicting lock, a lock held by another session."""


class StateError(OrchestratorError):
    """The state cannot be read or written safely: invalid, damaged, lost, or a file beside
    it that is not a plain file."""


class Busy(OrchestratorError):
    """Another process held the state's lock for longer than this one may wait."""


class InternalError(OrchestratorError):
    """A bug: what the tool wrote would break its own schema, or an unexpected exception."""


class RemoteUnavailable(OrchestratorError):
    """The repository's git remote, which holds the shared state, could not be reached or
    refused the write: nothing was written anywhere."""


class RemoteMoved(OrchestratorError):
    """The shared state's ref moved between fetching it and pushing the change: the command
    is applied again to the new state (see Context.run)."""


class Cancelled(OrchestratorError):
    """The person at the terminal pressed Ctrl-C or closed the input."""


EXIT_CODES = ((Refused, EXIT_REFUSED), (StateError, EXIT_STATE), (Busy, EXIT_BUSY),
              (RemoteUnavailable, EXIT_REMOTE), (RemoteMoved, EXIT_BUSY),
              (InternalError, EXIT_INTERNAL), (Cancelled, EXIT_CANCELLED),
              (OrchestratorError, EXIT_USAGE))


def as_failure(exception):
    """What the user is told about `exception`, as an OrchestratorError; None for one that must
    propagate (a bug when ORCHESTRATOR_DEBUG asks for its traceback). The one place, with
    EXIT_CODES, where exceptions become exit codes."""
    if isinstance(exception, OrchestratorError):
        return exception
    if isinstance(exception, (KeyboardInterrupt, EOFError)):
        return Cancelled("cancelled, nothing written")
    if isinstance(exception, ImportError):
        return UsageError(f"{exception.name} is not installed for {sys.executable}: install "
                          "the tool with its dependencies (`pipx install` of the project, or "
                          "`make install` in a clone and its .venv/bin/python)")
    if isinstance(exception, Exception) and not os.environ.get("ORCHESTRATOR_DEBUG"):
        return InternalError(f"internal error ({type(exception).__name__}: {exception}); please "
                             "report it with the command you ran")
    return None


# ---------------------------------------------------------------------------- text

# What may be typed and printed. Every text from the state, a hook event or git is printed
# through quote_data or as_label, and every text typed in is checked for the same
# characters (has_control_characters).

KEBAB_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")  # a session id's
LABEL_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                             "_.-/*?[]!^@+=")  # an area or path printed bare (as_label)
SHELL_OPERATOR_CHARACTERS = ";|&$`<>"  # in an area: a pasted command line, not a label


def is_invisible(ch):
    """A character that is no text to show: see has_control_characters."""
    if ch < " ":
        return ch not in "\n\t"
    if ch < "\x7f":
        return False
    import unicodedata
    return ch <= "\x9f" or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") or \
        "\U000e0000" <= ch <= "\U000e0fff"


def has_control_characters(value):
    """Does `value` hold a character that changes how text shows or reads rather than being
    text: C0 and C1 controls (tab and newline aside), and outside ASCII every format
    character (Unicode category Cf: bidi overrides and isolates, zero-width characters,
    U+061C, U+2060, U+180E, U+FFF9 and the tag characters), line and paragraph separators and
    lone surrogates. A plain loop over ASCII: the session-start check decides without `re`."""
    if value.isascii():
        return any(ch < " " and ch not in "\n\t" or ch == "\x7f" for ch in value)
    return any(is_invisible(ch) for ch in value)


# Escape sequences, 7-bit (ESC [ ...) and 8-bit (CSI 0x9b, OSC 0x9d, DCS 0x90 ...) alike.
ESCAPE_SEQUENCE = (r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
                   r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
                   r"|\x1b[@-Z\\-_]")


def clean_text(value):
    """Terminal-safe text: escape sequences and invisible or control characters removed (see
    has_control_characters); newlines and tabs kept."""
    text = str(value)
    if not has_control_characters(text):
        return text  # the usual case, decided without importing `re` (the hook's budget)
    text = regex(ESCAPE_SEQUENCE).sub("", text)
    return "".join(ch for ch in text if not is_invisible(ch))


def quote_data(value, limit=MAX_TEXT_CHARS):
    """The one way text from the state, from hook events and from git is printed, to people
    and to agents: cleaned (clean_text), on one quoted line (newlines as \\n, quotes and
    backslashes escaped), at most `limit` characters. Data to read, never a line to obey."""
    text = clean_text(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\n", "\\n").replace("\t", " ") + '"'


def as_label(value, limit=300):
    """An area or path as it appears in a sentence: bare when it is plainly a label
    (`backend`, `src/api/*.py`), so the seed's sentences read as written; quoted as data
    (quote_data) as soon as it holds anything else, so that text like
    `db. SYSTEM NOTICE: ...` can never read as part of the sentence."""
    text = clean_text(value)
    if text and len(text) <= limit and set(text) <= LABEL_CHARACTERS:
        return text
    return quote_data(text, limit)


def one_line(value):
    return " ".join(clean_text(value).split())


COMMAND_AS_RUN = None  # how this process was started, set by run() for its own hints


def cli_name():
    """How hints spell the tool: the pack's launcher says (ORCHESTRATOR_COMMAND), else as this
    process was run (the installed `orchestrator`, or an interpreter and this file)."""
    return os.environ.get("ORCHESTRATOR_COMMAND") or COMMAND_AS_RUN or "orchestrator.py"


# ---------------------------------------------------------------------------- schema

def import_strictyaml():
    """strictyaml, imported with an empty stand-in for dateutil.parser (a third of its import
    time) that loads the real module when strictyaml first parses a timestamp, so validating
    a note or a flag never pays for it. importlib's LazyLoader cannot do this: the import
    statement reads the module's __spec__, which loads a lazy module at once."""
    if "strictyaml" not in sys.modules and "dateutil.parser" not in sys.modules:
        import types
        try:
            import dateutil  # the small package; its parser is the costly part
        except ImportError:
            dateutil = None
        if dateutil is not None:
            stand_in = types.ModuleType("dateutil.parser")

            def load_real_parser(name):
                if sys.modules.get("dateutil.parser") is stand_in:
                    del sys.modules["dateutil.parser"]
                import importlib
                return getattr(importlib.import_module("dateutil.parser"), name)

            stand_in.__getattr__ = load_real_parser  # called only for names it lacks
            sys.modules["dateutil.parser"] = stand_in
            dateutil.parser = stand_in
    import strictyaml
    return strictyaml


def validator_for(holds):
    """The strictyaml validator of a field that holds `holds` (see ENTRY_FIELDS)."""
    sy = import_strictyaml()
    if holds == "id":
        return sy.Regex(SESSION_ID_PATTERN)
    if holds == "status":
        return sy.Enum(list(SESSION_STATUSES))
    if holds == "texts":
        return sy.EmptyList() | sy.Seq(sy.Str())
    return {"text": sy.Str, "moment": sy.Datetime, "flag": sy.Bool, "count": sy.Int}[holds]()


def entry_schema(key, any_field_may_be_missing=False):
    """The schema of one entry of the list `key`: the authority on what a valid entry is."""
    sy = import_strictyaml()
    Map, Optional, Str = sy.Map, sy.Optional, sy.Str
    if key == "global_notes":
        return Str()
    return Map({name if presence == REQUIRED and not any_field_may_be_missing else
                Optional(name): validator_for(holds)
                for name, holds, presence in ENTRY_FIELDS[key]})


def list_schema(entry):
    sy = import_strictyaml()
    return sy.EmptyList() | sy.Seq(entry)


def state_schema():
    """The schema of a whole state file: every list may be missing or empty."""
    sy = import_strictyaml()
    return sy.Map({sy.Optional(key): list_schema(entry_schema(key)) for key in TOP_LEVEL_KEYS})


def changes_schema(new_keys, edited_keys):
    """The schema of what one write adds (see `changed_entries`): whole new entries under their
    list's name, checked like any entry; the changed fields of an edited entry under
    EDITED_PREFIX + the list's name, each checked by its own field's validator."""
    sy = import_strictyaml()
    schema = {sy.Optional(key): list_schema(entry_schema(key)) for key in new_keys}
    for key in edited_keys:
        entry = entry_schema(key, any_field_may_be_missing=True)
        schema[sy.Optional(EDITED_PREFIX + key)] = list_schema(entry)
    return sy.Map(schema)


def longest_text(value):
    """The length of the longest string anywhere in a JSON-shaped value."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return max((longest_text(v) for v in value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return max((longest_text(v) for v in value), default=0)
    return 0


def empty_state():
    return {key: [] for key in TOP_LEVEL_KEYS}


def is_blank_yaml(text):
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


# Characters YAML does not allow in a file at all (strictyaml crashes on some of them).
YAML_FORBIDDEN = "[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
ASCII_FORBIDDEN = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"  # the same, for text that is all ASCII


NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
ASCII_ALLOWED = bytes(b for b in range(128) if not 0 <= b <= 8 and b not in (11, 12)
                      and not 14 <= b <= 31 and b != 127)


def check_yaml_text(text, label):
    """Refuse, before strictyaml sees it, what it would crash on or spend seconds on."""
    # Compiling the full Unicode class costs milliseconds; ASCII text needs only the small one,
    # and only once bytes.translate (C speed) has found a byte outside the allowed ones.
    ascii_text = text.isascii()
    if not ascii_text or text.encode("ascii").translate(None, ASCII_ALLOWED):
        forbidden = regex(ASCII_FORBIDDEN if ascii_text else YAML_FORBIDDEN).search(text)
        if forbidden:
            line = text.count("\n", 0, forbidden.start()) + 1
            raise StateError(f"{label} is not a valid state at line {line}: it holds the "
                             f"control character U+{ord(forbidden.group()):04X}")
    if text.count("[") + text.count("{") > MAX_FLOW_NESTING:
        depth = deepest = 0
        for bracket in text.encode("utf-8", "surrogatepass").translate(None, NOT_BRACKETS):
            depth = max(depth + (1 if bracket in b"[{" else -1), 0)
            deepest = max(deepest, depth)
        if deepest > MAX_FLOW_NESTING:  # strictyaml would spend seconds before giving up
            raise StateError(f"{label} is not a valid state: it nests too deeply (the "
                             "state holds lists of entries, nothing deeper)")


def load_yaml(text, schema, label, checked=False):
    """Parse and validate YAML text with strictyaml; its plain data, or a one-line error.
    `checked`: check_yaml_text has passed this text, or the text it was cut from, already."""
    if not checked:
        check_yaml_text(text, label)
    strictyaml = import_strictyaml()
    try:
        return strictyaml.dirty_load(text, schema, label=label, allow_flow_style=True).data
    except strictyaml.YAMLError as error:
        raise schema_error(label, error) from None
    except RecursionError:
        raise StateError(f"{label} is not a valid state: it nests too deeply (the state "
                         "holds lists of entries, nothing deeper)") from None
    except (ValueError, OverflowError) as error:  # e.g. a UTC offset of 24 hours or more
        raise StateError(f"{label} is not a valid state: {one_line(error)}") from None
    except Exception as error:  # noqa: BLE001
        # strictyaml's own crash on some malformed input (a repeated key with a comment, a
        # comment between empty entries): still a file to fix, not a bug of this tool
        raise StateError(f"{label} is not a valid state: strictyaml cannot read it "
                         f"({type(error).__name__}); look for a repeated key or a "
                         "misplaced line") from None


class ValidationDeferred(StateError):
    """Validating the state would outlast the caller's deadline (the hook, `check`)."""


# The schema's own version, for entries validated one by one and cached across versions of
# the module: change it whenever ENTRY_FIELDS, a validator or normalise_entry means
# something new, so that no entry validated under the old meaning is trusted.
SCHEMA_VERSION = "2"  # 2: a session records its machine
_entries_key: list = []


def entries_key():
    """What an entry validated one by one is cached under: SCHEMA_VERSION, and the installed
    strictyaml and dateutil (found, not imported): an upgrade of either may change what an
    entry means, an upgrade of this module alone does not."""
    if not _entries_key:
        import importlib.util
        parts = [SCHEMA_VERSION]
        for name in ("strictyaml", "dateutil"):
            try:
                info = os.stat(importlib.util.find_spec(name).origin)
                parts.append(f"{name}:{info.st_size}:{info.st_mtime_ns}")
            except (ImportError, ValueError, TypeError, AttributeError, OSError):
                parts.append(f"{name}:unknown")
        _entries_key.append(" ".join(parts))
    return _entries_key[0]


VALIDATION_BATCH = 40  # entries strictyaml reads per document: its cost grows faster past ~100
WHOLE_PARSE_SECONDS_PER_LINE = 0.0003  # strictyaml on a whole document, measured (a deadline)


def validate_state_text(text, label, known=None, deadline=None):
    """Validate the state's text with strictyaml: (plain state, warnings, {(list, entry
    text): (entry, warnings)} for every entry validated one by one).

    Where the text splits cleanly (split_state_text) each entry is validated on its own
    against the same schema, a batch at a time, and an entry whose exact text is in `known`
    is not validated again. Anything else, and any failure, is validated as one document, so
    that a verdict, its message and its line number are always strictyaml's own. Past
    `deadline` (a time.monotonic() moment) it raises ValidationDeferred; entries validated
    by then are in the exception's `details["entries"]`."""
    if is_blank_yaml(text):
        return empty_state(), [], {}
    check_yaml_text(text, label)
    pieces = split_state_text(text)
    if pieces is not None:
        try:
            validated = parse_by_entries(pieces, label, known or {}, deadline)
        except ValidationDeferred:
            raise
        except OrchestratorError:
            pass  # strictyaml says why, and where, from the whole document below
        else:
            refuse_duplicate_sessions(validated[0], text, label)
            return validated
    deferred = ValidationDeferred("the state needs a full validation, longer than the time this "
                                  "command has; the next command validates it",
                                  {"entries": {}})
    if deadline is not None and (text.count("\n") * WHOLE_PARSE_SECONDS_PER_LINE
                                 > deadline - time.monotonic()):
        raise deferred  # judged by its length: not worth starting
    try:
        with interrupted_at(deadline):  # and a hard limit, for when the estimate is wrong
            state, warnings = normalise_state(
                load_yaml(text, state_schema(), label, checked=True), label)
    except DeadlineReached:
        raise deferred from None
    refuse_duplicate_sessions(state, text, label)
    return state, warnings, {}


def refuse_duplicate_sessions(state, text, label):
    """Two active sessions with one id (a hand edit) are no valid state: every command that
    names the id would act on both. The error names the lines of both."""
    seen = set()
    for session in state["active_sessions"]:
        if session["id"] in seen:
            block, lines = False, []
            for number, line in enumerate(text.splitlines(), 1):
                if line[:1] not in (" ", "-", "#", ""):
                    block = line.startswith("active_sessions:")
                elif block and line.strip().lstrip("- ").strip() in (
                        f"id: {session['id']}", f"id: '{session['id']}'",
                        f'id: "{session["id"]}"'):
                    lines.append(number)
            where = " and ".join(f"line {n}" for n in lines[:2]) or "two entries"
            raise StateError(f"{label}: two active sessions have the id {session['id']} "
                             f"({where}); give one of them another id or remove it")
        seen.add(session["id"])


class DeadlineReached(BaseException):
    """Raised by the timer of interrupted_at; a BaseException, so that no `except Exception`
    on the way (strictyaml's crashes are caught as invalid files) can take it for a verdict."""


class interrupted_at:
    """Raise DeadlineReached in the main thread at `deadline` (time.monotonic()), where the
    platform has interval timers; otherwise, and without a deadline, nothing happens. A timer
    armed outside (a test runner's, a caller's) is put back with the time it had left."""

    def __init__(self, deadline):
        self.deadline = deadline
        self.previous = None

    def __enter__(self):
        import threading
        if (self.deadline is None or os.name == "nt"
                or threading.current_thread() is not threading.main_thread()):
            return self
        import signal

        def reached(signum, frame):
            raise DeadlineReached
        self.previous = signal.signal(signal.SIGALRM, reached)
        self.started = time.monotonic()
        self.outer = signal.setitimer(signal.ITIMER_REAL,
                                      max(self.deadline - self.started, 0.001))
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            import signal
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
            left, interval = self.outer
            if left > 0:
                elapsed = time.monotonic() - self.started
                signal.setitimer(signal.ITIMER_REAL, max(left - elapsed, 0.001), interval)
        return False


def parse_state_text(text, label):
    """The state in `text`, validated (validate_state_text, no entry known yet): (state,
    warnings)."""
    state, warnings, _ = validate_state_text(text, label)
    return state, warnings


def parse_by_entries(pieces, label, known, deadline):
    """The state from split_state_text's pieces: entries in `known` as they are, the others
    validated VALIDATION_BATCH at a time. An OrchestratorError means: ask the whole document."""
    entries = dict(known)
    deferred = ValidationDeferred("the state holds more new entries than can be validated in "
                                  "the time this command has; the next command validates the "
                                  "rest", {"entries": entries})
    try:
        with interrupted_at(deadline):  # a batch strictyaml is slow on ends at the deadline too
            validate_batches(pieces, label, entries, deadline, deferred)
    except DeadlineReached:
        raise deferred from None
    state, warnings, used, placed = empty_state(), set(), {}, set()
    for key, texts in pieces.items():
        for text in texts:
            entry, found = used[(key, text)] = entries[(key, text)]
            if id(entry) in placed:
                # Two entries of the same text must never be one object a write changes
                # twice: the second is a copy that shares nothing (marshal version 2 writes
                # no references). Copying only these, not the whole state, saves 12 ms at
                # 1,000 entries per list.
                entry = marshal.loads(marshal.dumps(entry, 2))
            placed.add(id(entry))
            state[key].append(entry)
            warnings.update(found)
    return state, sorted(warnings), used


def validate_batches(pieces, label, entries, deadline, deferred):
    """Validate the entries not in `entries` yet, VALIDATION_BATCH at a time, into it."""
    for key, texts in pieces.items():
        todo = unique_in_order(t for t in texts if (key, t) not in entries)
        for start in range(0, len(todo), VALIDATION_BATCH):
            if deadline is not None and time.monotonic() > deadline:
                raise deferred
            batch = todo[start:start + VALIDATION_BATCH]
            schema = state_schema_of(key)
            data = load_yaml(f"{key}:\n" + "\n".join(batch) + "\n", schema, label,
                             checked=True).get(key)
            if not isinstance(data, list) or len(data) != len(batch):
                raise StateError("an entry did not read as one entry")
            for text, item in zip(batch, data):
                found = []
                entries[(key, text)] = (normalise_entry(key, item, label, found), found)


def state_schema_of(key):
    """The whole-state schema narrowed to one list: what each batch of its entries meets."""
    return import_strictyaml().Map({key: list_schema(entry_schema(key))})


# What the splitter leaves to the whole-document parse (see split_state_text). Each pattern
# starts with a literal, which `re` scans for at C speed: a state of 5,000 entries splits in
# a few milliseconds. (A leading `[|>]` is no literal: it tried every `+` of every timestamp.)
KEEP_CHOMPING = [r"\|[1-9]?\+[1-9]?[ ]*(?:#[^\n]*)?\r?(?:\n|\Z)",  # `|+` keeps what follows
                 r">[1-9]?\+[1-9]?[ ]*(?:#[^\n]*)?\r?(?:\n|\Z)"]
UNCLEAN_LINE = r"\n[ ]*(?:\t|-\t|-[ ]*\r?(?:\n|\Z))"  # tab indentation; `-` alone or + tab
TOP_LEVEL_LINE = r"\n(?![ \t#\r\n]|-[ ])[^\n]+"  # a line at column 0 that is no entry


def split_state_text(text):
    """The state's text cut where its layout makes the cut certain: {list: [the text of each
    entry, as written]} (`name: []` gives an empty list), or None when it does not split
    cleanly and must be validated as one document. Clean means: top-level keys of the
    schema, each once, at column 0, written `name:` (followed by entries) or `name: []`,
    with an optional comment; entries that start with `- ` at one indentation, every other
    line of an entry indented further; blank and comment lines anywhere; no tab
    indentation, no entry empty on its line (strictyaml's comment handling trips there), no
    keep-chomping block scalar (`|+`: it keeps the blank lines that follow it), no line
    breaks other than LF and CRLF, and no byte order mark past the start. An entry's text
    runs up to the next entry or key, with the blank and comment lines on the way."""
    text = "\n" + (text[1:] if text.startswith("\ufeff") else text)  # every line after a \n
    if not text.endswith("\n") and ("|" in text or ">" in text):
        return None  # a block scalar at the very end reads differently once a \n follows it
    if ("\ufeff" in text or "\x85" in text or "\u2028" in text or "\u2029" in text
            or ("\r" in text and "\r" in text.replace("\r\n", ""))
            or regex(UNCLEAN_LINE).search(text)
            or any(regex(keep).search(text) for keep in KEEP_CHOMPING)):
        return None
    keys = list(regex(TOP_LEVEL_LINE).finditer(text))
    if not keys or regex(r"\n[ ]*[^ #\r\n]").search(text, 0, keys[0].start()):
        return None  # no key, or content before the first one
    pieces = {}
    for number, key_line in enumerate(keys):
        name, empty = top_level_key(key_line.group()[1:].rstrip("\r"))
        if name not in TOP_LEVEL_KEYS or name in pieces:
            return None
        block_end = keys[number + 1].start() if number + 1 < len(keys) else len(text)
        block = text[key_line.end():block_end]  # starts with the \n that ends the key line
        first = regex(r"\n([ ]*)[^ #\r\n]").search(block)
        if empty or first is None:
            if first is not None or not empty:
                return None  # content under `name: []`, or `name:` with no entry
            pieces[name] = []
            continue
        indent = len(first.group(1))
        if not block.startswith("- ", first.end(1)):
            return None
        # A line less indented than the entries, or at their indentation but no entry:
        shallow = r"[ ]{0,%d}[^ #\r\n]|" % (indent - 1) if indent else ""
        if regex(r"\n(?:%s[ ]{%d}(?:[^ #\r\n-]|-[^ ]))" % (shallow, indent)).search(block):
            return None
        starts = [m.start() + 1 for m in regex(r"\n[ ]{%d}- " % indent).finditer(block)]
        ends = [start - 1 for start in starts[1:]] + [len(block)]
        pieces[name] = [block[start:end].removesuffix("\n") for start, end in zip(starts, ends)]
    return pieces


def top_level_key(line):
    """(name, written `name: []`) for a line `name:` or `name: []`, either with a comment
    after it; (None, False) for anything else."""
    name, colon, rest = line.partition(":")
    if not colon or not name or not all(ch.islower() or ch == "_" for ch in name):
        return None, False
    if rest and rest[0] != " ":
        return None, False
    value, _, comment = rest.strip(" ").partition(" #")
    value = value.rstrip(" ")
    if value.startswith("#"):  # `name: # comment`
        value = ""
    if value in ("", "[]"):
        return name, value == "[]"
    return None, False


def shorter_path(path):
    """`path` relative to the current folder when that is shorter, as a person would type it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive
        return path
    return relative if len(relative) < len(path) else path


def schema_error(label, error):
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    start = getattr(error, "context_mark", None)
    if mark is not None and start is not None and start.line != mark.line:
        where += f", in what begins at line {start.line + 1}"  # e.g. a `[` never closed
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    what = f"{problem} ({context})" if context else problem
    # strictyaml's sentence quotes the file's own text (a key, a value): data, never ours
    return StateError(f"{label} is not a valid state{where}: strictyaml says "
                      f"{quote_data(' '.join(what.split()), 300)}")


def normalise_state(data, label):
    """Fill the defaults strictyaml leaves out; timestamps to UTC ISO 8601 strings."""
    warnings = []
    state = {key: [normalise_entry(key, item, label, warnings) for item in data.get(key) or []]
             for key in TOP_LEVEL_KEYS}
    return state, sorted(set(warnings))


def normalise_entry(key, item, label, warnings, complete=True):
    """One entry as the tool holds it: timestamps as UTC ISO 8601 strings and, when `complete`,
    the defaults filled for fields a file may leave out."""
    refuse_surrogates(item, key, label)
    if key == "global_notes":
        return item
    entry = {}
    for field, holds, presence in ENTRY_FIELDS[key]:
        value = item.get(field)
        if holds == "moment" and value is not None:
            value, naive = timestamp_to_utc(value, label)
            if naive:
                warnings.append(f"{key} {field} {item[field]} has no UTC offset; read as UTC")
        if value is None and (presence == OMISSIBLE or not complete):
            continue
        if value is None:  # DEFAULTED (strictyaml has refused a missing REQUIRED field)
            value = default_for(holds, entry)
        entry[field] = value
    return entry


def refuse_surrogates(item, key, label):
    """An escaped lone surrogate ("\\ud800") is valid YAML but no text: it cannot be printed."""
    texts = [item] if isinstance(item, str) else [
        v for value in item.values() for v in (value if isinstance(value, list) else [value])
        if isinstance(v, str)]
    for text in texts:
        if any("\ud800" <= ch <= "\udfff" for ch in text):
            raise StateError(f"{label} is not a valid state: {key} holds an escaped lone "
                             "surrogate (\\ud800-\\udfff), which is not text")


def default_for(holds, entry):
    if holds == "texts":
        return []
    if holds == "moment":  # last_updated, the one defaulted moment: the session's start
        return entry["started_at"]
    return ""


def iso(moment):
    """A datetime as a moment (naive ones are not passed here: they are read as UTC first)."""
    from datetime import timezone
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def timestamp_to_utc(value, label):
    from datetime import timezone
    naive = value.tzinfo is None
    try:
        value = value.replace(tzinfo=timezone.utc) if naive else value.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise StateError(f"{label} holds a timestamp out of range (a UTC offset must be "
                         "under 24 hours; years 1 to 9999)") from None
    return iso(value), naive


# ---------------------------------------------------------------------------- emitter

# YAML's printable set minus what ruamel treats as a line break (NEL, LS, PS) and the BOM.
YAML_UNSAFE = ("[^\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
               "\U00010000-\U0010ffff]")
PLAIN_SAFE = r"[A-Za-z0-9_][A-Za-z0-9_./+:-]*"
NEEDS_ESCAPE = r'["\\\n\t]|' + YAML_UNSAFE  # quote, backslash, newline, tab, unprintable
ASCII_NEEDS_ESCAPE = r'["\\\x00-\x1f\x7f]'  # the same for ASCII text, far cheaper to compile
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t"}


def yaml_string(text):
    """A scalar strictyaml reads back as exactly `text`."""
    if regex(PLAIN_SAFE).fullmatch(text) and not text.endswith(":"):
        return text
    needs_escape = regex(ASCII_NEEDS_ESCAPE if text.isascii() else NEEDS_ESCAPE)
    return '"' + needs_escape.sub(lambda m: _ESCAPES.get(m.group()) or
                                           escape_codepoint(m.group()), text) + '"'


def escape_codepoint(ch):
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def yaml_scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return yaml_string(value)


def emit_state(state, header=True):
    """Write a state in the fixed schema's layout; strictyaml loads it back unchanged."""
    lines = ["# Session Orchestrator shared state. Change it through orchestrator.py;",
             "# hand edits are validated by the next command that reads it."] if header else []
    for key in TOP_LEVEL_KEYS:
        lines.extend(emit_list(key, key, state.get(key) or []))
    return "\n".join(lines) + "\n"


def emit_list(name, key, items):
    """The lines of one top-level list called `name` holding entries of the list `key`."""
    if not items:
        return [f"{name}: []"]
    lines = [f"{name}:"]
    for item in items:
        if key == "global_notes":
            lines.append(f"  - {yaml_string(item)}")
            continue
        prefix = "  - "
        for field, _, _ in ENTRY_FIELDS[key]:
            if field not in item:
                continue
            value = item[field]
            if isinstance(value, list):
                if not value:
                    lines.append(f"{prefix}{field}: []")
                else:
                    lines.append(f"{prefix}{field}:")
                    lines.extend(f"      - {yaml_string(v)}" for v in value)
            else:
                lines.append(f"{prefix}{field}: {yaml_scalar(value)}")
            prefix = "    "
    return lines


def changed_entries(before, after):
    """What a write adds, as (new, edited), each {list: [entries]}: whole entries `before` does
    not hold, and of an entry it edits (the one entry of its identity in `before`, no field
    dropped) only the fields whose values changed. The rest was validated when it was read."""
    new, edited = {}, {}
    for key in TOP_LEVEL_KEYS:
        known = {repr(item) for item in before[key]}
        added = [item for item in after[key] if repr(item) not in known]
        if not added:
            continue
        originals = entries_by_identity(key, before[key])
        for item in added:
            original = originals.get(entry_identity(key, item))
            if original is None or any(field not in item for field in original):
                new.setdefault(key, []).append(item)
                continue
            # repr, not ==: False == 0 and [True] == [1], yet only one of each is valid.
            changed = {field: value for field, value in item.items()
                       if field not in original or repr(original[field]) != repr(value)}
            if changed:
                edited.setdefault(key, []).append(changed)
    return new, edited


def entry_label(key, item):
    """How a message names an entry: a session by its id, a lock by owner and area."""
    if key == "locks":
        return f"{item.get('owner')}'s lock on {as_label(item.get('area', ''))}"
    return f"session {item.get('id')}"


def entry_identity(key, item):
    fields = ENTRY_IDENTITY.get(key)
    return tuple(item.get(field) for field in fields) if fields else None


def entries_by_identity(key, entries):
    """{identity: entry} for the identities only one entry has (a hand edit may repeat one)."""
    if key not in ENTRY_IDENTITY:
        return {}
    found = {}
    for item in entries:
        identity = entry_identity(key, item)
        found[identity] = None if identity in found else item
    return found


def validate_changes(before, after):
    """Run strictyaml over what this write adds, and prove the emitter round-trips it. Only
    what changed is parsed: strictyaml takes about 0.2 ms a line, and re-reading a whole
    session for one new timestamp was most of what a write cost beyond the import."""
    new, edited = changed_entries(before, after)
    if not new and not edited:
        return
    sections = ([(key, key, items) for key, items in new.items()] +
                [(EDITED_PREFIX + key, key, items) for key, items in edited.items()])
    text = "\n".join(line for section in sections for line in emit_list(*section)) + "\n"
    try:
        data = load_yaml(text, changes_schema(new, edited), "the new entries")
    except OrchestratorError as error:
        raise InternalError(f"internal error: what this write adds breaks the schema "
                            f"({error.message}); nothing was written, please report this") from None
    warnings = []
    reloaded = {name: [normalise_entry(key, item, "the new entries", warnings,
                                       complete=name == key) for item in data.get(name) or []]
                for name, key, _ in sections}
    if reloaded != {name: items for name, _, items in sections}:
        raise InternalError("internal error: the new entries do not read back unchanged; "
                            "nothing was written, please report this")


# ---------------------------------------------------------------------------- store

def find_checkout(start):
    """(this checkout's root, the main checkout's root); a worktree shares the main one's state.
    Outside any repository, `start` is both."""
    found = enclosing_checkout(start)
    if found is None:
        start = os.path.realpath(start)
        return start, start
    return found


def enclosing_checkout(start):
    """(checkout root, main checkout root) of the git checkout that holds `start`, or None."""
    return next(checkouts_holding(os.path.realpath(start)), None)


def checkouts_holding(path):
    """Every git checkout that holds `path`, innermost first (a submodule, or a repository
    nested in a folder, before the one around it), as (checkout folder, main checkout root).
    The path is walked as written, not through symlinks: git tracks a symlink as a link, and
    `current/x.go` is that path even when `current` points at `lib`."""
    folder = os.path.abspath(path)
    while True:
        dot_git = os.path.join(folder, ".git")
        if os.path.isdir(dot_git):
            yield folder, os.path.realpath(folder)
        elif os.path.isfile(dot_git):
            yield folder, os.path.realpath(main_checkout_of(folder))
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def repository_of_state(state_path):
    """The main checkout whose state this is, when it sits where install puts it, else None."""
    suffix = os.sep + os.path.join(*STATE_RELATIVE_PATH.split("/"))
    path = os.path.abspath(state_path)
    return os.path.realpath(path[:-len(suffix)]) if path.endswith(suffix) else None


def main_checkout_of(folder):
    """Follow a worktree's `.git` file to the common git dir, as `git rev-parse
    --git-common-dir` would, without paying for a git process."""
    try:
        git_dir = git_dir_of(folder)
        if git_dir is None:
            return folder
        common_file = os.path.join(git_dir, "commondir")
        if not os.path.isfile(common_file):
            return folder  # a submodule: its own checkout is its root
        common = os.path.realpath(os.path.join(git_dir, read_text(common_file).strip()))
        return os.path.dirname(common) if os.path.basename(common) == ".git" else folder
    except OSError:
        return folder


def git_dir_of(checkout):
    """The git directory of a checkout: `.git` itself, or where a worktree's `.git` file
    points (`gitdir: ...`); None when there is neither."""
    dot_git = os.path.join(checkout, ".git")
    if os.path.isdir(dot_git):
        return dot_git
    text = read_text(dot_git).strip()
    if not text.startswith("gitdir:"):
        return None
    return os.path.realpath(os.path.join(checkout, text[len("gitdir:"):].strip()))


def code_version():
    """Ties the cache to this module's code: a new version never trusts an old cache."""
    info = os.stat(__file__)
    return f"{CACHE_FORMAT}:{info.st_mtime_ns}:{info.st_size}"


def read_text(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


class NotRegularFile(OSError):
    """A path that must be a plain file is a symlink, a FIFO, a device or a folder."""


def open_regular(path, flags, mode=0o666):
    """os.open for a file beside the state: never through a symlink (O_NOFOLLOW), never
    blocking on a FIFO (O_NONBLOCK), and only a regular file (no device, no folder)."""
    if not hasattr(os, "O_NOFOLLOW") and os.path.islink(path):  # Windows
        raise NotRegularFile(f"{path} is a symbolic link")
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, mode)
    except OSError as error:
        if error.errno in (40, 62) or os.path.islink(path):  # ELOOP (Linux, macOS): a symlink
            raise NotRegularFile(f"{path} is a symbolic link") from None
        raise
    if not stat_is_regular(os.fstat(fd)):
        os.close(fd)
        raise NotRegularFile(f"{path} is not a regular file")
    return fd


def not_regular(path):
    return NotRegularFile(f"{path} is "
                          f"{'a symbolic link' if os.path.islink(path) else 'not a regular file'}")


PLAIN_FILES_HINT = "the state, its .bak and .lock must be plain files: check what put it there"


def stat_is_regular(info):
    import stat
    return stat.S_ISREG(info.st_mode)


def read_regular(path):
    """The bytes of a regular file, or None when there is none."""
    try:
        fd = open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def user_cache_folder():
    """Where the validated state is cached: the user's own cache folder, which a cloned
    repository cannot plant files in."""
    base = os.environ.get("XDG_CACHE_HOME") or (
        os.environ.get("LOCALAPPDATA") if os.name == "nt" else None) or \
        os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "session-orchestrator")


def run_in_own_group(argv, data=None, timeout=None, env=None, cwd=None):
    """subprocess.run's result for `argv`, run in a process group of its own: at the timeout
    the whole group is killed (git's transport children, `ssh` for one, would outlive git
    itself) and subprocess.TimeoutExpired is raised."""
    import signal
    import subprocess
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if data is not None else
                            subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except BaseException:  # the timeout, Ctrl-C: nothing of it may outlive the command
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def unused_name(path):
    """`path`, or `path.2`, `path.3`, ...: the first name nothing has (copies never collide)."""
    candidate, number = path, 1
    while os.path.lexists(candidate):
        number += 1
        candidate = f"{path}.{number}"
    return candidate


def last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no answer"


def read_text_or_none(path):
    try:
        return read_text(path).strip() or None
    except (OSError, ValueError):
        return None


def wait_to_retry(attempt):
    """Before applying a write again that another writer overtook: a random wait that grows
    with the attempts, so that writers who collided spread out."""
    import random
    time.sleep(random.uniform(0.01, 0.05 * 2 ** min(attempt, 4)))


def utc_stamp():
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


MACHINE_ENV = "ORCHESTRATOR_MACHINE"
MAX_MACHINE_CHARS = 100


def this_machine():
    """The name this machine records for its sessions (ORCHESTRATOR_MACHINE, checked like a
    flag, or the host's)."""
    named = os.environ.get(MACHINE_ENV)
    if named:
        if len(named) > MAX_MACHINE_CHARS or has_control_characters(named) or "\n" in named \
                or "\t" in named or named != named.strip():
            raise UsageError(f"{MACHINE_ENV} must be one line of printable text of at most "
                             f"{MAX_MACHINE_CHARS} characters, e.g. laptop; got "
                             f"{quote_data(named, 40)}")
        return named
    if hasattr(os, "uname"):
        return os.uname().nodename
    return os.environ.get("COMPUTERNAME", "this-machine")


class Store:
    """The state file and the files beside it: lock, last good copy; and its cache, kept in
    the user's cache folder under a name made from the state's real path."""

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        self.lock_path = self.path + ".lock"
        self.backup_path = self.path + ".bak"
        import binascii  # built in: no import cost worth measuring
        real = os.path.realpath(self.path)
        self.cache_path = os.path.join(
            user_cache_folder(), f"{binascii.crc32(real.encode('utf-8', 'surrogatepass')):08x}-"
                                 f"{len(real)}.cache")
        self.entries_path = self.cache_path[:-len(".cache")] + ".entries"
        # The last state this tool wrote, kept outside the repository: `rm -rf .windsurf` or
        # `git clean -X` removes the state and its .bak together, never this copy.
        self.kept_path = self.cache_path[:-len(".cache")] + ".last-state.yaml"
        self.warnings = []
        self.loaded_raw = None
        self.validated = None  # (bytes, state, warnings) this process validated last
        self.entries_read = {}  # the entries cache as read_entries found it
        self.refused = None  # (bytes, error) this process found invalid: not parsed twice
        self.deadline = None  # a time.monotonic() moment validation must not outlast
        self.sharing = None  # a SharedCopy when the state is shared through the git remote
        # Where install puts the state, the folders on its way inside the repository must be
        # real folders: a symlinked `.windsurf` would carry every write outside.
        root = repository_of_state(self.path)
        self.guarded_folders = [] if root is None else [
            os.path.join(os.path.dirname(self.path), *[".."] * depth)
            for depth in range(STATE_RELATIVE_PATH.count("/"))]

    def check_folders(self):
        for folder in self.guarded_folders:
            folder = os.path.normpath(folder)
            if os.path.islink(folder) or (os.path.lexists(folder) and not os.path.isdir(folder)):
                raise StateError(f"{folder} is a symbolic link or not a folder; the "
                                 "state's folders must be plain folders inside the "
                                 "repository: check what put it there")

    # -- reading
    def read_bytes(self):
        try:
            return read_regular(self.path)
        except NotRegularFile as error:
            raise StateError(f"{error}; {PLAIN_FILES_HINT}") from None
        except OSError as error:
            raise StateError(f"cannot read {self.path}: {error.strerror}") from None

    def load(self):
        """The validated state. strictyaml runs only when the file's bytes are new to us."""
        raw = self.loaded_raw = self.read_bytes()
        if raw is None:
            self.refuse_lost_data("does not exist")
            return empty_state()
        if self.refused and self.refused[0] == raw:
            raise type(self.refused[1])(self.refused[1].message)
        if self.validated and self.validated[0] == raw:
            state, self.warnings = self.validated[1], self.validated[2]
        else:
            cached = self.read_cache(raw)
            if cached:
                state, self.warnings = cached
            else:
                previous = self.previous_state()
                state = self.validate_bytes(raw)
                self.keep_lost_entries(previous, state)
                self.write_cache(raw, state)
            self.validated = (raw, state, self.warnings)
        if not any(state[key] for key in TOP_LEVEL_KEYS):
            self.refuse_lost_data("holds no entry at all")
        return state

    def is_validated(self):
        """Are the file's bytes ones this process, or the cache, holds validated? (Cheap: no
        parse.) A cache hit is kept for the load that follows."""
        try:
            raw = self.read_bytes()
        except OrchestratorError:
            return True  # load() reports it
        if raw is None or (self.validated and self.validated[0] == raw) or (
                self.refused and self.refused[0] == raw):
            return True
        cached = self.read_cache(raw)
        if cached:
            self.validated = (raw, cached[0], cached[1])
        return bool(cached)

    def holds_entries(self, path):
        """Does a copy the tool wrote hold any entry? (Its fixed layout writes each entry as a
        `  - ` line, so no parse is needed.)"""
        try:
            copy = read_regular(path)
        except OSError:
            return False
        return copy is not None and b"\n  - " in copy

    def backup_holds_entries(self):
        return self.holds_entries(self.backup_path)

    def refuse_lost_data(self, what):
        import shlex
        if self.backup_holds_entries():
            raise StateError(
                f"{self.path} {what}, but the tool's last copy holds entries: the shared state "
                f"was lost. Restore it with `cp {shlex.quote(self.backup_path)} "
                f"{shlex.quote(self.path)}`, or start afresh on purpose by deleting "
                f"{shlex.quote(self.backup_path)} too")
        # The whole folder gone (`rm -rf`, `git clean -X`) is damage; a state and .bak deleted
        # from a folder that is still there is someone starting afresh on purpose.
        if not os.path.isdir(os.path.dirname(self.path)) and self.holds_entries(self.kept_path):
            folder = shlex.quote(os.path.dirname(self.path))
            raise StateError(
                f"{self.path} {what}: the state's folder was removed with its .bak, "
                f"but the copy this tool keeps outside the repository holds entries. Restore it "
                f"with `mkdir -p {folder} && cp {shlex.quote(self.kept_path)} "
                f"{shlex.quote(self.path)}`, or start afresh on purpose by deleting "
                f"{shlex.quote(self.kept_path)}")

    def validate_bytes(self, raw):
        if not raw.strip():
            self.refuse_lost_data("is empty")
        try:
            backup = read_regular(self.backup_path)
        except OSError:
            backup = None
        if backup and raw.strip() and len(raw) < len(backup) and backup.startswith(raw):
            import shlex
            raise StateError(
                f"{self.path} is cut short: it is the start of the tool's last copy. Restore it "
                f"with `cp {shlex.quote(self.backup_path)} {shlex.quote(self.path)}`; if you cut "
                f"it on purpose, delete {shlex.quote(self.backup_path)} and run again")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise StateError(f"{self.path} is not UTF-8 text (byte {error.start}); "
                             f"{self.restore_hint()}") from None
        try:
            state, self.warnings, entries = validate_state_text(
                text, self.path, self.read_entries(), self.deadline)
        except ValidationDeferred as deferred:
            self.write_entries(deferred.details["entries"])  # what was done is kept
            raise
        except OrchestratorError as error:
            error.message = f"{error.message}; {self.restore_hint()}"
            self.refused = (raw, error)
            raise
        self.write_entries(entries)
        if not any(state[key] for key in TOP_LEVEL_KEYS):
            self.refuse_lost_data("holds no entry at all")
        return state

    def restore_hint(self):
        if os.path.exists(self.backup_path):
            import shlex
            path = shorter_path(self.path)  # the message names the state once already
            return (f"fix it by hand, or restore the last good copy: "
                    f"cp {shlex.quote(path + '.bak')} {shlex.quote(path)}")
        return f"fix it by hand (`{cli_name()} validate` shows what is wrong)"

    def previous_state(self):
        """The state this machine's tool last wrote or validated here (its cache, whatever
        bytes it was for), or None."""
        try:
            cached = marshal.loads(read_regular(self.cache_path) or b"")
            if isinstance(cached, dict) and cached.get("format") == code_version() \
                    and cached.get("path") == self.path:
                state = marshal.loads(cached["state"])
                return state if isinstance(state, dict) else None
        except (OSError, ValueError, EOFError, TypeError, KeyError):
            pass
        return None

    def keep_lost_entries(self, previous, state):
        """Sessions and locks the tool had that a write it did not make removed (an editor
        saving a stale buffer over a `lock`): kept in a file beside the state, and said, with
        the command that restores the tool's last copy."""
        if not previous:
            return
        lost = {key: [entry for entry in previous.get(key, []) if entry_identity(key, entry)
                      not in {entry_identity(key, e) for e in state[key]}]
                for key in ENTRY_IDENTITY}
        count = sum(map(len, lost.values()))
        if not count:
            return
        kept = unused_name(f"{self.path}.lost")
        try:
            atomic_write(kept, emit_state({**empty_state(), **lost}).encode("utf-8"),
                         durable=False)
        except (OSError, ValueError):
            return
        import shlex
        path = shorter_path(self.path)
        warning = (f"{count} {'entry' if count == 1 else 'entries'} the tool wrote "
                   f"({', '.join(entry_label(key, e) for key in lost for e in lost[key])}) "
                   f"vanished from the file through a write it did not make (an editor saving "
                   f"an older copy?); they are kept in {kept}. If that was not on purpose, "
                   f"restore the tool's last copy: cp {shlex.quote(path + '.bak')} "
                   f"{shlex.quote(path)}")
        self.warnings = list(self.warnings) + [warning]
        print(f"orchestrator: {warning}", file=sys.stderr)

    def read_cache(self, raw):
        """(state, warnings) cached for exactly the bytes `raw`, or None. marshal, not json:
        it loads several times faster and needs no import. The state is marshalled on its
        own inside the cache, so a cache for other bytes costs no unmarshalling of it."""
        try:
            cached = marshal.loads(read_regular(self.cache_path) or b"")
        except (OSError, ValueError, EOFError, TypeError):
            return None
        if not (isinstance(cached, dict) and cached.get("format") == code_version()
                and cached.get("path") == self.path and cached.get("raw") == raw
                and isinstance(cached.get("state"), bytes)
                and isinstance(cached.get("warnings"), list)):
            return None
        try:
            state = marshal.loads(cached["state"])
        except (ValueError, EOFError, TypeError):
            return None
        return (state, cached["warnings"]) if isinstance(state, dict) else None

    def write_cache(self, raw, state):
        # Keyed by the file's whole content, not its size or mtime: a hand edit of the same
        # size within the same second is still seen, and validated (the entries it changed).
        # A reader that validated an older version must not replace a writer's newer cache.
        try:
            if read_regular(self.path) != raw:
                return
        except OSError:
            return
        payload = {"format": code_version(), "path": self.path, "raw": raw,
                   "warnings": self.warnings, "state": marshal.dumps(state)}
        try:
            os.makedirs(os.path.dirname(self.cache_path), mode=0o700, exist_ok=True)
            atomic_write(self.cache_path, marshal.dumps(payload), durable=False, mode=0o600)
        except (OSError, ValueError):
            pass  # a cache that cannot be written only costs speed

    # Entries validated one by one, keyed by (list, exact text), valid for as long as the
    # schema's version holds, whatever the module's. A few new ones (a hand edit) go to a
    # small `.entries-new` file beside the full one, so that an edit costs a write of its
    # size; a larger change rewrites the full file and empties the small one.
    def read_entries(self):
        entries = {}
        for path in (self.entries_path, self.entries_path + "-new"):
            try:
                cached = marshal.loads(read_regular(path) or b"")
            except (OSError, ValueError, EOFError, TypeError):
                continue
            if (isinstance(cached, dict) and cached.get("schema") == entries_key()
                    and cached.get("path") == self.path
                    and isinstance(cached.get("entries"), dict)):
                entries.update(cached["entries"])
        self.entries_read = entries
        return entries

    def write_entries(self, entries):
        if not entries:
            return
        known = self.entries_read
        new = {key: value for key, value in entries.items() if key not in known}
        if not new:
            return
        try:
            os.makedirs(os.path.dirname(self.entries_path), mode=0o700, exist_ok=True)
            recent = self.read_recent_entries() if len(new) <= VALIDATION_BATCH else {}
            recent.update(new)
            if len(new) <= VALIDATION_BATCH and len(recent) <= 4 * VALIDATION_BATCH \
                    and len(known) > 2 * VALIDATION_BATCH:
                self.write_entries_file(self.entries_path + "-new", recent)
            else:
                self.write_entries_file(self.entries_path, entries)
                self.write_entries_file(self.entries_path + "-new", {})
        except (OSError, ValueError):
            pass  # a cache that cannot be written only costs speed

    def read_recent_entries(self):
        try:
            cached = marshal.loads(read_regular(self.entries_path + "-new") or b"")
            return dict(cached["entries"]) if cached.get("schema") == entries_key() else {}
        except (OSError, ValueError, EOFError, TypeError, KeyError, AttributeError):
            return {}

    def write_entries_file(self, path, entries):
        payload = {"schema": entries_key(), "path": self.path, "entries": entries}
        atomic_write(path, marshal.dumps(payload), durable=False, mode=0o600)

    # -- writing
    def encoded(self, before, after):
        """The bytes of `after`, once what it changes from `before` is proven valid."""
        validate_changes(before, after)
        return emit_state(after).encode("utf-8")

    def write_local(self, data, after, lock=None, warnings=()):
        try:
            for path in (self.path, self.backup_path):  # both, before either is written
                if os.path.lexists(path) and not stat_is_regular(os.lstat(path)):
                    raise not_regular(path)
            atomic_write(self.path, data, keep_mode=True,
                         before_replace=lambda: self.still_ours(lock))
        except NotRegularFile as error:
            raise StateError(f"{error}; {PLAIN_FILES_HINT}; nothing was changed") from None
        except OSError as error:
            raise StateError(f"cannot write {self.path}: {error.strerror}; nothing was "
                             "changed") from None
        try:  # the last good copy, offered for restoring when a hand edit breaks the file
            atomic_write(self.backup_path, data, durable=False, keep_mode=True)
        except OSError:
            pass
        try:  # and one outside the repository, for when the state's whole folder is removed
            os.makedirs(os.path.dirname(self.kept_path), mode=0o700, exist_ok=True)
            atomic_write(self.kept_path, data, durable=False, mode=0o600)
        except (OSError, ValueError):
            pass
        self.warnings = list(warnings)
        self.loaded_raw = data
        self.write_cache(data, after)

    def still_ours(self, lock):
        """Right before the rename: do we still hold the lock every command takes, and is the
        state the one we read? (Deleting the lock file must not let two writers in.)"""
        self.check_folders()
        if lock is not None:
            lock.verify()
        if self.read_bytes() != self.loaded_raw:
            raise Busy(
                f"{self.path} changed while this command held the lock (was its lock file "
                "removed?); nothing was written, run the command again")

    def remove_stale_temp_files(self):
        """Temp files a killed writer left beside the state (only lock holders make them)."""
        folder, name = os.path.split(self.path)
        try:
            leftovers = [entry for entry in os.listdir(folder)
                         if entry.endswith(".tmp") and (entry.startswith(f".{name}.")
                                                        or entry.startswith(f".{name}.bak."))]
        except OSError:
            return
        for entry in leftovers:
            try:
                os.unlink(os.path.join(folder, entry))
            except OSError:
                pass


def atomic_write(path, data, durable=True, keep_mode=False, mode=0o666, before_replace=None):
    """Temp file in the same folder, flushed to disk, then renamed over: old or new, never half.
    The temp file gets an unpredictable name and is created exclusively, so nothing planted
    in the folder is written through; a target that is a symlink or not a regular file is
    refused. `keep_mode` gives the new file the old one's permissions. `durable=False` skips
    the fsync, for files whose loss costs only speed (the cache)."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    os.makedirs(folder or ".", exist_ok=True)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None and not stat_is_regular(info):
        raise not_regular(path)
    if keep_mode and info is not None:
        mode = info.st_mode & 0o7777
    temp = os.path.join(folder, f".{name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_BINARY", 0), mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if keep_mode and info is not None and hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), mode)  # the umask must not narrow or widen it
            if durable:
                os.fsync(handle.fileno())
        if before_replace is not None:
            before_replace()
        replace_with_retry(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def replace_with_retry(source, target, attempts=20):
    # Windows refuses to replace a file another process holds open; that passes in moments.
    for attempt in range(attempts):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.01)


class InterProcessLock:
    """An exclusive OS lock on a separate, never-replaced lock file.

    flock (POSIX) and msvcrt.locking (Windows) belong to the open file: the kernel drops
    them when the holder exits or is killed, so a dead holder never wedges the state.
    """

    def __init__(self, path, timeout):
        self.path = path
        self.timeout = timeout
        self.handle = None

    def __enter__(self):
        # The lock is only as good as the file it is on: if that file was removed or replaced
        # while we waited, another command may lock the new one, so lock that one instead.
        for _ in range(20):
            self.open()
            if not (self.try_lock() or self.wait()):
                self.handle.close()
                raise Busy(
                    f"the state stayed locked by another orchestrator command for "
                    f"{self.timeout:g}s; nothing was written: try again in a moment (if a command "
                    "is stuck, end that process)")
            if self.still_at_path():
                return self
            self.handle.close()
        raise Busy(f"the lock file {self.path} keeps being replaced; nothing was "
                   "written: check what removes it")

    def open(self):
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.handle = os.fdopen(open_regular(self.path, os.O_RDWR | os.O_CREAT), "r+b")
        except NotRegularFile as error:
            raise StateError(f"{error}; {PLAIN_FILES_HINT}") from None
        except OSError as error:
            raise StateError(f"cannot open the lock file {self.path}: {error.strerror}; "
                             "check the folder's permissions") from None

    def still_at_path(self):
        try:
            here = os.lstat(self.path)
        except OSError:
            return False
        held = os.fstat(self.handle.fileno())
        return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)

    def verify(self):
        """Before a write: is the lock we hold still the one every command takes?"""
        if not self.still_at_path():
            raise Busy(f"the lock file {self.path} was removed or replaced while this "
                       "command held it; nothing was written, run it again")

    def wait(self):
        """Wait for the holder to let go, at most `timeout` seconds."""
        import threading
        if os.name == "nt" or threading.current_thread() is not threading.main_thread():
            return self.wait_polling()
        # Sleep inside flock and wake the moment the holder lets go; SIGALRM ends the wait.
        import fcntl
        import signal

        waiting = [True]

        def give_up(signum, frame):
            if waiting[0]:  # only while blocked in flock, never after it returned
                raise TimeoutError

        previous = signal.signal(signal.SIGALRM, give_up)
        previous_timer = signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
            waiting[0] = False
            return True
        except TimeoutError:
            return False
        finally:
            waiting[0] = False
            signal.setitimer(signal.ITIMER_REAL, *previous_timer)
            signal.signal(signal.SIGALRM, previous)

    def wait_polling(self):
        waited, pause = 0.0, 0.002
        while waited < self.timeout:
            # Counted, not clocked: freezegun stops the clocks in tests, not sleep().
            time.sleep(pause)
            waited += pause
            pause = min(pause * 2, 0.02)
            if self.try_lock():
                return True
        return False

    def try_lock(self):
        try:
            if os.name == "nt":
                import msvcrt
                self.handle.seek(0)
                msvcrt.locking(self.handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl
                fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def __exit__(self, *exc):
        if os.name == "nt":
            import msvcrt
            self.handle.seek(0)
            msvcrt.locking(self.handle.fileno(), msvcrt.LK_UNLCK, 1)
        self.handle.close()
        return False


def lock_timeout():
    """ORCHESTRATOR_LOCK_TIMEOUT: a positive, finite number of seconds (at most a day); the
    default when unset. A wait shorter than a millisecond is a millisecond (a zero timer would
    wait forever)."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    if not raw:
        return DEFAULT_LOCK_TIMEOUT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= 86400:  # also refuses nan and inf
        raise UsageError(f"{LOCK_TIMEOUT_ENV} must be a number of seconds above 0 and at "
                         f"most 86400, e.g. 10; got {raw[:40]!r}")
    return max(seconds, 0.001)


class Transaction:
    """Lock, load, let the command change the state, save only if it changed."""

    def __init__(self, store, offline_read=False):
        self.store = store
        self.lock = InterProcessLock(store.lock_path, lock_timeout())
        # With `offline_read`, a shared remote that cannot be reached makes this a read of the
        # local copy (`offline` holds why) that writes nothing; otherwise it is an error.
        self.offline_read, self.offline = offline_read, None

    VALIDATION_ROUNDS = 3  # validate outside the lock, lock, find the file changed: again

    def __enter__(self):
        import_strictyaml()  # before the lock: a write validates with it
        self.store.check_folders()
        for round_left in reversed(range(self.VALIDATION_ROUNDS)):
            try:  # validate before the lock: under it, the same bytes are only compared
                self.store.load()
            except OrchestratorError:
                pass  # reported under the lock, where it counts
            self.lock.__enter__()
            if not round_left or self.store.is_validated():
                break
            # Another writer changed the file meanwhile, and what it left is not validated
            # yet: let go, so that nobody waits on this validation, and validate again.
            self.lock.__exit__(None, None, None)
        try:
            self.store.remove_stale_temp_files()
            if self.store.sharing is not None:
                try:  # a read that may fall back to the local copy waits briefly
                    self.store.sharing.pull(briefly=self.offline_read)
                except RemoteUnavailable as error:
                    if not self.offline_read:
                        raise RemoteUnavailable(f"{error.message}; nothing was written anywhere, "
                                                "no lock was taken") from None
                    self.offline = error
            self.before = self.store.load()
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise
        self.state = marshal.loads(marshal.dumps(self.before, 2))  # a deep copy sharing nothing
        return self.state

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None and self.state != self.before and not self.offline:
                data = self.store.encoded(self.before, self.state)
                sharing = self.store.sharing
                if sharing is None:
                    self.store.write_local(data, self.state, self.lock)
                    return False
                commit = sharing.push(data)  # the remote first: it decides
                try:
                    self.store.write_local(data, self.state, self.lock)
                    sharing.mark_fetched(commit)  # only now does the copy hold it
                except OrchestratorError as error:  # written where it counts: not again
                    raise StateError(
                        f"the change reached {sharing.ref.describe()}, but this clone's "
                        f"copy could not be updated ({error.message}); `{cli_name()} remote "
                        "refresh` updates it: do not run the command again") from None
        finally:
            self.lock.__exit__(None, None, None)
        return False


# ---------------------------------------------------------------------------- sharing through git

# The state shared through the repository's git remote (`remote enable`). The remote is the
# engine: a push that is not a fast-forward of what the server holds is refused, so every
# write is a compare-and-swap on the ref. The local state file stays the copy every read uses.

SHARED_CONFIG_SECTION = "orchestrator"  # in the clone's git config: shared by its worktrees
DEFAULT_SHARED_REMOTE = "origin"
DEFAULT_SHARED_REF = "refs/orchestrator/state"
FETCHED_REF = "refs/orchestrator/fetched"  # this clone's copy of the remote's ref
SHARED_FILE = "session_state.yaml"  # the one file in each commit's tree
DEFAULT_SHARED_MAX_AGE = 30  # seconds a read trusts the local copy before refreshing it
NETWORK_SECONDS = 20  # a fetch or push that takes longer counts as an unreachable remote
REFRESH_SECONDS = 5  # how long sync and status wait to refresh their view first
HOOK_NETWORK_SECONDS = 3  # a hook's own write (a binding, touched files) waits no longer
SHARED_ATTEMPTS = 8  # a command applied again this often when other writers keep overtaking it


def read_git_config(main_checkout):
    """{key: value} of the [orchestrator] section of the clone's git config, read as text (a
    hook must not fork git to learn that nothing is shared): `key = value` lines, keys in
    lower case as git compares them. `main_checkout` is the clone's main checkout (see
    main_checkout_of), whose git dir holds the config every worktree shares."""
    found, inside = {}, False
    try:
        git_dir = git_dir_of(main_checkout)
        if git_dir is None:
            return found
        text = read_text(os.path.join(git_dir, "config"))
    except (OSError, ValueError):
        return found
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            inside = line.strip("[]").strip().lower() == SHARED_CONFIG_SECTION
        elif inside and "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            found[key.strip().lower()] = value.strip().strip('"')
    return found


def remote_ref_name(ref):
    """A ref as the remote names it: a bare name is a branch (some hosts accept only those)."""
    return ref if ref.startswith("refs/") else f"refs/heads/{ref}"


MAX_SHARED_BYTES = 16 * 1024 * 1024  # a state on the ref larger than this is not read


class SharedRef:
    """The state on `ref` of `remote`, reached through git in `checkout` (the main checkout)."""

    def __init__(self, checkout, remote, ref, max_age=DEFAULT_SHARED_MAX_AGE):
        self.checkout, self.remote, self.ref = checkout, remote, remote_ref_name(ref)
        self.max_age = max_age
        self.timeout = NETWORK_SECONDS  # for a fetch or a push

    @classmethod
    def configured(cls, checkout):
        config = read_git_config(checkout)
        if not config.get("remote"):
            return None
        try:
            max_age = max(float(config.get("maxage", DEFAULT_SHARED_MAX_AGE)), 0.0)
        except ValueError:
            max_age = DEFAULT_SHARED_MAX_AGE
        return cls(checkout, config["remote"], config.get("ref") or DEFAULT_SHARED_REF, max_age)

    def describe(self):
        return f"{self.remote} {self.ref}"

    def git(self, *args, data=None, env=None, timeout=None):
        import subprocess
        timeout = timeout or self.timeout
        environment = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C", **(env or {}))
        try:
            return run_in_own_group(["git", "-C", self.checkout, *args], data, timeout,
                                    environment)
        except subprocess.TimeoutExpired:
            raise RemoteUnavailable(self.no_answer(timeout)) from None
        except OSError as error:
            raise RemoteUnavailable(f"cannot run git: {error.strerror}") from None

    def no_answer(self, timeout):
        return (f"{self.remote} did not answer within {timeout:g} s; try again later, or "
                f"`{cli_name()} remote disable` to work on this machine only")

    def fetch(self, timeout=None):
        """The remote's commit of the shared state (its objects now in this clone), or None
        when the remote has no such ref. RemoteUnavailable when it cannot be reached. The
        fetch lands on a ref of this process's own: a refresh running beside a write must
        not fight it over one ref (FETCHED_REF moves only under the local lock: remember)."""
        landing = f"refs/orchestrator/fetching/{os.getpid()}-{os.urandom(4).hex()}"
        try:
            proc = self.git("fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                            "--no-recurse-submodules", self.remote, f"+{self.ref}:{landing}",
                            timeout=timeout)
        except RemoteUnavailable:
            raise RemoteUnavailable(self.no_answer(timeout or self.timeout)) from None
        if proc.returncode != 0:
            why = proc.stderr.decode("utf-8", "replace")
            if "couldn't find remote ref" in why:
                return None
            raise RemoteUnavailable(f"cannot fetch the shared state from {self.remote} "
                                    f"(git says {quote_data(git_reason(why), 300)}; check `git "
                                    f"remote -v`, or `{cli_name()} remote disable` to work on "
                                    "this machine only)")
        found = self.git("rev-parse", "--verify", "--quiet", landing).stdout.decode().strip()
        kind = self.git("cat-file", "-t", landing).stdout.decode().strip() if found else ""
        self.git("update-ref", "-d", landing)
        if found and kind != "commit":  # a tree, a tag, a blob: no state any writer can build on
            raise StateError(f"the shared state's ref {self.describe()} points at a {kind or 'missing object'}, "
                             f"not a commit; it is not used or overwritten: point it at the "
                             f"last good commit by hand, or `{cli_name()} remote disable`")
        return found or None

    def remember(self, commit):
        """Point FETCHED_REF (what `log` reads) at `commit`; the caller holds the local lock."""
        if commit:
            self.git("update-ref", FETCHED_REF, commit)
        else:
            self.git("update-ref", "-d", FETCHED_REF)

    def read_or_none(self, commit):
        """The state file's bytes in `commit`, or None when it holds none. One larger than
        MAX_SHARED_BYTES is refused before it is read (a 60 MB note took strictyaml 50 s)."""
        size = self.git("cat-file", "-s", f"{commit}:{SHARED_FILE}").stdout.decode().strip()
        if size.isdigit() and int(size) > MAX_SHARED_BYTES:
            raise StateError(f"the shared state on {self.describe()} ({commit[:12]}) is "
                             f"{int(size) // 1048576} MB, more than a state ever needs; it is "
                             f"not used or overwritten: fix the ref by hand, or "
                             f"`{cli_name()} remote disable`")
        proc = self.git("cat-file", "blob", f"{commit}:{SHARED_FILE}")
        return proc.stdout if proc.returncode == 0 else None

    def read(self, commit):
        data = self.read_or_none(commit)
        if data is None:
            raise StateError(f"the shared state on {self.describe()} ({commit[:12]}) holds no "
                             f"{SHARED_FILE}; it is not used or overwritten: fix the ref by "
                             "hand, or `remote disable`")
        return data

    def publish(self, data, parent, message, author):
        """Push a commit of `data` on top of `parent` (None: the ref must not exist yet); the
        new commit. RemoteMoved when the ref moved meanwhile, RemoteUnavailable when the remote
        cannot be reached or refuses. The working tree, the index and HEAD are not touched."""
        blob = self.checked("hash-object", "-w", "--stdin", data=data)
        tree = self.checked("mktree", data=f"100644 blob {blob}\t{SHARED_FILE}\n".encode())
        name, email = author
        identity = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
                    "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
        commit = self.checked("commit-tree", tree, *(["-p", parent] if parent else []),
                              data=message.encode("utf-8"), env=identity)
        try:
            proc = self.git("push", "--porcelain", "--quiet", "--no-verify",
                            f"--force-with-lease={self.ref}:{parent or ''}", self.remote,
                            f"{commit}:{self.ref}")
        except RemoteUnavailable:  # cut off: the server may have taken it, or may yet
            return self.settled(commit, parent, f"cut off after {self.timeout:g} s",
                                cut_off=True)
        output = (proc.stdout + proc.stderr).decode("utf-8", "replace")
        if proc.returncode == 0:
            return commit
        if "[remote rejected]" in output:
            reason = one_line(output.split("[remote rejected]", 1)[1].splitlines()[0].strip(" ()"))
            if any(race in reason for race in RACE_LOST):  # the server's compare-and-swap, or a
                return self.settled(commit, parent, quote_data(reason, 300))  # stuck lock: look
            raise RemoteUnavailable(f"{self.remote} refused the write (the server says "
                                    f"{quote_data(reason, 300)}); nothing was written "
                                    "anywhere, no lock was taken")
        if "[rejected]" in output or "stale info" in output or "fetch first" in output:
            raise RemoteMoved(f"{self.describe()} moved meanwhile")
        return self.settled(commit, parent, f"git says {quote_data(last_line(output), 300)}",
                            cut_off=True)

    def settled(self, commit, parent, reason, cut_off=False):
        """After a push that did not say plainly how it ended, the remote's ref decides: our
        commit in its history means written (another writer may have built on it already);
        another history means it moved, so the command is applied again (our push, if still
        on its way, can no longer land: its lease names the old value); the parent means the
        server failed, or, for a push cut off on the way, that it may still arrive."""
        unknown = RemoteUnavailable(
            f"the push to {self.remote} did not finish ({reason}) and may still arrive: check "
            f"with `{cli_name()} remote refresh` and `{cli_name()} log` before running the "
            "command again (this clone's copy is unchanged)")
        try:
            value = self.fetch(min(REFRESH_SECONDS, self.timeout))
        except RemoteUnavailable:
            raise unknown from None
        if value is not None and (value == commit or self.git(
                "merge-base", "--is-ancestor", commit, value).returncode == 0):
            return commit
        if value != parent:
            raise RemoteMoved(f"{self.describe()} moved meanwhile ({reason})")
        if cut_off:
            raise unknown
        raise RemoteUnavailable(f"{self.remote} did not take the write ({reason}); nothing was "
                                "written anywhere, no lock was taken")

    def checked(self, *args, data=None, env=None):
        """git's answer to a local step of a write (an object, a commit); StateError when it
        fails (a full disk, a broken object store): nothing was written anywhere."""
        proc = self.git(*args, data=data, env=env)
        if proc.returncode != 0:
            reason = quote_data(last_line(proc.stderr.decode("utf-8", "replace")), 300)
            raise StateError(f"git {args[0]} failed in this clone ({reason}); nothing was "
                             "written anywhere: check the disk and the repository "
                             "(`git fsck`), then run the command again")
        return proc.stdout.decode().strip()

    def history(self, count):
        """The newest `count` commits of the fetched ref: [{commit, when, session, machine,
        command}], newest first, read from each commit's trailers."""
        proc = self.git("log", f"-{count}", "--format=%H%x1f%cI%x1f%B%x1e", FETCHED_REF, "--")
        entries = []
        for record in proc.stdout.decode("utf-8", "replace").split("\x1e"):
            fields = record.strip("\n").split("\x1f")
            if len(fields) != 3:
                continue
            trailers = {}
            for line in fields[2].splitlines():
                key, colon, value = line.partition(": ")
                if colon and key in ("Command", "Session", "Machine"):
                    trailers[key.lower()] = value.strip()
            entries.append({"commit": fields[0], "when": fields[1], **{
                key: trailers.get(key, "") for key in ("command", "session", "machine")}})
        return entries


# How a server says another push changed the ref first (receive-pack's locked ref update).
RACE_LOST = ("failed to update ref", "cannot lock ref", "failed to lock",
             "incorrect old value")


def git_reason(text):
    """The line of git's stderr that says what went wrong (its first `fatal:` or `error:`,
    not the advice after it)."""
    for line in text.splitlines():
        if line.startswith(("fatal: ", "error: ")):
            return one_line(line.split(": ", 1)[1])
    return one_line(last_line(text))


class SharedCopy:
    """What sharing through the git remote adds to a store: the local file is a copy of the
    state on `ref`, fetched into it under the local lock, and each change is pushed as a
    commit on top of the fetched one (`commit`) before the copy is written. Its marks beside
    the state say which commit the copy holds, since when, and why a refresh failed."""

    def __init__(self, store, ref, purpose=("", None, "")):
        self.store, self.ref = store, ref
        self.commit = None  # the remote's commit this transaction builds on
        self.purpose = purpose  # (command, session, machine): for the shared history
        self.replaced_local = None  # what the local file held before a fetch replaced it

    @property
    def fetched_marker(self):
        return os.path.join(os.path.dirname(self.store.path), "shared-fetched")

    def pull(self, briefly=False):
        """Make the local file the remote's state (the caller holds the local lock); a read
        that may answer from the local copy (`briefly`) waits REFRESH_SECONDS at most."""
        commit = self.commit = self.ref.fetch(REFRESH_SECONDS if briefly else None)
        self.adopt(commit)
        return commit

    def refresh(self, timeout=None):
        """Fetch without the local lock (a slow remote must not hold up this machine's other
        commands), then take it only to adopt what was fetched."""
        commit = self.ref.fetch(timeout)
        with InterProcessLock(self.store.lock_path, lock_timeout()):
            held = read_text_or_none(self.fetched_marker)
            if commit and held and held != commit and self.ref.git(
                    "merge-base", "--is-ancestor", commit, held).returncode == 0:
                return held  # a writer here pushed something newer meanwhile: keep it
            self.adopt(commit)
        return commit

    def adopt(self, commit):
        """Write the state of the remote's `commit` into the local file. What the file held
        that the last fetched commit did not (a hand edit) is kept beside it and said."""
        if commit is not None:
            data, local = self.ref.read(commit), self.store.read_bytes()
            if data != local:
                state, warnings = self.check(data, commit)
                self.replaced_local = local if local and local.strip() else None
                held = read_text_or_none(self.fetched_marker)
                if self.replaced_local and held and local != self.ref.read_or_none(held):
                    self.keep_hand_edit(local)
                self.store.loaded_raw = local  # read under the lock: what write_local replaces
                self.store.check_folders()
                self.store.write_local(data, state, warnings=warnings)
        self.ref.remember(commit)
        self.mark_fetched(commit)

    def keep_hand_edit(self, local):
        """The local copy held changes the shared state never had: keep them, say where."""
        kept = unused_name(f"{self.store.path}.local-{utc_stamp()}")
        try:
            atomic_write(kept, local, durable=False)
        except OSError:
            return
        print(f"orchestrator: this clone's copy of the shared state had changes the remote "
              f"does not (a hand edit?); they were kept in {kept}, and the copy now holds "
              f"the shared state (edit it through the commands, which push)", file=sys.stderr)

    def check(self, data, commit):
        """The remote's bytes validated like the local file's, its texts held to the limits of
        typed input, and an empty state refused while this clone's copy holds entries (a
        commit that empties the ref must not empty every clone); StateError, never used, if
        not."""
        label = f"the shared state on {self.ref.describe()} ({commit[:12]})"
        try:
            state, warnings, entries = validate_state_text(data.decode("utf-8"), label,
                                                           self.store.read_entries())
            self.store.write_entries(entries)
            too_long = longest_text(state)
            if too_long > MAX_TEXT_CHARS:
                raise StateError(f"{label} holds a text of {too_long} characters (at most "
                                 f"{MAX_TEXT_CHARS} may be typed)")
            local = self.store.read_bytes()
            if not any(state[key] for key in TOP_LEVEL_KEYS) and local and b"\n  - " in local:
                raise StateError(f"{label} holds no entry at all, while this clone's copy "
                                 "holds entries: the shared state was emptied")
            return state, warnings
        except UnicodeDecodeError:
            raise StateError(f"{label} is not UTF-8 text; it is not used or overwritten: fix "
                             "the ref by hand, or `remote disable`") from None
        except StateError as error:
            raise StateError(f"{error.message}; it is not used or overwritten: fix the ref by "
                             "hand, or `remote disable`") from None

    def push(self, data):
        command, session_id, machine = self.purpose
        who = session_id or "orchestrator"
        message = (f"{command} by {who} on {machine}\n\nCommand: {command}\n"
                   f"Session: {session_id or ''}\nMachine: {machine}\n")
        commit = self.ref.publish(data, self.commit, message,
                                     (who, f"{who}@{machine or 'localhost'}"))
        self.ref.remember(commit)
        return commit

    def mark_fetched(self, commit):
        """Remember the remote's commit the local file holds, and when it was fetched; a
        refresh that failed earlier is history now."""
        self.note_refresh(None)
        try:
            handle = os.open(self.fetched_marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                             | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                os.write(handle, (commit or "").encode())
            finally:
                os.close(handle)
        except OSError:
            pass  # only the view's age is lost

    @property
    def refresh_failure_marker(self):
        return os.path.join(os.path.dirname(self.store.path), "shared-refresh-failed")

    def note_refresh(self, failure):
        """Remember why the last refresh failed (None: it worked), for the reads after it."""
        try:
            if failure is None:
                os.unlink(self.refresh_failure_marker)
            else:
                atomic_write(self.refresh_failure_marker, failure.encode("utf-8"), durable=False)
        except OSError:
            pass

    def fetched_age(self, now_seconds):
        """Seconds since the local copy was last fetched or pushed; None if it never was."""
        try:
            return max(now_seconds - os.lstat(self.fetched_marker).st_mtime, 0.0)
        except OSError:
            return None


def share_through(store, ref, purpose=("", None, "")):
    """The one place a store is wired to its shared ref (None: not shared); the store."""
    store.sharing = None if ref is None else SharedCopy(store, ref, purpose)
    return store


# ---------------------------------------------------------------------------- policy: time

# A moment is held as the state writes it: UTC ISO 8601 to the second ("...T12:00:00+00:00").
# Every timestamp in a loaded state has that one form, so two compare as strings in time order,
# and the session-start check and the hook import datetime only to word a conflict they found.


def seconds_between(earlier, later):
    return epoch_seconds(later) - epoch_seconds(earlier)


MOMENT_CHARS = len("2026-01-01T00:00:00+00:00")


def is_moment_text(text):
    """Is `text` a moment as the tool writes one, `2026-01-01T00:00:00+00:00`?"""
    return (len(text) == MOMENT_CHARS and text.endswith("+00:00") and text[10] == "T"
            and all(text[i].isdigit() and text[i].isascii() for i in (
                0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18))
            and text[4] + text[7] + text[13] + text[16] == "--::")


def epoch_seconds(moment):
    """Seconds since the epoch of a moment. The state's own form (UTC, to the second) is read
    by arithmetic: presence is judged in the hooks, where importing datetime would cost a
    sixth of their time; any other form goes through datetime."""
    if is_moment_text(moment):
        year, month, day = int(moment[:4]), int(moment[5:7]), int(moment[8:10])
        hour, minute, second = int(moment[11:13]), int(moment[14:16]), int(moment[17:19])
        if 1 <= month <= 12:
            year -= month <= 2  # days from 1970-01-01 in the proleptic Gregorian calendar
            era = year // 400
            of_era = year - era * 400
            of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
            days = era * 146097 + of_era * 365 + of_era // 4 - of_era // 100 + of_year - 719468
            return ((days * 24 + hour) * 60 + minute) * 60 + second
    from datetime import datetime, timezone
    parsed = datetime.fromisoformat(moment)
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp())


def moment_after(moment, seconds):
    from datetime import datetime, timedelta
    return iso(datetime.fromisoformat(moment) + timedelta(seconds=seconds))


def parse_duration(text):
    """`45m`, `2h`, `1h30m`, `1d`, `90s` -> seconds; anything else is bad input."""
    parts = duration_parts(text.strip().lower()) if text else None
    if parts is None:
        if text and text.strip().isdigit():
            raise UsageError(f"--duration {text!r} has no unit: did you mean "
                             f"{text.strip()}m (minutes) or {text.strip()}h (hours)?")
        raise UsageError(f"--duration {text!r} is not a duration: use forms like 45m, 2h, "
                         "1h30m or 1d")
    days, hours, minutes, seconds = parts
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total > MAX_LOCK_SECONDS:
        raise UsageError(f"--duration {text!r} is longer than 30 days; take a shorter lock "
                         "and renew it")
    if total <= 0:
        raise UsageError(f"--duration {text!r} must be longer than zero, e.g. 2h")
    return total


def duration_parts(text):
    """(days, hours, minutes, seconds) of `1d2h3m4s` and its shorter forms (each unit once,
    in that order, at least one), or None. Without `re`: the hooks read the presence
    thresholds on every event that names a lock's holder."""
    parts, number, last = [0, 0, 0, 0], "", -1
    for character in text:
        if "0" <= character <= "9":
            number += character
            continue
        unit = "dhms".find(character)
        if unit <= last or not number:
            return None
        parts[unit], number, last = int(number), "", unit
    return tuple(parts) if last >= 0 and not number else None


def remaining_seconds(lock, now):
    return seconds_between(now, lock["expires_at"])


def is_expired(lock, now):
    return lock["expires_at"] <= now  # moments compare as strings


def live_locks(state, now):
    return [lock for lock in state["locks"] if not is_expired(lock, now)]


# ---------------------------------------------------------------------------- policy: paths

# A scope is a git pathspec with the glob magic, matched exactly as `git ls-files
# ':(glob)SCOPE'` matches it, and it covers everything below what it matches. git decides a
# match in two ways, and so does this section: the scope taken literally (`app/[id]` is also
# the folder named `app/[id]`), and git's wildmatch with `/` special, run byte by byte on the
# UTF-8 text (`?` is one byte, as in git). As git does, the literal text before the first
# wildcard is compared first and wildmatch runs on the rest as a pattern of its own (so
# `src/a**` matches across folders, as it does in git). `\` is a path separator here (people
# type Windows paths), so git's backslash escapes are not available: `[*]` matches a `*`.
#
# A scope becomes a small automaton over bytes (an NFA without empty moves). Matching a path
# walks it once; whether two scopes overlap is decided exactly by searching the product of
# both automata for a path both cover. Neither recurses, so a path thousands of folders deep
# is as safe as a short one.

_GLOB_CHARS = frozenset("*?[")
SLASH_BIT = 1 << ord("/")
ANY_BYTE = ((1 << 256) - 1) & ~1  # every byte but NUL
NAME_BYTE = ANY_BYTE & ~SLASH_BIT  # every byte a folder or file name may hold


def _bytes_where(test):
    return sum(1 << b for b in range(1, 128) if test(chr(b)))


# wildmatch's [:name:] classes, as git's own ctype defines them: ASCII only, and its `space`
# is tab, newline, carriage return and space (no vertical tab or form feed).
POSIX_CLASSES = {
    b"alnum": _bytes_where(lambda c: c.isascii() and c.isalnum()),
    b"alpha": _bytes_where(lambda c: c.isascii() and c.isalpha()),
    b"blank": _bytes_where(lambda c: c in " \t"),
    b"cntrl": _bytes_where(lambda c: ord(c) < 32 or ord(c) == 127),
    b"digit": _bytes_where(lambda c: c in "0123456789"),
    b"graph": _bytes_where(lambda c: 33 <= ord(c) <= 126),
    b"lower": _bytes_where(lambda c: "a" <= c <= "z"),
    b"print": _bytes_where(lambda c: 32 <= ord(c) <= 126),
    b"punct": _bytes_where(lambda c: 33 <= ord(c) <= 126 and not c.isalnum()),
    b"space": _bytes_where(lambda c: c in " \t\n\r"),
    b"upper": _bytes_where(lambda c: "A" <= c <= "Z"),
    b"xdigit": _bytes_where(lambda c: c in "0123456789abcdefABCDEF"),
}

def path_segments(path, fold_case=False):
    """A path or glob as its segments; `/` and `\\` alike. Paths are compared as the
    repository's file system sees them: where it ignores case (Windows, macOS by default),
    `Src/API` and `src/api` are one path, and every function that compares paths takes
    `fold_case`, which the Context decides once from the checkout's file system."""
    path = path.replace("\\", "/")
    if fold_case:
        path = path.casefold()
    return [segment for segment in path.split("/") if segment]


def is_glob(segment):
    return any(ch in _GLOB_CHARS for ch in segment)


class ScopeAutomaton:
    """The paths a scope matches, as an NFA over bytes: `edges[state]` lists (byte mask,
    next state); `accepting[state]` says a match may end there. State 0 is the start."""

    def __init__(self):
        self.edges, self.accepting = [[]], [False]

    def add_state(self):
        self.edges.append([])
        self.accepting.append(False)
        return len(self.edges) - 1

    def add_chain(self, start, text):
        """Literal bytes from `start`; returns the state after them."""
        for byte in text:
            state = self.add_state()
            self.edges[start].append((1 << byte, state))
            start = state
        return start


def parse_bracket(pattern, i):
    """wildmatch's `[...]` starting at pattern[i]: (byte mask, index after it), or None where
    git gives up on the whole pattern (no closing `]`, an unknown [:class:])."""
    end = len(pattern)
    i += 1
    negated = i < end and pattern[i] in b"!^"
    i += negated
    mask, previous = 0, 0
    while True:  # the first character is taken before `]` is looked for: `[]]` is a class
        if i >= end:
            return None
        char = pattern[i]
        if char == ord("-") and previous and i + 1 < end and pattern[i + 1] != ord("]"):
            i += 1
            mask |= sum(1 << b for b in range(previous, pattern[i] + 1))
            char = 0  # a range is never the start of another
        elif char == ord("[") and i + 1 < end and pattern[i + 1] == ord(":"):
            close = pattern.find(b"]", i + 2)
            if close == -1:
                return None
            if close - (i + 2) - 1 < 0 or pattern[close - 1] != ord(":"):
                mask |= 1 << char  # no `:]` before the `]`: a plain `[` in the set
            else:
                named = POSIX_CLASSES.get(pattern[i + 2:close - 1])
                if named is None:
                    return None
                mask |= named
                i, char = close, 0
        else:
            mask |= 1 << char
        previous = char
        i += 1
        if i >= end:
            return None
        if pattern[i] == ord("]"):
            break
    mask &= NAME_BYTE  # with `/` special a class never matches `/` (nor NUL)
    return (NAME_BYTE & ~mask if negated else mask), i + 1


def add_wildmatch(automaton, start, pattern):
    """git's wildmatch of `pattern` (bytes, `/` special) from state `start`; the end state, or
    None when git matches nothing with it."""
    state, i, end = start, 0, len(pattern)
    pending = []  # (from, to): "`**/` may match no folder at all", resolved at the end
    while i < end:
        char = pattern[i]
        if char == ord("*"):
            run_end = i
            while run_end < end and pattern[run_end] == ord("*"):
                run_end += 1
            whole_segment = (run_end - i >= 2 and (i == 0 or pattern[i - 1] == ord("/"))
                             and (run_end == end or pattern[run_end] == ord("/")))
            if whole_segment and run_end == end:
                automaton.edges[state].append((ANY_BYTE, state))  # a trailing `**`: anything
                i = run_end
                continue
            if whole_segment:  # `**/`: no folder at all, or any folders then `/`
                folders, after = automaton.add_state(), automaton.add_state()
                automaton.edges[folders] += [(ANY_BYTE, folders), (SLASH_BIT, after)]
                automaton.edges[state] += [(ANY_BYTE, folders), (SLASH_BIT, after)]
                pending.append((state, after))
                state, i = after, run_end + 1
                continue
            automaton.edges[state].append((NAME_BYTE, state))  # `*` (or `**` inside a name)
            i = run_end
            continue
        if char == ord("?"):
            mask = NAME_BYTE
            i += 1
        elif char == ord("["):
            parsed = parse_bracket(pattern, i)
            if parsed is None:
                return None
            mask, i = parsed
        else:
            mask = 1 << char
            i += 1
        following = automaton.add_state()
        automaton.edges[state].append((mask, following))
        state = following
    # An empty move from a to b: a gains b's moves and its ending; later ones first, since a
    # `**/` may be followed by another.
    for source, target in reversed(pending):
        automaton.edges[source].extend(automaton.edges[target])
        automaton.accepting[source] = (automaton.accepting[source] or automaton.accepting[target]
                                       or target == state)
    return state


_automata: dict = {}


def scope_automaton(scope, fold_case=False):
    """The automaton of everything `scope` matches: the scope as literal text, or its glob."""
    key = (scope, fold_case)
    automaton = _automata.get(key)
    if automaton is not None:
        return automaton
    segments = path_segments(scope, fold_case=fold_case)
    text = "/".join(segments).encode("utf-8", "surrogatepass")
    # `**/**` means what `**` means: one of them keeps the automaton small.
    collapsed = [s for i, s in enumerate(segments)
                 if not (i and set(s) == set(segments[i - 1]) == {"*"} and len(s) > 1
                         and len(segments[i - 1]) > 1)]
    glob_text = "/".join(collapsed).encode("utf-8", "surrogatepass")
    automaton = ScopeAutomaton()
    literal_end = automaton.add_chain(0, text)
    automaton.accepting[literal_end] = True
    first_wildcard = next((i for i, byte in enumerate(glob_text) if byte in b"*?["), None)
    if first_wildcard is not None:
        glob_start = automaton.add_state()
        # git compares the text before the first wildcard literally, then wildmatches the rest
        # as a pattern of its own.
        prefix_end = automaton.add_chain(glob_start, glob_text[:first_wildcard])
        glob_end = add_wildmatch(automaton, prefix_end, glob_text[first_wildcard:])
        if glob_end is not None:
            automaton.accepting[glob_end] = True
            automaton.edges[0].extend(automaton.edges[glob_start])
    _automata[key] = automaton
    return automaton


def path_bytes(path, fold_case=False):
    return "/".join(path_segments(path, fold_case=fold_case)).encode("utf-8", "surrogatepass")


def path_in_scope(path, scope, fold_case=False):
    """Does the concrete `path` fall under `scope`: does the scope match it, or a folder that
    holds it?"""
    if not is_glob(scope):  # most scopes are literal: a comparison of segments
        wanted = path_segments(scope, fold_case=fold_case)
        return path_segments(path, fold_case=fold_case)[:len(wanted)] == wanted
    if scope.endswith("/**") and not is_glob(scope[:-3]):  # `dir/**`: anything below dir
        wanted = path_segments(scope[:-3], fold_case=fold_case)
        segments = path_segments(path, fold_case=fold_case)
        return len(segments) > len(wanted) and segments[:len(wanted)] == wanted
    automaton = scope_automaton(scope, fold_case=fold_case)
    edges, accepting = automaton.edges, automaton.accepting
    states = {0}
    for byte in path_bytes(path, fold_case=fold_case):
        if byte == ord("/") and any(accepting[s] for s in states):
            return True  # the scope matches a folder that holds the path
        bit = 1 << byte
        states = {target for s in states for mask, target in edges[s] if mask & bit}
        if not states:
            return False
    return any(accepting[s] for s in states)


TAIL = -1  # a product state: the scope matched a folder higher up; anything below it is covered


def covering_moves(automaton, state, below=True):
    """The moves of `state` in the automaton of everything a scope covers: its own, and once a
    match is complete, a `/` into anything below it (not for a scope that names a file)."""
    if state == TAIL:
        return ((ANY_BYTE, TAIL),)
    moves = automaton.edges[state]
    return moves + [(SLASH_BIT, TAIL)] if below and automaton.accepting[state] else moves


# Bytes an example path is spelled with, the most readable first.
EXAMPLE_BYTES = [ord(c) for c in "xabcdefghijklmnopqrstuvwyz0123456789_-."] + list(range(1, 256))


def overlap_example(a, b, fold_case=False, a_is_file=False, b_is_file=False):
    """A path both scopes cover, or None when there is none. A scope covers what it matches
    and everything below that, unless it names a file (`a_is_file`, `b_is_file`: a literal
    scope naming an existing file covers only that file). Exact: a breadth-first search of
    both automata at once for a path (no empty folder names) that ends where both are
    satisfied; the example is the shortest such path, with no name starting with a dot
    unless both scopes demand one."""
    if not is_glob(a) and not is_glob(b):
        left, right = path_segments(a, fold_case=fold_case), path_segments(b, fold_case=fold_case)
        shorter = min(len(left), len(right))
        if left[:shorter] != right[:shorter] or (a_is_file and len(right) > len(left)) or (
                b_is_file and len(left) > len(right)):
            return None
        return a.strip("/") if len(left) >= len(right) else b.strip("/")
    first = scope_automaton(a, fold_case=fold_case)
    second = scope_automaton(b, fold_case=fold_case)
    return (shortest_common_path(first, second, a_is_file, b_is_file, ~DOT_BIT)
            or shortest_common_path(first, second, a_is_file, b_is_file, ANY_BYTE))


DOT_BIT = 1 << ord(".")


def shortest_common_path(first, second, first_is_file, second_is_file, name_start):
    """A breadth-first search of two scope automata at once (see overlap_example); a name's
    first byte must be in `name_start`."""
    # A product state: (state in first, state in second, inside a name so far).
    start = (0, 0, False)
    came_from = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for here in frontier:
            x, y, in_name = here
            if in_name and (x == TAIL or first.accepting[x]) and (
                    y == TAIL or second.accepting[y]):
                spelled = []
                while came_from[here] is not None:
                    here, byte = came_from[here]
                    spelled.append(byte)
                return bytes(reversed(spelled)).decode("utf-8", "replace")
            for mask_x, next_x in covering_moves(first, x, not first_is_file):
                for mask_y, next_y in covering_moves(second, y, not second_is_file):
                    common = mask_x & mask_y
                    name_bytes = common & NAME_BYTE & (ANY_BYTE if in_name else name_start)
                    steps = []
                    if name_bytes:
                        byte = next(b for b in EXAMPLE_BYTES if name_bytes >> b & 1)
                        steps.append(((next_x, next_y, True), byte))
                    if common & SLASH_BIT and in_name:
                        steps.append(((next_x, next_y, False), ord("/")))
                    for step, byte in steps:
                        if step not in came_from:
                            came_from[step] = (here, byte)
                            following.append(step)
        frontier = following
    return None


def scopes_overlap(a, b, fold_case=False, a_is_file=False, b_is_file=False):
    """Is there a path that both scopes cover? (See overlap_example.)"""
    return overlap_example(a, b, fold_case, a_is_file, b_is_file) is not None


def scope_specificity(scope, fold_case=False):
    """More literal segments and characters: the narrower claim wins."""
    segments = path_segments(scope, fold_case=fold_case)
    literal = [s for s in segments if not is_glob(s)]
    return (len(literal), len([s for s in segments if s != "**"]), sum(map(len, literal)))


# ---------------------------------------------------------------------------- policy: sessions and locks

def find_session(state, session_id):
    return next((s for s in state["active_sessions"] if s["id"] == session_id), None)


def foreign_locks_overlapping(state, owner, scopes, now, fold_case=False, is_file=lambda s: False):
    """Other sessions' live locks whose scope overlaps any of `scopes`, whatever either area
    is called: areas are labels people choose; the files are what a lock claims. This is what
    `lock` refuses. `is_file(scope)` says which scopes name an existing file, and so cover
    only it."""
    return [lock for lock in live_locks(state, now) if lock["owner"] != owner
            and example_in_both(scopes, lock, fold_case, is_file) is not None]


def example_in_both(scopes, lock, fold_case=False, is_file=lambda s: False):
    """A path one of `scopes` and the lock both cover, or None."""
    return next((found for mine in scopes for theirs in lock["scope"]
                 for found in [overlap_example(mine, theirs, fold_case, is_file(mine),
                                               is_file(theirs))] if found is not None), None)


def looks_like_path(area):
    return "/" in area or "\\" in area or is_glob(area)


class LockIndex:
    """Live locks indexed by area name and by the literal start of their scopes. Two scopes
    can only overlap when one's literal start (the segments before the first glob) is a
    prefix of the other's, so status and sync on a large state compare few pairs, not all."""

    def __init__(self, locks, fold_case=False):
        self.locks, self.fold_case = locks, fold_case
        self.position = {id(lock): i for i, lock in enumerate(locks)}
        self.by_area, self.at_prefix, self.under_prefix = {}, {}, {}
        self.longest_prefix = 0
        for lock in locks:
            self.by_area.setdefault(lock["area"], []).append(lock)
            for scope in lock["scope"]:
                prefix = literal_prefix(scope, fold_case=fold_case)
                self.longest_prefix = max(self.longest_prefix, len(prefix))
                self.at_prefix.setdefault(prefix, []).append(lock)
                for depth in range(len(prefix) + 1):
                    self.under_prefix.setdefault(prefix[:depth], []).append(lock)

    def overlapping(self, path):
        """Locks with a scope that overlaps `path`, in the order of the state file."""
        prefix = literal_prefix(path, fold_case=self.fold_case)
        candidates = list(self.under_prefix.get(prefix, []))
        # Only prefixes as long as the longest a lock has can match: a path thousands of
        # folders deep costs no more than a short one.
        for depth in range(min(len(prefix), self.longest_prefix + 1)):
            candidates += self.at_prefix.get(prefix[:depth], [])
        unique = {id(lock): lock for lock in candidates}.values()
        found = [lock for lock in unique if any(scopes_overlap(path, s, fold_case=self.fold_case)
                                                for s in lock["scope"])]
        return sorted(found, key=lambda lock: self.position[id(lock)])


def literal_prefix(scope, fold_case=False):
    segments = path_segments(scope, fold_case=fold_case)
    literal = next((i for i, segment in enumerate(segments) if is_glob(segment)), len(segments))
    return tuple(segments[:literal])


def scope_within(item, scopes, fold_case=False):
    """Is everything `item` (a path or glob) covers inside one of `scopes`? Exact for a path;
    for a glob, it is when the glob is one of them or its literal start is inside one."""
    if item in scopes:
        return True
    inner = item if not is_glob(item) else "/".join(literal_prefix(item, fold_case=fold_case))
    return bool(inner) and any(path_in_scope(inner, scope, fold_case=fold_case)
                               for scope in scopes)


def deciding_lock(locks, path, session_id, fold_case=False):
    """Of the live locks whose scope covers `path`, the one that decides what `session_id` may
    do there: its own wherever one covers the path (after --force both sessions may write),
    otherwise the most specific scope, and on a tie the stricter lock (one that allows no
    outside fixes), so that a tie never loosens a claim. (lock, the other covering locks)."""
    covering = []
    for lock in locks:
        matching = [scope for scope in lock["scope"]
                    if path_in_scope(path, scope, fold_case=fold_case)]
        if matching:
            covering.append((max(scope_specificity(scope, fold_case=fold_case)
                                 for scope in matching), lock))
    if not covering:
        return None, []
    own = [item for item in covering if item[1]["owner"] == session_id]
    ranked = sorted(own or covering, reverse=True,
                    key=lambda item: (item[0], not item[1]["allow_external_fixes"]))
    deciding = ranked[0][1]
    others = [lock for _, lock in sorted(covering, key=lambda item: item[0], reverse=True)
              if lock is not deciding]
    return deciding, others


def foreign_locks_in_the_way(state, session_id, areas, paths, now, index=None, is_folder=is_glob,
                     fold_case=False):
    """Other sessions' live locks that the work a session plans runs into, each with the
    areas or paths that run into it. A path (or an area written as one) runs into the lock
    that decides it (see deciding_lock) and, when it is a folder (`is_folder`: a glob, or a
    folder on disk), into the locks on anything inside it, unless it lies inside one of the
    session's own live locks. A file path therefore gets exactly the answer build-failure and
    the write hook give. A bare area name runs into the locks on that area, unless the session
    holds its own lock there (its scopes say which part). A lock that allows outside fixes is
    listed too: whether it blocks is the lock's own flag."""
    index = index or LockIndex(live_locks(state, now), fold_case=fold_case)
    own_locks = [lock for lock in index.locks if lock["owner"] == session_id]
    own_scopes = [scope for lock in own_locks for scope in lock["scope"]]
    own_areas = {lock["area"] for lock in own_locks}
    hits = {}
    for item, as_area in [(a, True) for a in areas] + [(p, False) for p in paths]:
        found = []
        if as_area and not looks_like_path(item):
            if item not in own_areas:
                found = [l for l in index.by_area.get(item, []) if l["owner"] != session_id]
        elif not scope_within(item, own_scopes, fold_case=fold_case):
            foreign = [l for l in index.overlapping(item) if l["owner"] != session_id]
            deciding, covering = deciding_lock(foreign, item, session_id, fold_case=fold_case)
            found = [deciding] if deciding else []
            if is_folder(item):
                found += [l for l in foreign if l is not deciding and l not in covering
                          and not all(scope_within(s, own_scopes, fold_case=fold_case)
                                      for s in l["scope"])]
        for lock in found:
            items = hits.setdefault(id(lock), [])
            if item not in items:
                items.append(item)
    return [{"lock": lock, "overlapping": hits[id(lock)]} for lock in index.locks if hits.get(id(lock))]


def sessions_in_foreign_locks(state, now, session_id=None, is_folder=is_glob, fold_case=False):
    """Each active session's touched areas that run into other sessions' live locks (what
    foreign_locks_in_the_way finds for each); only `session_id`'s when one is given."""
    index = LockIndex(live_locks(state, now), fold_case=fold_case)
    sessions = [s for s in state["active_sessions"] if session_id is None or s["id"] == session_id]
    return [{**conflict, "session": s["id"]} for s in sessions
            for conflict in foreign_locks_in_the_way(state, s["id"], s["touched_areas"], [], now, index,
                                             is_folder, fold_case=fold_case)]


def overlapping_lock_pairs(state, now, fold_case=False):
    """Pairs of live locks of different sessions that claim the same paths: a lock taken with
    --force (or written by hand) beside the one it overrode, the older first."""
    index = LockIndex(sorted(live_locks(state, now),
                             key=lambda lock: lock.get("acquired_at") or lock["expires_at"]),
                      fold_case=fold_case)
    pairs = []
    for i, first in enumerate(index.locks):
        seen = set()
        for scope in first["scope"]:
            for second in index.overlapping(scope):
                if (index.position[id(second)] > i and id(second) not in seen
                        and second["owner"] != first["owner"]):
                    seen.add(id(second))
                    pairs.append((first, second))
    return sorted(pairs, key=lambda pair: (index.position[id(pair[0])],
                                           index.position[id(pair[1])]))


def sweep_expired(state, now):
    """Drop expired locks; return the ones dropped."""
    expired = [lock for lock in state["locks"] if is_expired(lock, now)]
    if expired:
        state["locks"] = [lock for lock in state["locks"] if not is_expired(lock, now)]
    return expired


def register_session(state, session_id, focus, areas, status, now, extra=None):
    """Add a session, or refresh one that exists; return (session, created)."""
    session = touch_session(state, session_id, now)
    if session is not None:
        for area in areas:
            if area not in session["touched_areas"]:
                session["touched_areas"].append(area)
        return session, False
    session = {"id": session_id, "focus": focus, "status": status, "touched_areas": list(areas),
               "risks": [], "notes": [], "started_at": now, "last_updated": now,
               "notes_seen": len(state["global_notes"])}  # a new session starts from here
    session.update({k: v for k, v in (extra or {}).items() if v})
    state["active_sessions"].append(session)
    return session, True


def touch_session(state, session_id, now):
    """Mark the session's entry as changed `now` (its last_updated); the session, or None when
    it is not active."""
    session = find_session(state, session_id)
    if session is not None:
        session["last_updated"] = now
        session.pop("ended_at", None)  # a session that acts is back
    return session


def kept_focus(session, created, asked_focus):
    """The focus an existing session kept when `sync` asked for another one (registering
    never rewrites a session's focus: `update` edits an entry); None otherwise."""
    if created is not False or not asked_focus or one_line(asked_focus) == one_line(
            session["focus"]):
        return None
    return session["focus"]


def update_session(session, now, status=None, notes=(), areas=(), risks=()):
    """A session's own edit of its entry: notes are added as given; risks and touched areas
    only when new, so that repeating an update changes nothing."""
    if status:
        session["status"] = status
    session["notes"] += notes
    session["risks"] += [risk for risk in unique_in_order(risks) if risk not in session["risks"]]
    session["touched_areas"] += [area for area in unique_in_order(areas)
                                 if area not in session["touched_areas"]]
    session["last_updated"] = now
    return session


def add_touched_files(session, paths):
    """Record files a session's writes reached, each once: the files it adds."""
    touched = session.get("touched_files", [])
    new = [path for path in unique_in_order(paths) if path not in touched]
    if new:
        session["touched_files"] = touched + new
    return new


def signed_note(text, author=None):
    """A global note as the state holds it: `[author] text`. An unsigned note that starts
    with `[` is marked `(unsigned)`, so that it never passes for a session's."""
    if author:
        return f"[{author}] {text}"
    return f"(unsigned) {text}" if text.startswith("[") else text


def place_lock(state, request, now, force=False, fold_case=False, is_file=lambda s: False,
               take_over=()):
    """Add or replace the owner's lock on an area: (lock, conflicts, replaced). Another
    session's live lock overlapping the scopes is a conflict; with one and no `force`, the
    lock is None and the state is unchanged. With every conflict held by a session in
    `take_over` (gone: stale or ended), their scopes that overlap move into the new lock (a
    lock left with no scope goes) and the new lock names whom it was taken from."""
    owner, area = request["owner"], request["area"]
    conflicts = foreign_locks_overlapping(state, owner, request["scope"], now,
                                          fold_case=fold_case, is_file=is_file)
    taking = bool(conflicts) and all(c["owner"] in take_over for c in conflicts)
    if conflicts and not force and not taking:
        return None, conflicts, False
    lock = {"area": area, "owner": owner, "scope": list(request["scope"]),
            "reason": request["reason"], "expected_instability": request["unstable"],
            "allow_external_fixes": request["allow_external_fixes"],
            "acquired_at": now, "expires_at": moment_after(now, request["duration"])}
    if taking:  # nothing they held becomes unheld: what overlaps is the new owner's now
        lock["taken_over_from"] = unique_in_order(c["owner"] for c in conflicts)
        for theirs in conflicts:
            moving = [scope for scope in theirs["scope"] if example_in_both(
                request["scope"], {"scope": [scope]}, fold_case, is_file) is not None]
            lock["scope"] = unique_in_order(lock["scope"] + moving)
            theirs["scope"] = [scope for scope in theirs["scope"] if scope not in moving]
        state["locks"] = [l for l in state["locks"] if l["scope"]]
    replaced = [l for l in state["locks"] if l["owner"] == owner and l["area"] == area]
    state["locks"] = [l for l in state["locks"] if l not in replaced] + [lock]
    session = touch_session(state, owner, now)
    if session is not None:
        if area not in session["touched_areas"]:
            session["touched_areas"].append(area)
    return lock, conflicts, bool(replaced)


def renew_locks(state, owner, area, seconds, now):
    """Extend the owner's live locks (on `area`, or all of them) to `seconds` from `now`, never
    shorter than they were: a clock running behind must not cut a lock. (The owner's live
    locks there, those extended.) An expired lock is not renewed: it is gone."""
    mine = [lock for lock in live_locks(state, now)
            if lock["owner"] == owner and (area is None or lock["area"] == area)]
    wanted = moment_after(now, seconds)
    extended = [lock for lock in mine if wanted > lock["expires_at"]]
    for lock in extended:
        lock["expires_at"] = wanted
    if mine:
        touch_session(state, owner, now)
    return mine, extended


def release_locks(state, owner, area, now):
    """Release the owner's locks (on `area`, or all with None): only the owner may. (The
    locks released, the other sessions holding a live lock on `area` when the owner holds
    none there: nothing is released for them.)"""
    mine = [lock for lock in state["locks"]
            if lock["owner"] == owner and (area is None or lock["area"] == area)]
    if not mine:
        held_by = sorted({lock["owner"] for lock in live_locks(state, now)
                          if area is not None and lock["area"] == area})
        return [], held_by
    state["locks"] = [lock for lock in state["locks"] if lock not in mine]
    touch_session(state, owner, now)
    return mine, []


def complete_session(state, session, outcome, files, now):
    """Move the active `session` to the completed ones (the newest COMPLETED_KEPT are kept)
    and release its locks: (its record, the locks released)."""
    session_id = session["id"]
    state["active_sessions"].remove(session)
    released = [lock for lock in state["locks"] if lock["owner"] == session_id]
    state["locks"] = [lock for lock in state["locks"] if lock["owner"] != session_id]
    record = {"id": session_id, "focus": session["focus"], "completed_at": now,
              "outcome": outcome, "files_changed": list(files)}
    state["completed_sessions"] = (state["completed_sessions"] + [record])[-COMPLETED_KEPT:]
    return record, released


# ---------------------------------------------------------------------------- policy: build failures, directives, intent

def build_failure_verdict(state, session_id, now, area=None, path=None, fold_case=False):
    """The seed's decision tree. Returns (verdict, deciding lock or None, other covering locks).

    For a path the lock that decides is deciding_lock's (the asker's own wherever it covers
    the path, else the most specific scope, else the stricter); for a bare area name, the
    asker's own lock on it, else the stricter of the others' locks on it.
    """
    locks = live_locks(state, now)
    if path is not None:
        deciding, others = deciding_lock(locks, path, session_id, fold_case=fold_case)
    else:
        named = sorted((lock for lock in locks if lock["area"] == area), reverse=True,
                       key=lambda l: (l["owner"] == session_id, not l["allow_external_fixes"]))
        deciding, others = (named[0], named[1:]) if named else (None, [])
    if deciding is None:
        return "fix", None, []
    if deciding["owner"] == session_id:
        return "fix", deciding, others
    if deciding["allow_external_fixes"]:
        return "fix_and_notify", deciding, others
    return "report_only", deciding, others


def changes_in_foreign_locks(state, session_id, paths, now, fold_case=False):
    """[(lock, paths)] for the paths whose deciding lock (deciding_lock) is another
    session's: what a session changed in someone else's claim, lock by lock."""
    locks, found = live_locks(state, now), {}
    for path in paths:
        lock, _ = deciding_lock(locks, path, session_id, fold_case=fold_case)
        if lock is not None and lock["owner"] != session_id:
            found.setdefault(id(lock), (lock, []))[1].append(path)
    return list(found.values())


VERDICT_STRICTNESS = ("fix", "fix_and_notify", "report_only")


def strictest_verdict(state, session_id, paths, now, fold_case=False):
    """build_failure_verdict for a file reached by several paths (as written, and through a
    symlink on the way): the strictest, since a write lands in every lock that holds one."""
    verdicts = [build_failure_verdict(state, session_id, now, path=path, fold_case=fold_case)
                for path in paths]
    return max(verdicts, key=lambda v: VERDICT_STRICTNESS.index(v[0]))


def normalise_rule(name):
    """`Intent Scope`, `intent-scope` and `intent_scope` are one rule."""
    return regex(r"[\s_-]+").sub("_", name.strip().lower()).strip("_")


def audit_proposals(directive_log, threshold):
    """Rules overridden at least `threshold` times, most overridden first."""
    by_rule = {}
    for entry in directive_log:
        by_rule.setdefault(normalise_rule(entry["rule_overridden"]), []).append(entry)
    proposals = []
    for rule, entries in by_rule.items():
        if len(entries) < threshold:
            continue
        proposals.append({
            "rule": rule, "count": len(entries),
            "sessions": sorted({e["session"] for e in entries}),
            "reasons": unique_in_order(e["reason"] for e in entries),
            "directives": unique_in_order(e["directive"] for e in entries),
            "first": min(e["timestamp"] for e in entries),
            "last": max(e["timestamp"] for e in entries),
        })
    return sorted(proposals, key=lambda p: (-p["count"], p["rule"]))


def shared_worktrees(state):
    """Worktrees that more than one active session registered from: their uncommitted
    changes mix, so builds and diffs of one session include the other's work. A path names
    a worktree only on its machine: two machines' equal paths are two worktrees."""
    by_worktree = {}
    for session in state["active_sessions"]:
        if session.get("worktree"):
            by_worktree.setdefault((session.get("machine"), session["worktree"]),
                                   []).append(session["id"])
    return [{"worktree": worktree, "sessions": ids}
            for (_, worktree), ids in by_worktree.items() if len(ids) > 1]


def is_on_machine(session, machine):
    """Do the session's machine-local facts (its worktree path, its bound conversations)
    mean something on `machine`? A session that records no machine is from before sharing."""
    return machine is None or session.get("machine") in (None, machine)


def session_of_conversation(state, conversation, machine=None):
    """The session a conversation (Cascade's trajectory, ...) is bound to on `machine`, or
    None: it owns nothing. A conversation is bound where it runs; another machine's binding
    of the same id is not this one's."""
    if not conversation:
        return None
    return next((s for s in state["active_sessions"] if conversation in s.get("trajectories", [])
                 and is_on_machine(s, machine)), None)


def bind_conversation(state, conversation, session_id):
    """Bind a conversation to one session (a conversation belongs to one session at a time)."""
    for session in state["active_sessions"]:
        bound = session.get("trajectories", [])
        if session["id"] == session_id and conversation not in bound:
            session["trajectories"] = bound + [conversation]
            session.pop("ended_at", None)  # a session a conversation binds to again is back
        elif session["id"] != session_id and conversation in bound:
            session["trajectories"] = [t for t in bound if t != conversation]


def session_claims(session, state, is_path):
    """The paths a session said it works on: touched areas that are paths (`is_path` tells a
    path like `src/api` from an area name like `backend`) and its own lock scopes."""
    areas = [area for area in session["touched_areas"] if is_path(area)]
    return areas + [scope for lock in state["locks"] if lock["owner"] == session["id"]
                    for scope in lock["scope"]]


def drift_paths(claims, paths, fold_case=False):
    """Paths outside every claim: scope drift. With no path claimed, drift cannot be judged."""
    if not claims:
        return []
    return [path for path in paths
            if not any(path_in_scope(path, c, fold_case=fold_case) for c in claims)]


# ---------------------------------------------------------------------------- the clock, git and the files

# The reads of the world outside the state that policy decides on: the time, how the file
# system compares names, what git and a walk of the tree say changed. Policy gets their
# answers as arguments.


def utc_now():
    return moment_of(None)


def moment_of(seconds):
    """A moment (see policy: time) of seconds since the epoch; None: now."""
    at = time.gmtime(seconds)
    return (f"{at.tm_year:04d}-{at.tm_mon:02d}-{at.tm_mday:02d}T"
            f"{at.tm_hour:02d}:{at.tm_min:02d}:{at.tm_sec:02d}+00:00")


def file_system_ignores_case(folder):
    """Does `folder`'s file system treat `.GIT` and `.git` as one name?"""
    if os.name == "nt":
        return True
    probe = os.path.join(folder, ".git")
    return os.path.exists(probe) and os.path.exists(os.path.join(folder, ".GIT"))


def run_git(checkout, *args):
    """git's output for a local question, "" when it fails or takes over 20 s (its whole
    process group is then ended: see run_in_own_group)."""
    import subprocess
    try:
        proc = run_in_own_group(["git", "-C", str(checkout), *args], timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.decode("utf-8", "surrogateescape") if proc.returncode == 0 else ""


def files_changed_since(ctx, session):
    """What the session changed: the files its write hook recorded and git's commits since it
    started; git's uncommitted changes only when the hook recorded nothing (in a checkout
    shared with other sessions those may be theirs)."""
    files = list(session.get("touched_files", []))
    local = is_on_machine(session, ctx.machine)  # another machine's path is no folder here
    checkout = (session.get("worktree") if local else None) or ctx.checkout_root
    log = run_git(checkout, "log", f"--since={session['started_at']}", "--name-only",
                  "--format=", "-z")
    status = "" if files else run_git(checkout, "status", "--porcelain", "-z",
                                      "--untracked-files=all")
    files += [name for name in log.split("\0") if name]
    files += porcelain_paths(status, old_names=False)
    own_folder = STATE_FOLDER + "/"
    return sorted({f for f in files if not f.startswith(own_folder)})


def porcelain_paths(status, old_names=True):
    """The paths `git status --porcelain -z` names; a rename's old name too with `old_names`."""
    paths, records, index = [], status.split("\0"), 0
    while index < len(records):
        record = records[index]
        index += 1
        if len(record) > 3:
            paths.append(record[3:])
            if record[0] in "RC":
                if old_names and index < len(records) and records[index]:
                    paths.append(records[index])
                index += 1  # a rename's second record is the old name
    return paths


def uncommitted_paths(checkout, hidden=False):
    """The files of a worktree with changes not committed (staged, unstaged, untracked and not
    ignored, both names of a rename), or None when git cannot tell. A submodule or a nested
    repository with changes inside is named as a folder, with a trailing `/`. With `hidden`,
    the files git was told not to look at (assume-unchanged, skip-worktree) count too: their
    edits are invisible to it."""
    import subprocess
    try:
        proc = run_in_own_group(["git", "-C", str(checkout), "status", "--porcelain", "-z",
                                 "--untracked-files=all", "--no-renames"], timeout=20)
        listed = run_in_own_group(["git", "-C", str(checkout), "ls-files", "-v", "-z"],
                                  timeout=20) if hidden else None
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0 or (listed is not None and listed.returncode != 0):
        return None
    own_folder = STATE_FOLDER + "/"
    paths = porcelain_paths(proc.stdout.decode("utf-8", "surrogateescape"))
    if listed is not None:  # `h`: assume-unchanged; `S`: skip-worktree (and lowercase `s`)
        paths += [entry[2:] for entry in listed.stdout.decode("utf-8", "surrogateescape").split(
            "\0") if entry[:2] in ("h ", "S ", "s ")]
    return [path if path.endswith("/") or not os.path.isdir(os.path.join(checkout, path))
            else path + "/" for path in unique_in_order(paths) if not path.startswith(own_folder)]


# ---------------------------------------------------------------------------- presence

# What the hooks see of each session, kept cheaply: every hook event and every command of a
# session leaves a small record beside the state (one file per conversation, or per session
# for a command run with --session), and the state itself is told at most once a minute per
# session, so that other machines see it too. A session's presence is the newest of what
# its records and its state entry say; policy first, then the records on disk.

PRESENCES = ("working", "waiting", "idle", "stale", "ended")
# At one moment, the later of two signals in this order wins: an end after the last action.
SIGNAL_RANK = {"working": 0, "running": 1, "waiting": 2, "ended": 3}  # records: the first three


def presence_thresholds(environ):
    """(idle_after, stale_after) in seconds, from ORCHESTRATOR_IDLE_AFTER and
    ORCHESTRATOR_STALE_AFTER (the tool's durations); a bad value is bad input."""
    texts = [environ.get(name) or default for name, default in (
        (IDLE_AFTER_ENV, DEFAULT_IDLE_AFTER), (STALE_AFTER_ENV, DEFAULT_STALE_AFTER))]
    values = []
    for name, text in zip((IDLE_AFTER_ENV, STALE_AFTER_ENV), texts):
        try:
            values.append(parse_duration(text))
        except UsageError:
            raise UsageError(f"{name}={text!r} is not a duration: set it to a form like 90s, "
                             "10m or 2h, or unset it for the default") from None
    if values[0] > values[1]:
        raise UsageError(f"{IDLE_AFTER_ENV}={texts[0]} is longer than {STALE_AFTER_ENV}="
                         f"{texts[1]}: a session is idle before it is stale; lower the first "
                         "or raise the second")
    return values[0], values[1]


def session_signals(session, records):
    """(moment, kind) for everything that tells when `session` last acted: its entry (its
    last edit, what the hooks folded in, its end) and its records on this machine."""
    signals = [(session["last_updated"], "working")]
    signals += [(session[field], kind) for field, kind in (
        ("last_seen", "working"), ("waiting_since", "waiting"), ("ended_at", "ended"))
        if session.get(field)]
    return signals + list(records)


def presence_of(signals, now, idle_after, stale_after):
    """(presence, last seen): the newest signal decides. An end stays an end until the session
    acts again; silence longer than `stale_after` is stale whatever came last (a person away
    for the night leaves an agent waiting); a waiting agent waits; a command that has not
    finished works; otherwise silence longer than `idle_after` is idle."""
    moment, kind = max(signals, key=lambda signal: (signal[0], SIGNAL_RANK[signal[1]]))
    if kind == "ended":
        return "ended", moment
    silent = seconds_between(moment, now)
    if silent > stale_after:
        return "stale", moment
    if kind == "waiting":
        return "waiting", moment
    if kind == "running" or silent <= idle_after:
        return "working", moment
    return "idle", moment


def is_gone(presence):
    """May another session take this one's locks over (`lock --take-over`)?"""
    return presence in ("stale", "ended")


def folded_presence(session, kind, now):
    """What the state's entry should say of a session whose conversation is `kind` now, or
    None when it was told within PRESENCE_FOLD_SECONDS: the records beside the state say it
    at once on this machine; other machines learn it at most a minute late."""
    told = max(session.get("last_seen") or "", session["last_updated"])
    if seconds_between(told, now) < PRESENCE_FOLD_SECONDS:
        return None
    return {"last_seen": now, "waiting_since": now if kind == "waiting" else None,
            "ended_at": None}


def apply_fields(entry, fields):
    """Set each field; None removes it (an OMISSIBLE field that no longer holds)."""
    for name, value in fields.items():
        if value is None:
            entry.pop(name, None)
        else:
            entry[name] = value


def end_of_session(state, session_id, uncommitted, now, fold_case=False):
    """The session whose last conversation ended: it is marked ended; each of its live locks
    over no uncommitted change is released, each over uncommitted work stays, marked with the
    changed files in it. `uncommitted`: the changed paths of its worktree, or None when git
    could not tell (then every lock stays). (released locks, kept locks)."""
    session = find_session(state, session_id)
    apply_fields(session, {"ended_at": now, "waiting_since": None})
    released, kept = [], []
    for lock in live_locks(state, now):
        if lock["owner"] != session_id:
            continue
        inside = None if uncommitted is None else [
            path for path in uncommitted if touches_scopes(path, lock["scope"], fold_case)]
        if inside == []:
            released.append(lock)
            continue
        if inside:
            lock["left_uncommitted"] = inside
        kept.append(lock)
    state["locks"] = [lock for lock in state["locks"] if not any(lock is r for r in released)]
    return released, kept


def touches_scopes(path, scopes, fold_case=False):
    """Is a changed path in the scopes? A folder (a trailing `/`: a submodule or a nested
    repository with changes inside) is, when anything below it may be."""
    if path.endswith("/"):
        return any(scopes_overlap(scope, path + "**", fold_case) for scope in scopes)
    return any(path_in_scope(path, scope, fold_case=fold_case) for scope in scopes)


# -- the records beside the state

SEEN_PREFIX = "seen-"
SESSION_KEY_PREFIX = "session:"  # a record of a command run with --session, not a conversation


def seen_record_path(store, who):
    return os.path.join(os.path.dirname(store.path), f"{SEEN_PREFIX}{fnv1a(who):08x}-{len(who)}")


def fnv1a(text):
    """A 32-bit FNV-1a hash of `text`: a record's name, computed in the write hook's path,
    where importing binascii or zlib for a crc32 would cost a thirtieth of its budget."""
    value = 0x811C9DC5
    for byte in text.encode("utf-8", "surrogatepass"):
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def record_seen(store, who, kind, at=None):
    """Note that `who` (a conversation, or SESSION_KEY_PREFIX + a session id) acted now, and
    how (`kind`, a key of SIGNAL_RANK). One small file beside the state, never through a
    symlink; where none can be written, presence is only what the state says."""
    at = time.time() if at is None else at
    # Every record of one `who` has one length (each kind has 7 letters, the time a fixed
    # width, the name says the length of `who`), so it is rewritten in place: truncating a
    # file costs ten times the write, in a hook that runs before every edit.
    record = f"{kind}\n{at:020.6f}\n{who}".encode("utf-8", "surrogatepass")
    try:
        store.check_folders()
        fd = open_regular(seen_record_path(store, who), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.write(fd, record)
        finally:
            os.close(fd)
    except (OSError, OrchestratorError, ValueError):
        pass


def forget_seen(store, who):
    try:
        store.check_folders()
        os.unlink(seen_record_path(store, who))
    except (OSError, OrchestratorError, ValueError):
        pass


def read_seen(store):
    """{who: (moment, kind)} of every record beside the state; unreadable ones are skipped."""
    folder = os.path.dirname(store.path)
    try:
        names = [name for name in os.listdir(folder) if name.startswith(SEEN_PREFIX)]
    except OSError:
        return {}
    found, latest = {}, time.time() + SEEN_FUTURE_SECONDS
    for name in names:
        try:
            kind, at, who = (read_regular(os.path.join(folder, name)) or b"").decode(
                "utf-8", "surrogatepass").split("\n", 2)
            seconds = float(at)
            if not 0 <= seconds <= latest:  # nan, inf, or a time still to come: planted
                continue
            moment = moment_of(seconds)
        except (OSError, ValueError, OverflowError, OrchestratorError):
            continue
        if kind in SIGNAL_RANK:
            found[who] = (moment, kind)
    return found


SEEN_LIFETIME_SECONDS = 86400  # a record nobody refreshed for a day: a conversation long closed
SEEN_FUTURE_SECONDS = 300  # a record from further ahead than clocks drift apart is not believed


def sweep_seen(store, now_seconds):
    """Remove the records nobody has refreshed for SEEN_LIFETIME_SECONDS."""
    folder = os.path.dirname(store.path)
    try:
        store.check_folders()
        names = [name for name in os.listdir(folder) if name.startswith(SEEN_PREFIX)]
    except (OSError, OrchestratorError):
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            if now_seconds - os.lstat(path).st_mtime > SEEN_LIFETIME_SECONDS:
                os.unlink(path)
        except OSError:
            continue  # a folder planted under a record's name, a file gone meanwhile


def records_of(session, seen, machine=None):
    """The records of `session`'s bound conversations and of its own commands on this machine."""
    keys = [SESSION_KEY_PREFIX + session["id"]]
    if is_on_machine(session, machine):
        keys += session.get("trajectories", [])
    return [seen[key] for key in keys if key in seen]


def presences(state, seen, now, thresholds, machine=None):
    """{session id: {"presence", "last_seen"}} for every active session."""
    idle_after, stale_after = thresholds
    found = {}
    for session in state["active_sessions"]:
        presence, last_seen = presence_of(session_signals(session, records_of(
            session, seen, machine)), now, idle_after, stale_after)
        found[session["id"]] = {"presence": presence, "last_seen": last_seen}
    return found


# ---------------------------------------------------------------------------- radar

# Overlaps nobody declared. Each live session's changes (the files its hooks recorded, the
# uncommitted changes of its worktree, what its commits changed since it started) are put
# side by side; two sessions whose changes meet are an `overlap`, and where they work in two
# worktrees or on two branches, git merges their work in memory (`git merge-tree
# --write-tree`, git 2.38 and later): files it cannot merge are a `merge` conflict. Nothing
# in git changes: a worktree's uncommitted work becomes a commit object through a temporary
# index; no ref, stash, index or file of the worktree is touched. Policy first, then git.

RADAR_RECHECK_SECONDS = 30  # a worktree's changes no file time shows are looked for again then
MERGE_TREE_SINCE = (2, 38)  # git merge-tree --write-tree
SNAPSHOT_IDENTITY = {"GIT_AUTHOR_NAME": "orchestrator", "GIT_AUTHOR_EMAIL": "radar@localhost",
                     "GIT_COMMITTER_NAME": "orchestrator", "GIT_COMMITTER_EMAIL": "radar@localhost",
                     "GIT_AUTHOR_DATE": "@0 +0000", "GIT_COMMITTER_DATE": "@0 +0000"}


def is_live(presence):
    return presence in ("working", "waiting", "idle")


def meeting_pairs(sides):
    """Pairs of sessions whose changed files meet: [(a, b, shared paths)] in the order given.
    `sides`: {session id: {"changed": set of paths, ...}}."""
    ids = list(sides)
    pairs = []
    for i, first in enumerate(ids):
        for second in ids[i + 1:]:
            shared = sides[first]["changed"] & sides[second]["changed"]
            if shared:
                pairs.append((first, second, sorted(shared)))
    return pairs


def can_merge_in_memory(first, second):
    """Two sides whose lines of work git can merge: each has a commit, in two worktrees (or on
    two machines); one worktree's sessions share their files, so their changes mix instead."""
    return bool(first.get("tip") and second.get("tip")) and first.get("place") != second.get("place")


def radar_conflicts(pairs, predictions):
    """Conflict objects of kind `merge` (git cannot merge these files) and `overlap` (both
    changed them; they merge, or nobody can tell yet) for each pair that meets. `predictions`:
    {(a, b): {"conflicts": [...], "remote": where one side's branch was fetched from, or
    None}}."""
    found = []
    for first, second, shared in pairs:
        predicted = predictions.get((first, second))
        conflicted = sorted(predicted["conflicts"]) if predicted else []
        overlapping = sorted(set(shared) - set(conflicted))
        extra = {"remote": predicted["remote"]} if predicted and predicted.get("remote") else {}
        if conflicted:
            found.append({"kind": "merge", "sessions": [first, second], "paths": conflicted,
                          **extra})
        if overlapping:
            found.append({"kind": "overlap", "sessions": [first, second], "paths": overlapping,
                          "merges_cleanly": bool(predicted), **extra})
    return found


# -- what git says, and what it said before (a cache in the user's folder)

def git_version(checkout):
    """git's version as a tuple of numbers, () when it cannot tell."""
    found = regex(r"(\d+)\.(\d+)(?:\.(\d+))?").search(run_git(checkout, "version"))
    return tuple(int(part) for part in found.groups() if part) if found else ()


RADAR_GIT_SECONDS = 8  # a worktree git cannot read in this time is skipped, and said so
# Options for every git the radar runs: a temporary index stays whole (no split index, whose
# shared files git would write into .git), no file system monitor, no hooks.
RADAR_GIT_OPTIONS = ("-c", "core.splitIndex=false", "-c", "core.fsmonitor=false",
                     "-c", f"core.hooksPath={os.devnull}")


def radar_git(checkout, *args, env=None, objects=None):
    """git for the radar in one worktree, named by its git folder (read from its files), so
    that a worktree without one never becomes the repository around it. With `objects`, new
    objects go to that folder in the user's cache (the repository's own are read through
    git's alternates): the radar writes nothing into the repository. (exit code, fields) as
    NUL-separated fields of its output); (None, []) when git cannot run or takes longer than
    RADAR_GIT_SECONDS."""
    import subprocess
    git_dir, common = git_folders(checkout)
    if git_dir is None:
        return None, []
    extra = dict(env or {})
    if objects:
        extra.update(GIT_OBJECT_DIRECTORY=objects,
                     GIT_ALTERNATE_OBJECT_DIRECTORIES=os.path.join(common, "objects"))
    try:
        proc = run_in_own_group(["git", f"--git-dir={git_dir}", f"--work-tree={checkout}",
                                 *RADAR_GIT_OPTIONS, *args], timeout=RADAR_GIT_SECONDS,
                                env={**os.environ, **extra}, cwd=checkout)
    except (OSError, subprocess.SubprocessError):
        return None, []
    text = proc.stdout.decode("utf-8", "surrogateescape")
    return proc.returncode, [field for field in text.split("\0") if field]


def git_folders(checkout):
    """(the worktree's own git folder, the repository's common one), read from git's files."""
    dot_git = os.path.join(checkout, ".git")
    if os.path.isfile(dot_git):
        pointer = (read_text_or_none(dot_git) or "").strip()
        if not pointer.startswith("gitdir:"):
            return None, None
        git_dir = os.path.join(checkout, pointer[len("gitdir:"):].strip())
    else:
        git_dir = dot_git
    common = read_text_or_none(os.path.join(git_dir, "commondir"))
    return git_dir, os.path.join(git_dir, common.strip()) if common else git_dir


def head_commit(checkout):
    """The worktree's HEAD commit, read from git's files (no process: the radar looks at every
    worktree on every report); git itself where the files say something unusual (a packed
    ref, an unborn branch)."""
    try:
        git_dir, common = git_folders(checkout)
        head = (read_text_or_none(os.path.join(git_dir, "HEAD")) or "").strip() if git_dir else ""
        if head.startswith("ref: "):
            for folder in (git_dir, common):
                value = (read_text_or_none(os.path.join(folder, head[5:])) or "").strip()
                if len(value) in (40, 64):
                    return value
        elif len(head) in (40, 64):
            return head
    except (OSError, ValueError, OrchestratorError):
        pass
    code, fields = radar_git(checkout, "rev-parse", "-q", "--verify", "HEAD^{commit}")
    return fields[0].strip() if code == 0 and fields else None


def snapshot_commit(checkout, head, objects):
    """(the files of the worktree not committed, a commit of the worktree as it is on top of
    `head`): tracked changes and the untracked files git does not ignore, staged into a copy
    of its index in a temporary folder, so that only objects are written. The same content
    always makes the same commit (a fixed identity and date): the predictions cached by
    commit stay valid. (None, None) when git cannot tell."""
    import shutil
    import tempfile
    git_dir, _ = git_folders(checkout)
    if git_dir is None:
        return None, None
    folder = tempfile.mkdtemp(prefix="orchestrator-radar-")
    try:
        index = os.path.join(folder, "index")
        if os.path.isfile(os.path.join(git_dir, "index")):
            # with its time, as git's own index: git judges whether an entry's stat data can
            # be trusted ("racy git") by the index file's time
            shutil.copy2(os.path.join(git_dir, "index"), index)
        env = {"GIT_INDEX_FILE": index, **SNAPSHOT_IDENTITY}
        if radar_git(checkout, "add", "-A", "--", ".", env=env, objects=objects)[0] != 0:
            return None, None
        code, changed = radar_git(checkout, "diff-index", "--cached", "--name-only", "-z",
                                  "--no-renames", head, env=env, objects=objects)
        if code != 0:
            return None, None
        own_folder = STATE_FOLDER + "/"
        changed = [path for path in changed if not path.startswith(own_folder)]
        if not changed:
            return [], head
        code, tree = radar_git(checkout, "write-tree", env=env, objects=objects)
        if code != 0 or not tree:
            return None, None
        code, commit = radar_git(checkout, "commit-tree", tree[0].strip(), "-p", head, "-m",
                                 "orchestrator: uncommitted work, for the radar", env=env,
                                 objects=objects)
        return (changed, commit[0].strip()) if code == 0 and commit else (None, None)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def file_marks(checkout, paths):
    """(path, mtime_ns, size) of each path, or a mark for its absence: what says a known
    changed file changed again, without git."""
    marks = []
    for path in sorted(paths)[:500]:
        try:
            info = os.lstat(os.path.join(checkout, path))
            marks.append((path, info.st_mtime_ns, info.st_size))
        except (OSError, ValueError):
            marks.append((path, 0, -1))
    return marks


def worktree_fingerprint(checkout, head, known):
    """What says a worktree changed since the radar last looked: its HEAD, its index (an add,
    a commit, a checkout) and its known changed files."""
    try:
        git_dir, _ = git_folders(checkout)
        info = os.stat(os.path.join(git_dir, "index")) if git_dir else None
        index = (info.st_mtime_ns, info.st_size) if info else None
    except (OSError, ValueError, OrchestratorError):
        index = None
    return [head, index, file_marks(checkout, known)]


def worktree_side(checkout, since, cache, now_seconds, activity=None, objects=None):
    """What a worktree's session has changed, and the commit of its work: {"head", "tip",
    "changed", "uncommitted"}. Read again when its HEAD, its index or a known changed file
    moved, when its session acted since (`activity`: its agents' edits and commands come
    with hook events), or RADAR_RECHECK_SECONDS after the last look (an edit no agent made,
    a person's editor); else from `cache` (updated)."""
    head = head_commit(checkout)
    if head is None:
        return None
    kept = current_side(checkout, head, cache, now_seconds, activity)
    if kept is not None:
        return kept
    uncommitted, tip = snapshot_commit(checkout, head, objects)
    if uncommitted is None:  # git failed or took too long: not again before the next look
        cache[checkout] = {"head": head, "failed": True, "checked": now_seconds,
                           "activity": activity, "changed": [],
                           "fingerprint": worktree_fingerprint(checkout, head, [])}
        return cache[checkout]
    # --since counts a commit of the session's first second: the one it started from; the
    # first parent and no merges: a merge of main brings others' commits, not its own
    code, committed = radar_git(checkout, "log", f"--since={moment_after(since, 1)}",
                                "--first-parent", "--no-merges", "--name-only", "--format=",
                                "-z", head)
    changed = sorted(set(uncommitted) | set(committed if code == 0 else []))
    side = {"head": head, "tip": tip, "changed": changed, "uncommitted": sorted(uncommitted),
            "checked": now_seconds, "activity": activity,
            "fingerprint": worktree_fingerprint(checkout, head, changed)}
    cache[checkout] = side
    return side


def current_side(checkout, head, cache, now_seconds, activity):
    """The cached reading of a worktree when nothing says it changed since, else None."""
    kept = cache.get(checkout)
    if (isinstance(kept, dict) and kept.get("head") == head and kept.get("activity") == activity
            and 0 <= now_seconds - kept.get("checked", 0) < RADAR_RECHECK_SECONDS
            and kept.get("fingerprint") == worktree_fingerprint(checkout, head,
                                                                kept.get("changed", ()))):
        return kept
    return None


def remote_branch_side(checkout, branch):
    """Another machine's session works on `branch`: its commit as last fetched here, and how
    many seconds ago that fetch moved it (from the ref's log), or None."""
    code, lines = radar_git(checkout, "for-each-ref", "--format=%(objectname) %(refname)%00",
                            f"refs/remotes/*/{branch}")
    if code != 0 or not lines or " " not in lines[0]:
        return None
    commit, ref = lines[0].strip().split(" ", 1)
    code, when = radar_git(checkout, "log", "-g", "-1", "--date=unix", "--format=%gd", ref)
    stamp = when[0].strip().rpartition("@{")[2].rstrip("}") if code == 0 and when else ""
    fetched = int(stamp) if stamp.isdigit() else None  # a ref with no log: age unknown
    return {"tip": commit, "ref": ref, "fetched": fetched}


def predict_merge(checkout, first, second, objects=None):
    """Would git merge two lines of work? {"conflicts": the files git cannot merge}, or None
    when git cannot tell (no merge base, an error). One `git merge-tree --write-tree` in
    memory: it writes objects only, into `objects`."""
    code, fields = radar_git(checkout, "merge-tree", "--write-tree", "-z", "--name-only",
                             "--no-messages", first, second, objects=objects)
    if code not in (0, 1) or not fields:
        return None
    return {"conflicts": unique_in_order(fields[1:]) if code == 1 else []}


def radar_cache_path(main_root):
    import binascii
    crc = binascii.crc32(os.fsencode(main_root))
    return os.path.join(user_cache_folder(), f"radar-{crc:08x}")


def read_radar_cache(main_root):
    try:
        cached = marshal.loads(read_regular(radar_cache_path(main_root)) or b"")
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    return cached if isinstance(cached, dict) and cached.get("root") == main_root else {}


def write_radar_cache(main_root, cache):
    try:
        os.makedirs(user_cache_folder(), mode=0o700, exist_ok=True)
        atomic_write(radar_cache_path(main_root), marshal.dumps({**cache, "root": main_root}),
                     durable=False, mode=0o600)
    except (OSError, ValueError):
        pass  # a cache that cannot be written only costs speed


RADAR_THREADS = 8


def in_parallel(work, items):
    """work(item) for each item, in a thread each when there are several: the work is git,
    which runs in processes of its own, so the machine's cores share it."""
    if len(items) == 1:
        work(items[0])
    elif items:
        import threading
        for start in range(0, len(items), RADAR_THREADS):  # at most this many git at once
            threads = [threading.Thread(target=work, args=(item,))
                       for item in items[start:start + RADAR_THREADS]]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()


def radar(main_root, state, presence, machine, now_seconds, seen=None):
    """The radar over the live sessions: (conflict objects of kind `merge` and `overlap`,
    {"old_git": the version of a git too old to predict merges, to be said once on this
    machine, or None; "unreadable": worktrees git could not read in time}). A session's
    changes: the files its hooks recorded, and, when it has a worktree of its own on this
    machine (one of the repository's, as git lists them), that worktree's uncommitted
    changes and its commits since the session started; another machine's session brings its
    recorded files, and its branch as last fetched from the remote. Sessions sharing one
    worktree bring their recorded files only (their uncommitted changes mix). The worktrees
    are read in parallel; a pair is merged in memory only when its changes meet; each
    worktree's reading and each pair's prediction is kept in a cache in the user's folder,
    and the objects the radar makes are kept there too, never in the repository."""
    said = {"old_git": None, "unreadable": []}
    live = [s for s in state["active_sessions"] if is_live(presence[s["id"]]["presence"])]
    if len(live) < 2:
        return [], said
    cache = read_radar_cache(main_root)
    objects = radar_objects(main_root, cache, now_seconds)
    worktrees, predicted = cache.setdefault("worktrees", {}), cache.setdefault("pairs", {})
    before = marshal.dumps(cache)
    ours = repository_worktrees(main_root)
    def place_of(session):  # a worktree of its own on this machine, or None
        return ((session.get("machine"), session["worktree"])
                if is_on_machine(session, machine) and session.get("worktree") else None)

    places = {}
    for session in live:
        places.setdefault(place_of(session), []).append(session["id"])
    read, pending = {}, []

    def activity_of(session):  # its agents' last hook event: their edits come with one
        return max((moment for moment, _ in records_of(session, seen or {}, machine)),
                   default=None)

    def look(session):
        read[session["id"]] = worktree_side(session["worktree"], session["started_at"],
                                            worktrees, now_seconds, activity_of(session),
                                            objects)

    for session in live:
        place = place_of(session)
        if (place and len(places[place]) == 1
                and os.path.realpath(session["worktree"]) in ours):
            head = head_commit(session["worktree"])
            kept = head and current_side(session["worktree"], head, worktrees, now_seconds,
                                         activity_of(session))
            if kept:
                read[session["id"]] = kept
            elif head:
                pending.append(session)
    in_parallel(look, pending)
    sides = {}
    for session in live:
        side = {"changed": set(session.get("touched_files", [])), "tip": None, "place": None}
        found = read.get(session["id"])
        if found and found.get("failed"):
            said["unreadable"].append(session["worktree"])
        elif found:
            side.update(tip=found["tip"], place=place_of(session))
            side["changed"] |= set(found["changed"])
        elif not is_on_machine(session, machine) and session.get("branch"):
            remote = remote_branch_side(main_root, session["branch"])
            if remote:
                side.update(tip=remote["tip"], place=("remote", remote["ref"]), remote=remote)
        sides[session["id"]] = side
    pairs = meeting_pairs(sides)
    predictions = {}
    mergeable = [(a, b) for a, b, _ in pairs if can_merge_in_memory(sides[a], sides[b])]
    if mergeable:
        version = known_git_version(main_root, cache)
        if version and version < MERGE_TREE_SINCE:
            if not cache.get("told_old_git"):  # said once on this machine
                said["old_git"] = ".".join(map(str, version))
                cache["told_old_git"] = True
            mergeable = []
    keys = {(first, second): f"{sides[first]['tip']} {sides[second]['tip']}"
            for first, second in mergeable}
    missing = unique_in_order(key for key in keys.values() if key not in predicted)

    def merge(key):
        result = predict_merge(main_root, *key.split(" "), objects=objects)
        if result is not None:
            predicted[key] = result
    in_parallel(merge, missing)
    for first, second in mergeable:
        result = predicted.get(keys[(first, second)])
        if result is not None:
            remote = sides[first].get("remote") or sides[second].get("remote")
            predictions[(first, second)] = {**result, "remote": {
                "session": second if sides[second].get("remote") else first,
                "ref": remote["ref"], "fetched_seconds": None if remote["fetched"] is None
                else max(int(now_seconds - remote["fetched"]), 0)} if remote else None}
    if len(predicted) > RADAR_PAIRS_KEPT:  # pairs of commits long gone
        cache["pairs"] = dict(list(predicted.items())[-RADAR_PAIRS_KEPT:])
    if marshal.dumps(cache) != before:
        write_radar_cache(main_root, cache)
    return radar_conflicts(pairs, predictions), said


RADAR_PAIRS_KEPT = 2000
RADAR_OBJECTS_DAYS = 1  # the radar's own objects are dropped, and made again, after this


def radar_objects(main_root, cache, now_seconds):
    """The folder, in the user's cache, where the radar's commits and merged trees go; emptied
    (with the readings and predictions that name them) once it is a day old."""
    folder = radar_cache_path(main_root) + "-objects"
    if now_seconds - cache.get("objects_since", now_seconds) > RADAR_OBJECTS_DAYS * 86400:
        import shutil  # here only: its import is a tenth of the session-start check's time
        shutil.rmtree(folder, ignore_errors=True)
        cache.update(worktrees={}, pairs={})
    if not os.path.isdir(folder):
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError:
            return None
        cache["objects_since"] = now_seconds
    return folder


def repository_worktrees(main_root):
    """The real paths of the repository's worktrees, from git's own files: the main checkout
    and each `.git/worktrees/NAME/gitdir`. A path the state names is read only when it is one
    of these: the state may come from another machine, or from anyone who can push it."""
    found = {os.path.realpath(main_root)}
    folder = os.path.join(main_root, ".git", "worktrees")
    try:
        names = os.listdir(folder)
    except OSError:
        return found
    for name in names:
        pointer = read_text_or_none(os.path.join(folder, name, "gitdir"))
        if pointer and pointer.strip().endswith(".git"):
            found.add(os.path.realpath(os.path.dirname(pointer.strip())))
    return found


def known_git_version(main_root, cache):
    """git's version, asked again whenever the git on PATH is another file than last time."""
    import shutil
    path = shutil.which("git") or ""
    try:
        stamp = [path, os.stat(path).st_mtime_ns] if path else []
    except OSError:
        stamp = []
    if cache.get("git_stamp") != stamp or not cache.get("git_version"):
        cache.update(git_stamp=stamp, git_version=list(git_version(main_root)))
    return tuple(cache["git_version"])


# ---------------------------------------------------------------------------- messages

# Notes addressed to sessions, delivered into the conversation they are for, once. A session's
# unread messages live in its entry (`inbox`), the ones it has read in `inbox_read` (the newest
# INBOX_READ_KEPT), and how many global notes it has been shown in `notes_seen`: a global note
# is shown to a session once, never re-injected. Each message is one text, "MOMENT [FROM] TEXT".
# A lock refused to someone tells its holder without writing the state (a refusal writes
# nothing): a small record beside the state, delivered with the messages. Policy first.

DELIVERY_MESSAGES, DELIVERY_CHARS = 5, 2000  # the most one delivery puts into a conversation
INBOX_READ_KEPT = 20


def message_entry(at, sender, text):
    return f"{at} [{sender or '(unsigned)'}] {text}"


def parse_message(entry):
    """{"at", "from", "text"} of an inbox entry; a hand-written one that does not parse is
    text from nobody in particular."""
    at, _, rest = entry.partition(" ")
    sender, close, text = rest[1:].partition("] ") if rest.startswith("[") else ("", "", rest)
    if not is_moment_text(at) or not close:  # a hand edit: all of it is text, quoted as data
        return {"at": None, "from": None, "text": entry}
    return {"at": at, "from": sender, "text": text}


def address_note(state, recipients, sender, text, now):
    """Put a note into each recipient's inbox (an unread one the same from the same sender is
    not added twice): the recipients that got it."""
    reached = []
    for recipient in recipients:
        session = find_session(state, recipient)
        if session is None:
            continue
        unread = session.get("inbox", [])
        if any(parse_message(e)["from"] == (sender or "(unsigned)")
               and parse_message(e)["text"] == text for e in unread):
            continue
        session["inbox"] = unread + [message_entry(now, sender, text)]
        reached.append(recipient)
    return reached


def unseen_notes(session, global_notes):
    """The global notes added since `session` was last shown them, not its own; a session
    from before messages existed has seen them all."""
    seen = max(session.get("notes_seen", len(global_notes)), 0)  # a hand edit may say -1
    own = f"[{session['id']}] "
    return [note for note in global_notes[seen:] if not note.startswith(own)]


def take_delivery(session, global_notes):
    """What one delivery brings the session, and the marks that it did: (messages, newest
    first, as parsed, then new global notes; how many unread messages stay for `inbox`). At
    most DELIVERY_MESSAGES items and DELIVERY_CHARS characters; delivered messages move to
    `inbox_read`, and the global notes count as seen."""
    inbox = session.get("inbox", [])
    items, used = [], 0
    for kind, text in [("message", e) for e in reversed(inbox)] + [
            ("note", n) for n in reversed(unseen_notes(session, global_notes))]:
        if len(items) == DELIVERY_MESSAGES or (items and used + len(text) > DELIVERY_CHARS):
            break  # the first always goes: one note can be as long as a note may be
        items.append((kind, text))
        used += len(text)
    delivered = [text for kind, text in items if kind == "message"]
    left = inbox[:len(inbox) - len(delivered)]  # the newest went: by place, twins included
    apply_fields(session, {"inbox": left or None, "notes_seen": len(global_notes),
                           "inbox_read": (session.get("inbox_read", []) + list(
                               reversed(delivered)))[-INBOX_READ_KEPT:] or None})
    return ([{**parse_message(text), "kind": "message"} if kind == "message" else
             {"at": None, "from": None, "text": text, "kind": "global"}
             for kind, text in items], len(left))


def read_all(session):
    """`inbox`: every message, newest first, each marked unread or not; all are read now."""
    unread, read = session.get("inbox", []), session.get("inbox_read", [])
    listed = ([{**parse_message(e), "unread": True} for e in reversed(unread)]
              + [{**parse_message(e), "unread": False} for e in reversed(read)])
    apply_fields(session, {"inbox": None,
                           "inbox_read": (read + unread)[-INBOX_READ_KEPT:] or None})
    return listed


# -- notices for a lock's holder: records beside the state
# A lock refused (someone waits) and a build failure reported inside a lock tell the lock's
# holder. Both commands end with exit 1, which writes nothing into the state: the notice is a
# small record beside it, delivered with the messages on this machine, taken once.

NOTICE_PREFIX, TOLD_PREFIX = "notice-", "told-"
NOTICE_KINDS = ("waiting", "build_failure")


def notice_path(store, prefix, holder, kind, sender, items):
    import binascii
    key = "\n".join((holder, kind, sender, *items)).encode("utf-8", "surrogatepass")
    return os.path.join(os.path.dirname(store.path), f"{prefix}{binascii.crc32(key):08x}")


def leave_notice(store, kind, holder, sender, area, items, at, once=False):
    """Tell `holder` that `sender` waits for `items` (scopes) in its lock on `area`, or found
    the build failing at `items` (a path or an area) there; with `once`, never again for the
    same sender and items, else again once the last one was delivered. Never through a
    symlink; nothing when it cannot be written."""
    if once and os.path.lexists(notice_path(store, TOLD_PREFIX, holder, kind, sender, items)):
        return
    record = "\n".join((holder, kind, sender, at, area, *items)).encode("utf-8", "surrogatepass")
    try:
        store.check_folders()
        fd = open_regular(notice_path(store, NOTICE_PREFIX, holder, kind, sender, items),
                          os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, record)
        finally:
            os.close(fd)
    except (OSError, OrchestratorError, ValueError):
        pass  # one like it waits already, or none can be written


def take_notices(store, holder):
    """The notices for `holder`, each taken once: a record is renamed to its told- name (or
    removed) by whoever delivers it first. [{"kind", "from", "at", "area", "paths"}]."""
    folder = os.path.dirname(store.path)
    try:
        names = [n for n in os.listdir(folder) if n.startswith(NOTICE_PREFIX)]
    except OSError:
        return []
    taken = []
    for name in sorted(names):
        path = os.path.join(folder, name)
        try:
            fields = (read_regular(path) or b"").decode("utf-8", "surrogatepass").split("\n")
        except (OSError, ValueError, OrchestratorError):
            continue
        if len(fields) < 6 or fields[0] != holder or fields[1] not in NOTICE_KINDS:
            continue
        try:
            os.rename(path, os.path.join(folder, TOLD_PREFIX + name[len(NOTICE_PREFIX):]))
        except OSError:
            continue  # another delivery took it
        taken.append({"kind": fields[1], "from": fields[2], "at": fields[3], "area": fields[4],
                      "paths": fields[5:]})
    return taken


def has_notices(store):
    try:
        return any(n.startswith(NOTICE_PREFIX) for n in os.listdir(os.path.dirname(store.path)))
    except OSError:
        return False


# ---------------------------------------------------------------------------- input checks

class Arguments:
    """Named values as attributes: parsed flags (as argparse's Namespace holds them for the
    other commands), or the options json's C scanner reads."""

    def __init__(self, **values):
        self.__dict__.update(values)


def check_text(flag, value, limit=MAX_TEXT_CHARS, allow_newlines=True):
    value = (value or "").strip()
    if not value:
        raise UsageError(f"{flag} is empty; give it a short text")
    if len(value) > limit:
        raise UsageError(f"{flag} is {len(value)} characters; keep it to {limit} at most")
    if has_control_characters(value) or (not allow_newlines and ("\n" in value or "\t" in value)):
        raise UsageError(f"{flag} holds control characters; use plain text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{flag} is not valid UTF-8 text; use plain text") from None
    return value


def is_kebab_case(value):
    """SESSION_ID_PATTERN without `re`: lowercase letters and digits, single inner dashes."""
    return (value != "" and set(value) <= KEBAB_CHARACTERS and not value.startswith("-")
            and not value.endswith("-") and "--" not in value)


def check_session_id(value, flag="--session"):
    if not value or len(value) > MAX_ID_CHARS or not is_kebab_case(value):
        raise UsageError(f"{flag} {value!r} is not a kebab-case id: use lowercase letters, "
                         "digits and single dashes, e.g. api-refactor")
    return value


def check_area(value, flag="--area", creating=False):
    """An area name (`backend`) or a path (`internal/billing`), checked like a scope. A new
    area (`creating`) must not hold shell operators: that is a pasted command line; an area
    already in the state is found whatever it holds."""
    area = check_text(flag, value, MAX_AREA_CHARS, allow_newlines=False)
    pasted = [ch for ch in SHELL_OPERATOR_CHARACTERS if ch in area] if creating else []
    if pasted:
        raise UsageError(f"{flag} {area!r} holds {pasted[0]!r}, which belongs to a shell "
                         "command line: an area is a short label such as backend, or a "
                         "path such as src/api")
    if looks_like_path(area) or area.startswith(".") or os.path.isabs(area):
        return normalise_repo_path(area, flag)
    return area


def relative_to_checkout(absolute, root):
    """`absolute` as a `/`-separated path relative to `root`, or None when it lies outside."""
    relative = os.path.relpath(os.path.realpath(absolute), root)
    if relative == os.pardir or relative.startswith(os.pardir + os.sep) or os.path.isabs(relative):
        return None
    return relative.replace(os.sep, "/")


def paths_reaching(checkout, path):
    """`path` (relative to `checkout`), and the path of the file it really reaches when a
    symlink on the way leads elsewhere in the checkout: a write lands there."""
    real = os.path.realpath(os.path.join(checkout, path))
    relative = relative_to_checkout(real, os.path.realpath(checkout))
    return [path] if relative in (None, path) else [path, relative]


def repo_path_from_here(value, flag, ctx):
    """--path / --file as typed in a subfolder: relative to the current folder, like a shell."""
    if not os.path.isabs(value) and os.path.realpath(os.getcwd()) != ctx.checkout_root:
        value = os.path.join(os.getcwd(), value)
    return normalise_repo_path(value, flag, ctx.checkout_root)


def normalise_repo_path(value, flag, repo_root=None):
    """A path or glob relative to the repository root, with `/` separators and no `..`."""
    # A path given to look up (--path, --file) may be thousands of folders deep; a scope
    # someone claims is kept short.
    raw = check_text(flag, value, MAX_PATH_CHARS if repo_root is not None else MAX_AREA_CHARS,
                     allow_newlines=False)
    path = raw.replace("\\", "/")
    if repo_root is not None and os.path.isabs(raw):
        path = relative_to_checkout(raw, repo_root)
        if path is None:
            raise UsageError(f"{flag} {raw!r} is outside the repository {repo_root}; give "
                             "a path inside it")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":" and path[0].isalpha()):
        raise UsageError(f"{flag} {raw!r} is absolute; give it relative to the repository "
                         "root, e.g. src/api")
    segments = [s for s in path.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise UsageError(f"{flag} {raw!r} leaves the repository with '..'; give a path "
                         "inside it")
    if not segments:
        raise UsageError(f"{flag} {raw!r} names no path; use '**' for the whole repository")
    return "/".join(segments)


def check_scope(value, flag):
    """A scope someone claims: a repository path or glob, with at most MAX_GLOBSTARS `**`
    segments (each one multiplies the work of matching a deep path against it)."""
    scope = normalise_repo_path(value, flag)
    if sum(set(s) == {"*"} and len(s) > 1 for s in scope.split("/")) > MAX_GLOBSTARS:
        raise UsageError(f"{flag} {scope!r} has more than {MAX_GLOBSTARS} `**` segments; "
                         "one `**` already matches any number of folders")
    return scope


def split_list(text):
    return [part for part in regex(r"[,\s]+").split(text) if part]


def check_rule(value, flag="--rule"):
    """A rule's name as the directive log keeps it (normalise_rule): words like intent_scope."""
    rule = normalise_rule(check_text(flag, value, MAX_AREA_CHARS, allow_newlines=False))
    if not regex(r"[a-z0-9_]+").fullmatch(rule):
        raise UsageError(f"{flag} {value!r} is not a rule name: use words like intent_scope "
                         "or escalation")
    return rule


def check_area_list(text, required=True):
    areas = [check_area(a, creating=True) for a in split_list(text)]
    if required and not areas:
        raise UsageError("give at least one area, e.g. backend")
    return areas


def scope_from_here(value, flag, ctx):
    """A scope as typed: relative to the folder the command runs in, like --path (Cascade runs
    commands at the repository root), stored relative to the repository root."""
    text = value.replace("\\", "/") if isinstance(value, str) else value
    if isinstance(text, str) and text and not os.path.isabs(text):
        here = relative_to_checkout(os.getcwd(), ctx.checkout_root)
        if here and here != ".":
            import posixpath
            text = posixpath.normpath(posixpath.join(here, text))
            if text == ".." or text.startswith("../"):
                raise UsageError(f"{flag} {value!r} leaves the repository from {here}; give "
                                 "a path inside it")
    elif isinstance(text, str) and os.path.isabs(text):
        inside = relative_to_checkout(text, ctx.checkout_root)
        if inside is None:
            raise UsageError(f"{flag} {value!r} is outside the repository "
                             f"{ctx.checkout_root}; give a path inside it")
        text = inside
    return check_scope(text, flag)


def scopes_matching_nothing(scopes, root):
    """The scopes under which nothing exists yet (their literal start is not on disk)."""
    return [scope for scope in scopes
            if not os.path.lexists(os.path.join(root, *literal_prefix(scope)) or root)]


def check_scope_list(text):
    scopes = [check_scope(p, "scope") for p in split_list(text)]
    if not scopes:
        raise UsageError("give at least one path or glob, e.g. src/api")
    return scopes


UPDATE_STATUSES = tuple(s for s in SESSION_STATUSES if s != "completed")  # `complete` ends one


def check_status(value, allowed=SESSION_STATUSES):
    if value not in allowed:
        raise UsageError(f"--status {value!r} is not one of {', '.join(allowed)}")
    return value


# Every command's flags, declared once: (flag, kind, help, argparse's other options). argparse's
# parser (help, errors, anything unusual) and the fast parser (plain command lines, without
# importing argparse) are both built from this table.
VALUE, VALUES, SWITCH, TEXT = "value", "values", "switch", "text"  # VALUES: repeatable
CHOICE = "choice"  # one positional word
LOCK_FLAGS: tuple = (
    ("--reason", VALUE, "why the lock exists, shown to other sessions", {}),
    ("--unstable", SWITCH, "builds in this area are expected to break for a while", {}),
    ("--allow-external-fixes", SWITCH, "other sessions may fix build failures in this area", {}),
    ("--duration", VALUE, f"how long the lock lasts (default {DEFAULT_LOCK_DURATION}; 45m, 2h, "
                          "1h30m, 1d)", {}),
    ("--force", SWITCH, "take the lock even where another session's lock overlaps", {}),
    ("--take-over", SWITCH, "take over the locks in the way when every holder is gone (stale "
                            "or ended), in the open: recorded, shown, told", {}))
SCOPE_HELP = ("path or glob, relative to the current folder like --path (repeatable); stored "
              "relative to the repository root")
ALL_NOTES: tuple = ("--all-notes", SWITCH, f"show every note, not only the newest {NOTES_SHOWN}", {})
YOUR_SESSION: tuple = ("--session", VALUE, "your session's kebab-case id", {})
COMMAND_FLAGS = {
    "sync": ("sweep expired locks, report the state; register a session and lock", (
        ("--session", VALUE, "this session's kebab-case id", {}),
        ("--focus", VALUE, "what this session works on", {}),
        ("--area", VALUES, "area or path this session touches (repeatable)", {}),
        ("--status", VALUE, f"one of {', '.join(SESSION_STATUSES)} (new sessions: "
                            f"{DEFAULT_STATUS})", {}),
        ("--lock-area", VALUE, "area to lock (default: the first --area)", {}),
        ALL_NOTES,
        ("--lock-scope", VALUES, SCOPE_HELP, {"metavar": "PATH"}), *LOCK_FLAGS)),
    "lock": ("claim an advisory lock on an area", (
        YOUR_SESSION,
        ("--area", VALUE, "high-level area, e.g. backend", {}),
        ("--scope", VALUES, SCOPE_HELP, {"metavar": "PATH"}), *LOCK_FLAGS)),
    "renew": ("extend this session's live locks from now", (
        YOUR_SESSION,
        ("--area", VALUE, "renew only the lock on this area", {}),
        ("--duration", VALUE, f"new length from now (default {DEFAULT_LOCK_DURATION})", {}))),
    "unlock": ("release this session's own locks", (
        YOUR_SESSION,
        ("--area", VALUE, "release this session's lock on this area", {}),
        ("--all", SWITCH, "release every lock this session holds", {}))),
    "status": ("show the state; changes nothing", (
        ("--session", VALUE, "show it from this session's point of view", {}), ALL_NOTES)),
    "watch": ("a live board of sessions and locks in the terminal; q quits", (
        ("--session", VALUE, "show conflicts from this session's point of view", {}),)),
    "update": ("edit this session's own entry", (
        YOUR_SESSION,
        ("--status", VALUE, f"one of {', '.join(UPDATE_STATUSES)} (`complete` ends a "
                            "session)", {}),
        ("--add-note", VALUES, "a note on this session's own entry (repeatable)", {}),
        ("--add-area", VALUES, "an area or path this session now touches too (repeatable)", {}),
        ("--add-risk", VALUES, "a risk others should know of (repeatable)", {}))),
    "complete": ("end a session: record the outcome, release its locks", (
        YOUR_SESSION,
        ("--outcome", VALUE, "brief summary of what was done", {}),
        ("--file", VALUES, "key file changed (repeatable)", {}))),
    "note": ("add a note every session sees, or one for the sessions named with --to", (
        ("text", TEXT, "the note's text", {}),
        ("--session", VALUE, "the session writing the note", {}),
        ("--to", VALUES, "a session the note is for (repeatable); without it the note is "
                         "global", {"metavar": "SESSION"}))),
    "inbox": ("list a session's messages, newest first, and mark them read", (
        YOUR_SESSION,)),
    "mcp": ("serve the commands as MCP tools over stdio (needs the mcp extra)", (
        ("--target", VALUE, "the repository to serve (default: the one of the current "
                            "folder)", {"metavar": "DIR"}),)),
    "check": ("silent session-start check: exit 1 with a warning on conflict", (
        YOUR_SESSION,
        ("--area", VALUES, "an area the work will touch (repeatable)", {}),
        ("--path", VALUES, "a path the work will touch, relative to the current folder "
                           "(repeatable)", {}))),
    "build-failure": ("may this session fix a failing build here? fix, fix_and_notify or "
                      "report_only", (
        ("--session", VALUE, "the session asking", {}),
        ("--area", VALUE, "the area whose build failed", {}),
        ("--path", VALUE, "a file or folder where the build failed", {}))),
    "directive": ("log a @directive override of a default rule", (
        YOUR_SESSION,
        ("--rule", VALUE, "the rule overridden, e.g. intent_scope, escalation", {}),
        ("--directive", VALUE, "the override as the user gave it", {}),
        ("--reason", VALUE, "why the override was needed", {}))),
    "audit": ("propose new defaults for rules overridden again and again; writes nothing", (
        ("--threshold", VALUE, f"overrides of one rule that call for a proposal (default "
                               f"{AUDIT_THRESHOLD})", {"type": int, "default": AUDIT_THRESHOLD}),)),
    "validate": ("check the state file against the schema", ()),
    "remote": ("share the state through the repository's git remote, across machines", (
        ("action", CHOICE, "enable, disable, status, or refresh (fetch the shared state now)",
         {"choices": ("enable", "disable", "status", "refresh")}),
        ("--remote", VALUE, f"the git remote (enable; default {DEFAULT_SHARED_REMOTE})", {}),
        ("--ref", VALUE, f"the ref that holds the state (enable; default {DEFAULT_SHARED_REF}; "
                         "a bare name is a branch, for hosts that take only branches)", {}),
        ("--background", SWITCH, "(for the detached refresh reads start)", {}))),
    "log": ("the history of the shared state: when, which machine, which session, what", (
        ("-n", VALUE, "how many changes, newest first (default 20)",
         {"type": int, "default": 20, "dest": "count"}),
        ("--session", VALUE, "only this session's changes", {}))),
    "commit-check": ("git pre-commit: refuse staged files inside another session's lock", (
        ("--block-exit", VALUE, "exit with CODE instead of 1 to refuse (the installed git hook "
                                "maps it back, so that no other failure can refuse a commit)",
         {"metavar": "CODE"}),)),
    "hook": ("read one Cascade or Claude Code hook event (JSON) on stdin; exit 2 blocks a write "
             "into another session's lock", (
        ("--block-exit", VALUE, "exit with CODE instead of 2 to block (the installed hook "
                                "command maps it back to 2, so that no other failure can block)",
         {"metavar": "CODE"}),)),
    "install": ("install the Windsurf pack into a repository", (
        ("--target", VALUE, "root of the repository (default: here)", {"default": "."}),
        ("--force", SWITCH, "overwrite pack files you changed", {}),
        ("--agent", VALUES, "which agent to install for (repeatable; default windsurf and devin)",
         {"choices": sorted(AGENTS)}))),
}


# The tool's writing commands: running one with --session binds a conversation to it.
WRITING_COMMANDS = ("sync", "lock", "renew", "unlock", "update", "complete", "note", "directive",
                    "inbox")
# Commands whose plain command lines skip argparse: those that run all the time or write.
FAST_PATH_COMMANDS = ("check", "hook", "commit-check") + WRITING_COMMANDS


def parse_fast_path(argv):
    """Parse a command's flags without importing argparse: the session-start check and the
    write hook run all the time, and a write's whole budget is 1.2x `import strictyaml`.
    Anything unusual (help, an unknown or abbreviated flag, a value that looks like a flag)
    returns None, and argparse takes over, so its help and error messages stay as they are."""
    if not argv or argv[0] not in FAST_PATH_COMMANDS:
        return None
    flags = COMMAND_FLAGS[argv[0]][1]
    single = {flag for flag, kind, _, _ in flags if kind == VALUE} | {"--state"}
    repeatable = {flag for flag, kind, _, _ in flags if kind == VALUES}
    switches = {flag for flag, kind, _, _ in flags if kind == SWITCH}
    positional = next((flag for flag, kind, _, _ in flags if kind == TEXT), None)
    values = {flag[2:].replace("-", "_"): None for flag in single | repeatable}
    values.update({flag[2:].replace("-", "_"): False for flag in switches | {"--json"}})
    values.update(command=argv[0])
    if positional:
        values[positional] = []
    words = iter(argv[1:])
    for word in words:
        flag, equals, value = word.partition("=")
        name = flag[2:].replace("-", "_")
        if word == "--json" or word in switches:
            values[name] = True
        elif flag in single or flag in repeatable:
            if not equals:
                value = next(words, None)
                if value is None or value.startswith("-"):
                    return None
            values[name] = (values[name] or []) + [value] if flag in repeatable else value
        elif positional and not word.startswith("-"):
            values[positional].append(word)
        else:
            return None
    return Arguments(**values)


# ---------------------------------------------------------------------------- rendering


def humanize_seconds(seconds):
    seconds = abs(int(seconds))
    if seconds < 60:
        return "under a minute"
    minutes = seconds // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "",
             f"{minutes} min" if minutes and not days else ""]
    return " ".join(p for p in parts if p)


WATCH_NOTES = 3  # the newest notes the live board shows
WATCH_GROUP_TITLES = ("WAITING FOR YOU", "GONE, HOLDING LOCKS", "WORKING", "IDLE OR GONE")


def watch_frame(state, now, width, height, session_id=None, color=True, error=None,
                is_folder=is_glob, fold_case=False, shared_age=None, presence=None,
                radar_found=()):
    """The live board (`watch`) as lines of at most `width` characters, at most `height` of
    them: conflicts first, then sessions, locks with a bar of the time left, the newest notes;
    with the state shared, how old this clone's copy is (`shared_age`). With each session's
    `presence`, the sessions come in what a person should look at first: waiting for them,
    gone but holding locks, working, idle (and gone, holding nothing). Pure, so a test can
    compare a frame to the letter."""
    def paint(text, code):
        return f"\x1b[{code}m{text}\x1b[0m" if color else text

    def fit(text):  # by screen columns: a wide character (CJK) takes two
        try:
            from wcwidth import wcwidth  # comes with prompt_toolkit (questionary)
            width_of = wcwidth
        except ImportError:
            width_of = len  # one column a character
        widths = [max(width_of(ch), 0) for ch in text]
        if sum(widths) <= width:
            return text
        used, kept = 0, []
        for ch, columns in zip(text, widths):
            if used + columns > width - 1:  # room for the ellipsis
                break
            kept.append(ch)
            used += columns
        return "".join(kept) + "…"

    lines = [(f"Session Orchestrator · watch · {now.replace('T', ' ')[:19]} UTC"
              + (f" · as {session_id}" if session_id else "")
              + (f" · shared copy {shared_age}" if shared_age else "") + " · q quits", "1")]
    if error:
        lines.append((f"! {one_line(error)}", "31"))
    conflicts = sessions_in_foreign_locks(state, now, session_id, is_folder, fold_case=fold_case)
    pairs = overlapping_lock_pairs(state, now, fold_case=fold_case)
    lines.append(("CONFLICTS" + ("" if conflicts or pairs or radar_found
                                 or shared_worktrees(state) else ": none"), "1"))
    for conflict in conflicts:
        lock = conflict["lock"]
        mark, tone = ("~", "33") if lock["allow_external_fixes"] else ("!", "31")
        lines.append((f"  {mark} {conflict['session']} on {', '.join(map(as_label, conflict['overlapping']))}"
                      f" inside {lock['owner']}'s lock on {as_label(lock['area'])}", tone))
    for first, second in pairs:
        lines.append((f"  ! {first['owner']} and {second['owner']} lock the same paths: "
                      f"{as_label(first['area'])} / {as_label(second['area'])}", "31"))
    for shared in shared_worktrees(state):
        lines.append((f"  ~ {' and '.join(shared['sessions'])} share the worktree "
                      f"{as_label(shared['worktree'])}", "33"))
    for found in radar_found:
        merge = found["kind"] == "merge"
        lines.append((f"  {'!' if merge else '~'} {' and '.join(found['sessions'])} "
                      f"{'cannot merge' if merge else 'both changed'} "
                      f"{', '.join(map(as_label, found['paths']))}", "31" if merge else "33"))
    def session_line(session):
        place = session.get("branch") or session.get("worktree") or ""
        if presence:
            seen = presence[session["id"]]
            when = f"{seen['presence']:<7} {humanize_short(seconds_between(seen['last_seen'], now)):<5}"
        else:
            when = f"idle {humanize_short(seconds_between(session['last_updated'], now)):<5}"
        unread = len(session.get("inbox", []))
        return (f"  {session['id']:<12} {session['status']:<11} "
                f"{as_label(place) if place else '':<15} {when} "
                + (f"✉{unread} " if unread else "") + clean_text(one_line(session["focus"])))

    if presence is None:
        lines.append((f"SESSIONS ({len(state['active_sessions'])})", "1"))
        lines += [(session_line(session), "") for session in state["active_sessions"]]
    else:
        holding = {lock["owner"] for lock in live_locks(state, now)}
        groups = {title: [] for title in WATCH_GROUP_TITLES}
        for session in state["active_sessions"]:
            seen = presence[session["id"]]["presence"]
            title = ("WAITING FOR YOU" if seen == "waiting" else "GONE, HOLDING LOCKS"
                     if is_gone(seen) and session["id"] in holding else
                     "WORKING" if seen == "working" else "IDLE OR GONE")
            groups[title].append(session)
        for title, members in groups.items():
            if members:
                tone = {"WAITING FOR YOU": "33", "GONE, HOLDING LOCKS": "31"}.get(title, "")
                lines.append((f"{title} ({len(members)})", "1"))
                lines += [(session_line(session), tone) for session in members]
    lines.append((f"LOCKS ({len(state['locks'])})", "1"))
    for lock in state["locks"]:
        left = remaining_seconds(lock, now)
        span = seconds_between(lock.get("acquired_at") or now, lock["expires_at"]) or 1
        filled = max(0, min(10, round(10 * left / span))) if left > 0 else 0
        bar = "[" + "#" * filled + "-" * (10 - filled) + "]"
        when = f"{humanize_short(left)} left" if left > 0 else "expired"
        flags = ("unstable" if lock["expected_instability"] else "stable") + \
            (", fixes ok" if lock["allow_external_fixes"] else ", no fixes")
        lines.append((f"  {as_label(lock['area']):<10} {lock['owner']:<12} {bar} {when:<9} "
                      f"{flags} {', '.join(map(as_label, lock['scope']))}",
                      "2" if left <= 0 else ""))
    notes = state["global_notes"]
    shown = notes[-WATCH_NOTES:]
    lines.append((f"NOTES ({len(notes)}" + (f", newest {len(shown)})" if len(notes) > len(shown)
                                            else ")"), "1"))
    lines += [(f"  - {clean_text(one_line(note))}", "") for note in shown]
    if len(lines) > height:  # keep the head of each part over a tail nobody can see
        hidden = len(lines) - height + 1
        lines = lines[:height - 1] + [(f"  … {hidden} more lines: make the terminal taller, "
                                       "or run status", "2")]
    return [paint(fit(text), tone) if tone else fit(text) for text, tone in lines]


def humanize_short(seconds):
    """12s, 4m, 1h20m, 2d3h: a column's worth of humanize_seconds."""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


_messages = None


class Count(int):
    """A number that is written with its noun: f"{Count(2):lock}" is "2 locks". Regular
    nouns only (the plural adds an s)."""

    def __format__(self, noun):
        if not noun:
            return str(int(self))
        return f"{int(self)} {noun if self == 1 else noun + 's'}"


def message(key, **fields):
    """A one-line confirmation from prompts/messages.txt (plain str.format: a write never
    pays for importing jinja2). A number given with a noun, `{locks:lock}`, agrees with it."""
    global _messages
    if _messages is None:
        _messages = {}
        for line in read_text(os.path.join(PROMPTS_DIR, "messages.txt")).splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, text = line.partition("=")
                _messages[name.strip()] = text.strip()
    return _messages[key].format_map({k: Count(v) if type(v) is int else Text(v)
                                      for k, v in fields.items()})


class Text:
    """A message field: `{reason:data}` prints it quoted as data (quote_data; a list as its
    items quoted, comma-separated), a plain `{owner}` cleaned of control characters."""

    def __init__(self, value):
        self.value = value

    def __format__(self, spec):
        items = self.value if isinstance(self.value, (list, tuple)) else [self.value]
        if spec == "data":
            return ", ".join(quote_data(item, 300) for item in items)
        if spec == "label":
            return ", ".join(as_label(item) for item in items)
        return ", ".join(clean_text(item) for item in items)


_environment = None


def render(template, **context):
    """Render a report from prompts/; jinja2 is imported only when a report is printed."""
    global _environment
    if _environment is None:
        import jinja2
        _environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader([PROMPTS_DIR, WORKFLOWS_DIR]),
            undefined=jinja2.StrictUndefined,
            autoescape=False, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
            finalize=lambda value: clean_text(value) if isinstance(value, str) else value)
        import shlex
        _environment.filters.update(data=quote_data, label=as_label, duration=humanize_seconds,
                                    line=one_line,
                                    shell_quote=shlex.quote, counted=lambda n, noun: f"{Count(n):{noun}}")
        _environment.globals.update(expiring_soon_seconds=EXPIRING_SOON_SECONDS)
    return _environment.get_template(template).render(**context)


def lock_view(lock, now, presence=None):
    """A lock as reports and --json show it; with `presence` (see presences), its holder's
    presence as `holder`."""
    seconds = remaining_seconds(lock, now)
    view = {**lock, "expired": seconds <= 0, "remaining_seconds": seconds}
    if presence is not None and lock["owner"] in presence:
        view["holder"] = presence_view(presence[lock["owner"]], now)
    return view


def presence_view(seen, now):
    return {**seen, "silent_seconds": max(seconds_between(seen["last_seen"], now), 0)}


def session_view(session, now, all_notes=True, presence=None):
    age = seconds_between(session["started_at"], now)
    idle = seconds_between(session["last_updated"], now)
    notes, older_notes = newest(session["notes"], all_notes)
    seen = presence_view(presence[session["id"]], now) if presence else {
        "presence": None, "last_seen": None, "silent_seconds": None}
    return {"branch": None, "worktree": None, "machine": None, **session, "age_seconds": age,
            "idle_seconds": idle, "notes": notes, "older_notes": older_notes, **seen}


def newest(items, all_items):
    """(the newest NOTES_SHOWN of `items`, oldest first, how many older ones are left out)."""
    if all_items or len(items) <= NOTES_SHOWN:
        return list(items), 0
    return list(items[-NOTES_SHOWN:]), len(items) - NOTES_SHOWN


def report_context(state, now, session_id=None, conflicts=(), swept=(), all_notes=False,
                   fold_case=False, presence=None, radar_found=()):
    """What the report shows: every session and lock; of the notes, which only ever grow,
    the newest (NOTES_SHOWN) unless `all_notes`, so what an agent reads on every sync stays
    small. --json output holds everything."""
    locks = [lock_view(lock, now, presence) for lock in state["locks"]]
    notes, older_notes = newest(state["global_notes"], all_notes)
    expiring = [l for l in locks if session_id and l["owner"] == session_id
                and 0 < l["remaining_seconds"] <= EXPIRING_SOON_SECONDS]
    return {
        "now": now, "viewer": session_id,
        "sessions": [session_view(s, now, all_notes, presence) for s in state["active_sessions"]],
        "locks": locks, "expiring": expiring, "swept": list(swept),
        "conflicts": list(conflicts), "radar": list(radar_found),
        "overlaps": overlapping_lock_pairs(state, now, fold_case=fold_case),
        "shared_worktrees": shared_worktrees(state),
        "notes": notes, "older_notes": older_notes, "cli": cli_name(),
        "viewer_unknown": bool(session_id) and find_session(state, session_id) is None,
    }


def split_by_outside_fixes(conflicts):
    """(conflicts, notices): as build-failure and the write hook decide, a lock that allows
    outside fixes may be edited in (tell its owner), so it is a notice, not a conflict."""
    return ([c for c in conflicts if not c["lock"]["allow_external_fixes"]],
            [c for c in conflicts if c["lock"]["allow_external_fixes"]])


def conflict_view(conflict, now, presence=None):
    return {"lock": lock_view(conflict["lock"], now, presence),
            "overlapping": conflict["overlapping"]}


def conflict_objects(lock_conflicts, lock_pairs, worktrees, radar_found, now):
    """Every conflict as one object, `kind`, `sessions`, `paths` (and what each kind adds):
    `lock`, work inside another session's lock (and two sessions' locks over the same
    paths); `worktree`, sessions sharing one worktree; `overlap` and `merge` from the
    radar."""
    found = [{"kind": "lock", "sessions": [c["session"], c["lock"]["owner"]],
              "paths": list(c["overlapping"]), **conflict_view(c, now)} for c in lock_conflicts]
    found += [{"kind": "lock", "sessions": [first["owner"], second["owner"]],
               "paths": unique_in_order(first["scope"] + second["scope"]),
               "locks": [lock_view(first, now), lock_view(second, now)]}
              for first, second in lock_pairs]
    found += [{"kind": "worktree", "sessions": list(shared["sessions"]),
               "paths": [shared["worktree"]]} for shared in worktrees]
    return found + [dict(conflict) for conflict in radar_found]


def status_payload(state, now, presence=None):
    """The state's five keys as --json shows them: each lock with `expired` and
    `remaining_seconds`, each active session with its `presence` and `last_seen`."""
    payload = {key: state[key] for key in TOP_LEVEL_KEYS}
    payload["locks"] = [lock_view(lock, now) for lock in state["locks"]]
    if presence is not None:
        payload["active_sessions"] = [{**s, **presence[s["id"]]} for s in state["active_sessions"]]
    return payload


def holder_presence(owner, presence, now):
    """What a refusal or a block says of a lock's holder: how long a live one has been
    silent; that a stale or ended one's lock may be taken over. "" without presence."""
    if not presence or owner not in presence:
        return ""
    seen = presence_view(presence[owner], now)
    key = "holder_gone" if is_gone(seen["presence"]) else "holder_live"
    return message(key, owner=owner, presence=seen["presence"],
                   silent=humanize_seconds(seen["silent_seconds"]), cli=cli_name())


def describe_conflicts(conflicts, now, examples=(), presence=None):
    examples = list(examples) + [None] * (len(conflicts) - len(examples))
    parts = [f"{quote_data(c['area'])} ({', '.join(map(quote_data, c['scope']))}) is locked by {c['owner']} for "
             f"{humanize_seconds(remaining_seconds(c, now))} more: {quote_data(c['reason'])}"
             + (f" (both claim {as_label(e)})" if e else "")
             + (f" ({holder_presence(c['owner'], presence, now)})" if presence else "")
             for c, e in zip(conflicts, examples)]
    gone = bool(presence) and all(is_gone(presence.get(c["owner"], {}).get("presence"))
                                  for c in conflicts)
    return ("refused, nothing written: " + "; ".join(parts) + ". " +
            message("refused_take_over" if gone else "refused_what_to_do"))


# ---------------------------------------------------------------------------- hooks

# Everything the agents' hooks do, top to bottom: the events each agent sends, read into one
# shape; the answer in each agent's contract; the shell reader that judges a command line by
# what it changes; where a path belongs and who is acting; the verdicts on edits and shell
# commands; what changed during a command, and the report after it.


# -- the events each agent sends (a Windsurf, Claude Code or Cursor event, read into one
# shape), and the answer in its contract

# Edit tools: Claude Code's, and Cursor's (its own hooks, or Claude Code's hooks run by it);
# the hooks install writes match exactly these.
CLAUDE_WRITE_TOOLS = ("Edit", "Write", "MultiEdit", "NotebookEdit")
CURSOR_WRITE_TOOLS = ("Write", "Edit", "Delete")
# Devin Local (Devin Desktop's default agent) and the Devin CLI name their tools their own way
# (docs.devin.ai/cli/extensibility/hooks/lifecycle-hooks): `exec` for the shell.
DEVIN_WRITE_TOOLS = ("edit", "write", "apply_patch", "multi_edit")
WRITE_TOOLS = {*CLAUDE_WRITE_TOOLS, *CURSOR_WRITE_TOOLS, *DEVIN_WRITE_TOOLS}
CLAUDE_SHELL_TOOL, CURSOR_SHELL_TOOL, DEVIN_SHELL_TOOL = "Bash", "Shell", "exec"
SHELL_TOOLS = {CLAUDE_SHELL_TOOL, CURSOR_SHELL_TOOL, DEVIN_SHELL_TOOL}
# Events that carry a tool: Claude Code's names, and Cursor's for the same events.
TOOL_EVENT_PHASES = {"PreToolUse": "pre", "preToolUse": "pre", "PostToolUse": "post",
                     "postToolUse": "post", "PostToolUseFailure": "post",
                     "postToolUseFailure": "post"}
# Cursor's own events for one kind of action: (phase, kind).
CURSOR_EVENTS = {"beforeShellExecution": ("pre", "run_command"),
                 "afterShellExecution": ("post", "run_command"),
                 "afterFileEdit": ("post", "write")}
SESSION_START_EVENTS = {"SessionStart", "sessionStart"}
SESSION_END_EVENTS = {"SessionEnd", "sessionEnd"}  # `reason`: Claude Code's clear keeps it
# The agent waits for its person: Claude Code's Notification of these types, and every agent's
# end of a turn (Claude Code's and Devin's Stop, Cursor's stop, Windsurf's post_cascade_response).
WAITING_NOTIFICATIONS = {"permission_prompt", "idle_prompt"}
WAITING_EVENTS = {"Stop", "stop", "post_cascade_response"}
PROMPT_EVENTS = {"UserPromptSubmit", "pre_user_prompt"}  # the person asked: work goes on


def load_json(text):
    """json.loads through json's own C scanner, without `import json`: that import pulls in
    `re`, which alone costs half of the hook's time budget. Falls back to json where the C
    scanner is missing (other Pythons)."""
    try:
        from _json import make_scanner
    except ImportError:
        import json
        return json.loads(text)
    options = Arguments(strict=True, object_hook=None, object_pairs_hook=None, memo={},
                        parse_float=float, parse_int=int, parse_constant=float)
    scan = make_scanner(options)  # outside the try: a changed private API must fail loudly
    text = text.strip(" \t\r\n")
    try:
        value, end = scan(text, 0)
    except (StopIteration, ValueError):  # json's decode error is a ValueError
        raise ValueError("not JSON") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if end != len(text):
        raise ValueError("not JSON: extra data")
    return value


def parse_hook_event(text):
    """Windsurf's, Claude Code's, Cursor's or Devin's hook JSON -> {dialect, event_name, phase,
    kind, conversation, file_path, file_paths, command_line, cwd}. The dialect says how to
    answer (hook_reply): Claude Code names its events in PascalCase, Cursor in camelCase (also
    when it runs Claude Code's hooks), Devin in PascalCase with its own tool names and a
    `prompt_id`, Windsurf sends `agent_action_name`."""
    try:
        raw = load_json(text)
    except ValueError:
        raise ValueError("the hook event on stdin is not JSON") from None
    if not isinstance(raw, dict):
        raise ValueError("the hook event on stdin is not a JSON object")
    source = None
    if "hook_event_name" in raw:  # Claude Code, or Cursor
        name = str(raw.get("hook_event_name"))
        cursor_fields = ("conversation_id", "cursor_version", "workspace_roots")
        tool, tool_input = str(raw.get("tool_name")), raw.get("tool_input")
        dialect = ("cursor" if any(f in raw for f in cursor_fields) or not name[:1].isupper()
                   else "devin" if "prompt_id" in raw or tool in DEVIN_WRITE_TOOLS
                   or tool == DEVIN_SHELL_TOOL else "claude")
        tool_input = tool_input if isinstance(tool_input, dict) else {}
        phase, kind = CURSOR_EVENTS.get(name) or (
            TOOL_EVENT_PHASES.get(name),
            "write" if tool in WRITE_TOOLS else "run_command" if tool in SHELL_TOOLS else None)
        if name in SESSION_START_EVENTS:
            phase, kind, source = "start", "session_start", str(raw.get("source"))
        elif name in SESSION_END_EVENTS:
            phase, kind, source = "end", "session_end", str(raw.get("reason"))
        elif name in WAITING_EVENTS or (name == "Notification" and str(
                raw.get("notification_type")) in WAITING_NOTIFICATIONS):
            phase, kind = "presence", "waiting"
        elif name in PROMPT_EVENTS:
            phase, kind = "presence", "prompt"
        fields = raw if name in CURSOR_EVENTS else tool_input
        file_path = next((fields[key] for key in ("file_path", "notebook_path", "path")
                          if isinstance(fields.get(key), str)), None)
        command_line = fields.get("command")
        roots = raw.get("workspace_roots")
        cwd = raw.get("cwd") or (roots[0] if isinstance(roots, list) and roots else None) or (
            os.environ.get("DEVIN_PROJECT_DIR") if dialect == "devin" else None)
        patched = patched_files(tool_input) if tool == "apply_patch" else []
        # Cursor's conversation_id is stable over a conversation; Claude Code's is session_id.
        conversation = raw.get("conversation_id") or raw.get("session_id")
    else:  # Windsurf Cascade
        dialect, name = "windsurf", str(raw.get("agent_action_name", ""))
        phase, _, what = name.partition("_")
        kind = {"write_code": "write", "run_command": "run_command"}.get(what)
        info = raw.get("tool_info")
        info = info if isinstance(info, dict) else {}
        file_path, command_line, cwd = info.get("file_path"), info.get("command_line"), info.get("cwd")
        conversation = raw.get("trajectory_id")
        patched = []
        if name == "post_setup_worktree":
            kind, file_path = "setup_worktree", info.get("worktree_path")
            cwd = info.get("root_workspace_path") if isinstance(
                info.get("root_workspace_path"), str) else cwd
        elif name in WAITING_EVENTS:
            phase, kind = "presence", "waiting"
        elif name in PROMPT_EVENTS:
            phase, kind = "presence", "prompt"
    if not isinstance(conversation, (str, type(None))):
        conversation = str(conversation)
    if conversation is not None and (len(conversation) > MAX_CONVERSATION_CHARS
                                     or has_control_characters(conversation)):
        conversation = UNUSABLE_CONVERSATION  # never stored: a 5 MB id is no id
    tool_use = raw.get("tool_use_id") if dialect == "claude" else None
    file_path = file_path if isinstance(file_path, str) and "\0" not in file_path else None
    return {"dialect": dialect, "event_name": name, "phase": phase, "kind": kind,
            "conversation": conversation, "source": source,
            "tool_use": tool_use if isinstance(tool_use, str) and tool_use.isprintable()
            and len(tool_use) <= MAX_CONVERSATION_CHARS else None,
            "file_path": file_path or (patched[0] if patched else None),
            "file_paths": ([file_path] if file_path else []) + patched,
            "command_line": command_line if isinstance(command_line, str) else None,
            "cwd": cwd if isinstance(cwd, str) else None}


def patched_files(tool_input):
    """The files an apply_patch call names (`*** Update File: path`, `*** Add File:`,
    `*** Delete File:`, `*** Move to:`), in any string field of its input."""
    found = []
    for value in tool_input.values():
        if not isinstance(value, str):
            continue
        for line in value.splitlines():
            for marker in ("*** Update File: ", "*** Add File: ", "*** Delete File: ",
                           "*** Move to: "):
                if line.startswith(marker) and "\0" not in line:
                    found.append(line[len(marker):].strip())
    return unique_in_order(found)


def json_text(value):
    """JSON for a hook's answer (a dict of strings and dicts) through json's C encoder,
    without `import json` (which imports `re`: see load_json). Non-ASCII is escaped."""
    try:
        from _json import encode_basestring_ascii as quote
    except ImportError:
        import json
        quote = json.dumps
    if isinstance(value, dict):
        return "{" + ", ".join(f"{quote(str(k))}: {json_text(v)}" for k, v in value.items()) + "}"
    return quote(str(value))


ALLOW, ASK, DENY = "allow", "ask", "deny"  # a hook's verdict on an action


def hook_reply(event, verdict, text):
    """(stdout, stderr, blocks by exit code) for the agent that sent `event`, in its own
    contract. Claude Code: PreToolUse's `permissionDecision` `deny` or `ask` with the reason,
    and `additionalContext` for what Claude should read (code.claude.com/docs/en/hooks).
    Cursor: a JSON object on every path, `permission` `deny` or `ask` with
    `user_message`/`agent_message`, `additional_context` at session start and after a tool
    (cursor.com/docs/agent/hooks). Windsurf, which has no `ask`: the reason on stderr with exit
    2 for a denial, anything else proceeds with a note on stdout
    (docs.windsurf.com/windsurf/cascade/hooks)."""
    dialect = event["dialect"]
    if event["phase"] != "pre":
        verdict = ALLOW  # after the fact there is nothing to deny
    if dialect == "devin":  # Devin reads `decision: block` with exit 2, and additionalContext;
        if verdict == DENY:  # it has no ask: an uncertain command runs and is reported after
            return json_text({"decision": "block", "reason": text}), text, True
        if text:
            return json_text({"hookSpecificOutput": {
                "hookEventName": event["event_name"], "additionalContext": text}}), "", False
        return "", "", False
    if dialect == "claude":
        if verdict != ALLOW:
            return json_text({"hookSpecificOutput": {
                "hookEventName": event["event_name"], "permissionDecision": verdict,
                "permissionDecisionReason": text}}), "", False
        if text:
            return json_text({"hookSpecificOutput": {
                "hookEventName": event["event_name"], "additionalContext": text}}), "", False
        return "", "", False
    if dialect == "cursor":
        if verdict == DENY:  # the reason on stderr too, for a runner that reads only the exit code
            return json_text({"permission": "deny", "user_message": text,
                              "agent_message": text}), text, True
        if verdict == ASK:
            return json_text({"permission": "ask", "user_message": text,
                              "agent_message": text}), "", False
        if text and event["kind"] == "session_start":
            return json_text({"additional_context": text}), "", False
        if text and event["phase"] == "pre":
            return json_text({"agent_message": text}), "", False
        if text and event["event_name"] in ("postToolUse", "postToolUseFailure"):
            return json_text({"additional_context": text}), "", False
        return "{}", text, False  # an after-event with no answer field: to the hook log
    return ("", text, True) if verdict == DENY else (text, "", False)


SHELL_PROGRAMS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"}
TOOL_PATH_ENDINGS = (SHIM_PATH, LAUNCHER_PATH)
# Longest first: the first that matches at a position is the operator there.
SHELL_OPERATORS = ("&>>", "<<<", "<<-", "&&", "||", ";;", "|&", "&>", "<<", ">>", "<&", ">&",
                   "<>", ">|", ";", "&", "|", "(", ")", "<", ">", "\n")
REDIRECTIONS = {"<<<", "<<-", "<<", ">>", "<&", ">&", "<>", ">|", "<", ">", "&>", "&>>"}
WRITING_REDIRECTIONS = {">", ">>", ">|", "<>", "&>", "&>>", ">&"}  # `>&` only onto a file
GLOB_CHARACTERS = "*?["


class ShellWord:
    """One word of a command line as the shell reads it. `text`: what the program receives
    when nothing in the word expands; `pattern`: the same with each quoted character behind a
    backslash, for brace and glob expansion; `dynamic_at`: where in `text` the first
    variable, arithmetic or command substitution starts (its value is unknown here), or -1;
    `substitutions`: the command lines substituted into it, which run too."""
    __slots__ = ("text", "pattern", "dynamic_at", "substitutions")

    def __init__(self, text="", pattern="", dynamic_at=-1, substitutions=()):
        self.text, self.pattern = text, pattern
        self.dynamic_at, self.substitutions = dynamic_at, list(substitutions)

    @property
    def dynamic(self):
        return self.dynamic_at >= 0

    def __repr__(self):
        return f"ShellWord({self.text!r})"


def literal_word(text):
    """A word whose characters are all quoted: no expansion at all."""
    return ShellWord(text, "".join("\\" + ch for ch in text))


def skip_quoted(line, i):
    """The index after the quoted or escaped text that starts at `line[i]` (a backslash,
    '...', $'...' or "..."), or None when `line[i]` starts none; ValueError when it never
    ends."""
    char, end = line[i], len(line)
    if char == "\\":
        return i + 2
    if char == "'":
        close = line.find("'", i + 1)
        if close == -1:
            raise ValueError("unterminated quote")
        return close + 1
    quoted = {"$": ("'", i + 2), '"': ('"', i + 1)}.get(char)
    if quoted is None or (char == "$" and line[i + 1:i + 2] != "'"):
        return None
    closing, j = quoted  # $'...' and "..." end at their first unescaped quote
    while j < end and line[j] != closing:
        j += 2 if line[j] == "\\" else 1
    if j >= end:
        raise ValueError("unterminated quote")
    return j + 1


def closing_parenthesis(line, i):
    """The index just after the `)` that closes the `(` at `i - 1`, skipping quoted text,
    comments and nested parentheses; raises ValueError when there is none."""
    return closing_of(line, i, "(", ")", comments=True)


def closing_brace(line, i):
    """The index just after the `}` that closes `${` (whose `{` is at `i - 1`), skipping
    quoted text and nested `${...}`; ValueError when there is none."""
    return closing_of(line, i, "${", "}")


def closing_of(line, i, opening, closing, comments=False):
    """The index just after the `closing` character that ends what an `opening` just before
    `i` began, counting nested ones and skipping quoted text (and, with `comments`, a `#`
    comment); ValueError when nothing ends it."""
    depth, end = 1, len(line)
    while i < end:
        skipped = skip_quoted(line, i)
        if skipped is not None:
            i = skipped
            continue
        if comments and line[i] == "#" and (i == 0 or line[i - 1] in " \t\n;(&|"):
            newline = line.find("\n", i)
            i = end if newline == -1 else newline
            continue
        if line.startswith(opening, i):
            depth, i = depth + 1, i + len(opening)
            continue
        if line[i] == closing:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"nothing closes {opening!r}")


def substitutions_in(text):
    """The command lines substituted anywhere in `text` (`$(...)` and backquotes, also inside
    `${...}` and arithmetic), as a here-document body or a parameter's default expands them."""
    found, i = [], 0
    while i < len(text):
        if text.startswith("$(", i):
            try:
                close = closing_parenthesis(text, i + 2)
            except ValueError:
                return found + [text[i + 2:]]
            found.append(text[i + 2:close - 1])
            i = close
        elif text[i] == "`":
            close = text.find("`", i + 1)
            found.append(text[i + 1:] if close == -1 else text[i + 1:close])
            i = len(text) if close == -1 else close + 1
        elif text[i] == "\\":
            i += 2
        else:
            i += 1
    return found


ANSI_C_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a",
                  "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "v": "\v", "?": "?"}


def ansi_c_escape(line, j):
    """(the character a `$'...'` escape at `line[j] == "\\"` stands for, the index after it),
    as bash reads \\n, \\xHH, \\NNN, \\uHHHH, \\UHHHHHHHH and \\cX."""
    kind = line[j + 1:j + 2]
    if kind in ANSI_C_ESCAPES:
        return ANSI_C_ESCAPES[kind], j + 2
    for prefix, digits, base in (("x", 2, 16), ("u", 4, 16), ("U", 8, 16)):
        if kind == prefix:
            k = j + 2
            while k < j + 2 + digits and k < len(line) and line[k] in "0123456789abcdefABCDEF":
                k += 1
            if k > j + 2:
                try:
                    return chr(int(line[j + 2:k], base)), k
                except (ValueError, OverflowError):
                    return "", k
            return "\\" + kind, j + 2
    if kind and kind in "01234567":
        k = j + 1
        while k < j + 4 and k < len(line) and line[k] in "01234567":
            k += 1
        return chr(int(line[j + 1:k], 8) & 0xFF), k
    if kind == "c" and j + 2 < len(line):
        return chr(ord(line[j + 2]) & 0x1F), j + 3
    return "\\" + kind, j + 2


def shell_tokens(line):
    """A shell command line as (is_operator, text, word) tokens (word: a ShellWord, None for an
    operator), read the way a POSIX shell reads it: quotes and backslashes make text literal,
    `$'...'` as bash and zsh read it, `$NAME`, `${...}`, `$((...))`, `$(...)` and backquotes
    expand (a substitution runs a command: its text is kept, also inside `${...}`, arithmetic
    and an unquoted here-document's body), `#` at the start of a word comments out the rest
    of the line, a number just before `<` or `>` is a file descriptor, `[[ ... ]]` compares
    (its `<` and `>` redirect nothing) and `(( ... ))` counts (a `:` word stands for it).
    Raises ValueError on an unterminated quote."""
    tokens, i, end = [], 0, len(line)
    heredocs, want_delimiter = [], False  # heredocs: (delimiter, whether its body expands)
    text, pattern, subs, dynamic_at, started = [], [], [], -1, False
    in_test = False  # inside [[ ... ]]

    def literal(chars, quoted):
        nonlocal started
        started = True
        text.append(chars)
        pattern.append("".join("\\" + ch for ch in chars) if quoted else chars)

    def expansion(raw, substituted=()):
        nonlocal dynamic_at, started
        if dynamic_at < 0:
            dynamic_at = len("".join(text))
        started = True
        text.append(raw)
        pattern.append("".join("\\" + ch for ch in raw))
        subs.extend(substituted)

    def dollar(i):
        """Read the expansion at `line[i] == "$"`; the index after it."""
        after = line[i + 1:i + 2]
        if after == "(":
            close = closing_parenthesis(line, i + 2)
            inner = line[i + 2:close - 1]
            # $((...)) counts, but its text may hold substitutions, and `$((cmd); (cmd))` is
            # a command: read the inner text as commands either way (counting runs none).
            expansion(line[i:close], [inner])
            return close
        if after == "{":
            close = closing_brace(line, i + 2)
            expansion(line[i:close], substitutions_in(line[i + 2:close - 1]))
            return close
        j = i + 1
        if after and (after.isalpha() or after == "_"):
            while j < end and (line[j].isalnum() or line[j] == "_"):
                j += 1
        elif after and after in "0123456789@*#?$!-":
            j += 1
        else:
            literal("$", False)
            return i + 1
        expansion(line[i:j])
        return j

    def backquote(i):
        j = i + 1
        while j < end and line[j] != "`":
            j += 2 if line[j] == "\\" else 1
        if j >= end:
            raise ValueError("unterminated backquote")
        expansion(line[i:j + 1], [line[i + 1:j].replace("\\`", "`").replace("\\\\", "\\")])
        return j + 1

    def at_command_start():
        return not tokens or tokens[-1][0] or tokens[-1][1] in SHELL_KEYWORDS

    def finish():
        nonlocal text, pattern, subs, dynamic_at, started, want_delimiter, in_test
        if started:
            word = ShellWord("".join(text), "".join(pattern), dynamic_at, subs)
            if want_delimiter:
                heredocs.append((word.text, word.pattern == word.text))
                want_delimiter = False
            if word.text == "[[" and word.pattern == "[[" and at_command_start():
                in_test = True
            elif word.text == "]]" and in_test:
                in_test = False
            tokens.append((False, word.text, word))
        text, pattern, subs, dynamic_at, started = [], [], [], -1, False

    while i < end:
        char = line[i]
        if char in " \t\r":
            finish()
            i += 1
        elif char == "#" and not started:
            i = line.find("\n", i) if "\n" in line[i:] else end
        elif char == "\\":
            if line[i + 1:i + 2] not in ("\n", ""):
                literal(line[i + 1], True)
            i += 2
        elif char == "'":
            close = line.find("'", i + 1)
            if close == -1:
                raise ValueError("unterminated quote")
            literal(line[i + 1:close], True)
            i = close + 1
        elif char == "$" and line[i + 1:i + 2] == "'":  # $'...': bash's and zsh's escapes
            j, chars = i + 2, []
            while j < end and line[j] != "'":
                if line[j] == "\\" and j + 1 < end:
                    decoded, j = ansi_c_escape(line, j)
                    chars.append(decoded)
                else:
                    chars.append(line[j])
                    j += 1
            if j >= end:
                raise ValueError("unterminated quote")
            literal("".join(chars), True)
            i = j + 1
        elif char == '"':
            i += 1
            started = True
            while i < end and line[i] != '"':
                if line[i] == "\\" and line[i + 1:i + 2] in ('"', "\\", "$", "`", "\n"):
                    if line[i + 1] != "\n":
                        literal(line[i + 1], True)
                    i += 2
                elif line[i] == "$":
                    i = dollar(i)
                elif line[i] == "`":
                    i = backquote(i)
                else:
                    literal(line[i], True)
                    i += 1
            if i >= end:
                raise ValueError("unterminated quote")
            i += 1
        elif char == "$":
            i = dollar(i)
        elif char == "`":
            i = backquote(i)
        elif in_test and char in "<>":
            literal(char, False)  # a comparison inside [[ ... ]]
            i += 1
        elif char == "(" and started and text and text[-1][-1:] in "@+!?*":
            close = closing_parenthesis(line, i + 1)  # bash's extglob, zsh's qualifiers: x@(a|b)
            literal(line[i:close], False)
            i = close
        elif char == "(" and line.startswith("((", i) and not started and at_command_start():
            close = closing_parenthesis(line, i + 1)  # (( ... )): arithmetic, no command
            inner = line[i + 2:close - 1]
            close = close + 1 if line[close:close + 1] == ")" else close
            tokens.append((False, ":", ShellWord(":", ":", -1, substitutions_in(inner))))
            i = close
        elif char in "<>" and line[i + 1:i + 2] == "(":
            close = closing_parenthesis(line, i + 2)  # <(cmd), >(cmd): a path to a pipe
            expansion(line[i:close], [line[i + 2:close - 1]])
            i = close
        elif char in ";&|()<>\n":
            operator = next(op for op in SHELL_OPERATORS if line.startswith(op, i))
            if char in "<>" and started and "".join(pattern).isdigit():
                text, pattern, subs, dynamic_at, started = [], [], [], -1, False  # `2>`: a descriptor
            finish()
            i += len(operator)
            if operator in (">", ">>") and line[i:i + 1] == "!":
                i += 1  # zsh's >! and >>! (clobber anyway): the same writes
            tokens.append((True, operator, None))
            want_delimiter = operator in ("<<", "<<-")
            if operator == "\n":
                for delimiter, expands in heredocs:  # a here-document's body is data...
                    while i < end:
                        stop = line.find("\n", i)
                        stop = end if stop == -1 else stop
                        body_line, i = line[i:stop], stop + 1
                        if body_line.lstrip("\t") == delimiter:
                            break
                        if expands:  # ...but an unquoted delimiter's body expands
                            for command in substitutions_in(body_line):
                                tokens.append((False, ":", ShellWord(":", ":", -1, [command])))
                                tokens.append((True, ";", None))
                heredocs = []
        else:
            literal(char, False)
            i += 1
    finish()
    return tokens


def session_named_in_command(command_line, nesting=0):
    """The `--session S` with which a shell command line runs one of this tool's writing
    commands, else None. The line is read as the shell reads it (see shell_tokens): simple
    commands split at unquoted `;`, `&&`, `||`, `|`, `&` and newlines, `VAR=x`, `env`,
    `timeout` and the like skipped, `sh -c '...'` read inside. It counts only where the
    program run is the tool itself (the shim, the launcher, or orchestrator.py run by a shell
    or Python) on the repository's own state: a mention in `echo`, a quoted string, a grep
    pattern, a comment or a here-document binds nothing. With several, the last counts."""
    try:
        tokens = shell_tokens(command_line or "")
    except ValueError:  # not a command line the shell would run
        return None
    named = None
    for command, _, _ in simple_commands(tokens):
        named = session_of_invocation([word.text for word in command], nesting) or named
    return named


def simple_commands(tokens):
    """shell_tokens grouped into simple commands: (words, [(redirection, target)], the
    operator that ends it); words and targets are ShellWords."""
    words, redirects, redirection = [], [], None
    for is_operator, text, word in tokens + [(True, ";", None)]:
        if redirection is not None and not is_operator:
            redirects.append((redirection, word))  # `> file`: the file is no argument
            redirection = None
        elif is_operator and text in REDIRECTIONS:
            redirection = text
        elif is_operator:
            redirection = None
            yield words, redirects, text
            words, redirects = [], []
        else:
            words.append(word)


def skip_options(words, valued=()):
    """Drop leading options (and the value of those in `valued`); the words left."""
    while words and words[0].startswith(("-", "+")) and words[0] not in ("-", "--"):
        option = words.pop(0)
        if option in valued and words:
            words.pop(0)
    if words and words[0] == "--":
        words.pop(0)
    return words


def session_of_invocation(words, nesting):
    """The session a simple command binds: `--session S` of a writing command of the tool."""
    words = list(words)
    while words:
        name, equals, _ = words[0].partition("=")
        program = os.path.basename(words[0])
        if equals and name.isidentifier():
            if name == STATE_ENV:
                return None  # the command acts on another state file
            words.pop(0)
        elif program == "env":
            words = skip_options(words[1:], ("-u", "-C", "-S"))
        elif program in ("nohup", "exec", "time"):
            words = skip_options(words[1:], ("-a",))
        elif program == "nice":
            words = skip_options(words[1:], ("-n",))
        elif program == "command":
            if any(w in ("-v", "-V") for w in words[1:2]):
                return None  # `command -v` only looks the program up
            words = skip_options(words[1:])
        elif program == "timeout":
            words = skip_options(words[1:], ("-s", "-k", "--signal", "--kill-after"))[1:]
        else:
            break
    if not words:
        return None
    interpreter, arguments = os.path.basename(words[0]), words[1:]
    if interpreter in SHELL_PROGRAMS:
        options = [w for w in arguments[:len(arguments) - len(skip_options(
            list(arguments), ("-o", "+o", "-O", "+O")))] if w[:1] in "-+" and w[1:2] != "-"]
        arguments = skip_options(arguments, ("-o", "+o", "-O", "+O"))
        if any("n" in option[1:] for option in options):
            return None  # `sh -n` reads without running
        if any("c" in option[1:] for option in options):  # `sh -c '...'`: the line inside
            return session_named_in_command(arguments[0], nesting + 1) \
                if arguments and nesting < 2 else None
        program, arguments = (arguments[0], arguments[1:]) if arguments else ("", [])
    elif interpreter.startswith("python"):
        if any(option in ("-c", "-m") for option in arguments[:1]):
            return None
        arguments = skip_options(arguments, ("-X", "-W"))
        program, arguments = (arguments[0], arguments[1:]) if arguments else ("", [])
        if os.path.basename(program) != "orchestrator.py":
            return None
    else:
        program = words[0]
    if not (program.replace("\\", "/").endswith(TOOL_PATH_ENDINGS)
            or os.path.basename(program) == "orchestrator.py"):
        return None
    return session_in_tool_arguments(arguments)


def session_in_tool_arguments(arguments):
    """`--session S` of a writing command, read through the same flag table as the parsers
    (parse_fast_path), with `--json` anywhere; None for a reading command, a malformed id,
    help, another state file, or a command line the tool itself would not take plainly."""
    words = [word for word in arguments if word != "--json"]
    if any(word == "--" or word in ("-h", "--help") or word.startswith("--state")
           for word in words):
        return None
    parsed = parse_fast_path(words)
    if parsed is None or parsed.command not in WRITING_COMMANDS:
        return None
    session = parsed.session
    return session if session and is_kebab_case(session) else None


# -- the shell reader

# A command line is judged by what it would change, not by how it is spelled: the shell's own
# reading (shell_tokens), then prefixes and wrappers removed, `sh -c` and `eval` of literal
# text read inside, `cd`/`pushd`/`popd` followed, braces and globs expanded against the
# worktree as the shell would, each known writer's operands taken from its own option syntax,
# and git asked which files its worktree-changing commands would touch. What the words cannot
# tell (a variable target, xargs, find -exec, an unknown program) is marked uncertain with the
# paths it names, for the hook to ask about.

PREFIX_PROGRAMS = {  # program: (its options that take a value, operands before the command)
    "command": ((), 0), "builtin": ((), 0), "exec": (("-a",), 0), "nohup": ((), 0),
    "time": (("-f", "-o"), 0), "nice": (("-n", "--adjustment"), 0),
    "timeout": (("-s", "-k", "--signal", "--kill-after"), 1),
    "stdbuf": (("-i", "-o", "-e", "--input", "--output", "--error"), 0),
    "sudo": (("-u", "-g", "-C", "-D", "-h", "-p", "-U", "-r", "-t", "-T"), 0),
    "doas": (("-u", "-C"), 0), "setsid": ((), 0), "ionice": (("-c", "-n", "-p"), 0),
    "chrt": ((), 1), "taskset": ((), 1), "unbuffer": ((), 0), "catchsegv": ((), 0),
    "flock": (("-w", "-E", "--timeout", "--conflict-exit-code"), 1),
}
SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{",
                  "}", "[[", "]]", "function", "coproc"}
# Programs that change no file, whatever files they are given.
READING_PROGRAMS = {
    "cat", "tac", "less", "more", "head", "tail", "grep", "egrep", "fgrep", "rg", "ag", "ack",
    "ls", "ll", "dir", "tree", "wc", "file", "stat", "du", "df", "diff", "cmp", "comm",
    "md5sum", "sha1sum", "sha256sum", "sha512sum", "cksum", "b2sum", "echo", "printf", "true",
    "false", "test", "[", ":", "pwd", "which", "type", "whoami", "id", "date", "printenv",
    "realpath", "readlink", "basename", "dirname", "jq", "cut", "tr", "column", "nl", "od",
    "hexdump", "strings", "fold", "fmt", "paste", "join", "expand", "unexpand", "rev", "look",
    "seq", "yes", "sleep", "uname", "hostname", "env", "export", "unset", "set", "shopt",
    "local", "declare", "typeset", "readonly", "trap", "wait", "exit", "return", "break",
    "continue", "shift", "alias", "unalias", "hash", "umask", "ulimit", "history", "jobs",
    "read", "getopts", "let", "ps", "pgrep", "top", "uptime", "free", "nproc", "locale",
    "tput", "stty", "clear", "man", "help", "info", "whereis", "apropos", "xxd", "zcat",
    "bzcat", "xzcat", "zgrep", "zless", "lsof", "pytest", "mypy", "pyright", "flake8",
    "pylint", "shellcheck", "eslint", "cloc", "tokei", "bat", "fd", "fzf", "delta",
}
# git's commands that change no file in the worktree (refs, the index and objects aside).
GIT_READING = {
    "status", "diff", "log", "show", "blame", "annotate", "branch", "fetch", "ls-files",
    "ls-tree", "rev-parse", "grep", "describe", "remote", "config", "tag", "shortlog",
    "reflog", "cat-file", "for-each-ref", "merge-base", "name-rev", "rev-list", "show-ref",
    "add", "commit", "push", "notes", "help", "version", "count-objects", "fsck", "gc",
    "whatchanged", "range-diff", "var", "check-ignore", "check-attr", "diff-tree",
    "diff-index", "diff-files", "symbolic-ref", "update-ref", "hash-object", "verify-commit",
    "show-branch", "cherry", "stage", "maintenance",
}
# git's commands that change worktree files in ways only a merge would tell.
GIT_MERGING = {"merge", "pull", "rebase", "cherry-pick", "revert", "am", "bisect",
               "read-tree", "checkout-index", "sparse-checkout", "submodule", "switch-branch"}
# find's words that leave -delete removing everything below its starting points.
FIND_DELETING_ALL = {"-delete", "-depth", "-xdev", "-mount", "-ignore_readdir_race"}
MAX_BRACE_WORDS = 1000  # a brace expansion larger than this is not expanded
MAX_FOLDERS_FOLLOWED = 8  # folders a line of failing `cd`s may be in; more is not known
FIND_SECONDS = 3  # a find asked what it would remove; longer, and the command is uncertain
FOUND_STAND_IN = "__paths-found-at-run-time__"  # what xargs and find -exec hand a command
MAX_SHELL_NESTING = 16  # `sh -c`, eval and substitutions read this deep; deeper is uncertain
MAX_GLOB_MATCHES = 5000  # a glob matching more is judged as uncertain, not path by path


def unescape_pattern(pattern):
    """A pattern's text with its backslash escapes removed."""
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            i += 1
        out.append(pattern[i])
        i += 1
    return "".join(out)


def unescaped_positions(pattern, characters):
    """Indexes of `characters` in `pattern` that no backslash escapes."""
    found, i = [], 0
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] in characters:
            found.append(i)
        i += 1
    return found


def expand_braces(pattern):
    """bash's and zsh's brace expansion of an escaped pattern: `{a,b}` and `{1..3}` (also with a
    step), nested, in order; a pattern with no such brace is itself; None when it would make
    more than MAX_BRACE_WORDS words or nests deeper than the shell would bother to."""
    if len(unescaped_positions(pattern, "{")) > 64:
        return None
    words = brace_words(pattern, [0])
    return None if words is None else words


def brace_words(pattern, made):
    """expand_braces' work; `made` counts the words made so far, to stop at the limit."""
    opening = unescaped_positions(pattern, "{}")
    for start in (i for i in opening if pattern[i] == "{"):
        depth, commas, close = 0, [], None
        for i in unescaped_positions(pattern[start:], "{},"):
            char = pattern[start + i]
            depth += {"{": 1, "}": -1}.get(char, 0)
            if char == "," and depth == 1:
                commas.append(start + i)
            if depth == 0:
                close = start + i
                break
        if close is None:
            return [pattern]
        head, body, tail = pattern[:start], pattern[start + 1:close], pattern[close + 1:]
        if commas:
            cuts = [start] + commas + [close]
            parts = [pattern[a + 1:b] for a, b in zip(cuts, cuts[1:])]
        else:
            try:
                parts = brace_sequence(body)
            except OverflowError:
                return None
            if parts is None:
                continue
        if len(parts) > MAX_BRACE_WORDS:
            return None
        words = []
        for part in parts:
            more = brace_words(head + part + tail, made)
            if more is None:
                return None
            words += more
            made[0] += len(more)
            if len(words) > MAX_BRACE_WORDS or made[0] > 4 * MAX_BRACE_WORDS:
                return None
        return words
    return [pattern]


def brace_sequence(body):
    """The words of a sequence brace's body (`1..5`, `a..e`, `1..10..2`), or None when it is
    no sequence; OverflowError past MAX_BRACE_WORDS."""
    parts = body.split("..")
    if len(parts) not in (2, 3):
        return None
    low, high = parts[0], parts[1]
    step = parts[2] if len(parts) == 3 else "1"
    if not step.lstrip("-").isdigit() or int(step) == 0:
        return None
    step = abs(int(step))
    if low.lstrip("-").isdigit() and high.lstrip("-").isdigit():
        a, b = int(low), int(high)
        if abs(b - a) // step > MAX_BRACE_WORDS:
            raise OverflowError("more words than MAX_BRACE_WORDS")
        return [str(n) for n in range(a, b + (1 if a <= b else -1), step if a <= b else -step)]
    if len(low) == len(high) == 1 and low.isalpha() and high.isalpha():
        direction = 1 if low <= high else -1
        return [chr(c) for c in range(ord(low), ord(high) + direction, step * direction)]
    return None


def glob_on_disk(pattern, folder):
    """The paths an escaped shell pattern matches from `folder`, sorted as the shell sorts
    them; [] when it matches nothing (the shell then passes the word as it is); None past
    MAX_GLOB_MATCHES. `**` crosses folders (zsh's, and bash's with globstar) below `folder`
    only: an absolute pattern is not walked through the whole file system."""
    import glob
    import itertools
    parts, i = [], 0
    while i < len(pattern):  # the shell's backslash escapes as glob's brackets
        if pattern[i] == "\\" and i + 1 < len(pattern):
            parts.append(f"[{pattern[i + 1]}]" if pattern[i + 1] in "*?[" else pattern[i + 1])
            i += 2
        else:
            parts.append(pattern[i])
            i += 1
    translated = "".join(parts)
    relative = not os.path.isabs(translated)
    absolute = os.path.join(glob.escape(folder), translated) if relative else translated
    found = list(itertools.islice(glob.iglob(absolute, recursive=relative),
                                  MAX_GLOB_MATCHES + 1))
    return None if len(found) > MAX_GLOB_MATCHES else sorted(found)


PYTHON_READING_MODULES = {"pytest", "unittest", "mypy", "pyflakes", "flake8", "pylint",
                          "doctest", "tabnanny"}


def is_this_tool(program):
    """Is `program` this tool: the shim, the launcher, or orchestrator.py?"""
    program = program.replace("\\", "/")
    return program.endswith(TOOL_PATH_ENDINGS) or os.path.basename(program) == "orchestrator.py"


class ShellEffects:
    """What a command line would change as far as its words tell: `changes`, (absolute path,
    whether everything below it is changed too); `uncertain`, (why, [(absolute path, whether
    it stands for everything below it)]) for commands whose effect the words do not tell,
    with the paths they name."""

    def __init__(self):
        self.changes, self.uncertain, self.seen = [], [], set()

    def change(self, path, tree=False):
        if (path, tree) not in self.seen:
            self.seen.add((path, tree))
            self.changes.append((path, tree))

    def unsure(self, why, named):
        self.uncertain.append((why, list(named)))


# Tools that only read (or write only their own caches and build folders) when run this way:
# program -> the subcommands that read, or a test of its arguments.
READING_SUBCOMMANDS = {
    "npm": {"test", "t", "ls", "list", "outdated", "audit", "view", "info", "run-script"},
    "yarn": {"test", "list", "info", "why", "audit"}, "pnpm": {"test", "list", "ls", "why"},
    "cargo": {"test", "check", "clippy", "build", "bench", "doc", "tree", "metadata", "run"},
    "go": {"test", "vet", "build", "list", "doc", "env", "version", "run"},
    "make": {"test", "check", "tests", "lint"}, "docker": {"build", "ps", "images", "logs",
                                                           "inspect", "run", "compose"},
    "ruff": {"check"}, "mypy": None, "tox": None, "nox": None,
}
READING_TOOLS = {"jest", "vitest", "mocha", "ava", "tap", "coverage", "code", "open",
                 "xdg-open", "cat", "bundle", "rspec", "phpunit", "gradle", "mvn", "dotnet"}
WRITING_FLAGS = {"--fix", "--write", "-w", "--fix-only", "-u", "--updateSnapshot", "--in-place",
                 "-i", "format", "fmt", "--unsafe-fixes"}


def reads_only(program, arguments):
    """Is `program ARGUMENTS` a build, a test run or a check that writes no source file?
    (npm test, cargo check, ruff check, black --check, prettier --check, tsc --noEmit, ...)"""
    if any(a in WRITING_FLAGS or a.startswith("--fix") for a in arguments):
        return program in ("ruff",) and "format" in arguments and "--check" in arguments
    if program in READING_TOOLS:
        return True
    if program in ("black", "prettier", "isort", "autopep8", "gofmt", "rustfmt", "clang-format"):
        return any(a in ("--check", "-c", "--diff", "-l", "--list-different", "-d")
                   for a in arguments)
    if program == "ruff":
        return bool(arguments) and (arguments[0] == "check" or (
            arguments[0] == "format" and "--check" in arguments))
    if program in ("tsc", "vue-tsc"):
        return "--noEmit" in arguments
    if program in ("node", "deno", "bun") and arguments[:1] == ["--test"] or arguments[:1] == [
            "test"] and program in ("deno", "bun"):
        return True
    if program == "eslint":
        return True  # --fix is a writing flag, caught above
    if program in READING_SUBCOMMANDS:
        subcommands = READING_SUBCOMMANDS[program]
        words = [a for a in arguments if not a.startswith("-")]
        if subcommands is None:
            return True
        if program in ("npm", "yarn", "pnpm") and words[:1] == ["run"]:
            return len(words) > 1 and words[1] in ("test", "lint", "typecheck", "check",
                                                   "build")
        return bool(words) and words[0] in subcommands
    return False


# Variables that make a program run other code, or work on other files, than its words say.
RISKY_VARIABLES = {"BASH_ENV", "ENV", "PS4", "PROMPT_COMMAND", "LESSOPEN", "LESSCLOSE",
                   "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONSTARTUP", "PYTHONPATH", "PERL5OPT",
                   "NODE_OPTIONS", "RUBYOPT", "EDITOR", "VISUAL", "PAGER", "MANPAGER", "SHELL",
                   "GIT_EDITOR", "GIT_PAGER", "GIT_EXTERNAL_DIFF", "GIT_SSH", "GIT_SSH_COMMAND",
                   "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG", "GIT_CONFIG_COUNT",
                   "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM",
                   "GIT_EXEC_PATH", "GIT_TEMPLATE_DIR"}
# Builtins whose quoted arguments the shell may still run (array subscripts, callbacks).
EVALUATING_BUILTINS = {"let", "test", "[", "printf", "declare", "typeset", "local", "export",
                       "readonly", "mapfile", "readarray", "read", "unset", "[["}
# Interpreters and the options that give them code to run.
CODE_OPTIONS = {"node": ("-e", "-p", "--eval", "--print"),
                "ruby": ("-e",), "php": ("-r",), "deno": ("eval",), "bun": ("-e", "--eval"),
                "lua": ("-e",), "Rscript": ("-e",), "osascript": ("-e",)}


def paths_in_code(code):
    """Words of a program's source text that look like paths (`os.remove('src/a.py')`)."""
    import re
    return [literal_word(found) for found in re.findall(r"[\w./~+-]+", code)
            if "/" in found or "." in found.strip(".")]


class ShellReader:
    """Reads a command line as the shell would run it from `folder`, following the folder it
    moves to; collects ShellEffects. `git(folder, *args)` answers git's questions."""

    def __init__(self, folder, git, home=None):
        self.origin = os.path.abspath(folder)
        self.folders, self.known = [self.origin], True  # where the next command runs
        self.previous, self.stack, self.aliases = None, [], {}
        self.git, self.home = git, home
        self.cdpath = False  # CDPATH or cdable_vars: a relative `cd NAME` may go anywhere
        self.links = {}  # links made earlier on the line: link path -> what it reaches
        self.options = set()  # shopt/setopt options seen on the line
        self.variables = {}  # NAME=literal assignments seen on the line
        self.created = set()  # folders made earlier on the line
        self.effects = ShellEffects()

    # -- the command line, command by command
    def read(self, line, nesting=0):
        if nesting > MAX_SHELL_NESTING:
            self.effects.unsure("commands nested deeper than this tool reads",
                                [(self.here(), True)])
            return
        try:
            tokens = shell_tokens(line)
        except ValueError:
            # The shell runs the complete lines before the one it cannot read.
            lines = line.split("\n")
            while lines:
                lines.pop()
                try:
                    tokens = shell_tokens("\n".join(lines))
                    break
                except ValueError:
                    continue
            else:
                tokens = []
            self.effects.unsure("part of the command line is not complete shell syntax",
                                [(self.here(), True)])
        saved = []
        for words, redirects, ending in simple_commands(tokens):
            self.command(words, redirects, nesting)
            if ending == "(":
                saved.append((list(self.folders), self.known, self.previous, list(self.stack)))
            elif ending == ")" and saved:
                self.folders, self.known, self.previous, self.stack = saved.pop()

    def command(self, words, redirects, nesting):
        for word in words + [target for _, target in redirects]:
            for substituted in word.substitutions:
                self.in_subshell(substituted, nesting + 1)
        for redirection, target in redirects:
            if redirection in WRITING_REDIRECTIONS and not (
                    redirection == ">&" and (target.text.isdigit() or target.text == "-")):
                self.write(target, "a redirection")
        words = self.braces_expanded(words)
        if words is None:
            return
        words = self.unwrapped(words, nesting, redirects)
        if not words:
            return
        if words[0].dynamic:
            self.effects.unsure("the program to run is set by a variable", self.named(words))
            return
        program, arguments = os.path.basename(words[0].text), words[1:]
        if is_this_tool(words[0].text):
            return  # it changes the state only, by its own rules
        if program in EVALUATING_BUILTINS and any("$(" in w.text or "`" in w.text
                                                  for w in arguments):
            self.effects.unsure(f"`{program}` may run the code in its arguments",
                                [(self.here(), True)])
        if program.startswith("python") and (program[6:] == ""
                                             or program[6:].replace(".", "").isdigit()):
            self.python(arguments)
        elif program in CODE_OPTIONS and any(w.text in CODE_OPTIONS[program]
                                             or w.text.split("=")[0] in CODE_OPTIONS[program]
                                             for w in arguments):
            self.effects.unsure(f"{program} runs code given on its command line",
                                self.named(paths_in_code(" ".join(w.text for w in arguments))))
        elif program in self.aliases:
            self.alias(program, arguments, nesting)
        elif program in ("cd", "pushd", "popd"):
            self.change_folder(program, arguments)
        elif program == "alias":
            for word in arguments:
                name, equals, value = word.text.partition("=")
                if equals:
                    self.aliases[name] = value
        elif program in ("shopt", "setopt"):
            self.options.update(w.text for w in arguments if not w.text.startswith("-"))
            if self.options & {"cdable_vars", "auto_cd", "autocd", "cdablevars"}:
                self.cdpath = True
        elif program in ("export", "declare", "typeset", "local", "readonly"):
            self.assignments([w for w in arguments if not w.text.startswith("-")])
        elif program == "trap":
            if arguments and not arguments[0].text.startswith("-"):
                self.in_subshell(arguments[0].text, nesting + 1)
        elif program in ("source", "."):
            elsewhere = any(w.dynamic or w.text.startswith(("/dev/", "/proc/"))
                            for w in arguments[:1])  # a pipe, stdin: code the words do not show
            self.effects.unsure("the script it reads runs here", self.named(arguments) + (
                self.anywhere(arguments[0]) if elsewhere else [(self.here(), False)]))
        elif program in ("mapfile", "readarray") and any(w.text.startswith("-C")
                                                         for w in arguments):
            self.effects.unsure(f"`{program} -C` runs code", [(self.here(), True)])
        elif program == "git":
            self.git_command(arguments)
        elif program in WRITERS:
            WRITERS[program](self, arguments)
        elif program == "xargs":
            self.xargs(arguments)
        elif program in ("npx", "pnpx", "bunx") and arguments:
            self.command(arguments, [], nesting + 1)  # the package's program, as if run here
        elif reads_only(program, [w.text for w in arguments]):
            return
        elif program not in READING_PROGRAMS:
            # It names its paths, and may write where it runs: asked when that lies in a lock.
            self.effects.unsure(f"`{as_label(program, 60)}` is a program this tool cannot read "
                                "the effect of", self.named(arguments, only_paths=True)
                                + [(self.here(), False)])

    def in_subshell(self, line, nesting):
        saved = (list(self.folders), self.known, self.previous, list(self.stack))
        self.read(line, nesting)
        self.folders, self.known, self.previous, self.stack = saved

    def braces_expanded(self, words):
        """The words with bash's and zsh's brace expansion applied (the program's word too);
        None, with the command uncertain, when an expansion is too large to follow."""
        expanded = []
        for word in words:
            if word.dynamic or not unescaped_positions(word.pattern, "{"):
                expanded.append(word)
                continue
            patterns = expand_braces(word.pattern)
            if patterns is None:
                self.effects.unsure("a brace expansion too large to follow",
                                    [(self.here(), True)])
                return None
            expanded += [ShellWord(unescape_pattern(p), p) for p in patterns]
        return expanded

    def assignments(self, words):
        """`NAME=value` words (before a program, or given to export): a variable that makes
        programs run other code makes the command uncertain; HOME and CDPATH change where
        `cd` goes."""
        for word in words:
            name, equals, _ = word.text.partition("=")
            if not (equals and name.isidentifier()):
                continue
            if name in RISKY_VARIABLES or name.startswith("GIT_CONFIG_"):
                self.effects.unsure(f"{name} makes programs run other code or reach other files",
                                    [(self.here(), True)])
            elif name == "HOME":
                self.home = None
            elif name in ("CDPATH", "OLDPWD"):
                self.cdpath = True
            value = word.text.partition("=")[2]
            if word.dynamic and not self.substituted(ShellWord(value, value, 0)).dynamic:
                value = self.substituted(ShellWord(value, value, 0)).text
            elif word.dynamic:
                self.variables.pop(name, None)
                continue
            self.variables[name] = value

    def unwrapped(self, words, nesting, redirects=()):
        """The words with assignments, keywords, prefixes and wrappers removed; None when they
        were read another way (`sh -c`, eval, env -S) or run no program (`[[ ... ]]`)."""
        words = list(words)
        while words:
            first = words[0]
            name, equals, _ = first.text.partition("=")
            program = os.path.basename(first.text)
            if equals and name.isidentifier():
                self.assignments([words.pop(0)])
            elif first.text == "[[":
                return None  # a test: its words name no command (substitutions read above)
            elif first.text in SHELL_KEYWORDS:
                words.pop(0)
            elif first.text in ("for", "case", "select"):
                return None  # a loop variable or a pattern list, not a command
            elif program == "env":
                rest = words[1:]
                while rest and rest[0].text.startswith("-") and rest[0].text != "-":
                    option = rest.pop(0).text
                    if option in ("-C", "--chdir") and rest:
                        self.change_folder("cd", [rest.pop(0)])
                    elif option.startswith("--chdir=") or (option.startswith("-C")
                                                          and len(option) > 2):
                        value = option.partition("=")[2] if option.startswith("--") else option[2:]
                        self.change_folder("cd", [literal_word(value)])
                    elif option in ("-S", "--split-string") and rest:
                        self.read(" ".join(w.text for w in rest), nesting + 1)
                        return None
                    elif option in ("-u", "--unset") and rest:
                        rest.pop(0)
                words = rest
            elif program in ("flock", "script") and any(
                    w.text in ("-c", "--command") or (w.text[:1] == "-" and w.text[1:2] != "-"
                                                      and "c" in w.text and program == "script")
                    for w in words[1:]):
                at = next(i for i, w in enumerate(words) if i and (
                    w.text in ("-c", "--command") or (program == "script" and w.text[:1] == "-"
                                                      and w.text[1:2] != "-" and "c" in w.text)))
                if at + 1 < len(words):
                    self.in_subshell(words[at + 1].text, nesting + 1)
                return None
            elif program in PREFIX_PROGRAMS:
                valued, operands = PREFIX_PROGRAMS[program]
                if program == "command" and any(w.text in ("-v", "-V") for w in words[1:2]):
                    return None  # only looks the program up
                texts = skip_options([w.text for w in words[1:]], valued)
                words = words[len(words) - len(texts):][operands:]
            elif program in SHELL_PROGRAMS:
                return self.shell(words, nesting, redirects)
            elif program == "eval":
                if any(w.dynamic for w in words[1:]):
                    self.effects.unsure("eval runs text set at run time", [(self.here(), True)])
                else:
                    self.read(" ".join(w.text for w in words[1:]), nesting + 1)
                return None
            else:
                break
        return words

    def shell(self, words, nesting, redirects=()):
        """`sh -c TEXT` (also bash, zsh, `-lc`, `-ec`): TEXT read as a command line. A shell
        given no script reads its commands from standard input: a here-string's literal text
        is read, anything else is uncertain."""
        arguments = [w.text for w in words[1:]]
        options = arguments[:len(arguments) - len(skip_options(list(arguments),
                                                               ("-o", "+o", "-O", "+O")))]
        rest = words[1 + len(options):]
        short = [o for o in options if o[:1] == "-" and o[1:2] != "-"]
        if any("c" in o[1:] for o in short):
            if not rest:
                return None
            if rest[0].dynamic:
                self.effects.unsure("the shell runs text set at run time", [(self.here(), True)])
            elif not any("n" in o[1:] for o in short):
                self.in_subshell(rest[0].text, nesting + 1)
            return None
        if rest and not any("s" in o[1:] for o in short):
            if not is_this_tool(rest[0].text):  # a script: what it writes is its own
                self.effects.unsure("a shell script's effect is not read here",
                                    self.named(rest[1:], only_paths=True))
            return None
        for redirection, target in redirects:
            if redirection == "<<<" and not target.dynamic:
                self.in_subshell(target.text, nesting + 1)
                return None
        self.effects.unsure("the shell reads its commands from standard input",
                            [(self.here(), True)])
        return None

    def python(self, arguments):
        """Python running this tool, a module known to only read (pytest, ...), code whose
        paths are named in it, or a program whose effect is not read here."""
        options, operands = split_options(arguments, ("-c", "-m", "-W", "-X"))
        module = next((v.text for o, v in options if o == "-m" and v is not None), None)
        code = next((v.text for o, v in options if o == "-c" and v is not None), None)
        if module in PYTHON_READING_MODULES:
            if module == "pytest":
                self.pytest(arguments)
            return
        if module == "json.tool" and len(operands) >= 2:
            self.write(operands[1], "python -m json.tool")
            return
        if module is None and code is None and operands and is_this_tool(operands[0].text):
            return
        named = self.named(operands if module or code is not None else operands[1:],
                           only_paths=True)
        if code is not None or module == "timeit":
            named += self.named(paths_in_code(code or " ".join(w.text for w in arguments)))
        self.effects.unsure("python runs a program this tool cannot read the effect of",
                            named + [(self.here(), False)])

    def pytest(self, arguments):
        """pytest reads, but --basetemp empties its folder, --junitxml writes a file, and code
        this line wrote (a conftest.py, a module it imports) runs."""
        if any(path.endswith(".py") for path, _ in self.effects.changes):
            self.effects.unsure("pytest runs Python code this command line wrote",
                                [(self.here(), True)])
        options, _ = split_options(arguments, ("--basetemp", "--junitxml", "--junit-xml",
                                               "-p", "-k", "-m", "-o", "-c", "--rootdir"))
        for option, value in options:
            if option == "--basetemp" and value is not None:
                self.write(value, "pytest --basetemp", tree=True)
            elif option in ("--junitxml", "--junit-xml") and value is not None:
                self.write(value, "pytest --junitxml")

    def alias(self, program, arguments, nesting):
        """An alias defined earlier on the line: whether the shell expands it depends on the
        shell (bash does not, zsh does), so what it would change is uncertain."""
        inner = ShellReader(self.here(), self.git, self.home)
        inner.aliases = {}
        inner.read(self.aliases[program] + " " + " ".join(w.text for w in arguments),
                   nesting + 1)
        named = [item for item in inner.effects.changes] + [
            item for _, items in inner.effects.uncertain for item in items]
        if named:
            self.effects.unsure(f"`{as_label(program, 60)}` is an alias", named)

    def inner_effects(self, words, found_in):
        """What a command run on paths found at run time (xargs, find -exec) would change: its
        own words read with a stand-in for those paths (`{}`, or appended), where a change of
        the stand-in is a change of what `found_in` (path, tree) items hold."""
        inner = ShellReader(self.here(), self.git, self.home)
        stand_in = literal_word(FOUND_STAND_IN)
        inner.command([stand_in if w.text == "{}" else w for w in words]
                      + ([] if any(w.text == "{}" for w in words) else [stand_in]), [], 1)
        items = list(inner.effects.changes) + [item for _, named in inner.effects.uncertain
                                               for item in named]
        mine = [item for item in items if os.path.basename(item[0]) != FOUND_STAND_IN]
        return mine + (list(found_in) if len(mine) < len(items) else [])


    # -- folders
    def here(self):
        return self.folders[0] if self.known and len(self.folders) == 1 else self.origin

    def change_folder(self, program, arguments):
        texts = [w.text for w in arguments]
        if program in ("pushd", "popd") and any(t == "-n" or (t[:1] in "+-" and t[1:].isdigit())
                                                 for t in texts):
            self.folders, self.known = [self.origin], False  # a stack rotation: not followed
            return
        physical = "-P" in texts
        left = skip_options(list(texts), ())
        word = arguments[len(arguments) - len(left)] if left else None
        current = (list(self.folders), self.known)
        if program == "popd":
            if self.stack:
                self.folders, self.known = self.stack.pop()
            else:
                self.known = False
            return
        if program == "pushd" and word is None:
            if self.stack:
                top = self.stack.pop()
                self.stack.append(current)
                self.folders, self.known = top
            return
        if word is not None and word.text == "-" and program == "cd":
            if self.previous is None:
                self.known = False
            else:
                self.folders, self.known = self.previous
            self.previous = current
            return
        if program == "pushd":
            self.stack.append(current)
        self.previous = current
        if word is None:
            target = [self.home] if self.home else None
        elif self.cdpath and not word.text.startswith(("/", ".", "~")):
            target = None  # CDPATH or a variable's name may send it anywhere
        else:
            target = self.resolved(word, logical=not physical)
        if not target:
            self.folders, self.known = [self.origin], False
            return
        moved = [os.path.realpath(target[-1]) if physical else target[0]]  # [-1]: via a new link
        if os.path.isdir(moved[0]) or moved[0] in self.created:
            self.folders = moved
        else:  # the cd may fail: the next command runs in either folder
            self.folders = unique_in_order(self.folders + moved)
            if len(self.folders) > MAX_FOLDERS_FOLLOWED:
                self.folders, self.known = [self.origin], False

    # -- words as paths
    def substituted(self, word):
        """`word` with `$NAME` and `${NAME}` of variables assigned a literal value earlier on
        the line (and $PWD, $OLDPWD, $HOME as the line leaves them) put in; still dynamic when
        anything else expands in it."""
        if not word.dynamic:
            return word
        import re
        known = {"PWD": self.here(), **({"HOME": self.home} if self.home else {}),
                 **({"OLDPWD": self.previous[0][0]} if self.previous and self.previous[1]
                    else {}), **self.variables}
        text = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: known.get(m.group(1) or m.group(2),
                                                                    m.group(0)), word.text)
        if "$" in text or "`" in text:
            return word
        return literal_word(text)

    def resolved(self, word, folder=None, logical=False):
        """The absolute paths a word stands for (globs expanded, `~`, `~+` and `~-` as the
        shell reads them, links made earlier on the line followed), from each folder the
        command may run in; None when it is set at run time or its glob cannot be followed.
        A path to a file keeps its `..` for the kernel to resolve (after a symlink it is not
        the textual parent); `logical` normalises it as `cd` does."""
        word = self.substituted(word)
        if word.dynamic or "\0" in word.text:
            return None
        pattern = word.pattern
        paths = []
        if any(marker in pattern for marker in ("[[:", "@(", "+(", "!(", "?(", "*(")):
            return None  # extglob, a POSIX class, a zsh qualifier: read differently by Python
        for base in ([folder] if folder else self.folders):
            if unescaped_positions(pattern, GLOB_CHARACTERS):
                if self.options & {"nocaseglob", "extglob", "nullglob", "failglob"}:
                    return None  # a glob Python's would read differently
                found = glob_on_disk(pattern, base)
                if found is None:
                    return None  # too many matches to judge one by one
                texts = found or [unescape_pattern(pattern)]
            else:
                texts = [unescape_pattern(pattern)]
            for text in texts:
                if pattern.startswith("~"):
                    head, slash, tail = text.partition("/")
                    if head == "~+":
                        text = base + slash + tail
                    elif head == "~-":
                        previous = self.previous[0][0] if self.previous else None
                        if previous is None:
                            return None
                        text = previous + slash + tail
                    elif head == "~":
                        if not self.home:
                            return None
                        text = self.home + slash + tail
                    else:
                        text = os.path.expanduser(text)
                if text.startswith("/proc/self/cwd"):
                    text = base + text[len("/proc/self/cwd"):]
                path = os.path.join(base, text)
                paths.append(os.path.normpath(path) if logical else path)
        linked = []
        for path in paths:  # a link made earlier on this line: the write reaches its target
            for link, reached in self.links.items():
                if path == link or path.startswith(link + "/"):
                    linked.append(reached + path[len(link):])
        return unique_in_order(paths + linked)

    def anywhere(self, word):
        """Where a word set at run time may lead: below its literal start's folder, and (a
        variable may hold `..` or an absolute path) anywhere from the folders the command
        and the line started in."""
        return unique_in_order([(self.dynamic_folder(word), True), (self.here(), True),
                                (self.origin, True)])

    def dynamic_folder(self, word):
        """The folder a word set at run time surely lies in: its literal start's folder."""
        start = word.text[:word.dynamic_at]
        folder = start[:start.rfind("/") + 1] if "/" in start else ""
        return os.path.normpath(os.path.join(self.here(), folder or "."))

    def named(self, words, only_paths=False):
        """The paths words name, as (path, stands for everything below it): every operand and
        every `--option=VALUE` (with `only_paths`, those that look like paths: on disk, with a
        `/`, or `.`), a folder standing for what it holds. A word set at run time stands for
        its literal folder and for the folder the command runs in (a variable may hold `..`)."""
        named = []
        for word in words:
            text = word.text
            if text.startswith("-"):
                if "=" not in text:
                    continue
                word = literal_word(text.partition("=")[2])
            if self.substituted(word).dynamic:
                named += self.anywhere(word)
                continue
            for path in self.resolved(word) or []:
                if only_paths and "/" not in word.text and word.text not in (".", "..") \
                        and not os.path.lexists(path):
                    continue
                named.append((path, os.path.isdir(path)))
        return named

    def write(self, word, why, tree=False, folder=None):
        """The command writes the file (or with `tree`, the folder and all below it) `word`
        names."""
        paths = self.resolved(word, folder)
        if paths is None:
            self.effects.unsure(f"{why} whose target is set at run time", self.anywhere(word))
        elif folder is None and not os.path.isabs(word.text) and not (
                self.known and len(self.folders) == 1):
            named = [(path, tree) for path in paths]
            self.effects.unsure(f"{why} after a `cd` whose folder is not known here",
                                named + ([] if self.known else [(self.origin, True)]))
        else:
            for path in paths:
                self.effects.change(path, tree)

    def write_all(self, words, why, tree=False):
        for word in words:
            self.write(word, why, tree)

    # -- programs whose options say what they write
    def copy_like(self, arguments, why, moves=False, valued=("-t", "-S", "--target-directory",
                                                             "--suffix"), links=False):
        options, operands = split_options(arguments, valued)
        recursive = moves or any(o in ("-r", "-R", "-a", "--recursive", "--archive")
                                 for o, _ in options)
        target = next((value for o, value in options
                       if o in ("-t", "--target-directory")), None)
        no_target_folder = any(o in ("-T", "--no-target-directory") for o, _ in options)
        if any(o in ("-n", "--dry-run") for o, _ in options) and why == "git mv":
            return
        if target is None:
            if len(operands) < (1 if links else 2):
                return
            if links and len(operands) == 1:
                sources, destination = operands, literal_word(".")
            else:
                sources, destination = operands[:-1], operands[-1]
        else:
            sources, destination = operands, target
        destinations = self.resolved(destination)
        if destinations is None:
            self.write(destination, why, tree=True)
        else:
            for place in destinations:
                into = target is not None or (os.path.isdir(place) and not no_target_folder
                                              and not (links and os.path.islink(place)))
                for source in sources:
                    found = self.resolved(source)
                    if found is None:
                        self.effects.unsure(f"{why} of a file set at run time",
                                            [(place, into)])
                        continue
                    for path in found:
                        tree = not links and (recursive or os.path.isdir(path))
                        written = os.path.join(place, os.path.basename(path)) if into else place
                        self.effects.change(os.path.normpath(written), tree)
                        if links:  # later words on the line reach the target through it
                            symbolic = any(o in ("-s", "--symbolic") for o, _ in options)
                            reached = os.path.join(os.path.dirname(written), source.text) \
                                if symbolic and not os.path.isabs(source.text) else path
                            self.links[os.path.normpath(written)] = os.path.normpath(reached)
        if moves:
            self.write_all(sources, why, tree=True)

    def sed(self, arguments):
        options, operands = split_options(arguments, ("-e", "-f", "-l", "--expression",
                                                      "--file", "--line-length"))
        in_place = any(o in ("-i", "--in-place") or o.startswith("--in-place")
                       for o, _ in options)
        scripted = any(o in ("-e", "-f", "--expression", "--file") for o, _ in options)
        scripts = [v.text for o, v in options if o in ("-e", "--expression") and v is not None]
        scripts += [] if scripted or not operands else [operands[0].text]
        if in_place:
            self.write_all(operands if scripted else operands[1:], "sed -i")
        if any(sed_runs_or_writes(script) for script in scripts) or any(
                o in ("-f", "--file") for o, _ in options):
            self.effects.unsure("the sed script writes files or runs commands",
                                self.named(paths_in_code(" ".join(scripts)))
                                + [(self.here(), True)])

    def perl(self, arguments):
        """perl -i writes its files; the code it is given (-e) may write anything it names."""
        options, operands = split_options(arguments, ("-e", "-E", "-M", "-m", "-I", "-x"))
        code = " ".join(v.text for o, v in options if o in ("-e", "-E") and v is not None)
        scripted = bool(code)
        if any(o == "-i" for o, _ in options):
            self.write_all(operands if scripted else operands[1:], "perl -i")
        named = self.named(paths_in_code(code)) + (
            [] if scripted else self.named(operands, only_paths=True))
        if named or not any(o == "-i" for o, _ in options):
            self.effects.unsure("perl runs code this tool cannot read the effect of", named)

    def remove(self, arguments):
        options, operands = split_options(arguments, ())
        recursive = any(o in ("-r", "-R", "--recursive") for o, _ in options)
        self.write_all(operands, "rm", tree=recursive)

    def compress(self, arguments):
        options, operands = split_options(arguments, ("-S", "--suffix", "-b", "-T", "-o",
                                                      "--output", "-D"))
        for option, value in options:
            if option in ("-o", "--output") and value is not None:
                self.write(value, "a compressor's -o")
        if any(o in ("-c", "--stdout", "--to-stdout", "-t", "--test", "-l", "--list", "-h",
                     "--help") for o, _ in options):
            return
        tree = any(o in ("-r", "--recursive") for o, _ in options)
        self.write_all(operands, "a compressor", tree=tree)

    def chmod(self, arguments):
        """chmod MODE FILE...: a mode may look like an option (`-w`), so the first word that
        is no option of chmod's own is the mode."""
        words = [w for w in arguments if w.text not in ("-R", "--recursive", "-v", "-c", "-f",
                                                        "--verbose", "--changes", "--silent",
                                                        "--quiet", "--")]
        tree = len(words) < len(arguments) and any(w.text in ("-R", "--recursive")
                                                    for w in arguments)
        if any(w.text.startswith("--reference") for w in words):
            words = [w for w in words if not w.text.startswith("--reference")]
        else:
            words = words[1:]
        self.write_all(words, "chmod", tree=tree)

    def download(self, arguments):
        """curl -o FILE / --output FILE / -O; wget -O FILE / -P DIR (or the current folder)."""
        options, operands = split_options(arguments, ("-o", "--output", "-O", "-P", "-d", "-H",
                                                      "-X", "-u", "-A", "-e", "--data",
                                                      "--header", "--directory-prefix",
                                                      "--output-document"))
        for option, value in options:
            if option in ("-o", "--output", "--output-document") and value is not None:
                self.write(value, "a download")
            elif option in ("-O", "-P", "--directory-prefix") and value is not None:
                self.write(value, "a download", tree=option != "-O")

    def extract(self, arguments):
        """tar -x, unzip, 7z x: what it writes comes from the archive, below -C / -d or where it
        runs; a listing or a test of the archive (-l, -t, l, t) writes nothing."""
        if [w.text for w in arguments[:1]] in (["-l"], ["-t"], ["-Z"], ["l"], ["t"]):
            return
        options, _ = split_options(arguments, ("-f", "-C", "-d", "--directory", "--file", "-T",
                                               "-X", "-x"))
        folder = next((v for o, v in options if o in ("-C", "-d", "--directory")), None)
        named = self.named([folder]) if folder is not None else [(self.here(), True)]
        self.effects.unsure("it writes the files the archive holds", named)

    def tar(self, arguments):
        texts = [w.text for w in arguments]
        first = texts[0] if texts else ""
        if any(t in ("-x", "--extract", "--get") for t in texts) or (
                first[:1] != "-" and "x" in first) or any(
                t[:1] == "-" and t[1:2] != "-" and "x" in t for t in texts):
            self.extract(arguments)
            return
        options, _ = split_options(arguments, ("-f", "-C", "--file", "--directory", "-T", "-X"))
        for option, value in options:  # creating: the archive is what it writes
            if option in ("-f", "--file") and value is not None and value.text != "-":
                self.write(value, "tar -f")
        if first[:1] != "-" and "f" in first and "c" in first and len(arguments) > 1:
            self.write(arguments[1], "tar")

    def mkdir(self, arguments):
        """mkdir makes folders: a `cd` into one later on the line goes there."""
        _, operands = split_options(arguments, ("-m", "--mode"))
        self.write_all(operands, "mkdir")
        for word in operands:
            self.created.update(self.resolved(word, logical=True) or [])

    def cmake(self, arguments):
        """cmake configures into its build folder (-B, or where it runs), or builds there."""
        options, _ = split_options(arguments, ("-S", "-B", "-G", "-D", "-C", "--build",
                                               "--install", "-P", "--target", "-j"))
        build = next((v for o, v in options if o in ("-B", "--build") and v is not None), None)
        if build is not None:
            self.write(build, "cmake", tree=True)
        elif self.known and len(self.folders) == 1:
            self.effects.change(self.here(), True)
        else:
            self.effects.unsure("cmake writes where it runs", [(self.here(), True)])

    def history(self, arguments):
        for option, _ in split_options(arguments, ())[0]:
            if option in ("-w", "-a"):
                operands = split_options(arguments, ())[1]
                self.write_all(operands or [literal_word("~/.bash_history")], "history -w")

    def dd(self, arguments):
        for word in arguments:
            if word.text.startswith("of="):
                self.write(split_word(word, 3), "dd of=")

    def patch(self, arguments):
        options, operands = split_options(arguments, (
            "-p", "-i", "-o", "-d", "-r", "-B", "-D", "-F", "-V", "-z", "-Y", "-g", "--input",
            "--output", "--directory", "--strip", "--reject-file", "--prefix", "--suffix"))
        if any(o in ("--dry-run", "-C", "--check") for o, _ in options):
            return
        output = next((v for o, v in options if o in ("-o", "--output")), None)
        if output is not None:
            self.write(output, "patch -o")
        elif operands:
            self.write(operands[0], "patch")
        else:
            folder = next((v for o, v in options if o in ("-d", "--directory")), None)
            named = self.named([folder]) if folder is not None else [(self.here(), True)]
            self.effects.unsure("patch takes the files it changes from the patch", named)

    def sort(self, arguments):
        options, _ = split_options(arguments, ("-o", "-k", "-S", "-t", "-T", "--output",
                                               "--key", "--buffer-size",
                                               "--field-separator", "--temporary-directory"))
        for option, value in options:
            if option in ("-o", "--output") and value is not None:
                self.write(value, "sort -o")

    def uniq(self, arguments):
        _, operands = split_options(arguments, ("-f", "-s", "-w", "--skip-fields",
                                                "--skip-chars", "--check-chars"))
        if len(operands) >= 2:
            self.write(operands[1], "uniq")

    def awk(self, arguments):
        options, operands = split_options(arguments, ("-f", "-v", "-F", "-i", "--include",
                                                      "--file", "--assign"))
        if any(o in ("-i", "--include") and v is not None and v.text.startswith("inplace")
               for o, v in options):
            scripted = any(o in ("-f", "--file") for o, _ in options)
            self.write_all(operands if scripted else operands[1:], "awk -i inplace")
        elif operands and awk_writes(operands[0].text):
            self.effects.unsure("the awk program writes files or runs commands",
                                self.named(paths_in_code(operands[0].text))
                                + [(self.here(), True)])

    def find(self, arguments):
        starts, i = [], 0
        while i < len(arguments) and not arguments[i].text.startswith(("-", "(", "!")):
            starts.append(arguments[i])
            i += 1
        expression = [w.text for w in arguments[i:]]
        starts = starts or [literal_word(".")]
        if "-delete" in expression and set(expression) <= FIND_DELETING_ALL:
            self.write_all(starts, "find -delete", tree=True)
            return
        removing = self.find_removals(starts, arguments[i:])
        if removing is not None:  # asked of find itself, printing instead of removing
            for path in removing:
                self.effects.change(path, True)
            return
        if "-delete" in expression:
            self.effects.unsure("find -delete removes what its tests match", self.named(starts))
        for action in ("-fprint", "-fprint0", "-fprintf", "-fls"):
            if action in expression:
                at = expression.index(action) + 1
                if at < len(expression):
                    self.write(arguments[i + at], f"find {action}")
        for at, word in enumerate(expression):
            if word in ("-exec", "-execdir", "-ok", "-okdir"):
                stop = next((j for j in range(at + 1, len(expression))
                             if expression[j] in (";", "+")), len(expression))
                named = self.inner_effects(arguments[i + at + 1:i + stop],
                                           [(path, True) for path, _ in self.named(starts)])
                if named:
                    self.effects.unsure("find -exec runs a command that writes on each file it "
                                        "finds", named)

    def find_removals(self, starts, expression):
        """What `find STARTS EXPRESSION` would remove, when its only action is -delete or
        `-exec rm ... {} +`/`;` and every word is literal: find run with -print0 in its place
        (it reads only); None when that cannot be asked."""
        texts = [w.text for w in expression]
        if any(w.dynamic for w in list(starts) + list(expression)) or not self.known or \
                len(self.folders) != 1:
            return None
        if any(action in texts for action in ("-fprint", "-fprint0", "-fprintf", "-fls", "-ok",
                                              "-okdir", "-execdir", "-print", "-printf",
                                              "-print0", "-ls", "-quit")):
            return None
        kept, at, removing = [], 0, False
        while at < len(texts):
            if texts[at] == "-delete":
                removing, at = True, at + 1
            elif texts[at] == "-exec":
                stop = next((j for j in range(at + 1, len(texts)) if texts[j] in (";", "+")), None)
                inner = texts[at + 1:stop] if stop else []
                if stop is None or not inner or os.path.basename(inner[0]) != "rm" or \
                        inner[-1] != "{}" or any(t.startswith("-") and t not in (
                            "-r", "-R", "-f", "-rf", "-fr", "-Rf", "-fR", "--recursive",
                            "--force") for t in inner[1:-1]):
                    return None
                removing, at = True, stop + 1
            else:
                kept.append(texts[at])
                at += 1
        if not removing:
            return None
        import subprocess
        try:
            listed = run_in_own_group(["find", *[w.text for w in starts], *kept, "-print0"],
                                      timeout=FIND_SECONDS, cwd=self.here())
        except (OSError, subprocess.SubprocessError):
            return None
        if listed.returncode not in (0, 1):
            return None
        names = [n for n in listed.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
        if len(names) > MAX_GLOB_MATCHES:
            return None
        return [os.path.join(self.here(), name) for name in names]

    def xargs(self, arguments):
        texts = skip_options([w.text for w in arguments], (
            "-a", "-d", "-E", "-I", "-i", "-L", "-l", "-n", "-P", "-s", "--arg-file",
            "--delimiter", "--max-args", "--max-procs", "--max-lines", "--replace"))
        inner = arguments[len(arguments) - len(texts):]
        if not inner:
            return  # echo
        named = self.inner_effects(inner, [(self.here(), True)])
        if named:
            self.effects.unsure("xargs runs a command that writes on paths it reads at run "
                                "time", named)

    # -- git: asked which files its worktree-changing commands would touch
    def git_config(self, folder, rest):
        """`git config -f FILE` writes FILE; setting a key that makes git run code or skip
        its hooks (core.hooksPath, core.fsmonitor, an alias, ...) changes the enforcement."""
        options, operands = split_options(rest, ("-f", "--file", "--blob", "--type",
                                                 "--default"))
        for option, value in options:
            if option in ("-f", "--file") and value is not None:
                self.write(value, "git config -f", folder=folder)
                return
        reading = {"--get", "--get-all", "--get-regexp", "--list", "-l", "--get-urlmatch",
                   "--show-origin", "--show-scope", "--name-only"}
        if any(o in reading for o, _ in options) or len(operands) < 1:
            return
        key = operands[0].text.lower()
        writes = len(operands) >= 2 or any(o.startswith(("--unset", "--remove", "--rename",
                                                         "--replace", "--add"))
                                           for o, _ in options)
        if writes and (key.split(".")[0] in ("alias", "filter", "diff", "merge", "credential")
                       or key in RISKY_GIT_KEYS):
            top = self.git(folder, "rev-parse", "--path-format=absolute",
                           "--git-common-dir").strip()
            self.effects.change(os.path.join(top or os.path.join(folder, ".git"), "hooks"), True)

    def git_command(self, arguments):
        folder = self.here()
        words = list(arguments)
        while words and words[0].text.startswith("-"):
            option = words.pop(0).text
            if option == "-C" and words:
                found = self.resolved(words.pop(0))
                if not found:
                    self.effects.unsure("git -C names a folder set at run time",
                                        [(self.origin, True)])
                    return
                folder = found[0]
            elif option in ("-c", "--config-env", "--exec-path") or option.startswith(
                    ("--exec-path=", "--config-env=")):
                self.effects.unsure("git run with configuration given on the command line may "
                                    "run other code", [(folder, True)])
                return
            elif option == "--namespace" and words:
                words.pop(0)
            elif option.startswith(("--git-dir", "--work-tree")):
                self.effects.unsure("git runs on another worktree or git folder",
                                    [(folder, True)])
                return
        if not words:
            return
        command, rest = words[0].text, words[1:]
        texts = [w.text for w in rest]
        for at, text in enumerate(texts):  # a reading command can still write or run
            name, equals, value = text.partition("=")
            if name in ("--output", "-o") and command in ("log", "diff", "show", "format-patch",
                                                          "whatchanged", "range-diff"):
                target = literal_word(value) if equals else (rest[at + 1] if at + 1 < len(rest)
                                                             else None)
                if target is not None:
                    self.write(target, f"git {command} {name}", folder=folder)
            if name in ("--open-files-in-pager", "-O", "--upload-pack", "--receive-pack",
                        "--exec", "--ext-diff", "--textconv", "--pathspec-from-file"):
                self.effects.unsure(f"git {command} {name} runs or reads something else",
                                    [(folder, True)])
        if command == "config":
            self.git_config(folder, rest)
            return
        if command in ("bisect", "submodule") and texts[:1] and texts[0] in (
                "log", "view", "visualize", "status", "summary"):
            return
        if command in GIT_READING:
            return
        if any(w.dynamic for w in rest):
            self.effects.unsure(f"git {command} names something set at run time",
                                [(folder, True)])
            return
        answer = git_changes(self.git, folder, command, texts)
        if answer is None:
            self.effects.unsure(f"what `git {as_label(command, 40)}` changes is not read here",
                                [(folder, True)] if command in GIT_MERGING
                                else self.named(rest) or [(folder, True)])
            return
        for path, tree in answer:
            self.effects.change(path, tree)


def split_word(word, start):
    """The part of a word from `start` on (an option's attached value)."""
    return ShellWord(word.text[start:], word.pattern if word.dynamic else
                     "".join("\\" + ch for ch in word.text[start:]),
                     max(word.dynamic_at - start, 0) if word.dynamic else -1, ())


def split_options(arguments, valued=()):
    """GNU-style options and operands of a command's words: ([(option, value word or None)],
    operands). Short options may be clustered (`-Ei`); one in `valued` takes the rest of its
    cluster or the next word; a long one in `valued` takes `=VALUE` or the next word. After
    `--` everything is an operand."""
    options, operands, i = [], [], 0
    while i < len(arguments):
        word, text = arguments[i], arguments[i].text
        i += 1
        if text == "--":
            operands += arguments[i:]
            break
        if not text.startswith("-") or text == "-":
            operands.append(word)
        elif text.startswith("--"):
            name, equals, _ = text.partition("=")
            if equals:
                options.append((name, split_word(word, len(name) + 1)))
            elif name in valued and i < len(arguments):
                options.append((name, arguments[i]))
                i += 1
            else:
                options.append((name, None))
        else:
            for j in range(1, len(text)):
                option = "-" + text[j]
                if option in valued:
                    if j + 1 < len(text):
                        options.append((option, split_word(word, j + 1)))
                    elif i < len(arguments):
                        options.append((option, arguments[i]))
                        i += 1
                    else:
                        options.append((option, None))
                    break
                options.append((option, None))
    return options, operands


def first_operand_writer(why, valued=()):
    """A writer of its first operand only (`zip ARCHIVE FILES...`)."""
    def writer(reader, arguments):
        _, operands = split_options(arguments, valued)
        if operands:
            reader.write(operands[0], why)
    return writer


def last_operand_writer(why, valued=()):
    """A writer into its last operand (`rsync SOURCES... DEST`), everything below it."""
    def writer(reader, arguments):
        _, operands = split_options(arguments, valued)
        if len(operands) >= 2:
            reader.write(operands[-1], why, tree=True)
    return writer


def second_operand_writer(why, valued=()):
    """A writer of its second operand (`xxd IN OUT`)."""
    def writer(reader, arguments):
        _, operands = split_options(arguments, valued)
        if len(operands) >= 2:
            reader.write(operands[1], why)
    return writer


def operand_writer(why, valued=(), skip_first=False, tree_options=()):
    """A writer that changes its operands (after the first, a mode or owner, unless
    --reference names it), all below them with one of `tree_options`."""
    def writer(reader, arguments):
        options, operands = split_options(arguments, valued)
        if skip_first and not any(o.startswith("--reference") for o, _ in options):
            operands = operands[1:]
        tree = any(o in tree_options for o, _ in options)
        reader.write_all(operands, why, tree=tree)
    return writer


# git settings that make git run other code, or skip its hooks (which enforce the locks).
RISKY_GIT_KEYS = {"core.hookspath", "core.fsmonitor", "core.sshcommand", "core.editor",
                  "core.pager", "core.askpass", "sequence.editor", "gpg.program",
                  "core.worktree", "uploadpack.packobjectshook"}


def sed_runs_or_writes(script):
    """Does a sed script write a file (`w`, `W`, `s///w`) or run a command (`e`)?"""
    import re
    return bool(re.search(r"(^|[;\n{}]|\d|\$|/)\s*[wWe](\s|$)"
                          r"|s(?P<d>.).*(?P=d).*(?P=d)[gpiImMe0-9]*[we]", script))


def awk_writes(program):
    """Does an awk program write a file or run a command (`print > f`, `| "cmd"`,
    `system(...)`, `getline` from a command)?"""
    import re
    return bool(re.search(r"\b(print|printf)\b[^;{}]*(>|\|)|\bsystem\s*\(|\|\s*getline|"
                          r"\bfflush\b", program))


WRITERS = {
    "tee": lambda r, a: r.write_all(split_options(a, ())[1], "tee"),
    "sed": ShellReader.sed, "gsed": ShellReader.sed, "perl": ShellReader.perl,
    "cp": lambda r, a: r.copy_like(a, "cp"),
    "mv": lambda r, a: r.copy_like(a, "mv", moves=True),
    "install": lambda r, a: (r.write_all(split_options(a, ("-m", "-o", "-g", "-S", "-t"))[1],
                                         "install -d")
                             if any(o == "-d" for o, _ in split_options(a, ("-m", "-o", "-g",
                                                                            "-S", "-t"))[0])
                             else r.copy_like(a, "install", valued=(
                                 "-t", "-S", "-m", "-o", "-g", "--target-directory",
                                 "--suffix", "--mode", "--owner", "--group"))),
    "ln": lambda r, a: r.copy_like(a, "ln", links=True),
    "rm": ShellReader.remove,
    "rmdir": operand_writer("rmdir"),
    "unlink": operand_writer("unlink"),
    "shred": operand_writer("shred", ("-n", "-s", "--iterations", "--size")),
    "touch": operand_writer("touch", ("-r", "-d", "-t", "--reference", "--date")),
    "truncate": operand_writer("truncate", ("-r", "-s", "--reference", "--size")),
    "mkdir": ShellReader.mkdir,
    "chmod": ShellReader.chmod, "curl": ShellReader.download, "wget": ShellReader.download,
    "tar": ShellReader.tar, "bsdtar": ShellReader.tar, "unzip": ShellReader.extract,
    "7z": ShellReader.extract, "xxd": second_operand_writer("xxd"),
    "history": ShellReader.history, "pytest": ShellReader.pytest,
    "zip": first_operand_writer("zip", ("-b", "-t", "-tt", "-n", "-x", "-i")),
    "rsync": last_operand_writer("rsync", ("-e", "--rsh", "--exclude", "--include",
                                            "--filter", "-f")),
    "cmake": ShellReader.cmake,
    "chown": operand_writer("chown", (), True, ("-R", "--recursive")),
    "chgrp": operand_writer("chgrp", (), True, ("-R", "--recursive")),
    "dd": ShellReader.dd, "patch": ShellReader.patch, "find": ShellReader.find,
    "sort": ShellReader.sort, "uniq": ShellReader.uniq,
    **{name: ShellReader.awk for name in ("awk", "gawk", "mawk", "nawk")},
    **{name: ShellReader.compress for name in (
        "gzip", "gunzip", "bzip2", "bunzip2", "xz", "unxz", "lzma", "unlzma", "zstd",
        "unzstd", "compress", "uncompress", "lz4", "pigz")},
}


GIT_VALUED = {  # each worktree-changing git command's options that take a value
    "checkout": ("-b", "-B", "--orphan", "--conflict", "--pathspec-from-file"),
    "switch": ("-c", "-C", "--orphan", "--conflict"),
    "restore": ("-s", "--source", "--conflict", "--pathspec-from-file"),
    "reset": ("--pathspec-from-file",), "stash": ("-m", "--message", "--pathspec-from-file"),
    "clean": ("-e", "--exclude"), "rm": ("--pathspec-from-file",), "mv": (),
    "apply": ("-p", "-C", "--directory", "--exclude", "--include", "--whitespace"),
}


def git_changes(git, folder, command, arguments):
    """[(absolute path, whether all below it)] that `git COMMAND ARGUMENTS` run in `folder`
    would change in its worktree, asked of git without changing anything; None when only
    running it would tell (a merge, an unknown command or alias, a patch on stdin)."""
    if command not in GIT_VALUED or any(a.startswith("--pathspec-from-file") for a in arguments):
        return None
    top = git(folder, "rev-parse", "--show-toplevel").strip()
    if not top:
        return []  # not a repository: git will refuse
    options, operands = split_options([literal_word(a) for a in arguments], GIT_VALUED[command])
    flags = {o for o, _ in options}
    value = {o: v.text for o, v in options if v is not None}
    texts = [w.text for w in operands]
    dashes = len(arguments) - 1 - arguments.index("--") if "--" in arguments else None
    before_dashes = texts if dashes is None else texts[:len(texts) - dashes]
    after_dashes = None if dashes is None else texts[len(texts) - dashes:]

    def names(output, base):
        return [(os.path.normpath(os.path.join(base, name)), name.endswith("/"))
                for name in output.split("\0") if name]

    def differing(*revisions, paths=()):
        return names(git(folder, "diff", "--name-only", "--no-relative", "-z", "--no-renames",
                         *revisions, "--", *paths), top)

    def is_commit(name):
        return bool(git(folder, "rev-parse", "--verify", "-q", f"{name}^{{commit}}").strip())

    if command in ("checkout", "switch"):
        if flags & {"-p", "--patch"}:
            return None
        targets = ["@{-1}" if t == "-" else t for t in before_dashes]
        if command == "checkout" and after_dashes is not None:
            return differing(*targets[:1], paths=after_dashes or ["."])
        if command == "checkout" and targets and not is_commit(targets[0]):
            return differing(paths=targets)
        if command == "checkout" and len(targets) > 1:
            return differing(targets[0], paths=targets[1:])
        new_branch = any(o in value for o in ("-b", "-B", "-c", "-C", "--orphan"))
        if not targets:
            return differing("HEAD") if flags & {"-f", "--force"} and not new_branch else []
        found = differing("HEAD", targets[0])  # a switch: the files that differ
        if flags & {"-f", "--force", "--discard-changes"}:
            found += differing("HEAD")
        return found
    if command == "restore":
        if flags & {"-p", "--patch"}:
            return None
        staged = flags & {"-S", "--staged"}
        if (staged and not flags & {"-W", "--worktree"}) or not texts:
            return []  # the index only, or git refuses
        source = value.get("-s") or value.get("--source") or ("HEAD" if staged else None)
        return differing(*([source] if source else []), paths=texts)
    if command == "reset":
        if not flags & {"--hard", "--merge", "--keep"}:
            return []  # the index and the branch only
        return differing(before_dashes[0] if before_dashes else "HEAD")
    if command == "stash":
        actions = ("push", "save", "pop", "apply", "drop", "clear", "list", "show", "create",
                   "store", "branch")
        action = before_dashes[0] if before_dashes and before_dashes[0] in actions else "push"
        if action in ("drop", "clear", "list", "show", "create", "store"):
            return []
        if action in ("pop", "apply", "branch"):
            ref = before_dashes[2 if action == "branch" else 1] if len(before_dashes) > (
                2 if action == "branch" else 1) else "stash@{0}"
            return differing(f"{ref}^1", ref) + names(
                git(folder, "ls-tree", "-r", "-z", "--name-only", f"{ref}^3"), top)
        paths = after_dashes if after_dashes is not None else (
            before_dashes[1:] if before_dashes[:1] == ["push"] else [])
        found = differing("HEAD", paths=paths)
        if flags & {"-u", "--include-untracked", "-a", "--all"}:
            others = ["--others"] + ([] if flags & {"-a", "--all"} else ["--exclude-standard"])
            found += names(git(folder, "ls-files", "-z", "--full-name", "--directory",
                               *others, "--", *paths), top)
        return found
    if command == "clean":
        if flags & {"-n", "--dry-run"}:
            return []
        if flags & {"-i", "--interactive"}:
            return None
        if not flags & {"-f", "--force"} and git(folder, "config", "--type=bool",
                                                   "clean.requireForce").strip() != "false":
            return []  # git refuses without -f
        asked = ["clean", "-n"] + [o for o in ("-d", "-x", "-X") if o in flags]
        for excluded in (v.text for o, v in options if o in ("-e", "--exclude") and v):
            asked += ["-e", excluded]
        prefix = "Would remove "
        return names("\0".join(line[len(prefix):] for line in git(
            folder, *asked, "--", *texts).splitlines() if line.startswith(prefix)), folder)
    if command == "rm":
        if flags & {"--cached", "-n", "--dry-run"}:
            return []
        return names(git(folder, "ls-files", "-z", "--full-name", "--", *texts), top)
    if command == "mv":
        if flags & {"-n", "--dry-run"}:
            return []
        reader = ShellReader(folder, git)
        reader.copy_like([literal_word(a) for a in arguments if a not in ("-f", "-k", "-v")],
                         "git mv", moves=True)
        return reader.effects.changes
    # apply
    if flags & {"--cached", "--check", "--stat", "--numstat", "--summary"} and not flags & {
            "--apply", "--index"}:
        return []
    if not texts or "-" in texts or not all(os.path.isfile(os.path.join(folder, t))
                                            for t in texts):
        return None  # the patch comes on standard input, or is written on the same line
    strip = [f"-p{value['-p']}"] if "-p" in value else []
    strip += [f"--directory={value['--directory']}"] if "--directory" in value else []
    listed = git(folder, "apply", "--numstat", "-z", *strip, "--",
                 *[os.path.join(folder, t) for t in texts])
    found = []
    for record in listed.split("\0"):
        name = record.split("\t")[-1] if record else ""
        if name:
            found.append((os.path.normpath(os.path.join(top, name)), False))
    return found


def shell_effects(command_line, folder, git=None, home=None):
    """What `command_line` run from `folder` would change (ShellEffects)."""
    reader = ShellReader(folder, git or run_git, home or os.environ.get("HOME"))
    reader.read(command_line or "")
    return reader.effects


# -- what changed in the other sessions' locks while a command ran

LITERAL_PATHSPECS = 200  # files named to git one by one; past this, the scopes' globs


WALK_LIMIT = 20000  # entries the after-command walk looks at before it leaves the rest to git


def files_written_in_scopes_after(checkout, scopes, since_ns, fold_case=False):
    """Files under `scopes` in `checkout` changed at or after `since_ns` (their modification
    or status-change time: a copy that keeps the old modification time, a move or a
    checkout still changes the latter) that git tracks or would add (not ignored). The
    scopes' folders are walked first, which costs no process; git is asked about what the
    walk found, or about the whole scopes when the walk would be too long. A file that was
    deleted has no time and is not seen."""
    found = recently_written(checkout, scopes, since_ns, fold_case=fold_case)
    if found == []:
        return []
    if found is not None and len(found) <= LITERAL_PATHSPECS:
        specs = [f":(literal){name}" for name in found]
    else:  # a pathspec a file makes git's matching quadratic: let it match the scopes
        specs = [f":(glob){scope}{suffix}" for scope in scopes for suffix in ("", "/**")]
    listed = run_git(checkout, "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                     "--", *specs)
    wanted = None if found is None else set(found)
    changed = []
    for name in unique_in_order(listed.split("\0")):
        if not name or (wanted is not None and name not in wanted):
            continue
        try:
            info = os.lstat(os.path.join(checkout, name))
        except OSError:
            continue
        if max(info.st_mtime_ns, info.st_ctime_ns) >= since_ns:
            changed.append(name)
    return changed


def recently_written(checkout, scopes, since_ns, fold_case=False):
    """Files and symlinks in `scopes` changed at or after `since_ns` (modification or status
    change); None past WALK_LIMIT entries (see files_in_scopes)."""
    found = files_in_scopes(checkout, scopes, fold_case=fold_case, with_times=True)
    if found is None:
        return None
    return [path for path, (_, mtime, ctime) in found.items() if max(mtime, ctime) >= since_ns]


def files_in_scopes(checkout, scopes, fold_case=False, with_times=False):
    """{path: inode} of the files and symlinks in `scopes`, or with `with_times` {path:
    (inode, modification ns, status change ns)}, walking the scopes' literal folders (not
    through symlinks, not into .git); None past WALK_LIMIT entries. Names and inodes come
    with the folder's listing, so only `with_times` costs a stat a file (about 3 ms a
    thousand files); below a folder a scope covers whole (`src`, `src/**`) nothing more is
    asked."""
    roots = set("/".join(literal_prefix(scope, fold_case=fold_case)) for scope in scopes)
    whole = set()
    for scope in scopes:
        folder = scope[:-3] if scope.endswith("/**") else scope
        if not is_glob(folder):
            whole.add("/".join(path_segments(folder, fold_case=fold_case)))
    # A root inside another root is walked with it (looked up folder by folder: thousands of
    # locks must not cost thousands squared comparisons).
    pending = [("", False)] if "" in roots else [
        (root, False) for root in roots if not any(
            "/".join(root.split("/")[:depth]) in roots for depth in range(1, root.count("/") + 1))]
    base = os.path.join(checkout, "")
    by_prefix = {}  # each scope under the folder its literal start names
    for scope in scopes:
        by_prefix.setdefault(literal_prefix(scope, fold_case=fold_case), []).append(scope)

    def in_scopes(path):
        segments = path_segments(path, fold_case=fold_case)
        return any(not is_glob(scope) or path_in_scope(path, scope, fold_case=fold_case)
                   for depth in range(len(segments) + 1)
                   for scope in by_prefix.get(tuple(segments[:depth]), ()))

    def facts(info):
        return (info.st_ino, info.st_mtime_ns, info.st_ctime_ns) if with_times else info.st_ino

    from stat import S_ISDIR
    found, seen = {}, 0
    while pending:
        relative, covered = pending.pop()
        try:
            info = os.lstat(base + relative)
        except OSError:
            continue
        if not S_ISDIR(info.st_mode):  # a scope that names one file
            if covered or in_scopes(relative):
                found[relative] = facts(info)
            continue
        covered = covered or "/".join(path_segments(relative, fold_case=fold_case)) in whole
        try:
            with os.scandir(base + relative) as listing:
                entries = list(listing)
        except OSError:
            continue
        seen += len(entries)
        if seen > WALK_LIMIT:
            return None
        prefix = relative + "/" if relative else ""
        for entry in entries:
            path = prefix + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != ".git":
                        pending.append((path, covered))
                elif covered or in_scopes(path):
                    found[path] = facts(entry.stat(follow_symlinks=False)) if with_times \
                        else entry.inode()
            except OSError:
                continue
    return found


def snapshot_changes(before, after, since_ns):
    """What happened between a files_in_scopes snapshot ({path: inode}) and one with times
    taken after `since_ns`: {"created", "changed", "deleted": [path], "moved": [(from, to)]}.
    A file whose inode changed, or whose times are after `since_ns`, changed; a deleted file
    whose inode a new one has, not written since (a new file may reuse a freed inode), was
    moved."""
    created = [p for p in after if p not in before]
    deleted = [p for p in before if p not in after]
    changed = [p for p in after if p in before and (
        after[p][0] != before[p] or max(after[p][1], after[p][2]) >= since_ns)]
    by_inode = {}
    for path in created:
        if after[path][1] < since_ns:
            by_inode.setdefault(after[path][0], []).append(path)
    moved = []
    for path in list(deleted):
        same = by_inode.get(before[path])
        if same:
            target = same.pop(0)
            moved.append((path, target))
            deleted.remove(path)
            created.remove(target)
    return {"created": sorted(created), "changed": sorted(changed), "deleted": sorted(deleted),
            "moved": sorted(moved)}


def ignored_by_git(checkout, paths):
    """Those of `paths` git ignores in `checkout` (build output, caches): not anyone's work."""
    if not paths:
        return set()
    import subprocess
    try:
        proc = subprocess.run(["git", "-C", checkout, "check-ignore", "-z", "--stdin"],
                              input="\0".join(paths) + "\0", capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.SubprocessError):
        return set()
    return {name for name in proc.stdout.split("\0") if name}


# -- where a path belongs, who is acting, and the verdicts

def event_folder(ctx, event):
    """Where the agent acts: the event's own folder, Claude Code's project folder, the
    repository of the state the shim pinned; the process's folder only when none is known."""
    return (event["cwd"] or os.environ.get("CLAUDE_PROJECT_DIR") or os.environ.get("DEVIN_PROJECT_DIR")
            or repository_of_state(ctx.store.path) or os.getcwd())


def store_for_repository(ctx, main_root, pinned):
    """The state whose locks apply to the repository with main checkout `main_root`: the one
    the shim pinned when it is that repository's, else that repository's own state if it has
    one, else None."""
    if pinned == main_root:
        return ctx.store
    own = os.path.join(main_root, STATE_RELATIVE_PATH)
    if not os.path.isfile(own):
        return None
    store = Store(own)
    store.deadline = ctx.store.deadline
    ref = SharedRef.configured(main_root)  # that repository's own sharing, if any
    if ref is not None:
        ref.timeout = HOOK_NETWORK_SECONDS
    share_through(store, ref, ctx.store.sharing.purpose if ctx.store.sharing else
                  ("hook", None, ctx.machine))
    return store


def coordinating_checkout(ctx, event, target):
    """(store, checkout folder, path relative to it) that decide about `target` (a file or a
    folder), or (None, None, None) when no coordinated repository holds it. The innermost
    checkout with a state decides, so a submodule or a nested repository inside a locked
    folder is still that folder's. A state kept elsewhere (--state) serves the repository the
    agent works in."""
    pinned = repository_of_state(ctx.store.path)
    if pinned is None:
        around = enclosing_checkout(event_folder(ctx, event))
        pinned = around[1] if around else None
    for checkout, main_root in checkouts_holding(target):
        store = store_for_repository(ctx, main_root, pinned)
        if store is not None:
            relative = os.path.relpath(os.path.abspath(target), checkout).replace(os.sep, "/")
            return store, checkout, ("" if relative == "." else relative)
    return None, None, None


def store_and_path(ctx, event, target):
    store, _, path = coordinating_checkout(ctx, event, target)
    return store, path


def handle_hook_event(ctx, event):
    """Act on one hook event: (ALLOW, ASK or DENY, what the agent should read, or "")."""
    if event["kind"] == "session_end":
        return ALLOW, end_conversation(ctx, event)
    note_presence(ctx, event)
    if event["phase"] == "presence":  # a prompt is where Claude Code and Devin take context
        return ALLOW, deliver_to_conversation(ctx, event) if event["kind"] == "prompt" and event[
            "dialect"] in ("claude", "devin") else ""
    if event["kind"] == "session_start":
        return ALLOW, "\n".join(text for text in (session_start_check(ctx, event),
                                                   deliver_to_conversation(ctx, event)) if text)
    if event["kind"] == "setup_worktree":
        return ALLOW, worktree_check(ctx, event)
    if event["kind"] == "run_command":
        bind_from_command(ctx, event)
        if event["phase"] == "pre":
            return shell_command_verdict(ctx, event)
        if event["phase"] == "post":  # Cursor takes context after a tool, not on a prompt
            return ALLOW, "\n".join(text for text in (
                report_command_changes(ctx, event), deliver_to_conversation(ctx, event)
                if event["dialect"] == "cursor" else "") if text)
        return ALLOW, ""
    if event["kind"] != "write" or not event["file_path"] or event["phase"] not in ("pre", "post"):
        return ALLOW, ""  # an event we do not know is never answered as a pre-event
    notes = []
    for written in event["file_paths"] or [event["file_path"]]:  # an apply_patch names several
        file_path = os.path.join(event_folder(ctx, event), written)
        if event["phase"] == "pre":
            verdict, text = write_verdict(ctx, event, file_path)
            if verdict == DENY:
                return verdict, text
            notes += [text] if text and text not in notes else []
            continue
        store, path = store_and_path(ctx, event, file_path)
        if store is not None:  # else not a file of a repository whose sessions we coordinate
            record_touched(store, event["conversation"], [path], ctx.machine)
    return ALLOW, "\n".join(notes)


def bind_from_command(ctx, event):
    """A command line that runs one of the tool's writing commands with --session S binds
    this conversation to S (before the command and after it: a `sync` registers S)."""
    session_id = session_named_in_command(event["command_line"])
    if session_id and event["conversation"] == UNUSABLE_CONVERSATION:
        print("orchestrator hook: the conversation id is too long or holds control "
              "characters; nothing was bound", file=sys.stderr)
    elif session_id and event["conversation"]:
        store, _ = store_and_path(ctx, event, event_folder(ctx, event))
        state = store.load() if store else None
        bound = state and session_of_conversation(state, event["conversation"], ctx.machine)
        if state and find_session(state, session_id) and (bound or {}).get("id") != session_id:
            write_retrying(store, lambda state: bind_conversation(
                state, event["conversation"], session_id))


def note_presence(ctx, event):
    """Every event of a conversation is a sign of life: its record beside the state says when
    and how (a command that has not finished, waiting for the person, working). After an
    action, never before one, the state is told too when it has not been for a minute or
    the conversation began or stopped waiting (folded_presence), for other machines' view."""
    conversation = event["conversation"]
    if not conversation or event["kind"] == "setup_worktree":
        return
    store, _ = store_and_path(ctx, event, event_folder(ctx, event))
    if store is None:
        return
    kind = ("waiting" if event["kind"] == "waiting" else "running"
            if event["kind"] == "run_command" and event["phase"] == "pre" else "working")
    record_seen(store, conversation, kind)
    if event["phase"] == "pre" or event["kind"] == "prompt":
        return  # the agent waits on these: the state is told after an action only
    session = session_of_conversation(store.load(), conversation, ctx.machine)
    if session is None or folded_presence(session, kind, utc_now()) is None:
        return

    def fold(state):
        found = find_session(state, session["id"])
        fields = found and folded_presence(found, kind, utc_now())
        if fields:
            apply_fields(found, fields)
    write_retrying(store, fold)


def end_conversation(ctx, event):
    """A conversation ended (Claude Code's and Devin's SessionEnd, Cursor's sessionEnd). It is
    unbound; when it was its session's last live one (no other conversation of the session
    acted within the stale threshold), the session has ended: its locks over no uncommitted
    change (in its recorded worktree, and in the one the event came from) are released,
    those over uncommitted work stay, marked, and a note says which (end_of_session). A
    /clear (reason `clear`) only unbinds: the person goes on in the same window and binds
    the new conversation. Idempotent: a second end finds the conversation unbound."""
    conversation = event["conversation"]
    if not conversation:
        return ""
    store, checkout, _ = coordinating_checkout(ctx, event, event_folder(ctx, event))
    if store is None:
        return ""
    state = store.load()
    session = session_of_conversation(state, conversation, ctx.machine)
    if session is None:
        forget_seen(store, conversation)
        return ""
    cleared = event["source"] == "clear"
    _, stale_after = hook_thresholds()
    now = utc_now()
    seen = read_seen(store)
    live = cleared or [c for c in session.get("trajectories", []) if c != conversation
                       and c in seen and seconds_between(seen[c][0], now) <= stale_after]
    uncommitted = None if live else uncommitted_in(
        [session.get("worktree") if is_on_machine(session, ctx.machine) else None, checkout])
    told = []

    def end(state):
        found = find_session(state, session["id"])
        if found is None or conversation not in found.get("trajectories", []):
            return
        rest = [c for c in found["trajectories"] if c != conversation]
        apply_fields(found, {"trajectories": rest or None})
        if live:
            return
        released, kept = end_of_session(state, found["id"], uncommitted, utc_now(),
                                        fold_case=ctx.fold_case)
        told[:] = [session_end_note(found["id"], released, kept, uncommitted)]
        state["global_notes"].append(told[0])
    if store.sharing is not None:
        store.sharing.purpose = ("session-end", session["id"], ctx.machine)
    write_retrying(store, end)
    forget_seen(store, conversation)
    sweep_seen(store, time.time())
    if told:  # for the agent's hook log: a session that ended reads nothing more
        print(f"orchestrator hook: {told[0]}", file=sys.stderr)
    return ""


def uncommitted_in(checkouts):
    """The uncommitted changes of every existing one of `checkouts` (a session's recorded
    worktree, and the one its last event came from: it may have moved), hidden ones
    included; None when git cannot tell for one of them."""
    found = []
    for checkout in unique_in_order(c for c in checkouts if c and os.path.isdir(c)):
        paths = uncommitted_paths(checkout, hidden=True)
        if paths is None:
            return None
        found += paths
    return unique_in_order(found)


def session_end_note(session_id, released, kept, uncommitted):
    parts = [message("session_ended_released", areas=[lock["area"] for lock in released])
             ] if released else []
    if uncommitted is None:
        parts.append(message("session_ended_unknown"))
    for lock in kept:
        files = lock.get("left_uncommitted", [])
        shown = files[:CHANGED_FILES_SHOWN]
        parts.append(message("session_ended_kept", area=lock["area"], files=shown,
                             more=f" and {len(files) - len(shown)} more" if files[len(shown):]
                             else "", cli=cli_name()))
    return message("session_ended_note", session=session_id,
                   what=" ".join(parts) or message("session_ended_nothing"))


def deliver_to_conversation(ctx, event):
    """The unread messages of the session bound to the event's conversation, delivered once
    (deliver), or ""."""
    if not event["conversation"]:
        return ""
    store, _ = store_and_path(ctx, event, event_folder(ctx, event))
    session = store and session_of_conversation(store.load(), event["conversation"],
                                                ctx.machine)
    return deliver(store, session["id"])[0] if session else ""


def deliver(store, session_id):
    """What waits for a session (its unread messages, the global notes it has not been shown,
    who waits for its locks), framed as data, and marked delivered in the same write, so that
    two conversations or two hooks racing never deliver one twice: (text or "", the items).
    Nothing is written when nothing waits (a lookup)."""
    state = store.load()
    session = find_session(state, session_id)
    if session is None:
        return "", []
    got = {"items": [], "left": 0}
    if session.get("inbox") or unseen_notes(session, state["global_notes"]):
        def take(state):
            found = find_session(state, session_id)
            if found is not None:
                got["items"], got["left"] = take_delivery(found, state["global_notes"])
        write_retrying(store, take)
    waiting = take_notices(store, session_id) if has_notices(store) else []
    if not got["items"] and not waiting:
        return "", []
    return render("delivery.txt.j2", session=session_id, items=got["items"], left=got["left"],
                  waiting=waiting, cli=cli_name()).strip(), got["items"] + waiting


def record_touched(store, conversation, paths, machine=None):
    """Add `paths` to the touched files of the session bound to `conversation`, if any."""
    acting = session_of_conversation(store.load(), conversation, machine)
    if acting is None:
        return
    fit = [p for p in paths if len(p) <= MAX_PATH_CHARS and not has_control_characters(p)
           and "\n" not in p and "\t" not in p]
    if len(fit) < len(paths):
        print("orchestrator hook: a file name with control characters or over "
              f"{MAX_PATH_CHARS} characters is not recorded", file=sys.stderr)
    if not [p for p in fit if p not in acting.get("touched_files", [])]:
        return
    def record(state):
        session = find_session(state, acting["id"])
        if session is not None:
            add_touched_files(session, fit)
    write_retrying(store, record)


def write_retrying(store, change):
    """A hook's own write (`change(state)`), applied again when the shared state's ref moved
    meanwhile, as Context.run does for a command."""
    for attempt in range(SHARED_ATTEMPTS):
        try:
            with Transaction(store) as state:
                change(state)
            return
        except RemoteMoved:
            wait_to_retry(attempt)
    print("orchestrator hook: other writers kept overtaking this one on the shared remote; "
          "what this event would record was not recorded", file=sys.stderr)


def worktree_check(ctx, event):
    """Windsurf's post_setup_worktree: does the new worktree see the pack and the shared state
    of the repository it was made from? One line when it does not, saying what to run."""
    worktree = event["file_path"]
    if not worktree:
        return ""
    found = enclosing_checkout(worktree)
    root = enclosing_checkout(event["cwd"] or os.getcwd())
    if found is None or root is None or found[1] != root[1]:
        return message("worktree_elsewhere", worktree=worktree)
    if not os.path.isfile(os.path.join(worktree, SHIM_PATH)):
        return message("worktree_without_pack", worktree=worktree,
                       shim=os.path.join(found[1], SHIM_PATH))
    return ""


def session_start_check(ctx, event):
    """The silent session-start check, run by the agent itself (Claude Code's and Cursor's
    session-start events): what it says becomes part of the conversation, so it says only a
    conflict of the bound session's areas, or after /clear, how an unbound conversation
    binds again."""
    store, _ = store_and_path(ctx, event, event_folder(ctx, event))
    if store is None:
        return ""
    state, now = store.load(), utc_now()
    session = session_of_conversation(state, event["conversation"], ctx.machine)
    if session is None:
        if event["source"] == "clear" and state["active_sessions"]:
            return message("session_start_unbound", cli=cli_name())
        return ""
    found = [conflict_view(c, now) for c in foreign_locks_in_the_way(
        state, session["id"], session["touched_areas"], [], now, fold_case=ctx.fold_case)]
    if not found:
        return ""
    conflicts, shared = split_by_outside_fixes(found)
    return render("check_warning.txt.j2", session=session["id"], drift=[], cli=cli_name(),
                  conflicts=conflicts, shared=shared).rstrip("\n")


# The files that make the locks enforced: an agent bound by a lock must not be able to switch
# them off. The state's folder (the state, its backup, the launcher) is never the agents'.
ENFORCEMENT_FILES = (SHIM_PATH, WINDSURF_HOOKS_PATH, CLAUDE_SETTINGS_PATH, CURSOR_HOOKS_PATH,
                     DEVIN_HOOKS_PATH, GIT_HOOKS_FOLDER)


def guarded_files_in(path, tree):
    """(touches the state's folder?, the enforcement files it touches) for a change of the
    repository-relative `path` (with `tree`, of everything below it too)."""
    def touches(guarded):
        return (path + "/").startswith(guarded + "/") or (
            tree and (path == "" or (guarded + "/").startswith(path + "/")))
    return touches(STATE_FOLDER), [f for f in ENFORCEMENT_FILES if touches(f)]


def write_verdict(ctx, event, file_path, tree=False, certain=True):
    """Before a change of `file_path` (with `tree`, of everything below it too), by an edit
    tool or a shell command: (DENY, why) when it goes into another session's lock that allows
    no outside fixes, into the shared state, or into the enforcement while another session
    holds a live lock; (ALLOW, a note naming the owner) inside a lock that allows outside
    fixes. A path is judged as written and, when a symlink on the way leads elsewhere, as the
    file the change really reaches: either one inside a foreign lock decides. A folder that
    an uncertain command only names (not `certain`) is judged by the locks in it: holding the
    state's folder is no reason to ask about every command run from the top."""
    verdict, text = write_verdict_of_path(ctx, event, file_path, tree, certain)
    try:
        real = os.path.realpath(file_path)
    except (OSError, ValueError):  # /proc's unreadable links, a name the OS refuses
        real = os.path.abspath(file_path)
    if verdict == ALLOW and real != os.path.abspath(file_path):
        verdict_there, text_there = write_verdict_of_path(ctx, event, real, tree, certain)
        if verdict_there != ALLOW or not text:
            return verdict_there, text_there
    return verdict, text


def write_verdict_of_path(ctx, event, file_path, tree=False, certain=True):
    store, checkout, path = coordinating_checkout(ctx, event, file_path)
    if store is None and tree:  # a folder that holds a whole coordinated checkout
        store, path = store_and_path(ctx, event, event_folder(ctx, event))
        if store is None or not os.path.join(repository_of_state(store.path) or "", "").startswith(
                os.path.join(os.path.abspath(file_path), "")):
            return ALLOW, ""
        path = ""
    if store is None:
        return ALLOW, ""  # not a file of a repository whose sessions we coordinate
    state, now = store.load(), utc_now()
    session = session_of_conversation(state, event["conversation"], ctx.machine)
    session_id = session["id"] if session else None
    state_folder, enforcement = guarded_files_in(path, tree and certain)
    shown = path or "."
    if state_folder:
        return DENY, message("hook_state_file", path=shown, cli=cli_name())
    holders = [lock for lock in live_locks(state, now) if lock["owner"] != session_id]
    if enforcement and holders:
        return DENY, message("hook_enforcement_file", path=enforcement[0],
                             owner=holders[0]["owner"], cli=cli_name())
    if tree:
        found = [c["lock"] for c in foreign_locks_in_the_way(
            state, session_id, [], [path] if path else [], now, is_folder=lambda item: True,
            fold_case=ctx.fold_case)] if path else holders
        strict = [lock for lock in found if not lock["allow_external_fixes"]]
        lock = (strict or found or [None])[0]
        verdict = None if lock is None else "report_only" if strict else "fix_and_notify"
    else:
        verdict, lock, _ = build_failure_verdict(state, session_id, path=path, now=now,
                                                 fold_case=ctx.fold_case)
    if verdict in (None, "fix"):
        return ALLOW, "" if tree else changed_by_others(ctx, store, state, session_id,
                                                        checkout, path, now)
    fields = {"path": shown, "owner": lock["owner"], "cli": cli_name(), "area": lock["area"],
              "until": lock["expires_at"], "reason": lock["reason"], "scope": lock["scope"],
              "you": session_id or "<your-session>"}
    if verdict == "fix_and_notify":
        return ALLOW, message("hook_allowed_in_lock", **fields)
    holder = holder_presence(lock["owner"], presences(
        state, read_seen(store), now, hook_thresholds(), ctx.machine), now)
    fields["holder"] = f" ({holder})" if holder else ""
    return DENY, "\n".join([message("hook_blocked_folder" if tree and not path_in_lock(
        lock, path, ctx.fold_case) else "hook_blocked", **fields),
        message("hook_what_to_do" if session else "hook_unbound", **fields)])


def changed_by_others(ctx, store, state, session_id, checkout, path, now):
    """Before a write in one shared checkout: a note naming the other live sessions of this
    worktree whose hooks recorded a change of the same file (a lookup; presence only when one
    is found). Never a block: the radar reports it in every report too."""
    if not checkout or not path:
        return ""
    others = [s for s in state["active_sessions"] if s["id"] != session_id
              and path in s.get("touched_files", ()) and s.get("worktree")
              and is_on_machine(s, ctx.machine)]
    if others:  # a lookup first: the real paths only for a session that wrote the file
        here = os.path.realpath(checkout)
        others = [s["id"] for s in others if os.path.realpath(s["worktree"]) == here]
    if not others:
        return ""
    seen = presences(state, read_seen(store), now, hook_thresholds(), ctx.machine)
    live = [other for other in others if is_live(seen[other]["presence"])]
    return message("radar_told_in_hook", path=path, others=", ".join(live), first=live[0],
                   cli=cli_name(), you=session_id or "<your-session>") if live else ""


def hook_thresholds():
    """The presence thresholds; a hook never fails on a bad one (the commands say what is
    wrong with it): the defaults then."""
    try:
        return presence_thresholds(os.environ)
    except UsageError:
        return presence_thresholds({})


def path_in_lock(lock, path, fold_case=False):
    return bool(path) and any(path_in_scope(path, scope, fold_case=fold_case)
                              for scope in lock["scope"])


# When a shell command started, for the report after it: a marker beside the state, whose
# time comes from the clock of the file system the repository is usually on.
MARKER_PREFIX = "command-started-"
MARKER_LIFETIME_NS = 86400 * 10**9  # older: a command whose after-event never came


def command_start_marker(store, key):
    import binascii
    crc = binascii.crc32(key.encode("utf-8", "surrogatepass"))
    return os.path.join(os.path.dirname(store.path), f"{MARKER_PREFIX}{crc:08x}-{len(key)}")


def mark_command_start(store, key, now_ns, snapshot=None):
    """Mark when the command keyed `key` starts, with what the other sessions' locks held
    then (`snapshot`), unless a live marker for that key is there already (an earlier
    command still running: its start covers both). Leftover markers are swept."""
    try:
        store.check_folders()
        folder = os.path.dirname(store.path)
        for name in os.listdir(folder):
            if name.startswith(MARKER_PREFIX):
                leftover = os.path.join(folder, name)
                if now_ns - os.lstat(leftover).st_mtime_ns > MARKER_LIFETIME_NS:
                    os.unlink(leftover)
        handle = os.open(command_start_marker(store, key),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                         0o600)
        try:
            if snapshot is not None:
                os.write(handle, marshal.dumps(snapshot))
        finally:
            os.close(handle)
    except (OSError, OrchestratorError, ValueError):
        pass  # a marker there already, or none possible: nothing worse than no report


def take_command_start(store, key, now_ns):
    """(when the command keyed `key` started (its marker's time), the snapshot kept with it
    or None), or None without a marker; the marker is removed."""
    marker = command_start_marker(store, key)
    try:
        started = os.lstat(marker).st_mtime_ns
        kept = read_regular(marker)
        os.unlink(marker)
    except OSError:
        return None
    try:
        snapshot = marshal.loads(kept) if kept else None
    except (ValueError, EOFError, TypeError):
        snapshot = None
    if now_ns - started >= MARKER_LIFETIME_NS:
        return None
    return started, snapshot if isinstance(snapshot, dict) else None


def command_key(event):
    """What pairs a command's before- and after-events: the conversation, and Claude Code's
    tool_use_id when it sends one (two commands of one conversation may overlap)."""
    return event["conversation"] + ("/" + event["tool_use"] if event["tool_use"] else "")


def shell_command_verdict(ctx, event):
    """Before a shell command, judged by what it would change (shell_effects): a certain
    change that an edit of the same path would be denied is denied; a command whose effect its
    words do not tell and that names a path such an edit would be denied (or a folder holding
    one) is asked about; otherwise it runs, and when other sessions hold live locks in this
    worktree what their locks hold is noted first, so that what changes there while it runs
    is reported after it (report_command_changes)."""
    folder = event_folder(ctx, event)
    effects = shell_effects(event["command_line"], folder)
    notes = []
    for path, tree in effects.changes:
        verdict, text = judged_path(ctx, event, path, tree, certain=True)
        if verdict == DENY:
            return DENY, text
        if text and text not in notes:
            notes.append(text)
    asked = None
    for why, named in effects.uncertain:
        for path, tree in named:
            verdict, text = judged_path(ctx, event, path, tree, certain=False)
            if verdict == DENY and asked is None:
                asked = message("hook_ask", why=why, detail=text.split("\n")[0])
    # Noted before an asked command too: if the person lets it run (and in Windsurf, which
    # cannot ask, it runs), what it changed is reported after it.
    note_locked_files(ctx, event, folder, [path for path, _ in effects.changes])
    return (ASK, asked) if asked else (ALLOW, "\n".join(notes))


def judged_path(ctx, event, path, tree, certain):
    """write_verdict for one path a command names; a name no file system could hold (a NUL,
    a lone surrogate) is no file the command can change."""
    try:
        if not certain and tree and os.path.isfile(path):
            tree = False  # a file an uncertain command names stands for itself
        return write_verdict(ctx, event, path, tree, certain)
    except (ValueError, UnicodeError):
        return ALLOW, ""


def note_locked_files(ctx, event, folder, named):
    """Keep, beside the state, what the other sessions' live locks hold in the worktree the
    command runs in, and the files its own line names as changed (`named`, absolute), for
    the report after it."""
    store, checkout, _ = coordinating_checkout(ctx, event, folder)
    if store is None or not event["conversation"]:
        return
    state = store.load()
    session = session_of_conversation(state, event["conversation"], ctx.machine)
    scopes = unique_in_order(scope for lock in live_locks(state, utc_now())
                             if lock["owner"] != (session or {}).get("id")
                             for scope in lock["scope"])
    own = [os.path.relpath(path, checkout).replace(os.sep, "/") for path in named
           if (path + os.sep).startswith(os.path.join(checkout, ""))]
    if scopes or (session and own):
        mark_command_start(store, command_key(event), time.time_ns(), {
            "checkout": checkout, "scopes": scopes, "named": own,
            "files": files_in_scopes(checkout, scopes, fold_case=ctx.fold_case)
            if scopes else {}})


def report_command_changes(ctx, event):
    """After a shell command: the files created, changed, deleted or moved inside other
    sessions' live locks while it ran (git ignores none of them), one line per lock, told to
    the agent (and in Windsurf to the person) and noted in the state for the owner. They may
    be the command's doing or the owner's own work at the same moment, and the message says
    so: they are reported, never added to anyone's touched files. The files the command's own
    line names as changed are the acting session's touched files."""
    if not event["conversation"]:
        return ""
    store, checkout, _ = coordinating_checkout(ctx, event, event_folder(ctx, event))
    if store is None:
        return ""
    started = take_command_start(store, command_key(event), time.time_ns())
    if started is None:
        return ""
    started_ns, kept = started
    state, now = store.load(), utc_now()
    session = session_of_conversation(state, event["conversation"], ctx.machine)
    session_id = (session or {}).get("id")
    if kept and isinstance(kept.get("checkout"), str):
        checkout = kept["checkout"]
    named = [p for p in (kept or {}).get("named", []) if isinstance(p, str)]
    if session and named:
        record_touched(store, event["conversation"], named, ctx.machine)
    scopes = unique_in_order(scope for lock in live_locks(state, now) if lock["owner"] != session_id
                             for scope in lock["scope"])
    if not scopes:
        return ""
    before = kept.get("files") if kept else None
    after = files_in_scopes(checkout, scopes, fold_case=ctx.fold_case,
                            with_times=True) if isinstance(before, dict) else None
    if after is not None:
        happened = snapshot_changes(before, after, started_ns)
    else:  # too many files to keep: what changed by its times (deletions are not seen)
        happened = {"created": [], "deleted": [], "moved": [], "changed": files_written_in_scopes_after(
            checkout, scopes, started_ns, fold_case=ctx.fold_case)}
    ignored = ignored_by_git(checkout, [p for kind in ("created", "changed", "deleted")
                                        for p in happened[kind]] +
                             [p for pair in happened["moved"] for p in pair])
    lines, notes = [], []
    for lock, paths in changes_in_foreign_locks(state, session_id, [
            p for kind in ("created", "changed", "deleted") for p in happened[kind]
            if p not in ignored] + [p for pair in happened["moved"] for p in pair
                                    if pair[0] not in ignored], now, fold_case=ctx.fold_case):
        described = describe_changes(happened, set(paths))
        key = "hook_changed_in_shared_lock" if lock["allow_external_fixes"] else "hook_changed_in_lock"
        fields = {"changes": described, "owner": lock["owner"], "area": lock["area"],
                  "cli": cli_name(), "you": session_id or "<your-session>"}
        lines.append(message(key, **fields))
        notes.append(message("hook_changed_note", **fields))
    if not lines:
        return ""

    def remember(state):
        state["global_notes"].extend(note for note in notes if note not in state["global_notes"])
    write_retrying(store, remember)
    return "\n".join(lines)


CHANGED_FILES_SHOWN = 10  # files named per lock after a command; the rest are counted


def describe_changes(happened, paths):
    """One phrase for what happened to `paths`: created, changed, deleted, moved."""
    parts = []
    for kind in ("created", "changed", "deleted"):
        chosen = [p for p in happened[kind] if p in paths]
        if chosen:
            shown = chosen[:CHANGED_FILES_SHOWN]
            more = f" and {len(chosen) - len(shown)} more" if len(chosen) > len(shown) else ""
            parts.append(message(f"changes_{kind}", files=shown, more=more))
    moved = [pair for pair in happened["moved"] if pair[0] in paths or pair[1] in paths]
    for old, new in moved[:CHANGED_FILES_SHOWN]:
        parts.append(message("changes_moved", old=old, new=new))
    return ", ".join(parts)


# ---------------------------------------------------------------------------- the pack

PACK_CLI = f"sh {SHIM_PATH}"
GENERATED_MARK = "generated by Session Orchestrator install"
SHIM = (SHIM_PATH, "shim.sh.j2", "sh")
AGENT_FILES = {  # committed files per agent: (path in the target repository, template, style)
    "windsurf": ((".windsurf/workflows/orchestrator.md", "orchestrator.md.j2", "md"),
                 (".windsurf/rules/orchestrator.md", "rule.md.j2", "md")),
    "claude": ((".claude/commands/orchestrator.md", "claude_command.md.j2", "md"),),
    "cursor": ((".cursor/rules/orchestrator.mdc", "cursor_rule.mdc.j2", "md"),),
    "devin": ((".devin/rules/orchestrator.md", "rule.md.j2", "md"),
              (".devin/skills/orchestrator/SKILL.md", "devin_skill.md.j2", "md")),
    "agents-md": (),  # a marked section of AGENTS.md, merged by merge_agents_md
}
GITIGNORE_LINES = (STATE_FOLDER + "/",)
HOOK_BLOCK_EXIT = 42  # what the shim's hook exits with to block; the hook command maps it to 2


USER_LAUNCHER_SHELL = "${XDG_DATA_HOME:-$HOME/.local/share}/session-orchestrator/launcher"


def user_launcher_path():
    """The launcher install also keeps per user, for hooks started outside any checkout
    that has the pack (another repository of a workspace, `/`); the hook command's last
    resort. It names the Python and the tool of this machine, like the per-checkout one."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"),
                                                             ".local", "share")
    return os.path.join(base, "session-orchestrator", "launcher")


def hook_command(project_dir_variable=None, json_answer=False):
    """The command line an agent's hook configuration runs: one POSIX `sh -c` script, so that
    it means the same under dash, bash, zsh or fish. It finds the shim (in the agent's
    project folder or the current folder, at the top of that checkout, in its main checkout
    for a worktree made from a commit older than the pack) or else the user's launcher, and
    maps only a deliberate block (exit 42) to 2: a missing or unreadable shim, a broken
    launcher or a crash can never block the agent. With `json_answer` (Cursor, which takes
    anything but a JSON object from a permission hook as a failure) every path prints one:
    `{}` when the tool itself said nothing."""
    shim = SHIM_PATH
    steps = [f"s={shim}", "d=."]
    if project_dir_variable:
        steps.append(f'[ -n "${{{project_dir_variable}:-}}" ] && d="${project_dir_variable}"')
    allowed = "; echo {}" if json_answer else ""
    steps += [
        'f="$d/$s"',
        '[ -r "$f" ] || f="$s"',
        '[ -r "$f" ] || f="$(git -C "$d" rev-parse --show-toplevel 2>/dev/null)/$s"',
        '[ -r "$f" ] || f="$(git -C "$d" rev-parse --path-format=absolute --git-common-dir'
        ' 2>/dev/null)/../$s"',
        f'[ -r "$f" ] || f="{USER_LAUNCHER_SHELL}"',
        'if [ ! -f "$f" ] || [ ! -r "$f" ]; then echo "orchestrator hook: no readable ' + shim +
        ' here or in this repository; the action was allowed" >&2' + allowed + '; exit 0; fi']
    if json_answer:
        steps += [f'o="$(sh "$f" hook --block-exit {HOOK_BLOCK_EXIT})"', 'r=$?',
                  'if [ -n "$o" ]; then printf "%s\\n" "$o"; else echo {}; fi']
    else:
        steps += [f'sh "$f" hook --block-exit {HOOK_BLOCK_EXIT}', 'r=$?']
    steps += [f'[ $r -eq {HOOK_BLOCK_EXIT} ] && exit 2', 'exit 0']
    return "sh -c '" + "; ".join(steps) + "'"


HOOK_COMMAND = hook_command()
WINDSURF_HOOKS = {"pre_write_code": True, "post_write_code": False, "pre_run_command": False,
                  "post_run_command": True, "post_setup_worktree": True,
                  "pre_user_prompt": False, "post_cascade_response": False}  # event: show_output
CLAUDE_HOOK_COMMAND = hook_command("CLAUDE_PROJECT_DIR")
# Devin loads `.claude/` hooks too, with its own tool names: matchers for those as well. When
# both `.claude/` and `.devin/` answer one Devin event, the tool acts once: a verdict is the
# same twice, a binding or a touched file is recorded once, the after-command mark is taken by
# the first to come.
DEVIN_MATCHERS = ("|".join(DEVIN_WRITE_TOOLS), DEVIN_SHELL_TOOL)
CLAUDE_HOOKS = {"PreToolUse": ("|".join(CLAUDE_WRITE_TOOLS), CLAUDE_SHELL_TOOL) + DEVIN_MATCHERS,
                "PostToolUse": ("|".join(CLAUDE_WRITE_TOOLS), CLAUDE_SHELL_TOOL) + DEVIN_MATCHERS,
                "PostToolUseFailure": (CLAUDE_SHELL_TOOL,),  # a failed command may have written
                "SessionStart": ("startup|resume|clear|compact",), "SessionEnd": ("",),
                "Notification": ("|".join(sorted(WAITING_NOTIFICATIONS)),), "Stop": ("",),
                "UserPromptSubmit": ("",)}
CURSOR_HOOK_COMMAND = hook_command("CURSOR_PROJECT_DIR", json_answer=True)
DEVIN_HOOK_COMMAND = hook_command("DEVIN_PROJECT_DIR")
# Devin's events (docs.devin.ai/cli/extensibility/hooks/lifecycle-hooks): event -> matchers.
DEVIN_HOOKS = {"PreToolUse": DEVIN_MATCHERS, "PostToolUse": DEVIN_MATCHERS,
               "SessionStart": ("",), "SessionEnd": ("",), "Stop": ("",),
               "UserPromptSubmit": ("",)}
CURSOR_HOOKS_VERSION = 1
# Cursor's own events (cursor.com/docs/agent/hooks): event -> matcher (None: every one).
CURSOR_HOOKS = {"sessionStart": None, "preToolUse": "|".join(CURSOR_WRITE_TOOLS),
                "beforeShellExecution": None, "postToolUse": CURSOR_SHELL_TOOL,
                "postToolUseFailure": CURSOR_SHELL_TOOL, "afterFileEdit": None,
                "sessionEnd": None, "stop": None}
# postToolUse answers additional_context, which the agent reads; afterShellExecution has no
# answer field. Entries an earlier install wrote under events no longer used are removed.
CURSOR_RETIRED_EVENTS = ("afterShellExecution",)


def is_our_hook_command(command):
    """A hook command this pack wrote, of this version or an earlier one (replaced on install:
    an old one may block when its shim is missing)."""
    return isinstance(command, str) and SHIM_PATH in command and " hook" in command
# The hooks configuration each agent reads: without it the agent runs unenforced.
HOOK_CONFIG_AGENTS = {WINDSURF_HOOKS_PATH: "windsurf", CLAUDE_SETTINGS_PATH: "claude",
                      CURSOR_HOOKS_PATH: "cursor", DEVIN_HOOKS_PATH: "devin"}
AGENTS_MD_BEGIN = "<!-- session-orchestrator:begin (managed by orchestrator.py install) -->"
AGENTS_MD_END = "<!-- session-orchestrator:end -->"


def pack_context():
    """What every pack template may use; each agent's own wording (its name, how the user
    invokes the command) is set by that agent's template in workflows/."""
    return {"cli": PACK_CLI, "state_path": STATE_RELATIVE_PATH, "launcher_path": LAUNCHER_PATH,
            "audit_threshold": AUDIT_THRESHOLD}


def render_pack(agents=("windsurf",)):
    """The files of the pack meant to be committed: {relative path: text}."""
    files = {SHIM_PATH: mark_generated(render(SHIM[1], **pack_context()), SHIM[2])}
    for agent in agents:
        for path, template, style in AGENT_FILES[agent]:
            files[path] = mark_generated(render(template, **pack_context()), style)
    return files


def merge_windsurf_hooks(config):
    """Add our Cascade hooks to a hooks.json config, keeping every hook already there and
    replacing the ones an earlier install wrote."""
    hooks = config.setdefault("hooks", {})
    for event, show_output in WINDSURF_HOOKS.items():
        theirs = [e for e in hooks.get(event, [])
                  if not (isinstance(e, dict) and is_our_hook_command(e.get("command")))]
        hooks[event] = theirs + [{"command": HOOK_COMMAND, "show_output": show_output}]
    return config


def merge_claude_hooks(settings):
    """Add our Claude Code hooks to settings.json (exit 2 from PreToolUse blocks the edit),
    keeping the user's and replacing the ones an earlier install wrote."""
    merge_matcher_blocks(settings.setdefault("hooks", {}), CLAUDE_HOOKS, CLAUDE_HOOK_COMMAND)
    return settings


def merge_devin_hooks(config):
    """The same for Devin's `.devin/hooks.v1.json`, whose events stand at the top level
    (docs.devin.ai/cli/extensibility/hooks/overview)."""
    merge_matcher_blocks(config, DEVIN_HOOKS, DEVIN_HOOK_COMMAND)
    return config


def merge_matcher_blocks(hooks, table, command):
    """Claude Code's shape (`{EVENT: [{"matcher", "hooks": [{"type", "command"}]}]}`): ours
    added for each matcher of `table`, the user's kept, an earlier install's replaced."""
    for event, matchers in table.items():
        blocks = []
        for block in hooks.get(event, []):
            if isinstance(block, dict) and isinstance(block.get("hooks"), list):
                kept = [h for h in block["hooks"]
                        if not (isinstance(h, dict) and is_our_hook_command(h.get("command")))]
                if not kept and block["hooks"]:
                    continue  # a block that held only our hook
                block = {**block, "hooks": kept}
            blocks.append(block)
        for matcher in matchers:
            blocks.append({"matcher": matcher,
                           "hooks": [{"type": "command", "command": command}]})
        hooks[event] = blocks


def merge_cursor_hooks(config):
    """Add our hooks to Cursor's .cursor/hooks.json, keeping every hook already there and
    replacing the ones an earlier install wrote. The file is `version` 1 of the contract."""
    version = config.setdefault("version", CURSOR_HOOKS_VERSION)
    if version != CURSOR_HOOKS_VERSION:
        raise Kept(f"it is version {version!r} of Cursor's hooks file; this pack writes version "
                   f"{CURSOR_HOOKS_VERSION}: add ours by hand (see the README)")
    hooks = config.setdefault("hooks", {})
    for event in CURSOR_RETIRED_EVENTS:
        if event in hooks:
            kept = [e for e in hooks[event]
                    if not (isinstance(e, dict) and is_our_hook_command(e.get("command")))]
            if kept:
                hooks[event] = kept
            else:
                del hooks[event]
    for event, matcher in CURSOR_HOOKS.items():
        theirs = [e for e in hooks.get(event, [])
                  if not (isinstance(e, dict) and is_our_hook_command(e.get("command")))]
        ours = {"command": CURSOR_HOOK_COMMAND}
        if matcher:
            ours["matcher"] = matcher
        hooks[event] = theirs + [ours]
    return config


def merge_agents_md(text, section):
    """Put our section between its markers in AGENTS.md; everything else stays as it was."""
    block = f"{AGENTS_MD_BEGIN}\n{section.strip()}\n{AGENTS_MD_END}\n"
    if AGENTS_MD_BEGIN in text and AGENTS_MD_END in text:
        before, rest = text.split(AGENTS_MD_BEGIN, 1)
        after = rest.split(AGENTS_MD_END, 1)[1].lstrip("\n")
        return before + block + ("\n" + after if after else "")
    separator = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
    return text + separator + block


def mark_generated(text, style):
    """Append a marker holding the hash of the text, so install can tell its own untouched
    output (safe to upgrade) from a file the user changed (kept unless --force)."""
    body = text if text.endswith("\n") else text + "\n"
    import hashlib
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]
    note = f"{GENERATED_MARK}; edit freely, install keeps changed files unless --force; {digest}"
    return body + (f"<!-- {note} -->\n" if style == "md" else f"# {note}\n")


def untouched_generated(text):
    """Is `text` a generated file exactly as install wrote it (any version)?"""
    lines = text.splitlines(keepends=True)
    if not lines or GENERATED_MARK not in lines[-1]:
        return False
    digest = lines[-1].rstrip(" ->\n").rsplit(" ", 1)[-1]
    import hashlib
    return hashlib.sha256("".join(lines[:-1]).encode("utf-8")).hexdigest()[:16] == digest


def launcher_paths():
    """What the launcher puts on sys.path for a Python started with -S: the tool's folder,
    then the folders this interpreter finds its installed packages in."""
    return [str(HERE)] + unique_in_order(
        p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p))


def write_launcher(path):
    text = render("launcher.sh.j2", python=sys.executable, paths=launcher_paths())
    atomic_write(path, text.encode("utf-8"))
    os.chmod(path, 0o755)
    return path


class Kept(Exception):
    """A file install cannot change safely: left as it is, listed under KEPT with why."""


def install_destination(target, relative):
    """Where install writes `relative`: the file the path leads to, followed through every
    symlink on the way, when that lies inside the repository; a path that leads outside
    (a linked file, or a linked folder such as `.claude`) is never written through."""
    real = os.path.realpath(os.path.join(str(target), relative))
    inside = relative_to_checkout(real, os.path.realpath(str(target)))
    if inside is None:
        raise Kept("a symbolic link (of the file or a folder on its way) leads outside the "
                   "repository")
    if (inside + "/").startswith(".git/") and not (relative + "/").startswith(".git/"):
        raise Kept("a symbolic link (of the file or a folder on its way) leads into .git, "
                   "where a file becomes git's own (a hook, its config)")
    if os.path.exists(real) and not stat_is_regular(os.stat(real)):
        raise Kept("not a regular file")
    return real


def read_for_install(path):
    """A file's text for install to change, None when it does not exist."""
    try:
        data = read_regular(path)
    except NotRegularFile:
        raise Kept("not a regular file") from None
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Kept("not UTF-8 text: add our part by hand (see the README)") from None


def plan_file(path, wanted, force):
    """What install does with one committed file: (action, diff) with action created,
    updated, unchanged, kept or overwritten."""
    try:
        existing = read_for_install(path)
    except Kept:
        existing = ""  # unreadable as ours: treated as a file the user changed
    if existing is None:
        return "created", None
    if existing == wanted:
        return "unchanged", None
    if existing and untouched_generated(existing):
        return "updated", None
    if force:
        return "overwritten", None
    import difflib
    diff = "".join(difflib.unified_diff(existing.splitlines(keepends=True),
                                        wanted.splitlines(keepends=True),
                                        f"{path} (yours)", f"{path} (pack)"))
    return "kept", diff


def planned_gitignore(existing):
    present = {line.strip() for line in (existing or "").splitlines()}
    missing = [line for line in GITIGNORE_LINES if line not in present]
    if not missing:
        return existing
    addition = "" if not existing or existing.endswith("\n") else "\n"
    addition += "# Session Orchestrator: shared state, lock, backup and per-machine launcher\n"
    return (existing or "") + addition + "".join(line + "\n" for line in missing)


def read_json_exactly(text):
    """A JSON object from `text`, or Kept when install could not write it back meaning the
    same: not JSON, not an object, duplicate keys (json keeps only the last), numbers json
    cannot write back (1e400 becomes Infinity, which is not JSON)."""
    import json
    import math

    def no_duplicates(pairs):
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise Kept("it repeats a key, which rewriting would drop: merge our hooks by hand")
        return dict(pairs)

    def finite(text):
        value = float(text)
        if not math.isfinite(value):
            raise Kept(f"it holds the number {text}, which cannot be written back as JSON")
        return value

    def constant(name):
        raise Kept(f"it holds {name}, which is not JSON")

    try:
        value = json.loads(text, object_pairs_hook=no_duplicates, parse_float=finite,
                           parse_constant=constant)
    except ValueError:
        raise Kept("not valid JSON: add the hooks by hand (see the README)") from None
    except RecursionError:
        raise Kept("nested too deeply to merge: add the hooks by hand") from None
    if not isinstance(value, dict):
        raise Kept("it does not hold a JSON object: add the hooks by hand (see the README)")
    return value


def check_hooks_shape(config, claude, top_level=False):
    """Kept unless `config` has the shape the agent's documentation gives its hooks (under
    "hooks", or with `top_level` the events themselves, as Devin's file holds them)."""
    hooks = config if top_level else config.get("hooks", {})
    if not isinstance(hooks, dict):
        raise Kept('its "hooks" is not an object: add ours by hand (see the README)')
    for event, entries in hooks.items():
        if not isinstance(entries, list):
            raise Kept(f'its hooks for {event!r} are not a list: add ours by hand')
        for entry in entries:
            if claude and isinstance(entry, dict) and not isinstance(entry.get("hooks", []), list):
                raise Kept(f'a {event!r} block\'s "hooks" is not a list: add ours by hand')


def planned_json(existing, merge, claude, top_level=False):
    import copy
    import json
    config = read_json_exactly(existing) if existing is not None else {}
    check_hooks_shape(config, claude, top_level)
    merged = merge(copy.deepcopy(config))
    if existing is not None and merged == config:
        return existing
    return json.dumps(merged, indent=2, ensure_ascii=False) + "\n"


# The MCP server in each agent's project configuration (Windsurf's is one global file: install
# prints its entry instead of writing outside the repository).
MCP_SERVER_NAME = "session-orchestrator"
MCP_CONFIG_PATHS = {"claude": ".mcp.json", "cursor": ".cursor/mcp.json",
                    "devin": ".devin/config.json"}
MCP_ENTRY = {"command": "sh", "args": [SHIM_PATH, "mcp"]}


def planned_mcp(existing):
    """An agent's MCP configuration with our server under `mcpServers`, everything else kept."""
    import copy
    import json
    config = read_json_exactly(existing) if existing is not None else {}
    servers = config.get("mcpServers", {})
    if not isinstance(servers, dict):
        raise Kept("its `mcpServers` is not an object: add the server by hand (see docs/mcp.md)")
    merged = copy.deepcopy(config)
    merged["mcpServers"] = {**servers, MCP_SERVER_NAME: MCP_ENTRY}
    if existing is not None and merged == config:
        return existing
    return json.dumps(merged, indent=2, ensure_ascii=False) + "\n"


def windsurf_mcp_entry(target):
    """The entry for Windsurf's global mcp_config.json, for this repository (by its path)."""
    root = os.path.abspath(str(target))
    return {MCP_SERVER_NAME: {"command": "sh", "args": [os.path.join(root, SHIM_PATH), "mcp",
                                                        "--target", root]}}


def planned_agents_md(existing, section):
    text = existing or ""
    begin, end = text.find(AGENTS_MD_BEGIN), text.find(AGENTS_MD_END)
    if (begin == -1) != (end == -1) or (begin != -1 and end < begin) or \
            text.count(AGENTS_MD_BEGIN) > 1 or text.count(AGENTS_MD_END) > 1:
        raise Kept("its session-orchestrator markers are missing, repeated or out of order: "
                   "fix them, or remove both, and install again")
    return merge_agents_md(text, section)


GIT_HOOK_MARK = "Session Orchestrator: refuse a commit"


def install_git_hook(target):
    """The pre-commit hook, in the hooks folder git uses for this repository (the common one,
    so every worktree has it, or core.hooksPath). A pre-commit hook already there is kept
    and run first (renamed to pre-commit.before-orchestrator)."""
    folder = run_git(target, "rev-parse", "--path-format=absolute", "--git-path", "hooks").strip()
    if not folder:
        return {"path": ".git/hooks/pre-commit", "action": "kept", "note": "not a git repository"}
    path = os.path.join(folder, "pre-commit")
    chained = os.path.join(folder, "pre-commit.before-orchestrator")
    try:
        existing = read_regular(path)
    except OSError:
        return {"path": path, "action": "kept", "note": "not a regular file"}
    if existing is not None and GIT_HOOK_MARK.encode() not in existing:
        if os.path.exists(chained):
            return {"path": path, "action": "kept", "note": "a hook is there and "
                    f"pre-commit.before-orchestrator too: add `{PACK_CLI} commit-check` to it "
                    "by hand"}
        os.replace(path, chained)
    text = render("pre_commit.sh.j2", shim=SHIM_PATH)
    atomic_write(path, text.encode("utf-8"), mode=0o755)
    os.chmod(path, 0o755)
    note = "this machine only; runs the hook that was there first" if existing is not None \
        and GIT_HOOK_MARK.encode() not in existing else "this machine only"
    return {"path": path, "action": "written", "note": note}


def install_pack(ctx, target, agents, force):
    """Plan every change first, then write: a file that cannot be changed safely is left as
    it is and listed under KEPT with the reason, and nothing is written before all the rest
    is planned."""
    files, diffs, writes = [], [], []  # writes: (destination, text, executable)
    for relative, text in render_pack(agents).items():
        try:
            destination = install_destination(target, relative)
        except Kept as kept:
            files.append({"path": relative, "action": "kept", "note": str(kept)})
            continue
        action, diff = plan_file(destination, text, force)
        if action in ("created", "updated", "overwritten"):
            writes.append((destination, text, relative == SHIM_PATH))
        if diff:
            diffs.append(diff)
        files.append({"path": relative, "action": action})
    merged = [(".gitignore", planned_gitignore)]
    if "windsurf" in agents:
        merged.append((WINDSURF_HOOKS_PATH,
                       lambda text: planned_json(text, merge_windsurf_hooks, claude=False)))
    if "claude" in agents:
        merged.append((CLAUDE_SETTINGS_PATH,
                       lambda text: planned_json(text, merge_claude_hooks, claude=True)))
    if "cursor" in agents:
        merged.append((CURSOR_HOOKS_PATH,
                       lambda text: planned_json(text, merge_cursor_hooks, claude=False)))
    if "devin" in agents:
        merged.append((DEVIN_HOOKS_PATH, lambda text: planned_json(
            text, merge_devin_hooks, claude=True, top_level=True)))
    merged += [(MCP_CONFIG_PATHS[agent], planned_mcp) for agent in agents
               if agent in MCP_CONFIG_PATHS]
    if "agents-md" in agents:
        section = render("agents_md_section.md.j2", **pack_context())
        merged.append(("AGENTS.md", lambda text: planned_agents_md(text, section)))
    if "claude" in agents:  # Claude Code reads CLAUDE.md, not AGENTS.md, on every message
        claude_section = render("claude_md_section.md.j2", **pack_context())
        merged.append(("CLAUDE.md", lambda text: planned_agents_md(text, claude_section)))
    missing_hooks = []  # (agent, file, the entries to add by hand)
    for relative, plan in merged:
        action = None
        try:
            destination = install_destination(target, relative)
            existing = read_for_install(destination)
            try:
                wanted = plan(existing)
            except Kept as unmergeable:
                agent = HOOK_CONFIG_AGENTS.get(relative)
                if agent is None:
                    raise
                if not force:
                    missing_hooks.append({"agent": agent, "path": relative, "entries": plan(None),
                                          "why": str(unmergeable)})
                    raise
                copy = unused_name(destination + ".before-orchestrator")
                writes.append((copy, existing, False))
                wanted, action = plan(None), "replaced"
                files.append({"path": relative, "action": action,
                              "note": f"{unmergeable}; yours is kept as "
                                      f"{os.path.basename(copy)}"})
        except Kept as kept:
            files.append({"path": relative, "action": "kept", "note": str(kept)})
            continue
        if action == "replaced":
            writes.append((destination, wanted, False))
            continue
        action = ("unchanged" if wanted == existing else
                  "merged" if existing else "created")
        if action != "unchanged":
            writes.append((destination, wanted, False))
        files.append({"path": relative, "action": action})
    _, main_root = find_checkout(str(target))
    try:
        launcher = install_destination(main_root, LAUNCHER_PATH)
    except Kept as kept:
        launcher = None
        files.append({"path": LAUNCHER_PATH, "action": "kept", "note": str(kept)})
    for destination, text, executable in writes:
        atomic_write(destination, text.encode("utf-8"), keep_mode=True,
                     mode=0o755 if executable else 0o666)
        if executable:
            os.chmod(destination, 0o755)
    if launcher is not None:
        files.append({"path": write_launcher(launcher), "action": "written",
                      "note": "this machine only, git-ignored"})
    files.append(install_git_hook(str(target)))
    try:  # only a fallback for hooks started outside the repository: its failure is no failure
        files.append({"path": write_launcher(user_launcher_path()), "action": "written",
                      "note": "this machine only, for hooks started outside the repository"})
    except OSError:
        pass
    kept_paths = [f["path"] for f in files if f["action"] == "kept"]
    # The pre-commit framework rewrites git's hook on `pre-commit install`: say the entry.
    framework = os.path.isfile(os.path.join(str(target), ".pre-commit-config.yaml"))
    import json
    windsurf_mcp = windsurf_mcp_entry(target) if "windsurf" in agents else None
    ctx.out.emit(render("install_report.txt.j2", target=str(target), files=files, diffs=diffs,
                        kept=kept_paths, cli=PACK_CLI, agents=agents, pre_commit_framework=framework,
                        missing_hooks=missing_hooks, windsurf_mcp=windsurf_mcp and json.dumps(
                            {"mcpServers": windsurf_mcp})),
                 {"target": str(target), "files": files, "allow_list": PACK_CLI, "kept": kept_paths,
                  "windsurf_mcp_entry": windsurf_mcp,
                  "agents": list(agents), "hooks_not_installed": missing_hooks,
                  "pre_commit_entry": f"{PACK_CLI} commit-check" if framework else None})
    # Files it kept are listed, with the differences; an agent left without hooks is a failure.
    return EXIT_REFUSED if missing_hooks else EXIT_OK


# ---------------------------------------------------------------------------- questions (a person at a terminal)

QUESTION_IO: dict = {}  # tests pass prompt_toolkit's pipe input and a dummy output through this


def terminal_is_interactive():
    return sys.stdin.isatty() and sys.stdout.isatty()


class Asker:
    """questionary, imported only when a question is really asked. Every answer is validated
    as it is typed; Ctrl-C or Esc cancels the whole command (exit 130, nothing written)."""

    def __init__(self):
        import questionary
        from prompt_toolkit.key_binding import KeyBindings, merge_key_bindings
        self.questionary = questionary
        self.cancel_keys = KeyBindings()
        self.merge = merge_key_bindings

        @self.cancel_keys.add("escape", eager=True)
        def _cancel(event):
            event.app.exit(exception=KeyboardInterrupt, style="class:aborting")

    def ask(self, question):
        app = question.application
        app.key_bindings = self.merge([app.key_bindings, self.cancel_keys])
        answer = question.unsafe_ask()
        if answer is None:
            raise KeyboardInterrupt
        return answer

    def text(self, message, default="", check=None, optional=False):
        def validate(value):
            if optional and not value.strip():
                return True
            try:
                check and check(value)
            except OrchestratorError as error:  # about the answer, not a flag nobody typed
                return regex(r"^(?:[a-z-]+: )?--[a-z-]+ ").sub("", error.message)
            return True
        return self.ask(self.questionary.text(message, default=default, validate=validate,
                                              **QUESTION_IO)).strip()

    def select(self, message, choices, default=None):
        return self.ask(self.questionary.select(message, choices=choices, default=default,
                                                **QUESTION_IO))

    def checkbox(self, message, choices, checked=()):
        options = [self.questionary.Choice(c, checked=c in checked) for c in choices]
        return self.ask(self.questionary.checkbox(message, choices=options, **QUESTION_IO))

    def confirm(self, message, default=False):
        return self.ask(self.questionary.confirm(message, default=default, **QUESTION_IO))


def known_areas(state):
    areas = [a for s in state["active_sessions"] for a in s["touched_areas"]]
    return unique_in_order(areas + [lock["area"] for lock in state["locks"]])


def ask_session(asker, state, args, message="Which session?", ctx=None, holding_locks=False):
    """The session first, chosen from the active ones (with `holding_locks`, those that hold a
    lock: the others have nothing to release or renew); with none, register one right here
    (the answers of `sync`, run before the command: `args.run_first`) or stop before any
    other question. Questions only learn what to run; the command line runs it."""
    if args.session:
        return
    ids = [s["id"] for s in state["active_sessions"]]
    if holding_locks:
        owners = {lock["owner"] for lock in state["locks"]}
        ids = [i for i in ids if i in owners]
        if not ids:
            raise Refused("no session holds a lock: there is nothing to release or renew")
    if ids:
        args.session = asker.select(message, ids)
        return
    if ctx is None or not asker.confirm("No session is registered yet. Register one now?",
                                        default=True):
        raise UsageError(f"no active session: register one first with "
                         f"`{cli_name()} sync`")
    register = Arguments(command="sync", session=None, focus=None, area=None, status=None,
                         lock_area=None, lock_scope=None, reason=None, unstable=False,
                         allow_external_fixes=False, duration=None, force=False,
                         all_notes=False, state=None, json=False)
    register.session = ask_new_session_id(ctx)
    ask_sync(ctx, register, state)
    args.run_first = [register]
    args.session = register.session


def ask_sync(ctx, args, state):
    if not args.session:
        if not asker_for(ctx).confirm("Register a session for your work now? (No: only show the "
                                      "report)", default=True):
            return
        args.session = ask_new_session_id(ctx)
    if find_session(state, args.session) is not None:
        return
    if not args.focus:
        args.focus = ctx.asker.text("What is this session's focus?",
                                    check=lambda v: check_text("--focus", v))
    if not args.area:
        choices = known_areas(state)
        chosen = ctx.asker.checkbox("Which areas will you touch?", choices) if choices else []
        typed = ctx.asker.text("Other areas or paths (comma-separated)" if choices else
                               "Which areas or paths will you touch? (comma-separated)",
                               check=lambda v: check_area_list(v, required=not chosen))
        args.area = chosen + split_list(typed)


def ask_new_session_id(ctx):
    """A new session's id, with the branch's name offered as the default (Enter takes it)."""
    suggested = suggest_session_id(ctx)
    hint = f" (Enter for {suggested})" if suggested else ""
    typed = asker_for(ctx).text(f"Session id (kebab-case){hint}", check=check_session_id,
                                optional=bool(suggested))
    return typed or suggested


def suggest_session_id(ctx):
    branch = ctx.checkout_info().get("branch") or ""
    slug = regex(r"[^a-z0-9]+").sub("-", branch.lower()).strip("-")[:MAX_ID_CHARS].strip("-")
    return "" if slug in ("", "main", "master") else slug


def ask_lock(ctx, args, state):
    asker = asker_for(ctx)
    ask_session(asker, state, args, "Which session takes the lock?", ctx)
    if not args.area:
        other = "another area..."
        choices = known_areas(state)
        picked = asker.select("Which area?", choices + [other]) if choices else other
        args.area = picked if picked != other else asker.text(
            "Area (e.g. backend)", check=lambda v: check_area(v, creating=True))
    if not args.scope:
        typed = asker.text("Paths or globs to lock, relative to this folder (comma-separated)",
                           check=lambda v: [scope_from_here(s, "the paths", ctx)
                                            for s in split_list(v)] or check_scope_list(v))
        args.scope = split_list(typed)
    if not args.reason:
        args.reason = asker.text("Why? (other sessions see this)",
                                 check=lambda v: check_text("--reason", v))
        args.unstable = asker.confirm("Will builds in this area break for a while?", default=False)
        args.allow_external_fixes = asker.confirm("May other sessions fix build failures there?",
                                                  default=False)
    if not args.duration:
        args.duration = asker.text(f"For how long? (Enter for {DEFAULT_LOCK_DURATION}; 45m, "
                                   "1h30m, 1d)", check=parse_duration,
                                   optional=True) or DEFAULT_LOCK_DURATION


def ask_unlock(ctx, args, state):
    asker = asker_for(ctx)
    ask_session(asker, state, args, "Whose lock?", holding_locks=True)
    if args.area or args.all:
        return
    mine = [l for l in state["locks"] if l["owner"] == args.session]
    if not mine:
        return
    everything = "all of them"
    labels = {f"{l['area']}: {', '.join(l['scope'])}": l["area"] for l in mine}
    picked = asker.select("Which lock do you release?", list(labels) + [everything])
    what = "every lock of " + args.session if picked == everything else picked
    if not asker.confirm(f"Release {what}?", default=True):
        raise KeyboardInterrupt
    args.all = picked == everything
    args.area = None if args.all else labels[picked]


def ask_renew(ctx, args, state):
    asker = asker_for(ctx)
    ask_session(asker, state, args, "Whose locks?", ctx, holding_locks=True)
    if not args.duration:
        args.duration = asker.text(f"Renew for how long from now? (Enter for "
                                   f"{DEFAULT_LOCK_DURATION})", check=parse_duration,
                                   optional=True) or DEFAULT_LOCK_DURATION


def ask_update(ctx, args, state):
    asker = asker_for(ctx)
    ask_session(asker, state, args)
    if args.status or args.add_note or args.add_area or args.add_risk:
        return
    session = find_session(state, args.session)
    current = session["status"] if session else DEFAULT_STATUS
    status = asker.select("Status", list(UPDATE_STATUSES),
                          default=current if current in UPDATE_STATUSES else None)
    args.status = status if status != current else None
    note = asker.text("A note on your session (optional)", optional=True,
                      check=lambda v: check_text("--add-note", v))
    risk = asker.text("A new risk (optional)", optional=True,
                      check=lambda v: check_text("--add-risk", v))
    args.add_note = [note] if note else None
    args.add_risk = [risk] if risk else None


def ask_complete(ctx, args, state):
    asker = asker_for(ctx)
    ask_session(asker, state, args, "Which session is done?")
    if not args.outcome:
        args.outcome = asker.text("Outcome in one line", check=lambda v: check_text("--outcome", v))
    session = find_session(state, args.session)
    if args.file or session is None:
        return
    changed = files_changed_since(ctx, session)
    if changed:
        drift = set(drift_paths(session_claims(session, state, ctx.is_repo_path), changed,
                                fold_case=ctx.fold_case))
        labels = {f"{f}  (outside the session's areas)" if f in drift else f: f for f in changed}
        picked = asker.checkbox("Files changed (from git since the session started)",
                                list(labels), checked=list(labels))
        args.file = [labels[p] for p in picked]
        args.files_chosen = True


def ask_note(ctx, args, state):
    asker = asker_for(ctx)
    if not args.text:
        args.text = [asker.text("Note for every session", check=lambda v: check_text("note", v))]


def ask_directive(ctx, args, state):
    asker = asker_for(ctx)
    ask_session(asker, state, args)
    if not args.rule:
        args.rule = asker.text("Which rule was overridden? (e.g. intent_scope, escalation)",
                               check=check_rule)
    if not args.directive:
        args.directive = asker.text("The directive as given",
                                    check=lambda v: check_text("--directive", v))
    if not args.reason:
        args.reason = asker.text("Why was it needed?", check=lambda v: check_text("--reason", v))


def asker_for(ctx):
    if ctx.asker is None:
        ctx.asker = Asker()
    return ctx.asker


def ask_build_failure(ctx, args, state):
    asker = asker_for(ctx)
    if not args.session and state["active_sessions"]:
        nobody = "(no session: I own nothing)"
        picked = asker.select("Which session asks?",
                              [s["id"] for s in state["active_sessions"]] + [nobody])
        args.session = None if picked == nobody else picked
    if not args.area and not args.path:
        args.path = asker.text("Where does the build fail? (a file or folder, relative to this "
                               "folder)", check=lambda v: repo_path_from_here(v, "the path", ctx))


def ask_check(ctx, args, state):
    if args.session or args.area or args.path or not state["active_sessions"]:
        return
    args.session = asker_for(ctx).select("Check which session's areas?",
                                         [s["id"] for s in state["active_sessions"]])


QUESTIONS = {"sync": ask_sync, "lock": ask_lock, "unlock": ask_unlock, "renew": ask_renew,
             "update": ask_update, "complete": ask_complete, "note": ask_note,
             "directive": ask_directive, "build-failure": ask_build_failure,
             "check": ask_check}


def ask_for_missing(ctx, args):
    """In a terminal, ask for what the flags left out; elsewhere never ask (Cascade's path)."""
    ask = QUESTIONS.get(args.command)
    if ask and ctx.interactive:
        ask(ctx, args, ctx.store.load())


# ---------------------------------------------------------------------------- output

ERROR_LOG = "errors.log"  # in the user's cache folder: the evidence of a failure
ERROR_LOG_BYTES = 1 << 20  # kept under a megabyte: the older half goes first


def keep_evidence(exception, doing):
    """Append `exception`'s traceback, with the tool's version, the platform and what it was
    `doing`, to the error log in the user's cache folder: an exit 70, or a hook that let an
    action through because it failed, leaves evidence. The log's path, or None."""
    import platform
    import traceback
    path = os.path.join(user_cache_folder(), ERROR_LOG)
    entry = (f"--- {utc_now()} orchestrator {__version__} on {platform.platform()}, Python "
             f"{platform.python_version()}: {doing}\n"
             + "".join(traceback.format_exception(type(exception), exception,
                                                  exception.__traceback__)))
    try:
        os.makedirs(user_cache_folder(), mode=0o700, exist_ok=True)
        kept = read_regular(path) or b""
        if len(kept) > ERROR_LOG_BYTES:
            kept = kept[len(kept) // 2:]
        atomic_write(path, kept + entry.encode("utf-8", "replace"), durable=False, mode=0o600)
    except (OSError, OrchestratorError, ValueError):
        return None
    return path


def neutralised(value):
    """`value` (JSON-shaped) with every string cleaned as text output is (clean_text): a
    reader that decodes the JSON (`jq -r`) must not get escape sequences back."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {neutralised(k): neutralised(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [neutralised(item) for item in value]
    return value


def json_line(payload):
    """One JSON object on one line, its strings neutralised (neutralised); a DEL or other
    character that hides text, if any is left, stays escaped as \\uXXXX."""
    import json
    text = json.dumps(neutralised(payload), ensure_ascii=False, sort_keys=True)
    if text.isascii():
        return text.replace("\x7f", "\\u007f")
    return "".join(json.dumps(ch)[1:-1] if ch == "\x7f" or is_invisible(ch) else ch
                   for ch in text)


class Output:
    """Collects what a command prints: a text for people and Cascade, a dict for --json."""

    def __init__(self, as_json):
        self.as_json = as_json
        self.notices = []  # lines said before the answer (in --json: its "notices")

    def notice(self, line):
        self.notices.append(line)

    def emit(self, text, payload):
        if self.notices:
            if self.as_json:
                payload = {**payload, "notices": self.notices}
            else:
                text = "\n".join(self.notices) + ("\n" + text if text else "")
        try:
            if self.as_json:
                print(json_line(payload))
            elif text:
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # `... | head`: the command's work is done, only the reader left
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())

    def report(self, template, payload, **context):
        """Like emit, but renders the template only when text is wanted (--json skips jinja2)."""
        self.emit(None if self.as_json else render(template, **context), payload)


# ---------------------------------------------------------------------------- commands


def warn_unregistered(ctx, state, session_id):
    """A reading command answers for any well-formed id, but an id nobody registered is most
    likely a typo: say so on stderr (stdout stays the answer: the silent check silent, --json
    one object), with the nearest registered id, and answer as asked."""
    if not session_id or find_session(state, session_id) is not None:
        return
    import difflib
    close = difflib.get_close_matches(session_id, [s["id"] for s in state["active_sessions"]], 1)
    line = message("unregistered_session", session=session_id,
                   hint=f"; did you mean {close[0]}?" if close else "")
    print(f"orchestrator: {line}", file=sys.stderr)


def require_session(state, session_id):
    session = find_session(state, session_id)
    if session is not None:
        return session
    if any(done["id"] == session_id for done in state["completed_sessions"]):
        raise UsageError(f"Session {session_id!r} is already completed; start new work with "
                         f"`{cli_name()} sync --session NEW-ID --focus ... --area ...`")
    import difflib
    close = difflib.get_close_matches(session_id, [s["id"] for s in state["active_sessions"]], 1)
    hint = f"Did you mean {close[0]!r}? Otherwise r" if close else "R"
    raise UsageError(f"No active session {session_id!r}. {hint}egister it first with "
                     f"`{cli_name()} sync --session {session_id} --focus ... --area ...`")


def require_flags(args, command, required):
    """Flags a command needs but did not get are bad input. In a terminal ask_for_missing has
    asked for them already; without one we never prompt and never hang."""
    missing = [flag for flag, attr in required if not getattr(args, attr, None)]
    if missing:
        raise UsageError(f"{command}: missing {', '.join(missing)}; pass "
                         f"{'it' if len(missing) == 1 else 'them'} as flags "
                         f"(see `{cli_name()} {command} --help`)")


def conflict_refusal(conflicts, now, scopes=(), ctx=None, presence=None):
    """`lock` refused: each lock in the way, with an example path both claim and how its
    holder is (a gone one's lock may be taken over)."""
    examples = [example_in_both(scopes, c, ctx.fold_case, ctx.names_a_file) if ctx else None
                for c in conflicts]
    return Refused(describe_conflicts(conflicts, now, examples, presence),
                   {"conflicts": [{**lock_view(c, now, presence), "example": e}
                                  for c, e in zip(conflicts, examples)]})


def tell_waiting(ctx, locks, requester, scopes, now):
    """A refused lock tells each holder, once per requester and scope, that someone waits:
    beside the state, which a refusal leaves as it was."""
    for lock in locks:
        leave_notice(ctx.store, "waiting", lock["owner"], requester, lock["area"], scopes, now,
                     once=True)


def gone_holders(presence):
    """The sessions whose locks `--take-over` may take: stale or ended ones."""
    return {session_id for session_id, seen in presence.items() if is_gone(seen["presence"])}


def tell_take_over(ctx, state, lock, presence, now):
    """A take-over is told to each former owner (a message into its inbox), shown by every
    report (the lock says whom it was taken from) and written into the shared history as
    one."""
    for owner in lock["taken_over_from"]:
        seen = message("holder_state", presence=presence[owner]["presence"], silent=humanize_seconds(
            presence_view(presence[owner], now)["silent_seconds"])) if owner in presence else "gone"
        address_note(state, [owner], lock["owner"], message(
            "taken_over_told", taker=lock["owner"], area=lock["area"], scope=lock["scope"],
            presence=seen, cli=cli_name()), now)
    if ctx.store.sharing is not None:
        _, session_id, machine = ctx.store.sharing.purpose
        ctx.store.sharing.purpose = ("lock --take-over", session_id, machine)


def lock_request(args, owner, area, scopes):
    return {"owner": owner, "area": area, "scope": scopes,
            "reason": check_text("--reason", args.reason),
            "unstable": bool(args.unstable),
            "allow_external_fixes": bool(args.allow_external_fixes),
            "duration": parse_duration(args.duration or DEFAULT_LOCK_DURATION)}


def cmd_sync(ctx, args):
    now = utc_now()
    registering = any([args.session, args.focus, args.area, args.lock_scope])
    request = None
    if registering:
        require_flags(args, "sync", [("--session", "session")])
        session_id = check_session_id(args.session)
    if args.lock_area and not args.lock_scope:
        raise UsageError("sync: --lock-area needs --lock-scope PATH (what to lock in it)")
    if args.lock_scope:
        require_flags(args, "sync", [("--reason", "reason")])
        lock_area = args.lock_area or (args.area[0] if args.area else None)
        if not lock_area:
            raise UsageError("sync: --lock-scope needs --lock-area or an --area to lock")
        scopes = [scope_from_here(s, "--lock-scope", ctx) for s in args.lock_scope]
        request = lock_request(args, session_id, check_area(lock_area, "--lock-area", True),
                               scopes)
    areas = [check_area(a, creating=True) for a in args.area or []]
    status = check_status(args.status) if args.status else DEFAULT_STATUS
    transaction = Transaction(ctx.store, offline_read=not registering)
    with transaction as state:
        if transaction.offline:  # a report only, from this clone's copy, its age said
            ctx.out.notice(message("shared_unreachable", reason=transaction.offline.message,
                                   age=ctx.shared_age_text()))
        swept = [] if transaction.offline else sweep_expired(state, now)
        created = lock = None
        forced_over = []
        presence = ctx.presence(state, now)
        if registering:
            if find_session(state, session_id) is None:
                require_flags(args, "sync", [("--focus", "focus"), ("--area", "area")])
            focus = check_text("--focus", args.focus) if args.focus else None
            session, created = register_session(state, session_id, focus, areas, status, now,
                                                ctx.checkout_info())
            if request:
                lock, forced_over, _ = place_lock(
                    state, request, now, force=args.force, fold_case=ctx.fold_case,
                    is_file=ctx.names_a_file,
                    take_over=gone_holders(presence) if args.take_over else ())
                if lock is None:
                    tell_waiting(ctx, forced_over, session_id, request["scope"], now)
                    raise conflict_refusal(forced_over, now, request["scope"], ctx, presence)
                if lock.get("taken_over_from"):
                    tell_take_over(ctx, state, lock, presence, now)
                    forced_over = []
            presence = ctx.presence(state, now)  # registering is activity
    # The report, after the write: the radar runs git, and the state's lock is never held
    # while git reads worktrees.
    viewer = args.session
    conflicts = sessions_in_foreign_locks(state, now, viewer, ctx.is_folder, fold_case=ctx.fold_case)
    radar_found = [] if transaction.offline else ctx.radar(state, presence)
    context = report_context(state, now, viewer, conflicts, swept, args.all_notes,
                             fold_case=ctx.fold_case, presence=presence, radar_found=radar_found)
    context.update(registered=created, lock=lock_view(lock, now) if lock else None,
                   kept_focus=kept_focus(session, created, args.focus) if registering else None,
                   forced=message("lock_taken_over", owners=", ".join(lock["taken_over_from"]))
                   if lock and lock.get("taken_over_from") else
                   message("lock_forced", owner=viewer, cli=cli_name(),
                           owners=", ".join(sorted({c["owner"] for c in forced_over})))
                   if forced_over else None)
    payload = {"swept": swept, "registered": created, "session": viewer,
               "lock": context["lock"], "forced_over": [lock_view(c, now) for c in forced_over],
               "conflicts": conflict_objects(conflicts, context["overlaps"],
                                             context["shared_worktrees"], radar_found, now),
               "taken_over_from": (lock or {}).get("taken_over_from", []),
               **status_payload(state, now, presence)}
    ctx.out.report("report.txt.j2", payload, command="sync", **context)
    sweep_seen(ctx.store, time.time())
    return EXIT_OK


def cmd_lock(ctx, args):
    require_flags(args, "lock", [("--session", "session"), ("--area", "area"),
                                 ("--scope", "scope"), ("--reason", "reason")])
    now = utc_now()
    session_id = check_session_id(args.session)
    area = check_area(args.area, creating=True)
    scopes = [scope_from_here(s, "--scope", ctx) for s in args.scope]
    request = lock_request(args, session_id, area, scopes)
    try:
        with Transaction(ctx.store) as state:
            require_session(state, session_id)
            presence = ctx.presence(state, now)
            lock, overridden, replaced = place_lock(
                state, request, now, force=args.force, fold_case=ctx.fold_case,
                is_file=ctx.names_a_file,
                take_over=gone_holders(presence) if args.take_over else ())
            if lock is None:
                tell_waiting(ctx, overridden, session_id, scopes, now)
                raise conflict_refusal(overridden, now, scopes, ctx, presence)
            if lock.get("taken_over_from"):
                tell_take_over(ctx, state, lock, presence, now)
    except OrchestratorError as error:
        if not (ctx.interactive and error.details.get("conflicts")):
            raise
        print(clean_text(error.message))
        holders = error.details["conflicts"]
        if all(is_gone(c.get("holder", {}).get("presence")) for c in holders):
            if not asker_for(ctx).confirm("Take it over from " + ", ".join(sorted(
                    {c["owner"] for c in holders})) + " (--take-over)?", default=True):
                raise Refused("lock not taken, nothing written") from None
            args.take_over = True
        elif not asker_for(ctx).confirm("Take the lock anyway (--force)?", default=False):
            raise Refused("lock not taken, nothing written") from None
        else:
            args.force = True
        return cmd_lock(ctx, args)
    view = lock_view(lock, now)
    text = message("lock_updated" if replaced else "lock_taken", area=area, owner=session_id,
                   scope=lock["scope"], until=lock["expires_at"],
                   duration=humanize_seconds(view["remaining_seconds"]))
    taken_from = lock.get("taken_over_from")
    if taken_from:
        text += "\n" + message("lock_taken_over", owners=", ".join(taken_from))
    elif overridden:
        text += "\n" + message("lock_forced", owner=session_id, cli=cli_name(),
                               owners=", ".join(sorted({c["owner"] for c in overridden})))
    empty = scopes_matching_nothing(scopes, ctx.checkout_root)
    if empty:
        text += "\n" + message("lock_on_nothing_yet", scopes=empty)
    ctx.out.emit(text, {"lock": view, "replaced": replaced, "matches_nothing_yet": empty,
                        "forced_over": [] if taken_from else [lock_view(c, now) for c in overridden],
                        "taken_over_from": taken_from or []})
    return EXIT_OK


def cmd_renew(ctx, args):
    require_flags(args, "renew", [("--session", "session")])
    now = utc_now()
    session_id = check_session_id(args.session)
    area = check_area(args.area) if args.area else None
    duration = parse_duration(args.duration or DEFAULT_LOCK_DURATION)
    with Transaction(ctx.store) as state:
        require_session(state, session_id)
        mine, extended = renew_locks(state, session_id, area, duration, now)
        if not mine:
            where = f" on {area}" if area else ""
            raise Refused(f"{session_id} holds no live lock{where} to renew (an expired lock "
                          f"cannot be renewed); take one with `{cli_name()} lock`")
    views = [lock_view(l, now) for l in mine]
    text = "\n".join(message("lock_renewed" if any(l is e for e in extended) else "lock_not_renewed",
                             area=v["area"], until=v["expires_at"],
                             duration=humanize_seconds(v["remaining_seconds"]),
                             asked=args.duration or DEFAULT_LOCK_DURATION)
                     for l, v in zip(mine, views))
    ctx.out.emit(text, {"renewed": [v for l, v in zip(mine, views)
                                    if any(l is e for e in extended)],
                        "unchanged": [v for l, v in zip(mine, views)
                                      if not any(l is e for e in extended)]})
    return EXIT_OK


def cmd_unlock(ctx, args):
    require_flags(args, "unlock", [("--session", "session")])
    if not args.area and not args.all:
        raise UsageError("unlock: give --area AREA or --all")
    session_id = check_session_id(args.session)
    area = check_area(args.area) if args.area else None
    now = utc_now()
    with Transaction(ctx.store) as state:
        require_session(state, session_id)
        mine, held_by = release_locks(state, session_id, None if args.all else area, now)
        if held_by:
            raise Refused(f"{area} is locked by {', '.join(held_by)}, not by {session_id}; only the "
                          "owner can release it (leave them a note instead)")
    if mine:
        text = "\n".join(message("lock_released", area=l["area"], owner=session_id) for l in mine)
    else:
        text = message("nothing_to_release", owner=session_id)
    ctx.out.emit(text, {"released": mine})
    return EXIT_OK


def cmd_status(ctx, args):
    session_id = check_session_id(args.session) if args.session else None
    ctx.refresh_shared()
    now = utc_now()
    state = ctx.store.load()
    conflicts = sessions_in_foreign_locks(state, now, session_id, ctx.is_folder, fold_case=ctx.fold_case)
    presence = ctx.presence(state, now)
    radar_found = ctx.radar(state, presence)
    context = report_context(state, now, session_id, conflicts, all_notes=args.all_notes,
                             fold_case=ctx.fold_case, presence=presence, radar_found=radar_found)
    context.update(registered=None, lock=None, kept_focus=None, forced=None)
    payload = status_payload(state, now, presence)
    payload["conflicts"] = conflict_objects(conflicts, context["overlaps"],
                                            context["shared_worktrees"], radar_found, now)
    if ctx.store.warnings:
        payload["warnings"] = ctx.store.warnings
    ctx.out.report("report.txt.j2", payload, command="status", warnings=ctx.store.warnings,
                   **context)
    return EXIT_OK


WATCH_TICK = 0.5  # seconds between looks at the state file and the keyboard


def cmd_watch(ctx, args):
    """A live board of who holds what, in the terminal: redrawn when the state file changes
    and every second for the countdowns; `q` or Ctrl-C quits. It reads, never writes, the
    state. Without a terminal it prints one status report and exits."""
    session_id = check_session_id(args.session) if args.session else None
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        args.all_notes = False
        return cmd_status(ctx, args)
    try:
        import select
        import termios
        import tty
    except ImportError:  # no POSIX terminal (Windows): one report
        args.all_notes = False
        return cmd_status(ctx, args)
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt  # the terminal is restored on the way out

    for ending in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(ending, stop)
    color = not os.environ.get("NO_COLOR")
    keyboard = sys.stdin.fileno()
    saved = termios.tcgetattr(keyboard)
    out = sys.stdout
    seen, drawn, state, error = None, None, empty_state(), None
    try:
        tty.setcbreak(keyboard)
        out.write("\x1b[?1049h\x1b[?25l")  # the alternate screen, no cursor
        while True:
            try:
                info = os.stat(ctx.store.path)
                signature = (info.st_mtime_ns, info.st_size, info.st_ino)
            except OSError:
                signature = None
            now = utc_now()
            ctx.refresh_shared_in_background()  # as check does: a detached fetch when stale
            if signature != seen:
                try:
                    state, error = ctx.store.load(), None
                except OrchestratorError as problem:
                    error = problem.message  # keep showing the last good state
                seen = signature
            if (signature, now) != drawn:  # a change, or a second of countdown
                columns, rows = os.get_terminal_size(out.fileno())
                presence = ctx.presence(state, now)
                sharing = ctx.store.sharing
                failed = sharing and read_text_or_none(sharing.refresh_failure_marker)
                frame = watch_frame(state, now, columns, rows, session_id, color,
                                    error or (failed and message(
                                        "shared_unreachable", reason=failed,
                                        age=ctx.shared_age_text())),
                                    ctx.is_folder, fold_case=ctx.fold_case,
                                    shared_age=sharing and ctx.shared_age_text(),
                                    presence=presence, radar_found=ctx.radar(state, presence))
                out.write("\x1b[H" + "\x1b[K\r\n".join(frame) + "\x1b[K\x1b[J")
                out.flush()
                drawn = (signature, now)
            ready, _, _ = select.select([keyboard], [], [], WATCH_TICK)
            if ready and os.read(keyboard, 1) in (b"q", b"Q", b"\x03"):
                break
    except KeyboardInterrupt:
        pass
    finally:
        termios.tcsetattr(keyboard, termios.TCSADRAIN, saved)
        out.write("\x1b[?25h\x1b[?1049l")
        out.flush()
    return EXIT_OK


def cmd_update(ctx, args):
    require_flags(args, "update", [("--session", "session")])
    session_id = check_session_id(args.session)
    if args.status in ("completed", "done", "finished"):
        raise UsageError(f"--status {args.status}: update cannot complete a session; run "
                         f"`{cli_name()} complete "
                         f"--session {session_id} --outcome ...`, which also releases its locks")
    status = check_status(args.status, UPDATE_STATUSES) if args.status else None
    notes = [check_text("--add-note", n) for n in args.add_note or []]
    areas = [check_area(a, "--add-area", creating=True) for a in args.add_area or []]
    risks = [check_text("--add-risk", r) for r in args.add_risk or []]
    if not (status or notes or areas or risks):
        raise UsageError("update: nothing to change; pass --status, --add-note, "
                         "--add-area or --add-risk")
    now = utc_now()
    with Transaction(ctx.store) as state:
        updated = dict(update_session(require_session(state, session_id), now, status, notes, areas,
                                      risks))
    ctx.out.emit(message("session_updated", session=session_id, status=updated["status"]),
                 {"session": updated})
    return EXIT_OK


def cmd_complete(ctx, args):
    require_flags(args, "complete", [("--session", "session"), ("--outcome", "outcome")])
    session_id = check_session_id(args.session)
    outcome = check_text("--outcome", args.outcome)
    files = [repo_path_from_here(f, "--file", ctx) for f in args.file or []]
    source = "given"
    if not files and not getattr(args, "files_chosen", False):
        # git runs before the state is locked: a slow repository must not stall other sessions
        session = require_session(ctx.store.load(), session_id)
        files, source = files_changed_since(ctx, session), "git"
    now = utc_now()
    with Transaction(ctx.store) as state:
        session = require_session(state, session_id)
        drift = drift_paths(session_claims(session, state, ctx.is_repo_path), files,
                            fold_case=ctx.fold_case)
        record, released = complete_session(state, session, outcome, files, now)
    text = message("session_completed", session=session_id, locks=len(released),
                   files=len(record["files_changed"]))
    if source == "git" and files:
        text += "\n" + message("files_from_git", files=files)
    if drift:
        text += "\n" + message("completed_with_drift", files=drift)
    ctx.out.emit(text, {"completed": record, "released": released, "drift": drift,
                        "files_source": source})
    return EXIT_OK


def cmd_note(ctx, args):
    require_flags(args, "note", [("TEXT", "text")])
    text = check_text("note TEXT", " ".join(args.text))
    session_id = check_session_id(args.session) if args.session else None
    recipients = unique_in_order(check_session_id(to, "--to") for to in args.to or [])
    now = utc_now()
    with Transaction(ctx.store) as state:
        if session_id:
            require_session(state, session_id)
            touch_session(state, session_id, now)
        for recipient in recipients:
            require_addressee(state, recipient)
        if recipients:
            address_note(state, recipients, session_id, text, now)
        else:
            note = signed_note(text, session_id)
            state["global_notes"].append(note)
    if recipients:
        ctx.out.emit(message("note_sent", to=", ".join(recipients), session=recipients[0],
                             cli=cli_name()),
                     {"note": message_entry(now, session_id, text), "to": recipients})
    else:
        ctx.out.emit(message("note_added", count=len(state["global_notes"])), {"note": note})
    return EXIT_OK


def require_addressee(state, session_id):
    """A note goes to an active session; a typo gets the nearest registered id."""
    if find_session(state, session_id) is not None:
        return
    import difflib
    close = difflib.get_close_matches(session_id, [s["id"] for s in state["active_sessions"]], 1)
    hint = f"; did you mean {close[0]}?" if close else (
        "; active sessions: " + ", ".join(s["id"] for s in state["active_sessions"])
        if state["active_sessions"] else "; no session is active")
    raise UsageError(f"--to {session_id}: no active session of that name{hint}")


def cmd_inbox(ctx, args):
    """A session's messages, newest first, unread ones marked; reading them marks them read."""
    require_flags(args, "inbox", [("--session", "session")])
    session_id = check_session_id(args.session)
    with Transaction(ctx.store) as state:
        listed = read_all(require_session(state, session_id))
    lines = [message("inbox_line", mark="*" if m["unread"] else " ",
                     sender=m["from"] or "?", at=m["at"] or "?", text=m["text"])
             for m in listed]
    ctx.out.emit("\n".join(lines) if lines else message("inbox_empty", session=session_id),
                 {"session": session_id, "messages": listed})
    return EXIT_OK


VALIDATION_BUDGET_ENV = "ORCHESTRATOR_VALIDATION_BUDGET"
DEFAULT_VALIDATION_BUDGET = 0.5  # seconds the hook and `check` may spend validating the state


def validation_deadline():
    """The moment (time.monotonic()) by which the hook and `check` stop validating a state
    that changed a lot and let the agent go on: they run before every edit."""
    raw = os.environ.get(VALIDATION_BUDGET_ENV)
    try:
        budget = DEFAULT_VALIDATION_BUDGET if raw in (None, "") else float(raw)
    except ValueError:
        budget = float("nan")
    if not 0 <= budget < float("inf"):  # nan, inf or negative: never "no limit"
        raise UsageError(f"{VALIDATION_BUDGET_ENV} must be a number of seconds, 0 or more, "
                         f"e.g. 0.5; got {quote_data(raw, 40)}")
    return time.monotonic() + budget


def cmd_check(ctx, args):
    session_id = check_session_id(args.session) if args.session else None
    areas = [check_area(a) for a in args.area or []]
    paths = [repo_path_from_here(p, "--path", ctx) for p in args.path or []]
    ctx.refresh_shared_in_background()
    ctx.store.deadline = validation_deadline()
    try:
        state = ctx.store.load()
    except ValidationDeferred as deferred:  # never stall a session's start: say so, go on
        ctx.out.emit(message("check_deferred", reason=deferred.message, cli=cli_name()),
                     {"conflicts": [], "fix_and_notify": [], "overlaps": [], "drift": [],
                      "deferred": True})
        return EXIT_OK
    now = utc_now()
    warn_unregistered(ctx, state, session_id)
    session = find_session(state, session_id) if session_id else None
    if session and not areas and not paths:
        areas = session["touched_areas"]
    running_into = foreign_locks_in_the_way(state, session_id, areas, paths, now,
                                    is_folder=ctx.is_folder, fold_case=ctx.fold_case)
    others = session is not None and len(state["active_sessions"]) > 1
    presence = ctx.presence(state, now) if running_into or others else None
    # The radar only for a session asking about itself: a merge conflict predicted with
    # another session is a conflict; an overlap is said, and changes nothing.
    radar_found = [c for c in ctx.radar(state, presence) if session_id in c["sessions"]] if (
        others and is_live(presence[session_id]["presence"])) else []
    found = [{"kind": "lock", "sessions": [session_id] if session_id else [],
              "paths": list(c["overlapping"]), **conflict_view(c, now, presence)}
             for c in running_into]
    conflicts, shared = split_by_outside_fixes(found)
    merges = [c for c in radar_found if c["kind"] == "merge"]
    overlaps = [c for c in radar_found if c["kind"] == "overlap"]
    for conflict in found:
        conflict["sessions"].append(conflict["lock"]["owner"])
    drift = drift_paths(session_claims(session, state, ctx.is_repo_path), paths,
                        fold_case=ctx.fold_case) if session else []
    # Windsurf's hooks cannot put anything into a conversation: the rule has Cascade run
    # `check --session` before each task, and its unread messages come here, once.
    delivered, items = deliver(ctx.store, session_id) if session else ("", [])
    payload = {"conflicts": conflicts + merges, "fix_and_notify": shared, "overlaps": overlaps,
               "drift": drift}
    if items:
        payload["messages"] = items
    code = EXIT_REFUSED if conflicts or merges else EXIT_OK  # notices and drift are warnings
    if not found and not drift and not radar_found:
        ctx.out.emit(delivered, payload)
        return code
    ctx.out.report("check_warning.txt.j2", payload, conflicts=conflicts, shared=shared,
                   drift=drift, session=session_id, cli=cli_name(), radar=radar_found,
                   delivered=delivered)
    return code


def cmd_build_failure(ctx, args):
    if bool(args.area) == bool(args.path):
        raise UsageError("build-failure: give either --area AREA or --path PATH (where the "
                         "build failed)")
    # Without --session the asker owns nothing (a conversation that has not synced yet).
    session_id = check_session_id(args.session) if args.session else None
    ctx.refresh_shared_in_background(notice=True)
    area = check_area(args.area) if args.area else None
    path = repo_path_from_here(args.path, "--path", ctx) if args.path else None
    state = ctx.store.load()
    now = utc_now()
    warn_unregistered(ctx, state, session_id)
    if path is None:
        verdict, lock, others = build_failure_verdict(state, session_id, now, area=area,
                                                      fold_case=ctx.fold_case)
    else:
        verdict, lock, others = strictest_verdict(state, session_id,
                                                  paths_reaching(ctx.checkout_root, path), now,
                                                  fold_case=ctx.fold_case)
    context = {"verdict": verdict, "session": session_id, "target": path or area,
               "lock": lock_view(lock, now) if lock else None,
               "others": [lock_view(o, now) for o in others], "cli": cli_name()}
    text_message = render("build_failure_message.txt.j2", **context).strip()
    told = []
    if verdict == "report_only" and find_session(state, session_id) and lock["owner"] != session_id:
        # the protocol says report it: the report reaches the owner's conversation (a notice
        # beside the state: report_only is exit 1, which writes nothing into it)
        leave_notice(ctx.store, "build_failure", lock["owner"], session_id, lock["area"],
                     [path or area], now)
        told = [lock["owner"]]
    ctx.out.emit(render("build_failure.txt.j2", message=text_message, **context),
                 {"verdict": verdict, "message": text_message, "lock": context["lock"],
                  "other_locks": context["others"], "told": told})
    return EXIT_REFUSED if verdict == "report_only" else EXIT_OK


def cmd_directive(ctx, args):
    require_flags(args, "directive", [("--session", "session"), ("--rule", "rule"),
                                      ("--directive", "directive"), ("--reason", "reason")])
    session_id = check_session_id(args.session)
    rule = check_rule(args.rule)
    entry = {"session": session_id, "directive": check_text("--directive", args.directive),
             "reason": check_text("--reason", args.reason), "timestamp": utc_now(),
             "rule_overridden": rule}
    with Transaction(ctx.store) as state:
        require_session(state, session_id)
        touch_session(state, session_id, entry["timestamp"])
        state["directive_log"].append(entry)
        count = sum(normalise_rule(e["rule_overridden"]) == rule for e in state["directive_log"])
    ctx.out.emit(message("directive_logged", rule=rule, count=count, cli=cli_name()),
                 {"logged": entry, "overrides_of_rule": count})
    return EXIT_OK


def cmd_audit(ctx, args):
    if args.threshold < 1:
        raise UsageError(f"--threshold {args.threshold} must be 1 or more (default "
                         f"{AUDIT_THRESHOLD})")
    state = ctx.store.load()
    proposals = audit_proposals(state["directive_log"], args.threshold)
    for proposal in proposals:
        proposal["proposal"] = " ".join(render("audit_proposal.txt.j2", **proposal).split())
    total = len(state["directive_log"])
    ctx.out.report("audit.txt.j2", {"proposals": proposals, "threshold": args.threshold,
                                    "directives": total},
                   proposals=proposals, threshold=args.threshold, total=total)
    return EXIT_OK


def cmd_install(ctx, args):
    from pathlib import Path
    target = Path(args.target or ".").resolve()
    if not target.is_dir():
        raise UsageError(f"install: --target {args.target!r} is not a folder; give the "
                         "root of the repository to install into")
    found = enclosing_checkout(str(target))
    if found is None:
        raise UsageError(f"install: {target} is not a git repository; the pack and the "
                         "shared state live in one: `git init` it first, or give "
                         "--target the root of a repository")
    checkout, _ = found
    if Path(checkout) != target:
        raise UsageError(f"install: {target} is inside the repository {checkout}; give "
                         f"its root: --target {checkout}")
    try:
        import jinja2, strictyaml  # noqa: F401  (the launcher reuses this interpreter)
    except ImportError as error:
        raise UsageError(f"install: {error.name} is missing for {sys.executable}: run install "
                         "with the Python the tool was installed with (the `orchestrator` "
                         "command, or a clone's .venv/bin/python after `make install`)") from None
    # A Windsurf user may open either of Devin Desktop's agents: Cascade, or Devin Local.
    agents = tuple(unique_in_order(args.agent or ["windsurf", "devin"]))
    try:
        return install_pack(ctx, target, agents, args.force)
    except OSError as error:
        raise StateError(f"install: cannot write {error.filename or 'a file'}: "
                         f"{error.strerror or error}") from None


def cmd_hook(ctx, args):
    """One agent hook event on stdin (Windsurf Cascade, Claude Code or Cursor), answered in
    that agent's contract (hook_reply). A change into another session's lock that forbids
    outside fixes, into the shared state or into the enforcement is denied; a shell command
    whose effect its words do not tell is asked about; anything this hook cannot understand
    lets the action proceed, so a broken state never stops all work."""
    ctx.refresh_shared_in_background()
    try:
        event = parse_hook_event(sys.stdin.read())
    except Exception as error:  # fail open: an event we cannot read must not stop work
        reason = error if isinstance(error, ValueError) else "the hook event has an unknown shape"
        print(f"orchestrator hook: {reason}; the action was allowed", file=sys.stderr)
        return EXIT_OK
    try:
        block_exit = int(args.block_exit) if args.block_exit else EXIT_BLOCKED
        ctx.store.deadline = validation_deadline()  # a hook never stalls the agent
        verdict, text = handle_hook_event(ctx, event)
        out, err, exit_blocks = hook_reply(event, verdict, text)
    except (OrchestratorError, Exception) as error:  # fail open: a broken hook must not stop work
        reason = one_line(error.message if isinstance(error, OrchestratorError) else
                          f"{type(error).__name__}: {error}")
        kept = None if isinstance(error, OrchestratorError) else keep_evidence(
            error, f"hook {event['dialect']} {event['event_name']}")
        print(f"orchestrator hook: {reason}; the action was allowed"
              + (f" (the traceback is in {kept})" if kept else ""), file=sys.stderr)
        if event["dialect"] == "cursor":
            print("{}")  # Cursor wants a JSON answer on every path
        return EXIT_OK
    if out:
        print(out)
    if err:
        print(err, file=sys.stderr)
    return block_exit if exit_blocks else EXIT_OK


def cmd_commit_check(ctx, args):
    """The git pre-commit hook: refuse (exit 1, or --block-exit) a commit whose staged files
    lie inside another session's live lock that allows no outside fixes. The committing
    session is the one registered from this checkout on this machine, when exactly one is (a
    worktree path names a worktree only on its machine); a person outside any session owns
    nothing. Anything this check cannot do lets the commit through."""
    try:
        block_exit = int(args.block_exit) if args.block_exit else EXIT_REFUSED
        staged = [name for name in run_git(ctx.checkout_root, "diff", "--cached", "--name-only",
                                           "-z", "--no-renames").split("\0") if name]
        state, now = ctx.store.load(), utc_now()
        here = [s for s in state["active_sessions"]
                if s.get("worktree") and is_on_machine(s, ctx.machine)
                and os.path.realpath(s["worktree"]) == ctx.checkout_root]
        session_id = here[0]["id"] if len(here) == 1 else None
        refused = []
        for name in staged:
            verdict, lock, _ = build_failure_verdict(state, session_id, now, path=name,
                                                     fold_case=ctx.fold_case)
            if verdict == "report_only":
                refused.append((name, lock))
    except (OrchestratorError, Exception) as error:  # a broken check never blocks a commit
        reason = one_line(error.message if isinstance(error, OrchestratorError) else error)
        print(f"orchestrator pre-commit: {reason}; the commit was allowed", file=sys.stderr)
        if ctx.out.as_json:
            ctx.out.emit(None, {"allowed": True, "session": None, "refused": [],
                                "error": reason})
        return EXIT_OK
    lines = [message("commit_refused", path=name, owner=lock["owner"], area=lock["area"],
                     reason=lock["reason"], until=lock["expires_at"]) for name, lock in refused]
    if refused:
        lines.append(message("commit_what_to_do", cli=cli_name()))
    if ctx.out.as_json:
        ctx.out.emit(None, {"allowed": not refused, "session": session_id, "refused": [
            {"path": name, "owner": lock["owner"], "area": lock["area"]}
            for name, lock in refused], "message": "\n".join(lines)})
    elif lines:
        print("\n".join(lines), file=sys.stderr)
    return block_exit if refused else EXIT_OK


def cmd_validate(ctx, args):
    raw = ctx.store.read_bytes()
    if raw is None:
        ctx.store.refuse_lost_data("does not exist")
        ctx.out.emit(message("validate_missing", path=ctx.store.path),
                     {"valid": True, "exists": False})
        return EXIT_OK
    state = ctx.store.validate_bytes(raw)
    ctx.store.write_cache(raw, state)
    counts = {key: len(state[key]) for key in TOP_LEVEL_KEYS}
    text = message("validate_ok", path=ctx.store.path, sessions=counts["active_sessions"],
                   locks=counts["locks"], notes=counts["global_notes"])
    for warning in ctx.store.warnings:
        text += "\n" + message("validate_warning", warning=warning)
    ctx.out.emit(text, {"valid": True, "exists": True, "counts": counts,
                        "warnings": ctx.store.warnings})
    return EXIT_OK


def cmd_remote(ctx, args):
    """`remote enable|disable|status|refresh`: the state shared through the git remote."""
    if args.action == "enable":
        return enable_shared(ctx, args)
    sharing = ctx.store.sharing
    if sharing is None:
        if args.action == "refresh" and args.background:
            return EXIT_OK
        ctx.out.emit(message("shared_not_enabled", cli=cli_name()), {"shared": False})
        return EXIT_OK if args.action == "status" else EXIT_REFUSED
    shared = sharing.ref
    if args.action == "disable":
        git_config(ctx.main_root, "--remove-section", SHARED_CONFIG_SECTION)
        try:  # the copy goes its own way now: no later enable may take it for a hand edit
            os.unlink(sharing.fetched_marker)
        except OSError:
            pass
        ctx.out.emit(message("shared_disabled", remote=shared.remote, ref=shared.ref),
                     {"shared": False, "remote": shared.remote, "ref": shared.ref})
        return EXIT_OK
    if args.action == "refresh":
        try:
            commit = sharing.refresh()
            sharing.note_refresh(None)
        except (RemoteUnavailable, StateError) as error:  # a hostile ref is never adopted
            sharing.note_refresh(error.message)
            raise
        finally:
            if args.background:
                try:
                    os.unlink(os.path.join(os.path.dirname(ctx.store.path), "shared-refreshing"))
                except OSError:
                    pass
        ctx.out.emit(message("shared_refreshed", remote=shared.remote, ref=shared.ref,
                             commit=(commit or "no commit yet")[:12]),
                     {"shared": True, "remote": shared.remote, "ref": shared.ref,
                      "commit": commit})
        return EXIT_OK
    commit = read_text_or_none(sharing.fetched_marker)
    age = sharing.fetched_age(time.time())
    failed = read_text_or_none(sharing.refresh_failure_marker)
    if failed:
        ctx.out.notice(message("shared_unreachable", reason=failed, age=ctx.shared_age_text()))
    ctx.out.emit(message("shared_status", remote=shared.remote, ref=shared.ref,
                         age=ctx.shared_age_text(), commit=(commit or "nothing fetched")[:12]),
                 {"shared": True, "remote": shared.remote, "ref": shared.ref,
                  "commit": commit or None, "age_seconds": age, "max_age": shared.max_age})
    return EXIT_OK


def git_config(checkout, *args):
    """Set or remove the clone's [orchestrator] settings (git config: shared by worktrees)."""
    import subprocess
    proc = subprocess.run(["git", "-C", checkout, "config", *args], capture_output=True,
                          text=True)
    nothing_to_remove = args[0] == "--remove-section" and "no such section" in proc.stderr
    if proc.returncode != 0 and not nothing_to_remove:
        raise UsageError(f"git config failed: {git_reason(proc.stderr)}")


def enable_shared(ctx, args):
    """Adopt the state on the ref, or publish this clone's when the ref does not exist yet.
    An earlier local state that differs from the adopted one is kept beside it, never lost."""
    remote = args.remote or DEFAULT_SHARED_REMOTE
    ref = args.ref or DEFAULT_SHARED_REF
    known = run_git(ctx.main_root, "remote").split()
    if remote not in known:
        raise UsageError(f"--remote {remote!r}: this repository has no git remote of that name "
                         f"({', '.join(known) or 'none yet'}); add it with `git remote add "
                         f"{remote} URL`")
    if not ref.startswith("refs/") and not all(ch.isalnum() or ch in "-_/." for ch in ref):
        raise UsageError(f"--ref {ref!r} is not a ref or branch name, e.g. refs/orchestrator/state")
    shared = SharedRef(ctx.main_root, remote, ref)
    current = SharedRef.configured(ctx.main_root)
    if current is not None and (current.remote, current.ref) == (remote, shared.ref):
        ctx.out.emit(message("shared_already", remote=remote, ref=shared.ref, cli=cli_name()),
                     {"shared": True, "remote": remote, "ref": shared.ref, "changed": False})
        return EXIT_OK
    store = share_through(ctx.store, shared, ctx.purpose)
    sharing = store.sharing
    kept = None
    transaction = Transaction(store)
    with transaction as state:  # fetches: the remote's state is now the local one
        adopted = sharing.commit is not None
        if not adopted:  # publish, and the copy holds exactly what was published
            data = emit_state(state).encode("utf-8")
            commit = sharing.push(data)
            if data != store.read_bytes():
                store.write_local(data, state, transaction.lock)
            sharing.mark_fetched(commit)
    if adopted and sharing.replaced_local is not None:
        kept = unused_name(store.path + ".before-shared")  # an earlier one stays as it is
        atomic_write(kept, sharing.replaced_local, durable=False)
    git_config(ctx.main_root, f"{SHARED_CONFIG_SECTION}.remote", remote)
    git_config(ctx.main_root, f"{SHARED_CONFIG_SECTION}.ref", ref)
    counts = {"sessions": len(state["active_sessions"]), "locks": len(state["locks"])}
    text = message("shared_enabled_adopted" if adopted else "shared_enabled_published",
                   remote=remote, ref=shared.ref, **counts)
    if kept:
        text += "\n" + message("shared_enabled_kept", kept=kept, cli=cli_name())
    ctx.out.emit(text, {"shared": True, "remote": remote, "ref": shared.ref,
                        "adopted": adopted, "kept": kept, **counts})
    return EXIT_OK


def cmd_log(ctx, args):
    if ctx.store.sharing is None:
        raise UsageError(message("shared_not_enabled", cli=cli_name()))
    shared = ctx.store.sharing.ref
    if args.count < 1:
        raise UsageError(f"-n {args.count} must be 1 or more")
    session_id = check_session_id(args.session) if args.session else None
    ctx.refresh_shared()
    entries = shared.history(args.count if session_id is None else 10 * args.count + 100)
    if session_id is not None:
        entries = [e for e in entries if e["session"] == session_id][:args.count]
    lines = [f"{e['when']}  {as_label(e['machine'] or '?')}  {as_label(e['session'] or '-')}  "
             f"{as_label(e['command'])}  {e['commit'][:12]}" for e in entries]
    empty = (message("shared_log_no_session", session=session_id, remote=shared.remote,
                     ref=shared.ref) if session_id else
             message("shared_log_empty", remote=shared.remote, ref=shared.ref))
    ctx.out.emit("\n".join(lines) or empty, {"log": entries})
    return EXIT_OK


# ---------------------------------------------------------------------------- command line

OUTSIDE_A_REPOSITORY = {"install", "hook", "commit-check", "mcp"}  # commands that need no state here
ACTIVITY_COMMANDS = {*WRITING_COMMANDS, "check", "build-failure"}  # a session's own acts


class Context:
    """What every command needs: where the state is, which checkout we are in, the output."""

    def __init__(self, args):
        found = enclosing_checkout(os.getcwd())
        self.checkout_root, self.main_root = found or find_checkout(os.getcwd())
        if (found is None and args.command not in OUTSIDE_A_REPOSITORY
                and not (args.state or os.environ.get(STATE_ENV))):
            raise UsageError(
                f"{os.getcwd()} is not inside a git repository, and the shared state lives in "
                "one: run the command inside the repository whose sessions you coordinate, or "
                "pass --state PATH")
        self.fold_case = file_system_ignores_case(self.checkout_root)  # for every comparison
        path = (args.state or os.environ.get(STATE_ENV)
                or os.path.join(self.main_root, STATE_RELATIVE_PATH))
        self.store = Store(path)
        self.machine = this_machine()
        self.purpose = (args.command, getattr(args, "session", None), self.machine)
        shared = SharedRef.configured(self.main_root)  # None: one machine (the usual case)
        if shared is not None and os.path.realpath(path) == os.path.realpath(
                os.path.join(self.main_root, STATE_RELATIVE_PATH)):
            if args.command == "hook":
                shared.timeout = HOOK_NETWORK_SECONDS  # an agent is waiting
            share_through(self.store, shared, self.purpose)
        self.out = Output(args.json)
        self.interactive = not args.json and terminal_is_interactive()
        self.asker = None
        self.presence_thresholds = None
        self.seen = None  # the records beside the state, once presence has read them

    def presence(self, state, now):
        """Each active session's presence (see presences), from the records beside the state;
        the thresholds come from the environment, a bad one is bad input."""
        if self.presence_thresholds is None:
            self.presence_thresholds = presence_thresholds(os.environ)
        self.seen = read_seen(self.store)  # the radar reads the same records after it
        return presences(state, self.seen, now, self.presence_thresholds, self.machine)

    def radar(self, state, presence):
        """The radar's conflicts (see radar); a git too old to predict merges is said once."""
        found, said = radar(self.main_root, state, presence, self.machine, time.time(),
                            self.seen if self.seen is not None else read_seen(self.store))
        if said["old_git"]:
            self.out.notice(message("radar_old_git", version=said["old_git"]))
        for worktree in said["unreadable"]:
            self.out.notice(message("radar_unreadable", worktree=worktree,
                                    seconds=RADAR_GIT_SECONDS))
        return found

    def note_activity(self, args, code):
        """A command a session runs for itself is a sign of life: a write, the session-start
        check, a build failure's question; not a report anyone may ask for, nor a command
        refused as bad input."""
        session_id = getattr(args, "session", None)
        if (args.command in ACTIVITY_COMMANDS and code in (EXIT_OK, EXIT_REFUSED)
                and isinstance(session_id, str) and is_kebab_case(session_id)):
            record_seen(self.store, SESSION_KEY_PREFIX + session_id, "working")

    def names_a_file(self, scope):
        """Does a scope name an existing file of this checkout? It then covers only that file;
        a folder, a glob, or a path with nothing on disk yet covers what is below it too."""
        return not is_glob(scope) and os.path.isfile(os.path.join(self.checkout_root, scope))

    def is_folder(self, path):
        """A glob, or a folder of this checkout: planned work there covers what is inside
        (a path with nothing on disk is judged as the file build-failure and the hooks see)."""
        return is_glob(path) or os.path.isdir(os.path.join(self.checkout_root, path))

    def is_repo_path(self, area):
        """Does a touched area name a path (a glob, a nested path, or something on disk)?"""
        return looks_like_path(area) or os.path.exists(os.path.join(self.checkout_root, area))

    def checkout_info(self):
        """The worktree and branch a session is registered from."""
        branch = None
        try:
            head = read_text(os.path.join(git_dir_of(self.checkout_root), "HEAD")).strip()
            if head.startswith("ref: refs/heads/"):
                branch = head[len("ref: refs/heads/"):]  # otherwise a detached HEAD
        except (OSError, TypeError):  # no git, or a `.git` file naming no git dir
            pass
        return {"worktree": self.checkout_root, "branch": branch, "machine": self.machine}

    def run(self, args):
        """Run the command `args` names (a question may run `sync` before the one asked). When
        the shared state's ref moved between this command's fetch and its push, the command is
        applied again to the new state, so that what changed meanwhile (a conflicting lock)
        is judged like anything else; nothing is ever merged."""
        given = dict(vars(args))  # a retry starts from what was asked (no --force a question set)
        for attempt in range(SHARED_ATTEMPTS):
            vars(args).clear()
            vars(args).update(given)
            try:
                code = COMMANDS[args.command](self, args)
                self.note_activity(args, code)
                return code
            except RemoteMoved:
                wait_to_retry(attempt)
            except Refused:
                self.note_activity(args, EXIT_REFUSED)
                raise
        raise Busy(f"the shared state on {self.store.sharing.ref.describe()} kept moving: "
                   f"{SHARED_ATTEMPTS} attempts, each overtaken by another writer; nothing was "
                   "written, run the command again")

    def refresh_shared(self):
        """Before a report (sync, status): fetch the shared state, briefly. A notice when the
        view is older than the ref's max age because the remote could not be reached."""
        sharing = self.store.sharing
        if sharing is None:
            return
        try:
            sharing.refresh(REFRESH_SECONDS)
            sharing.note_refresh(None)
        except RemoteUnavailable as error:
            sharing.note_refresh(error.message)
            self.out.notice(message("shared_unreachable", reason=error.message,
                                    age=self.shared_age_text()))
        except StateError as error:  # a ref that would empty or wedge this clone: not adopted
            sharing.note_refresh(error.message)
            raise

    def refresh_shared_in_background(self, notice=False):
        """For a read that must not wait (check, the hooks, build-failure): when the local copy
        is older than the max age, start one detached refresh and answer from the copy now
        (with `notice`, saying how old it is)."""
        sharing = self.store.sharing
        if sharing is None:
            return
        age = sharing.fetched_age(time.time())
        if age is not None and age <= sharing.ref.max_age:
            return
        if notice:
            failed = read_text_or_none(sharing.refresh_failure_marker)
            self.out.notice(message("shared_unreachable", reason=failed,
                                    age=self.shared_age_text()) if failed else
                            message("shared_stale", age=self.shared_age_text()))
        marker = os.path.join(os.path.dirname(self.store.path), "shared-refreshing")
        try:  # one refresh at a time: a marker younger than a refresh can take
            if time.time() - os.lstat(marker).st_mtime < NETWORK_SECONDS + REFRESH_SECONDS:
                return
            os.unlink(marker)
        except OSError:
            pass
        try:
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | getattr(os, "O_NOFOLLOW", 0), 0o600))
        except OSError:
            return
        import subprocess
        try:
            subprocess.Popen([sys.executable, os.path.join(HERE, "orchestrator.py"), "--state",
                              self.store.path, "remote", "refresh", "--background"],
                             cwd=self.main_root, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, close_fds=True)
        except OSError:
            pass

    def shared_age_text(self):
        age = self.store.sharing.fetched_age(time.time()) if self.store.sharing else None
        return "never fetched" if age is None else f"{humanize_seconds(age)} old"


def build_parser(only=None):
    import argparse
    known_flags = []  # every flag of the commands built, for suggestions on a misspelled one

    class ArgumentParser(argparse.ArgumentParser):
        """argparse, but a usage error becomes one line and exit 2 through main()."""

        def __init__(self, **kwargs):
            super().__init__(formatter_class=HelpFormatter, **kwargs)

        def error(self, message):
            about = f"{cli_name()} {only}" if only else self.prog  # the command's own help
            raise UsageError(f"{message}{flag_suggestions(message, known_flags)} "
                             f"(see `{about} --help`)")

    class HelpFormatter(argparse.HelpFormatter):
        """The terminal width from os, so that building the parser never imports shutil."""

        def __init__(self, prog):
            try:
                width = os.get_terminal_size().columns - 2
            except OSError:
                width = 78
            super().__init__(prog, width=max(width, 40))

    common = ArgumentParser(add_help=False)
    common.add_argument("--state", metavar="PATH", default=argparse.SUPPRESS,
                        help=f"state file (default: {STATE_RELATIVE_PATH} in the main "
                             f"checkout; or ${STATE_ENV})")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print exactly one JSON object on stdout")
    parser = ArgumentParser(prog=cli_name(), parents=[common],
                            description="Parallel agent sessions (Windsurf/Devin Desktop, Claude "
                                        "Code, Cursor, Devin) on one repository coordinate "
                                        "through one shared state file.")
    parser.add_argument("--version", action="version", version=f"orchestrator {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    for name, (help_text, flags) in COMMAND_FLAGS.items():
        if only is not None and name != only:
            continue  # argparse pays a gettext lookup per parser and flag: build only this one
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        for flag, kind, help_of_flag, extra in flags:
            options = dict(extra)
            if kind == TEXT:
                sub.add_argument(flag, nargs="*", metavar="TEXT", **options)
                continue
            if kind == CHOICE:
                sub.add_argument(flag, help=help_of_flag, **options)
                continue
            if kind == SWITCH:
                options["action"] = "store_true"
            elif kind == VALUES:
                options["action"] = "append"
            sub.add_argument(flag, help=help_of_flag, **options)
    known_flags.extend(f for p in [parser, *commands.choices.values()]
                       for action in p._actions for f in action.option_strings)
    return parser


def flag_suggestions(message, known):
    """For argparse's "unrecognized arguments: --areas x": "; did you mean --area?"."""
    if not message.startswith("unrecognized arguments:"):
        return ""
    import difflib
    hints = []
    for word in message.split(":", 1)[1].split():
        flag = word.partition("=")[0]
        close = difflib.get_close_matches(flag, known, 1, 0.7) if flag.startswith("--") else []
        if close:
            hints.append((flag, close[0]))
    if len(hints) == 1:
        return f"; did you mean {hints[0][1]}?"
    return ("; did you mean " + ", ".join(f"{right} for {wrong}" for wrong, right in hints) + "?"
            if hints else "")


# -- the MCP server: typed tool calls into the same commands

# The commands an agent needs, as MCP tools (at most 8: Windsurf caps all servers together
# at 100 tools). Each tool's properties are its command's flags without dashes, generated from
# COMMAND_FLAGS; its result is the command's --json object. Hooks enforce; MCP only changes
# how an agent asks.
MCP_TOOLS = ("sync", "lock", "unlock", "status", "check", "note", "complete", "build-failure")
MCP_REQUIRED = {"lock": ("session", "area", "scope", "reason"), "unlock": ("session",),
                "complete": ("session", "outcome"), "note": ("text",)}
MCP_REFUSALS = {"sync", "lock", "unlock", "note", "complete"}  # exit 1 is a refusal there
MCP_MAX_ITEMS = 100  # values of one repeatable flag in one call
MCP_CALL_SECONDS = 120  # a call that takes longer is ended, and said so
MCP_PROTOCOL = ("Register first (sync with session, focus, area); lock before changing shared "
                "files; never edit inside another session's lock.")
MCP_TOOL_RULES = {
    "sync": MCP_PROTOCOL,
    "lock": "Take one before changing files other sessions may touch; a refusal names the "
            "holder: ask the user, never edit inside another session's lock.",
    "check": "Run it before starting work: exit_code 1 means a conflict to tell the user about.",
    "build-failure": "Ask it before fixing a broken build: report_only means report, never fix."}
EXIT_MEANINGS = {EXIT_REFUSED: "refused or conflict found, nothing written",
                 EXIT_USAGE: "bad input, nothing written",
                 EXIT_STATE: "the state file cannot be read, nothing written",
                 EXIT_BUSY: "busy, nothing written: try again",
                 EXIT_REMOTE: "the shared remote is unreachable, nothing written",
                 EXIT_INTERNAL: "internal error"}


def mcp_property(flag):
    return flag.lstrip("-").replace("-", "_")


def mcp_tool_schemas():
    """[(name, description, input schema)] of the tools, from the one flag table."""
    kinds = {VALUE: {"type": "string"}, TEXT: {"type": "string"},
             VALUES: {"type": "array", "items": {"type": "string"}},
             SWITCH: {"type": "boolean"}}
    tools = []
    for command in MCP_TOOLS:
        help_text, flags = COMMAND_FLAGS[command]
        properties = {mcp_property(flag): {**kinds[kind], "description": help_of_flag}
                      for flag, kind, help_of_flag, _ in flags}
        properties["repository"] = {"type": "string", "description":
                                    "the repository's folder, where the server serves several"}
        schema = {"type": "object", "properties": properties, "additionalProperties": False}
        if command in MCP_REQUIRED:
            schema["required"] = list(MCP_REQUIRED[command])
        description = (help_text[0].upper() + help_text[1:] + ". "
                       + MCP_TOOL_RULES.get(command, "")).strip()
        tools.append((command.replace("-", "_"), description, schema))
    return tools


def mcp_command_line(command, arguments):
    """The command line a tool call stands for (`--json` first), or UsageError."""
    _, flags = COMMAND_FLAGS[command]
    kinds = {mcp_property(flag): (flag, kind) for flag, kind, _, _ in flags}
    argv, text = ["--json", command], []
    for name, value in arguments.items():
        if name == "repository":
            continue
        if name not in kinds:
            raise UsageError(f"{command.replace('-', '_')}: no property {name!r}; its "
                             "properties are " + ", ".join(sorted([*kinds, "repository"])))
        flag, kind = kinds[name]
        wanted = {SWITCH: "true or false", VALUES: f"an array of at most {MCP_MAX_ITEMS} strings"
                  }.get(kind, "a string")
        fits = (isinstance(value, bool) if kind == SWITCH else
                isinstance(value, list) and len(value) <= MCP_MAX_ITEMS
                and all(isinstance(item, str) for item in value) if kind == VALUES else
                isinstance(value, str))
        if not fits:
            raise UsageError(f"{command.replace('-', '_')}: {name} must be {wanted}")
        if kind == SWITCH:
            argv += [flag] if value else []
        elif kind == TEXT:
            text.append(value)
        elif kind == VALUES:  # flag=value: a value that starts with a dash stays a value
            argv += [f"{flag}={item}" for item in value]
        else:
            argv.append(f"{flag}={value}")
    return argv + (["--", *text] if text else [])


def mcp_serve(repository):
    """Serve the tools over stdio (the official `mcp` SDK, imported here only). Each call runs
    the command as its own process in the repository's folder: the same checks, locks and
    writes as the command line, and its --json object as the result."""
    try:
        import anyio
        import mcp_types as types
        from mcp.server.lowlevel import Server
        from mcp.server.stdio import stdio_server
    except ImportError:
        raise UsageError("the MCP server needs the `mcp` package: install the tool with its "
                         "extra (`pipx install 'session-orchestrator[mcp]'`, or "
                         "`make install` in a clone)") from None
    tools = [types.Tool(name=name, description=description, input_schema=schema)
             for name, description, schema in mcp_tool_schemas()]
    launch = [sys.executable, "-c", "import sys; p = sys.argv.pop(1).split('\\n'); "
              "sys.path[0:0] = p; import orchestrator; sys.exit(orchestrator.run())",
              "\n".join([HERE] + [p for p in sys.path if p])]

    async def list_tools(context, params):
        return types.ListToolsResult(tools=tools)

    async def call_tool(context, params):
        command = params.name.replace("_", "-")
        arguments = params.arguments or {}
        if command not in MCP_TOOLS:
            return mcp_error(types, f"no tool {params.name!r}; the tools are "
                             + ", ".join(name for name, _, _ in mcp_tool_schemas()))
        try:
            argv = mcp_command_line(command, arguments)
        except UsageError as error:
            return mcp_error(types, error.message)
        folder = arguments.get("repository") or repository
        if not isinstance(folder, str) or not os.path.isdir(folder):
            return mcp_error(types, f"repository {folder!r} is not a folder here")
        try:
            with anyio.fail_after(MCP_CALL_SECONDS):
                done = await anyio.run_process(launch + argv, cwd=folder, check=False, env={
                    **os.environ, "ORCHESTRATOR_COMMAND": cli_name()})
        except TimeoutError:
            return mcp_error(types, f"{params.name} took longer than {MCP_CALL_SECONDS} s and "
                             "was ended; nothing it had not written yet was written")
        return mcp_result(types, command, done.returncode, done.stdout.decode("utf-8", "replace"))

    server = Server("session-orchestrator", version=__version__,
                    instructions="Coordinates parallel agent sessions on one repository. "
                                 + MCP_PROTOCOL, on_list_tools=list_tools,
                    on_call_tool=call_tool)

    async def serve():
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    anyio.run(serve)


def mcp_error(types, text):
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                is_error=True)


def mcp_result(types, command, code, output):
    """The command's --json object as the result; a refusal or an error as a tool error whose
    text is the command's message and what its exit code means."""
    import json
    try:
        payload = json.loads(output) if output.strip() else {}
    except ValueError:
        payload = {"error": output.strip()}
    refused = code != EXIT_OK and (code != EXIT_REFUSED or command in MCP_REFUSALS)
    if refused:
        text = (f"{payload.get('error') or 'failed'} (exit {code}: "
                f"{EXIT_MEANINGS.get(code, 'failed')})")
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                    structured_content={**payload, "exit_code": code},
                                    is_error=True)
    payload = {**payload, "exit_code": code}
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(payload))],
                                structured_content=payload)


def cmd_mcp(ctx, args):
    """`orchestrator mcp`: the MCP server of the repository it runs in (or --target)."""
    repository = os.path.abspath(args.target) if args.target else ctx.checkout_root
    if not os.path.isdir(repository):
        raise UsageError(f"mcp: --target {args.target} is not a folder")
    mcp_serve(repository)
    return EXIT_OK


COMMANDS = {"sync": cmd_sync, "lock": cmd_lock, "renew": cmd_renew, "unlock": cmd_unlock,
            "status": cmd_status, "update": cmd_update, "complete": cmd_complete,
            "note": cmd_note, "check": cmd_check, "validate": cmd_validate,
            "build-failure": cmd_build_failure, "directive": cmd_directive, "audit": cmd_audit,
            "install": cmd_install, "hook": cmd_hook, "commit-check": cmd_commit_check,
            "watch": cmd_watch, "remote": cmd_remote, "log": cmd_log, "inbox": cmd_inbox,
            "mcp": cmd_mcp}


def named_command(argv):
    """The subcommand argv names (skipping the global flags before it), or None."""
    words = iter(argv)
    for word in words:
        if word == "--state":
            next(words, None)
        elif word in COMMANDS:
            return word
        elif not word.startswith("-"):
            return None
    return None


def parse_arguments(argv):
    args = build_parser(only=named_command(argv)).parse_args(argv)
    for name, default in (("state", None), ("json", False)):  # global flags nobody gave
        if not hasattr(args, name):
            setattr(args, name, default)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv
    try:
        args = parse_fast_path(argv) or parse_arguments(argv)
        if not args.command:
            raise UsageError(f"give a command, e.g. `{cli_name()} status` (see --help)")
        ctx = Context(args)
        ask_for_missing(ctx, args)
        for first in getattr(args, "run_first", ()):  # what the questions found must come first
            code = ctx.run(first)
            if code != EXIT_OK:
                return code
        return ctx.run(args)
    except SystemExit as exit_request:  # --help
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_OK
    except BaseException as exception:
        error = as_failure(exception)
        if error is None:
            raise
        if isinstance(error, InternalError):
            kept = keep_evidence(exception, " ".join(argv[:1]) or "no command")
            if kept:
                error = InternalError(f"{error.message}; the traceback is in {kept}")
        report_error(error, as_json)
        return error.exit_code


def report_error(error, as_json):
    line = clean_text(" ".join(error.message.split()))
    try:
        if as_json:
            print(json_line({"error": line, "exit_code": error.exit_code, **error.details}))
        else:
            print(f"orchestrator: {line}", file=sys.stderr)
    except BrokenPipeError:
        pass


def command_as_run(program):
    """How hints spell the tool, as the user ran it, so that every hint works as printed: the
    installed `orchestrator`, or this interpreter and this file (the pack's launcher sets
    ORCHESTRATOR_COMMAND to its shim itself)."""
    if os.path.basename(program) in ("orchestrator", "orchestrator.exe"):
        return "orchestrator"
    if not program.endswith(".py"):
        return "orchestrator.py"

    def shown(path):
        import shlex  # not before it is needed: it imports `re`, half the hook's budget
        relative = os.path.relpath(path)
        return shlex.quote(path if relative.startswith("..") else relative)
    return f"{shown(sys.executable)} {shown(program)}"


def run():
    """The process's entry point (`python orchestrator.py`, the pack's launcher), and the last
    thing the process does: gc.freeze() spares the interpreter's exit its full collection of
    every object alive, which with strictyaml loaded cost 6-7 ms, a tenth of a write
    (measured). So nothing may rely on a finalizer (__del__) running at exit: files are closed
    by `with` and the lock explicitly, output is flushed as it is written. What stdout and
    stderr cannot encode (PYTHONIOENCODING=ascii, a latin-1 terminal) is replaced, never an
    error."""
    global COMMAND_AS_RUN
    COMMAND_AS_RUN = command_as_run(sys.argv[0])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")
        except (AttributeError, ValueError, OSError):
            pass  # not a text stream we can change: written as it is
    try:
        code = main()
    finally:
        COMMAND_AS_RUN = None  # a caller in the same process (a test) spells it its own way
    import gc
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(run())
