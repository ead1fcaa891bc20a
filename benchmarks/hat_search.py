"""HAT end to end on bible-es-en with the `small` design space: does the searched SubTransformer beat hand-designed
Transformers on measured latency at equal BLEU?

Stages, each resumable (a finished stage is read back, an interrupted one continues where it stopped):

    supertransformer   `tfmobile hat train small` (the space's recipe and step budget)
    latency            300 sampled SubTransformers exported to LiteRT and timed on this host, 1 thread
    predictor          HAT's MLP and the two least-squares baselines, held-out 20%
    latency_repeat     30 of those rows measured again: the labels' own noise, the floor for any predictor
    search             HAT's evolution at 3 budgets, and the random-search control with as many evaluations
    scratch            every searched SubTransformer and the hand-designed Transformers, trained from scratch
                       with one recipe and one step count, scored with beam 4 on the test split
    measure            every scratch model exported (float32) and timed side by side (`bench.compare`)
    proxy              inherited-weight validation loss of each architecture against its from-scratch BLEU

Writes benchmarks/results/hat_search.json and hat_search_{supertransformer,predictor,search,bleu_latency}.png.
Run it from a snapshot of the tree (`git archive`), as AutoGraph re-reads sources while tracing:

    python benchmarks/hat_search.py [--work runs/hat_bench] [--steps 1200] [--samples 300]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time

from _common import import_tensorflow_quietly, run_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")
EQUAL_BLEU = 0.3  # the "equal BLEU (within 0.3)"

# Hand-designed Transformers, all inside the small space (so each has an inherited loss too): the `small`
# preset, narrower, shallower, a deep encoder with a 1-layer decoder (what HAT's fast models look like), tiny.
HAND_DESIGNED = {
    "small (256, 3+3)": dict(d=(256, 256), ffn=(1024, 1024), heads=(4, 4), layers=(3, 3)),
    "narrow (192, 3+3, ffn 768)": dict(d=(192, 192), ffn=(768, 768), heads=(4, 4), layers=(3, 3)),
    "shallow (256, 2+2)": dict(d=(256, 256), ffn=(1024, 1024), heads=(4, 4), layers=(2, 2)),
    "deep-shallow (256, 4+1)": dict(d=(256, 256), ffn=(1024, 1024), heads=(4, 4), layers=(4, 1)),
    "tiny (192, 2+1, ffn 512)": dict(d=(192, 192), ffn=(512, 512), heads=(2, 2), layers=(2, 1)),
}
BUDGET_FRACTIONS = (0.2, 0.4, 0.6)  # of the way from the fastest to the largest SubTransformer's predicted latency


def hand_arch(spec: dict):
    from tfmobile.nas.space import Arch

    (de, dd), (fe, fd), (he, hd), (ne, nd) = spec["d"], spec["ffn"], spec["heads"], spec["layers"]
    return Arch(encoder_embed_dim=de, decoder_embed_dim=dd, encoder_ffn_dim=(fe,) * ne, encoder_num_heads=(he,) * ne,
                decoder_ffn_dim=(fd,) * nd, decoder_num_heads=(hd,) * nd, decoder_cross_num_heads=(hd,) * nd,
                encoder_layers_attended=(1,) * nd)


def _json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _save(path: str, value) -> None:
    from tfmobile.utils import atomic_write_text

    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def _stage(name: str, work: str, fn):
    """Run `fn()` once: its result is kept in work/stages/NAME.json and read back on a rerun."""
    path = os.path.join(work, "stages", f"{name}.json")
    if os.path.exists(path):
        print(f"[{name}] done before", flush=True)
        return _json(path)
    print(f"[{name}] ...", flush=True)
    start = time.monotonic()
    result = fn()
    result = {**result, "stage_seconds": round(time.monotonic() - start, 1)}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _save(path, result)
    return result


def train_supertransformer_stage(space, work, data_dir):
    from tfmobile.nas.training import train_supertransformer
    from tfmobile.run import latest_checkpoint

    run = os.path.join(work, "supertransformer")
    resume = latest_checkpoint(os.path.join(run, "checkpoints")) is not None
    state = train_supertransformer(space, run, resume=resume, data_dir=data_dir, verbose=2)
    with open(os.path.join(run, "history.csv"), encoding="utf-8") as f:
        history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return {"run": run, "state": state, "history": history}


def latency_stage(space, work, samples):
    from tfmobile.nas.latency import latency_dataset

    return latency_dataset(space, os.path.join(work, "latency.csv"), samples=samples, progress=True)


def repeat_stage(space, work, rows):
    """The noise floor of the labels: the first `rows` rows' models exported and measured again (same architecture,
    same weights, a fresh interpreter), and the MAPE between the two measurements. No predictor can be expected
    to beat it on held-out rows."""
    import numpy as np

    from tfmobile.nas.latency import HostLiteRT, export_subtransformer, read_latency, sample_row_arch

    _, _, first = read_latency(os.path.join(work, "latency.csv"))
    measurer, again = HostLiteRT(), []
    for row in first[:rows]:
        arch, weights_seed = sample_row_arch(space, 1, row["index"])
        path = os.path.join(work, "repeat.tflite")
        with open(path, "wb") as f:
            f.write(export_subtransformer(space, arch, weights_seed))
        again.append(measurer.measure(path)["latency_ms"])
        os.remove(path)
    before = np.array([r["latency_ms"] for r in first[:rows]])
    again = np.array(again)
    return {"rows": rows, "mape_between_measurements": round(float(np.mean(np.abs(again - before) / before) * 100), 2),
            "rmse_ms": round(float(np.sqrt(np.mean((again - before) ** 2))), 3),
            "first_ms": before.round(4).tolist(), "again_ms": again.round(4).tolist()}


def predictor_stage(work):
    from tfmobile.nas.predictor import fit_predictors, format_report

    out = os.path.join(work, "predictor")
    if os.path.isdir(out):  # an interrupted fit: start it again
        shutil.rmtree(out)
    report = fit_predictors(os.path.join(work, "latency.csv"), out, seed=1, progress=True)
    print(format_report(report), flush=True)
    return {"dir": out, "report": report}


def budgets_from(space, predictor_dir):
    from tfmobile.nas.predictor import load_predictor

    predictor = load_predictor(predictor_dir, space)
    low, high = predictor.min_latency_ms(), predictor.predict_ms(space.super_arch)
    return [round(low + f * (high - low), 2) for f in BUDGET_FRACTIONS]


def search_stage(space, work, budgets, valid_sentences, data_dir):
    from tfmobile.nas.search import search_run

    results = {}
    for budget in budgets:
        for method in ("evolution", "random"):
            out = os.path.join(work, "search", f"{method}-{budget:g}ms.yaml")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            evaluations = None
            if method == "random":
                evaluations = results[f"evolution@{budget:g}"]["evaluations"]
            print(f"  {method} under {budget:g} ms", flush=True)
            results[f"{method}@{budget:g}"] = search_run(
                os.path.join(work, "supertransformer"), os.path.join(work, "predictor"), budget, out, method=method,
                valid_sentences=valid_sentences, seed=1, resume=os.path.exists(out + ".state.json"),
                data_dir=data_dir, progress=True, evaluations=evaluations)
    return {"budgets": budgets, "valid_sentences": valid_sentences, "searches": results}


def scratch_models(space, search) -> dict:
    """name -> (arch, group): the evolution's winners and the hand-designed set."""
    from tfmobile.nas.space import load_arch

    models = {}
    for key, result in search["searches"].items():
        if key.startswith("evolution@"):
            models[f"HAT @{key.split('@')[1]} ms"] = (load_arch(result["arch"], space), "searched")
    for name, spec in HAND_DESIGNED.items():
        models[name] = (space.check(hand_arch(spec)), "hand-designed")
    return models


