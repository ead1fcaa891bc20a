/*
 * Delegate configs (TFLiteSettings JSON): each kind mapped to accelerator, threads and precision, and
 * what tflite_settings.schema.json refuses refused here too. Every shipped config is parsed in
 * tests/test_android_core.py.
 */
package dev.tfmobile.core.delegate

import dev.tfmobile.core.CoreError
import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertTrue

class DelegateConfigTest {
    @Test
    fun xnnpackIsTheCpuWithItsThreads() {
        val d = DelegateConfig.parse("""{"delegate": "XNNPACK", "xnnpack_settings": {"num_threads": 4}, "cpu_settings": {"num_threads": 4}}""", "pixel8-cpu4")
        assertEquals(listOf("pixel8-cpu4", "XNNPACK", "CPU", "FP32"), listOf(d.name, d.delegate, d.accelerator, d.precision))
        assertEquals(4, d.threads)
        assertTrue(d.useXnnpack)
        assertFalse(d.sustainedSpeed)
    }

    @Test
    fun xnnpackThreadsComeBeforeCpuThreads() {
        val d = DelegateConfig.parse("""{"delegate": "XNNPACK", "cpu_settings": {"num_threads": 2}, "xnnpack_settings": {"num_threads": 3}}""", "x")
        assertEquals(3, d.threads)
    }

    @Test
    fun noneIsTheCpuWithoutXnnpack() {
        val d = DelegateConfig.parse("""{"delegate": "NONE", "cpu_settings": {"num_threads": 2}}""", "builtin")
        assertEquals("CPU", d.accelerator)
        assertEquals(2, d.threads)
        assertFalse(d.useXnnpack)
    }

    @Test
    fun withoutThreadsTheRuntimeChooses() {
        assertEquals(-1, DelegateConfig.parse("""{"delegate": "XNNPACK"}""", "x").threads)
        assertEquals(-1, DelegateConfig.parse("""{"delegate": "XNNPACK", "cpu_settings": {"num_threads": -1}}""", "x").threads)
    }

    @Test
    fun gpuFp16IsTheGpuAllowedToLosePrecision() {
        val d = DelegateConfig.parse("""{"delegate": "GPU", "gpu_settings": {"is_precision_loss_allowed": true,
            "inference_preference": "GPU_INFERENCE_PREFERENCE_SUSTAINED_SPEED"}}""", "pixel8-gpu-fp16")
        assertEquals(listOf("GPU", "GPU", "FP16"), listOf(d.delegate, d.accelerator, d.precision))
        assertTrue(d.sustainedSpeed)
        assertFalse(d.useXnnpack)
        assertEquals(setOf("delegate", "gpu_settings"), d.settings.keys)
    }

    @Test
    fun gpuWithoutPrecisionLossIsFp32() {
        val d = DelegateConfig.parse("""{"delegate": "GPU", "gpu_settings": {"inference_preference": "GPU_INFERENCE_PREFERENCE_FAST_SINGLE_ANSWER"}}""", "g")
        assertEquals("FP32", d.precision)
        assertFalse(d.sustainedSpeed)
    }

    @Test
    fun integralFloatsAreIntegersAsInJsonSchema() {
        assertEquals(2, DelegateConfig.parse("""{"delegate": "NONE", "cpu_settings": {"num_threads": 2.0}}""", "x").threads)
    }

    private fun refused(text: String, phrase: String) {
        val e = assertFailsWith<CoreError> { DelegateConfig.parse(text, "bad") }
        assertTrue(phrase in e.message!!, "'${e.message}' should say '$phrase'")
        assertTrue(e.message!!.startsWith("invalid delegate config bad: ") || e.message!!.startsWith("delegate config bad: "), e.message)
        assertTrue('\n' !in e.message!!)
    }

    @Test
    fun unknownKeysAreRefusedAtEveryLevel() {
        refused("""{"delegate": "XNNPACK", "num_threads": 4}""", "'num_threads' was unexpected")
        refused("""{"delegate": "XNNPACK", "xnnpack_settings": {"threads": 4}}""", "at $.xnnpack_settings")
        refused("""{"delegate": "GPU", "gpu_settings": {"precision": "FP16"}}""", "'precision' was unexpected")
    }

    @Test
    fun threadsMustBePositiveOrMinusOne() {
        refused("""{"delegate": "XNNPACK", "xnnpack_settings": {"num_threads": 0}}""", "0 is not valid")
        refused("""{"delegate": "XNNPACK", "cpu_settings": {"num_threads": -2}}""", "at $.cpu_settings.num_threads")
        refused("""{"delegate": "XNNPACK", "cpu_settings": {"num_threads": "4"}}""", "is not of type 'integer'")
        refused("""{"delegate": "XNNPACK", "cpu_settings": {"num_threads": true}}""", "is not of type 'integer'")
        refused("""{"delegate": "XNNPACK", "cpu_settings": {"num_threads": 1.5}}""", "is not of type 'integer'")
    }

    @Test
    fun theDelegateIsRequiredAndKnown() {
        refused("""{"cpu_settings": {"num_threads": 1}}""", "'delegate' is a required property")
        refused("""{"delegate": "NNAPI"}""", "\"NNAPI\" is not one of NONE, XNNPACK, GPU")
        refused("""["XNNPACK"]""", "expected an object, got array")
    }

    @Test
    fun sectionsBelongToTheirDelegate() {
        refused("""{"delegate": "GPU"}""", "'gpu_settings' is a required property")
        refused("""{"delegate": "XNNPACK", "gpu_settings": {}}""", "gpu_settings is only for delegate GPU")
        refused("""{"delegate": "NONE", "xnnpack_settings": {"num_threads": 1}}""", "xnnpack_settings is only for delegate XNNPACK")
        refused("""{"delegate": "GPU", "gpu_settings": {"is_precision_loss_allowed": "yes"}}""", "is not of type 'boolean'")
        refused("""{"delegate": "GPU", "gpu_settings": {"inference_preference": "FAST"}}""", "is not one of GPU_INFERENCE_PREFERENCE_FAST_SINGLE_ANSWER")
        refused("""{"delegate": "XNNPACK", "cpu_settings": 4}""", "expected an object, got integer")
    }

    @Test
    fun malformedJsonIsOneLine() = refused("{\"delegate\": \"XNNPACK\",}", "malformed JSON: expected a property name")
}
