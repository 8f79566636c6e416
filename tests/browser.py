"""A real headless Chromium for the page tests (Debian's chromium and chromium-driver, selenium).

`chrome()` installs the two packages with apt when they are missing (as root), and returns a
selenium driver; `why_not()` says why no browser can run here (the tests skip with that reason).
"""

from __future__ import annotations

import shutil

from apt import apt_install

PACKAGES = ["chromium", "chromium-driver"]


def _binaries() -> tuple[str | None, str | None]:
    return shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


def missing() -> list[str]:
    return [name for name, path in zip(("chromium", "chromedriver"), _binaries()) if path is None]


def install() -> str | None:
    """None when Chromium and its driver are here (apt-installed if needed), else why not."""
    return apt_install(PACKAGES, missing, "Chromium")


def why_not() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    return install()


def chrome(width: int = 1000, height: int = 900):
    """A headless Chromium driven by selenium (call why_not() first)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = _binaries()[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(_binaries()[1]))
