/*
 * SentencePiece normalization (normalizer.cc), over UTF-8 bytes, exactly as the C++ library does it.
 *
 * The model's `precompiled_charsmap` holds its normalization rule (nmt_nfkc for our models) compiled
 * into one blob: a little-endian uint32 with the size in bytes of a Darts-clone double-array trie, the
 * trie itself (uint32 units), then NUL-terminated replacement strings. A trie value is the offset of
 * its replacement. At each position the normalizer takes:
 *   1. the longest user-defined piece that is a prefix, kept as is (not normalized);
 *   2. otherwise the longest key of the trie that is a prefix, replaced by its string;
 *   3. otherwise one UTF-8 character unchanged, or U+FFFD for one byte of malformed UTF-8.
 * A rule table compiled this way is not NFKC: java.text.Normalizer would give other ids, so it is
 * never used. Around that loop: leading, trailing and repeated spaces are dropped
 * (remove_extra_whitespaces), U+2581 is put in front (add_dummy_prefix; behind with
 * treat_whitespace_as_suffix), and spaces become U+2581 (escape_whitespaces).
 */
package dev.tfmobile.core.tokenizer

import java.io.ByteArrayOutputStream

internal val SPACE_SYMBOL = "\u2581".encodeToByteArray()
private val REPLACEMENT = "\uFFFD".encodeToByteArray()

/** A Darts-clone double array: the trie of the precompiled charsmap. */
internal class DoubleArray(private val units: IntArray) {
    private fun hasLeaf(unit: Int) = (unit ushr 8) and 1 == 1
    private fun value(unit: Int) = unit and 0x7FFFFFFF
    private fun label(unit: Int) = unit and (0x80000000.toInt() or 0xFF)
    private fun offset(unit: Int) = (unit ushr 10) shl ((unit and (1 shl 9)) ushr 6)

    /** The (length, value) of the longest key that is a prefix of `key[start until end]`, or null. */
    fun longestPrefix(key: ByteArray, start: Int, end: Int): Pair<Int, Int>? {
        if (units.isEmpty()) return null
        var nodePos = offset(units[0])
        var best: Pair<Int, Int>? = null
        for (i in start until end) {
            val c = key[i].toInt() and 0xFF
            nodePos = nodePos xor c
            if (nodePos < 0 || nodePos >= units.size) return best
            val unit = units[nodePos]
            if (label(unit) != c) return best
            nodePos = nodePos xor offset(unit)
            if (hasLeaf(unit)) {
                if (nodePos < 0 || nodePos >= units.size) return best
                best = Pair(i + 1 - start, value(units[nodePos]))
            }
        }
        return best
    }
}

