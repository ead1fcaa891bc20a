/*
 * The JVM side of the core's parity tests (tests/test_android_core.py): each command reads what
 * Python wrote, runs the Kotlin core on it and prints one JSON document for Python to compare.
 * Bad input in a batch is reported per item as {"error": "<the CoreError line>"}.
 *
 *   summarize FILE          FILE: [{"samples": [ns...], "trim": t}, ...] -> [{"stats": {...}, "raw": {mean, p50, p90}}]
 *   json FILE               FILE: ["<json text>", ...] -> [{"text": Json.write(Json.parse(text))}]
 *   delegate FILE...        each TFLiteSettings file -> [{"file", "accelerator", "threads", "precision", ...}]
 *   meta PATH...            each model_meta.json (or export dir) -> [{fields..., "limits": [limit(n) for n in 1..S]}]
 *   greedy RECORDING        replays Python's decode_step logits through Decoder.greedy -> [{"ids", "steps", "stopped"}]
 *   translate EXPORT RECORDING   Translator over the replayed engine, text in -> [{"source_ids", "ids", "text", "steps"}]
 *   bench-fake EXPORT DELEGATE OUT RUNS WARMUP SOURCE_LEN DECODE_STEPS TRIM
 *                           Benchmark over a SyntheticEngine and a fake clock; writes the result JSON to OUT
 *                           and prints the timed samples {"encoder": [...], ...}.
 *
 * A recording: {"signatures": {...as model_meta.json}, "bos", "eos", "pad", "cases": [{"source_ids": [S ids],
 * "limit": L, "text": "...", "calls": [{"token", "position", "logits": [V]}]}]}.
 */
package dev.tfmobile.core.tools

import dev.tfmobile.core.CoreError
import dev.tfmobile.core.Translator
import dev.tfmobile.core.bench.BenchSettings
import dev.tfmobile.core.bench.Benchmark
import dev.tfmobile.core.bench.HostInfo
import dev.tfmobile.core.bench.ResultJson
import dev.tfmobile.core.bench.keptMs
import dev.tfmobile.core.bench.numpyMean
import dev.tfmobile.core.bench.numpyPercentile
import dev.tfmobile.core.bench.summarize
import dev.tfmobile.core.decode.Decoder
import dev.tfmobile.core.delegate.DelegateConfig
import dev.tfmobile.core.json.Json
import dev.tfmobile.core.meta.ModelMeta
import java.io.File
import java.time.Instant
import kotlin.system.exitProcess

fun main(args: Array<String>) {
    val out = try {
        when (args.firstOrNull()) {
            "summarize" -> summarizeCases(read(args[1]) as List<*>)
            "json" -> (read(args[1]) as List<*>).map { each { mapOf("text" to Json.write(Json.parse(it as String))) } }
            "delegate" -> args.drop(1).map { path -> each { delegateFields(path) } }
            "meta" -> args.drop(1).map { path -> each { metaFields(path) } }
            "greedy" -> greedy(read(args[1]) as Map<*, *>)
            "translate" -> translate(File(args[1]), read(args[2]) as Map<*, *>)
            "bench-fake" -> benchFake(args)
            else -> usage()
        }
    } catch (e: CoreError) {
        System.err.println(e.message)
        exitProcess(2)
    }
    System.out.write((Json.write(out) + "\n").encodeToByteArray())
    System.out.flush()
}

private fun usage(): Nothing {
    System.err.println("usage: summarize FILE | json FILE | delegate FILE... | meta PATH... | greedy RECORDING | " +
                       "translate EXPORT RECORDING | bench-fake EXPORT DELEGATE OUT RUNS WARMUP SOURCE_LEN DECODE_STEPS TRIM")
    exitProcess(64)
}

private fun read(path: String): Any? = Json.parse(File(path).readText(Charsets.UTF_8))

private fun each(block: () -> Map<String, Any?>): Map<String, Any?> =
    try { block() } catch (e: CoreError) { mapOf("error" to e.message) }

private fun doubles(list: Any?): DoubleArray = (list as List<*>).map { (it as Number).toDouble() }.toDoubleArray()

private fun ints(list: Any?): IntArray = (list as List<*>).map { (it as Long).toInt() }.toIntArray()

private fun summarizeCases(cases: List<*>) = cases.map { c ->
    c as Map<*, *>
    each {
        val samples = doubles(c["samples"])
        val trim = (c["trim"] as Number).toDouble()
        val kept = keptMs(samples, trim)
        mapOf("stats" to summarize(samples, trim).toMap(),
              "raw" to mapOf("mean" to numpyMean(kept), "p50" to numpyPercentile(kept, 50.0), "p90" to numpyPercentile(kept, 90.0)))
    }
}

