/*
 * Test doubles for the decoder, translator and benchmark tests: the signatures of a small export, an
 * engine whose logits a test scripts (and which checks what the decoder feeds it), and a clock that
 * only the engine moves.
 */
package dev.tfmobile.core.testing

import dev.tfmobile.core.bench.Clock
import dev.tfmobile.core.engine.AcceleratorInfo
import dev.tfmobile.core.engine.DType
import dev.tfmobile.core.engine.Engine
import dev.tfmobile.core.engine.Signature
import dev.tfmobile.core.engine.Tensor
import dev.tfmobile.core.engine.TensorSpec

fun f32(vararg shape: Int) = TensorSpec(shape, DType.FLOAT32)
fun i32(vararg shape: Int) = TensorSpec(shape, DType.INT32)

/** The signatures `tfmobile export` writes for a one-layer decoder: S source, T target positions, V logits. */
fun exportSignatures(s: Int = 4, t: Int = 6, v: Int = 10, translate: Boolean = true): MutableMap<String, Signature> {
    val encoded = linkedMapOf("source_mask" to f32(1, s), "cross_k_0" to f32(1, 2, s, 3), "cross_v_0" to f32(1, 2, s, 3))
    val caches = linkedMapOf("cache_0_0" to f32(1, 2, t, 3), "cache_0_1" to f32(1, 2, t, 3))
    val sigs = linkedMapOf(
        "encode" to Signature(mapOf("source_ids" to i32(1, s)), encoded),
        "decode_step" to Signature(linkedMapOf("token" to i32(1), "position" to i32(1)) + encoded + caches,
                                   linkedMapOf("logits" to f32(1, v)) + caches),
    )
    if (translate) sigs["translate"] = Signature(mapOf("source_ids" to i32(1, s)), mapOf("target_ids" to i32(1, t), "target_length" to i32(1)))
    return sigs
}

/** A clock the engine advances: `now` is all the time that passes. */
class StepClock(var now: Long = 0) : Clock {
    override fun nanoTime() = now
}

/**
 * An engine over `signatures` whose decode_step logits come from `logits(step, token, position)` (step
 * counts from 0 per sentence) and whose translate gives `translateIds`. It fails the test when the
 * decoder feeds it anything but encode's outputs and the caches of the step before, by name; each
 * call advances `clock` by `costNs(signature, step)`.
 */
class ScriptedEngine(
    override val signatures: Map<String, Signature>,
    private val clock: StepClock = StepClock(),
    private val costNs: (String, Int) -> Long = { _, _ -> 0L },
    private val translateIds: IntArray = intArrayOf(),
    private val requested: String = AcceleratorInfo.CPU,
    private val logits: (step: Int, token: Int, position: Int) -> FloatArray,
) : Engine {
    var step = 0
        private set
    val fedTokens = ArrayList<Int>()
    val fedPositions = ArrayList<Int>()
    val fedSources = ArrayList<IntArray>()
    var closed = false
        private set

    private val names = signatures.values.flatMap { it.inputs.keys + it.outputs.keys }.distinct()
    private fun marker(name: String, at: Int) = (at + 2) * 100f + names.indexOf(name)

    override fun run(signature: String, inputs: Map<String, Tensor>): Map<String, Tensor> {
        val sig = signatures.getValue(signature)
        sig.checkInputs(signature, inputs)
        clock.now += costNs(signature, step)
        return when (signature) {
            "encode" -> {
                step = 0
                fedSources.add(inputs.getValue("source_ids").ints!!.copyOf())
                sig.outputs.mapValues { (name, spec) -> filled(spec, marker(name, -1)) }
            }
            "decode_step" -> {
                for ((name, t) in inputs) {
                    val want = when {
                        name in signatures.getValue("encode").outputs -> marker(name, -1)
                        name in sig.outputs -> if (step == 0) 0f else marker(name, step - 1)
                        else -> continue
                    }
                    check((0 until t.size).all { t.floatAt(it) == want }) { "step $step: $name was not fed back by name" }
                }
                val token = inputs.getValue("token").ints!![0]
                val position = inputs.getValue("position").ints!![0]
                fedTokens.add(token)
                fedPositions.add(position)
                val out = sig.outputs.mapValues { (name, spec) ->
                    if (name == "logits") Tensor(spec.shape, floats = logits(step, token, position)) else filled(spec, marker(name, step))
                }
                step++
                out
            }
            "translate" -> mapOf(
                "target_ids" to Tensor.ofInts(sig.outputs.getValue("target_ids"),
                                              IntArray(sig.outputs.getValue("target_ids").size) { translateIds.getOrElse(it) { 0 } }),
                "target_length" to Tensor.ofInts(sig.outputs.getValue("target_length"), intArrayOf(translateIds.size)),
            )
            else -> error("no signature $signature")
        }
    }

    override fun accelerator(signature: String) = AcceleratorInfo(requested, signature != "translate", "scripted")

    override fun close() { closed = true }

    private fun filled(spec: TensorSpec, v: Float) = Tensor(spec.shape, floats = FloatArray(spec.size) { v })
}

/** Logits of size `v` whose argmax is `best`. */
fun oneHot(v: Int, best: Int) = FloatArray(v) { if (it == best) 1f else -1f }

/** An engine that emits `ids` in turn (then EOS 3 forever). */
fun emitting(vararg ids: Int, v: Int = 10, signatures: Map<String, Signature> = exportSignatures(v = v)) =
    ScriptedEngine(signatures) { step, _, _ -> oneHot(v, ids.getOrElse(step) { 3 }) }
