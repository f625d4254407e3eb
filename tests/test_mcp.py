"""The MCP server (`orchestrator mcp`), driven by the official SDK's own stdio client (the
`mcp` package, 2.x: modelcontextprotocol.io, the Python SDK's `ClientSession` and
`stdio_client`), started the way an agent's configuration starts it: `sh
.windsurf/bin/orchestrator mcp` in the repository."""

import json
import os
import subprocess

import pytest

import orchestrator as o
from helpers import committed_repo, git

mcp = pytest.importorskip("mcp")
anyio = pytest.importorskip("anyio")
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402


@pytest.fixture
def repo(tmp_path):
    path = committed_repo(tmp_path / "repo", {"src/api/a.py": "x = 1\n", "docs/d.md": "d\n"})
    assert o.main(["install", "--target", str(path), "--agent", "windsurf", "--agent", "claude",
                   "--agent", "cursor", "--agent", "devin"]) == 0
    git(path, "add", "-A")
    git(path, "commit", "-qm", "pack")
    return path


def env():
    return {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}


def session_with(repo, steps):
    """Run `steps(session)` against the server started through the installed pack."""
    params = StdioServerParameters(command="sh", args=[o.SHIM_PATH, "mcp"], cwd=str(repo),
                                   env=env())

    async def main():
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await steps(session)
    return anyio.run(main)


def test_at_most_eight_tools_whose_properties_are_the_flags_and_the_listing_is_small(repo):
    async def steps(session):
        return await session.list_tools()
    listed = session_with(repo, steps)
    names = [tool.name for tool in listed.tools]
    assert names == ["sync", "lock", "unlock", "status", "check", "note", "complete",
                     "build_failure"]
    wire = listed.model_dump_json(by_alias=True, exclude_none=True)
    assert len(wire.encode("utf-8")) <= 8000, len(wire)
    for tool in listed.tools:
        command = tool.name.replace("_", "-")
        flags = o.COMMAND_FLAGS[command][1]
        expected = {flag.lstrip("-").replace("-", "_") for flag, *_ in flags} | {"repository"}
        assert set(tool.input_schema["properties"]) == expected, command
        for flag, kind, _, _ in flags:
            declared = tool.input_schema["properties"][flag.lstrip("-").replace("-", "_")]
            assert declared["type"] == {o.VALUES: "array", o.SWITCH: "boolean"}.get(kind, "string")
    sync = next(t for t in listed.tools if t.name == "sync")
    assert "never edit inside another session's lock" in sync.description


def test_an_agent_registers_locks_checks_notes_and_is_refused_as_a_tool_error(repo):
    async def steps(session):
        results = {}
        for name, arguments in (
                ("sync", {"session": "alpha", "focus": "API work: \"quotes\" & $HOME", "area": ["api"]}),
                ("sync", {"session": "beta", "focus": "docs", "area": ["docs"]}),
                ("lock", {"session": "alpha", "area": "api", "scope": ["src/api"],
                          "reason": "moving handlers"}),
                ("refused", {"session": "beta", "area": "api", "scope": ["src/api/a.py"],
                             "reason": "mine"}),
                ("check", {"session": "beta", "path": ["src/api/a.py"]}),
                ("build_failure", {"session": "beta", "path": "src/api/a.py"}),
                ("note", {"session": "beta", "to": ["alpha"], "text": "done with docs"}),
                ("status", {}),
                ("unlock", {"session": "alpha", "all": True}),
                ("complete", {"session": "beta", "outcome": "docs written"})):
            tool = "lock" if name == "refused" else name
            results[name if name not in results else name + "2"] = await session.call_tool(
                tool, arguments)
        results["unknown"] = await session.call_tool("lock", {"session": "alpha", "colour": 1})
        return results
    results = session_with(repo, steps)
    assert not results["sync"].is_error
    assert results["sync"].structured_content["registered"] is True
    assert results["lock"].structured_content["lock"]["owner"] == "alpha"
    refused = results["refused"]
    assert refused.is_error
    assert "locked by alpha" in refused.content[0].text
    assert "exit 1: refused or conflict found, nothing written" in refused.content[0].text
    check = results["check"]
    assert not check.is_error and check.structured_content["exit_code"] == 1  # an answer
    assert results["build_failure"].structured_content["verdict"] == "report_only"
    assert results["note"].structured_content["to"] == ["alpha"]
    status = results["status"].structured_content
    alpha = next(s for s in status["active_sessions"] if s["id"] == "alpha")
    assert alpha["focus"] == "API work: \"quotes\" & $HOME"  # no shell quoting anywhere
    assert len(alpha["inbox"]) == 1
    assert results["unlock"].structured_content["released"][0]["area"] == "api"
    assert results["complete"].structured_content["completed"]["id"] == "beta"
    assert results["unknown"].is_error and "no property 'colour'; its properties are " in \
        results["unknown"].content[0].text


