"""The ``device`` field, checked without a GPU.

A CUDA run fails where a tensor is made on the process's default device (a factory without
``device=``: ``torch.zeros(n)``, ``torch.arange``, ``torch.rand(..., generator=g)``) and then
meets a tensor on the config's device. These tests make that mistake visible on a CPU-only
machine: they run with ``device = "cpu"`` given explicitly while the default device is
``meta`` (tensors without storage). Any tensor that does not take its device from the config,
an input or a generator is then a meta tensor, and mixing it with a CPU tensor raises (or,
where meta data would be read, changes the numbers, which the exact comparison with a plain
run catches).
"""

from __future__ import annotations

import contextlib
import queue

import numpy as np
import pytest
import torch

from league.config import AgentConfig, ChainConfig, ConfigError, ExperimentConfig, GameConfig, TrainConfig, load_config
from league.devices import resolve_device, to_cpu
from league.estimators import ESTIMATORS
from league.evaluators import SampledEvaluator
from league.experiment import Checkpoint, meta_test, train_one
from league.games import ipd
from league.meta_training import MetaTraining
from league.methods import METHOD_NAMES
from league.policies import Tabular
from league.updates import LolaDice, ascend


@contextlib.contextmanager
def default_device_meta():
    """Make ``meta`` the default device for the block (restored however it ends)."""
    before = torch.get_default_device()
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(before)


def test_the_trick_catches_a_factory_without_device():
    """The premise, on this torch: under a ``meta`` default a factory without ``device=`` makes
    a meta tensor that refuses to mix with a CPU tensor; with ``device=`` (or from a CPU
    generator's device) it is a CPU tensor."""
    x = torch.ones(3, device="cpu")
    g = torch.Generator().manual_seed(0)
    with default_device_meta():
        for made in (torch.zeros(3), torch.arange(3), torch.tensor([1.0, 2.0, 3.0]),
                     torch.rand(3, generator=g)):
            assert made.device.type == "meta"
            with pytest.raises(RuntimeError, match="meta"):
                x + made
        assert (x + torch.rand(3, generator=g, device=g.device)).device.type == "cpu"
    assert torch.get_default_device().type == "cpu"


def _cfg(game: str, n_players: int, method: str, **train) -> ExperimentConfig:
    """A tiny experiment: one meta-iteration with validation, K=3 episodes of H=5 rounds, L=2."""
    return ExperimentConfig(methods=[method], seeds=[0], workers=1, device="cpu",
                            game=GameConfig(name=game, n_players=n_players),
                            chain=ChainConfig(trajectories=3, horizon=5, length=2),
                            agent=AgentConfig(hidden=6),
                            train=TrainConfig(iterations=1, meta_batch=2, validate_every=1, **train))


def _run(cfg: ExperimentConfig, method: str):
    """Train one iteration (with validation), then meta-test the best checkpoint."""
    result = train_one(cfg, method, seed=0)
    return result, meta_test(cfg, result.best)


def _assert_same_run(a, b) -> None:
    (ra, ta), (rb, tb) = a, b
    for ca, cb in ((ra.best, rb.best), (ra.final, rb.final)):
        assert (ca.iteration, ca.val_score) == (cb.iteration, cb.val_score), "validation differs"
        for k in ca.policy:
            assert torch.equal(ca.policy[k], cb.policy[k]), k
        assert torch.equal(ca.lr, cb.lr)
    assert [{k: v for k, v in m.items() if k != "seconds"} for m in ra.metrics] == \
           [{k: v for k, v in m.items() if k != "seconds"} for m in rb.metrics]
    assert (ta.rewards == tb.rewards).all()
    assert (ta.action_probs is None) == (tb.action_probs is None)
    if ta.action_probs is not None:  # NaN where a state was unseen
        assert np.array_equal(ta.action_probs, tb.action_probs, equal_nan=True)


