"""HAT's evolutionary search for a SubTransformer under a latency budget, and its random-search control
(Wang et al., ACL 2020, section 3.3 and appendix; the reference's `evolution.py`).

A candidate is a fixed-length gene (`Space.gene`): the global widths and depths, then one value per layer
up to the largest depth (the values past an architecture's depth are carried along, unused, as HAT does).
Its fitness is a loss, lower is better: for `tfmobile hat search`, the validation loss of the SuperTransformer
running that SubTransformer with its inherited weights. The search, with HAT's settings:

    generation 1    `population` (125) random genes, each redrawn while its predicted latency is over the
                    budget (HAT's constraint by rejection), all evaluated
    generation g>1  the `parents` (25) fittest of the last population are kept; `mutations` (50) children
                    each copy a random parent and resample every gene with probability `mutate_prob` (0.3)
                    from that position's choices (possibly the same value); `crossovers` (50) children take
                    every gene from one of two distinct random parents with probability 0.5 each. A child
                    over the budget is redrawn. The new population is parents + children.
    after `generations` (30): the fittest of the last population.

Evaluations. HAT scores the whole population every generation, so its 30 x 125 = 3750 scorings rescore the
kept parents. Here a fitness is computed once per distinct SubTransformer (`Arch`) and cached: genes that
differ only past the depth are the same Arch. The candidates scored are `candidates_scored(...)` =
population + (mutations + crossovers) x (generations - 1) (3025 with HAT's settings: the children of the
last generation are never bred, as in HAT); `evaluations` counts the distinct Archs among them, i.e. that
number minus the cache hits (children identical to an Arch seen before). `fitness` is called once per
generation with that generation's new Archs, so a SuperTransformer can batch them.

The control (issue 12): `random_search` draws uniform random SubTransformers under the same budget until it
has evaluated as many distinct ones, in blocks of `population`, so both histories plot on one axis.

Resume. After each generation (a block, for random search) the whole state goes atomically to
`state_path` as JSON: the population's genes and fitness, the cache, numpy's Generator state, the history,
the settings, the space and the budget. A rerun with that file continues after the last finished generation
and returns exactly what an uninterrupted run returns; a state of other settings is refused.

Latency is a batch function too, `latency(archs) -> ms each` (the predictor runs batched): candidates are
drawn in blocks, and the first ones under the budget kept, in draw order.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from tfmobile.errors import ConfigError, TrainingError
from tfmobile.nas.space import Arch, Space, arch_from_dict
from tfmobile.utils import atomic_write_text, new_figure, save_figure

STATE_FORMAT = "tfmobile-hat-search/1"
# HAT's search settings (the reference's evolutionary-search configs).
HAT_EVOLUTION = {"population": 125, "parents": 25, "mutations": 50, "crossovers": 50, "generations": 30,
                 "mutate_prob": 0.3}
# Redraws allowed per wanted candidate before the budget is called infeasible (HAT retries forever).
MAX_DRAWS_PER_CANDIDATE = 1000
MAX_BLOCK = 4096  # candidates per batched latency call


@dataclass
class SearchResult:
    """The fittest SubTransformer found, its fitness and predicted latency, and how the search got there.

    `history`: one entry per generation (random search: per block of `population` evaluations),
    {"generation", "best_fitness" (best so far), "evaluations" (distinct Archs evaluated so far)}."""

    method: str
    best: Arch
    fitness: float
    latency_ms: float
    history: list[dict]
    evaluations: int  # distinct Archs whose fitness was computed
    candidates: int  # candidates scored, cache hits included (evolution: candidates_scored(...))
    generations: int
    state_path: str | None = None
    settings: dict = field(default_factory=dict)


def candidates_scored(population: int, mutations: int, crossovers: int, generations: int) -> int:
    """The candidates an evolution scores: the initial population and the children of every later generation."""
    return population + (mutations + crossovers) * (generations - 1)


# ---------------------------------------------------------------------------------------------
# HAT's operators on genes


def mutate(space: Space, gene: list[int], rng: np.random.Generator, prob: float) -> list[int]:
    """A copy of `gene` with every position resampled uniformly from its choices with probability `prob`."""
    dims = space.gene_dims()
    resample = rng.random(len(gene)) < prob
    child = list(gene)
    for i in np.flatnonzero(resample):
        child[i] = int(rng.choice(space.choices[dims[i]]))
    return child


def crossover(gene_a: list[int], gene_b: list[int], rng: np.random.Generator) -> list[int]:
    """HAT's uniform crossover: every position from `gene_a` or `gene_b` with probability 0.5."""
    take_a = rng.random(len(gene_a)) < 0.5
    return [int(a) if t else int(b) for a, b, t in zip(gene_a, gene_b, take_a)]


