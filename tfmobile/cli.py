"""`tfmobile <verb>`: data, train, translate, evaluate, generate, export, prune, qat, tprune, bssl, bench, profile, presets, quickstart, hat.

Every user-fixable problem is a `TfmobileError`: printed as one line on stderr, exit status 2.
TensorFlow is imported only by the verbs that need it, so `profile` and `presets` answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfmobile.errors import ConfigError, InputError, TfmobileError  # noqa: E402
from tfmobile.models.config import STRATEGIES, TrainConfig, field_rule, rule_problem  # noqa: E402


def _import_tensorflow_quietly():
    """Import TensorFlow with stderr muted: its C++ start-up lines (oneDNN, CUDA probing) are printed
    before any log level applies and would bury our one-line errors."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()  # probes CUDA now, while muted
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


NO_TENSORFLOW = {"profile", "presets", "hat spaces"}


def _add_data_dir(p):
    p.add_argument("--data-dir", default=None, type=_directory,
                   help="where prepared corpora are cached (default: $TFMOBILE_DATA_DIR or ~/.cache/tfmobile/data)")


def cmd_data_prepare(args):
    from tfmobile.data import format_counts, prepare_corpus
    from tfmobile.data.text import TEXT_CORPORA, prepare_text

    if args.name in TEXT_CORPORA or args.name.endswith(".txt"):  # continuous text, a language model's
        text = prepare_text(args.name, data_dir=args.data_dir, force=args.force)
        if args.json:
            print(json.dumps({"corpus": text.corpus, "chars": text.chars, "directory": text.directory}))
        else:
            print(f"text {text.corpus} in {text.directory}: " + ", ".join(
                f"{split} {n:,} characters" for split, n in text.chars.items()))
        return
    prepared = prepare_corpus(args.name, data_dir=args.data_dir, force=args.force)
    if args.json:
        print(json.dumps({"corpus": prepared.corpus, "src_lang": prepared.src_lang, "tgt_lang": prepared.tgt_lang,
                          **prepared.counts, "directory": prepared.directory}))
    else:
        print(format_counts(prepared))


