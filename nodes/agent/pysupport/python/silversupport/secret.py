"""The instance's secret and named keys."""
import os
import re

__all__ = ["get_secret", "get_key"]


def get_secret():
    """The instance's secret: a random, stable ASCII string, made once per
    instance on its nodes (the same on every node of the instance)."""
    path = os.environ.get("SILVER_SECRET_FILE")
    if not path:
        raise RuntimeError(
            "SILVER_SECRET_FILE is not set: get_secret() works in a deployed app "
            "(or set SILVER_SECRET_FILE to a file holding a secret on your machine)"
        )
    with open(path, encoding="ascii") as f:
        return f.read().strip()


def get_key(name):
    """A named key, such as an API key: the value the operator set with
    `ssh silver config:set APP NAME=VALUE` (CONFIG_NAME in the environment),
    or None."""
    return os.environ.get("CONFIG_" + re.sub(r"[^A-Z0-9_]", "_", name.upper()))
