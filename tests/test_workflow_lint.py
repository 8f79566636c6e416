"""The workflow passes Snakemake's linter and snakefmt, as CI checks them."""

import subprocess
import sys

from conftest import ROOT


def run(*cmd):
    return subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)


def test_snakemake_lint_is_clean():
    p = run(sys.executable, "-m", "snakemake", "--lint")
    assert p.returncode == 0 and "Congratulations" in p.stdout, p.stdout[-4000:]


def test_snakefmt_check_is_clean():
    p = run(sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules")
    assert p.returncode == 0, p.stdout[-4000:]
