"""The engine's L-BFGS: one evaluation per step, minimises, and takes back steps that raise the loss."""

from __future__ import annotations

import math

import pytest
import torch

from styletx.engines.optimize.lbfgs import SHRINK, SafeguardedLBFGS


def _run(fn, x0: torch.Tensor, steps: int, **kw):
    """Minimise ``fn`` from ``x0``; returns (x, losses evaluated, closure calls, optimiser)."""
    x = x0.clone().requires_grad_(True)
    opt = SafeguardedLBFGS([x], **kw)
    losses, calls = [], [0]

    def closure():
        calls[0] += 1
        opt.zero_grad()
        loss = fn(x)
        if torch.isfinite(loss):
            loss.backward()
        return loss

    for _ in range(steps):
        losses.append(float(opt.step(closure).detach()))
    return x.detach(), losses, calls[0], opt


def test_it_solves_a_quadratic_with_one_evaluation_per_step():
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    a = m @ m.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    solution = torch.linalg.solve(a, b)
    x, losses, calls, _ = _run(lambda x: 0.5 * x @ a @ x - b @ x, torch.zeros(6, dtype=torch.float64), 30)
    assert calls == 30
    assert torch.allclose(x, solution, atol=1e-8)
    assert losses[-1] == pytest.approx(float(-0.5 * b @ solution), abs=1e-10)


def test_rosenbrock_converges_taking_some_steps_back():
    def rosenbrock(x):
        return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2

    x, losses, _, opt = _run(rosenbrock, torch.tensor([-1.2, 1.0], dtype=torch.float64), 200)
    assert torch.allclose(x, torch.ones(2, dtype=torch.float64), atol=1e-4)
    assert min(losses) < 1e-8 and opt.rejected > 0  # the curved valley needs some steps taken back


def test_a_step_that_raises_the_loss_is_taken_back_and_retried_shorter():
    # f = x^4 from x = 1; the trial point is then put far past the minimum, as a bad curvature estimate would
    x = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = SafeguardedLBFGS([x], lr=1.0)

    def closure():
        opt.zero_grad()
        loss = (x ** 4).sum()
        loss.backward()
        return loss

    opt.step(closure)
    start, proposal = opt._point["x"].clone(), x.detach().clone()
    step = proposal - start
    with torch.no_grad():
        x.copy_(start + 40 * step)
    opt._point["d"], opt._point["t"] = 40 * step, 1.0
    opt._point["gtd"] = float(opt._point["g"].dot((40 * step).reshape(-1)))
    loss_far = float(opt.step(closure).detach())
    assert loss_far > 1.0 and opt.rejected == 1
    assert torch.allclose(x.detach(), start + SHRINK * 40 * step)


def test_a_non_finite_loss_counts_as_a_failed_step():
    def guarded(x):
        return torch.tensor(math.inf, dtype=x.dtype) if float(x.detach().abs().max()) > 3 else ((x - 2) ** 2).sum()

    x, losses, _, opt = _run(guarded, torch.zeros(3, dtype=torch.float64), 40, lr=10.0)
    assert math.isfinite(losses[-1]) and opt.rejected > 0
    assert torch.allclose(x, torch.full((3,), 2.0, dtype=torch.float64), atol=1e-6)


def test_it_refuses_more_than_one_tensor():
    with pytest.raises(ValueError, match="one tensor"):
        SafeguardedLBFGS([torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)])


def test_a_non_finite_first_evaluation_leaves_the_tensor_where_it_was():
    x = torch.ones(3, requires_grad=True)
    opt = SafeguardedLBFGS([x])

    def closure():
        opt.zero_grad()
        return torch.tensor(math.nan)  # no backward: no gradient

    assert math.isnan(float(opt.step(closure)))
    assert torch.equal(x.detach(), torch.ones(3)) and opt.rejected == 0
