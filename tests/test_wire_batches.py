"""The n-seat trajectory batch on the wire: shared or per-seat observations, integer or float
actions, real dones, and batches over the 4 MiB message limit chunked, checksummed and
reassembled exactly, through the codec and end to end over gRPC (a real referee and agent
servers on 127.0.0.1 in this process)."""

from __future__ import annotations

import threading

import grpc
import pytest
import torch

from league.envs.matrix import MatrixGameEnv
from league.games import make_game
from league.policies import Tabular
from league.rollout import play
from services import batches as wb
from services import server as srv
from services.gen.league.v1 import referee_pb2, referee_pb2_grpc
from services.league_config import RefereeConfig
from services.wire import WireError, decode_tensor
from tests.inprocess_league import InProcessLeague, description

G = torch.Generator().manual_seed(0)
HEADER = referee_pb2.TrajectoryBatch(match_id="m.0", round=3, env="rps", chain_id="c1", step=1,
                                     seats=[referee_pb2.Seat(agent_id=a, behaviour_version=2) for a in "abc"])


def _tensors(K=4, H=5, n=3, shared=True, box=False, D=7) -> dict[str, torch.Tensor]:
    base = torch.randn(K, H, D, generator=G)
    obs = [base] * n if shared else [torch.randn(K, H, D + k, generator=G) for k in range(n)]
    actions = ([torch.randn(K, H, 2, generator=G) for _ in range(n)] if box
               else [torch.randint(3, (K, H), generator=G) for _ in range(n)])
    dones = torch.zeros(K, H, dtype=torch.bool)
    dones[:, -1] = True
    dones[0, 2:] = True  # an episode over early: real dones, not just the last step
    return wb.batch_tensors(obs, actions, torch.randn(K, H, n, generator=G), dones)


def _decoded(batch) -> dict[str, torch.Tensor]:
    out = {name: decode_tensor(getattr(batch, name)) for name in ("actions", "rewards", "dones")}
    if batch.seat_obs:
        out.update({f"seat_obs/{k}": decode_tensor(t) for k, t in enumerate(batch.seat_obs)})
    else:
        out["obs"] = decode_tensor(batch.obs)
    return out


def _assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert torch.equal(got[name], want[name]), name


def test_shared_observations_are_sent_once_and_per_seat_ones_seat_by_seat():
    shared = _tensors(shared=True)
    assert "obs" in shared and not any(k.startswith("seat_obs/") for k in shared)
    same_shape = [torch.randn(4, 5, 7, generator=G) for _ in range(2)]  # same space, each seat its own view
    acts = [torch.zeros(4, 5, dtype=torch.long)] * 2
    split = wb.batch_tensors(same_shape, acts, torch.zeros(4, 5, 2), torch.zeros(4, 5, dtype=torch.bool))
    assert "obs" not in split and all(torch.equal(split[f"seat_obs/{k}"], same_shape[k]) for k in range(2))
    own = _tensors(shared=False)
    assert "obs" not in own and [own[f"seat_obs/{k}"].shape[-1] for k in range(3)] == [7, 8, 9]
    batch = wb.encode_batch(HEADER, own)[0]
    episodes = wb.episodes_of(batch)
    for seat in range(3):  # a seat reads its own observation
        assert torch.equal(episodes.obs_of(seat)[0], own[f"seat_obs/{seat}"])


@pytest.mark.parametrize("box", [False, True])
def test_integer_and_float_actions_keep_their_dtype(box):
    tensors = _tensors(box=box)
    assert tensors["actions"].dtype == (torch.float32 if box else torch.int64)
    assert tensors["actions"].shape == ((4, 5, 3, 2) if box else (4, 5, 3))
    messages = wb.encode_batch(HEADER, tensors)
    assert len(messages) == 1
    _assert_same(_decoded(next(wb.read_batches(messages))), tensors)
    episodes = wb.episodes_of(messages[0])  # what a learner scores: each seat's own actions, and the dones
    assert (episodes.actions is None) == box
    assert torch.equal(episodes.actions_of(1)[0], tensors["actions"][:, :, 1])
    assert torch.equal(episodes.dones[0], tensors["dones"])
    with pytest.raises(ValueError, match="differ in dtype or shape"):
        wb.batch_tensors([torch.zeros(2, 3, 4)] * 2, [torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, 2)],
                         torch.zeros(2, 3, 2), torch.zeros(2, 3, dtype=torch.bool))


