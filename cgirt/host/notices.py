"""The gateway's signed notices on the host's status address, each checked with its site's secret.

A notice (cgirt/notice.py) names its site: the site directory's name, as the gateway knows
it (its `runners = SITE=ADDRESS` too). The host takes notices for each of its sites that has
a `publish_secret`, checked with that site's own secret, and hands a good one to the master:
a publish bumps the epoch of that site's workers, a reload replaces them. A notice for a
site the host does not serve is refused with a 404 that says so, one that is not signed
with the site's secret with a 403; neither changes anything.

The secrets stay in the master: a site's workers (which run its owner's code) never see
them.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable, Iterable
from urllib.parse import parse_qs

from ..errors import Forbidden, ScriptNotFound
from ..notice import MAX_SKEW, NoticeRefused, Verifier

if TYPE_CHECKING:
    from .config import SiteSpec

log = logging.getLogger("cgirt.error")


class HostNotices:
    """The host status server's `on_notice`: (action, query, Authorization) -> body."""

    def __init__(self, publish: Callable[[str], int], reload: Callable[[str], None]) -> None:
        self._publish = publish  # the site's name -> its epoch count
        self._reload = reload
        # By site directory name: (the site's name in the configuration, its secret, checker)
        self._sites: dict[str, tuple[str, bytes, Verifier]] = {}
        # Verifiers of sites no longer served, by (directory, secret), with when they left:
        # a site removed and added back with its secret within a notice's lifetime would
        # otherwise take again the notices it took before.
        self._gone: dict[tuple[str, bytes], tuple[float, Verifier]] = {}

    def sites(self, specs: Iterable["SiteSpec"], now: float | None = None) -> None:
        """The sites served now. A site whose secret is unchanged keeps its verifier, so a
        notice replayed across a SIGHUP is still known, even one that removed the site and
        one that added it back."""
        now = time.monotonic() if now is None else now
        self._gone = {k: v for k, v in self._gone.items() if now - v[0] <= 2 * MAX_SKEW}
        for directory, (_, secret, verifier) in self._sites.items():
            self._gone[directory, secret] = (now, verifier)
        sites = {}
        for spec in specs:
            if spec.secret is None:
                continue
            directory = spec.runner.site.name
            gone = self._gone.pop((directory, spec.secret), None)
            verifier = gone[1] if gone is not None else Verifier(spec.secret, directory)
            sites[directory] = (spec.name, spec.secret, verifier)
        self._sites = sites

    def __call__(self, action: str, query: str, authorization: str) -> bytes:
        site = parse_qs(query).get("site", [""])[0]
        entry = self._sites.get(site)
        if entry is None:
            log.warning("cgirt host: %s notice for site %r refused: not served here with a "
                        "publish_secret", action, site)
            raise ScriptNotFound(f"{action} notice refused: this host serves no site {site!r} "
                                 "that takes notices (a site directory of that name, with a "
                                 "publish_secret)")
        name, _, verifier = entry
        try:
            verifier.check(query, authorization, action=action)
        except NoticeRefused as exc:
            log.warning("cgirt host: %s notice for site %s refused: %s", action, name, exc)
            raise Forbidden(f"{action} notice refused: {exc}") from None
        if action == "reload":
            self._reload(name)
            return b"reloading\n"
        return b"published %d\n" % self._publish(name)
