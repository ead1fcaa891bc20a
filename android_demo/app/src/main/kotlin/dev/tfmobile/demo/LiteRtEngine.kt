/*
 * The core's Engine on LiteRT 2.x, CompiledModel API (com.google.ai.edge.litert 2.3.0).
 *
 * One CompiledModel holds all of an export's signatures (encode, decode_step, translate; their names,
 * shapes and dtypes read from the model itself, see signaturesOf). Each signature gets its input and
 * output TensorBuffers once, by name; every run writes the inputs, runs the signature and reads all
 * outputs back. Reading back is part of the timed call on purpose: on the GPU, run() may return before
 * the queue has drained, and the read waits for it. The caches go through host memory between steps
 * (the core's Engine exchanges arrays), as they go through numpy in the host's `tfmobile bench`.
 *
 * The delegate config maps as follows (core DelegateConfig):
 *   XNNPACK  -> Accelerator.CPU, CpuOptions(numThreads) (-1: LiteRT's default)
 *   GPU      -> Accelerator.GPU with Accelerator.CPU for the ops the GPU does not take (as the TFLite
 *               GPU delegate falls back), GpuOptions(precision FP16 when is_precision_loss_allowed, else FP32)
 *   NONE     -> refused: the builtin kernels without XNNPACK have no CompiledModel option.
 * gpu_settings.inference_preference has no CompiledModel option either; it is recorded in the result's
 * delegate settings and in the accelerator note.
 *
 * API names checked against the LiteRT sources and samples (google-ai-edge/LiteRT
 * litert/kotlin/src/main/kotlin/com/google/ai/edge/litert/{Model,TensorBuffer,Environment,Common}.kt,
 * litert-samples), not compiled here: CompiledModel.create(filePath, Options, Environment),
 * CompiledModel.Options(vararg Accelerator) with var cpuOptions / gpuOptions, CompiledModel.CpuOptions(numThreads),
 * CompiledModel.GpuOptions(precision = GpuOptions.Precision.FP16 / FP32), createInputBuffer(name, signature),
 * createOutputBuffer(name, signature), run(Map<String, TensorBuffer>, Map<String, TensorBuffer>, signature),
 * TensorBuffer.writeInt/writeFloat/readInt/readFloat/close, Environment.create(), getAvailableAccelerators(),
 * LiteRtException; and of the Interpreter API in the same artifact (CPU only, used here to list the
 * signatures): Interpreter(File, Interpreter.Options().setNumThreads/setUseXNNPACK), getSignatureKeys,
 * getSignatureInputs/Outputs, getInput/OutputTensorFromSignature, Tensor.shape/dataType. Not found in the
 * CompiledModel Kotlin API of the versions read: a list of signatures and their tensors (hence the
 * Interpreter), and an is-fully-accelerated query (C++ CompiledModel::IsFullyAccelerated has one), hence
 * fullyAccelerated = null unless the environment lacks the GPU altogether.
 */
package dev.tfmobile.demo

import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.LiteRtException
import com.google.ai.edge.litert.TensorBuffer
import dev.tfmobile.core.CoreError
import dev.tfmobile.core.delegate.DelegateConfig
import dev.tfmobile.core.engine.AcceleratorInfo
import dev.tfmobile.core.engine.DType
import dev.tfmobile.core.engine.Engine
import dev.tfmobile.core.engine.Signature
import dev.tfmobile.core.engine.Tensor
import dev.tfmobile.core.engine.TensorSpec
import org.tensorflow.lite.Interpreter
import java.io.File

