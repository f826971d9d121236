"""Typed loading of the MeVa experiment configs (``configs/meva/*.toml``).

They live in their own folder because they are not ``league train`` experiments (those are
``configs/*.toml``, loaded by ``league.config.load_config``)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import torch

from league.meva.cola import ColaConfig
from league.meva.model import NetConfig, PlayerSymmetricNet
from league.meva.train import MeVaConfig

__all__ = ["load_logistic_config", "load_ipd_config", "load_ipd_model"]


def _with_net(cls: type, table: dict[str, Any]) -> Any:
    table = dict(table)
    net = NetConfig(**table.pop("net", {}))
    return cls(**table, net=net)


def load_logistic_config(path: str | Path) -> tuple[MeVaConfig, ColaConfig, dict[str, Any]]:
    """``[meva]`` -> MeVaConfig, ``[cola]`` -> ColaConfig (unknown keys raise), ``[evaluate]`` as a dict."""
    raw = tomllib.loads(Path(path).read_text())
    return _with_net(MeVaConfig, raw["meva"]), _with_net(ColaConfig, raw["cola"]), raw["evaluate"]


def load_ipd_config(path: str | Path) -> tuple[MeVaConfig, dict[str, Any]]:
    """``[meva]`` -> MeVaConfig (unknown keys raise), ``[evaluate]`` as a dict."""
    raw = tomllib.loads(Path(path).read_text())
    return _with_net(MeVaConfig, raw["meva"]), raw["evaluate"]


def load_ipd_model(config: str | Path, weights: str | Path) -> PlayerSymmetricNet:
    """The trained IPD meta-value model ``weights`` (a state dict) with the shape of ``config``'s
    ``[meva]`` table, frozen (so tournaments and evaluations share one loader)."""
    from league.games.differentiable import ExactIPD

    cfg, _ = load_ipd_config(config)
    game = ExactIPD()
    model = PlayerSymmetricNet(game.n_players, game.dim, cfg.n_quantiles, cfg.net)
    model.load_state_dict(torch.load(weights))
    return model.requires_grad_(False)
