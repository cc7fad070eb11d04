"""Input-length calibration against the simulator's pseudo-tokenizer (which is not a word count)."""

import asyncio
import random

import pytest

from engine.config import RunConfig
from engine.load.controller import Controller
from engine.session.calibrate import ExceedsContext, ProbeError, calibrate_profile, check_cell_fits
from engine.sim.model import SimConfig
from engine.sim.server import SimServer
from engine.sim.tokens import count_chat_tokens, count_completion_tokens
from engine.snapshot import RunState
from engine.workload.calibration import TokenModel, converge, measure_vocabulary
from engine.workload.distributions import Fixed
from engine.workload.lengths import LengthTally
from engine.workload.profile import load_profile
from engine.workload.prompts import VOCABULARY, build_factory

SYSTEM = "You are a careful assistant, answer briefly."
SIM = SimConfig(speed=20, max_model_len=4096)  # conftest.py sim_url


def _profile(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text(text)
    return load_profile(str(path))


def _config(url, api="chat"):
    return RunConfig(base_url=url, model=SimConfig().model, api=api, workers=1, ignore_eos=True)


async def test_vocabulary_probe_measures_ratio_and_template_overhead_exactly(tmp_path):
    loaded = _profile(tmp_path, f'input = 200\nsystem_prompt = "{SYSTEM}"\n')
    factory = build_factory(loaded)

    async def probe(words):  # the simulator's own counting rule, without the network
        return count_chat_tokens(factory.spec_for_body(words, 1).fields["messages"])

    model, probes = await measure_vocabulary(probe, VOCABULARY, target_tokens=200, max_chunk=40)
    assert probes == 2 + 2 * -(-len(VOCABULARY) // 40)
    empty_user = count_chat_tokens([{"role": "system", "content": SYSTEM}, {"role": "user", "content": ""}])
    assert model.overhead_tokens == pytest.approx(empty_user)
    assert model.tokens_per_word == pytest.approx(2.0)  # 5-8 letter words are two pseudo-tokens each, not one


async def test_vocabulary_probes_stay_under_the_target_length(tmp_path):
    loaded = _profile(tmp_path, "input = 40\n")
    factory = build_factory(loaded)
    sizes = []

    async def probe(words):
        n = count_chat_tokens(factory.spec_for_body(words, 1).fields["messages"])
        sizes.append(n)
        return n

    model, probes = await measure_vocabulary(probe, VOCABULARY, target_tokens=40)
    assert max(sizes) <= 40  # a server that holds the target holds every probe
    assert model.tokens_per_word == pytest.approx(2.0) and model.overhead_tokens == pytest.approx(10)
    assert probes == len(sizes)


async def test_converge_corrects_a_wrong_ratio(tmp_path):
    loaded = _profile(tmp_path, 'api = "completions"\ninput = 300\n')
    rng = random.Random(3)

    async def probe(model):
        spec = build_factory(loaded, model).make(0, rng)
        return count_completion_tokens(spec.fields["prompt"]), float(spec.input_tokens)

    wrong = TokenModel(overhead_tokens=1, tokens_per_word=1.3)
    result = await converge(probe, wrong, 300)
    assert result.converged
    assert result.rounds >= 1
    assert abs(result.error_pct) <= 1.0
    assert result.model.tokens_per_word == pytest.approx(2.0, rel=0.01)


@pytest.mark.parametrize(
    ("api", "extra"),
    [
        ("chat", f'system_prompt = "{SYSTEM}"\n'),
        ("completions", "shared_prefix_tokens = 96\nprefix_groups = 3\n"),
    ],
)
async def test_calibration_over_http_hits_the_target_within_2_percent(sim_url, tmp_path, api, extra):
    loaded = _profile(tmp_path, f'api = "{api}"\ninput = 437\noutput = 4\n{extra}')
    factory, result = await calibrate_profile(_config(sim_url, api), loaded, seed=1)
    assert result is not None and result.converged, result
    assert abs(result.error_pct) <= 2.0
    assert result.model.tokens_per_word == pytest.approx(2.0, rel=0.01)
    if "shared_prefix" in extra:
        assert len(factory.prefixes) == 3 and len(result.model.prefix_tokens) == 3
        assert all(t == pytest.approx(96, abs=2) for t in result.model.prefix_tokens)


def test_a_calibrated_run_reports_input_and_output_within_2_percent(sim_url, tmp_path):
    """The done-when check: a real run (worker process, streaming client) with a long-tailed input distribution
    and a shared prefix; the server's usage says the mean input length is on target."""
    loaded = _profile(
        tmp_path,
        'api = "chat"\nshared_prefix_tokens = 40\n'
        'input = { kind = "lognormal", mean = 300, std = 120, min = 80, max = 900 }\n'
        'output = { kind = "uniform", min = 4, max = 12 }\n',
    )
    config = _config(sim_url).model_copy(update={"concurrency": 4, "max_requests": 200, "seed": 5})
    factory, _ = asyncio.run(calibrate_profile(config, loaded, seed=5))
    tally = LengthTally.for_profile(loaded)
    controller = Controller(config, sinks=(tally,), request_factory=factory)
    try:
        controller.start()
        assert controller.wait(60), "the run did not finish"
    finally:
        controller.close()
    assert controller.latest.state is RunState.STOPPED
    check = tally.check()
    assert check.requests >= 200
    assert check.target_input == pytest.approx(loaded.profile.input.expected())
    assert abs(check.input_error_pct) <= 2.0, check
    assert abs(check.output_error_pct) <= 2.0, check  # max_tokens + ignore_eos: the sim stops exactly there
    assert not check.output_estimated


async def test_a_server_without_usage_cannot_be_calibrated(tmp_path):
    loaded = _profile(tmp_path, "input = 64\n")
    with SimServer(SimConfig(speed=50, no_usage=True)) as server:
        with pytest.raises(ProbeError, match=r"no usage\.prompt_tokens"):
            await calibrate_profile(_config(server.url), loaded)


async def test_a_shape_beyond_the_context_window_is_reported(sim_url, tmp_path):
    loaded = _profile(tmp_path, "input = 256\n")
    factory, _ = await calibrate_profile(_config(sim_url), loaded)
    await check_cell_fits(_config(sim_url), factory, 256, 1024)  # fits in 4096
    with pytest.raises(ExceedsContext, match="maximum context length is 4096"):
        await check_cell_fits(_config(sim_url), factory, 256, 4000)
    big = loaded.with_profile(loaded.profile.model_copy(update={"input": Fixed(value=5000)}))
    with pytest.raises(ExceedsContext):
        await calibrate_profile(_config(sim_url), big)
