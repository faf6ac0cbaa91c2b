#!/usr/bin/python3
# A site helper: text formatting.
SMALL = frozenset({"a", "an", "and", "from", "of", "the", "to"})


def title(text: str) -> str:
    words = text.split()
    return " ".join(w if i and w in SMALL else w.capitalize() for i, w in enumerate(words))
