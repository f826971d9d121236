"""Batched n-player iterated matrix games with one-step memory.

The state is the previous joint action (or the start state ``s0``); see
``docs/conventions.md`` for the action, state and payoff conventions.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

__all__ = ["IteratedMatrixGame", "ipd", "rps", "matrix_game"]


class IteratedMatrixGame:
    """An n-player matrix game repeated with the last joint action as the state.

    ``payoff[k, a_0, ..., a_{n-1}]`` is seat ``k``'s reward. State ``0`` is ``s0``;
    after joint action ``a`` the state is ``1 + ravel(a)`` with seat 0 most significant.
    All methods are vectorised over arbitrary leading batch dimensions.
    """

    def __init__(self, payoff: torch.Tensor, name: str = "matrix") -> None:
        # a tensor keeps its device (also under another default device); anything else is read onto the CPU
        payoff = torch.as_tensor(payoff, device=payoff.device if isinstance(payoff, torch.Tensor) else "cpu")
        if not payoff.is_floating_point():
            raise ValueError(f"payoff must be a floating-point tensor, got dtype {payoff.dtype}")
        if payoff.dim() < 2:
            raise ValueError(f"payoff must have shape [n, A, ..., A] (n action axes), got {tuple(payoff.shape)}")
        n = payoff.shape[0]
        if payoff.dim() != n + 1:
            raise ValueError(
                f"payoff for {n} players needs {n} action axes (shape [n, A, ..., A]), "
                f"got shape {tuple(payoff.shape)}"
            )
        a = payoff.shape[1]
        if a < 1 or any(d != a for d in payoff.shape[1:]):
            raise ValueError(f"all action axes of payoff must have the same size A >= 1, got {tuple(payoff.shape)}")
        self.name = name
        self._payoff = payoff.clone()
        self._n = n
        self._a = a
        # strides of the ravel index, seat 0 most significant
        self._strides = torch.tensor([a ** (n - 1 - k) for k in range(n)], dtype=torch.long, device=payoff.device)
        # [A**n, n]: row j is the reward vector of joint action with ravel index j
        self._joint_payoff = self._payoff.reshape(n, a**n).transpose(0, 1).contiguous()

    # ------------------------------------------------------------------ properties
    @property
    def payoff(self) -> torch.Tensor:
        """Payoff tensor ``[n, A, ..., A]``."""
        return self._payoff

    @property
    def joint_payoff(self) -> torch.Tensor:
        """Rewards per joint-action index, ``[A**n, n]`` (row ``j`` is state ``j + 1``'s action)."""
        return self._joint_payoff

    @property
    def n_agents(self) -> int:
        return self._n

    @property
    def n_actions(self) -> int:
        return self._a

    @property
    def n_joint_actions(self) -> int:
        return self._a**self._n

    @property
    def n_states(self) -> int:
        return 1 + self._a**self._n

    @property
    def obs_dim(self) -> int:
        return self.n_states

    @property
    def device(self) -> torch.device:
        return self._payoff.device

    @property
    def dtype(self) -> torch.dtype:
        return self._payoff.dtype

    def __repr__(self) -> str:
        return f"IteratedMatrixGame(name={self.name!r}, n_agents={self._n}, n_actions={self._a})"

    # ------------------------------------------------------------------ validation
    def _check_actions(self, actions: torch.Tensor) -> None:
        if not isinstance(actions, torch.Tensor):
            raise ValueError(f"actions must be a torch.Tensor, got {type(actions).__name__}")
        if actions.dtype == torch.bool or actions.is_floating_point() or actions.is_complex():
            raise ValueError(f"actions must be an integer (long) tensor, got dtype {actions.dtype}")
        if actions.dim() == 0 or actions.shape[-1] != self._n:
            raise ValueError(
                f"actions must have shape [*batch, n={self._n}] for game {self.name!r}, got {tuple(actions.shape)}"
            )
        if actions.numel() > 0:
            lo, hi = torch.aminmax(actions)  # one reduction, not two; one sync for the test
            if bool((lo < 0) | (hi >= self._a)):
                lo, hi = int(lo), int(hi)
                raise ValueError(
                    f"actions must lie in [0, {self._a - 1}] for game {self.name!r}, got values in [{lo}, {hi}]"
                )

    def _check_state(self, state: torch.Tensor) -> None:
        if not isinstance(state, torch.Tensor):
            raise ValueError(f"state must be a torch.Tensor, got {type(state).__name__}")
        if state.dtype == torch.bool or state.is_floating_point() or state.is_complex():
            raise ValueError(f"state must be an integer (long) tensor, got dtype {state.dtype}")
        if state.numel() > 0:
            lo, hi = torch.aminmax(state)
            if bool((lo < 0) | (hi >= self.n_states)):
                lo, hi = int(lo), int(hi)
                raise ValueError(
                    f"state must lie in [0, {self.n_states - 1}] for game {self.name!r}, got values in [{lo}, {hi}]"
                )

    # ------------------------------------------------------------------ dynamics
    def reset(self, batch_shape: tuple[int, ...] | int = ()) -> torch.Tensor:
        """Start states (all ``s0 == 0``), a LongTensor of shape ``batch_shape``."""
        if isinstance(batch_shape, int):
            batch_shape = (batch_shape,)
        return torch.zeros(tuple(batch_shape), dtype=torch.long, device=self.device)

    def joint_index(self, actions: torch.Tensor) -> torch.Tensor:
        """Ravel index of joint actions ``[*batch, n] -> [*batch]`` (seat 0 most significant)."""
        self._check_actions(actions)
        return (actions.long() * self._strides.to(actions.device)).sum(-1)

    def step(self, state: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Play one round: returns ``(next_state [*batch], rewards [*batch, n])``.

        Rewards depend only on the joint action; ``state`` is checked for shape and range.
        """
        self._check_state(state)
        joint = self.joint_index(actions)
        if state.shape != joint.shape:
            raise ValueError(
                f"state shape {tuple(state.shape)} must equal the batch shape of actions {tuple(joint.shape)}"
            )
        return self.transition(joint)

    def transition(self, joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(next_state, rewards)`` after joint actions ``joint [*batch]`` (ravel indices from
        :meth:`joint_index`, which checks them). The state does not enter: after the first
        round it is the last joint action, so a caller that owns the state (the environment)
        skips :meth:`step`'s state check, the costliest part of a rollout step."""
        rewards = self._joint_payoff.to(joint.device)[joint]
        return joint + 1, rewards

    def observe(self, state: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """One-hot observation ``[*batch, n_states]`` of the (shared) state."""
        self._check_state(state)
        return F.one_hot(state.long(), self.n_states).to(dtype)


def matrix_game(payoff: torch.Tensor, name: str = "matrix") -> IteratedMatrixGame:
    """An iterated game from an arbitrary payoff tensor ``[n, A, ..., A]``."""
    return IteratedMatrixGame(payoff, name)


def ipd(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> IteratedMatrixGame:
    """Iterated prisoner's dilemma (0 = C, 1 = D) with the Meta-MAPG payoff (LOLA's + 1.5),
    its tensors on ``device``."""
    p0 = torch.tensor([[0.5, -1.5], [1.5, -0.5]], dtype=dtype, device=device)
    return IteratedMatrixGame(torch.stack([p0, p0.T]), "ipd")


def rps(n_players: int = 2, dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu") -> IteratedMatrixGame:
    """Iterated rock-paper-scissors. A seat's reward is the mean of its pairwise outcomes
    (+1 win, -1 loss, 0 tie) against each of the other ``n - 1`` seats, so rewards stay in
    ``[-1, 1]`` for every ``n`` and the 2-player game is the paper's Table 2. Tensors on ``device``."""
    if n_players < 2:
        raise ValueError(f"rps needs n_players >= 2, got {n_players}")
    grids = torch.meshgrid(*[torch.arange(3, device=device)] * n_players, indexing="ij")  # n tensors [3]*n
    acts = torch.stack(grids)  # [n, 3, ..., 3]
    payoff = torch.zeros(acts.shape, dtype=dtype, device=device)
    for k, j in itertools.permutations(range(n_players), 2):
        diff = (acts[k] - acts[j]) % 3  # 1: k beats j, 2: j beats k
        payoff[k] += (diff == 1).to(dtype) - (diff == 2).to(dtype)
    payoff /= n_players - 1
    name = "rps" if n_players == 2 else f"rps{n_players}"
    return IteratedMatrixGame(payoff, name)
