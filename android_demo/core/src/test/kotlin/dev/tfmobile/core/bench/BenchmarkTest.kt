/*
 * HAT's measure over a scripted engine whose every call costs a known time on a clock only it moves:
 * the warm-up is left out, each measure times its own span, the trim and statistics are summarize's,
 * translate runs or is skipped with its reason, and the result record has the schema's shape. That the
 * record validates against bench_result.schema.json is checked in Python (tests/test_android_core.py).
 */
package dev.tfmobile.core.bench

import dev.tfmobile.core.CoreError
import dev.tfmobile.core.decode.Decoder
import dev.tfmobile.core.delegate.DelegateConfig
import dev.tfmobile.core.json.Json
import dev.tfmobile.core.meta.ModelMeta
import dev.tfmobile.core.meta.metaText
import dev.tfmobile.core.testing.ScriptedEngine
import dev.tfmobile.core.testing.StepClock
import dev.tfmobile.core.testing.exportSignatures
import dev.tfmobile.core.testing.oneHot
import java.io.File
import java.nio.file.Files
import java.time.Instant
import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNull
import kotlin.test.assertTrue

private const val WARMUP = 2

/** Warm-up runs cost 50 ms a call; timed run r (from 0) costs (r + 1) ms to encode and (r + 1) * 0.1 ms a step. */
private class Rig(translate: Boolean = true, accelerator: String = "CPU") {
    val clock = StepClock()
    private var encodes = 0
    val engine = ScriptedEngine(
        exportSignatures(translate = translate), clock, translateIds = intArrayOf(5, 6, 7), requested = accelerator,
        costNs = { sig, _ ->
            if (sig == "encode") encodes++
            val run = encodes - WARMUP  // 1-based among the timed runs
            when {
                sig == "translate" -> 10_000_000L
                run < 1 -> 50_000_000L
                sig == "encode" -> 1_000_000L * run
                else -> 100_000L * run
            }
        },
    ) { _, _, _ -> oneHot(10, 5) }
    val decoder = Decoder(engine, bos = 2)
    val settings = BenchSettings(sourceLen = 3, decodeSteps = 4, warmup = WARMUP, runs = 5, trim = 0.2)
    val benchmark = Benchmark(decoder, settings, accelerator, clock = clock)
}

class BenchmarkTest {
    @Test
    fun eachMeasureTimesItsSpanWithoutTheWarmup() {
        val r = Rig().benchmark.run()
        // encode 1..5 ms, trim 0.2 drops one each end: 2, 3, 4
        assertEquals(Stats(3.0, 3.0, 3.8, 2.0, 4.0, 3), r.encoder)
        assertEquals(Stats(0.3, 0.3, 0.38, 0.2, 0.4, 3), r.decodeStep)  // the per-step mean of each run
        assertEquals(Stats(4.2, 4.2, 5.32, 2.8, 5.6, 3), r.hat)  // encode + 4 steps
        assertEquals(listOf(1e6, 2e6, 3e6, 4e6, 5e6), r.samplesNs.getValue("encoder").toList())
    }

    @Test
    fun translateIsTimedWithItsMeanTargetLength() {
        val r = Rig().benchmark.run()
        assertEquals(Stats(10.0, 10.0, 10.0, 10.0, 10.0, 3), r.translate)
        assertEquals(3.0, r.targetLengthMean)
        assertNull(r.translateSkipped)
        assertEquals(listOf("encoder", "decode_step", "hat", "translate"), r.measures().keys.toList())
        assertEquals(3.0, (r.measures()["translate"] as Map<*, *>)["target_length_mean"])
    }

    @Test
    fun onTheGpuTranslateIsSkippedAndSaysWhy() {
        val r = Rig(accelerator = "GPU").benchmark.run()
        assertNull(r.translate)
        assertTrue(r.translateSkipped!!.startsWith("skipped: LiteRT's GPU path does not take translate's WHILE loop"))
        assertEquals(listOf("encoder", "decode_step", "hat"), r.measures().keys.toList())
    }

    @Test
    fun aModelWithoutTranslateSkipsIt() {
        val r = Rig(translate = false).benchmark.run()
        assertEquals("skipped: the model has no translate signature", r.translateSkipped)
    }

    @Test
    fun progressIsToldAfterEveryRun() {
        val told = ArrayList<String>()
        Rig().benchmark.run { phase, done, total -> told.add("$phase $done/$total") }
        assertEquals((1..7).map { "encode+decode $it/7" } + (1..7).map { "translate $it/7" }, told)
    }

