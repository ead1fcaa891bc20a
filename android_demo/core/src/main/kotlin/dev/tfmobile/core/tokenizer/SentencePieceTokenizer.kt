/*
 * SentencePiece unigram encoding and decoding, giving the ids of Python sentencepiece (0.2.x).
 *
 * Encode (unigram_model.cc, the optimized Viterbi, then sentencepiece_processor.cc):
 *   1. Normalize the text to UTF-8 bytes (Normalizer.kt).
 *   2. Viterbi over byte positions, stepping one UTF-8 character at a time. From each start, every
 *      NORMAL or USER_DEFINED piece that is a prefix is a candidate for the node where it ends (UNUSED
 *      pieces are in the vocabulary but skipped). A piece scores its log-probability; a user-defined
 *      piece scores len_bytes * max_score - 0.1, so it always wins. If no single-character piece
 *      starts here, the character becomes <unk> scoring min_score - 10 (min and max over NORMAL
 *      pieces; max starts at FLT_MIN, Float.MIN_NORMAL here). A candidate replaces a node's best only
 *      if strictly greater, so on ties the earliest start wins. Piece candidates are summed in double
 *      (the C++ ternary promotes) and stored as float; the unknown candidate is summed in float.
 *   3. Backtrack from the end. A run of unknown characters merges into one <unk> id, unless the
 *      model has byte_fallback: then each unknown character is emitted as its UTF-8 bytes, <0xXX>.
 * Decode (SentencePieceProcessor::Decode): control ids vanish, <unk> becomes unk_surface (" \u2047 "),
 * runs of byte pieces are decoded as UTF-8 (U+FFFD per malformed byte), U+2581 becomes a space, and
 * the leading U+2581 of the first visible piece is dropped (add_dummy_prefix).
 */
package dev.tfmobile.core.tokenizer

import java.io.ByteArrayOutputStream

class SentencePieceTokenizer(val model: SentencePieceModel) {
    private val pieces = model.pieces
    private val unkId: Int = pieces.indexOfFirst { it.type == PieceType.UNKNOWN }.let { if (it >= 0) it else model.unkId }
    private val minScore: Float
    private val maxScore: Float
    private val root = TrieNode()
    private val byteIds = IntArray(256) { -1 }
    private val normalizer: Normalizer

    init {
        var lo = Float.MAX_VALUE
        var hi = java.lang.Float.MIN_NORMAL  // C++ FLT_MIN: the smallest positive normal float
        val userDefined = ArrayList<String>()
        pieces.forEachIndexed { id, p ->
            when (p.type) {
                PieceType.NORMAL, PieceType.USER_DEFINED, PieceType.UNUSED -> root.insert(p.text.encodeToByteArray(), id)
                PieceType.BYTE -> byteValue(p.text)?.let { byteIds[it] = id }
                else -> {}
            }
            if (p.type == PieceType.NORMAL) {
                lo = minOf(lo, p.score)
                hi = maxOf(hi, p.score)
            }
            if (p.type == PieceType.USER_DEFINED) userDefined.add(p.text)
        }
        minScore = lo
        maxScore = hi
        normalizer = Normalizer(
            model.precompiledCharsmap, userDefined, model.addDummyPrefix, model.removeExtraWhitespaces,
            model.escapeWhitespaces, model.treatWhitespaceAsSuffix,
        )
    }

    val vocabSize: Int get() = pieces.size

    /** The normalized text, as Python's `normalize` would give it. */
    fun normalize(text: String): String = normalizer.normalize(text).decodeToString()

    fun encode(text: String): IntArray {
        val normalized = normalizer.normalize(text)
        val out = ArrayList<Int>()
        var prevUnk = false
        for ((start, end, id) in viterbi(normalized)) {
            val isUnk = id == unkId
            if (isUnk && model.byteFallback) {
                for (i in start until end) {
                    val byteId = byteIds[normalized[i].toInt() and 0xFF]
                    out.add(if (byteId >= 0) byteId else unkId)
                }
            } else if (!(isUnk && prevUnk)) {
                out.add(id)
            }
            prevUnk = isUnk
        }
        return out.toIntArray()
    }

