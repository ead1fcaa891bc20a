/*
 * HAT's trimmed statistics: the trim count, numpy's percentiles and Python's rounding, each on inputs
 * worked out by hand (and checked against tfmobile.deploy.bench.summarize). Parity on many inputs is
 * tests/test_android_core.py.
 */
package dev.tfmobile.core.bench

import dev.tfmobile.core.CoreError
import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith

private fun ns(vararg ms: Double) = DoubleArray(ms.size) { ms[it] * 1e6 }

class StatsTest {
    @Test
    fun theTrimDropsTheSameCountAtEachEnd() {
        // 10 samples, trim 0.1: the fastest (0) and slowest (100) go, 1..8 stay (in any order)
        val s = summarize(ns(5.0, 100.0, 1.0, 8.0, 2.0, 0.0, 7.0, 3.0, 6.0, 4.0), 0.1)
        assertEquals(Stats(meanMs = 4.5, p50Ms = 4.5, p90Ms = 7.3, minMs = 1.0, maxMs = 8.0, samples = 8), s)
    }

    @Test
    fun theTrimCountIsFlooredWithATolerance() {
        assertEquals(10, summarize(DoubleArray(10) { it.toDouble() }, 0.0).samples)
        assertEquals(12, summarize(DoubleArray(12) { it.toDouble() }, 0.05).samples)  // 12 * 0.05 = 0.6: none dropped
        assertEquals(42, summarize(DoubleArray(100) { it.toDouble() }, 0.29).samples)  // 100 * 0.29 = 28.999999999999996 -> 29
        assertEquals(1, summarize(DoubleArray(3) { it.toDouble() }, 0.49).samples)
    }

    @Test
    fun percentilesInterpolateLikeNumpy() {
        val s = summarize(ns(1.0, 2.0, 3.0, 4.0), 0.0)
        assertEquals(2.5, s.p50Ms)
        assertEquals(3.7, s.p90Ms)  // (n - 1) * 0.9 = 2.7: 4 - 1 * 0.3 from the nearer end
        assertEquals(2.5, s.meanMs)
    }

    @Test
    fun oneSampleIsEveryStatistic() {
        assertEquals(Stats(1.2345, 1.2345, 1.2345, 1.2345, 1.2345, 1), summarize(doubleArrayOf(1_234_500.0), 0.25))
    }

    @Test
    fun roundingIsOnTheExactBinaryValueLikePython() {
        // 1.00005 is stored just above, 2.00005 just below: Python's round gives 1.0001 and 2.0
        assertEquals(1.0001, summarize(doubleArrayOf(1_000_050.0), 0.0).meanMs)
        assertEquals(2.0, summarize(doubleArrayOf(2_000_050.0), 0.0).meanMs)
        assertEquals(0.0001, summarize(doubleArrayOf(150.0), 0.0).meanMs)
    }

    @Test
    fun theMeanSumsPairwiseLikeNumpy() {
        // 0.1 ms ten thousand times: a running sum drifts to 1000.0000000001588, numpy's pairwise sum
        // stays within an ulp (np.mean(np.full(10000, 0.1)) == 0.09999999999999999)
        val kept = DoubleArray(10_000) { 0.1 }
        var running = 0.0
        for (x in kept) running += x
        assertEquals(1000.0000000001588, running)
        assertEquals(0.09999999999999999, numpyMean(kept))
    }

    @Test
    fun badInputIsRefused() {
        assertFailsWith<CoreError> { summarize(DoubleArray(0), 0.1) }
        assertFailsWith<CoreError> { summarize(doubleArrayOf(1.0), 0.5) }
        assertFailsWith<CoreError> { summarize(doubleArrayOf(1.0), -0.1) }
        assertFailsWith<CoreError> { summarize(doubleArrayOf(1.0), Double.NaN) }
        assertFailsWith<CoreError> { summarize(doubleArrayOf(1.0, Double.NaN), 0.0) }
    }

    @Test
    fun toMapHasTheSchemaKeysInOrder() {
        assertEquals(listOf("mean_ms", "p50_ms", "p90_ms", "min_ms", "max_ms", "samples"), summarize(doubleArrayOf(1.0), 0.0).toMap().keys.toList())
    }
}
