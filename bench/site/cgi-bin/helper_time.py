#!/usr/bin/python3
# A site helper: dates.
import datetime

FORMAT = "%Y-%m-%d %H:%M"


def stamp() -> str:
    return datetime.datetime(2024, 1, 2, 3, 4).strftime(FORMAT)
