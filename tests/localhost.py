"""Real HTTP servers on localhost for the tests (downloads, the judge's endpoint)."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time


@contextlib.contextmanager
def serving(httpd):
    """Run ``httpd`` (an http.server server bound to 127.0.0.1) in a thread; yields its base
    URL and shuts it down afterwards."""
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


class ChatServer(http.server.ThreadingHTTPServer):
    """A chat-completions endpoint whose behaviour the test sets (``mode``); it prefers the
    answer containing the word "jazz" and records every request it got."""

    mode = "prefer-jazz"
    failures_left = 0
    delay = 0.0

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _ChatHandler)
        self.requests: list[dict] = []


class _ChatHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        pass

    def do_POST(self):  # noqa: N802 (http.server's naming)
        server: ChatServer = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append({"path": self.path, "body": body,
                                "auth": self.headers.get("Authorization")})  # fmt: skip
        if server.failures_left:
            server.failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        time.sleep(server.delay)
        question = body["messages"][0]["content"]
        answer_a = question.split("Answer A: ")[1].split("\n")[0]
        reply = {
            "prefer-jazz": "A" if "jazz" in answer_a else "B",
            "always-first": "A",
            "chatty": "I would say answer B, clearly.",
            "no-letter": "Both answers are fine.",
        }.get(server.mode)
        if server.mode == "not-http":  # e.g. another service on the judge's port
            self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")
            return
        if server.mode == "malformed":
            payload = b'{"choices": []}'
        elif server.mode == "not-json":
            payload = b"<html>gateway</html>"
        else:
            message = {"role": "assistant", "content": reply}
            payload = json.dumps({"choices": [{"message": message}]}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the slow-reply test)
