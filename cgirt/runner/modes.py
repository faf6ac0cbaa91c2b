"""Which execution mode runs a script: persistent, fork or exec.

Python scripts (by extension or shebang) run in-process in the site's chosen mode; any
other executable runs as classic CGI (exec). A site owner chooses the mode for a directory
and its subdirectories by uploading a file `.cgirt-mode` holding one word; the admin's
`allowed_modes` bound that choice.
"""

from __future__ import annotations

import logging
import os

from ..site import is_python
from .cache import Signature, signature

MODE_FILE = ".cgirt-mode"
log = logging.getLogger("cgirt.error")


class ModePolicy:
    def __init__(self, default: str, allowed: frozenset[str]) -> None:
        self.default = default
        self.allowed = allowed
        self._dir_modes: dict[str, tuple[Signature | None, str | None]] = {}
        self._python: dict[str, tuple[Signature, bool]] = {}

    def mode_for(self, script: str, root: str) -> str:
        if not self.is_python(script):
            return "exec"
        directory = os.path.dirname(script)
        while True:
            chosen = self._dir_mode(directory)
            if chosen is not None:
                return chosen
            if directory == root or len(directory) <= len(root):
                return self.default
            directory = os.path.dirname(directory)

    def _dir_mode(self, directory: str) -> str | None:
        path = directory + "/" + MODE_FILE
        sig = _signature_if_there(path)
        cached = self._dir_modes.get(directory)
        if cached is not None and cached[0] == sig:
            return cached[1]
        mode = None
        if sig is not None:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    word = f.read(64).strip().lower()
            except OSError:
                word = ""
            if word in self.allowed:
                mode = word
            else:
                log.warning("%s asks for mode %r, which is not allowed here; using %s",
                            path, word, self.default)
        self._dir_modes[directory] = (sig, mode)
        return mode

    def is_python(self, script: str) -> bool:
        """The site contract's rule, its answer kept while the file is unchanged."""
        if script.endswith(".py"):
            return True
        try:
            st = os.stat(script)
        except OSError:
            return False
        sig = signature(st)
        cached = self._python.get(script)
        if cached is not None and cached[0] == sig:
            return cached[1]
        try:
            with open(script, "rb") as f:
                first = f.readline(256)
        except OSError:
            first = b""
        answer = is_python(script, first)
        self._python[script] = (sig, answer)
        return answer


def _signature_if_there(path: str) -> Signature | None:
    """The file's stat signature, or None if there is none. A directory's .cgirt-mode is
    nearly never there: os.access says so without the exception a failed os.stat raises,
    which costs more than the system call."""
    if not os.access(path, os.F_OK):
        return None
    try:
        return signature(os.stat(path))
    except OSError:
        return None
