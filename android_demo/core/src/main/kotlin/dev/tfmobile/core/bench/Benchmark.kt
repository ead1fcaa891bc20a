/*
 * HAT's latency measure over a Decoder, exactly as tfmobile.deploy.bench.bench runs it on the host
 * (Wang et al., ACL 2020): batch 1, one source sentence of source_len tokens, decode_steps greedy steps
 * fed their own choice, `warmup` untimed runs, then `runs` timed runs, of which the fastest and slowest
 * `trim` fraction are dropped (bench.summarize). Per run: the encode call alone, the mean of its
 * decode_step calls (one sample per run), and encode + all steps end to end (the HAT number). Then,
 * when it can run, the in-graph `translate` loop, which stops at EOS (its mean target length is kept).
 *
 * translate is skipped, and the reason recorded, when the model has no translate signature (int8
 * exports) or the accelerator is the GPU: LiteRT's GPU path is not expected to take translate's WHILE
 * loop, so there the stepped decode_step measure is the one to read.
 */
package dev.tfmobile.core.bench

import dev.tfmobile.core.CoreError
import dev.tfmobile.core.decode.Decoder
import dev.tfmobile.core.engine.AcceleratorInfo

/** Where time comes from: System.nanoTime on a device, a scripted clock in tests. */
fun interface Clock {
    fun nanoTime(): Long

    companion object {
        val SYSTEM: Clock = Clock { System.nanoTime() }
    }
}

/** The measure's settings (the result's `settings`), checked as tfmobile.deploy.bench._check_measure. */
class BenchSettings(
    val sourceLen: Int = 30,
    val decodeSteps: Int = 30,
    val warmup: Int = 5,
    val runs: Int = 50,
    val trim: Double = 0.1,
) {
    init {
        for ((key, value) in listOf("source_len" to sourceLen, "decode_steps" to decodeSteps, "runs" to runs)) {
            if (value < 1) throw CoreError("$key must be a positive integer, got $value")
        }
        if (warmup < 0) throw CoreError("warmup must be a non-negative integer, got $warmup")
        if (!(trim >= 0.0 && trim < 0.5)) throw CoreError("trim must be in [0, 0.5) (the fraction dropped at each end), got $trim")
    }

    fun toMap(): Map<String, Any?> = linkedMapOf(
        "source_len" to sourceLen, "decode_steps" to decodeSteps, "warmup" to warmup, "runs" to runs, "trim" to trim,
    )
}

/** One benchmark's statistics, with the timed samples (ns) they were taken from (for a chart). */
class BenchResult(
    val encoder: Stats,
    val decodeStep: Stats,
    val hat: Stats,
    /** null when translate was not run: see translateSkipped. */
    val translate: Stats?,
    val targetLengthMean: Double?,
    /** Why translate was not run ("skipped: ..."), null when it ran. */
    val translateSkipped: String?,
    /** The timed samples per measure (encoder, decode_step, hat, translate), before trimming, in ns. */
    val samplesNs: Map<String, DoubleArray>,
) {
    /** The result JSON's `measures` (bench_result.schema.json). */
    fun measures(): Map<String, Any?> {
        val out = linkedMapOf<String, Any?>("encoder" to encoder.toMap(), "decode_step" to decodeStep.toMap(), "hat" to hat.toMap())
        if (translate != null) out["translate"] = translate.toMap() + ("target_length_mean" to targetLengthMean)
        return out
    }
}

class Benchmark(
    val decoder: Decoder,
    val settings: BenchSettings = BenchSettings(),
    /** The delegate config's accelerator, "CPU" or "GPU" (DelegateConfig.accelerator). */
    val accelerator: String = AcceleratorInfo.CPU,
    /** T, when the model tells it: translate's, else model_meta.json's (decode_steps must fit the caches). */
    val maxTargetLen: Int? = decoder.maxTargetLen,
    val clock: Clock = Clock.SYSTEM,
) {
    init {
        if (settings.sourceLen > decoder.maxSourceLen) {
            throw CoreError("source_len=${settings.sourceLen} exceeds the model's fixed source length S=${decoder.maxSourceLen}: " +
                            "bench a shorter source or export with a larger max_source_len")
        }
        if (maxTargetLen != null && settings.decodeSteps > maxTargetLen) {
            throw CoreError("decode_steps=${settings.decodeSteps} exceeds the model's fixed target length T=$maxTargetLen: " +
                            "bench fewer steps or export with a larger max_target_len")
        }
    }

    /** Why translate will not run, or null when it will. */
    val translateSkipped: String? = when {
        !decoder.hasTranslate -> "skipped: the model has no translate signature"
        accelerator == AcceleratorInfo.GPU -> "skipped: LiteRT's GPU path does not take translate's WHILE loop; " +
            "decode_step is measured stepped instead"
        else -> null
    }

    /** Run the measure; `progress(phase, done, total)` is told after every run (warm-up included). */
    fun run(progress: (phase: String, done: Int, total: Int) -> Unit = { _, _, _ -> }): BenchResult {
        val s = settings
        val source = decoder.sourceIds(s.sourceLen)
        val total = s.warmup + s.runs
        val encoder = DoubleArray(s.runs)
        val steps = DoubleArray(s.runs)
        val hat = DoubleArray(s.runs)
        for (i in 0 until total) {
            val run = decoder.runHat(source, s.decodeSteps, clock)
            if (i >= s.warmup) {
                encoder[i - s.warmup] = run.encodeNs.toDouble()
                steps[i - s.warmup] = run.stepNs.sum().toDouble() / s.decodeSteps  // one sample per run
                hat[i - s.warmup] = run.totalNs.toDouble()
            }
            progress("encode+decode", i + 1, total)
        }
        val samples = linkedMapOf("encoder" to encoder, "decode_step" to steps, "hat" to hat)
        var translate: Stats? = null
        var lengthMean: Double? = null
        if (translateSkipped == null) {
            val times = DoubleArray(s.runs)
            val lengths = DoubleArray(s.runs)
            for (i in 0 until total) {
                val start = clock.nanoTime()
                val ids = decoder.translate(source)!!
                val elapsed = clock.nanoTime() - start
                if (i >= s.warmup) {
                    times[i - s.warmup] = elapsed.toDouble()
                    lengths[i - s.warmup] = ids.size.toDouble()
                }
                progress("translate", i + 1, total)
            }
            samples["translate"] = times
            translate = summarize(times, s.trim)
            lengthMean = pythonRound(numpyMean(lengths), 3)
        }
        return BenchResult(summarize(encoder, s.trim), summarize(steps, s.trim), summarize(hat, s.trim), translate,
                           lengthMean, translateSkipped, samples)
    }
}