private fun delegateFields(path: String): Map<String, Any?> {
    val d = DelegateConfig.read(File(path))
    return linkedMapOf("file" to path, "name" to d.name, "delegate" to d.delegate, "accelerator" to d.accelerator,
                       "threads" to d.threads, "precision" to d.precision, "use_xnnpack" to d.useXnnpack,
                       "sustained_speed" to d.sustainedSpeed, "settings" to d.settings)
}

private fun metaFields(path: String): Map<String, Any?> {
    val m = ModelMeta.read(File(path))
    return linkedMapOf("model_file" to m.modelFile, "quantization" to m.quantization, "max_source_len" to m.maxSourceLen,
                       "max_target_len" to m.maxTargetLen, "bos" to m.bos, "eos" to m.eos, "pad" to m.pad,
                       "tokenizers" to m.tokenizers, "source_tokenizer" to m.sourceTokenizer,
                       "target_tokenizer" to m.targetTokenizer,
                       "limits" to (1..m.maxSourceLen).map { m.targetLengthLimit(it) })
}

private fun recordedCases(recording: Map<*, *>): List<RecordedCase> = (recording["cases"] as List<*>).map { c ->
    c as Map<*, *>
    val calls = (c["calls"] as List<*>).map { it as Map<*, *> }
    RecordedCase(ints(c["source_ids"]), calls.map { (it["token"] as Long).toInt() }.toIntArray(),
                 calls.map { (it["position"] as Long).toInt() }.toIntArray(),
                 calls.map { call -> doubles(call["logits"]).let { d -> FloatArray(d.size) { d[it].toFloat() } } })
}

private fun greedy(recording: Map<*, *>): List<Map<String, Any?>> {
    val cases = recordedCases(recording)
    val engine = ReplayEngine(signaturesOf(recording["signatures"]), cases)
    val decoder = Decoder(engine, (recording["bos"] as Long).toInt(), (recording["pad"] as Long).toInt())
    val eos = (recording["eos"] as Long).toInt()
    return (recording["cases"] as List<*>).mapIndexed { i, c ->
        c as Map<*, *>
        each {
            val ids = decoder.greedy(cases[i].sourceIds, (c["limit"] as Long).toInt(), eos)
            val steps = engine.stepsRun[i]
            mapOf("ids" to ids, "steps" to steps, "stopped" to if (ids.size == steps) "limit" else "eos")
        }
    }
}

private fun translate(export: File, recording: Map<*, *>): List<Map<String, Any?>> {
    val cases = recordedCases(recording)
    val engine = ReplayEngine(signaturesOf(recording["signatures"]), cases)
    val translator = Translator.open(ModelMeta.read(export), engine)
    return (recording["cases"] as List<*>).mapIndexed { i, c ->
        c as Map<*, *>
        each {
            val r = translator.translate(c["text"] as String)
            mapOf("source_ids" to r.sourceIds, "ids" to r.ids, "text" to r.text, "steps" to engine.stepsRun[i])
        }
    }
}

private fun benchFake(args: Array<String>): Map<String, Any?> {
    if (args.size != 9) usage()
    val meta = ModelMeta.read(File(args[1]))
    val metaJson = Json.parse(File(meta.exportDir, ModelMeta.FILE).readText()) as Map<*, *>
    val delegate = DelegateConfig.read(File(args[2]))
    val settings = BenchSettings(sourceLen = args[6].toInt(), decodeSteps = args[7].toInt(), warmup = args[5].toInt(),
                                 runs = args[4].toInt(), trim = args[8].toDouble())
    val clock = FakeClock()
    val engine = SyntheticEngine(signaturesOf(metaJson["signatures"]), clock, delegate.accelerator)
    val decoder = Decoder(engine, meta.bos, meta.pad)
    val benchmark = Benchmark(decoder, settings, delegate.accelerator, decoder.maxTargetLen ?: meta.maxTargetLen, clock)
    val result = benchmark.run()
    val record = ResultJson.build(meta.modelPath!!, meta, decoder, delegate, settings, result,
                                  HostInfo("Android 14 (API 34)", 8, "synthetic", "pixel8"), created = Instant.now())
    File(args[3]).writeText(Json.write(record) + "\n", Charsets.UTF_8)
    return result.samplesNs
}
