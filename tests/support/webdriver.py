"""A small W3C WebDriver client for Debian's chromium + chromium-driver (no extra package)."""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from .procs import Proc, wait_for
from .servers import require

_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class Browser:
    def __init__(self, workdir: Path) -> None:
        driver = require("chromedriver")
        chromium = require("chromium")
        workdir.mkdir(parents=True, exist_ok=True)
        self.driver = Proc([driver, "--port=0"], workdir / "chromedriver.log")
        match = wait_for(lambda: re.search(r"started successfully on port (\d+)", self.driver.output()),
                         20, "chromedriver")
        self.base = f"http://127.0.0.1:{match.group(1)}"  # type: ignore[union-attr]
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", f"--user-data-dir={workdir / 'profile'}"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium, "args": args}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())["value"]

    def _s(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        self._s("POST", "/url", {"url": url})

    def find(self, css: str) -> str:
        found = self._s("POST", "/element", {"using": "css selector", "value": css})
        if _ELEMENT not in found:
            raise AssertionError(f"no {css!r} on {self.url}: {found}\n{self.source()[:2000]}")
        return str(found[_ELEMENT])

    def source(self) -> str:
        return str(self._s("GET", "/source"))

    def type(self, css: str, text: str) -> None:
        self._s("POST", f"/element/{self.find(css)}/value", {"text": text})

    def click(self, css: str) -> None:
        self._s("POST", f"/element/{self.find(css)}/click", {})

    def text(self, css: str = "body") -> str:
        return str(self._s("GET", f"/element/{self.find(css)}/text"))

    @property
    def url(self) -> str:
        return str(self._s("GET", "/url"))

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self._s("GET", "/screenshot")))

    def quit(self) -> None:
        try:
            self._s("DELETE", "")
        finally:
            self.driver.stop()
