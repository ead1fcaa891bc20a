"""Score a trained run on a corpus split with sacreBLEU."""

from __future__ import annotations

from tfmobile.data import prepare_corpus
from tfmobile.decoding.scoring import score
from tfmobile.decoding.translator import Translator


def evaluate_run(model_dir: str, split: str = "test", beam: int = 4, length_penalty: float = 1.0,
                 limit: int | None = None, data_dir: str | None = None, batch_size: int = 32,
                 progress: bool = True, keep_pairs: bool = False) -> dict:
    """sacreBLEU of a run on a split; with keep_pairs, also the (source, reference, hypothesis) triples."""
    translator = Translator.from_run(model_dir, beam_size=beam, length_penalty=length_penalty)
    prepared = prepare_corpus(translator.exp.data.corpus, data_dir=data_dir)
    pairs = prepared.read(split)[:limit]
    # sentences longer than the model allows are scored as empty translations, and counted
    limit_tokens = translator.max_source_tokens
    lengths = [len(ids) for ids in translator.src_tokenizer.encode([s for s, _ in pairs])]
    fits = [i for i, n in enumerate(lengths) if n <= limit_tokens]
    hyps = [""] * len(pairs)
    for i, h in zip(fits, translator.translate([pairs[i][0] for i in fits], batch_size=batch_size,
                                               progress=progress)):
        hyps[i] = h
    result = score(hyps, [t for _, t in pairs])
    result.update({"corpus": prepared.corpus, "split": split, "beam": beam, "length_penalty": length_penalty,
                   "too_long": len(pairs) - len(fits)})
    if keep_pairs:
        result["pairs"] = [(s, t, h) for (s, t), h in zip(pairs, hyps)]
    return result
