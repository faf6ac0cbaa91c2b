#!/usr/bin/env python3
import ctypes
ctypes.string_at(0)
