"""Seeded generators of opponent personas (fixed tabular policies) split into train/val/test.

Personas are the opponent populations of the Meta-MAPG experiments: IPD (cooperating vs.
defecting) and RPS (rock, paper or scissors dominant). Each persona is a probability
tensor ``[S, A]``; turn it into logits with ``log(p)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["PersonaSplit", "POPULATIONS", "make_personas", "ipd_personas", "rps_personas"]


@dataclass
class PersonaSplit:
    """Personas ``[N, S, A]`` per split and the type name of every persona."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    train_types: list[str]
    val_types: list[str]
    test_types: list[str]
    type_names: tuple[str, ...]


def _check_sizes(sizes: Sequence[int], n_types: int, n_per_type: int) -> tuple[int, int, int]:
    if len(sizes) != 3:
        raise ValueError(f"sizes must be (train, val, test), got {tuple(sizes)}")
    if any(s < 0 or s % n_types for s in sizes):
        raise ValueError(f"every split size must be a non-negative multiple of {n_types} types, got {tuple(sizes)}")
    if sum(sizes) > n_types * n_per_type:
        raise ValueError(
            f"sizes {tuple(sizes)} need {sum(sizes)} personas but only "
            f"{n_types} types x {n_per_type} = {n_types * n_per_type} are generated"
        )
    return sizes[0], sizes[1], sizes[2]


def _split(
    pools: list[torch.Tensor],
    type_names: tuple[str, ...],
    sizes: Sequence[int],
    gen: torch.Generator,
    test_order: list[torch.Tensor] | None = None,
) -> PersonaSplit:
    """Stratified split of per-type pools ``[n_per_type, S, A]`` into shuffled train/val/test.

    With ``test_order`` (per type, indices sorted most extreme first) the test personas are the
    first ones of that order and the rest go to train/val at random.
    """
    n_types = len(pools)
    n_tr, n_va, n_te = (s // n_types for s in _check_sizes(sizes, n_types, pools[0].shape[0]))
    parts: dict[str, list[tuple[torch.Tensor, list[str]]]] = {"train": [], "val": [], "test": []}
    for t, pool in enumerate(pools):
        if test_order is None:
            perm = torch.randperm(pool.shape[0], generator=gen)
            te, rest = perm[:n_te], perm[n_te:]
        else:
            te, rest = test_order[t][:n_te], test_order[t][n_te:]
            rest = rest[torch.randperm(rest.shape[0], generator=gen)]
        tr, va = rest[:n_tr], rest[n_tr : n_tr + n_va]
        for key, idx in (("train", tr), ("val", va), ("test", te)):
            parts[key].append((pool[idx], [type_names[t]] * idx.shape[0]))
    out: dict[str, object] = {}
    for key, chunks in parts.items():
        x = torch.cat([c[0] for c in chunks])
        names = [name for c in chunks for name in c[1]]
        order = torch.randperm(x.shape[0], generator=gen)
        out[key] = x[order]
        out[f"{key}_types"] = [names[i] for i in order.tolist()]
    return PersonaSplit(type_names=type_names, **out)  # type: ignore[arg-type]


def ipd_personas(
    seed: int,
    n_per_type: int = 240,
    sizes: Sequence[int] = (400, 40, 40),
    out_of_distribution: bool = False,
    dtype: torch.dtype = torch.float32,
) -> PersonaSplit:
    """IPD personas ``[N, 5, 2]`` (column 1 = P(defect)) of types "cooperating" and "defecting".

    Cooperating: P(defect) ~ U(0, 0.5) independently in each of the 5 states; defecting:
    P(defect) ~ U(0.5, 1). Every split holds equally many of each type, shuffled by ``seed``.
    The persona pool depends only on ``seed`` and ``n_per_type``, not on the split mode.

    ``out_of_distribution=True`` (the paper's Figure 3c, less train/test overlap): per type, the
    test personas are those with the most extreme mean over the 5 states of P(defect) (lowest
    for cooperating, highest for defecting); the remaining ones are split into train/val at
    random. So every test persona is more extreme than every train/val persona of its type.
    """
    gen = torch.Generator().manual_seed(seed)
    names = ("cooperating", "defecting")
    pools, orders = [], []
    for t in range(len(names)):
        p_def = (0.5 * t + 0.5 * torch.rand(n_per_type, 5, generator=gen, dtype=torch.float64)).to(dtype)
        pools.append(torch.stack([1.0 - p_def, p_def], dim=-1))
        # most extreme first: ascending mean P(defect) for cooperating, descending for defecting
        orders.append(torch.argsort(p_def.mean(-1), descending=(t == 1), stable=True))
    return _split(pools, names, sizes, gen, orders if out_of_distribution else None)


def rps_personas(
    seed: int,
    n_per_type: int = 240,
    sizes: Sequence[int] = (600, 60, 60),
    dtype: torch.dtype = torch.float32,
    n_players: int = 2,
) -> PersonaSplit:
    """RPS personas ``[N, 1 + 3**n_players, 3]`` of types "rock", "paper" and "scissors".

    A persona is a tabular policy of the ``n_players``-player game, so it has one row per
    state of that game (10, 28, 82 for 2, 3, 4 players). In each state the type's dominant
    action has probability ~ U(1/3, 1) and the other two actions share the remainder
    equally. Splits are stratified and shuffled by ``seed``; the 2-player pool is the
    same as before ``n_players`` existed.
    """
    if n_players < 2:
        raise ValueError(f"rps personas need n_players >= 2, got {n_players}")
    gen = torch.Generator().manual_seed(seed)
    names = ("rock", "paper", "scissors")
    n_actions = 3
    n_states = 1 + n_actions**n_players
    pools = []
    for t in range(n_actions):
        p_dom = 1.0 / 3.0 + (2.0 / 3.0) * torch.rand(n_per_type, n_states, generator=gen, dtype=torch.float64)
        p = ((1.0 - p_dom) / 2.0).unsqueeze(-1).repeat(1, 1, n_actions)
        p[..., t] = p_dom
        pools.append(p.to(dtype))
    return _split(pools, names, sizes, gen)


def _ipd_population(seed: int, n_players: int, out_of_distribution: bool) -> PersonaSplit:
    return ipd_personas(seed, out_of_distribution=out_of_distribution)


def _rps_population(seed: int, n_players: int, out_of_distribution: bool) -> PersonaSplit:
    if out_of_distribution:
        raise ValueError("rps has no out-of-distribution persona split (IPD only, Figure 3c)")
    return rps_personas(seed, n_players=n_players)


#: Persona populations by game name: ``(seed, n_players, out_of_distribution) -> PersonaSplit``.
POPULATIONS: dict[str, Callable[[int, int, bool], PersonaSplit]] = {
    "ipd": _ipd_population,
    "rps": _rps_population,
}


def make_personas(game: str, seed: int, n_players: int = 2, out_of_distribution: bool = False) -> PersonaSplit:
    """The persona population of a registered game, sized for ``n_players`` seats."""
    try:
        factory = POPULATIONS[game]
    except KeyError:
        raise ValueError(f"no persona population for game {game!r}; known: {', '.join(sorted(POPULATIONS))}") from None
    return factory(seed, n_players, out_of_distribution)
