/*
 * The exported SentencePiece `.model` file, read with a hand-written protobuf decoder.
 *
 * The file is a serialized `sentencepiece.ModelProto` (sentencepiece_model.proto, proto2). Only the
 * fields an encoder and decoder need are read; every other field is skipped by its wire type:
 *
 *   ModelProto      1 pieces (repeated SentencePiece)  2 trainer_spec  3 normalizer_spec
 *   SentencePiece   1 piece (string)  2 score (float)  3 type (enum, default NORMAL)
 *   TrainerSpec     24 treat_whitespace_as_suffix  35 byte_fallback  40 unk_id  44 unk_surface
 *   NormalizerSpec  2 precompiled_charsmap (bytes)  3 add_dummy_prefix  4 remove_extra_whitespaces
 *                   5 escape_whitespaces
 *
 * proto2 leaves a field at its default out of the file, so the defaults below are those of the
 * .proto (add_dummy_prefix, remove_extra_whitespaces and escape_whitespaces default to true).
 */
package dev.tfmobile.core.tokenizer

import java.io.File

/** The type of one vocabulary piece (SentencePiece.Type in sentencepiece_model.proto). */
enum class PieceType(val number: Int) {
    NORMAL(1), UNKNOWN(2), CONTROL(3), USER_DEFINED(4), UNUSED(5), BYTE(6);

    companion object {
        fun of(number: Int): PieceType =
            entries.firstOrNull { it.number == number } ?: throw ModelFormatException("unknown piece type $number")
    }
}

class Piece(val text: String, val score: Float, val type: PieceType)

class ModelFormatException(message: String) : dev.tfmobile.core.CoreError(message)

/** What the tokenizer reads from a `.model` file. */
class SentencePieceModel(
    val pieces: List<Piece>,
    val byteFallback: Boolean = false,
    val unkId: Int = 0,
    val unkSurface: String = " \u2047 ",
    val treatWhitespaceAsSuffix: Boolean = false,
    val precompiledCharsmap: ByteArray = ByteArray(0),
    val addDummyPrefix: Boolean = true,
    val removeExtraWhitespaces: Boolean = true,
    val escapeWhitespaces: Boolean = true,
) {
    companion object {
        fun load(path: String): SentencePieceModel = parse(File(path).readBytes())

        fun parse(bytes: ByteArray): SentencePieceModel {
            val pieces = ArrayList<Piece>()
            var trainer = TrainerFields()
            var normalizer = NormalizerFields()
            val reader = ProtoReader(bytes)
            while (reader.hasMore()) {
                val (field, wire) = reader.tag()
                when {
                    field == 1 && wire == ProtoReader.LEN -> pieces.add(parsePiece(reader.bytes()))
                    field == 2 && wire == ProtoReader.LEN -> trainer = parseTrainer(reader.bytes())
                    field == 3 && wire == ProtoReader.LEN -> normalizer = parseNormalizer(reader.bytes())
                    else -> reader.skip(wire)
                }
            }
            if (pieces.isEmpty()) throw ModelFormatException("the model has no pieces")
            return SentencePieceModel(
                pieces = pieces,
                byteFallback = trainer.byteFallback,
                unkId = trainer.unkId,
                unkSurface = trainer.unkSurface,
                treatWhitespaceAsSuffix = trainer.treatWhitespaceAsSuffix,
                precompiledCharsmap = normalizer.precompiledCharsmap,
                addDummyPrefix = normalizer.addDummyPrefix,
                removeExtraWhitespaces = normalizer.removeExtraWhitespaces,
                escapeWhitespaces = normalizer.escapeWhitespaces,
            )
        }

        private fun parsePiece(bytes: ByteArray): Piece {
            var text = ""
            var score = 0f
            var type = PieceType.NORMAL
            val reader = ProtoReader(bytes)
            while (reader.hasMore()) {
                val (field, wire) = reader.tag()
                when {
                    field == 1 && wire == ProtoReader.LEN -> text = reader.bytes().decodeToString()
                    field == 2 && wire == ProtoReader.I32 -> score = Float.fromBits(reader.fixed32())
                    field == 3 && wire == ProtoReader.VARINT -> type = PieceType.of(reader.varint().toInt())
                    else -> reader.skip(wire)
                }
            }
            return Piece(text, score, type)
        }

        private class TrainerFields(
            val treatWhitespaceAsSuffix: Boolean = false,
            val byteFallback: Boolean = false,
            val unkId: Int = 0,
            val unkSurface: String = " \u2047 ",
        )

        private fun parseTrainer(bytes: ByteArray): TrainerFields {
            var suffix = false
            var byteFallback = false
            var unkId = 0
            var unkSurface = " \u2047 "
            val reader = ProtoReader(bytes)
            while (reader.hasMore()) {
                val (field, wire) = reader.tag()
                when {
                    field == 24 && wire == ProtoReader.VARINT -> suffix = reader.varint() != 0L
                    field == 35 && wire == ProtoReader.VARINT -> byteFallback = reader.varint() != 0L
                    field == 40 && wire == ProtoReader.VARINT -> unkId = reader.varint().toInt()
                    field == 44 && wire == ProtoReader.LEN -> unkSurface = reader.bytes().decodeToString()
                    else -> reader.skip(wire)
                }
            }
            return TrainerFields(suffix, byteFallback, unkId, unkSurface)
        }

        private class NormalizerFields(
            val precompiledCharsmap: ByteArray = ByteArray(0),
            val addDummyPrefix: Boolean = true,
            val removeExtraWhitespaces: Boolean = true,
            val escapeWhitespaces: Boolean = true,
        )

        private fun parseNormalizer(bytes: ByteArray): NormalizerFields {
            var charsmap = ByteArray(0)
            var dummy = true
            var extra = true
            var escape = true
            val reader = ProtoReader(bytes)
            while (reader.hasMore()) {
                val (field, wire) = reader.tag()
                when {
                    field == 2 && wire == ProtoReader.LEN -> charsmap = reader.bytes()
                    field == 3 && wire == ProtoReader.VARINT -> dummy = reader.varint() != 0L
                    field == 4 && wire == ProtoReader.VARINT -> extra = reader.varint() != 0L
                    field == 5 && wire == ProtoReader.VARINT -> escape = reader.varint() != 0L
                    else -> reader.skip(wire)
                }
            }
            return NormalizerFields(charsmap, dummy, extra, escape)
        }
    }
}