def scratch_stage(space, work, models, steps, data_dir):
    from tfmobile.decoding.evaluate import evaluate_run
    from tfmobile.run import latest_checkpoint, read_state
    from tfmobile.training.trainer import train

    out = {}
    for name, (arch, group) in models.items():
        run = os.path.join(work, "scratch", arch.key())
        result_path = os.path.join(run, "bleu.json")
        if not os.path.exists(result_path):
            exp = space.experiment(arch, name=f"hat-scratch-{arch.key()}")
            exp.train.steps_per_epoch = 100
            exp.train.epochs = steps // 100
            print(f"  {name}: {arch.describe()}", flush=True)
            resume = latest_checkpoint(os.path.join(run, "checkpoints")) is not None
            train(exp, run, resume=resume, data_dir=data_dir, verbose=2)
            result = evaluate_run(run, "test", beam=4, data_dir=data_dir, progress=True)
            result.pop("pairs", None)
            _save(result_path, {**result, "train": read_state(run)})
        result = _json(result_path)
        out[name] = {"group": group, "arch": arch.to_dict(), "run": run, "bleu": result["bleu"], "chrf": result["chrf"],
                     "steps": result["train"]["steps_done"], "train_seconds": result["train"]["train_seconds"]}
    return {"models": out}


def measure_stage(scratch, rounds, data_dir):
    from tfmobile.deploy.bench import compare
    from tfmobile.deploy.export import export_translator
    from tfmobile.nas.latency import EXPORT_LEN

    paths = {}
    for name, info in scratch.items():
        export = os.path.join(info["run"], "export")
        if not os.path.exists(os.path.join(export, "model.tflite")):
            export_translator(info["run"], export, max_source_len=EXPORT_LEN, max_target_len=EXPORT_LEN, data_dir=data_dir,
                              force=os.path.exists(export))
        paths[name] = os.path.join(export, "model.tflite")
    reference = next(n for n, i in scratch.items() if i["group"] == "hand-designed")  # `small`
    return {"reference": reference, "rounds": rounds, "compare": compare(paths, reference, rounds=rounds)}


