/*
 * A delegate config: one LiteRT TFLiteSettings message in protobuf JSON form, the files of
 * tfmobile/resources/delegates (pixel8-cpu1, pixel8-cpu4, pixel8-gpu-fp16, ...), mapped to what the
 * CompiledModel API takes: an accelerator, a thread count and a GPU precision.
 *
 * The checks are those of tflite_settings.schema.json, so that a file the host refuses the phone
 * refuses too, with one line: only the fields tfmobile sets (an unknown key is a typo, not something
 * to ignore), delegate one of NONE / XNNPACK / GPU, num_threads an integer >= 1 or -1 (let the runtime
 * choose; 0 is not valid), gpu_settings required for GPU and only for GPU, xnnpack_settings only for
 * XNNPACK. Threads: xnnpack_settings' num_threads, else cpu_settings', else -1 (as tfmobile.deploy.bench
 * resolve_delegate).
 */
package dev.tfmobile.core.delegate

import dev.tfmobile.core.CoreError
import dev.tfmobile.core.engine.AcceleratorInfo
import dev.tfmobile.core.json.Json
import java.io.File
import java.io.IOException

class DelegateConfig(
    /** The config's name (its file stem, e.g. pixel8-gpu-fp16), null when it has none. */
    val name: String?,
    /** TFLiteSettings.delegate: "NONE", "XNNPACK" or "GPU". */
    val delegate: String,
    /** "CPU" for XNNPACK and NONE, "GPU" for GPU (AcceleratorInfo.CPU / GPU). */
    val accelerator: String,
    /** CPU threads; -1 lets the runtime choose. */
    val threads: Int,
    /** "FP16" when the GPU may compute in float16 (gpu_settings.is_precision_loss_allowed), else "FP32". */
    val precision: String,
    /** XNNPACK for the CPU kernels; false for NONE (the builtin kernels only) and for GPU. */
    val useXnnpack: Boolean,
    /** gpu_settings.inference_preference is SUSTAINED_SPEED (a delegate reused over many calls, as decoding). */
    val sustainedSpeed: Boolean,
    /** The TFLiteSettings as read, echoed into the result JSON (delegate.settings). */
    val settings: Map<String, Any?>,
) {
    companion object {
        val DELEGATES = listOf("NONE", "XNNPACK", "GPU")
        val INFERENCE_PREFERENCES = listOf("GPU_INFERENCE_PREFERENCE_FAST_SINGLE_ANSWER", "GPU_INFERENCE_PREFERENCE_SUSTAINED_SPEED")
        private val KEYS = listOf("delegate", "xnnpack_settings", "cpu_settings", "gpu_settings")
        private val GPU_KEYS = listOf("is_precision_loss_allowed", "inference_preference")

        /** The config in `file`, named by its stem. */
        fun read(file: File): DelegateConfig {
            val text = try { file.readText(Charsets.UTF_8) } catch (e: IOException) {
                throw CoreError("cannot read delegate config $file: ${e.message}")
            }
            return parse(text, file.name.removeSuffix(".json"))
        }

        /** The config in `text`; `name` names it in the result and in errors. */
        fun parse(text: String, name: String?): DelegateConfig {
            val what = "delegate config ${name ?: "(unnamed)"}"
            val root = try { Json.parse(text) } catch (e: CoreError) { throw CoreError("$what: ${e.message}") }
            fun invalid(message: String, at: String): Nothing =
                throw CoreError("invalid $what: $message (at $at; see tflite_settings.schema.json)")

            if (root !is Map<*, *>) invalid("expected an object, got ${Json.typeName(root)}", "the top level")
            @Suppress("UNCHECKED_CAST") val settings = root as Map<String, Any?>
            unknownKeys(settings, KEYS, "the top level", ::invalid)
            val delegate = settings["delegate"] ?: invalid("'delegate' is a required property", "the top level")
            if (delegate !in DELEGATES) invalid("${Json.write(delegate, -1)} is not one of ${DELEGATES.joinToString(", ")}", "$.delegate")
            delegate as String

            var threads: Int? = null
            for (key in listOf("xnnpack_settings", "cpu_settings")) {
                if (key !in settings) continue
                if (key == "xnnpack_settings" && delegate != "XNNPACK") invalid("xnnpack_settings is only for delegate XNNPACK", "$.$key")
                val section = settings[key] as? Map<*, *> ?: invalid("expected an object, got ${Json.typeName(settings[key])}", "$.$key")
                unknownKeys(section, listOf("num_threads"), "$.$key", ::invalid)
                if ("num_threads" in section) {
                    val n = section["num_threads"]
                    val count = (if (n is Boolean) null else Json.integerOrNull(n))
                        ?: invalid("${Json.write(n, -1)} is not of type 'integer'", "$.$key.num_threads")
                    if (count < -1 || count == 0L || count > Int.MAX_VALUE) {
                        invalid("Threads for CPU kernels: a positive count, or -1 to let the runtime choose (0 is not valid); got $count",
                                "$.$key.num_threads")
                    }
                    if (threads == null) threads = count.toInt()
                }
            }

            var precisionLoss = false
            var sustained = false
            if (delegate == "GPU" && "gpu_settings" !in settings) invalid("'gpu_settings' is a required property", "the top level")
            if ("gpu_settings" in settings) {
                if (delegate != "GPU") invalid("gpu_settings is only for delegate GPU", "$.gpu_settings")
                val gpu = settings["gpu_settings"] as? Map<*, *>
                    ?: invalid("expected an object, got ${Json.typeName(settings["gpu_settings"])}", "$.gpu_settings")
                unknownKeys(gpu, GPU_KEYS, "$.gpu_settings", ::invalid)
                if ("is_precision_loss_allowed" in gpu) {
                    precisionLoss = gpu["is_precision_loss_allowed"] as? Boolean
                        ?: invalid("${Json.write(gpu["is_precision_loss_allowed"], -1)} is not of type 'boolean'",
                                   "$.gpu_settings.is_precision_loss_allowed")
                }
                if ("inference_preference" in gpu) {
                    val preference = gpu["inference_preference"]
                    if (preference !in INFERENCE_PREFERENCES) {
                        invalid("${Json.write(preference, -1)} is not one of ${INFERENCE_PREFERENCES.joinToString(", ")}",
                                "$.gpu_settings.inference_preference")
                    }
                    sustained = preference == "GPU_INFERENCE_PREFERENCE_SUSTAINED_SPEED"
                }
            }

            return DelegateConfig(
                name = name,
                delegate = delegate,
                accelerator = if (delegate == "GPU") AcceleratorInfo.GPU else AcceleratorInfo.CPU,
                threads = threads ?: -1,
                precision = if (precisionLoss) "FP16" else "FP32",
                useXnnpack = delegate == "XNNPACK",
                sustainedSpeed = sustained,
                settings = settings,
            )
        }

        private fun unknownKeys(section: Map<*, *>, allowed: List<String>, at: String, invalid: (String, String) -> Nothing) {
            val extra = section.keys.filter { it !in allowed }
            if (extra.isNotEmpty()) {
                invalid("additional properties are not allowed (${extra.joinToString(", ") { "'$it'" }} " +
                        "${if (extra.size == 1) "was" else "were"} unexpected; allowed: ${allowed.joinToString(", ")})", at)
            }
        }
    }
}
