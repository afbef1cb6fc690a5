"""A small agent over Sluice's MCP tools: ask a question about your listening, get an answer
computed by SQL the model writes and Sluice runs, scoped to you.

    SLUICE_TOKEN=u0002 OPENAI_API_KEY=... python sluice_agent.py "what is my top artist in 2019?"

The loop:
1. connect to Sluice's MCP endpoint (Streamable HTTP) with `Authorization: Bearer <token>`;
2. read the schema notes (a resource) into the system prompt, beside the server's instructions;
3. list the tools and hand them to the model as function tools (each tool's inputSchema), with
   one more, `read_resource`, for the guide's other pages (the vetted seed questions);
4. model -> tool calls -> results (their text, marked when the call failed) -> model, until
   the model answers in text or the step limit is reached.

The model is pluggable (models.py): any object with `complete(messages, tools) -> Reply`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

import anyio
import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from models import Model, OpenAICompatibleModel, ToolCall, ToolResult

DEFAULT_URL = "http://127.0.0.1:32011/mcp"
SCHEMA_NOTES = "sluice://guide/schema-notes"
READ_RESOURCE = "read_resource"

SYSTEM = """\
You answer questions about a listener's music listening with Sluice's tools: SQL (DataFusion's \
dialect, PostgreSQL-like) over their plays (`streams`) and the catalog (`tracks`, `artists`, \
`albums`). Check a table's columns with describe_table, adapt the vetted SQL of \
sluice://guide/seed-questions (read it with read_resource), then run it with query. Answer \
only from the rows the tools return, briefly, and say as of when (the manifest's watermark). \
When a call fails, read the error, fix the call and try again.

The server's instructions:
{instructions}

{notes}"""


@dataclass
class Run:
    """One question's conversation: the answer (None if the step limit came first), every
    message exchanged with the model and every tool result."""

    answer: str | None
    messages: list[dict]
    results: list[ToolResult] = field(default_factory=list)
    steps: int = 0


@asynccontextmanager
async def connect(url: str, token: str) -> AsyncIterator[Client]:
    """An MCP client of Sluice at `url`, every request carrying the bearer `token`."""
    headers = {"Authorization": f"Bearer {token}"}
    # The MCP SDK's own defaults: 30 s to connect and write, 300 s to read an answer.
    timeout = httpx2.Timeout(30.0, read=300.0)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


def function_tool(name: str, description: str | None, schema: dict) -> dict:
    """A tool as chat-completions endpoints take it."""
    return {"type": "function",
            "function": {"name": name, "description": description or "", "parameters": schema}}


async def read_text(client: Client, uri: str) -> str:
    contents = (await client.read_resource(uri)).contents
    return "\n".join(c.text for c in contents if hasattr(c, "text"))


async def model_tools(client: Client) -> list[dict]:
    """The server's tools, and `read_resource` over its resources."""
    tools, cursor = [], None
    while True:
        page = await client.list_tools(cursor=cursor)
        tools += [function_tool(t.name, t.description, t.input_schema) for t in page.tools]
        cursor = page.next_cursor
        if cursor is None:
            break
    resources = (await client.list_resources()).resources
    uris = [str(r.uri) for r in resources]
    pages = "; ".join(f"{r.uri}: {r.description or r.name}" for r in resources)
    tools.append(function_tool(
        READ_RESOURCE,
        f"Read a page of Sluice's guide (Markdown). The pages: {pages}",
        {"type": "object", "properties": {"uri": {"type": "string", "enum": uris}},
         "required": ["uri"]},
    ))
    return tools


async def call_tool(client: Client, call: ToolCall) -> ToolResult:
    """Makes one call the model asked for. Whatever goes wrong becomes a failed result the
    model can read and act on, never an exception that ends the conversation."""
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as e:
        return ToolResult(call.name, {}, f"the arguments are not JSON ({e}); send a JSON object",
                          True)
    if not isinstance(arguments, dict):
        return ToolResult(call.name, {}, "the arguments must be a JSON object", True)
    try:
        if call.name == READ_RESOURCE:
            return ToolResult(call.name, arguments, await read_text(client, arguments.get("uri", "")),
                              False)
        result = await client.call_tool(call.name, arguments)
    except MCPError as e:
        # A protocol-level refusal: an unknown tool or resource, arguments that do not fit.
        return ToolResult(call.name, arguments, str(e), True)
    text = "\n".join(block.text for block in result.content if block.type == "text")
    return ToolResult(call.name, arguments, text, result.is_error, result.structured_content)


def for_model(result: ToolResult) -> str:
    """A tool message's content: what the tool said, and whether the call failed (chat
    messages have no error flag)."""
    return f"error: {result.text}" if result.is_error else result.text


async def converse(client: Client, question: str, model: Model, *, max_steps: int = 10,
                   trace: Callable[[str], None] | None = None) -> Run:
    """Answers `question` with `model` over an open MCP `client`."""
    notes = await read_text(client, SCHEMA_NOTES)
    tools = await model_tools(client)
    system = SYSTEM.format(instructions=client.instructions or "(none)", notes=notes)
    run = Run(answer=None, messages=[
        {"role": "system", "content": system},
        {"role": "user", "content": question},
    ])
    while run.steps < max_steps:
        run.steps += 1
        # Models answer over the network: call them off the event loop.
        reply = await anyio.to_thread.run_sync(model.complete, run.messages, tools)
        run.messages.append(reply.message())
        if not reply.tool_calls:
            run.answer = reply.text or ""
            return run
        for call in reply.tool_calls:
            if trace:
                trace(f"-> {call.name} {call.arguments}")
            result = await call_tool(client, call)
            if trace:
                first = result.text.splitlines()[0] if result.text else ""
                trace(f"<- {'error: ' if result.is_error else ''}{first[:200]}")
            run.results.append(result)
            run.messages.append({"role": "tool", "tool_call_id": call.id,
                                 "content": for_model(result), "_result": result})
    return run


async def run_agent(question: str, model: Model, *, url: str, token: str, max_steps: int = 10,
                    trace: Callable[[str], None] | None = None) -> Run:
    """Connects to Sluice at `url` as `token` and answers `question` with `model`."""
    async with connect(url, token) as client:
        return await converse(client, question, model, max_steps=max_steps, trace=trace)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Ask Sluice about your listening, through a model and Sluice's MCP tools.",
        epilog="The model: OPENAI_BASE_URL (default https://api.openai.com/v1), OPENAI_API_KEY, "
               "SLUICE_AGENT_MODEL (default gpt-4o-mini).")
    parser.add_argument("question")
    parser.add_argument("--url", default=os.environ.get("SLUICE_MCP_URL", DEFAULT_URL),
                        help=f"Sluice's MCP endpoint (SLUICE_MCP_URL; default {DEFAULT_URL})")
    parser.add_argument("--token", default=os.environ.get("SLUICE_TOKEN"),
                        help="the bearer token (SLUICE_TOKEN); the demo's are the login names")
    parser.add_argument("--max-steps", type=int, default=10, help="model turns at most")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print the answer only, not the tool calls")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("a token is needed: --token or SLUICE_TOKEN (the demo: u0001, analyst, ...)")

    def trace(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        run = asyncio.run(run_agent(args.question, OpenAICompatibleModel.from_env(), url=args.url,
                                    token=args.token, max_steps=args.max_steps,
                                    trace=None if args.quiet else trace))
    except Exception as e:  # noqa: BLE001 (the CLI says what went wrong and stops)
        while isinstance(e, ExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]  # the task groups of the MCP transport wrap the cause
        print(f"sluice_agent: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if run.answer is None:
        print(f"sluice_agent: no answer after {run.steps} steps", file=sys.stderr)
        return 1
    print(run.answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
