"""HAT's evolutionary search and its random-search control (tfmobile.nas.search), on a synthetic fitness and latency.

The tiny space below has 6,084 SubTransformers, few enough to enumerate. Its latency is a sum of widths with the
decoder's weighted 3x (it runs once per output token); the fitness is the number of gene positions that differ
from one target SubTransformer, a deep-encoder / 1-layer-decoder one near the edge of the budget.
"""

import json
import os

import numpy as np
import pytest
import yaml

from conftest import assert_one_line_error, run_cli
from test_nas_predictor import write_latency_csv
from test_nas_supertransformer import super_run  # noqa: F401 (a fixture: the tiny SuperTransformer, trained once)
from tfmobile.errors import ConfigError, TrainingError
from tfmobile.nas import search
from tfmobile.nas.space import Arch, load_space, space_from_dict

TINY = {
    "name": "tiny",
    "space": {"encoder_embed_dim": [32, 16], "decoder_embed_dim": [32, 16], "encoder_layers": [1, 2, 3],
              "decoder_layers": [1, 2, 3], "encoder_ffn_dim": [96, 64, 32], "decoder_ffn_dim": [96, 64, 32],
              "encoder_num_heads": [2], "decoder_num_heads": [2], "decoder_cross_num_heads": [2],
              "encoder_layers_attended": [1], "qkv_dim": 16},
    "data": {"vocab_size": 100},
}
SMALL = {"population": 12, "parents": 4, "mutations": 4, "crossovers": 4, "generations": 5}


@pytest.fixture(scope="module")
def space():
    return space_from_dict(TINY)


TARGET = Arch(32, 16, (96, 96, 64), (2, 2, 2), (64,), (2,), (2,), (1,))


def latency_ms(arch: Arch) -> float:
    return 0.01 * (arch.encoder_embed_dim + sum(arch.encoder_ffn_dim)) + \
        0.03 * (arch.decoder_embed_dim + sum(arch.decoder_ffn_dim))


BUDGET = 5.5  # TARGET's latency is 5.28 ms; 14% of the space fits


class Recorder:
    """The synthetic fitness (distance to TARGET's gene), recording each batch it is called with; `fail_at`: raise
    on that call, as a search killed during that generation."""

    def __init__(self, space, fail_at=None):
        self.space, self.fail_at, self.calls = space, fail_at, []
        self.target = space.gene(TARGET)

    def __call__(self, archs):
        self.calls.append(list(archs))
        if len(self.calls) == self.fail_at:
            raise KeyboardInterrupt
        return [float(sum(a != b for a, b in zip(self.space.gene(arch), self.target))) for arch in archs]

    def evaluated(self):
        return [a for call in self.calls for a in call]


def latency(archs):
    return [latency_ms(a) for a in archs]


def run(space, fitness, budget=BUDGET, **settings):
    return search.evolution(space, fitness, latency, budget, progress=False, **{**SMALL, **settings})


def test_evolution_finds_the_target_under_the_budget_and_evaluates_nothing_over_it(space):
    found = 0
    for seed in range(1, 6):
        fitness = Recorder(space)
        result = run(space, fitness, generations=25, seed=seed)
        assert max(latency(fitness.evaluated())) <= BUDGET
        assert result.latency_ms == latency_ms(result.best) <= BUDGET
        found += result.best == TARGET and result.fitness == 0.0
    assert found >= 4  # 25 generations of 12 find the one target among ~700 SubTransformers under the budget


def test_fitness_is_evaluated_once_per_distinct_arch_in_one_batch_per_generation(space):
    fitness = Recorder(space)
    result = run(space, fitness)
    evaluated = fitness.evaluated()
    assert len(set(evaluated)) == len(evaluated) == result.evaluations  # genes past the depth: one Arch
    assert len(fitness.calls) <= SMALL["generations"]
    assert result.candidates == search.candidates_scored(12, 4, 4, 5) == 12 + (4 + 4) * 4
    assert result.evaluations < result.candidates  # children that repeat an Arch cost nothing
    assert [h["evaluations"] for h in result.history] == list(np.cumsum([len(c) for c in fitness.calls]))
    assert [h["generation"] for h in result.history] == [1, 2, 3, 4, 5]
    assert np.all(np.diff([h["best_fitness"] for h in result.history]) <= 0)  # the parents are kept


