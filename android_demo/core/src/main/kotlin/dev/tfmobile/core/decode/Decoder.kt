/*
 * Greedy decoding over an exported translator's signatures: tfmobile.deploy.runtime.TranslatorRunner on
 * an Engine.
 *
 * The contract of `tfmobile export`, checked from the signatures as TranslatorRunner._check_contract does:
 *   encode       source_ids [1, S]  ->  source_mask, cross_k_i, cross_v_i (any names)
 *   decode_step  token [1], position [1], encode's outputs (by name), the caches  ->  logits [.., V] and
 *                the updated caches under the same names as the inputs they replace
 *   translate    (optional) source_ids  ->  target_ids [1, T], target_length [1]: the in-graph greedy loop
 * A decode_step input that is neither an encode output nor a decode_step output is refused, since
 * nothing could feed it. The caches start at zero and are fed back by name after every step.
 * Checked here beyond Python (numpy would fail later, at the first run): token and position hold one
 * value, each cache comes back with the shape and dtype it went in with, each encoder feed has the
 * shape and dtype encode gives it.
 *
 * The next token is the argmax of the first row of logits, the first maximum on ties and the first NaN
 * if any, as numpy's argmax.
 */
package dev.tfmobile.core.decode

import dev.tfmobile.core.CoreError
import dev.tfmobile.core.bench.Clock
import dev.tfmobile.core.engine.Engine
import dev.tfmobile.core.engine.Signature
import dev.tfmobile.core.engine.Tensor
import dev.tfmobile.core.engine.TensorSpec

/** One encode + greedy decode loop (TranslatorRunner.run_hat): timings in ns, the tokens fed, the final state. */
class HatRun(
    val encodeNs: Long,
    val stepNs: LongArray,
    val totalNs: Long,
    val tokens: IntArray,
    val state: Map<String, Tensor>,
)

class Decoder(val engine: Engine, val bos: Int, val pad: Int = 0) {
    private val encodeSig: Signature
    private val stepSig: Signature
    private val translateSig: Signature?

    /** encode's source_ids: [1, S]. */
    val sourceSpec: TensorSpec
    val maxSourceLen: Int
    val vocabSize: Int
    /** decode_step inputs that come back as outputs of the same name, started at zero. */
    val cacheSpecs: Map<String, TensorSpec>
    /** decode_step inputs that are encode outputs. */
    val encoderFeeds: List<String>
    val hasTranslate: Boolean
    /** T from translate's target_ids; null without translate. */
    val maxTargetLen: Int?

