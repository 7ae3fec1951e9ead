"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions and Anthropic messages
wire formats (JSON and SSE streaming), answering from a per-model script.

Why a real server and not a mock: openai 3.x / anthropic 2.x talk through ``httpx2``, which
``respx`` does not intercept, and only a socket exercises what matters here: status codes,
Retry-After headers, timeouts, SSE parsing and a connection that dies mid-stream.

Usage::

    server.script("model-a", Reply.error(429, headers={"retry-after": "1"}), Reply.ok("hi"))
    # requests for model-a get 429, then "hi"; after the script, the default reply (ok)

Every request is recorded in ``server.requests`` as ``(path, headers, body)``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Reply", "ScriptedServer"]


@dataclass
class Reply:
    """One scripted answer; rendered in the wire format of the endpoint that was called."""

    kind: str = "ok"  # ok | error | close
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"id", "name", "arguments": dict}
    usage: tuple[int, int] | None = (11, 7)
    status: int = 200
    error_type: str | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the status line (a slow server)
    chunk_delay_s: float = 0.0  # between stream events
    break_after: int | None = None  # stream: die after this many *content* events
    pieces: int = 3  # stream: the text is sent in this many pieces

    @classmethod
    def ok(cls, text: str = "", **kw: Any) -> Reply:
        return cls(kind="ok", text=text, **kw)

    @classmethod
    def error(cls, status: int, message: str = "scripted error", error_type: str | None = None, **kw: Any) -> Reply:
        return cls(kind="error", status=status, message=message, error_type=error_type, **kw)

    @classmethod
    def slow(cls, seconds: float, text: str = "") -> Reply:
        return cls(kind="ok", text=text, delay_s=seconds)

    @classmethod
    def broken_stream(cls, text: str, break_after: int) -> Reply:
        return cls(kind="ok", text=text, break_after=break_after)

    @classmethod
    def close(cls) -> Reply:
        """Close the connection without answering."""
        return cls(kind="close")


def _split(text: str, n: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 429: "rate_limit_exceeded"}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    429: "rate_limit_error", 500: "api_error", 529: "overloaded_error",
}


def _openai_json(model: str, r: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": r.text or None}
    if r.tool_calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
            for c in r.tool_calls
        ]
    body: dict[str, Any] = {
        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if r.tool_calls else "stop"}],
    }
    if r.usage is not None:
        body["usage"] = {"prompt_tokens": r.usage[0], "completion_tokens": r.usage[1], "total_tokens": sum(r.usage)}
    return body


