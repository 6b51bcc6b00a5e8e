"""A preempted request returns with its request id, arm, options and positions: the
real sampler's request table, seats remembered by the request's parameters object."""

from __future__ import annotations

import gc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from qr_sampler.engine.preemption import Readmissions
from qr_sampler.sampling.sampler import QRSampler
from qr_sampler.settings.config import QRSamplerConfig


class Params(SimpleNamespace):
    """Stands for vLLM's SamplingParams: one object per request, weakly referable."""


def random_arms_sampler(tmp_path: Path) -> QRSampler:
    return QRSampler(
        QRSamplerConfig.load(
            env_file=str(tmp_path / "absent.env"),
            arms="a=system,b=prng,c=system,d=prng",
            arm_assignment="random",
        )
    )


def seat(sampler: QRSampler, readmissions: Readmissions, slot: int, params: Params) -> None:
    output: list[int] = []
    if not readmissions.resume(sampler.table, slot, params, output):
        sampler.admit(slot, sampler.resolve({}), output)
        readmissions.remember(sampler.table, slot, params)


def test_a_request_taken_out_and_re_added_keeps_its_id_arm_and_options(tmp_path):
    sampler, readmissions = random_arms_sampler(tmp_path), Readmissions()
    requests = [Params() for _ in range(8)]
    for slot, params in enumerate(requests):
        seat(sampler, readmissions, slot, params)
    before = [(sampler.table.origins[s].request_id, sampler.table.options[s].arm) for s in range(8)]
    sampler.table.origins[3].output.extend([11, 12])  # type: ignore[union-attr]
    # vLLM preempts slot 3, moves another request down, later re-adds 3 in slot 7.
    readmissions.left(sampler.table, 3)
    sampler.table.clear(3)
    sampler.table.move(7, 3)
    resumed_output = [11, 12]  # async scheduling hands back a new list
    assert readmissions.resume(sampler.table, 7, requests[3], resumed_output)
    assert sampler.table.origins[7].request_id == before[3][0]  # type: ignore[union-attr]
    assert sampler.table.options[7].arm == before[3][1]  # type: ignore[union-attr]
    assert sampler.table.origins[7].next_position() == 2  # type: ignore[union-attr]
    assert readmissions.resumed == 1
    sampler.close()


def test_a_request_still_seated_sharing_parameters_is_a_new_request(tmp_path):
    sampler, readmissions = random_arms_sampler(tmp_path), Readmissions()
    shared = Params()
    seat(sampler, readmissions, 0, shared)
    seat(sampler, readmissions, 1, shared)
    ids = {sampler.table.origins[s].request_id for s in (0, 1)}  # type: ignore[union-attr]
    assert len(ids) == 2
    assert readmissions.resumed == 0
    sampler.close()


def test_the_runners_word_decides_and_a_finished_request_is_forgotten(tmp_path):
    sampler, readmissions = random_arms_sampler(tmp_path), Readmissions()
    params = Params()
    seat(sampler, readmissions, 0, params)
    first = sampler.table.origins[0].request_id  # type: ignore[union-attr]
    # Model Runner V2 never removes: it says whether the slot was refilled with output.
    assert not readmissions.resume(sampler.table, 4, params, refilled=0)
    assert readmissions.resume(sampler.table, 4, params, refilled=3)
    assert sampler.table.origins[4].request_id == first  # type: ignore[union-attr]
    # Parameters that cannot be held weakly are simply not remembered.
    readmissions.remember(sampler.table, 4, 12345)
    assert not readmissions.resume(sampler.table, 5, 12345, refilled=3)
    del params
    gc.collect()
    readmissions.left(sampler.table, 0)
    assert not readmissions._by_params
    sampler.close()


