"""L-BFGS with one loss evaluation per step and a backtracking safeguard.

The engine reports, records and can be interrupted after every evaluation, so each step must cost exactly one.
``torch.optim.LBFGS(max_iter=1)`` does that but takes every quasi-Newton step whole: on the quartic Gram
losses its early curvature estimates are poor, and a step can multiply the loss by 1000 (measured: the cat x
swirls test at 80 px went 72 -> 72424 and then crept, ending close to the photo). Its strong-Wolfe line search
fixes the overshoot but spends several evaluations per step and, run one iteration at a time, stalled.

This optimiser checks each step when the next evaluation comes in (Armijo's sufficient-decrease condition); a
step that fails it is taken back and retried along the same direction at a quarter of the length, so a bad
step costs one evaluation instead of the run. Accepted steps add their curvature pair to the history (two-loop
recursion, Nocedal & Wright, Algorithm 7.4).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, List, Optional

import torch
from torch import Tensor

__all__ = ["SafeguardedLBFGS"]

#: Armijo's constant: a step must lower the loss by at least this share of what its slope promised.
ARMIJO = 1e-4
#: A rejected step is retried at this share of its length ...
SHRINK = 0.25
#: ... at most this many times in a row; then the history is dropped and the next step follows the gradient.
MAX_REJECTS = 6


class SafeguardedLBFGS(torch.optim.Optimizer):
    """L-BFGS over one tensor, one ``closure()`` call per :meth:`step` (see the module docstring).

    ``lr``: the length of a quasi-Newton step (1 = the full step); ``history_size``: curvature pairs kept
    (two image-sized tensors each). ``closure`` zeroes the gradient, computes the loss, calls ``backward`` and
    returns the loss; a non-finite loss counts as a failed step. ``rejected`` counts the steps taken back.
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 1.0, history_size: int = 100) -> None:
        params = list(params)
        if len(params) != 1:
            raise ValueError("SafeguardedLBFGS optimises one tensor")
        super().__init__(params, {"lr": lr, "history_size": history_size})
        self._dirs: List[Tensor] = []   # s_k = x_{k+1} - x_k
        self._steps: List[Tensor] = []  # y_k = g_{k+1} - g_k
        self._point: Optional[dict] = None  # the last accepted point and the step proposed from it
        self.rejected = 0
        self._rejects_in_a_row = 0

    @property
    def _param(self) -> Tensor:
        return self.param_groups[0]["params"][0]

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        """Evaluate the loss at the current pixels, then move them to the next trial point. Returns the loss."""
        with torch.enable_grad():
            loss_t = closure()
        loss = float(loss_t.detach())
        x = self._param
        grad = x.grad
        previous = self._point
        if not self._acceptable(loss, grad, previous):
            if previous is None:
                return loss_t  # a non-finite start: nothing to go back to (the engine restores its best image)
            self.rejected += 1
            self._rejects_in_a_row += 1
            if self._rejects_in_a_row <= MAX_REJECTS:
                previous["t"] *= SHRINK
                x.copy_(previous["x"]).add_(previous["d"], alpha=previous["t"])
                return loss_t
            # the direction keeps failing: forget the curvature and go back to the last good point's gradient
            self._dirs.clear()
            self._steps.clear()
            x.copy_(previous["x"])
            self._propose(x, previous["f"], previous["g"], first=True)
            return loss_t
        self._rejects_in_a_row = 0
        flat_grad = grad.detach().reshape(-1).clone()
        if previous is not None:
            self._remember(x.detach().reshape(-1) - previous["x"].reshape(-1), flat_grad - previous["g"])
        self._propose(x, loss, flat_grad, first=previous is None)
        return loss_t

    def _acceptable(self, loss: float, grad: Optional[Tensor], previous: Optional[dict]) -> bool:
        """Finite, and (after a step) Armijo's sufficient decrease over the point the step came from."""
        if not math.isfinite(loss) or grad is None or not bool(torch.isfinite(grad).all()):
            return False
        return previous is None or loss <= previous["f"] + ARMIJO * previous["t"] * previous["gtd"]

    def _remember(self, s: Tensor, y: Tensor) -> None:
        """Add a curvature pair if it is positive (else L-BFGS's matrix would stop being positive definite).

        The test is relative (the cosine of s and y), not torch's absolute ``y.s > 1e-10``: the engine's
        normalised losses have small gradients, and the first, short step's pair would fail an absolute test
        every time, leaving the run on tiny gradient steps (measured: the hubble pair never left the photo).
        """
        if float(y.dot(s)) <= 1e-8 * float(s.norm() * y.norm()):
            return
        self._dirs.append(s)
        self._steps.append(y)
        if len(self._dirs) > self.param_groups[0]["history_size"]:
            self._dirs.pop(0)
            self._steps.pop(0)

    def _direction(self, flat_grad: Tensor) -> Tensor:
        """-H g by the two-loop recursion (H: the inverse Hessian estimate from the kept pairs)."""
        q = flat_grad.neg()
        rhos = [1.0 / float(y.dot(s)) for s, y in zip(self._dirs, self._steps)]
        alphas = []
        for s, y, rho in zip(reversed(self._dirs), reversed(self._steps), reversed(rhos)):
            a = rho * float(s.dot(q))
            alphas.append(a)
            q.add_(y, alpha=-a)
        s, y = self._dirs[-1], self._steps[-1]
        q.mul_(float(s.dot(y)) / float(y.dot(y)))
        for s, y, rho, a in zip(self._dirs, self._steps, rhos, reversed(alphas)):
            b = rho * float(y.dot(q))
            q.add_(s, alpha=a - b)
        return q

    def _propose(self, x: Tensor, loss: float, flat_grad: Tensor, *, first: bool) -> None:
        """Remember the accepted point and move ``x`` along the next direction."""
        lr = self.param_groups[0]["lr"]
        d = self._direction(flat_grad) if self._dirs else flat_grad.neg()
        gtd = float(flat_grad.dot(d))
        if not gtd < 0:  # not a descent direction (a stale history): start again from the gradient
            self._dirs.clear()
            self._steps.clear()
            d = flat_grad.neg()
            gtd = float(flat_grad.dot(d))
        if self._dirs:
            t = lr
        elif first:  # a gradient step of at most unit L1 length, as torch's LBFGS starts
            t = min(1.0, 1.0 / max(float(flat_grad.abs().sum()), 1e-30)) * lr
        else:  # still no curvature pair (the loss curves down here): longer gradient steps, up to lr
            t = min(self._point["t"] * 4, lr)
        d = d.view_as(x)
        self._point = {"x": x.detach().clone(), "f": loss, "g": flat_grad, "d": d, "t": t, "gtd": gtd}
        x.add_(d, alpha=t)