def test_the_server_exits_cleanly_when_the_client_closes(repo):
    server = subprocess.Popen(["sh", o.SHIM_PATH, "mcp"], cwd=repo, env=env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}}
    server.stdin.write((json.dumps(hello) + "\n").encode())
    server.stdin.flush()
    answer = json.loads(server.stdout.readline())
    assert answer["id"] == 1 and answer["result"]["serverInfo"]["name"] == "session-orchestrator"
    server.stdin.close()
    assert server.wait(timeout=20) == 0, server.stderr.read()


def test_install_merges_the_server_into_each_agents_mcp_configuration(tmp_path, capsys):
    """Claude Code's project servers in `.mcp.json` and Cursor's in `.cursor/mcp.json`
    (AGENT-HOOKS.md); Devin's project scope is `.devin/config.json`
    (docs.devin.ai/cli/extensibility/mcp/configuration: `devin mcp add -s project`), each
    `{"mcpServers": {NAME: {"command", "args"}}}`; Windsurf's is one global file."""
    repo = committed_repo(tmp_path / "r", {"a": "a\n"})
    (repo / ".cursor").mkdir()
    (repo / ".mcp.json").write_text(json.dumps({"mcpServers": {"theirs": {"command": "x"}}}))
    (repo / ".cursor/mcp.json").write_text(json.dumps({"mcpServers": ["not", "an", "object"]}))
    assert o.main(["--json", "install", "--target", str(repo), "--agent", "windsurf", "--agent",
                   "claude", "--agent", "cursor", "--agent", "devin"]) == 0
    report = json.loads(capsys.readouterr().out)
    claude = json.loads((repo / ".mcp.json").read_text())["mcpServers"]
    assert claude["theirs"] == {"command": "x"} and claude["session-orchestrator"] == o.MCP_ENTRY
    devin = json.loads((repo / ".devin/config.json").read_text())["mcpServers"]
    assert devin["session-orchestrator"]["args"] == [o.SHIM_PATH, "mcp"]
    kept = {f["path"]: f for f in report["files"]}[".cursor/mcp.json"]
    assert kept["action"] == "kept" and "mcpServers" in kept["note"]
    windsurf = report["windsurf_mcp_entry"]["session-orchestrator"]
    assert windsurf["args"] == [str(repo / o.SHIM_PATH), "mcp", "--target", str(repo)]
    assert not (tmp_path / ".codeium").exists()  # nothing written outside the repository


def test_a_value_of_the_wrong_type_is_a_tool_error_and_a_dash_is_only_a_value(repo):
    state = repo / o.STATE_RELATIVE_PATH

    async def steps(session):
        results = [await session.call_tool("sync", {"session": "alpha", "focus": "-v2 cleanup",
                                                    "area": ["--force"]})]
        before = state.read_bytes()
        for arguments in ({"session": "alpha", "text": None}, {"session": "alpha", "text": ["a"]},
                          {"session": "alpha", "text": "x", "to": "alpha"}):
            results.append(await session.call_tool("note", arguments))
        results.append(await session.call_tool("lock", {
            "session": "alpha", "area": "a", "reason": "r", "take_over": "true", "scope": ["x"]}))
        results.append(await session.call_tool("lock", {
            "session": "alpha", "area": "a", "reason": "r", "scope": ["s"] * 101}))
        return results, before, state.read_bytes()
    (synced, *refused), before, after = session_with(repo, steps)
    assert not synced.is_error
    alpha = synced.structured_content["active_sessions"][0]
    assert alpha["focus"] == "-v2 cleanup" and alpha["touched_areas"] == ["--force"]
    assert [r.is_error for r in refused] == [True] * 5
    assert "text must be a string" in refused[0].content[0].text
    assert "to must be an array of at most 100 strings" in refused[2].content[0].text
    assert "take_over must be true or false" in refused[3].content[0].text
    assert before == after  # nothing written by a call that did not type-check
