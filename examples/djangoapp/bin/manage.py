#!/usr/bin/env python3
"""Run with `ssh silver run sampleapp manage.py`."""
import sys

print("manage:", " ".join(sys.argv[1:]))
