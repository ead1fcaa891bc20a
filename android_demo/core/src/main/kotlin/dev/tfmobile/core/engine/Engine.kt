/*
 * What the core needs from a runtime: an exported translator's signatures, run by name. The app backs
 * it with LiteRT's CompiledModel (CPU or GPU accelerator); the tests here with engines that replay
 * what Python's LiteRT gave. Names, shapes and dtypes are discovered from the model, never assumed:
 * the decoder checks them against the contract of `tfmobile export` (see decode.Decoder).
 */
package dev.tfmobile.core.engine

import dev.tfmobile.core.CoreError

/** The named inputs and outputs of one signature (encode, decode_step, translate). */
class Signature(val inputs: Map<String, TensorSpec>, val outputs: Map<String, TensorSpec>) {
    /** Refuse inputs that are not exactly this signature's names, shapes and dtypes (one line). */
    fun checkInputs(signature: String, given: Map<String, Tensor>) {
        if (given.keys != inputs.keys) {
            throw CoreError("$signature takes ${inputs.keys.sorted()}, was given ${given.keys.sorted()}")
        }
        for ((name, spec) in inputs) {
            val got = given.getValue(name).spec
            if (got != spec) throw CoreError("$signature input $name must be $spec, was given $got")
        }
    }
}

/** Where a signature runs: what was asked for and, where the runtime tells, whether all of it ran there. */
data class AcceleratorInfo(
    /** "CPU" or "GPU", as the delegate config asked. */
    val requested: String,
    /** true when every op ran on the requested accelerator, false when some fell back, null when unknown. */
    val fullyAccelerated: Boolean?,
    val note: String? = null,
) {
    init {
        if (requested != CPU && requested != GPU) throw CoreError("requested accelerator must be CPU or GPU, got $requested")
    }

    /** The result JSON's form (bench_result.schema.json, accelerators.<signature>). */
    fun toMap(): Map<String, Any?> = buildMap {
        put("requested", requested)
        put("fully_accelerated", fullyAccelerated)
        if (note != null) put("note", note)
    }

    companion object {
        const val CPU = "CPU"
        const val GPU = "GPU"
    }
}

/** An exported translator loaded in a runtime. */
interface Engine : AutoCloseable {
    /** Every signature of the model by name, with its inputs and outputs. */
    val signatures: Map<String, Signature>

    /** Run one signature; `inputs` are all its inputs by name, the result all its outputs by name. */
    fun run(signature: String, inputs: Map<String, Tensor>): Map<String, Tensor>

    /** Where `signature` runs on this engine. */
    fun accelerator(signature: String): AcceleratorInfo
}
