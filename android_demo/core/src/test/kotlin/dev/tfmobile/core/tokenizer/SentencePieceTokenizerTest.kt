/*
 * The tokenizer's rules, each on a tiny model written here as protobuf bytes (no charsmap, so the
 * normalizer only handles spaces). Parity with Python sentencepiece on real models is
 * tests/test_android_core.py.
 */
package dev.tfmobile.core.tokenizer

import java.io.ByteArrayOutputStream
import kotlin.test.Test
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertTrue

/** Writes a ModelProto: pieces (text, score, type), a trainer_spec and a normalizer_spec. */
private class ModelWriter {
    private val out = ByteArrayOutputStream()
    private val trainer = ByteArrayOutputStream()
    private val normalizer = ByteArrayOutputStream()

    fun piece(text: String, score: Float, type: PieceType = PieceType.NORMAL) = apply {
        val p = ByteArrayOutputStream()
        p.bytesField(1, text.encodeToByteArray())
        p.tag(2, 5); p.fixed32(score.toRawBits())
        if (type != PieceType.NORMAL) { p.tag(3, 0); p.varint(type.number.toLong()) }
        out.bytesField(1, p.toByteArray())
    }

    fun byteFallback() = apply { trainer.tag(35, 0); trainer.varint(1) }
    fun noDummyPrefix() = apply { normalizer.tag(3, 0); normalizer.varint(0) }
    fun unknownField() = apply { trainer.tag(7, 2); trainer.varint(3); trainer.write(byteArrayOf(1, 2, 3)) }

    fun build(): SentencePieceModel {
        val all = ByteArrayOutputStream()
        all.write(out.toByteArray())
        all.bytesField(2, trainer.toByteArray())
        all.bytesField(3, normalizer.toByteArray())
        return SentencePieceModel.parse(all.toByteArray())
    }

    private fun ByteArrayOutputStream.tag(field: Int, wire: Int) = varint((field shl 3 or wire).toLong())
    private fun ByteArrayOutputStream.varint(v: Long) {
        var x = v
        while (x >= 0x80) { write(((x and 0x7F) or 0x80).toInt()); x = x ushr 7 }
        write(x.toInt())
    }
    private fun ByteArrayOutputStream.fixed32(v: Int) { for (i in 0 until 4) write((v ushr (8 * i)) and 0xFF) }
    private fun ByteArrayOutputStream.bytesField(field: Int, b: ByteArray) { tag(field, 2); varint(b.size.toLong()); write(b) }
}

private const val WS = "\u2581"

/** ids: 0 <unk>, 1 <s>, 2 ▁, 3 a, 4 b, 5 ab, 6 ▁a, 7 ▁b. */
private fun basicModel(writer: ModelWriter = ModelWriter()) = writer
    .piece("<unk>", 0f, PieceType.UNKNOWN).piece("<s>", 0f, PieceType.CONTROL)
    .piece(WS, -1f).piece("a", -1f).piece("b", -1f).piece("ab", -2f).piece("${WS}a", -2f).piece("${WS}b", -5f)

class SentencePieceModelTest {
    @Test
    fun piecesScoresAndTypesAreRead() {
        val model = basicModel().build()
        assertEquals(8, model.pieces.size)
        assertEquals("ab", model.pieces[5].text)
        assertEquals(-2f, model.pieces[5].score)
        assertEquals(PieceType.UNKNOWN, model.pieces[0].type)
        assertEquals(PieceType.NORMAL, model.pieces[3].type)
    }

    @Test
    fun absentFieldsTakeTheProtoDefaults() {
        val model = basicModel().build()
        assertTrue(model.addDummyPrefix)
        assertTrue(model.removeExtraWhitespaces)
        assertFalse(model.byteFallback)
        assertEquals(" \u2047 ", model.unkSurface)
    }

    @Test
    fun unknownFieldsAreSkipped() {
        assertEquals(8, basicModel(ModelWriter().unknownField()).build().pieces.size)
    }