# ---------------------------------------------------------------------------------------------
# The constraint and the fitness cache


def _draw_under_budget(space: Space, make, n: int, latency, budget_ms: float, what: str,
                       seen: set | None = None) -> list[list[int]]:
    """`n` genes from `make()`, each redrawn while its predicted latency is over the budget (or, given `seen`,
    while its Arch is in `seen`: random search wants new ones). Drawn in blocks so `latency` runs batched;
    a block is as large as the acceptance rate so far says is needed."""
    kept: list[list[int]] = []
    drawn, limit, fastest = 0, MAX_DRAWS_PER_CANDIDATE * n, math.inf
    unique = seen is not None
    seen = set(seen or ())
    while len(kept) < n:
        if drawn >= limit:
            fits = f"only {len(kept)} (of {n} wanted)" if kept else "none"
            fix = "raise the budget or make fewer evaluations" if unique else "raise the budget"
            raise ConfigError(f"{what}: {fits} of {drawn} SubTransformers drawn from space {space.name!r} were "
                              f"{'new and ' if unique else ''}predicted under the {budget_ms:g} ms budget (the "
                              f"fastest drawn: {fastest:.2f} ms); {fix}")
        need = n - len(kept)
        size = min(limit - drawn, MAX_BLOCK, max(need, math.ceil(need * (drawn + 1) / (len(kept) + 1))))
        genes = [make() for _ in range(size)]
        archs = [space.from_gene(g) for g in genes]
        ms = [float(t) for t in latency(archs)]
        drawn += size
        fastest = min(fastest, *ms)
        for gene, arch, t in zip(genes, archs, ms):
            if len(kept) < n and t <= budget_ms and not (unique and arch in seen):
                kept.append(gene)
                seen.add(arch)
    return kept


class _Cache:
    """Fitness and predicted latency per distinct Arch, in the order they were evaluated."""

    def __init__(self, space: Space, fitness, latency):
        self.space, self.fitness, self.latency = space, fitness, latency
        self.entries: dict[Arch, tuple[float, float]] = {}

    def evaluate(self, genes: list[list[int]]) -> list[float]:
        """Fitness of each gene; one `fitness` call for the Archs not seen before (none when all were)."""
        archs = [self.space.from_gene(g) for g in genes]
        new = list(dict.fromkeys(a for a in archs if a not in self.entries))
        if new:
            values = [float(v) for v in self.fitness(new)]
            if len(values) != len(new):
                raise ValueError(f"fitness returned {len(values)} values for {len(new)} architectures")
            bad = [(a, v) for a, v in zip(new, values) if not math.isfinite(v)]
            if bad:
                raise TrainingError(f"the fitness of SubTransformer {bad[0][0].describe()} is {bad[0][1]}: the "
                                    "SuperTransformer diverged for it; retrain it with a lower learning rate")
            ms = [float(t) for t in self.latency(new)]
            self.entries.update({a: (v, t) for a, v, t in zip(new, values, ms)})
        return [self.entries[a][0] for a in archs]

    def best(self) -> Arch:
        """The fittest Arch evaluated; the earliest of equals."""
        return min(self.entries, key=lambda a: self.entries[a][0])

    def to_json(self) -> list[dict]:
        return [{"arch": a.to_dict(), "fitness": f, "latency_ms": t} for a, (f, t) in self.entries.items()]

    def load(self, rows: list[dict]) -> None:
        self.entries = {arch_from_dict(r["arch"], self.space, "search state"): (float(r["fitness"]),
                                                                               float(r["latency_ms"]))
                        for r in rows}


# ---------------------------------------------------------------------------------------------
# The state file


def _space_json(space: Space) -> dict:
    return {"name": space.name, "choices": {d: list(v) for d, v in space.choices.items()}, "qkv_dim": space.qkv_dim}


