"""A request handler that serves every HTTP method the same way, for the test stand-ins."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler


class AnyMethodHandler(BaseHTTPRequestHandler):
    """``http.server`` dispatches on ``do_<METHOD>``; every method cdcsync sends goes to ``_serve``."""

    def _serve(self) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()
