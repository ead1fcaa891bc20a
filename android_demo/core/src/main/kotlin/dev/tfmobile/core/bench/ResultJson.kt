/*
 * The benchmark result as tfmobile/resources/bench_result.schema.json has it (schema tfmobile-bench/1),
 * the same record `tfmobile bench` writes on the host, so the host reads a phone's result with the same
 * code (format_table). On a phone: runtime litert-android, host = the phone (platform "Android 14 (API
 * 34)", its cores, its SoC), and `accelerators`: per signature, what was asked for and what LiteRT
 * said ran there (translate on the GPU: not run, with the reason).
 */
package dev.tfmobile.core.bench

import dev.tfmobile.core.CoreError
import dev.tfmobile.core.decode.Decoder
import dev.tfmobile.core.delegate.DelegateConfig
import dev.tfmobile.core.engine.AcceleratorInfo
import dev.tfmobile.core.meta.ModelMeta
import java.io.File
import java.io.IOException
import java.security.MessageDigest
import java.time.Instant
import java.time.ZoneOffset
import java.time.format.DateTimeFormatter
import java.time.temporal.ChronoUnit

/** The machine measured on (the result's `host`). */
data class HostInfo(
    /** e.g. "Android 14 (API 34)". */
    val platform: String,
    val cpuCount: Int,
    /** e.g. the SoC ("Google Tensor G3"), or the ABI when the phone does not tell. */
    val processor: String,
    /** The phone, e.g. a devices.json key (pixel8); null when not told. */
    val device: String? = null,
) {
    fun toMap(): Map<String, Any?> = linkedMapOf<String, Any?>(
        "platform" to platform, "cpu_count" to cpuCount, "processor" to processor,
    ).also { if (device != null) it["device"] = device }

    companion object {
        /** This JVM's machine (the tools and tests here). */
        fun jvm(device: String? = null) = HostInfo(
            "${System.getProperty("os.name")} ${System.getProperty("os.version")}",
            Runtime.getRuntime().availableProcessors(), System.getProperty("os.arch") ?: "unknown", device,
        )
    }
}

object ResultJson {
    const val SCHEMA = "tfmobile-bench/1"
    const val RUNTIME_NAME = "litert-android"
    /** The LiteRT artifact the app is built with (com.google.ai.edge.litert:litert). */
    const val RUNTIME_VERSION = "2.3.0"
    /** The signatures `accelerators` reports on, in this order. */
    val SIGNATURES = listOf("encode", "decode_step", "translate")

    /** The result record, a Map for Json.write. `model` is the .tflite file measured. */
    fun build(
        model: File,
        meta: ModelMeta?,
        decoder: Decoder,
        delegate: DelegateConfig,
        settings: BenchSettings,
        result: BenchResult,
        host: HostInfo,
        runtimeVersion: String = RUNTIME_VERSION,
        created: Instant = Instant.now(),
    ): Map<String, Any?> {
        val accelerators = linkedMapOf<String, Any?>()
        for (name in SIGNATURES) {
            if (name !in decoder.engine.signatures) continue
            accelerators[name] = if (name == "translate" && result.translateSkipped != null) {
                AcceleratorInfo(delegate.accelerator, null, result.translateSkipped).toMap()
            } else {
                decoder.engine.accelerator(name).toMap()
            }
        }
        return linkedMapOf(
            "schema" to SCHEMA,
            "created" to createdText(created),
            "model" to linkedMapOf(
                "file" to model.name, "bytes" to model.length(), "sha256" to sha256(model),
                "quantization" to meta?.quantization,
                "max_source_len" to decoder.maxSourceLen,
                "max_target_len" to (decoder.maxTargetLen ?: meta?.maxTargetLen),
            ),
            "runtime" to linkedMapOf("name" to RUNTIME_NAME, "version" to runtimeVersion),
            "host" to host.toMap(),
            "delegate" to linkedMapOf("name" to delegate.name, "settings" to delegate.settings),
            "threads" to delegate.threads,
            "settings" to settings.toMap(),
            "measures" to result.measures(),
            "accelerators" to accelerators,
        )
    }

    /** UTC, ISO 8601 to the second, as Python's datetime.now(timezone.utc).isoformat(timespec="seconds"). */
    fun createdText(at: Instant): String =
        DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ssxxx").format(at.truncatedTo(ChronoUnit.SECONDS).atOffset(ZoneOffset.UTC))

    /** The lowercase hex SHA-256 of a file, read in blocks. */
    fun sha256(file: File): String {
        val digest = MessageDigest.getInstance("SHA-256")
        try {
            file.inputStream().use { input ->
                val block = ByteArray(1 shl 20)
                while (true) {
                    val n = input.read(block)
                    if (n < 0) break
                    digest.update(block, 0, n)
                }
            }
        } catch (e: IOException) {
            throw CoreError("cannot read the model $file: ${e.message}")
        }
        return digest.digest().joinToString("") { "%02x".format(it) }
    }
}