def _identity(method: str, space: Space, budget_ms: float, settings: dict, meta: dict | None) -> dict:
    """What a state file must match to be resumed by this search."""
    return {"format": STATE_FORMAT, "method": method, "settings": settings, "space": _space_json(space),
            "budget_ms": float(budget_ms), "meta": meta or {}}


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _load_state(state_path: str | None, identity: dict) -> dict | None:
    if not state_path or not os.path.exists(state_path):
        return None
    try:
        with open(state_path) as f:
            state = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{state_path}: not a readable search state ({e}); remove it or choose another --out")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ConfigError(f"{state_path}: not a tfmobile search state; remove it or choose another --out")
    differ = []
    for key, want in identity.items():
        have = state.get(key)
        if key == "space" and have != want:
            same_name = isinstance(have, dict) and have.get("name") == want["name"]
            name = have.get("name") if isinstance(have, dict) else have
            differ.append("space: the same name, other choices" if same_name else
                          f"space: {name!r} there, {want['name']!r} here")
        elif key in ("settings", "meta") and isinstance(have, dict):
            differ += [f"{k}: {_show(have.get(k))} there, {_show(want.get(k))} here"
                       for k in sorted(set(want) | set(have)) if have.get(k) != want.get(k)]
        elif have != want:
            differ.append(f"{key}: {_show(have)} there, {_show(want)} here")
    if differ:
        raise ConfigError(f"{state_path}: the state of another search ({'; '.join(differ)}); remove it or "
                          "choose another --out")
    return state


def _write_state(state_path: str | None, state: dict) -> None:
    if state_path:
        atomic_write_text(state_path, json.dumps(state) + "\n")


def _progress(total: int, initial: int, desc: str, progress: bool):
    return tqdm(total=total, initial=initial, desc=desc, unit="generation" if desc == "evolution" else "block",
                file=sys.stderr, disable=not progress, leave=False)


def _result(method: str, cache: _Cache, best: Arch, history: list[dict], candidates: int, state_path,
            settings: dict) -> SearchResult:
    fit, ms = cache.entries[best]
    return SearchResult(method=method, best=best, fitness=fit, latency_ms=ms, history=history,
                        evaluations=len(cache.entries), candidates=candidates, generations=len(history),
                        state_path=state_path, settings=settings)


# ---------------------------------------------------------------------------------------------
# The searches


def evolution(space: Space, fitness, latency, budget_ms: float, *, population: int = HAT_EVOLUTION["population"],
              parents: int = HAT_EVOLUTION["parents"], mutations: int = HAT_EVOLUTION["mutations"],
              crossovers: int = HAT_EVOLUTION["crossovers"], generations: int = HAT_EVOLUTION["generations"],
              mutate_prob: float = HAT_EVOLUTION["mutate_prob"], seed: int = 1, state_path: str | None = None,
              progress: bool = True, plot_path: str | None = None, meta: dict | None = None) -> SearchResult:
    """HAT's evolutionary search (module docstring) for the fittest SubTransformer predicted under `budget_ms`.

    `fitness(archs) -> losses` (lower is better), `latency(archs) -> ms`, both over lists of `Arch`.
    `state_path`: the per-generation state (resumed when it exists; `meta`, e.g. the run and predictor,
    must match too). `plot_path`: a PNG of the best fitness per generation."""
    if not 1 <= parents <= population:
        raise ConfigError(f"parents must be between 1 and the population ({population}), got {parents}")
    if crossovers and parents < 2:
        raise ConfigError("crossover needs at least 2 parents")
    if min(mutations, crossovers) < 0 or generations < 1 or not 0.0 <= mutate_prob <= 1.0:
        raise ConfigError("mutations and crossovers must be >= 0, generations >= 1, and mutate_prob in [0, 1]")
    settings = {"population": population, "parents": parents, "mutations": mutations, "crossovers": crossovers,
                "generations": generations, "mutate_prob": float(mutate_prob), "seed": seed}
    identity = _identity("evolution", space, budget_ms, settings, meta)
    cache = _Cache(space, fitness, latency)
    rng = np.random.default_rng(seed)
    state = _load_state(state_path, identity)
    bar = _progress(generations, state["generation"] if state else 0, "evolution", progress)

    def finish_generation():
        history.append({"generation": len(history) + 1, "best_fitness": min(pop_fitness),
                        "evaluations": len(cache.entries)})
        _write_state(state_path, {**identity, "generation": len(history), "rng": rng.bit_generator.state,
                                  "population": [{"gene": g, "fitness": f} for g, f in zip(pop_genes, pop_fitness)],
                                  "cache": cache.to_json(), "history": history})
        bar.update(1)
        bar.set_postfix(best=f"{min(pop_fitness):.4f}", evaluations=len(cache.entries))

    if state:
        rng.bit_generator.state = state["rng"]
        cache.load(state["cache"])
        pop_genes = [p["gene"] for p in state["population"]]
        pop_fitness = [float(p["fitness"]) for p in state["population"]]
        history = state["history"]
    else:
        history = []
        pop_genes = _draw_under_budget(space, lambda: space.random_gene(rng), population, latency, budget_ms,
                                       "the initial population")
        pop_fitness = cache.evaluate(pop_genes)
        finish_generation()
    while len(history) < generations:
        order = np.argsort(pop_fitness, kind="stable")[:parents]  # stable: ties keep the older candidate
        parent_genes = [pop_genes[i] for i in order]
        children = _draw_under_budget(space, lambda: mutate(space, parent_genes[rng.integers(parents)], rng,
                                                            mutate_prob), mutations, latency, budget_ms,
                                      f"generation {len(history) + 1}: mutation")
        children += _draw_under_budget(space, lambda: crossover(*[parent_genes[i] for i in rng.choice(
            parents, 2, replace=False)], rng), crossovers, latency, budget_ms,
                                       f"generation {len(history) + 1}: crossover")
        pop_genes = parent_genes + children
        pop_fitness = [pop_fitness[i] for i in order] + cache.evaluate(children)
        finish_generation()
    bar.close()
    best = space.from_gene(pop_genes[int(np.argmin(pop_fitness))])
    result = _result("evolution", cache, best, history,
                     candidates_scored(population, mutations, crossovers, generations), state_path, settings)
    if plot_path:
        plot_search(plot_path, {"evolution": history}, budget_ms)
    return result