def _openai_events(model: str, r: Reply) -> list[bytes]:
    def ev(choices: list[Any], usage: Any = None) -> bytes:
        obj: dict[str, Any] = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0,
                               "model": model, "choices": choices}
        if usage is not None:
            obj["usage"] = usage
        return f"data: {json.dumps(obj)}\n\n".encode()

    out = [ev([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    for piece in _split(r.text, r.pieces):
        out.append(ev([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
    for i, c in enumerate(r.tool_calls):
        args = json.dumps(c["arguments"])
        half = len(args) // 2
        out.append(ev([{"index": 0, "delta": {"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                       "function": {"name": c["name"], "arguments": args[:half]}}]}, "finish_reason": None}]))
        out.append(ev([{"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]},
                        "finish_reason": None}]))
    out.append(ev([{"index": 0, "delta": {}, "finish_reason": "tool_calls" if r.tool_calls else "stop"}]))
    if r.usage is not None:
        out.append(ev([], {"prompt_tokens": r.usage[0], "completion_tokens": r.usage[1], "total_tokens": sum(r.usage)}))
    out.append(b"data: [DONE]\n\n")
    return out


def _anthropic_json(model: str, r: Reply) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if r.text:
        content.append({"type": "text", "text": r.text})
    for c in r.tool_calls:
        content.append({"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["arguments"]})
    usage = r.usage or (0, 0)
    return {
        "id": "msg_test", "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": "tool_use" if r.tool_calls else "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }


def _anthropic_events(model: str, r: Reply) -> list[bytes]:
    def ev(name: str, obj: dict[str, Any]) -> bytes:
        obj = {"type": name, **obj}
        return f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode()

    usage = r.usage or (0, 0)
    start = _anthropic_json(model, Reply(usage=(usage[0], 1)))
    start.update(content=[], stop_reason=None)
    out = [ev("message_start", {"message": start})]
    index = 0
    if r.text:
        out.append(ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
        for piece in _split(r.text, r.pieces):
            out.append(ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}}))
        out.append(ev("content_block_stop", {"index": 0}))
        index = 1
    for c in r.tool_calls:
        args = json.dumps(c["arguments"])
        half = len(args) // 2
        out.append(ev("content_block_start", {"index": index, "content_block": {
            "type": "tool_use", "id": c["id"], "name": c["name"], "input": {}}}))
        for part in (args[:half], args[half:]):
            out.append(ev("content_block_delta", {"index": index, "delta": {"type": "input_json_delta",
                                                                            "partial_json": part}}))
        out.append(ev("content_block_stop", {"index": index}))
        index += 1
    out.append(ev("message_delta", {"delta": {"stop_reason": "tool_use" if r.tool_calls else "end_turn",
                                              "stop_sequence": None}, "usage": {"output_tokens": usage[1]}}))
    out.append(ev("message_stop", {}))
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        owner = self.server.owner
        owner._record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        anthropic = self.path.rstrip("/").endswith("/messages")
        model = str(body.get("model", ""))
        reply = owner._next(model, body)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        try:
            if reply.kind == "close":
                self.close_connection = True
                return
            if reply.kind == "error":
                self._error(reply, anthropic)
            elif body.get("stream"):
                self._stream(reply, model, anthropic)
            else:
                data = _anthropic_json(model, reply) if anthropic else _openai_json(model, reply)
                self._send_json(200, data, reply.headers)
        except OSError:  # the client gave up (timeout) or we hung up on purpose: fine
            self.close_connection = True

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:
            pass

    def _send_json(self, status: int, obj: Any, headers: dict[str, str]) -> None:
        payload = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, r: Reply, anthropic: bool) -> None:
        if anthropic:
            kind = r.error_type or _ANTHROPIC_ERROR_TYPES.get(r.status, "api_error")
            obj: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": r.message}}
        else:
            kind = r.error_type or _OPENAI_ERROR_TYPES.get(r.status, "server_error")
            obj = {"error": {"message": r.message, "type": kind, "param": None, "code": None}}
        self._send_json(r.status, obj, r.headers)

    def _stream(self, r: Reply, model: str, anthropic: bool) -> None:
        events = _anthropic_events(model, r) if anthropic else _openai_events(model, r)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        content_seen = 0
        for event in events:
            is_content = b'"text_delta"' in event or b'"content": "' in event and b'"content": ""' not in event
            if r.break_after is not None and is_content and content_seen >= r.break_after:
                # Promise more bytes than we send, then hang up: the client sees a truncated body.
                self.wfile.write(f"{len(event):x}\r\n".encode() + event[: len(event) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            content_seen += is_content
            self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            self.wfile.flush()
            if r.chunk_delay_s:
                time.sleep(r.chunk_delay_s)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 drops connections when 50 clients connect at once
    owner: ScriptedServer


class ScriptedServer:
    """The server, its thread, the per-model scripts and the request log."""

    def __init__(self) -> None:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.default: dict[str, Reply] = {}
        #: ``responder(model, body) -> Reply | None``: answers from the request (after the script)
        self.responder: Any = None
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def script(self, model: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[model].extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.default.clear()
            self.requests.clear()
            self.responder = None

    def bodies(self, model: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [b for _, _, b in self.requests if model is None or b.get("model") == model]

    def _record(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append((path, headers, body))

    def _next(self, model: str, body: dict[str, Any] | None = None) -> Reply:
        with self._lock:
            queue = self._scripts.get(model)
            if queue:
                return queue.popleft()
            responder = self.responder
        if responder is not None:
            reply = responder(model, body or {})
            if reply is not None:
                return reply
        with self._lock:
            return self.default.get(model) or Reply.ok(f"answer from {model}")
