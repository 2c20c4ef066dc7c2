"""Where the app is running."""
import os

__all__ = ["is_production"]


def is_production():
    """True when the app runs deployed (by gitreceive or Silver Lining),
    False on a developer's machine."""
    version = os.environ.get("SILVER_VERSION", "")
    return version.startswith("gitreceive/") or version.startswith("silverlining/")
