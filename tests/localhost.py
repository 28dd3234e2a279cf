"""Real HTTP servers on localhost for the tests (downloads, the judge's endpoint)."""

from __future__ import annotations

import contextlib
import threading


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