def test_copies_of_the_parents_cost_no_evaluation(space):
    fitness = Recorder(space)
    result = run(space, fitness, mutate_prob=0.0, crossovers=0)
    assert len(fitness.calls) == 1  # only the initial population is new
    assert result.evaluations == len(set(fitness.calls[0]))
    assert result.candidates == 12 + 4 * 4


def test_mutation_resamples_each_gene_with_probability_mutate_prob(space):
    small = load_space("small")
    rng = np.random.default_rng(0)
    sizes = np.array([len(small.choices[d]) for d in small.gene_dims()])
    gene = small.gene(small.super_arch)
    trials = 2000
    kept = np.mean([np.equal(search.mutate(small, gene, rng, 0.3), gene) for _ in range(trials)], axis=0)
    # a resampled gene draws its old value again with probability 1 / its number of choices
    expected = 0.7 + 0.3 / sizes
    sigma = np.sqrt(expected * (1 - expected) / trials)
    assert np.all(np.abs(kept - expected) < 4.5 * sigma + 1e-9)
    overall = 0.7 + 0.3 * np.mean(1 / sizes)
    assert abs(kept.mean() - overall) < 4 * np.sqrt(overall * (1 - overall) / (trials * len(gene)))
    assert search.mutate(small, gene, rng, 0.0) == gene


def test_crossover_takes_each_gene_from_one_of_the_two_parents(space):
    small = load_space("small")
    rng = np.random.default_rng(0)
    a, b = small.gene(small.super_arch), small.gene(small.smallest_arch)
    differ = np.not_equal(a, b)
    assert differ.sum() >= 15
    children = np.array([search.crossover(a, b, rng) for _ in range(500)])
    assert np.all((children == a) | (children == b))
    from_a = (children == a)[:, differ].mean()
    assert abs(from_a - 0.5) < 4 * np.sqrt(0.25 / (500 * differ.sum()))


def test_state_file_is_valid_json_after_each_generation(space, tmp_path):
    state_path = str(tmp_path / "state.json")
    seen = []

    def fitness(archs):
        if seen or (tmp_path / "state.json").exists():
            state = json.loads((tmp_path / "state.json").read_text())
            seen.append((state["generation"], len(state["history"]), len(state["population"])))
        else:
            seen.append(None)
        return Recorder(space)(archs)

    run(space, fitness, state_path=state_path)
    generations_before = [s[0] for s in seen[1:]]
    assert seen[0] is None and generations_before == sorted(generations_before) and generations_before[0] == 1
    assert all(g == h and p == 12 for g, h, p in seen[1:])
    final = json.loads((tmp_path / "state.json").read_text())
    assert final["generation"] == 5 and final["settings"]["parents"] == 4 and final["budget_ms"] == BUDGET


@pytest.mark.parametrize("method", ["evolution", "random"])
def test_resume_after_an_interruption_gives_the_same_result(space, tmp_path, method):
    def search_with(fitness, state_path):
        if method == "evolution":
            return run(space, fitness, state_path=state_path, seed=3)
        return search.random_search(space, fitness, latency, BUDGET, 40, seed=3, state_path=state_path,
                                    population=12, progress=False)

    whole = search_with(Recorder(space), str(tmp_path / "whole.json"))
    interrupted = Recorder(space, fail_at=3)  # killed while evaluating the third generation (block)
    with pytest.raises(KeyboardInterrupt):
        search_with(interrupted, str(tmp_path / "resumed.json"))
    saved = json.loads((tmp_path / "resumed.json").read_text())
    assert saved["generation"] == 2
    rest = Recorder(space)
    resumed = search_with(rest, str(tmp_path / "resumed.json"))
    assert not set(rest.evaluated()) & set(interrupted.evaluated()[:saved["history"][-1]["evaluations"]])
    assert (resumed.best, resumed.fitness, resumed.history, resumed.evaluations) == \
        (whole.best, whole.fitness, whole.history, whole.evaluations)
    assert json.loads((tmp_path / "resumed.json").read_text()) == json.loads((tmp_path / "whole.json").read_text())
    again = Recorder(space)  # a finished search returns its result without evaluating anything
    assert search_with(again, str(tmp_path / "whole.json")).best == whole.best and again.calls == []