    init {
        val signatures = engine.signatures
        val missing = REQUIRED_SIGNATURES.filter { it !in signatures }
        if (missing.isNotEmpty()) {
            val found = signatures.keys.sorted().joinToString(", ").ifEmpty { "none" }
            throw CoreError("the model lacks the signature(s) ${missing.joinToString(", ")} (it has: $found); an " +
                            "exported translator has encode and decode_step (see `tfmobile export`)")
        }
        encodeSig = signatures.getValue("encode")
        stepSig = signatures.getValue("decode_step")
        translateSig = signatures["translate"]
        val encIn = encodeSig.inputs
        val encOut = encodeSig.outputs
        val stepIn = stepSig.inputs
        val stepOut = stepSig.outputs
        if (encIn.keys != setOf("source_ids") || encIn.getValue("source_ids").rank != 2) {
            throw CoreError("encode must take one input source_ids [1, S] (it takes ${encIn.keys.sorted()})")
        }
        for (name in listOf("token", "position")) {
            val spec = stepIn[name] ?: throw CoreError("decode_step has no input '$name' (inputs: ${stepIn.keys.sorted()})")
            if (spec.size != 1) throw CoreError("decode_step input '$name' must hold one value, it is $spec")
        }
        val logits = stepOut["logits"]
            ?: throw CoreError("decode_step has no output 'logits' (outputs: ${stepOut.keys.sorted()})")
        if (logits.rank < 1 || logits.dim(-1) < 1) throw CoreError("decode_step's logits must be [.., V], they are $logits")
        val stray = stepIn.keys.filter { it != "token" && it != "position" && it !in encOut && it !in stepOut }
        if (stray.isNotEmpty()) {
            throw CoreError("decode_step input(s) ${stray.sorted().joinToString(", ")} are neither encode outputs nor " +
                            "decode_step outputs (caches must come back under the same names)")
        }
        sourceSpec = encIn.getValue("source_ids")
        maxSourceLen = sourceSpec.dim(1)
        vocabSize = logits.dim(-1)
        cacheSpecs = stepIn.filterKeys { it in stepOut && it !in encOut }
        for ((name, spec) in cacheSpecs) {
            val back = stepOut.getValue(name)
            if (back != spec) throw CoreError("decode_step cache $name goes in as $spec but comes back as $back")
        }
        encoderFeeds = stepIn.keys.filter { it in encOut }
        for (name in encoderFeeds) {
            if (encOut.getValue(name) != stepIn.getValue(name)) {
                throw CoreError("encode gives $name as ${encOut.getValue(name)} but decode_step takes ${stepIn.getValue(name)}")
            }
        }
        hasTranslate = translateSig != null
        maxTargetLen = translateSig?.let { sig ->
            val trOut = sig.outputs
            if (sig.inputs.keys != setOf("source_ids") || !trOut.keys.containsAll(listOf("target_ids", "target_length"))) {
                throw CoreError("translate must map source_ids to target_ids and target_length (it maps " +
                                "${sig.inputs.keys.sorted()} to ${trOut.keys.sorted()})")
            }
            val ids = trOut.getValue("target_ids")
            if (ids.rank != 2) throw CoreError("translate's target_ids must be [1, T], they are $ids")
            ids.dim(1)
        }
    }

    /** encode's source_ids from `sourceIds` (at most S ids: the sentence and EOS), padded to S. */
    fun sourceTensor(sourceIds: IntArray): Tensor {
        if (sourceIds.size > maxSourceLen) {
            throw CoreError("the source has ${sourceIds.size} ids but encode takes at most S=$maxSourceLen")
        }
        return Tensor.ofInts(sourceSpec, IntArray(sourceSpec.size) { if (it < sourceIds.size) sourceIds[it] else pad })
    }

    fun encode(sourceIds: IntArray): Map<String, Tensor> {
        val out = engine.run("encode", mapOf("source_ids" to sourceTensor(sourceIds)))
        for (name in encoderFeeds) if (name !in out) throw CoreError("encode returned no '$name' (it returned ${out.keys.sorted()})")
        return out
    }

    /** decode_step's inputs before the first step: encode's outputs, the caches at zero. */
    fun startState(encoded: Map<String, Tensor>): MutableMap<String, Tensor> {
        val state = LinkedHashMap<String, Tensor>()
        for (name in encoderFeeds) state[name] = encoded.getValue(name)
        for ((name, spec) in cacheSpecs) state[name] = Tensor.zeros(spec)
        return state
    }

    /** One decode_step: feeds the caches back into `state` and returns the greedy next token. */
    fun step(state: MutableMap<String, Tensor>, token: Int, position: Int): Int {
        val inputs = LinkedHashMap<String, Tensor>(state)
        inputs["token"] = Tensor.ofInts(stepSig.inputs.getValue("token"), intArrayOf(token))
        inputs["position"] = Tensor.ofInts(stepSig.inputs.getValue("position"), intArrayOf(position))
        val out = engine.run("decode_step", inputs)
        for (name in cacheSpecs.keys) {
            state[name] = out[name] ?: throw CoreError("decode_step returned no cache '$name' (it returned ${out.keys.sorted()})")
        }
        val logits = out["logits"] ?: throw CoreError("decode_step returned no 'logits' (it returned ${out.keys.sorted()})")
        if (logits.size < vocabSize) throw CoreError("decode_step returned ${logits.size} logits, fewer than V=$vocabSize")
        return argmax(logits, vocabSize)
    }

