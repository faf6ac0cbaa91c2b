"""`python -m bench.ablation`: each switch names a real part of the runner, and a request
served with switches off is still a 200 (else the count would be that of an error path)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import ablation
from tests.support.servers import REPO


@pytest.mark.parametrize("variant", ablation.VARIANTS)
def test_every_switch_names_an_attribute_the_runner_has(variant: str) -> None:
    for switch in ablation.switches(variant):
        owner, name = ablation.target(switch)
        assert hasattr(owner, name)


def test_a_switch_whose_attribute_is_gone_is_an_error() -> None:
    with pytest.raises(AttributeError, match="cgirt.runner.app.CgiApp._no_such_duty is gone"):
        ablation.target(("cgirt.runner.app", "CgiApp._no_such_duty", lambda: None))


def test_every_duty_is_in_the_variant_without_all_of_them() -> None:
    every = ablation.switches(f"without {ablation.ALL_DUTIES}")
    assert every == [s for duty in ablation.DUTIES for s in ablation.switches(f"without {duty}")]
    assert ablation.switches("cgirt") == []


@pytest.mark.parametrize("variant", [f"without {ablation.ALL_DUTIES}", ablation.FLOOR_IN_CGIRT,
                                     ablation.FLOOR])
def test_requests_are_still_answered_with_switches_off(variant: str) -> None:
    # hotpath exits non-zero unless the first response is a 200.
    run = subprocess.run([sys.executable, "-X", "utf8", "-m", "bench.ablation", "--run", variant,
                          "--requests", "5", "--script", "form"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "form:" in run.stdout and "µs per request" in run.stdout
