/*
 * The greedy decoder over scripted engines: the contract read from the signatures, the loop (EOS, the
 * length limit, what is fed back), the argmax rule, and every broken contract refused in one line.
 * Parity with Python's LiteRT runtime on recorded logits is tests/test_android_core.py.
 */
package dev.tfmobile.core.decode

import dev.tfmobile.core.CoreError
import dev.tfmobile.core.engine.Signature
import dev.tfmobile.core.engine.Tensor
import dev.tfmobile.core.testing.ScriptedEngine
import dev.tfmobile.core.testing.StepClock
import dev.tfmobile.core.testing.emitting
import dev.tfmobile.core.testing.exportSignatures
import dev.tfmobile.core.testing.f32
import dev.tfmobile.core.testing.i32
import dev.tfmobile.core.testing.oneHot
import kotlin.test.Test
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNull
import kotlin.test.assertTrue

private const val BOS = 2
private const val EOS = 3

class DecoderContractTest {
    @Test
    fun shapesAndNamesComeFromTheSignatures() {
        val d = Decoder(emitting(), BOS)
        assertEquals(4, d.maxSourceLen)
        assertEquals(10, d.vocabSize)
        assertEquals(6, d.maxTargetLen)
        assertEquals(setOf("cache_0_0", "cache_0_1"), d.cacheSpecs.keys)
        assertEquals(listOf("source_mask", "cross_k_0", "cross_v_0"), d.encoderFeeds)
        assertTrue(d.hasTranslate)
    }

    @Test
    fun translateIsOptional() {
        val d = Decoder(emitting(signatures = exportSignatures(translate = false)), BOS)
        assertEquals(false, d.hasTranslate)
        assertNull(d.maxTargetLen)
        assertNull(d.translate(intArrayOf(5, EOS)))
    }

    private fun refused(phrase: String, edit: (MutableMap<String, Signature>) -> Unit) {
        val sigs = exportSignatures()
        edit(sigs)
        val e = assertFailsWith<CoreError> { Decoder(ScriptedEngine(sigs) { _, _, _ -> FloatArray(10) }, BOS) }
        assertTrue(phrase in e.message!!, "'${e.message}' should say '$phrase'")
        assertTrue('\n' !in e.message!!)
    }

    private fun MutableMap<String, Signature>.step(
        inputs: (MutableMap<String, dev.tfmobile.core.engine.TensorSpec>) -> Unit = {},
        outputs: (MutableMap<String, dev.tfmobile.core.engine.TensorSpec>) -> Unit = {},
    ) {
        val s = getValue("decode_step")
        this["decode_step"] = Signature(LinkedHashMap(s.inputs).also(inputs), LinkedHashMap(s.outputs).also(outputs))
    }

    @Test
    fun aMissingSignatureIsRefused() = refused("lacks the signature(s) decode_step (it has: encode, translate)") { it.remove("decode_step") }

    @Test
    fun encodeMustTakeSourceIdsAlone() = refused("encode must take one input source_ids") {
        it["encode"] = Signature(mapOf("source_ids" to i32(1, 4), "extra" to i32(1)), it.getValue("encode").outputs)
    }

    @Test
    fun encodeMustTakeARankTwoSource() = refused("source_ids [1, S]") {
        it["encode"] = Signature(mapOf("source_ids" to i32(4)), it.getValue("encode").outputs)
    }

    @Test
    fun decodeStepNeedsToken() = refused("decode_step has no input 'token'") { s -> s.step(inputs = { it.remove("token") }) }

    @Test
    fun decodeStepNeedsPosition() = refused("decode_step has no input 'position'") { s -> s.step(inputs = { it.remove("position") }) }

    @Test
    fun decodeStepNeedsLogits() = refused("decode_step has no output 'logits'") { s -> s.step(outputs = { it.remove("logits") }) }

    @Test
    fun anInputNothingFeedsIsRefused() = refused("input(s) cache_9 are neither encode outputs nor decode_step outputs") { s ->
        s.step(inputs = { it["cache_9"] = f32(1, 3) })
    }

    @Test
    fun aCacheRenamedOnTheWayOutIsRefused() = refused("cache_0_1 are neither") { s ->
        s.step(outputs = { it["cache_0_1_new"] = it.remove("cache_0_1")!! })
    }

    @Test
    fun aCacheThatChangesShapeIsRefused() = refused("cache_0_0 goes in as [1, 2, 6, 3] float32 but comes back as [1, 2, 7, 3] float32") { s ->
        s.step(outputs = { it["cache_0_0"] = f32(1, 2, 7, 3) })
    }

    @Test
    fun anEncoderFeedOfAnotherShapeIsRefused() = refused("encode gives source_mask as [1, 4] float32 but decode_step takes [1, 5] float32") { s ->
        s.step(inputs = { it["source_mask"] = f32(1, 5) })
    }

    @Test
    fun aTokenOfSeveralValuesIsRefused() = refused("'token' must hold one value") { s -> s.step(inputs = { it["token"] = i32(1, 2) }) }

    @Test
    fun translateMustGiveTargetLength() = refused("translate must map source_ids to target_ids and target_length") {
        it["translate"] = Signature(mapOf("source_ids" to i32(1, 4)), mapOf("target_ids" to i32(1, 6)))
    }
}

class DecoderLoopTest {
    @Test
    fun greedyStopsAtEosAndLeavesItOut() {
        val engine = emitting(7, 5, EOS, 8)
        assertContentEquals(intArrayOf(7, 5), Decoder(engine, BOS).greedy(intArrayOf(6, EOS), limit = 6, eos = EOS))
        assertEquals(3, engine.step)
    }

