/*
 * model_meta.json: the fields read, the export's target-length rule in both of its regimes, and
 * metadata of another format, with keys missing or of the wrong type, refused in one line. The rule's
 * parity with Python on a real export is tests/test_android_core.py.
 */
package dev.tfmobile.core.meta

import dev.tfmobile.core.CoreError
import dev.tfmobile.core.json.Json
import java.io.File
import java.nio.file.Files
import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNull
import kotlin.test.assertTrue

/** The metadata `tfmobile export` writes (trimmed of what the core does not read), with `edit` applied. */
fun metaText(edit: (MutableMap<String, Any?>) -> Unit = {}): String {
    val meta = linkedMapOf<String, Any?>(
        "format" to "tfmobile-litert/1", "model_file" to "model.tflite", "model_bytes" to 1234, "quantization" to "none",
        "max_source_len" to 16, "max_target_len" to 20,
        "translate_length_limit" to linkedMapOf("ratio" to 1.5, "extra" to 10, "model_max_target_len" to 24, "rule" to "..."),
        "special_ids" to linkedMapOf("pad" to 0, "unk" to 1, "bos" to 2, "eos" to 3),
        "tokenizers" to linkedMapOf("joint" to "spm.model"),
        "source_config" to linkedMapOf("model" to linkedMapOf("max_target_len" to 24)),
    )
    edit(meta)
    return Json.write(meta)
}

@Suppress("UNCHECKED_CAST")
private fun MutableMap<String, Any?>.sub(key: String) = this[key] as MutableMap<String, Any?>

class ModelMetaTest {
    @Test
    fun fieldsAreRead() {
        val m = ModelMeta.parse(metaText())
        assertEquals("model.tflite", m.modelFile)
        assertEquals("none", m.quantization)
        assertEquals(16 to 20, m.maxSourceLen to m.maxTargetLen)
        assertEquals(Triple(2, 3, 0), Triple(m.bos, m.eos, m.pad))
        assertEquals("spm.model", m.sourceTokenizer)
        assertEquals("spm.model", m.targetTokenizer)
        assertNull(m.exportDir)
    }

    @Test
    fun separateVocabulariesNameBothFiles() {
        val m = ModelMeta.parse(metaText { it["tokenizers"] = linkedMapOf("source" to "spm.src.model", "target" to "spm.tgt.model") })
        assertEquals("spm.src.model" to "spm.tgt.model", m.sourceTokenizer to m.targetTokenizer)
    }

    @Test
    fun anExportWithoutTokenizersHasNone() {
        val m = ModelMeta.parse(metaText { it["tokenizers"] = linkedMapOf<String, Any?>() })
        assertNull(m.sourceTokenizer)
        assertNull(m.targetTokenizer)
    }

    @Test
    fun theLimitIsTheRatioRuleThenTheTargetShape() {
        val m = ModelMeta.parse(metaText())
        // min(floor(1.5 n) + 10, T = 20, 24 - 1)
        assertEquals(listOf(11, 13, 14, 16, 17, 19, 20, 20), (1..8).map { m.targetLengthLimit(it) })
    }

    @Test
    fun thePositionTableCapsTheLimitWhenItIsSmallerThanT() {
        val m = ModelMeta.parse(metaText { it.sub("translate_length_limit")["model_max_target_len"] = 15 })
        assertEquals(listOf(11, 13, 14, 14, 14), (1..5).map { m.targetLengthLimit(it) })
    }

    @Test
    fun thePositionTableFallsBackToTheSourceConfig() {
        // as LiteTranslator.length_limit: rule.get("model_max_target_len") or source_config.model.max_target_len
        val m = ModelMeta.parse(metaText {
            it.sub("translate_length_limit").remove("model_max_target_len")
            it.sub("source_config").sub("model")["max_target_len"] = 13
        })
        assertEquals(13, m.modelMaxTargetLen)
        assertEquals(12, m.targetLengthLimit(16))
        val nullRule = ModelMeta.parse(metaText { it.sub("translate_length_limit")["model_max_target_len"] = null })
        assertEquals(24, nullRule.modelMaxTargetLen)
    }

    @Test
    fun aRatioJustBelowAnIntegerProductStillFloorsToIt() {
        val m = ModelMeta.parse(metaText {
            it["max_target_len"] = 200
            it.sub("translate_length_limit")["ratio"] = 0.29
            it.sub("translate_length_limit")["model_max_target_len"] = 500
        })
        assertEquals(29 + 10, m.targetLengthLimit(100))  // 0.29 * 100 = 28.999999999999996 in doubles
    }

    @Test
    fun aSourceHasAtLeastItsEos() {
        assertFailsWith<CoreError> { ModelMeta.parse(metaText()).targetLengthLimit(0) }
    }

    private fun refused(phrase: String, text: String) {
        val e = assertFailsWith<CoreError> { ModelMeta.parse(text, "exp/model_meta.json") }
        assertTrue(phrase in e.message!!, "'${e.message}' should say '$phrase'")
        assertTrue('\n' !in e.message!!)
    }

    @Test
    fun metadataOfAnotherFormatIsRefused() {
        refused("exp/model_meta.json is not tfmobile export metadata (format tfmobile-litert/1); export the model again",
                metaText { it["format"] = "tfmobile-litert/0" })
        refused("is not tfmobile export metadata", "[1, 2]")
        refused("is not tfmobile export metadata", metaText { it.remove("format") })
    }

    @Test
    fun malformedJsonIsRefused() = refused("exp/model_meta.json is not valid JSON (malformed JSON: ", metaText().dropLast(3))

    @Test
    fun missingKeysAreListed() {
        refused("exp/model_meta.json lacks special_ids, translate_length_limit; export the model again",
                metaText { it.remove("special_ids"); it.remove("translate_length_limit") })
    }

    @Test
    fun fieldsOfTheWrongTypeAreRefused() {
        refused("max_source_len must be an integer, got \"16\"", metaText { it["max_source_len"] = "16" })
        refused("max_target_len must be a positive integer, got 0", metaText { it["max_target_len"] = 0 })
        refused("special_ids.eos must be an integer, got null", metaText { it.sub("special_ids")["eos"] = null })
        refused("special_ids must be an object, got array", metaText { it["special_ids"] = listOf(0, 1, 2, 3) })
        refused("tokenizers must be {joint} or {source, target}, got {source}", metaText {
            it["tokenizers"] = linkedMapOf("source" to "spm.src.model")
        })
        refused("translate_length_limit.ratio must be a positive number", metaText { it.sub("translate_length_limit")["ratio"] = "3/2" })
        refused("records no model_max_target_len", metaText {
            it.sub("translate_length_limit").remove("model_max_target_len"); it.remove("source_config")
        })
        refused("quantization must be a string or null", metaText { it["quantization"] = 8 })
    }

    @Test
    fun readFindsTheMetadataFromTheDirectoryTheModelOrTheFile() {
        val dir = Files.createTempDirectory("meta").toFile()
        try {
            File(dir, "model_meta.json").writeText(metaText())
            for (path in listOf(dir, File(dir, "model.tflite"), File(dir, "model_meta.json"))) {
                val m = ModelMeta.read(path)
                assertEquals(dir.absoluteFile, m.exportDir!!.absoluteFile)
                assertEquals(File(dir, "model.tflite").absoluteFile, m.modelPath!!.absoluteFile)
            }
            val e = assertFailsWith<CoreError> { ModelMeta.read(File(dir, "nothing")) }
            assertEquals("${File(dir, "nothing")} is not an export directory (no model_meta.json); make one with `tfmobile export`", e.message)
        } finally {
            dir.deleteRecursively()
        }
    }
}
