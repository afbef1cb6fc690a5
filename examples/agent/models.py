"""Models the agent loop can drive: anything with `complete(messages, tools) -> Reply`.

Messages and tools are in the OpenAI chat-completions shape, the lingua franca of model
endpoints: `messages` is a list of `{"role": ..., "content": ...}` dicts (assistant messages
may carry `tool_calls`, tool messages a `tool_call_id`), `tools` a list of
`{"type": "function", "function": {"name", "description", "parameters"}}`.

- `OpenAICompatibleModel`: POSTs to `$OPENAI_BASE_URL/chat/completions` (OpenAI, a local
  vLLM / llama.cpp / Ollama server, a gateway...), standard library only.
- `ScriptedModel`: replays a fixed list of steps. It stands in for a model where none is
  reachable (the tests), and shows what a model is expected to do.

A tool message also carries `_result`: the whole `ToolResult` (with MCP's structured content),
for models that run in-process, like `ScriptedModel`. Keys starting with `_` are the loop's own
notes: `OpenAICompatibleModel` leaves them out of what it sends.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, Union


@dataclass
class ToolCall:
    """A call the model asks for. `arguments` is JSON text, as models write it."""

    id: str
    name: str
    arguments: str


@dataclass
class Reply:
    """What a model answered: tool calls to make, or (with none) its final text."""

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)

    def message(self) -> dict:
        """The assistant message, as it goes back into the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return message


@dataclass
class ToolResult:
    """One tool call's outcome, as the loop got it from the MCP server."""

    name: str
    arguments: dict
    text: str
    is_error: bool
    # MCP's structuredContent: for `query`, {columns, rows (objects), row_count, truncated,
    # manifest: {watermark, sources, rollups, text, ...}}.
    structured: Any = None


class Model(Protocol):
    def complete(self, messages: list[dict], tools: list[dict]) -> Reply:
        """The next step: tool calls, or the final answer."""
        ...


def tool_results(messages: Sequence[dict]) -> list[ToolResult]:
    """The tool results of a conversation so far, oldest first."""
    return [m["_result"] for m in messages if m.get("role") == "tool" and "_result" in m]


def wire(messages: Sequence[dict]) -> list[dict]:
    """The messages as a model endpoint takes them: without the loop's `_` notes."""
    return [{k: v for k, v in m.items() if not k.startswith("_")} for m in messages]


class ModelError(RuntimeError):
    pass


class OpenAICompatibleModel:
    """A chat-completions endpoint: `base_url` + `/chat/completions`, with function tools."""

    def __init__(self, base_url: str, api_key: str | None, model: str, *,
                 temperature: float = 0.0, timeout: float = 120.0):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.model = model
        self.temperature = temperature
        self.timeout = timeout

    @classmethod
    def from_env(cls) -> OpenAICompatibleModel:
        """From OPENAI_BASE_URL (default https://api.openai.com/v1), OPENAI_API_KEY and
        SLUICE_AGENT_MODEL (default gpt-4o-mini)."""
        return cls(
            os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
            os.environ.get("OPENAI_API_KEY"),
            os.environ.get("SLUICE_AGENT_MODEL", "gpt-4o-mini"),
        )

    def complete(self, messages: list[dict], tools: list[dict]) -> Reply:
        body = {"model": self.model, "messages": wire(messages), "temperature": self.temperature}
        if tools:
            body["tools"] = tools
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as e:
            raise ModelError(f"{self.url}: HTTP {e.code}: {e.read().decode(errors='replace')}") from e
        except urllib.error.URLError as e:
            raise ModelError(f"{self.url}: {e.reason}") from e
        try:
            message = answer["choices"][0]["message"]
        except (KeyError, IndexError, TypeError) as e:
            raise ModelError(f"{self.url}: no choices[0].message in {answer!r:.500}") from e
        calls = [
            ToolCall(c["id"], c["function"]["name"], c["function"].get("arguments") or "{}")
            for c in message.get("tool_calls") or []
        ]
        return Reply(text=message.get("content"), tool_calls=calls)


# What a script's step can compute from: the tool results so far.
FromResults = Callable[[list[ToolResult]], Any]


@dataclass
class Call:
    """A scripted tool call; `arguments` may be computed from the results so far."""

    name: str
    arguments: Union[dict, FromResults] = field(default_factory=dict)


@dataclass
class Answer:
    """A scripted final answer; `text` may be computed from the results so far."""

    text: Union[str, FromResults]


Step = Union[Call, Sequence[Call], Answer]


class ScriptedModel:
    """Replays `steps`, one per turn: a `Call` (or several, made in one turn) or the final
    `Answer`. It sees what a model would see; `seen` keeps each turn's (messages, tools)."""

    def __init__(self, steps: Sequence[Step]):
        self.steps = list(steps)
        self.seen: list[tuple[list[dict], list[dict]]] = []

    def complete(self, messages: list[dict], tools: list[dict]) -> Reply:
        turn = len(self.seen)
        self.seen.append((list(messages), list(tools)))
        if turn >= len(self.steps):
            raise ModelError(f"the script has {len(self.steps)} steps; turn {turn + 1} was asked for")
        step = self.steps[turn]
        results = tool_results(messages)
        if isinstance(step, Answer):
            text = step.text(results) if callable(step.text) else step.text
            return Reply(text=text)
        calls = [step] if isinstance(step, Call) else list(step)
        return Reply(tool_calls=[
            ToolCall(
                id=f"call_{turn}_{i}",
                name=c.name,
                arguments=json.dumps(c.arguments(results) if callable(c.arguments) else c.arguments),
            )
            for i, c in enumerate(calls)
        ])