def proxy_stage(space, work, models, scratch, valid_sentences, data_dir):
    from scipy.stats import spearmanr

    from tfmobile.nas.supertransformer import inherited_loss, load_supertransformer, valid_batches

    run = os.path.join(work, "supertransformer")
    _, exp, model, _ = load_supertransformer(run)
    batches = valid_batches(run, exp, valid_sentences, data_dir)
    losses = {name: inherited_loss(model, arch, batches) for name, (arch, _) in models.items()}
    names = list(models)
    rho, p = spearmanr([losses[n] for n in names], [scratch[n]["bleu"] for n in names])
    return {"inherited_valid_loss": losses, "spearman_loss_vs_bleu": float(rho), "p_value": float(p),
            "architectures": len(names)}


def pareto_front(points: dict) -> list[tuple[float, float, str]]:
    """(latency, BLEU, name) of the models no other model beats on both (faster and at least as good), by latency."""
    ordered = sorted((ms, bleu, name) for name, (ms, bleu) in points.items())
    front, best = [], float("-inf")
    for ms, bleu, name in ordered:
        if bleu > best:
            front.append((ms, bleu, name))
            best = bleu
    return front


def front_latency(front, bleu: float) -> float | None:
    """The latency the hand-designed front needs for `bleu`: linear between its points; its fastest point's below
    them (a bound: no hand-designed model is faster); None above its best BLEU."""
    if bleu > front[-1][1]:
        return None
    if bleu <= front[0][1]:
        return front[0][0]
    for (ms_a, bleu_a, _), (ms_b, bleu_b, _) in zip(front, front[1:]):
        if bleu_a <= bleu <= bleu_b:
            return ms_a + (bleu - bleu_a) / (bleu_b - bleu_a) * (ms_b - ms_a)
    return None


def speedups(scratch, measured) -> dict:
    """Each searched model against the hand-designed ones, on measured latency, two ways:
    equal_bleu   the fastest hand-designed model whose BLEU is within 0.3 of it (the issue's "equal BLEU"), if any;
    front        the hand-designed Pareto front (latency against BLEU) interpolated at its BLEU: the latency a
                 hand-designed Transformer needs for that BLEU. Above 1 the searched model lies beyond the front."""
    hand = {n: (measured[n]["hat_ms"], i["bleu"]) for n, i in scratch.items() if i["group"] == "hand-designed"}
    front = pareto_front(hand)
    out = {"hand_designed_front": [name for _, _, name in front]}
    for name, info in scratch.items():
        if info["group"] != "searched":
            continue
        ms, bleu = measured[name]["hat_ms"], info["bleu"]
        entry = {"bleu": bleu, "hat_ms": ms}
        equal = [n for n, (_, b) in hand.items() if abs(b - bleu) <= EQUAL_BLEU]
        if equal:
            rival = min(equal, key=lambda n: hand[n][0])
            entry["equal_bleu"] = {"rival": rival, "rival_bleu": hand[rival][1], "rival_hat_ms": hand[rival][0],
                                   "speedup": round(hand[rival][0] / ms, 3)}
        else:
            entry["equal_bleu"] = None  # no hand-designed model within 0.3 BLEU
        needed = front_latency(front, bleu)
        entry["front"] = None if needed is None else {"front_hat_ms": round(needed, 4), "speedup": round(needed / ms, 3)}
        out[name] = entry
    return out