def random_search(space: Space, fitness, latency, budget_ms: float, evaluations: int, seed: int = 1,
                  state_path: str | None = None, *, population: int = HAT_EVOLUTION["population"],
                  progress: bool = True, plot_path: str | None = None, meta: dict | None = None) -> SearchResult:
    """The control: uniform random SubTransformers (HAT's sampler) under `budget_ms`, until `evaluations`
    distinct ones are evaluated, in blocks of `population` (one history entry and one state write each)."""
    if evaluations < 1 or population < 1:
        raise ConfigError(f"random search needs evaluations >= 1 and population >= 1 (got {evaluations}, "
                          f"{population})")
    settings = {"evaluations": evaluations, "population": population, "seed": seed}
    identity = _identity("random", space, budget_ms, settings, meta)
    cache = _Cache(space, fitness, latency)
    rng = np.random.default_rng(seed)
    state = _load_state(state_path, identity)
    blocks = math.ceil(evaluations / population)
    history: list[dict] = []
    if state:
        rng.bit_generator.state = state["rng"]
        cache.load(state["cache"])
        history = state["history"]
    bar = _progress(blocks, len(history), "random search", progress)
    while len(cache.entries) < evaluations:
        n = min(population, evaluations - len(cache.entries))
        genes = _draw_under_budget(space, lambda: space.random_gene(rng), n, latency, budget_ms,
                                   f"random search block {len(history) + 1}", seen=set(cache.entries))
        cache.evaluate(genes)
        best_fit = cache.entries[cache.best()][0]
        history.append({"generation": len(history) + 1, "best_fitness": best_fit, "evaluations": len(cache.entries)})
        _write_state(state_path, {**identity, "generation": len(history), "rng": rng.bit_generator.state,
                                  "cache": cache.to_json(), "history": history})
        bar.update(1)
        bar.set_postfix(best=f"{best_fit:.4f}")
    bar.close()
    result = _result("random", cache, cache.best(), history, len(cache.entries), state_path, settings)
    if plot_path:
        plot_search(plot_path, {"random search": history}, budget_ms)
    return result


