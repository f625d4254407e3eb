"""orchestrator.py reads top to bottom in the order data flows: each section uses only what
is defined in itself or in the sections above it (Python's own parser is the judge)."""

import ast
import re

import orchestrator as o

HEADER = re.compile(r"# -{20,} (.+)")


def sections_and_definitions():
    source = open(o.__file__, encoding="utf-8").read()
    headers = [(number, match.group(1)) for number, line in enumerate(source.splitlines(), 1)
               if (match := HEADER.match(line))]

    def section_of(line):
        return sum(1 for start, _ in headers if start <= line)  # 0: above the first header

    tree = ast.parse(source)
    defined = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)] + [
                e.id for t in node.targets if isinstance(t, ast.Tuple) for e in t.elts]
        else:
            names = []
        for name in names:
            defined.setdefault(name, section_of(node.lineno))
    return tree, headers, section_of, defined


def names_bound_inside(node):
    bound = set()
    for inner in ast.walk(node):
        if isinstance(inner, ast.arg):
            bound.add(inner.arg)
        elif isinstance(inner, ast.Name) and isinstance(inner.ctx, (ast.Store, ast.Del)):
            bound.add(inner.id)
        elif isinstance(inner, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in inner.names)
        elif isinstance(inner, (ast.FunctionDef, ast.ClassDef)) and inner is not node:
            bound.add(inner.name)
    return bound


def test_no_section_reaches_forward_into_a_later_one():
    tree, headers, section_of, defined = sections_and_definitions()
    forward = []
    for node in tree.body:
        here = section_of(node.lineno)
        bound = names_bound_inside(node) if isinstance(node, (ast.FunctionDef,
                                                              ast.ClassDef)) else set()
        for inner in ast.walk(node):
            if (isinstance(inner, ast.Name) and inner.id in defined and inner.id not in bound
                    and defined[inner.id] > here):
                forward.append(f"line {inner.lineno}: {inner.id} "
                               f"(defined in '{headers[defined[inner.id] - 1][1]}')")
    assert forward == []


def test_the_sections_come_in_the_order_the_module_docstring_lists():
    _, headers, _, _ = sections_and_definitions()
    listed = re.findall(r"^  \d+\. (.+?)(?: +—|$)", o.__doc__, re.MULTILINE)
    assert listed == [name for _, name in headers]


def test_no_section_before_the_commands_runs_a_command_through_the_context():
    """Attribute access hides from the test above: a question flow that calls `ctx.run(...)`
    would run a command from below the commands. Questions return what they learned."""
    tree, headers, section_of, _ = sections_and_definitions()
    commands = next(number for number, (_, name) in enumerate(headers, 1) if name == "commands")
    reaching = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or section_of(node.lineno) >= commands:
            continue
        for inner in ast.walk(node):
            if (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute)
                    and inner.func.attr == "run" and isinstance(inner.func.value, ast.Name)
                    and inner.func.value.id == "ctx"):
                reaching.append(f"line {inner.lineno}: {node.name} calls ctx.run")
    assert reaching == []


def test_the_readmes_map_of_the_module_is_the_docstrings():
    """docs/design.md's list of the module's sections names the docstring's sections in the same
    order, and its error kinds are those EXIT_CODES maps."""
    readme = open(o.HERE + "/docs/design.md", encoding="utf-8").read()
    layout = readme[readme.index("## How the module is laid out"):]
    layout = layout[:layout.index("\n## ", 3)] if "\n## " in layout[3:] else layout
    listed = re.findall(r"^\d+\. (.+?) —", layout, re.MULTILINE)
    documented = re.findall(r"^  \d+\. (.+?)(?: +—|$)", o.__doc__, re.MULTILINE)
    assert listed == documented
    for kind, _ in o.EXIT_CODES:
        assert f"`{kind.__name__}`" in layout, kind.__name__