def plots(work, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfmobile.nas.search import plot_search

    history = results["supertransformer"]["history"]
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [(h["epoch"] + 1) * 100 for h in history]
    ax.plot(steps, [h["loss"] for h in history], label="training loss (sampled SubTransformers)")
    ax.plot(steps, [h["val_loss"] for h in history], label="valid loss, largest")
    ax.plot(steps, [h["val_loss_smallest"] for h in history], label="valid loss, smallest")
    ax.set_xlabel("updates")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title("SuperTransformer (small space) on bible-es-en")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "hat_search_supertransformer.png"), dpi=120)
    plt.close(fig)

    shutil.copyfile(os.path.join(work, "predictor", "scatter.png"), os.path.join(RESULTS, "hat_search_predictor.png"))

    histories = {}
    for key, result in results["search"]["searches"].items():
        state = _json(result["state"])
        histories[key] = state["history"]
    plot_search(os.path.join(RESULTS, "hat_search_search.png"), histories)

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    measured = results["measure"]["compare"]
    for group, marker in (("hand-designed", "o"), ("searched", "*")):
        names = [n for n, i in results["scratch"].items() if i["group"] == group]
        xs, ys = [measured[n]["hat_ms"] for n in names], [results["scratch"][n]["bleu"] for n in names]
        ax.scatter(xs, ys, marker=marker, s=90 if marker == "*" else 40, label=group)
        for n, x, y in zip(names, xs, ys):
            ax.annotate(n, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("measured latency, HAT's measure (ms, LiteRT float32, 1 thread)")
    ax.set_ylabel("test BLEU (beam 4)")
    ax.set_title(f"from scratch, {results['settings']['steps']} steps each")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "hat_search_bleu_latency.png"), dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=os.path.join("runs", "hat_bench"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--space", default="small")
    parser.add_argument("--samples", type=int, default=300, help="latency rows")
    parser.add_argument("--steps", type=int, default=1200, help="from-scratch training steps of every model")
    parser.add_argument("--valid-sentences", type=int, default=100,
                        help="the search's fitness subset (one inherited loss on 100 sentences: about 0.2 s here)")
    parser.add_argument("--rounds", type=int, default=20, help="bench.compare rounds")
    parser.add_argument("--hand-designed-only", action="store_true",
                        help="only train and score the hand-designed models from scratch (they need no search, so this "
                             "can run beside the search stage), then stop")
    parser.add_argument("--until", choices=["supertransformer", "latency", "predictor", "search", "scratch", "measure"],
                        help="stop after this stage")
    args = parser.parse_args()

    def body():
        import_tensorflow_quietly()
        from tfmobile.hardware import machine
        from tfmobile.nas.space import load_space

        space = load_space(args.space)
        work = os.path.abspath(args.work)
        os.makedirs(work, exist_ok=True)
        results = {"settings": {"space": space.name, "samples": args.samples, "steps": args.steps,
                                "valid_sentences": args.valid_sentences, "rounds": args.rounds},
                   "machine": machine()}
        if args.hand_designed_only:
            hand = {name: (space.check(hand_arch(spec)), "hand-designed") for name, spec in HAND_DESIGNED.items()}
            print(json.dumps(scratch_stage(space, work, hand, args.steps, args.data_dir)["models"], indent=2))
            return 0
        results["supertransformer"] = _stage("supertransformer", work,
                                             lambda: train_supertransformer_stage(space, work, args.data_dir))
        if args.until == "supertransformer":
            return 0
        results["latency"] = _stage("latency", work, lambda: latency_stage(space, work, args.samples))
        if args.until == "latency":
            return 0
        results["predictor"] = _stage("predictor", work, lambda: predictor_stage(work))
        results["latency_repeat"] = _stage("latency_repeat", work, lambda: repeat_stage(space, work, 30))
        if args.until == "predictor":
            return 0
        budgets = budgets_from(space, os.path.join(work, "predictor"))
        results["search"] = _stage("search", work, lambda: search_stage(space, work, budgets, args.valid_sentences,
                                                                         args.data_dir))
        if args.until == "search":
            return 0
        models = scratch_models(space, results["search"])
        results["scratch"] = _stage("scratch", work,
                                    lambda: scratch_stage(space, work, models, args.steps, args.data_dir))["models"]
        if args.until == "scratch":
            return 0
        results["measure"] = _stage("measure", work, lambda: measure_stage(results["scratch"], args.rounds, args.data_dir))
        if args.until == "measure":
            return 0
        results["proxy"] = _stage("proxy", work, lambda: proxy_stage(space, work, models, results["scratch"],
                                                                      args.valid_sentences, args.data_dir))
        results["speedups"] = speedups(results["scratch"], results["measure"]["compare"])
        os.makedirs(RESULTS, exist_ok=True)
        _save(os.path.join(RESULTS, "hat_search.json"), results)
        plots(work, results)
        print(json.dumps({"speedups": results["speedups"], "proxy": results["proxy"]["spearman_loss_vs_bleu"]}, indent=2))
        return 0

    return run_main("hat_search", body)


if __name__ == "__main__":
    sys.exit(main())