def test_a_multi_arm_run_with_a_preemption_replays_token_for_token(tmp_path, monkeypatch):
    """Every arm's tokens come back from the archive alone: one replay source serves
    each step's bytes in row order, as the run drew them across its arms."""
    archive = tmp_path / "bytes.bin"

    def run(**settings: str) -> list[list[int]]:
        config = QRSamplerConfig.load(env_file=str(tmp_path / "absent.env"), **settings)
        sampler, readmissions = QRSampler(config), Readmissions()
        requests = [Params() for _ in range(4)]
        for slot, params in enumerate(requests):
            seat(sampler, readmissions, slot, params)
        generator = torch.Generator().manual_seed(3)
        tokens = []

        def step(slots: list[int]) -> None:
            logits = torch.randn(len(slots), 64, generator=generator)
            forced = sampler.sample(logits, np.array(slots))
            tokens.append((forced == 0).int().argmax(-1).tolist())

        step([0, 1, 2, 3])
        readmissions.left(sampler.table, 1)  # preempted: three rows run without it
        sampler.table.clear(1)
        sampler.table.move(3, 1)
        step([0, 1, 2])
        assert readmissions.resume(sampler.table, 3, requests[1], [])
        step([0, 1, 2, 3])
        sampler.close()
        return tokens

    original = run(arms="a=system,b=prng", arm_assignment="random", bytes_path=str(archive))
    monkeypatch.setenv("QR_REPLAY_PATH", str(archive))
    replayed = run(entropy_source_type="replay", fallback_mode="error")
    assert replayed == original


def test_a_new_request_sharing_parameters_never_takes_the_seat_of_one_out_of_the_batch(
    tmp_path,
):
    """vLLM's n children share one parameters object: a child admitted while its
    sibling is preempted is new, however alike they look."""
    sampler, readmissions = random_arms_sampler(tmp_path), Readmissions()
    shared = Params()
    seat(sampler, readmissions, 0, shared)
    origin = sampler.table.origins[0]
    assert origin is not None
    assert isinstance(origin.output, list)
    origin.output.extend([5, 6, -1])  # the last token still in flight when it left
    readmissions.left(sampler.table, 0)
    sampler.table.clear(0)
    assert not readmissions.resume(sampler.table, 1, shared, [])
    # Async scheduling hands back a new list, the token in flight now booked: the
    # preempted request is known by the tokens it had.
    assert readmissions.resume(sampler.table, 2, shared, [5, 6, 7])
    assert sampler.table.origins[2] is origin
    sampler.close()


def test_model_runner_v2_tells_siblings_apart_by_position_then_by_the_last_batch(tmp_path):
    sampler, readmissions = random_arms_sampler(tmp_path), Readmissions()
    shared = Params()
    for slot in range(3):
        sampler.admit(slot, sampler.resolve({}))
        readmissions.remember(sampler.table, slot, shared)
    ids = [sampler.table.origins[s].request_id for s in range(3)]  # type: ignore[union-attr]
    table = sampler.table
    table.note_batch(np.arange(3), np.array([0, 0, 0]), None)
    table.note_batch(np.arange(3), np.array([1, 1, 1]), None)  # each next at position 2
    # 0 and 2 preempted; 1 goes on with a prefill chunk (no token, no new position).
    table.note_batch(np.array([1]), np.array([9]), np.array([False]))
    # A refill with a length no sibling had is a new request.
    assert not readmissions.resume(table, 7, shared, refilled=5)
    # All three are at position 2; of the two out of the last batch, the first.
    assert readmissions.resume(table, 8, shared, refilled=2)
    assert table.origins[8].request_id == ids[0]  # type: ignore[union-attr]
    assert table.next_position(8, table.origins[8]) == 2  # type: ignore[arg-type]
    # A request whose slot goes to another keeps its position.
    origin = table.origins[2]
    assert origin is not None
    table.put(2, sampler.resolve({}))
    assert table.next_position(2, origin) == 2
    assert readmissions.resume(table, 9, shared, refilled=2)
    assert table.origins[9].request_id == ids[2]  # type: ignore[union-attr]
    sampler.close()
