/*
 * HAT's trimmed statistics, exactly tfmobile.deploy.bench.summarize: sort the samples (ns), drop
 * floor(n * trim + 1e-9) at each end, convert to ms, then mean, p50, p90, min and max of what is left,
 * each rounded like Python's round(x, 4).
 *
 * "Exactly" down to the last bit before rounding, so that a value near a rounding edge rounds the same
 * way on both sides: the mean sums like numpy (pairwise summation, 8 accumulators in blocks of up to
 * 128, halves above; numpy's reduce starts from 0.0), the percentiles are numpy's default "linear"
 * method ((n - 1) * q, then its two-sided lerp), and rounding is half-even on the exact binary value, as
 * Python rounds (BigDecimal(x) is that exact value).
 */
package dev.tfmobile.core.bench

import dev.tfmobile.core.CoreError
import java.math.BigDecimal
import java.math.RoundingMode

/** The statistics of one measure, in ms over the kept samples (bench_result.schema.json, $defs/stats). */
data class Stats(
    val meanMs: Double,
    val p50Ms: Double,
    val p90Ms: Double,
    val minMs: Double,
    val maxMs: Double,
    /** Samples kept after trimming. */
    val samples: Int,
) {
    fun toMap(): Map<String, Any?> = linkedMapOf(
        "mean_ms" to meanMs, "p50_ms" to p50Ms, "p90_ms" to p90Ms, "min_ms" to minMs, "max_ms" to maxMs,
        "samples" to samples,
    )
}

/** HAT's trimmed statistics in ms: drop the `trim` fraction at each end, then describe what is left. */
fun summarize(samplesNs: DoubleArray, trim: Double): Stats {
    val kept = keptMs(samplesNs, trim)
    return Stats(
        meanMs = pythonRound(numpyMean(kept), 4),
        p50Ms = pythonRound(numpyPercentile(kept, 50.0), 4),
        p90Ms = pythonRound(numpyPercentile(kept, 90.0), 4),
        minMs = pythonRound(kept.first(), 4),
        maxMs = pythonRound(kept.last(), 4),
        samples = kept.size,
    )
}

/** The samples that survive the trim, sorted, in ms. */
internal fun keptMs(samplesNs: DoubleArray, trim: Double): DoubleArray {
    if (!(trim >= 0.0 && trim < 0.5)) throw CoreError("trim must be in [0, 0.5) (the fraction dropped at each end), got $trim")
    if (samplesNs.isEmpty()) throw CoreError("no samples to summarize")
    if (samplesNs.any { !it.isFinite() }) throw CoreError("samples must be finite numbers of ns")
    val ordered = samplesNs.sortedArray()
    val cut = Math.floor(ordered.size * trim + 1e-9).toInt()
    if (ordered.size - 2 * cut < 1) throw CoreError("trim $trim drops all ${ordered.size} samples")
    return DoubleArray(ordered.size - 2 * cut) { ordered[cut + it] / 1e6 }
}

/** numpy's mean of a float64 array: its pairwise sum, divided by n. */
internal fun numpyMean(xs: DoubleArray): Double = (0.0 + pairwiseSum(xs, 0, xs.size)) / xs.size

/** numpy's pairwise_sum (umath loops): exact below 8, 8 accumulators up to 128, then halves on multiples of 8. */
private fun pairwiseSum(a: DoubleArray, from: Int, n: Int): Double {
    if (n < 8) {
        var res = 0.0
        for (i in 0 until n) res += a[from + i]
        return res
    }
    if (n <= PAIRWISE_BLOCK) {
        val r = DoubleArray(8) { a[from + it] }
        var i = 8
        while (i < n - n % 8) {
            for (j in 0 until 8) r[j] += a[from + i + j]
            i += 8
        }
        var res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while (i < n) { res += a[from + i]; i++ }
        return res
    }
    var half = n / 2
    half -= half % 8
    return pairwiseSum(a, from, half) + pairwiseSum(a, from + half, n - half)
}

private const val PAIRWISE_BLOCK = 128

/** numpy.percentile(sorted, q) with the default "linear" method. */
internal fun numpyPercentile(sorted: DoubleArray, q: Double): Double {
    val virtual = (sorted.size - 1) * (q / 100)
    if (virtual >= sorted.size - 1) return sorted.last()
    val previous = Math.floor(virtual)
    val a = sorted[previous.toInt()]
    val b = sorted[previous.toInt() + 1]
    val gamma = virtual - previous
    val diff = b - a
    return if (gamma >= 0.5) b - diff * (1 - gamma) else a + diff * gamma  // numpy's _lerp, from the nearer end
}

/** Python's round(x, digits) for a float: half-even on the exact binary value. */
internal fun pythonRound(x: Double, digits: Int): Double =
    if (!x.isFinite()) x else BigDecimal(x).setScale(digits, RoundingMode.HALF_EVEN).toDouble()