    @Test
    fun truncatedFileIsAnError() {
        assertFailsWith<ModelFormatException> { SentencePieceModel.parse(byteArrayOf(0x0A, 0x10, 0x01)) }
    }
}

class SentencePieceTokenizerTest {
    private val tokenizer = SentencePieceTokenizer(basicModel().build())

    @Test
    fun emptyAndBlankTextGiveNoIds() {
        assertContentEquals(IntArray(0), tokenizer.encode(""))
        assertContentEquals(IntArray(0), tokenizer.encode("   "))
    }

    @Test
    fun spacesAreTrimmedCollapsedAndEscaped() {
        assertEquals("${WS}a${WS}b", tokenizer.normalize("  a   b "))
    }

    @Test
    fun tiesGoToTheEarliestStart() {
        // "▁ab": ▁a+b and ▁+ab both score -3 at the end; at "▁a", ▁a (-2) ties ▁+a (-2). The earliest
        // start wins each tie: ▁ then ab (the end node's first candidate came from start 3, not 4).
        assertContentEquals(intArrayOf(2, 5), tokenizer.encode("ab"))
    }

    @Test
    fun higherScoreWins() {
        assertContentEquals(intArrayOf(2, 4), tokenizer.encode("b"))  // ▁ + b (-2) beats ▁b (-5)
        assertContentEquals(intArrayOf(6), tokenizer.encode("a"))  // ▁a ties ▁ + a at -2: start 0 wins
    }

    @Test
    fun consecutiveUnknownCharactersMergeIntoOneUnk() {
        assertContentEquals(intArrayOf(2, 0, 3), tokenizer.encode("xyéa"))
        assertContentEquals(intArrayOf(2, 0, 2, 0), tokenizer.encode("xy z"))
    }

    @Test
    fun byteFallbackEmitsTheUtf8BytesOfUnknownCharacters() {
        val writer = ModelWriter().byteFallback()
        basicModel(writer)
        for (b in 0 until 256) writer.piece("<0x%02X>".format(b), 0f, PieceType.BYTE)
        val bytes = SentencePieceTokenizer(writer.build())
        val byteId = { b: Int -> 8 + b }
        assertContentEquals(intArrayOf(2, byteId(0xC3), byteId(0xA9), byteId(0x78), 3), bytes.encode("éxa"))
        assertEquals("éxa", bytes.decode(bytes.encode("éxa")))
    }

    @Test
    fun userDefinedPiecesAlwaysWin() {
        val model = basicModel().piece("ba", 0f, PieceType.USER_DEFINED).build()
        val t = SentencePieceTokenizer(model)
        assertContentEquals(intArrayOf(2, 8, 3), t.encode("baa"))
    }

    @Test
    fun unusedPiecesAreNeverChosen() {
        val model = basicModel().piece("aa", 10f, PieceType.UNUSED).build()
        assertContentEquals(intArrayOf(6, 3), SentencePieceTokenizer(model).encode("aa"))
    }

    @Test
    fun decodeDropsTheDummyPrefixAndControlIds() {
        assertEquals("ab a", tokenizer.decode(intArrayOf(1, 2, 5, 6)))
    }

    @Test
    fun decodeWritesUnknownAsItsSurface() {
        assertEquals("a \u2047 b", tokenizer.decode(intArrayOf(6, 0, 4)))
    }

    @Test
    fun decodeMapsMalformedBytesToReplacementCharacters() {
        val writer = ModelWriter().byteFallback()
        basicModel(writer)
        for (b in 0 until 256) writer.piece("<0x%02X>".format(b), 0f, PieceType.BYTE)
        val bytes = SentencePieceTokenizer(writer.build())
        assertEquals("\uFFFD\uFFFDa", bytes.decode(intArrayOf(8 + 0xC3, 8 + 0xFF, 3)))
    }

    @Test
    fun encodeThenDecodeRoundTripsKnownText() {
        assertEquals("ab ba", tokenizer.decode(tokenizer.encode("  ab  ba ")))
    }
}
