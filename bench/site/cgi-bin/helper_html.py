#!/usr/bin/python3
# A site helper: page layout.
import html

TEMPLATE = "<!DOCTYPE html>\n<html><head><title>{title}</title></head><body>{body}</body></html>"
SEEN: list[str] = []


def page(title: str, body: str) -> str:
    SEEN.append(title)
    return TEMPLATE.format(title=html.escape(title), body=html.escape(body))
