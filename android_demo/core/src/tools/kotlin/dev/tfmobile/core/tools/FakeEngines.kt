/*
 * Engines for the parity tools: the phone's LiteRT replaced, everything above it real.
 *
 * ReplayEngine serves what Python's LiteRT runtime gave (tests/test_android_core.py records it) and
 * checks every call the Kotlin decoder makes against what Python fed: the source ids, the token and
 * position of each step, the encoder outputs passed through by name, and the caches fed back by name
 * (each output it returns carries a marker value, so a cache fed under another name or from another
 * step is caught). SyntheticEngine has an export's signatures, made-up but deterministic logits and
 * lengths, and advances a fake clock by a made-up latency per call: a benchmark over it is exact.
 */
package dev.tfmobile.core.tools

import dev.tfmobile.core.CoreError
import dev.tfmobile.core.bench.Clock
import dev.tfmobile.core.engine.AcceleratorInfo
import dev.tfmobile.core.engine.DType
import dev.tfmobile.core.engine.Engine
import dev.tfmobile.core.engine.Signature
import dev.tfmobile.core.engine.Tensor
import dev.tfmobile.core.engine.TensorSpec

/** Signatures as model_meta.json records them: {name: {inputs: {n: {shape, dtype}}, outputs: {...}}}. */
fun signaturesOf(json: Any?): Map<String, Signature> {
    fun specs(m: Any?): Map<String, TensorSpec> = (m as Map<*, *>).entries.associate { (name, d) ->
        d as Map<*, *>
        name as String to TensorSpec((d["shape"] as List<*>).map { (it as Long).toInt() }.toIntArray(), DType.of(d["dtype"] as String))
    }
    return (json as Map<*, *>).entries.associate { (name, sig) ->
        sig as Map<*, *>
        name as String to Signature(specs(sig["inputs"]), specs(sig["outputs"]))
    }
}

/** One recorded sentence: the padded source ids Python fed, and per decode_step the token, position and logits. */
class RecordedCase(val sourceIds: IntArray, val tokens: IntArray, val positions: IntArray, val logits: List<FloatArray>)

private fun filled(spec: TensorSpec, value: Float): Tensor = when (spec.dtype) {
    DType.FLOAT32 -> Tensor(spec.shape, floats = FloatArray(spec.size) { value })
    DType.INT32 -> Tensor(spec.shape, ints = IntArray(spec.size) { value.toInt() })
}

private fun Tensor.allEqual(value: Float): Boolean = (0 until size).all { floatAt(it) == value }

class ReplayEngine(override val signatures: Map<String, Signature>, private val cases: List<RecordedCase>) : Engine {
    private var case = -1
    private var step = 0
    /** decode_step calls made for each case so far. */
    val stepsRun = IntArray(cases.size)

    private val encodeOutputs = signatures.getValue("encode").outputs.keys.toList()
    private val caches: List<String> = signatures.getValue("decode_step").let { s ->
        s.inputs.keys.filter { it in s.outputs && it !in encodeOutputs }
    }

    private fun encodeMarker(name: String) = (case + 1) * 1000f + encodeOutputs.indexOf(name)
    private fun cacheMarker(name: String, atStep: Int) = -((atStep + 1) * 1000f + caches.indexOf(name))

    override fun run(signature: String, inputs: Map<String, Tensor>): Map<String, Tensor> {
        val sig = signatures[signature] ?: throw CoreError("no signature $signature")
        sig.checkInputs(signature, inputs)
        return when (signature) {
            "encode" -> encode(sig, inputs)
            "decode_step" -> decodeStep(sig, inputs)
            else -> throw CoreError("the recording has no $signature calls")
        }
    }

    private fun encode(sig: Signature, inputs: Map<String, Tensor>): Map<String, Tensor> {
        case++
        step = 0
        if (case >= cases.size) throw CoreError("encode called for case ${case + 1}, the recording has ${cases.size}")
        val fed = inputs.getValue("source_ids").ints!!
        if (!fed.contentEquals(cases[case].sourceIds)) {
            throw CoreError("case ${case + 1}: encode was fed ${fed.toList()}, Python fed ${cases[case].sourceIds.toList()}")
        }
        return sig.outputs.mapValues { (name, spec) -> filled(spec, encodeMarker(name)) }
    }