    @Test
    fun settingsOutsideTheMeasureAreRefused() {
        assertFailsWith<CoreError> { BenchSettings(runs = 0) }
        assertFailsWith<CoreError> { BenchSettings(sourceLen = 0) }
        assertFailsWith<CoreError> { BenchSettings(decodeSteps = 0) }
        assertFailsWith<CoreError> { BenchSettings(warmup = -1) }
        assertFailsWith<CoreError> { BenchSettings(trim = 0.5) }
        val decoder = Rig().decoder
        val long = assertFailsWith<CoreError> { Benchmark(decoder, BenchSettings(sourceLen = 5, decodeSteps = 4)) }
        assertTrue("source_len=5 exceeds the model's fixed source length S=4" in long.message!!)
        val steps = assertFailsWith<CoreError> { Benchmark(decoder, BenchSettings(sourceLen = 4, decodeSteps = 7)) }
        assertTrue("decode_steps=7 exceeds the model's fixed target length T=6" in steps.message!!)
    }
}

class ResultJsonTest {
    private fun record(accelerator: String): Map<String, Any?> {
        val dir = Files.createTempDirectory("result").toFile()
        try {
            val model = File(dir, "model.tflite").apply { writeText("abc") }
            File(dir, "model_meta.json").writeText(metaText { it["max_source_len"] = 4; it["max_target_len"] = 6 })
            val rig = Rig(accelerator = accelerator)
            val delegate = DelegateConfig.parse(
                if (accelerator == "GPU") """{"delegate": "GPU", "gpu_settings": {"is_precision_loss_allowed": true}}"""
                else """{"delegate": "XNNPACK", "xnnpack_settings": {"num_threads": 4}}""", "pixel8-x")
            return ResultJson.build(model, ModelMeta.read(dir), rig.decoder, delegate, rig.settings, rig.benchmark.run(),
                                    HostInfo("Android 14 (API 34)", 8, "Tensor G3", "pixel8"),
                                    created = Instant.parse("2025-01-02T03:04:05.678Z"))
        } finally {
            dir.deleteRecursively()
        }
    }

    @Test
    fun theRecordHasTheSchemasFields() {
        val r = record("CPU")
        assertEquals(listOf("schema", "created", "model", "runtime", "host", "delegate", "threads", "settings", "measures", "accelerators"),
                     r.keys.toList())
        assertEquals("tfmobile-bench/1", r["schema"])
        assertEquals("2025-01-02T03:04:05+00:00", r["created"])
        assertEquals(mapOf("file" to "model.tflite", "bytes" to 3L, "quantization" to "none", "max_source_len" to 4, "max_target_len" to 6,
                           "sha256" to "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), r["model"])
        assertEquals(mapOf("name" to "litert-android", "version" to "2.3.0"), r["runtime"])
        assertEquals(mapOf("platform" to "Android 14 (API 34)", "cpu_count" to 8, "processor" to "Tensor G3", "device" to "pixel8"), r["host"])
        assertEquals(4, r["threads"])
        assertEquals("pixel8-x", (r["delegate"] as Map<*, *>)["name"])
        assertEquals(mapOf("source_len" to 3, "decode_steps" to 4, "warmup" to 2, "runs" to 5, "trim" to 0.2), r["settings"])
    }

    @Test
    fun acceleratorsSayWhereEachSignatureRan() {
        assertEquals(mapOf("requested" to "CPU", "fully_accelerated" to true, "note" to "scripted"),
                     (record("CPU")["accelerators"] as Map<*, *>)["encode"])
        val gpu = record("GPU")["accelerators"] as Map<*, *>
        assertEquals(listOf("encode", "decode_step", "translate"), gpu.keys.toList())
        assertEquals(mapOf("requested" to "GPU", "fully_accelerated" to true, "note" to "scripted"), gpu["decode_step"])
        val translate = gpu["translate"] as Map<*, *>
        assertEquals("GPU", translate["requested"])
        assertNull(translate["fully_accelerated"])
        assertTrue((translate["note"] as String).startsWith("skipped: "))
    }

    @Test
    fun theRecordIsJson() {
        val r = record("GPU")
        assertEquals(Json.write(r), Json.write(Json.parse(Json.write(r))))
    }

    @Test
    fun aMissingModelIsOneLine() {
        assertFailsWith<CoreError> { ResultJson.sha256(File("/nonexistent/model.tflite")) }
    }
}