def _apply_train_overrides(exp, args):
    t = exp.train
    for name in ("epochs", "steps_per_epoch", "max_tokens", "strategy", "seed"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(t, name, value)
    if getattr(args, "time_budget", None) is not None:
        t.time_budget_minutes = args.time_budget
    if getattr(args, "jit", None) is not None:
        t.jit_compile = args.jit
    if getattr(args, "corpus", None):
        exp.data.corpus = args.corpus
    return exp


def cmd_train(args):
    from tfmobile.models.config import load_config
    from tfmobile.training.trainer import train

    exp = _apply_train_overrides(load_config(args.config), args)
    out = args.out or os.path.join("runs", exp.name)
    state = train(exp, out, resume=args.resume, data_dir=args.data_dir)
    print(json.dumps({"run_dir": out, **state}))


def _read_stdin_lines():
    """stdin's lines, decoded strictly: a line that is not UTF-8 is named, not translated as mojibake."""
    lines = []
    for number, raw in enumerate(getattr(sys.stdin, "buffer", sys.stdin), 1):  # a text stream: already decoded
        try:
            lines.append((raw if isinstance(raw, str) else raw.decode("utf-8")).rstrip("\r\n"))
        except UnicodeDecodeError as e:
            raise InputError(f"stdin line {number} is not valid UTF-8 (byte 0x{raw[e.start]:02x} at column "
                             f"{e.start + 1})") from None
    return lines


def cmd_translate(args):
    from tfmobile.decoding import Translator
    from tfmobile.deploy.runtime import LiteTranslator, is_export

    lines = _read_stdin_lines()  # first: bad input is refused before a model loads
    if is_export(args.model_dir):
        translator, kwargs = LiteTranslator(args.model_dir, num_threads=args.threads), {}
    else:
        translator = Translator.from_run(args.model_dir, beam_size=args.beam, length_penalty=args.length_penalty)
        kwargs = {"batch_size": args.batch_size}
    keep = [i for i, l in enumerate(lines) if l.strip()]
    outputs = translator.translate([lines[i] for i in keep], **kwargs)
    result = [""] * len(lines)
    for i, o in zip(keep, outputs):
        result[i] = o
    sys.stdout.write("".join(r + "\n" for r in result))


def cmd_evaluate(args):
    from tfmobile.decoding.evaluate import evaluate_run
    from tfmobile.deploy.lm_export import is_lm_export
    from tfmobile.deploy.runtime import evaluate_export, is_export
    from tfmobile.run import is_lm_run

    if is_lm_export(args.model_dir):
        raise ConfigError(f"{args.model_dir} is a language model's export: evaluate its run (the perplexity of a "
                          "split is one teacher-forced pass of the Keras model per sequence)")
    if not is_export(args.model_dir) and is_lm_run(args.model_dir):  # perplexity, always one JSON line
        from tfmobile.decoding.lm import evaluate_lm

        print(json.dumps(evaluate_lm(args.model_dir, args.split, args.limit, args.data_dir)))
        return
    if is_export(args.model_dir):  # an exported .tflite: greedy, through ai_edge_litert
        result = evaluate_export(args.model_dir, args.split, args.limit, args.data_dir, args.threads,
                                 progress=not args.json)
    else:
        result = evaluate_run(args.model_dir, args.split, args.beam, args.length_penalty, args.limit, args.data_dir,
                              args.batch_size, progress=not args.json)
    if args.json:
        print(json.dumps(result))
    else:
        engine = (f"LiteRT {result['quantization']}, {result['model_bytes'] / 2**20:.1f} MiB, greedy"
                  if result.get("engine") == "litert" else f"beam {result['beam']}")
        print(f"BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}  ({result['sentences']} sentences, "
              f"{result['corpus']} {result['split']}, {engine})")
        print(f"signature: {result['sacrebleu_signature']}")


def cmd_export(args):
    from tfmobile.deploy.export import export_translator
    from tfmobile.run import is_lm_run

    if is_lm_run(args.model_dir):
        from tfmobile.deploy.lm_export import export_lm

        if args.max_source_len or args.max_target_len:
            raise ConfigError("--max-source-len and --max-target-len apply to a translator; a language model's "
                              "export takes --max-len (its cache length)")
        meta = export_lm(args.model_dir, args.out, quantize=args.quantize, max_len=args.max_len, force=args.force)
        gpu = meta["gpu_compatibility"]
        print(f"wrote {args.out}: {meta['model_file']} ({meta['model_bytes'] / 2**20:.2f} MiB, {meta['quantization']}), "
              f"spm.model, model_meta.json")
        print(f"signature decode_step with {len(meta['cache_names'])} cache tensors of {meta['max_len']} positions; "
              "GPU delegate: " + ("compatible" if gpu["compatible"] else "incompatible (" + "; ".join(gpu["incompatible"]) + ")"))
        return
    if args.max_len:
        raise ConfigError("--max-len applies to a language model; a translator's export takes --max-source-len and "
                          "--max-target-len")
    meta = export_translator(args.model_dir, args.out, quantize=args.quantize, max_source_len=args.max_source_len,
                             max_target_len=args.max_target_len, calibration_sentences=args.calibration_sentences,
                             data_dir=args.data_dir, force=args.force)
    gpu = meta["gpu_compatibility"]
    print(f"wrote {args.out}: {meta['model_file']} ({meta['model_bytes'] / 2**20:.2f} MiB, {meta['quantization']}), "
          f"{', '.join(meta['tokenizers'].values())}, model_meta.json")
    print(f"signatures {', '.join(meta['signatures'])}; source <= {meta['max_source_len']} tokens, "
          f"target <= {meta['max_target_len']}; GPU delegate: "
          + ("compatible" if gpu["compatible"] else "incompatible (" + "; ".join(gpu["incompatible"]) + ")"))


def cmd_profile(args):
    from tfmobile.models.config import load_config
    from tfmobile.profiling import format_profile, profile

    run_config = os.path.join(args.config, "config.yaml")
    if os.path.isdir(args.config) and os.path.isfile(run_config):  # a run directory: the config it trained
        exp = load_config(run_config)
        exp.name = os.path.basename(os.path.normpath(args.config))
    else:
        exp = load_config(args.config)
    if exp.is_lm:
        result = profile(exp, seq_len=args.seq_len)
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{exp.name}: language model, one sequence of {result['seq_len']} tokens")
            print(format_profile(result))
        return
    if args.seq_len is not None:
        raise ConfigError("--seq-len applies to a language model; a translator takes --src-len and --tgt-len")
    result = profile(exp.model, src_len=args.src_len, tgt_len=args.tgt_len)
    if args.json:
        print(json.dumps({"params": result["params"], "mult_adds": result["mult_adds"], **result}))
    else:
        print(f"{exp.name}: {args.src_len} source + {args.tgt_len} target tokens")
        print(format_profile(result))


def cmd_generate(args):
    from tfmobile.deploy.lm_export import LiteLM, is_lm_export
    from tfmobile.deploy.runtime import is_export

    if is_lm_export(args.model_dir):
        generator = LiteLM(args.model_dir, num_threads=args.threads)
    elif is_export(args.model_dir):
        raise ConfigError(f"{args.model_dir} is a translator's export: `tfmobile translate` runs it")
    else:
        from tfmobile.decoding.lm import LMGenerator

        generator = LMGenerator.from_run(args.model_dir)
    result = generator.generate(args.prompt, args.tokens, args.temperature, args.seed)
    print(json.dumps(result) if args.json else result["text"])


def cmd_presets(args):
    from tfmobile.models.config import load_config
    from tfmobile.models.presets import preset_names

    for name in preset_names():
        print(f"{name:28s} {load_config(name).description}")


def cmd_quickstart(args):
    from tfmobile.quickstart import quickstart

    quickstart(report_dir=args.report_dir, run_dir=args.run_dir, steps=args.steps, data_dir=args.data_dir,
               config=args.config, beam=args.beam)


def _adb_flags(args, wanted: bool, what: str):
    """--serial and --adb-timeout mean a phone: refused without it, rather than silently unused."""
    if not wanted:
        given = [flag for flag, value in (("--serial", args.serial), ("--adb-timeout", args.adb_timeout))
                 if value is not None]
        if given:
            raise ConfigError(f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} {what}")


def cmd_bench(args):
    from tfmobile.deploy.bench import bench, format_table
    from tfmobile.utils import atomic_write_text

    _adb_flags(args, args.adb, "--adb")
    measure = dict(delegate=args.delegate, num_threads=args.threads, source_len=args.source_len,
                   decode_steps=args.steps, warmup=args.warmup, runs=args.runs)
    if args.adb:
        from tfmobile.deploy.adb import DEFAULT_TIMEOUT, bench_on_phone

        result = bench_on_phone(args.model, serial=args.serial, timeout=args.adb_timeout or DEFAULT_TIMEOUT, **measure)
    else:
        result = bench(args.model, **measure)
    print(format_table(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")


def cmd_prune(args):
    from tfmobile.compression.tfmot_hooks import parse_block, parse_m_by_n, prune_run

    block, m_by_n = parse_block(args.block), parse_m_by_n(args.m_by_n)
    result = prune_run(args.run_dir, args.out, sparsity_target=args.sparsity, schedule=args.schedule,
                       initial_sparsity=args.initial_sparsity, block_size=block, m_by_n=m_by_n, steps=args.steps,
                       learning_rate=args.learning_rate, begin_step=args.begin_step, end_step=args.end_step,
                       frequency=args.frequency, prune_embeddings=args.prune_embeddings, resume=args.resume,
                       data_dir=args.data_dir, verbose=args.verbose)
    print(json.dumps(result))


def cmd_qat(args):
    from tfmobile.compression.tfmot_hooks import qat_run

    result = qat_run(args.run_dir, args.out, steps=args.steps, learning_rate=args.learning_rate, resume=args.resume,
                     data_dir=args.data_dir, verbose=args.verbose)
    print(json.dumps(result))
    print(f"next: {result['next']}", file=sys.stderr)


def cmd_tprune(args):
    from tfmobile.compression.recipes import tprune_run

    result = tprune_run(args.run_dir, args.out, args.sparsity, method=args.method,
                        regularizer=None if args.regularizer == "none" else args.regularizer, strength=args.strength,
                        reg_steps=args.reg_steps, finetune_steps=args.finetune_steps,
                        learning_rate=args.learning_rate, strategy=args.strategy, regularized_dir=args.regularized,
                        data_dir=args.data_dir, verbose=args.verbose, align=args.align, resume=args.resume)
    print(json.dumps({k: result[k] for k in ("method", "target_sparsity", "sparsity", "params_before", "params",
                                              "layers")}))


def cmd_bssl(args):
    from tfmobile.compression.bssl import bssl_run

    result = bssl_run(args.run_dir, args.out, args.strength, args.steps, args.learning_rate, data_dir=args.data_dir,
                      plot=args.plot, verbose=args.verbose, resume=args.resume)
    print(json.dumps({"plot": result["plot"], "sparsity": result["sparsity"]}))


# ---------------------------------------------------------------------------------------------
# HAT (tfmobile.nas): `tfmobile hat spaces|train|extract|latency|predictor|search`


def cmd_hat_spaces(args):
    from tfmobile.nas.space import load_space, space_names

    for name in space_names():
        space = load_space(name)
        print(f"{name:<12} {space.size():.1e} SubTransformers  {space.description.split(' - ')[0].split(';')[0]}")


def cmd_hat_train(args):
    from tfmobile.nas.space import load_space
    from tfmobile.nas.training import train_supertransformer

    space = load_space(args.space)
    _apply_train_overrides(space, args)
    state = train_supertransformer(space, args.out, resume=args.resume, data_dir=args.data_dir,
                                   verbose="auto" if args.verbose is None else args.verbose)
    print(json.dumps({"run_dir": args.out, **state}))


def cmd_hat_extract(args):
    from tfmobile.nas.supertransformer import extract

    result = extract(args.run_dir, args.arch, args.out)
    print(json.dumps(result))


def cmd_hat_latency(args):
    from tfmobile.nas.latency import AdbPhone, latency_dataset
    from tfmobile.nas.space import load_space

    _adb_flags(args, args.measurer == "adb", "--measurer adb")
    space = load_space(args.space)
    measurer = None  # latency_dataset's default: host LiteRT
    if args.measurer == "adb":
        from tfmobile.deploy.adb import DEFAULT_TIMEOUT

        measurer = AdbPhone(args.delegate, args.threads, serial=args.serial,
                            timeout=args.adb_timeout or DEFAULT_TIMEOUT, runs=args.runs, warmup=args.warmup)
    result = latency_dataset(space, args.out, samples=args.samples, delegate=args.delegate,
                             threads=args.threads, seed=args.seed, runs=args.runs, warmup=args.warmup,
                             progress=not args.quiet, measurer=measurer)
    print(json.dumps(result))


def cmd_hat_predictor(args):
    from tfmobile.nas.predictor import fit_predictors, format_report

    report = fit_predictors(args.latency, args.out, seed=args.seed, progress=not args.quiet)
    print(format_report(report))


def cmd_hat_search(args):
    from tfmobile.nas.search import search_run

    result = search_run(args.run_dir, args.predictor, args.latency_ms, args.out, method=args.method,
                        valid_sentences=args.valid_sentences, seed=args.seed, resume=args.resume,
                        data_dir=args.data_dir, progress=not args.quiet)
    print(json.dumps(result))


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, as every other tfmobile error (argparse would print the usage block too)."""

    def error(self, message):
        self.exit(2, f"tfmobile: error: {message}\n")


def _typed(kind, **rule):
    """The argparse type of a flag: its text as a `kind` that keeps `rule`, the rules config fields declare
    (`tfmobile.models.config.ranged`). E.g. `--beam 0`: "argument --beam: must be a positive integer (got 0)"."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = text
        problem = rule_problem(value, kind, rule)
        if problem:
            raise argparse.ArgumentTypeError(f"must be {problem} (got {text})")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


def _like(cls, name: str):
    """The type of a flag that overrides the config field `cls.name`: that field's type and rule."""
    kind, rule = field_rule(cls, name)
    return _typed(kind, **rule)


_COUNT = _typed(int, min=1)
_NON_NEGATIVE = _typed(int, min=0)
_FRACTION = _typed(float, min=0.0, below=1.0)  # a sparsity: the fraction of weights that become zero
_LEARNING_RATE = _like(TrainConfig, "learning_rate")


def _threads_or_auto(text: str) -> int:
    """bench --threads: a positive count, or -1 (the runtime chooses)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value != -1 and value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or -1 (got {text})")
    return value


def _directory(text: str) -> str:
    """A directory a verb writes into: an existing file there is refused before any work starts."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a file, not a directory")
    return text


def _file(text: str) -> str:
    """A file a verb writes: an existing directory there is refused before any work starts."""
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a directory, not a file")
    return text


def _add_finetune_args(p, what: str):
    p.add_argument("run_dir", help="a trained run directory (`tfmobile train`)")
    p.add_argument("--out", required=True, type=_directory,
                   help=f"the new run directory, {what} (`tfmobile export/evaluate` take it)")
    p.add_argument("--steps", type=_COUNT, default=200, help="fine-tuning steps (default 200)")
    p.add_argument("--learning-rate", type=_LEARNING_RATE,
                   help="peak fine-tuning learning rate, warm-up over a tenth of the steps "
                        "(default: where the run's schedule ended)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fine-tune in --out")
    p.add_argument("--verbose", type=int, default=0, choices=[0, 1, 2], help="Keras progress output")
    _add_data_dir(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tfmobile", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)

    data = sub.add_parser("data", help="prepare corpora").add_subparsers(dest="data_verb", required=True)
    p = data.add_parser("prepare", help="prepare a corpus and print its split counts")
    p.add_argument("name", help="bible-es-en, ding-de-en, a TSV path, or 'SRC_FILE,TGT_FILE'; for a language model "
                                "bible-en, bible-es or a .txt path")
    p.add_argument("--json", action="store_true", help="one machine-readable JSON line")
    p.add_argument("--force", action="store_true", help="rebuild the cached files")
    _add_data_dir(p)
    p.set_defaults(func=cmd_data_prepare)

    p = sub.add_parser("train", help="train a config with model.fit")
    p.add_argument("config", help="preset name (see `tfmobile presets`) or YAML path")
    p.add_argument("--out", type=_directory, help="run directory (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--epochs", type=_like(TrainConfig, "epochs"))
    p.add_argument("--steps-per-epoch", type=_like(TrainConfig, "steps_per_epoch"))
    p.add_argument("--max-tokens", type=_like(TrainConfig, "max_tokens"))
    p.add_argument("--time-budget", type=_like(TrainConfig, "time_budget_minutes"),
                   help="stop after this many minutes of training")
    p.add_argument("--strategy", choices=STRATEGIES)
    p.add_argument("--seed", type=_like(TrainConfig, "seed"))
    p.add_argument("--corpus", help="override data.corpus")
    p.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                   help="XLA-compile the training step (default from the config: off, it measured slower here)")
    _add_data_dir(p)
    p.set_defaults(func=cmd_train)

    for verb, helptext in (("translate", "translate stdin to stdout"), ("evaluate", "sacreBLEU on a split")):
        p = sub.add_parser(verb, help=helptext)
        p.add_argument("model_dir", help="a run directory, or an export directory / its model.tflite (greedy)")
        p.add_argument("--beam", type=_COUNT, default=4, help="beam size (1 = greedy)")
        p.add_argument("--length-penalty", type=_typed(float, min=0.0), default=1.0)
        p.add_argument("--batch-size", type=_COUNT, default=32)
        p.add_argument("--threads", type=_COUNT, default=1, help="CPU threads for an exported model (default 1)")
        if verb == "evaluate":
            p.add_argument("--split", default="test", choices=["train", "valid", "test"])
            p.add_argument("--limit", type=_COUNT, help="only the first N sentences")
            p.add_argument("--json", action="store_true")
            _add_data_dir(p)
        p.set_defaults(func=cmd_translate if verb == "translate" else cmd_evaluate)

    p = sub.add_parser("export", help="a trained run -> LiteRT model with on-device decoding (+ tokenizer, metadata)")
    p.add_argument("model_dir", help="a run directory (`tfmobile train`)")
    p.add_argument("--out", required=True, type=_directory,
                   help="export directory (model.tflite, model_meta.json, spm.model)")
    p.add_argument("--quantize", default="none", choices=["none", "float16", "dynamic", "int8"],
                   help="none (float32), float16 weights, dynamic-range int8, or int8 calibrated on the corpus")
    p.add_argument("--max-source-len", type=_COUNT,
                   help="fixed source length incl. EOS (default: the run's data.max_len)")
    p.add_argument("--max-target-len", type=_COUNT, help="fixed target length (default: the run's data.max_len)")
    p.add_argument("--max-len", type=_COUNT, help="a language model's cache length (default: its model.max_len)")
    p.add_argument("--calibration-sentences", type=_COUNT, default=100,
                   help="int8: training sentences to calibrate on")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    _add_data_dir(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("prune", help="fine-tune a run with TF-MOT magnitude pruning into a new (stripped) run")
    _add_finetune_args(p, "saved stripped of the pruning wrappers")
    p.add_argument("--sparsity", type=_FRACTION, help="target fraction of zeros in each pruned kernel, e.g. 0.5")
    p.add_argument("--schedule", default="constant", choices=["constant", "polynomial"],
                   help="constant sparsity, or polynomial decay from --initial-sparsity to --sparsity")
    p.add_argument("--initial-sparsity", type=_FRACTION, default=0.0, help="polynomial: sparsity at --begin-step")
    p.add_argument("--begin-step", type=_NON_NEGATIVE, default=1, help="first step that prunes (default 1)")
    p.add_argument("--end-step", type=_COUNT, help="polynomial: step that reaches --sparsity (default 3/4 of --steps)")
    p.add_argument("--frequency", type=_COUNT, help="recompute the masks every N steps (default --steps/20)")
    p.add_argument("--block", help="zero blocks ROWSxCOLS of each kernel [in, out], e.g. 1x4 (default element-wise)")
    p.add_argument("--m-by-n", help="M zeros in every N consecutive input channels, e.g. 2:4 (implies --sparsity M/N)")
    p.add_argument("--prune-embeddings", action="store_true", help="also prune the embedding matrices")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("qat", help="quantization-aware fine-tuning (8-bit kernels) before `export --quantize int8`")
    _add_finetune_args(p, "with float weights that survive int8")
    p.set_defaults(func=cmd_qat)

    p = sub.add_parser("tprune", help="TPrune: regularize, prune whole rows/columns, shrink to a smaller dense model, "
                                      "fine-tune (or head-wise pruning, the baseline)")
    p.add_argument("run_dir", help="a trained run directory (`tfmobile train`)")
    p.add_argument("--out", required=True, type=_directory, help="the new run directory (the shrunk model)")
    p.add_argument("--sparsity", type=_FRACTION, default=0.2,
                   help="fraction of the encoder/decoder layers' kernel weights to remove (default 0.2)")
    p.add_argument("--method", default="tprune", choices=["tprune", "headwise"])
    p.add_argument("--regularizer", default="shs", choices=["shs", "ssl", "none"],
                   help="group regularizer before pruning: Structured Hoyer Square, SSL group lasso, or none")
    p.add_argument("--strength", type=_typed(float, min=0.0), default=None,
                   help="regularizer lambda (default: shs 1e-2, ssl 5e-4)")
    p.add_argument("--reg-steps", type=_COUNT, default=400, help="regularized fine-tuning steps (default 400)")
    p.add_argument("--regularized", default=None, type=_directory,
                   help="where the regularized run goes, or an existing one to reuse (default OUT-regularized)")
    p.add_argument("--finetune-steps", type=_COUNT, default=300, help="fine-tuning steps after shrinking (default 300)")
    p.add_argument("--learning-rate", type=_LEARNING_RATE, default=5e-4)
    p.add_argument("--strategy", default="tprune", choices=["tprune", "all"],
                   help="tprune: encoder Q/K, V/O and FFN lines, decoder Q/K only (the paper's); all: every group")
    p.add_argument("--align", type=_COUNT, default=1,
                   help="round each kept width to a multiple of this (e.g. 8 or 16, for SIMD kernels; default 1)")
    p.add_argument("--verbose", type=int, default=0, choices=[0, 1, 2], help="Keras progress output")
    p.add_argument("--resume", action="store_true", help="continue an interrupted tprune into --out")
    _add_data_dir(p)
    p.set_defaults(func=cmd_tprune)

    p = sub.add_parser("bssl", help="BSSL analysis: block-wise group lasso fine-tune and sparsity heatmaps (PNG)")
    p.add_argument("run_dir", help="a trained run directory")
    p.add_argument("--out", required=True, type=_directory,
                   help="the regularized run directory (heatmaps: OUT/bssl.png)")
    p.add_argument("--strength", type=_typed(float, min=0.0), default=2e-5)
    p.add_argument("--steps", type=_COUNT, default=300)
    p.add_argument("--learning-rate", type=_LEARNING_RATE, default=5e-4)
    p.add_argument("--plot", default=None, type=_file, help="PNG path (default OUT/bssl.png)")
    p.add_argument("--verbose", type=int, default=0, choices=[0, 1, 2])
    p.add_argument("--resume", action="store_true", help="continue an interrupted bssl fine-tune in --out")
    _add_data_dir(p)
    p.set_defaults(func=cmd_bssl)

    p = sub.add_parser("profile", help="parameters and Mult-Adds, counted as in the papers")
    p.add_argument("config", help="preset name, YAML path or run directory")
    p.add_argument("--src-len", type=_COUNT, default=30)
    p.add_argument("--tgt-len", type=_COUNT, default=30)
    p.add_argument("--seq-len", type=_COUNT,
                   help="a language model: tokens of the sequence counted (default: its data.seq_len)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("generate", help="continue a prompt with a language model (a run, or its export)")
    p.add_argument("model_dir", help="a language-model run directory, or its export directory")
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--tokens", type=_COUNT, default=50, help="new tokens to generate (default 50)")
    p.add_argument("--temperature", type=_typed(float, min=0.0), default=1.0,
                   help="sampling temperature; 0 is greedy (default 1)")
    p.add_argument("--seed", type=_NON_NEGATIVE, default=0, help="seeds the sampling (default 0)")
    p.add_argument("--threads", type=_COUNT, default=1, help="CPU threads for an exported model (default 1)")
    p.add_argument("--json", action="store_true", help="one JSON line: text, continuation, ids")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("presets", help="list the presets")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("quickstart", help="the whole path: prepare bible-es-en, train for a step budget, score the "
                                          "test split, export to LiteRT, score and time the export, report")
    p.add_argument("--report-dir", default=os.path.join("reports", "quickstart"), type=_directory)
    p.add_argument("--run-dir", default=os.path.join("runs", "quickstart"), type=_directory)
    p.add_argument("--steps", type=_typed(int, above=0),
                   help="training steps (default: the config's epochs x steps_per_epoch; the quickstart preset's)")
    p.add_argument("--beam", type=_typed(int, above=0), default=4, help="beam size of the Keras test score")
    p.add_argument("--config", default="quickstart", help="preset name or YAML path (default quickstart)")
    _add_data_dir(p)
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("bench", help="latency of an exported translator on this host (or a phone: --adb), "
                                     "measured as in HAT")
    p.add_argument("model", help="an exported model.tflite (signatures encode, decode_step, optionally translate)")
    p.add_argument("--delegate", help="delegate config name (see tfmobile/resources/delegates) or path; default "
                                      "XNNPACK, 1 thread; GPU configs need --adb")
    p.add_argument("--threads", type=_threads_or_auto,
                   help="CPU threads, overriding the delegate config (-1: the runtime chooses)")
    p.add_argument("--source-len", type=_COUNT, default=30, help="source tokens (HAT: 30; 23 for IWSLT)")
    p.add_argument("--steps", type=_COUNT, default=30, help="decoder steps per run")
    p.add_argument("--warmup", type=_NON_NEGATIVE, default=5)
    p.add_argument("--runs", type=_COUNT, default=50, help="timed runs; the fastest and slowest 10%% are dropped")
    p.add_argument("--json", metavar="OUT", type=_file,
                   help="also write the full result (tfmobile/resources/bench_result.schema.json)")
    p.add_argument("--adb", action="store_true",
                   help="run it on an Android phone with the demo app (android_demo), over adb ($ADB or adb on PATH)")
    _add_adb_args(p)
    p.set_defaults(func=cmd_bench)
    _add_hat_parsers(sub)
    return parser


def _add_adb_args(p):
    p.add_argument("--serial", help="the phone (a serial of `adb devices`) when several are connected; "
                                    "default $ANDROID_SERIAL, else the only one")
    p.add_argument("--adb-timeout", metavar="SEC", type=_typed(float, above=0.0),
                   help="how long to wait for the phone's result (default 600)")


def _add_hat_parsers(sub):
    hat = sub.add_parser("hat", help="HAT: SuperTransformer, latency dataset, predictor, evolutionary search").add_subparsers(
        dest="hat_verb", required=True)
    p = hat.add_parser("spaces", help="list the shipped design spaces")
    p.set_defaults(func=cmd_hat_spaces)

    p = hat.add_parser("train", help="train a weight-sharing SuperTransformer with model.fit, one sampled "
                                     "SubTransformer per update")
    p.add_argument("space", help="design space name (`tfmobile hat spaces`) or YAML path")
    p.add_argument("--out", required=True, type=_directory, help="the SuperTransformer's run directory")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--epochs", type=_like(TrainConfig, "epochs"))
    p.add_argument("--steps-per-epoch", type=_like(TrainConfig, "steps_per_epoch"))
    p.add_argument("--max-tokens", type=_like(TrainConfig, "max_tokens"))
    p.add_argument("--strategy", choices=STRATEGIES)
    p.add_argument("--seed", type=_like(TrainConfig, "seed"), help="seeds the weights and the SubTransformer samples")
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], help="Keras progress output (default: a bar on a terminal)")
    _add_data_dir(p)
    p.set_defaults(func=cmd_hat_train)

    p = hat.add_parser("extract", help="a SubTransformer with its inherited weights, as an ordinary run")
    p.add_argument("run_dir", help="a SuperTransformer run (`tfmobile hat train`)")
    p.add_argument("--arch", required=True, help="architecture YAML (`tfmobile hat search` writes one)")
    p.add_argument("--out", required=True, type=_directory, help="the new run directory")
    p.set_defaults(func=cmd_hat_extract)

    p = hat.add_parser("latency", help="measure sampled SubTransformers exported to LiteRT (HAT's measure), one "
                                       "CSV row each; a rerun continues the file")
    p.add_argument("space", help="design space name or YAML path")
    p.add_argument("--samples", type=_COUNT, required=True, help="rows the file should hold")
    p.add_argument("--out", required=True, type=_file, help="the latency CSV")
    p.add_argument("--delegate", help="delegate config name or path (default XNNPACK, 1 thread)")
    p.add_argument("--threads", type=_threads_or_auto, help="CPU threads, overriding the delegate config")
    p.add_argument("--seed", type=_NON_NEGATIVE, default=1, help="seeds the sampled SubTransformers")
    p.add_argument("--runs", type=_COUNT, default=20, help="timed runs per model (HAT: 20)")
    p.add_argument("--warmup", type=_NON_NEGATIVE, default=5, help="warm-up runs per model (HAT: 5)")
    p.add_argument("--measurer", choices=["host", "adb"], default="host",
                   help="host: this machine's LiteRT; adb: a phone with the demo app (GPU configs too)")
    _add_adb_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_hat_latency)

    p = hat.add_parser("predictor", help="fit HAT's MLP latency predictor and two least-squares baselines")
    p.add_argument("latency", help="a latency CSV (`tfmobile hat latency`)")
    p.add_argument("--out", required=True, type=_directory, help="the predictor directory")
    p.add_argument("--seed", type=_NON_NEGATIVE, default=1, help="seeds the held-out split and the MLP")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_hat_predictor)

    p = hat.add_parser("search", help="evolutionary search for the SubTransformer with the lowest inherited "
                                      "validation loss under a latency budget")
    p.add_argument("run_dir", help="a SuperTransformer run (`tfmobile hat train`)")
    p.add_argument("--predictor", required=True, help="a predictor directory (`tfmobile hat predictor`)")
    p.add_argument("--latency-ms", required=True, type=_typed(float, above=0.0), help="the latency budget")
    p.add_argument("--out", required=True, type=_file, help="the architecture YAML to write")
    p.add_argument("--method", choices=["evolution", "random"], default="evolution",
                   help="HAT's evolution, or random search with as many evaluations (the control)")
    p.add_argument("--valid-sentences", type=_COUNT, default=200,
                   help="the fixed subset of the valid split the fitness is measured on")
    p.add_argument("--seed", type=_NON_NEGATIVE, default=1)
    p.add_argument("--resume", action="store_true", help="continue an interrupted search from its last generation")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_data_dir(p)
    p.set_defaults(func=cmd_hat_search)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # a usage error, already printed as one line, or --help
        return e.code
    if args.verb not in NO_TENSORFLOW and f"{args.verb} {getattr(args, 'hat_verb', '')}" not in NO_TENSORFLOW:
        _import_tensorflow_quietly()
    try:
        args.func(args)
    except TfmobileError as e:
        print(f"tfmobile: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tfmobile: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