def test_a_state_of_another_search_is_refused(space, tmp_path):
    state_path = str(tmp_path / "state.json")
    run(space, Recorder(space), state_path=state_path, generations=2)
    for change, needle in [({"budget": BUDGET + 1}, "budget_ms: 5.5 there, 6.5 here"),
                           ({"parents": 5}, "parents: 4 there, 5 here"), ({"seed": 2}, "seed: 1 there, 2 here")]:
        with pytest.raises(ConfigError, match=needle):
            run(space, Recorder(space), state_path=state_path, generations=2, **change)
    with pytest.raises(ConfigError, match="space: 'tiny' there, 'small' here"):
        search.evolution(load_space("small"), Recorder(space), latency, BUDGET, state_path=state_path,
                         progress=False, **SMALL)
    with pytest.raises(ConfigError, match="method: 'evolution' there, 'random' here"):
        search.random_search(space, Recorder(space), latency, BUDGET, 20, state_path=state_path, progress=False)
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable search state"):
        run(space, Recorder(space), state_path=state_path)


def test_random_search_makes_as_many_distinct_evaluations_under_the_budget(space):
    evolved = run(space, Recorder(space), generations=10)
    fitness = Recorder(space)
    control = search.random_search(space, fitness, latency, BUDGET, evolved.evaluations, seed=1, population=12,
                                   progress=False)
    evaluated = fitness.evaluated()
    assert control.evaluations == len(set(evaluated)) == len(evaluated) == evolved.evaluations
    assert max(latency(evaluated)) <= BUDGET
    assert [h["evaluations"] for h in control.history] == \
        [min(12 * (i + 1), evolved.evaluations) for i in range(len(control.history))]
    assert control.history[-1]["best_fitness"] == control.fitness == min(Recorder(space)(evaluated))


def test_a_budget_nobody_meets_is_a_clear_error(space):
    fastest = f"{latency_ms(space.smallest_arch):.2f} ms"  # 1.92 ms
    with pytest.raises(ConfigError, match=rf"none of 4000 .* under the 1 ms budget \(the fastest drawn: {fastest}\)"):
        run(space, Recorder(space), budget=1.0, population=4, parents=2)
    with pytest.raises(ConfigError, match=r"only 1 \(of 3 wanted\) of 3000 .* new and predicted under the 2 ms"):
        search.random_search(space, Recorder(space), latency, 2.0, 3, population=12, progress=False)


def test_a_fitness_that_is_not_finite_is_a_training_error(space):
    with pytest.raises(TrainingError, match="is nan: the SuperTransformer diverged"):
        run(space, lambda archs: [float("nan")] * len(archs))


def test_the_plot_is_written(space, tmp_path):
    evolved = run(space, Recorder(space), plot_path=str(tmp_path / "evolution.png"))
    control = search.random_search(space, Recorder(space), latency, BUDGET, evolved.evaluations, population=12,
                                   progress=False)
    search.plot_search(str(tmp_path / "both.png"), {"evolution": evolved.history, "random search": control.history},
                       BUDGET)
    for name in ("evolution.png", "both.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- `tfmobile hat search` on a trained tiny SuperTransformer ----------------------------------

SEARCH = {"population": 6, "parents": 2, "mutations": 2, "crossovers": 2, "generations": 3}


@pytest.fixture(scope="module")
def searched(super_run, tmp_path_factory):  # noqa: F811
    """A predictor fitted on a synthetic latency file of the run's space, and one small evolution with it."""
    from tfmobile.nas.predictor import fit_predictors, load_predictor
    from tfmobile.nas.supertransformer import read_space

    space = read_space(super_run["run"])
    root = tmp_path_factory.mktemp("search")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(40)]
    csv_path = write_latency_csv(root / "latency.csv", space, archs, latency(archs))
    fit_predictors(csv_path, str(root / "P"), progress=False, mlp_steps=30)
    predictor = load_predictor(str(root / "P"), space)
    budget = round((predictor.min_latency_ms() + predictor.predict_ms(space.super_arch)) / 2, 2)
    out = str(root / "arch.yaml")
    result = search.search_run(super_run["run"], str(root / "P"), budget, out, valid_sentences=16, progress=False,
                               data_dir=super_run["data"], settings=SEARCH)
    return {"space": space, "predictor": predictor, "dir": str(root / "P"), "budget": budget, "out": out,
            "result": result, "root": root, "run": super_run["run"], "data": super_run["data"]}