internal class Normalizer(
    charsmap: ByteArray,
    userDefined: Collection<String>,
    private val addDummyPrefix: Boolean,
    private val removeExtraWhitespaces: Boolean,
    private val escapeWhitespaces: Boolean,
    private val treatWhitespaceAsSuffix: Boolean,
) {
    private val trie: DoubleArray?
    private val replacements: ByteArray
    private val userDefined: Set<ByteArrayKey> = userDefined.map { ByteArrayKey(it.encodeToByteArray()) }.toSet()
    private val maxUserDefinedLength = this.userDefined.maxOfOrNull { it.bytes.size } ?: 0

    init {
        if (charsmap.isEmpty()) {
            trie = null
            replacements = ByteArray(0)
        } else {
            if (charsmap.size < 4) throw ModelFormatException("precompiled_charsmap is too short")
            val trieSize = readUInt32(charsmap, 0)
            if (trieSize < 0 || trieSize % 4 != 0 || 4 + trieSize > charsmap.size) {
                throw ModelFormatException("precompiled_charsmap has a bad trie size $trieSize")
            }
            trie = DoubleArray(IntArray(trieSize / 4) { readUInt32(charsmap, 4 + 4 * it) })
            replacements = charsmap.copyOfRange(4 + trieSize, charsmap.size)
        }
    }

    /** One normalization step at `pos`: the bytes to emit and how many input bytes they consume. */
    private fun normalizePrefix(input: ByteArray, pos: Int): Pair<ByteArray, Int> {
        if (maxUserDefinedLength > 0) {
            for (n in minOf(maxUserDefinedLength, input.size - pos) downTo 1) {
                val candidate = ByteArrayKey(input.copyOfRange(pos, pos + n))
                if (candidate in userDefined) return Pair(candidate.bytes, n)
            }
        }
        val match = trie?.longestPrefix(input, pos, input.size)
        if (match != null) {
            val (length, value) = match
            var end = value
            while (end < replacements.size && replacements[end] != 0.toByte()) end++
            return Pair(replacements.copyOfRange(value, end), length)
        }
        val length = validUtf8Length(input, pos)
        return if (length == 0) Pair(REPLACEMENT, 1) else Pair(input.copyOfRange(pos, pos + length), length)
    }

    fun normalize(text: String): ByteArray = normalize(text.encodeToByteArray())

    fun normalize(input: ByteArray): ByteArray {
        var pos = 0
        if (removeExtraWhitespaces) {
            while (pos < input.size) {
                val (out, consumed) = normalizePrefix(input, pos)
                if (!(out.size == 1 && out[0] == SPACE)) break
                pos += consumed
            }
        }
        if (pos >= input.size) return ByteArray(0)
        val space = if (escapeWhitespaces) SPACE_SYMBOL else byteArrayOf(SPACE)
        val normalized = ByteArrayOutputStream(input.size * 2)
        if (!treatWhitespaceAsSuffix && addDummyPrefix) normalized.write(space)

        var isPrevSpace = removeExtraWhitespaces
        while (pos < input.size) {
            val (out, consumed) = normalizePrefix(input, pos)
            var from = 0
            if (isPrevSpace) while (from < out.size && out[from] == SPACE) from++
            if (from < out.size) {
                for (i in from until out.size) {
                    if (escapeWhitespaces && out[i] == SPACE) normalized.write(SPACE_SYMBOL) else normalized.write(out[i].toInt())
                }
                isPrevSpace = out[out.size - 1] == SPACE
            }
            pos += consumed
            if (!removeExtraWhitespaces) isPrevSpace = false
        }

        var result = normalized.toByteArray()
        if (removeExtraWhitespaces) {
            var length = result.size
            while (length >= space.size && endsWith(result, length, space)) length -= space.size
            if (length != result.size) result = result.copyOf(length)
        }
        if (treatWhitespaceAsSuffix && addDummyPrefix) result += space
        return result
    }

    private class ByteArrayKey(val bytes: ByteArray) {
        override fun equals(other: Any?) = other is ByteArrayKey && bytes.contentEquals(other.bytes)
        override fun hashCode() = bytes.contentHashCode()
    }

    private companion object {
        const val SPACE: Byte = 0x20

        fun readUInt32(b: ByteArray, at: Int): Int =
            (b[at].toInt() and 0xFF) or ((b[at + 1].toInt() and 0xFF) shl 8) or
                ((b[at + 2].toInt() and 0xFF) shl 16) or ((b[at + 3].toInt() and 0xFF) shl 24)

        fun endsWith(b: ByteArray, length: Int, suffix: ByteArray): Boolean {
            for (i in suffix.indices) if (b[length - suffix.size + i] != suffix[i]) return false
            return true
        }
    }
}

/**
 * The length of the valid UTF-8 character at `pos`, or 0 where the bytes there are malformed
 * (sentencepiece's IsValidDecodeUTF8: no overlong forms, no surrogates, nothing above U+10FFFF).
 */
internal fun validUtf8Length(b: ByteArray, pos: Int): Int {
    val left = b.size - pos
    if (left <= 0) return 0
    val c0 = b[pos].toInt() and 0xFF
    fun cont(i: Int) = pos + i < b.size && (b[pos + i].toInt() and 0xC0) == 0x80
    fun at(i: Int) = b[pos + i].toInt() and 0x3F
    return when {
        c0 < 0x80 -> 1
        c0 < 0xC2 -> 0
        c0 < 0xE0 -> if (cont(1)) 2 else 0
        c0 < 0xF0 -> {
            if (!cont(1) || !cont(2)) return 0
            val cp = ((c0 and 0x0F) shl 12) or (at(1) shl 6) or at(2)
            if (cp < 0x800 || cp in 0xD800..0xDFFF) 0 else 3
        }
        c0 < 0xF5 -> {
            if (!cont(1) || !cont(2) || !cont(3)) return 0
            val cp = ((c0 and 0x07) shl 18) or (at(1) shl 12) or (at(2) shl 6) or at(3)
            if (cp < 0x10000 || cp > 0x10FFFF) 0 else 4
        }
        else -> 0
    }
}