    /**
     * Greedy translation by stepping decode_step from BOS (LiteTranslator mode "steps"): at most `limit`
     * steps, stopping at EOS; the ids exclude EOS.
     */
    fun greedy(sourceIds: IntArray, limit: Int, eos: Int): IntArray {
        if (limit < 0) throw CoreError("the length limit must be >= 0, got $limit")
        val state = startState(encode(sourceIds))
        val hyp = ArrayList<Int>()
        var token = bos
        for (position in 0 until limit) {
            token = step(state, token, position)
            if (token == eos) break
            hyp.add(token)
        }
        return hyp.toIntArray()
    }

    /** The in-graph greedy loop: target_ids up to target_length; null when the model has no translate. */
    fun translate(sourceIds: IntArray): IntArray? {
        if (!hasTranslate) return null
        val out = engine.run("translate", mapOf("source_ids" to sourceTensor(sourceIds)))
        val ids = out["target_ids"] ?: throw CoreError("translate returned no target_ids")
        val length = out["target_length"]?.floatAt(0)?.toInt() ?: throw CoreError("translate returned no target_length")
        if (length < 0 || length > ids.size) throw CoreError("translate's target_length $length is outside [0, ${ids.size}]")
        return IntArray(length) { ids.floatAt(it).toInt() }
    }

    /** encode, then `steps` greedy decode steps from BOS, each call timed with `clock` (HAT's measure). */
    fun runHat(sourceIds: IntArray, steps: Int, clock: Clock = Clock.SYSTEM): HatRun {
        val start = clock.nanoTime()
        val encoded = encode(sourceIds)
        val encodedAt = clock.nanoTime()
        val state = startState(encoded)
        val tokens = IntArray(steps)
        val stepNs = LongArray(steps)
        var token = bos
        for (position in 0 until steps) {
            tokens[position] = token
            val t0 = clock.nanoTime()
            token = step(state, token, position)
            stepNs[position] = clock.nanoTime() - t0
        }
        val end = clock.nanoTime()
        return HatRun(encodedAt - start, stepNs, end - start, tokens, state)
    }

    /**
     * HAT's benchmark sentence: `length` deterministic ids in [4, V) (no special id), then PAD up to S.
     * The ids come from SplitMix64 seeded with `seed`: deterministic across runs and devices, but not
     * numpy's generator, so they differ from the host bench's sentence (latency does not depend on which
     * non-special ids are fed).
     */
    fun sourceIds(length: Int, seed: Long = 0): IntArray {
        if (length < 1 || length > maxSourceLen) throw CoreError("source_len must be in [1, S=$maxSourceLen], got $length")
        if (vocabSize <= FIRST_ORDINARY_ID) throw CoreError("V=$vocabSize leaves no non-special id to feed")
        var x = seed
        return IntArray(maxSourceLen) { i ->
            if (i >= length) pad else {
                x += -0x61c8864680b583ebL  // SplitMix64's golden-ratio increment
                var z = x
                z = (z xor (z ushr 30)) * -0x40a7b892e31b1a47L
                z = (z xor (z ushr 27)) * -0x6b2fb644ecceee15L
                z = z xor (z ushr 31)
                FIRST_ORDINARY_ID + java.lang.Long.remainderUnsigned(z, (vocabSize - FIRST_ORDINARY_ID).toLong()).toInt()
            }
        }
    }

    companion object {
        val REQUIRED_SIGNATURES = listOf("encode", "decode_step")
        /** pad, unk, bos, eos come first in every tfmobile vocabulary. */
        const val FIRST_ORDINARY_ID = 4
        /** BOS and PAD when no model_meta.json tells them (tfmobile.deploy.runtime.DEFAULT_BOS): a bare model.tflite. */
        const val DEFAULT_BOS = 2
        const val DEFAULT_PAD = 0

        /** The index of the largest of the first `n` values: the first on ties, the first NaN if any (numpy). */
        fun argmax(values: Tensor, n: Int): Int {
            var best = 0
            var bestValue = values.floatAt(0)
            if (bestValue.isNaN()) return 0
            for (i in 1 until n) {
                val v = values.floatAt(i)
                if (v.isNaN()) return i
                if (v > bestValue) { best = i; bestValue = v }
            }
            return best
        }
    }
}
