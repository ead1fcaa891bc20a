/*
 * One benchmark on this phone, shared by the benchmark screen and the headless entry point: open the
 * export with LiteRT and the delegate config, run the core's Benchmark (HAT's measure, exactly the host's
 * `tfmobile bench`), and build the tfmobile-bench/1 record with this phone as the host.
 */
package dev.tfmobile.demo

import android.os.Build
import dev.tfmobile.core.bench.BenchResult
import dev.tfmobile.core.bench.BenchSettings
import dev.tfmobile.core.bench.Benchmark
import dev.tfmobile.core.bench.HostInfo
import dev.tfmobile.core.bench.ResultJson
import dev.tfmobile.core.decode.Decoder
import dev.tfmobile.core.delegate.DelegateConfig
import dev.tfmobile.core.meta.ModelMeta
import java.io.File

object PhoneBench {
    class Outcome(val result: BenchResult, val record: Map<String, Any?>)

    /**
     * Benchmark `model`: an export directory, or a .tflite file with or without the export's
     * model_meta.json beside it (HAT's latency dataset pushes a bare model, as the host's bench takes one).
     * `device` names the phone in the result (a devices.json key when the host passes one), else the
     * phone's own maker and model.
     */
    fun run(
        model: File,
        delegate: DelegateConfig,
        settings: BenchSettings,
        device: String?,
        progress: (phase: String, done: Int, total: Int) -> Unit,
    ): Outcome {
        val meta: ModelMeta?
        val file: File
        if (model.isDirectory) {
            meta = ModelMeta.read(model)
            file = meta.modelPath!!
        } else {
            // the metadata beside a .tflite counts only when it describes that very file
            val beside = File(model.absoluteFile.parentFile, ModelMeta.FILE)
            meta = if (beside.isFile) ModelMeta.read(beside).takeIf { it.modelFile == model.name } else null
            file = model
        }
        LiteRtEngine.open(file, delegate).use { engine ->
            val decoder = Decoder(engine, meta?.bos ?: Decoder.DEFAULT_BOS, meta?.pad ?: Decoder.DEFAULT_PAD)
            val bench = Benchmark(decoder, settings, delegate.accelerator, decoder.maxTargetLen ?: meta?.maxTargetLen)
            val result = bench.run(progress)
            val record = ResultJson.build(engine.model, meta, decoder, delegate, settings, result, host(device))
            return Outcome(result, record)
        }
    }

    /** This phone as the result's `host`. */
    fun host(device: String?): HostInfo {
        val processor = if (Build.VERSION.SDK_INT >= 31 && Build.SOC_MODEL != Build.UNKNOWN) {
            "${Build.SOC_MANUFACTURER} ${Build.SOC_MODEL}"
        } else {
            "${Build.HARDWARE} (${Build.SUPPORTED_ABIS.firstOrNull() ?: "unknown ABI"})"
        }
        return HostInfo(
            platform = "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT})",
            cpuCount = Runtime.getRuntime().availableProcessors(),
            processor = processor,
            device = device ?: "${Build.MANUFACTURER} ${Build.MODEL}",
        )
    }
}