@pytest.mark.parametrize("shared, box", [(True, False), (False, True)])
def test_a_batch_over_the_limit_travels_in_parts_and_comes_back_exact(shared, box):
    tensors = _tensors(K=16, H=20, shared=shared, box=box)
    size = wb.tensor_bytes(tensors)
    messages = wb.encode_batch(HEADER, tensors, limit=size - 1, chunk_bytes=1000)
    assert len(messages) == -(-size // 1000) > 1
    assert all(m.HasField("part") and m.part.kind == wb.KIND for m in messages)
    assert not messages[1].seats and messages[0].seats == HEADER.seats
    whole = wb.encode_batch(HEADER, tensors)[0]
    got = list(wb.read_batches([whole, *messages, whole]))
    assert len(got) == 3 and all(g == whole for g in got)  # interleaved with whole batches, in order
    _assert_same(_decoded(got[1]), tensors)


def _parts():
    tensors = _tensors(K=16, H=20)
    return wb.encode_batch(HEADER, tensors, limit=0, chunk_bytes=1000)


def _flip(messages):
    messages[2].part.payload = bytes([messages[2].part.payload[0] ^ 1]) + messages[2].part.payload[1:]
    return messages


@pytest.mark.parametrize("corrupt, message", [
    (_flip, "crc32c mismatch"),
    (lambda m: m[:-1], "stream ended after"),
    (lambda m: m[:2] + [wb.encode_batch(HEADER, _tensors())[0]] + m[2:], "before its last part"),
    (lambda m: [m[0], m[2], m[1], *m[3:]], "out of order"),
])
def test_a_broken_chunked_batch_is_refused(corrupt, message):
    with pytest.raises(WireError, match=message):
        list(wb.read_batches(corrupt(_parts())))


def test_a_chunked_batch_over_the_receivers_limit_is_refused_before_buffering():
    with pytest.raises(WireError, match="exceeds the limit"):
        list(wb.read_batches(_parts(), max_bytes=100))


def test_replies_are_packed_under_the_message_limit_in_order():
    batches = [wb.encode_batch(referee_pb2.TrajectoryBatch(match_id=f"m{i}"), _tensors(K=64, H=64))[0]
               for i in range(40)]
    replies = list(wb.response_messages(batches, b"state"))
    assert len(replies) > 1 and all(r.ByteSize() <= srv.MAX_MESSAGE_BYTES for r in replies)
    assert [b.match_id for r in replies for b in r.batches] == [f"m{i}" for i in range(40)]
    assert [r.rng_state for r in replies] == [b""] * (len(replies) - 1) + [b"state"]


# -- end to end over gRPC ------------------------------------------------------------------
N, K, H = 3, 128, 250  # 3-player RPS: 149 bytes a step, a 4.77 MB batch


def test_a_batch_over_4_mib_crosses_play_matches_and_subscribe_exactly():
    game = make_game("rps", n_players=N)
    assert K * H * wb.batch_step_bytes(game) > srv.MAX_MESSAGE_BYTES
    league = InProcessLeague(RefereeConfig(env="rps", n_players=N, rounds=0, lease_seconds=600.0, fetch_timeout=10.0))
    policies, params = [], []
    try:
        for i in range(N):
            logits = torch.randn(1, game.n_states, 3, generator=torch.Generator().manual_seed(i))
            policies.append(Tabular(game.n_states, 3))
            params.append({"logits": logits})
            league.join(f"s{i}", league.serve({"logits": logits}, description(f"s{i}", game)))
        watched: list = []
        stream = league.ref.Subscribe(referee_pb2.SubscribeRequest(agent_id=""), timeout=120)
        watcher = threading.Thread(target=lambda: watched.append(next(wb.read_batches(stream))))
        watcher.start()
        for _ in range(600):  # the subscription is registered before the match is played
            if league.referee.subscribers:
                break
            threading.Event().wait(0.1)
        request = referee_pb2.PlayMatchesRequest(
            matches=[referee_pb2.MatchSpec(match_id="big.0", seats=[
                referee_pb2.PinnedSeat(agent_id=f"s{i}", kind="policy", version=1) for i in range(N)])],
            episodes=K, horizon=H, rng_state=torch.Generator().manual_seed(42).get_state().numpy().tobytes())
        replies = list(league.ref.PlayMatches(request, timeout=120))
        watcher.join(timeout=120)
        stream.cancel()
        messages = [b for r in replies for b in r.batches]
        assert len(messages) == 5 and all(m.HasField("part") for m in messages)  # 4.77 MB in 1 MiB parts
        (played,) = list(wb.read_batches(messages))
        assert len(watched) == 1 and watched[0] == played  # the broadcast carried the same batch

        replay_g = torch.Generator().manual_seed(42)
        replay = play(MatrixGameEnv(game, H), policies, params, 1, K, replay_g)
        want = wb.batch_tensors([o[0] for o in replay.obs], [a[0] for a in replay.actions], replay.rewards[0],
                                replay.dones[0])
        _assert_same(_decoded(played), want)
        assert played.dones.shape == [K, H] and decode_tensor(played.dones)[:, -1].all()
        g = torch.Generator()
        g.set_state(torch.frombuffer(bytearray(replies[-1].rng_state), dtype=torch.uint8))
        assert torch.equal(g.get_state(), replay_g.get_state())  # the caller's stream continues as embedded
    finally:
        league.close()


def test_league_configs_accept_batches_over_one_message():
    from services.league_config import LeagueConfig, validate_league

    validate_league(LeagueConfig(referee=RefereeConfig(env="rps", n_players=N, trajectories=K, horizon=H)))
    from league.config import ConfigError

    with pytest.raises(ConfigError, match="over the 67108864-byte limit"):
        validate_league(LeagueConfig(referee=RefereeConfig(env="rps", n_players=4, trajectories=4096, horizon=1000)))


def test_grpc_refuses_one_message_over_the_limit():
    """Why batches are chunked: one 4.77 MB message does not cross."""
    tensors = _tensors(K=K, H=H, D=28)
    whole = wb.encode_batch(HEADER, tensors, limit=1 << 30)[0]
    assert whole.ByteSize() > srv.MAX_MESSAGE_BYTES
    server = srv.make_server(max_workers=2)

    class Echo(referee_pb2_grpc.RefereeServicer):
        def Subscribe(self, request, context):
            yield whole

    referee_pb2_grpc.add_RefereeServicer_to_server(Echo(), server)
    port = srv.bind(server, "127.0.0.1", 0)
    server.start()
    try:
        with srv.channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.RpcError) as err:
                list(referee_pb2_grpc.RefereeStub(ch).Subscribe(referee_pb2.SubscribeRequest(), timeout=20))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop(grace=None)
