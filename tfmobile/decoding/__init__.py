"""Greedy and beam-search decoding with cached keys and values; sacreBLEU scoring."""

from tfmobile.decoding.evaluate import evaluate_run
from tfmobile.decoding.scoring import score
from tfmobile.decoding.search import IncrementalDecoder, beam_search, greedy_search
from tfmobile.decoding.translator import Translator

__all__ = ["IncrementalDecoder", "Translator", "beam_search", "evaluate_run", "greedy_search", "score"]
