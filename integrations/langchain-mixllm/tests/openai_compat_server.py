"""A rule-based OpenAI-compatible chat-completions server on 127.0.0.1, for the standard suite.

``langchain_tests``' integration suite asks a real model to call tools with the right arguments,
fill a JSON schema, stream, report usage and hold a conversation. A recorded script cannot
anticipate every prompt, so this server *computes* a plausible answer from the request instead:

* tools given, last turn from the user, ``tool_choice`` not ``"none"`` → one tool call: the tool
  named by ``tool_choice``, else the tool whose name appears in the prompt, else the tool whose
  words overlap the prompt most, else the first. Arguments are filled from the tool's JSON
  schema: integers take the prompt's numbers in order (default 1), strings the first quoted
  phrase of the prompt (else a phrase from the prompt), booleans ``true``, arrays ``[]``.
* otherwise text: ``"[<model>] ..."`` that names the model that answered (so tests can check
  which candidate served a call), honouring ``stop`` and ``max_tokens`` (one word ~ one token).

Responses follow the wire format ``langchain_openai.ChatOpenAI`` (openai SDK) parses, with usage
(``prompt_tokens`` = words in the request) in JSON answers and as the last SSE event. Scripted
failures (``server.fail(model, 503, times=2)``) exercise retries and fallback.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["RuleBasedOpenAIServer"]

_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"")
_NUMBER = re.compile(r"-?\d+")
_WORD = re.compile(r"\w+", re.UNICODE)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return " ".join(parts)


def _fill(schema: dict[str, Any], prompt: str, numbers: list[int], defs: dict[str, Any]) -> Any:
    if "$ref" in schema:
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    if "anyOf" in schema:  # Optional[X]: fill X
        options = [s for s in schema["anyOf"] if s.get("type") != "null"] or schema["anyOf"]
        return _fill(options[0], prompt, numbers, defs)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {k: _fill(v, prompt, numbers, defs) for k, v in (schema.get("properties") or {}).items()}
    if kind == "integer":
        return numbers.pop(0) if numbers else 1
    if kind == "number":
        return float(numbers.pop(0)) if numbers else 1.0
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    quoted = _QUOTED.search(prompt)
    if quoted:
        return quoted.group(1) or quoted.group(2)
    words = [w for w in _WORD.findall(prompt) if len(w) > 3]
    return " ".join(words[-3:]) or "something"


def _pick_tool(tools: list[dict[str, Any]], tool_choice: Any, prompt: str) -> dict[str, Any]:
    by_name = {t["function"]["name"]: t["function"] for t in tools}
    if isinstance(tool_choice, dict):
        return by_name[tool_choice["function"]["name"]]
    lowered = prompt.lower()
    for name, fn in by_name.items():
        if name.lower() in lowered:
            return fn
    words = set(w.lower() for w in _WORD.findall(prompt))

    def overlap(fn: dict[str, Any]) -> int:
        text = fn["name"].replace("_", " ") + " " + fn.get("description", "")
        return len(words & set(w.lower() for w in _WORD.findall(text)))

    return max(by_name.values(), key=overlap)


def answer(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The reply to a chat-completions request: (text, tool calls)."""
    model = str(body.get("model", ""))
    messages = body.get("messages") or []
    last = messages[-1] if messages else {"role": "user", "content": ""}
    tools = body.get("tools") or []
    tool_choice = body.get("tool_choice")
    if tools and last.get("role") == "user" and tool_choice != "none":
        prompt = _text(last.get("content"))
        fn = _pick_tool(tools, tool_choice, prompt)
        params = fn.get("parameters") or {}
        args = _fill(params, prompt, [int(n) for n in _NUMBER.findall(prompt)], params.get("$defs") or {})
        call_id = f"call_{abs(hash((model, fn['name'], prompt))) % 10**8:08d}"
        return "", [{"id": call_id, "name": fn["name"], "arguments": args or {}}]
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":  # structured output: an object that fits the schema
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
        prompt = _text(last.get("content"))
        value = _fill(schema, prompt, [int(n) for n in _NUMBER.findall(prompt)], schema.get("$defs") or {})
        return json.dumps(value), []
    if fmt.get("type") == "json_object":  # JSON mode: the keys the prompt quotes ('setup' and 'punchline'), else one
        prompt = _text(last.get("content"))
        keys = re.findall(r"'(\w+)'", prompt) or ["answer"]
        return json.dumps({k: f"{k} from {model}" for k in keys}), []
    if last.get("role") == "tool":
        text = f"[{model}] The tool returned {_text(last.get('content'))}."
    else:
        text = f"[{model}] You said: {_text(last.get('content'))[:200]}. Here is my answer from {model}."
    for stop in body.get("stop") or []:
        if stop and stop in text:
            text = text[: text.index(stop)]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit:
        text = " ".join(text.split(" ")[: int(limit)])
    return text or f"[{model}]", []