    @Test
    fun greedyStopsAtTheLengthLimit() {
        val engine = ScriptedEngine(exportSignatures()) { _, _, _ -> oneHot(10, 9) }
        assertContentEquals(intArrayOf(9, 9, 9), Decoder(engine, BOS).greedy(intArrayOf(6, EOS), limit = 3, eos = EOS))
        assertEquals(3, engine.step)
    }

    @Test
    fun aZeroLimitRunsNoStep() {
        val engine = emitting(7)
        assertContentEquals(IntArray(0), Decoder(engine, BOS).greedy(intArrayOf(EOS), 0, EOS))
        assertEquals(0, engine.step)
    }

    @Test
    fun eachStepIsFedTheTokenItChoseAndItsPosition() {
        // the engine also fails unless the caches of the step before and encode's outputs come back by name
        val engine = emitting(7, 5, 6, EOS)
        Decoder(engine, BOS).greedy(intArrayOf(4, 4, EOS), 6, EOS)
        assertEquals(listOf(BOS, 7, 5, 6), engine.fedTokens)
        assertEquals(listOf(0, 1, 2, 3), engine.fedPositions)
    }

    @Test
    fun theSourceIsPaddedToS() {
        val engine = emitting()
        Decoder(engine, BOS, pad = 0).greedy(intArrayOf(5, EOS), 4, EOS)
        assertContentEquals(intArrayOf(5, EOS, 0, 0), engine.fedSources.single())
    }

    @Test
    fun aSourceLongerThanSIsRefused() {
        val e = assertFailsWith<CoreError> { Decoder(emitting(), BOS).greedy(intArrayOf(4, 5, 6, 7, EOS), 4, EOS) }
        assertEquals("the source has 5 ids but encode takes at most S=4", e.message)
    }

    @Test
    fun argmaxTakesTheFirstOfEqualMaxima() {
        val logits = floatArrayOf(0f, 2f, 5f, 1f, 5f, 5f, 0f, 0f, 0f, 0f)
        assertEquals(2, Decoder.argmax(Tensor(intArrayOf(1, 10), floats = logits), 10))
    }

    @Test
    fun argmaxTakesTheFirstNaNLikeNumpy() {
        val logits = floatArrayOf(0f, 9f, Float.NaN, 1f, Float.NaN, 0f, 0f, 0f, 0f, 0f)
        assertEquals(2, Decoder.argmax(Tensor(intArrayOf(1, 10), floats = logits), 10))
    }

    @Test
    fun argmaxReadsTheFirstRowOnly() {
        val logits = FloatArray(20) { if (it == 13) 9f else 0f }  // [2, 10]: the max is in row 2
        assertEquals(0, Decoder.argmax(Tensor(intArrayOf(2, 10), floats = logits), 10))
    }

    @Test
    fun aStepThatReturnsNoCacheIsAnError() {
        val sigs = exportSignatures()
        val base = ScriptedEngine(sigs) { _, _, _ -> oneHot(10, 5) }
        val lossy = object : dev.tfmobile.core.engine.Engine by base {
            override fun run(signature: String, inputs: Map<String, Tensor>) =
                base.run(signature, inputs).let { if (signature == "decode_step") it - "cache_0_1" else it }
        }
        val e = assertFailsWith<CoreError> { Decoder(lossy, BOS).greedy(intArrayOf(EOS), 2, EOS) }
        assertTrue("decode_step returned no cache 'cache_0_1'" in e.message!!)
    }

    @Test
    fun translateReturnsTargetIdsUpToTargetLength() {
        val engine = ScriptedEngine(exportSignatures(), translateIds = intArrayOf(8, 4, 6)) { _, _, _ -> FloatArray(10) }
        assertContentEquals(intArrayOf(8, 4, 6), Decoder(engine, BOS).translate(intArrayOf(5, EOS)))
    }

    @Test
    fun runHatTimesEncodeEachStepAndTheWhole() {
        val clock = StepClock(1_000)
        val engine = ScriptedEngine(exportSignatures(), clock, costNs = { sig, step -> if (sig == "encode") 500 else 10L * (step + 1) }) { _, _, _ ->
            oneHot(10, 7)
        }
        val run = Decoder(engine, BOS).runHat(intArrayOf(5, 6, EOS), 4, clock)
        assertEquals(500, run.encodeNs)
        assertContentEquals(longArrayOf(10, 20, 30, 40), run.stepNs)
        assertEquals(600, run.totalNs)
        assertContentEquals(intArrayOf(BOS, 7, 7, 7), run.tokens)  // the tokens fed, from BOS, for exactly 4 steps
    }

    @Test
    fun theBenchSentenceIsDeterministicOrdinaryAndPadded() {
        val d = Decoder(emitting(signatures = exportSignatures(s = 40, v = 9)), BOS)
        val ids = d.sourceIds(30)
        assertContentEquals(ids, d.sourceIds(30))
        assertTrue(ids.take(30).all { it in 4 until 9 })
        assertEquals(setOf(4, 5, 6, 7, 8), ids.take(30).toSet())
        assertTrue(ids.drop(30).all { it == 0 })
        assertTrue(!d.sourceIds(30, seed = 1).contentEquals(ids))
        assertFailsWith<CoreError> { d.sourceIds(41) }
        assertFailsWith<CoreError> { d.sourceIds(0) }
    }
}