    private fun decodeStep(sig: Signature, inputs: Map<String, Tensor>): Map<String, Tensor> {
        val rec = cases.getOrNull(case) ?: throw CoreError("decode_step before encode")
        val where = "case ${case + 1} step ${step + 1}"
        if (step >= rec.tokens.size) throw CoreError("$where: the decoder ran on, Python stopped after ${rec.tokens.size} steps")
        val token = inputs.getValue("token").floatAt(0).toInt()
        val position = inputs.getValue("position").floatAt(0).toInt()
        if (token != rec.tokens[step]) throw CoreError("$where: token $token fed, Python fed ${rec.tokens[step]}")
        if (position != rec.positions[step]) throw CoreError("$where: position $position fed, Python fed ${rec.positions[step]}")
        for (name in inputs.keys) {
            val t = inputs.getValue(name)
            when {
                name in encodeOutputs -> if (!t.allEqual(encodeMarker(name))) throw CoreError("$where: $name is not encode's $name")
                name in caches -> {
                    val want = if (step == 0) 0f else cacheMarker(name, step - 1)
                    if (!t.allEqual(want)) {
                        throw CoreError("$where: cache $name is not " + if (step == 0) "zero" else "decode_step's $name of the step before")
                    }
                }
            }
        }
        val out = LinkedHashMap<String, Tensor>()
        for ((name, spec) in sig.outputs) {
            out[name] = if (name == "logits") {
                val row = rec.logits[step]
                if (row.size != spec.size) throw CoreError("$where: ${row.size} recorded logits, the signature has $spec")
                Tensor(spec.shape, floats = row)
            } else filled(spec, cacheMarker(name, step))
        }
        stepsRun[case]++
        step++
        return out
    }

    override fun accelerator(signature: String) = AcceleratorInfo(AcceleratorInfo.CPU, null, "replayed from a recording")

    override fun close() {}
}

/** A clock that only moves when told: the engine's calls are the only time that passes. */
class FakeClock : Clock {
    var now = 1_000_000_000L
    override fun nanoTime() = now
}

/**
 * An export's signatures with deterministic outputs: decode_step's argmax is 4 + (7 * position + token) mod
 * (V - 4), translate stops after 3 + (call mod 5) tokens. Each call advances `clock` by a base latency
 * per signature plus a pseudo-random jitter of up to a quarter of it.
 */
class SyntheticEngine(
    override val signatures: Map<String, Signature>,
    private val clock: FakeClock,
    private val requested: String,
) : Engine {
    private var seed = 12345L
    private var translateCalls = 0
    private val baseNs = mapOf("encode" to 2_300_000L, "decode_step" to 410_000L, "translate" to 9_700_000L)

    private fun jitter(base: Long): Long {
        seed = seed * 6364136223846793005L + 1442695040888963407L
        return java.lang.Long.remainderUnsigned(seed ushr 11, (base / 4 + 1))
    }

    override fun run(signature: String, inputs: Map<String, Tensor>): Map<String, Tensor> {
        val sig = signatures[signature] ?: throw CoreError("no signature $signature")
        sig.checkInputs(signature, inputs)
        val base = baseNs.getValue(signature)
        clock.now += base + jitter(base)
        return sig.outputs.mapValues { (name, spec) ->
            when {
                signature == "decode_step" && name == "logits" -> {
                    val v = spec.dim(-1)
                    val token = inputs.getValue("token").floatAt(0).toInt()
                    val position = inputs.getValue("position").floatAt(0).toInt()
                    val best = 4 + Math.floorMod(7 * position + token, v - 4)
                    Tensor(spec.shape, floats = FloatArray(spec.size) { if (it == best) 1f else 0f })
                }
                signature == "translate" && name == "target_length" -> Tensor.ofInts(spec, intArrayOf(3 + translateCalls++ % 5))
                signature == "translate" && name == "target_ids" -> Tensor.ofInts(spec, IntArray(spec.size) { 4 + it % 7 })
                else -> Tensor.zeros(spec)
            }
        }
    }

    override fun accelerator(signature: String) = AcceleratorInfo(requested, true, "synthetic engine")

    override fun close() {}
}
