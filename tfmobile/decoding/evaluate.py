"""Score a translator on a corpus split with sacreBLEU: any translator (`evaluate_translator`), or a trained run."""

from __future__ import annotations

from tfmobile.data import prepare_corpus
from tfmobile.decoding.scoring import score
from tfmobile.decoding.translator import Translator


def evaluate_translator(translator, corpus: str, split: str = "test", limit: int | None = None,
                        data_dir: str | None = None, progress: bool = True, keep_pairs: bool = False,
                        **translate_kwargs) -> dict:
    """sacreBLEU of anything with `src_tokenizer`, `max_source_tokens` and `translate(sentences, progress=...)`.

    Sentences longer than the translator allows are scored as empty translations, and counted.
    """
    prepared = prepare_corpus(corpus, data_dir=data_dir)
    pairs = prepared.read(split)[:limit]
    lengths = [len(ids) for ids in translator.src_tokenizer.encode([s for s, _ in pairs])]
    fits = [i for i, n in enumerate(lengths) if n <= translator.max_source_tokens]
    hyps = [""] * len(pairs)
    for i, h in zip(fits, translator.translate([pairs[i][0] for i in fits], progress=progress, **translate_kwargs)):
        hyps[i] = h
    result = score(hyps, [t for _, t in pairs])
    result.update({"corpus": prepared.corpus, "split": split, "too_long": len(pairs) - len(fits)})
    if keep_pairs:
        result["pairs"] = [(s, t, h) for (s, t), h in zip(pairs, hyps)]
    return result


def evaluate_run(model_dir: str, split: str = "test", beam: int = 4, length_penalty: float = 1.0,
                 limit: int | None = None, data_dir: str | None = None, batch_size: int = 32,
                 progress: bool = True, keep_pairs: bool = False) -> dict:
    """sacreBLEU of a run (Keras, beam search); with keep_pairs, also the (source, reference, hypothesis) triples."""
    translator = Translator.from_run(model_dir, beam_size=beam, length_penalty=length_penalty)
    result = evaluate_translator(translator, translator.exp.data.corpus, split, limit, data_dir, progress,
                                 keep_pairs, batch_size=batch_size)
    result.update({"beam": beam, "length_penalty": length_penalty})
    return result