@pytest.mark.parametrize("game, n_players, method, estimator", [
    *[("ipd", 2, m, "dice") for m in METHOD_NAMES],  # every registered method (LOLA-DiCE among them)
    *[("ipd", 2, "meta-mapg", e) for e in ESTIMATORS if e != "dice"],  # every other meta-gradient form
    ("rps", 3, "meta-mapg", "dice"),
])
def test_a_meta_iteration_takes_its_device_from_the_config(game, n_players, method, estimator):
    """Meta-training (one meta-update, validation, checkpoint) and meta-testing with
    ``device = "cpu"`` under a ``meta`` default device run, and give exactly the numbers of
    the same run without the trick."""
    cfg = _cfg(game, n_players, method, estimator=estimator)
    plain = _run(cfg, method)
    with default_device_meta():
        tricked = _run(cfg, method)
    _assert_same_run(plain, tricked)
    assert plain[0].metrics[1]["iteration"] == 1  # the meta-update ran (not only validation)


def test_training_state_lives_on_the_config_device_and_saves_on_the_cpu():
    """Every leaf of the meta-training state (policy, lr, critic, Adam moments, stream) is on
    the config's device while training, and ``state_dict`` hands out CPU tensors only."""
    cfg = _cfg("ipd", 2, "meta-mapg")
    with default_device_meta():
        mt = MetaTraining.build(cfg, "meta-mapg", 0)
        mt.iterate(mt.evaluator, mt.sample_peers())
        assert mt.generator.device.type == "cpu"
        live = [*mt.learner.policy.values(), mt.learner.lr, *mt.learner.critic.params.values()]
        assert {t.device.type for t in live} == {"cpu"}
        state = mt.state_dict()
    assert {t.device.type for t in _tensors(state)} == {"cpu"}


def _lola_update(K: int = 4, H: int = 6, seed: int = 0, device: str = "cpu"):
    """One LOLA-DiCE update of two tabular IPD agents (as benchmarks/_lola_worker.py times it)
    with every tensor on ``device``: both agents look ahead on fresh episodes, then ascend."""
    game = ipd(device=device)
    table = Tabular(n_states=game.n_states, n_actions=game.n_actions)
    generator = torch.Generator(device=device).manual_seed(seed)
    evaluator = SampledEvaluator(game, [table, table], K, H, 0.96, generator)
    rule = LolaDice(lookahead=1)
    lr_in = [torch.full((1, 1), 0.3, device=device)] * 2
    lr_out = torch.tensor([0.2], device=device)
    params = [table.init_params(generator) for _ in range(2)]
    for _ in range(2):  # from the uniform start, then from a non-trivial joint policy
        live = [{n: v.detach().requires_grad_(True) for n, v in p.items()} for p in params]
        params = [{n: v.detach() for n, v in ascend(live[k], rule.objective(evaluator, live, None, k, lr_in, 0),
                                                      lr_out, create_graph=False).items()} for k in range(2)]
    return params