    /** The best segmentation of `normalized` as (start, end, id) triples over byte positions. */
    private fun viterbi(normalized: ByteArray): List<Triple<Int, Int, Int>> {
        val size = normalized.size
        if (size == 0) return emptyList()
        val unkScore = minScore - UNK_PENALTY
        val bestScore = FloatArray(size + 1)
        val bestStart = IntArray(size + 1) { -1 }
        val bestId = IntArray(size + 1) { -1 }
        var start = 0
        while (start < size) {
            val tillHere = bestScore[start]
            val charLength = minOf(oneCharLength(normalized[start]), size - start)
            var hasSingleNode = false
            var node: TrieNode? = root
            var pos = start
            while (pos < size) {
                node = node!!.child(normalized[pos])
                pos++
                if (node == null) break
                val id = node.id
                if (id < 0) continue
                val piece = pieces[id]
                if (piece.type == PieceType.UNUSED) continue
                val length = pos - start
                val score: Double =
                    if (piece.type == PieceType.USER_DEFINED) length * maxScore - USER_DEFINED_PENALTY else piece.score.toDouble()
                val candidate = score + tillHere
                if (bestStart[pos] == -1 || candidate > bestScore[pos]) {
                    bestScore[pos] = candidate.toFloat()
                    bestStart[pos] = start
                    bestId[pos] = id
                }
                if (!hasSingleNode && length == charLength) hasSingleNode = true
            }
            if (!hasSingleNode) {
                val end = start + charLength
                val candidate: Float = unkScore + tillHere
                if (bestStart[end] == -1 || candidate > bestScore[end]) {
                    bestScore[end] = candidate
                    bestStart[end] = start
                    bestId[end] = unkId
                }
            }
            start += charLength
        }
        val path = ArrayList<Triple<Int, Int, Int>>()
        var end = size
        while (end > 0) {
            val s = bestStart[end]
            path.add(Triple(s, end, bestId[end]))
            end = s
        }
        path.reverse()
        return path
    }

    fun decode(ids: IntArray): String {
        val text = ByteArrayOutputStream()
        val bytes = ByteArrayOutputStream()
        var isBosWs = true
        var bosWsSeen = false
        fun flushBytes() {
            val b = bytes.toByteArray()
            bytes.reset()
            var offset = 0
            while (offset < b.size) {
                val n = validUtf8Length(b, offset)
                if (n == 0) { text.write(REPLACEMENT_BYTES); offset += 1 } else { text.write(b, offset, n); offset += n }
            }
        }
        for (id in ids) {
            if (id < 0 || id >= pieces.size) throw IndexOutOfBoundsException("invalid id $id")
            val piece = pieces[id]
            if (piece.type == PieceType.BYTE) {
                bytes.write(byteValue(piece.text) ?: throw ModelFormatException("bad byte piece ${piece.text}"))
                continue
            }
            flushBytes()
            if (bosWsSeen || text.size() > 0) isBosWs = false
            bosWsSeen = false
            val surface: String = when (piece.type) {
                PieceType.CONTROL -> ""
                PieceType.UNKNOWN -> model.unkSurface
                else -> {
                    var p = piece.text
                    if (isBosWs && (model.addDummyPrefix || model.removeExtraWhitespaces) && p.startsWith(SPACE_CHAR)) {
                        p = p.substring(SPACE_CHAR.length)
                        bosWsSeen = !model.removeExtraWhitespaces
                    }
                    p.replace(SPACE_CHAR, " ")
                }
            }
            text.write(surface.encodeToByteArray())
        }
        flushBytes()
        return text.toByteArray().decodeToString()
    }

    fun idToPiece(id: Int): String = pieces[id].text

    /** A byte trie of the vocabulary (NORMAL, USER_DEFINED and UNUSED pieces). */
    private class TrieNode {
        var id = -1
        private var children: HashMap<Byte, TrieNode>? = null

        fun child(b: Byte): TrieNode? = children?.get(b)

        fun insert(key: ByteArray, value: Int) {
            var node = this
            for (b in key) {
                val map = node.children ?: HashMap<Byte, TrieNode>().also { node.children = it }
                node = map.getOrPut(b) { TrieNode() }
            }
            if (node.id < 0) node.id = value  // the first of duplicate pieces keeps the id
        }
    }

    companion object {
        const val UNK_PENALTY = 10.0f
        const val USER_DEFINED_PENALTY = 0.1
        private const val SPACE_CHAR = "\u2581"
        private val REPLACEMENT_BYTES = "\uFFFD".encodeToByteArray()

        fun load(path: String) = SentencePieceTokenizer(SentencePieceModel.load(path))

        /** UTF-8 character length from the lead byte, as sentencepiece's OneCharLen. */
        private fun oneCharLength(lead: Byte): Int =
            intArrayOf(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4)[(lead.toInt() and 0xFF) ushr 4]

        private val BYTE_PIECE = Regex("<0x([0-9A-F]{2})>")

        private fun byteValue(text: String): Int? = BYTE_PIECE.matchEntire(text)?.groupValues?.get(1)?.toInt(16)
    }
}