/** The protobuf wire format, just enough of it: varints, fixed32/64 and length-delimited fields. */
internal class ProtoReader(private val buf: ByteArray) {
    private var pos = 0

    fun hasMore() = pos < buf.size

    /** The next field number and wire type. */
    fun tag(): Pair<Int, Int> {
        val key = varint()
        return Pair((key ushr 3).toInt(), (key and 7L).toInt())
    }

    fun varint(): Long {
        var result = 0L
        var shift = 0
        while (true) {
            if (pos >= buf.size) throw ModelFormatException("truncated varint")
            val b = buf[pos++].toInt() and 0xFF
            result = result or ((b and 0x7F).toLong() shl shift)
            if (b and 0x80 == 0) return result
            shift += 7
            if (shift >= 64) throw ModelFormatException("varint too long")
        }
    }

    fun fixed32(): Int {
        need(4)
        var v = 0
        for (i in 0 until 4) v = v or ((buf[pos + i].toInt() and 0xFF) shl (8 * i))
        pos += 4
        return v
    }

    fun bytes(): ByteArray {
        val n = varint().toInt()
        need(n)
        val out = buf.copyOfRange(pos, pos + n)
        pos += n
        return out
    }

    fun skip(wire: Int) {
        when (wire) {
            VARINT -> varint()
            I64 -> { need(8); pos += 8 }
            LEN -> { val n = varint().toInt(); need(n); pos += n }
            I32 -> { need(4); pos += 4 }
            else -> throw ModelFormatException("unsupported wire type $wire")
        }
    }

    private fun need(n: Int) {
        if (n < 0 || pos + n > buf.size) throw ModelFormatException("truncated field")
    }

    companion object {
        const val VARINT = 0
        const val I64 = 1
        const val LEN = 2
        const val I32 = 5
    }
}
