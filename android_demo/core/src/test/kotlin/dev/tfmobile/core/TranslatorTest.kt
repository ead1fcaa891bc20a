/*
 * Text to text over a scripted engine and a tiny SentencePiece vocabulary: the source is the ids then
 * EOS, the loop stops at EOS or the export's length limit, PAD and BOS never reach the text, and a
 * sentence too long for S is refused with the limit. Parity on a real export is tests/test_android_core.py.
 */
package dev.tfmobile.core

import dev.tfmobile.core.decode.Decoder
import dev.tfmobile.core.meta.ModelMeta
import dev.tfmobile.core.meta.metaText
import dev.tfmobile.core.testing.ScriptedEngine
import dev.tfmobile.core.testing.StepClock
import dev.tfmobile.core.testing.emitting
import dev.tfmobile.core.testing.exportSignatures
import dev.tfmobile.core.testing.oneHot
import dev.tfmobile.core.tokenizer.Piece
import dev.tfmobile.core.tokenizer.PieceType
import dev.tfmobile.core.tokenizer.SentencePieceModel
import dev.tfmobile.core.tokenizer.SentencePieceTokenizer
import java.io.File
import java.nio.file.Files
import kotlin.test.Test
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

/** ids 0 <pad>, 1 <unk>, 2 <s>, 3 </s>, 4 ▁, 5 ▁hola, 6 ▁mundo, 7 ▁hello, 8 ▁world, 9 a. */
private val tokenizer = SentencePieceTokenizer(SentencePieceModel(listOf(
    Piece("<pad>", 0f, PieceType.CONTROL), Piece("<unk>", 0f, PieceType.UNKNOWN), Piece("<s>", 0f, PieceType.CONTROL),
    Piece("</s>", 0f, PieceType.CONTROL), Piece("\u2581", -3f, PieceType.NORMAL), Piece("\u2581hola", -1f, PieceType.NORMAL),
    Piece("\u2581mundo", -1f, PieceType.NORMAL), Piece("\u2581hello", -1f, PieceType.NORMAL), Piece("\u2581world", -1f, PieceType.NORMAL),
    Piece("a", -2f, PieceType.NORMAL),
)))

private fun meta(edit: (MutableMap<String, Any?>) -> Unit = {}) = ModelMeta.parse(metaText {
    it["max_source_len"] = 4
    it["max_target_len"] = 6
    edit(it)
})

class TranslatorTest {
    @Test
    fun textInTextOut() {
        val engine = emitting(7, 8, 3)
        val r = Translator(meta(), tokenizer, Decoder(engine, 2)).translate("hola mundo")
        assertContentEquals(intArrayOf(5, 6, 3), r.sourceIds)
        assertContentEquals(intArrayOf(5, 6, 3, 0), engine.fedSources.single())
        assertContentEquals(intArrayOf(7, 8), r.ids)
        assertEquals("hello world", r.text)
    }

    @Test
    fun padAndBosNeverReachTheText() {
        val r = Translator(meta(), tokenizer, Decoder(emitting(7, 0, 2, 8, 3), 2)).translate("hola")
        assertContentEquals(intArrayOf(7, 0, 2, 8), r.ids)
        assertEquals("hello world", r.text)
    }

    @Test
    fun separateVocabulariesEncodeWithTheSourceAndDecodeWithTheTarget() {
        val english = SentencePieceTokenizer(SentencePieceModel(listOf(
            Piece("<pad>", 0f, PieceType.CONTROL), Piece("<unk>", 0f, PieceType.UNKNOWN), Piece("<s>", 0f, PieceType.CONTROL),
            Piece("</s>", 0f, PieceType.CONTROL), Piece("\u2581", -3f, PieceType.NORMAL), Piece("\u2581one", -1f, PieceType.NORMAL),
            Piece("\u2581two", -1f, PieceType.NORMAL),
        )))
        val r = Translator(meta(), tokenizer, english, Decoder(emitting(5, 9, 6, 3), 2)).translate("hola")
        assertContentEquals(intArrayOf(5, 3), r.sourceIds)
        assertContentEquals(intArrayOf(5, 9, 6), r.ids)
        assertEquals("one two", r.text)  // 9 is outside the target vocabulary: skipped, as Tokenizer.decode does
    }

    @Test
    fun theLoopStopsAtTheExportsLengthLimit() {
        // ratio 1, extra 0: a source of 3 ids (EOS included) may have 3 target tokens
        val m = meta { m -> @Suppress("UNCHECKED_CAST") (m["translate_length_limit"] as MutableMap<String, Any?>).let { it["ratio"] = 1.0; it["extra"] = 0 } }
        val engine = ScriptedEngine(exportSignatures()) { _, _, _ -> oneHot(10, 9) }
        val r = Translator(m, tokenizer, Decoder(engine, 2)).translate("hola mundo")
        assertContentEquals(intArrayOf(9, 9, 9), r.ids)
        assertEquals(3, engine.step)
        assertEquals("aaa", r.text)
    }

    @Test
    fun aSentenceTooLongIsRefusedWithTheLimit() {
        val e = assertFailsWith<CoreError> { Translator(meta(), tokenizer, Decoder(emitting(), 2)).translate("hola mundo hola mundo") }
        assertEquals("the sentence has 4 tokens but at most 3 fit the exported model (max_source_len 4); split it, or export " +
                     "with a larger --max-source-len", e.message)
    }

    @Test
    fun elapsedIsTextToTextOnTheClock() {
        val clock = StepClock()
        val engine = ScriptedEngine(exportSignatures(), clock, costNs = { _, _ -> 250_000L }) { step, _, _ -> oneHot(10, if (step < 2) 7 else 3) }
        assertEquals(1.0, Translator(meta(), tokenizer, Decoder(engine, 2)).translate("hola", clock).elapsedMs)  // encode + 3 steps
    }

    @Test
    fun metadataThatDisagreesWithTheModelIsRefused() {
        val e = assertFailsWith<CoreError> { Translator(meta { it["max_source_len"] = 16 }, tokenizer, Decoder(emitting(), 2)) }
        assertTrue("model_meta.json says max_source_len 16 but the model's encode takes S=4" in e.message!!)
        assertFailsWith<CoreError> { Translator(meta(), tokenizer, Decoder(emitting(), bos = 1)) }
    }

    @Test
    fun openNeedsTheExportsTokenizers() {
        val dir = Files.createTempDirectory("export").toFile()
        try {
            File(dir, "model_meta.json").writeText(metaText())
            val missing = assertFailsWith<CoreError> { Translator.open(ModelMeta.read(dir), emitting()) }
            assertTrue("lacks its tokenizer spm.model; copy the whole export directory" in missing.message!!)
            File(dir, "model_meta.json").writeText(metaText { it["tokenizers"] = linkedMapOf<String, Any?>() })
            val none = assertFailsWith<CoreError> { Translator.open(ModelMeta.read(dir), emitting()) }
            assertTrue("was exported without a tokenizer" in none.message!!)
            File(dir, "model_meta.json").writeText(metaText())
            File(dir, "spm.model").writeBytes(byteArrayOf(0x0A, 0x10, 0x01))
            assertFailsWith<CoreError> { Translator.open(ModelMeta.read(dir), emitting()) }  // a truncated .model
        } finally {
            dir.deleteRecursively()
        }
    }
}