class LiteRtEngine(
    /** The export's model.tflite (memory-mapped by LiteRT). */
    val model: File,
    override val signatures: Map<String, Signature>,
    val delegate: DelegateConfig,
) : Engine {
    private val environment: Environment
    private val compiled: CompiledModel
    /** Accelerators LiteRT found on this phone (Environment.getAvailableAccelerators). */
    val available: Set<Accelerator>

    /** One signature's buffers, by tensor name, created on its first run and reused. */
    private class Buffers(val inputs: Map<String, TensorBuffer>, val outputs: Map<String, TensorBuffer>)

    private val buffers = HashMap<String, Buffers>()

    init {
        if (delegate.delegate == "NONE") {
            throw CoreError("delegate NONE (builtin kernels without XNNPACK) has no LiteRT CompiledModel option on Android; " +
                            "use an XNNPACK config such as pixel8-cpu1")
        }
        environment = litert("create the LiteRT environment") { Environment.create() }
        try {
            available = litert("list LiteRT's accelerators") { environment.getAvailableAccelerators() }
            val gpu = delegate.accelerator == AcceleratorInfo.GPU
            val options = if (gpu) CompiledModel.Options(Accelerator.GPU, Accelerator.CPU) else CompiledModel.Options(Accelerator.CPU)
            if (delegate.threads > 0) options.cpuOptions = CompiledModel.CpuOptions(numThreads = delegate.threads)
            if (gpu) {
                val precision = if (delegate.precision == "FP16") CompiledModel.GpuOptions.Precision.FP16
                                else CompiledModel.GpuOptions.Precision.FP32
                options.gpuOptions = CompiledModel.GpuOptions(precision = precision)
            }
            compiled = litert("compile ${model.name} for ${delegate.accelerator}") {
                CompiledModel.create(model.path, options, environment)
            }
        } catch (e: Throwable) {
            environment.close()
            throw e
        }
    }

    override fun run(signature: String, inputs: Map<String, Tensor>): Map<String, Tensor> {
        val sig = signatures[signature] ?: throw CoreError("${model.name} has no signature $signature (it has ${signatures.keys.sorted()})")
        sig.checkInputs(signature, inputs)
        val io = buffers.getOrPut(signature) {
            litert("create the buffers of $signature") {
                Buffers(sig.inputs.keys.associateWith { compiled.createInputBuffer(it, signature) },
                        sig.outputs.keys.associateWith { compiled.createOutputBuffer(it, signature) })
            }
        }
        return litert("run $signature") {
            for ((name, tensor) in inputs) {
                val buffer = io.inputs.getValue(name)
                if (tensor.dtype == DType.INT32) buffer.writeInt(tensor.ints!!) else buffer.writeFloat(tensor.floats!!)
            }
            compiled.run(io.inputs, io.outputs, signature)
            sig.outputs.mapValues { (name, spec) -> read(io.outputs.getValue(name), spec, "$signature output $name") }
        }
    }

    override fun accelerator(signature: String): AcceleratorInfo {
        val requested = delegate.accelerator
        if (requested == AcceleratorInfo.CPU) {
            val threads = if (delegate.threads > 0) "${delegate.threads} thread(s)" else "LiteRT's default threads"
            return AcceleratorInfo(requested, null, "LiteRT CPU accelerator (XNNPACK), $threads; LiteRT's Kotlin API " +
                                   "does not report which ops XNNPACK took")
        }
        if (Accelerator.GPU !in available) {
            return AcceleratorInfo(requested, false, "LiteRT lists no GPU accelerator on this phone " +
                                   "(available: ${available.joinToString(", ")}): everything ran on the CPU")
        }
        val preference = if (delegate.sustainedSpeed) "; inference_preference SUSTAINED_SPEED has no CompiledModel option" else ""
        return AcceleratorInfo(requested, null, "LiteRT GPU accelerator, ${delegate.precision}, CPU fallback for ops the GPU " +
                               "does not take; LiteRT's Kotlin API does not report whether any op fell back$preference")
    }

    override fun close() {
        for (io in buffers.values) (io.inputs.values + io.outputs.values).forEach { it.close() }
        buffers.clear()
        compiled.close()
        environment.close()
    }

    private fun read(buffer: TensorBuffer, spec: TensorSpec, what: String): Tensor {
        val floats = if (spec.dtype == DType.FLOAT32) buffer.readFloat() else null
        val ints = if (spec.dtype == DType.INT32) buffer.readInt() else null
        val n = floats?.size ?: ints!!.size
        if (n != spec.size) throw CoreError("$what: the signature says $spec but LiteRT's buffer holds $n values")
        return Tensor(spec.shape, floats, ints)
    }

    companion object {
        /**
         * The model's signatures, read from the model itself with LiteRT's Interpreter API (the CompiledModel
         * Kotlin API has no listing), so that a bare model.tflite (HAT's latency dataset pushes only that)
         * is described exactly as an export with its model_meta.json. XNNPACK is off: only the tensors'
         * names, shapes and types are read, nothing runs.
         */
        fun signaturesOf(model: File): Map<String, Signature> = litert("read the signatures of ${model.name}") {
            Interpreter(model, Interpreter.Options().setNumThreads(1).setUseXNNPACK(false)).use { interpreter ->
                fun spec(tensor: org.tensorflow.lite.Tensor) = TensorSpec(tensor.shape(), DType.of(tensor.dataType().name.lowercase()))
                interpreter.signatureKeys.associate { key ->
                    key to Signature(
                        interpreter.getSignatureInputs(key).associate { it to spec(interpreter.getInputTensorFromSignature(it, key)) },
                        interpreter.getSignatureOutputs(key).associate { it to spec(interpreter.getOutputTensorFromSignature(it, key)) },
                    )
                }
            }
        }

        /** Open a model file with a delegate config. */
        fun open(model: File, delegate: DelegateConfig): LiteRtEngine {
            if (!model.isFile) throw CoreError("$model is missing; push the whole export directory")
            return LiteRtEngine(model, signaturesOf(model), delegate)
        }

        /** LiteRT's failures as one line that says what was being done. */
        private inline fun <T> litert(doing: String, block: () -> T): T =
            try {
                block()
            } catch (e: LiteRtException) {
                throw CoreError("LiteRT could not $doing: ${firstLine(e)}")
            } catch (e: IllegalArgumentException) { // the Interpreter API's way to refuse a file or a name
                throw CoreError("LiteRT could not $doing: ${firstLine(e)}")
            }

        private fun firstLine(e: Exception) = e.message?.lineSequence()?.firstOrNull() ?: e.javaClass.simpleName
    }
}
