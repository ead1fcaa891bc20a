/*
 * Text in, text out with an export directory: tfmobile.deploy.runtime.LiteTranslator in mode "steps",
 * the loop an app steps itself (on the GPU it has to: translate's WHILE loop stays on the CPU path).
 *
 * The source is the SentencePiece ids of the sentence, then EOS, then PAD up to S (model_meta.json's
 * source_format); a sentence with more than S - 1 ids is refused with the limit, as
 * tfmobile.decoding.translator.encode_sources. The greedy loop runs at most
 * meta.targetLengthLimit(ids incl. EOS) steps and stops at EOS; the ids are decoded as
 * tfmobile.data.Tokenizer.decode does (PAD and BOS skipped, ids outside the vocabulary skipped).
 */
package dev.tfmobile.core

import dev.tfmobile.core.bench.Clock
import dev.tfmobile.core.decode.Decoder
import dev.tfmobile.core.engine.Engine
import dev.tfmobile.core.meta.ModelMeta
import dev.tfmobile.core.tokenizer.SentencePieceTokenizer
import java.io.File

class Translator(
    val meta: ModelMeta,
    val source: SentencePieceTokenizer,
    val target: SentencePieceTokenizer,
    val decoder: Decoder,
) {
    /** A joint vocabulary: one tokenizer for both sides. */
    constructor(meta: ModelMeta, joint: SentencePieceTokenizer, decoder: Decoder) : this(meta, joint, joint, decoder)

    /** One translation: the target ids (without EOS), their text, and the time text-to-text. */
    class Result(val sourceIds: IntArray, val ids: IntArray, val text: String, val elapsedMs: Double)

    init {
        if (meta.maxSourceLen != decoder.maxSourceLen) {
            throw CoreError("model_meta.json says max_source_len ${meta.maxSourceLen} but the model's encode takes " +
                            "S=${decoder.maxSourceLen}; export the model again")
        }
        if (decoder.bos != meta.bos || decoder.pad != meta.pad) {
            throw CoreError("the decoder starts from BOS ${decoder.bos} and pads with ${decoder.pad}, the export uses " +
                            "${meta.bos} and ${meta.pad}")
        }
    }

    /** Sentences may have this many SentencePiece ids: EOS takes one of the S positions. */
    val maxSourceTokens: Int get() = decoder.maxSourceLen - 1

    /** The source ids the model takes for `text`: its SentencePiece ids, then EOS (not padded). */
    fun sourceIds(text: String): IntArray {
        val ids = source.encode(text)
        if (ids.size > maxSourceTokens) {
            throw CoreError("the sentence has ${ids.size} tokens but at most $maxSourceTokens fit the exported model " +
                            "(max_source_len ${decoder.maxSourceLen}); split it, or export with a larger --max-source-len")
        }
        return ids + meta.eos
    }

    fun translate(text: String, clock: Clock = Clock.SYSTEM): Result {
        val start = clock.nanoTime()
        val src = sourceIds(text)
        val ids = decoder.greedy(src, meta.targetLengthLimit(src.size), meta.eos)
        val visible = ids.filter { it != meta.pad && it != meta.bos && it >= 0 && it < target.vocabSize }.toIntArray()
        val out = target.decode(visible)
        return Result(src, ids, out, (clock.nanoTime() - start) / 1e6)
    }

    companion object {
        /** A translator over `engine` with the tokenizer(s) of the export `meta` was read from. */
        fun open(meta: ModelMeta, engine: Engine): Translator {
            val dir = meta.exportDir ?: throw CoreError("the metadata was not read from an export directory: no tokenizer to load")
            fun load(name: String?): SentencePieceTokenizer {
                name ?: throw CoreError("$dir was exported without a tokenizer: run its signatures with a Decoder")
                val file = File(dir, name)
                if (!file.isFile) throw CoreError("$dir lacks its tokenizer $name; copy the whole export directory")
                return SentencePieceTokenizer.load(file.path)
            }
            val decoder = Decoder(engine, meta.bos, meta.pad)
            val src = load(meta.sourceTokenizer)
            val tgt = if (meta.tokenizers.containsKey("joint")) src else load(meta.targetTokenizer)
            return Translator(meta, src, tgt, decoder)
        }
    }
}