def plot_search(path: str, histories: dict[str, list[dict]], budget_ms: float | None = None,
                ylabel: str = "best fitness so far (lower is better)") -> None:
    """Best fitness per generation against the fitness evaluations so far, one line per search (e.g. the
    evolution and its random-search control on the same axes). A PNG, written atomically."""
    fig = new_figure(figsize=(6.4, 4.0), dpi=120)
    ax = fig.subplots()
    for (label, history), style in zip(histories.items(), itertools.cycle(("o-", "s--", "^:", "d-.", "v-", "x--"))):
        ax.plot([h["evaluations"] for h in history], [h["best_fitness"] for h in history], style, markersize=3,
                label=f"{label} ({len(history)} generations)" if label == "evolution" else label)
    ax.set_xlabel("fitness evaluations (distinct SubTransformers)")
    ax.set_ylabel(ylabel)
    if budget_ms is not None:
        ax.set_title(f"search under a predicted latency of {budget_ms:g} ms", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# `tfmobile hat search`


def search_run(run_dir: str, predictor_dir: str, latency_ms: float, out: str, method: str = "evolution",
               valid_sentences: int = 200, seed: int = 1, resume: bool = False, data_dir: str | None = None,
               progress: bool = True, evaluations: int | None = None, settings: dict | None = None) -> dict:
    """`tfmobile hat search`: the SubTransformer of the SuperTransformer at `run_dir` with the lowest inherited
    validation loss on a fixed subset of the valid split (its first `valid_sentences` pairs), among those the
    predictor at `predictor_dir` puts under `latency_ms`; by HAT's evolution or by the random-search control.

    Writes the architecture YAML `out` (with its predicted latency and inherited loss), the search state
    `out + ".state.json"` (continued with `resume=True`) and the plot: `out` with the extension `.png`.
    `settings` overrides HAT's evolution settings (`HAT_EVOLUTION`). Random search makes `evaluations` fitness
    evaluations, by default `candidates_scored` of the evolution settings (3025 with HAT's), at least as many
    as the evolution makes: the control gets no fewer."""
    # TensorFlow loads only here: the search itself is numpy, and its tests need no SuperTransformer.
    from tfmobile.nas.predictor import load_predictor
    from tfmobile.nas.space import write_arch
    from tfmobile.nas.supertransformer import inherited_loss, load_supertransformer, valid_batches

    if method not in ("evolution", "random"):
        raise ConfigError(f"unknown search method {method!r} (known: evolution, random)")
    unknown = set(settings or {}) - set(HAT_EVOLUTION)
    if unknown:
        raise ConfigError(f"unknown search setting(s) {', '.join(sorted(unknown))} (known: {', '.join(HAT_EVOLUTION)})")
    settings = {**HAT_EVOLUTION, **(settings or {})}
    state_path = out + ".state.json"
    plot_path = os.path.splitext(out)[0] + ".png"
    if os.path.exists(state_path) and not resume:
        raise ConfigError(f"{state_path} holds a search (finished or not): pass --resume to continue it, or choose "
                          "another --out")
    space, exp, model, _ = load_supertransformer(run_dir)
    predictor = load_predictor(predictor_dir, space)
    fastest = float(predictor.min_latency_ms())
    if latency_ms < fastest:
        raise ConfigError(f"a latency budget of {latency_ms:g} ms is below the fastest SubTransformer the predictor "
                          f"knows ({fastest:.2f} ms); pass --latency-ms {math.ceil(fastest * 100) / 100:g} or more")
    batches = valid_batches(run_dir, exp, valid_sentences, data_dir)

    def fitness(archs):
        return [inherited_loss(model, arch, batches) for arch in archs]

    meta = {"run_dir": os.path.realpath(run_dir), "predictor": os.path.realpath(predictor_dir),
            "valid_sentences": valid_sentences}
    common = dict(seed=seed, state_path=state_path, progress=progress, plot_path=plot_path, meta=meta)
    if method == "evolution":
        result = evolution(space, fitness, predictor.predict_ms_many, latency_ms, **settings, **common)
    else:
        count = evaluations or candidates_scored(settings["population"], settings["mutations"],
                                                 settings["crossovers"], settings["generations"])
        result = random_search(space, fitness, predictor.predict_ms_many, latency_ms, count,
                               population=settings["population"], **common)
    write_arch(out, space, result.best, predicted_latency_ms=round(result.latency_ms, 3),
               inherited_valid_loss=round(result.fitness, 5), method=method, budget_ms=float(latency_ms))
    return {"arch": out, "method": method, "budget_ms": float(latency_ms),
            "predicted_latency_ms": round(result.latency_ms, 3), "inherited_valid_loss": round(result.fitness, 5),
            "evaluations": result.evaluations, "candidates": result.candidates, "generations": result.generations,
            "valid_sentences": valid_sentences, "state": state_path, "plot": plot_path,
            "description": result.best.describe()}


__all__ = ["HAT_EVOLUTION", "SearchResult", "candidates_scored", "crossover", "evolution", "mutate", "plot_search",
           "random_search", "search_run"]