def test_a_lola_dice_update_takes_its_device_from_its_inputs():
    """The LOLA-DiCE update path (look-ahead rollouts, DiCE, baseline, second-order
    gradients) under a ``meta`` default device equals the plain update exactly."""
    plain = _lola_update()
    with default_device_meta():
        tricked = _lola_update()
    for p, q in zip(plain, tricked):
        assert q["logits"].device.type == "cpu"
        assert torch.equal(p["logits"], q["logits"])
    assert not torch.equal(plain[0]["logits"], torch.zeros_like(plain[0]["logits"]))  # it learned


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_one_clear_error():
    """``device = "cuda"`` where there is none: one ValueError naming the field, at load and
    when a config made in code reaches the learning code."""
    with pytest.raises(ConfigError, match=r"device = 'cuda', but torch.cuda.is_available\(\) is false"):
        load_config(None, ["device=cuda"])
    with pytest.raises(ValueError, match=r"device = 'cuda:1', but torch.cuda.is_available\(\) is false"):
        train_one(ExperimentConfig(device="cuda:1"), "meta-mapg", 0)
    with pytest.raises(ConfigError, match="device = 'gpu' is not a torch device"):
        load_config(None, ["device=gpu"])
    with pytest.raises(ConfigError, match="device type 'meta' is not supported"):
        load_config(None, ["device=meta"])
    assert resolve_device("cpu") == torch.device("cpu")


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for v in tree.values():
            yield from _tensors(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _tensors(v)


def test_a_written_checkpoint_loads_on_the_cpu_and_meta_tests_the_same(tmp_path):
    """The run's job (train, save the checkpoints, meta-test) under a ``meta`` default device:
    the file it writes loads with ``map_location="cpu"``, holds CPU tensors only, and its
    best checkpoint meta-tests to the job's own numbers."""
    from league.run import _job

    cfg = _cfg("ipd", 2, "meta-mapg")
    with default_device_meta():
        out = _job(cfg, "meta-mapg", 0, tmp_path, queue.SimpleQueue())
    saved = torch.load(tmp_path / "meta-mapg_seed0.pt", map_location="cpu", weights_only=True)
    tensors = list(_tensors(saved))
    assert tensors and {t.device.type for t in tensors} == {"cpu"}
    again = meta_test(cfg, Checkpoint.from_dict(saved["best"]))
    assert (again.rewards == out["rewards"]).all()


def test_to_cpu_keeps_the_structure_and_cpu_tensors_as_they_are():
    t = torch.ones(2)
    moved = to_cpu({"a": [t, (t, 3)], "b": "x"})
    assert moved["a"][0] is t and moved["a"][1][0] is t and moved["a"][1][1] == 3 and moved["b"] == "x"
    assert isinstance(moved["a"][1], tuple)


def test_halfcheetah_moves_numpy_observations_to_the_config_device(tmp_path):
    """HalfCheetah (MuJoCo through PettingZoo): the environment's tensors are the CPU's by
    declaration (``PettingZooEnv.device``) and each step's are moved to the policies' device;
    a meta-iteration with validation and the meta-test under a ``meta`` default device equal
    the plain run. Skipped without MuJoCo."""
    pytest.importorskip("mujoco")
    pytest.importorskip("gymnasium_robotics")
    from league.teammates import TeammateConfig, pretrain_teammates
    from tests.test_halfcheetah import TINY, _config

    pretrain_teammates(TeammateConfig(directory=str(tmp_path), **TINY))
    cfg = _config(str(tmp_path), ("train.iterations=1", "train.validate_every=1", "device=cpu"))
    plain = _run(cfg, "meta-mapg")
    with default_device_meta():
        tricked = _run(cfg, "meta-mapg")
    _assert_same_run(plain, tricked)


def test_the_league_coordinator_refuses_a_device_other_than_the_cpu():
    """The league's processes exchange CPU tensors over the wire, so its meta-mapg coordinator
    says so instead of failing later in an encoder."""
    from services.coordinator import MODES, CoordinatorConfig

    cfg = CoordinatorConfig(referee="localhost:1", meta_agent="meta", personas=["p0"])
    with pytest.raises(ValueError, match="device = 'cuda' is for embedded training"):
        MODES["meta-mapg"](ExperimentConfig(device="cuda", methods=["meta-mapg"]), "meta-mapg", 0, cfg)


def test_a_checkpoint_moves_every_tensor_to_the_cpu_before_it_is_saved():
    """``Checkpoint.to_dict`` copies the policy and the learning rates to the CPU (here on a
    CPU-only machine the only other device is ``meta``, whose tensors cannot be copied out:
    asking to move them raises, keeping them would not)."""
    meta = torch.zeros(1, 2, device="meta")
    for policy, lr in (({"w": meta}, torch.zeros(1, 2)), ({"w": torch.zeros(1, 2)}, meta)):
        with pytest.raises(NotImplementedError, match="meta tensor"):
            Checkpoint("meta-mapg", 0, 0, policy, lr, 0.0).to_dict()