def _usage(body: dict[str, Any], text: str, calls: list[dict[str, Any]]) -> dict[str, int]:
    prompt = sum(len(_WORD.findall(_text(m.get("content")))) + 3 for m in body.get("messages") or [])
    completion = len(_WORD.findall(text)) + sum(len(json.dumps(c["arguments"])) // 4 + 1 for c in calls)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        owner = self.server.owner
        model = str(body.get("model", ""))
        status = owner._record(model, body)
        if status is not None:
            payload = json.dumps({"error": {"message": f"scripted {status}", "type": "server_error",
                                            "param": None, "code": None}}).encode()
            self._send(status, "application/json", payload)
            return
        text, calls = answer(body)
        usage = _usage(body, text, calls)
        if body.get("stream"):
            self._stream(model, text, calls, usage, body)
        else:
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
                    "name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}} for c in calls]
            data = {"id": "chatcmpl-local", "object": "chat.completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "message": message,
                                 "finish_reason": "tool_calls" if calls else "stop"}], "usage": usage}
            self._send(200, "application/json", json.dumps(data).encode())

    def _send(self, status: int, kind: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, model: str, text: str, calls: list[dict[str, Any]], usage: dict[str, int],
                body: dict[str, Any]) -> None:
        def event(choices: list[Any], extra: dict[str, Any] | None = None) -> bytes:
            obj = {"id": "chatcmpl-local", "object": "chat.completion.chunk", "created": 0, "model": model,
                   "choices": choices, **(extra or {})}
            return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()

        events = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
        words = text.split(" ") if text else []
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            events.append(event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
        for i, c in enumerate(calls):
            args = json.dumps(c["arguments"], ensure_ascii=False)
            half = len(args) // 2
            events.append(event([{"index": 0, "delta": {"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": args[:half]}}]}, "finish_reason": None}]))
            events.append(event([{"index": 0, "delta": {"tool_calls": [{"index": i, "function": {
                "arguments": args[half:]}}]}, "finish_reason": None}]))
        events.append(event([{"index": 0, "delta": {}, "finish_reason": "tool_calls" if calls else "stop"}]))
        if (body.get("stream_options") or {}).get("include_usage"):  # as OpenAI: usage only when asked
            events.append(event([], {"usage": usage}))
        events.append(b"data: [DONE]\n\n")
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for ev in events:
            self.wfile.write(f"{len(ev):x}\r\n".encode() + ev + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 drops connections when many clients connect at once
    owner: RuleBasedOpenAIServer


class RuleBasedOpenAIServer:
    """Start with ``.start()``; ``base_url`` for ``ChatOpenAI(base_url=...)``; ``requests`` logs bodies."""

    def __init__(self) -> None:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._lock = threading.Lock()
        self._failures: dict[str, list[int]] = defaultdict(list)
        self.requests: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> RuleBasedOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def fail(self, model: str, status: int, times: int = 1) -> None:
        """The next ``times`` requests for ``model`` get HTTP ``status``."""
        with self._lock:
            self._failures[model].extend([status] * times)

    def recover(self, model: str) -> None:
        """Drop the failures still scripted for ``model``."""
        with self._lock:
            self._failures[model].clear()

    def models_called(self) -> list[str]:
        with self._lock:
            return [str(b.get("model")) for b in self.requests]

    def _record(self, model: str, body: dict[str, Any]) -> int | None:
        with self._lock:
            self.requests.append(body)
            queue = self._failures.get(model)
            return queue.pop(0) if queue else None
