"""The shared per-player network of MeVa's meta-value model and of COLA's update model.

Appendix D of the MeVa paper: each player's ``(x_i / scale, c_i)`` (``c`` = the player's
meta-discount rate gamma for MeVa, the look-ahead step alpha for COLA) goes through an MLP
to a representation ``z_i``; each player's output comes from a second MLP on its own
representation followed by the others' (own first), so one set of weights serves every
seat (the games are symmetric: ``f_1(x_1, x_2) = f_2(x_2, x_1)``). Each MLP is a
layer-normalised GeLU layer, residual blocks (layer-normalised GeLU, learned unit-wise gate
merging with the linear path), and a final layer-normalised GeLU layer; 64 units. With
``tanh_head`` the head's last nonlinearity is ``tanh`` (Appendix E), whose units exploration
flips in sign (``flip`` in :meth:`PlayerSymmetricNet.forward`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["NetConfig", "PlayerSymmetricNet", "sign_flips"]


@dataclass(frozen=True)
class NetConfig:
    """Shape of :class:`PlayerSymmetricNet`."""

    hidden: int = 64
    """Units of every layer."""
    blocks: int = 1
    """Residual blocks per MLP (1 for the logistic game, 2 for the IPD)."""
    tanh_head: bool = False
    """Use ``tanh`` as the head's final nonlinearity (needed for sign-flip exploration)."""
    input_scale: float = 10.0
    """Policies enter as ``x / input_scale``."""


class _Dense(nn.Module):
    """Linear -> LayerNorm -> nonlinearity."""

    def __init__(self, d_in: int, d_out: int, act: nn.Module | None = None) -> None:
        super().__init__()
        self.linear, self.norm, self.act = nn.Linear(d_in, d_out), nn.LayerNorm(d_out), act or nn.GELU()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.linear(h)))


class _Residual(nn.Module):
    """``h + gate * dense(h)`` with a learned gate per unit (initially 0.5 via a sigmoid)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.dense = _Dense(d, d)
        self.gate = nn.Parameter(torch.zeros(d))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate)
        return (1.0 - g) * h + g * self.dense(h)


def _mlp(d_in: int, cfg: NetConfig, last_act: nn.Module | None = None) -> nn.Sequential:
    return nn.Sequential(_Dense(d_in, cfg.hidden), *[_Residual(cfg.hidden) for _ in range(cfg.blocks)],
                         _Dense(cfg.hidden, cfg.hidden, last_act))


class PlayerSymmetricNet(nn.Module):
    """``(x [B, n, d], c [B, n]) -> [B, n, out]``, the same weights for every player."""

    def __init__(self, n_players: int, dim: int, out: int, cfg: NetConfig = NetConfig()) -> None:
        super().__init__()
        self.n_players, self.dim, self.out, self.cfg = n_players, dim, out, cfg
        self.encoder = _mlp(dim + 1, cfg)
        self.head = _mlp(n_players * cfg.hidden, cfg, nn.Tanh() if cfg.tanh_head else None)
        self.readout = nn.Linear(cfg.hidden, out)
        # order[i] = (i, i+1, ..., i-1): each player sees itself first, then the others
        n = n_players
        self.register_buffer("order", (torch.arange(n).unsqueeze(1) + torch.arange(n)) % n, persistent=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor, flip: torch.Tensor | None = None,
                own_path_only: bool = False) -> torch.Tensor:
        """Outputs per player. ``c`` broadcasts to ``x.shape[:-1]``; ``flip [B, hidden]`` (entries
        +-1) multiplies the head's last nonlinear units (exploration by sign flips).

        ``own_path_only``: the same values, but player ``i``'s output reaches ``x`` only through
        ``x_i`` (the others' representations are computed from a detached copy), so one
        backward pass of ``out.sum()`` gives every player's own gradient ``d out_i / d x_i``.
        """
        c = torch.as_tensor(c, dtype=x.dtype, device=x.device).expand(x.shape[:-1])
        encode = lambda v: self.encoder(torch.cat([v / self.cfg.input_scale, c.unsqueeze(-1)], dim=-1))  # noqa: E731
        z = encode(x)  # [B, n, H]
        if own_path_only:
            others = encode(x.detach())[..., self.order[:, 1:], :]  # [B, n, n-1, H]
            joint = torch.cat([z.unsqueeze(-2), others], dim=-2).flatten(-2)
        else:
            joint = z[..., self.order, :].flatten(-2)  # [B, n, n*H], own representation first
        h = self.head(joint)
        if flip is not None:
            h = h * flip.unsqueeze(-2)
        return self.readout(h)


def sign_flips(batch: int, hidden: int, prob: float, generator: torch.Generator) -> torch.Tensor:
    """``[batch, hidden]`` of ``-1`` with probability ``prob`` and ``+1`` otherwise."""
    u = torch.rand(batch, hidden, generator=generator)
    return 1.0 - 2.0 * (u < prob).float()