def test_search_run_writes_the_fittest_arch_with_its_predicted_latency_and_inherited_loss(searched):
    from tfmobile.nas.space import load_arch
    from tfmobile.nas.supertransformer import inherited_loss, load_supertransformer, valid_batches

    result, space = searched["result"], searched["space"]
    arch = load_arch(searched["out"], space)
    written = yaml.safe_load(open(searched["out"]))
    assert written["method"] == "evolution" and written["budget_ms"] == searched["budget"]
    assert written["predicted_latency_ms"] == round(searched["predictor"].predict_ms(arch), 3) <= searched["budget"]
    _, exp, model, _ = load_supertransformer(searched["run"])
    loss = inherited_loss(model, arch, valid_batches(searched["run"], exp, 16, searched["data"]))
    assert written["inherited_valid_loss"] == result["inherited_valid_loss"] == pytest.approx(loss, abs=1e-5)
    state = json.load(open(result["state"]))
    assert state["generation"] == 3 and min(e["fitness"] for e in state["cache"]) == pytest.approx(loss, abs=1e-5)
    assert all(e["latency_ms"] <= searched["budget"] for e in state["cache"])
    assert result["evaluations"] == len(state["cache"]) <= result["candidates"] == 6 + 4 * 2
    assert result["plot"] == searched["out"][:-len(".yaml")] + ".png" and os.path.getsize(result["plot"]) > 1000


def test_search_run_resumes_only_when_asked(searched):
    kwargs = dict(valid_sentences=16, progress=False, data_dir=searched["data"], settings=SEARCH)
    with pytest.raises(ConfigError, match="pass --resume"):
        search.search_run(searched["run"], searched["dir"], searched["budget"], searched["out"], **kwargs)
    again = search.search_run(searched["run"], searched["dir"], searched["budget"], searched["out"], resume=True,
                              **kwargs)
    assert again == searched["result"]  # the finished search, read back
    with pytest.raises(ConfigError, match="valid_sentences: 16 there, 17 here"):
        search.search_run(searched["run"], searched["dir"], searched["budget"], searched["out"], resume=True,
                          **{**kwargs, "valid_sentences": 17})


def test_random_search_control_runs_through_search_run(searched, tmp_path):
    out = str(tmp_path / "random.yaml")
    result = search.search_run(searched["run"], searched["dir"], searched["budget"], out, method="random",
                               valid_sentences=16, progress=False, data_dir=searched["data"], settings=SEARCH,
                               evaluations=searched["result"]["evaluations"])
    assert result["evaluations"] == searched["result"]["evaluations"]
    assert yaml.safe_load(open(out))["method"] == "random"


def test_cli_refuses_a_budget_below_the_fastest_subtransformer_and_an_unasked_resume(searched, tmp_path, capsys):
    fastest = f"{searched['predictor'].min_latency_ms():.2f} ms"
    rc, _, err = run_cli(capsys, "hat", "search", searched["run"], "--predictor", searched["dir"], "--latency-ms",
                         "0.01", "--out", str(tmp_path / "a.yaml"), "--quiet", "--data-dir", searched["data"])
    assert_one_line_error(rc, err, "below the fastest SubTransformer the predictor knows", fastest)
    assert not os.listdir(tmp_path)
    rc, _, err = run_cli(capsys, "hat", "search", searched["run"], "--predictor", searched["dir"], "--latency-ms",
                         str(searched["budget"]), "--out", searched["out"], "--quiet")
    assert_one_line_error(rc, err, "pass --resume")
