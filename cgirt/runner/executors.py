"""The execution modes' contract: the unit of work a mode runs, and what a mode must do with it.

Each mode (persistent, fork, exec) is an executor in a module of its own; the app keeps them
in a registry by name and hands each request's `Work` to the one the mode policy names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from .response import ResponseParser

if TYPE_CHECKING:
    from ..fastcgi.server import FastCGIRequest
    from .dispatch import Target


@dataclass(slots=True)  # not frozen: a frozen dataclass costs a quarter microsecond per request more
class Work:
    """One script to run for one request. Plain data: fork mode sends it to another process."""

    target: Target
    env: dict[str, str]  # the script's whole environment
    argv: list[str]  # the script's arguments after its path (search words of the query)
    depth: int  # internal redirects followed so far
    body_length: int  # bytes of the request body the script may read (CONTENT_LENGTH)
    # False in a process that exits after the response (a fork-mode request's child): the
    # state a script changed is put back only if another script runs (an internal redirect).
    restore: bool = True

    def response_parser(self, send: Callable[[bytes], None]) -> ResponseParser:
        return ResponseParser(send, head_only=self.env["REQUEST_METHOD"] == "HEAD",
                              nph=self.target.path.rpartition("/")[2].startswith("nph-"))


class Executor(Protocol):
    def execute(self, req: FastCGIRequest, work: Work) -> None:
        """Run the script and answer `req` with its response, internal redirects included.
        A failure before the response has started raises an HttpError."""


Finish = Callable[["FastCGIRequest", Work, ResponseParser], None]
"""The app's last step after a script's output has ended: the response sent, an internal
redirect followed, or a malformed response turned into an error."""
