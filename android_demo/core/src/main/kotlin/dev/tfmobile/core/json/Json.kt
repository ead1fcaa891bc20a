/*
 * JSON (RFC 8259) without a library: the core reads model_meta.json and the delegate configs, and
 * writes the benchmark result, on the JVM and on Android alike (Android's org.json writes 2.0 as 2 and
 * sorts nothing the way Python does, so the app would drift from the host's files).
 *
 * parse: objects become ordered maps (LinkedHashMap; a repeated key keeps its first place and its last
 * value, as Python's json.loads), arrays lists, integers Long, other numbers Double. Only JSON is
 * accepted: no NaN or Infinity, no trailing commas, no comments; a malformed text is one CoreError
 * line with the line and column, counted as Python's json module counts them.
 *
 * write: what Python's json.dumps(value, indent=2, ensure_ascii=False) prints: ", " / ": " separators,
 * non-ASCII characters as they are, control characters as \u00XX, integers as integers and floats as
 * Python's repr (the shortest digits that read back to the same double: 0.1, 100.0, 1e-05, 1e+16).
 */
package dev.tfmobile.core.json

import dev.tfmobile.core.CoreError
import java.math.BigDecimal
import java.math.MathContext
import java.math.RoundingMode

object Json {
    /** The value of a JSON text: Map<String, Any?> / List<Any?> / String / Long / Double / Boolean / null. */
    fun parse(text: String): Any? = Parser(text).document()

    /**
     * The JSON text of `value`, laid out like Python's json.dumps with this indent (a negative indent
     * gives one line, like indent=None). Maps need String keys; numbers must be finite; Float is
     * written as the double it widens to (what Python writes for a numpy float32).
     */
    fun write(value: Any?, indent: Int = 2): String = StringBuilder().also { Writer(it, indent).value(value, 0) }.toString()

    /** `value` as a JSON integer: a Long, or a double with no fraction (JSON Schema's "integer"); else null. */
    fun integerOrNull(value: Any?): Long? = when (value) {
        is Long -> value
        is Int -> value.toLong()
        is Double -> if (value.isFinite() && value == Math.rint(value) && Math.abs(value) < 9.007199254740992E15) value.toLong() else null
        else -> null
    }

    /** Python's name for the JSON type of a parsed value, for messages ("expected an object, got list"). */
    fun typeName(value: Any?): String = when (value) {
        null -> "null"
        is Map<*, *> -> "object"
        is List<*> -> "array"
        is String -> "string"
        is Boolean -> "boolean"
        is Long, is Int -> "integer"
        is Double -> "number"
        else -> value::class.simpleName ?: "value"
    }
}

private const val MAX_DEPTH = 512

private class Parser(private val s: String) {
    private var i = 0

    fun document(): Any? {
        skipSpace()
        if (i == s.length) fail("no JSON value (empty text)")
        val v = value(0)
        skipSpace()
        if (i != s.length) fail("extra data after the JSON value")
        return v
    }

    private fun value(depth: Int): Any? {
        if (depth > MAX_DEPTH) fail("nesting deeper than $MAX_DEPTH")
        if (i == s.length) fail("expected a value, got the end of the text")
        return when (val c = s[i]) {
            '{' -> obj(depth)
            '[' -> array(depth)
            '"' -> string()
            't' -> literal("true", true)
            'f' -> literal("false", false)
            'n' -> literal("null", null)
            else -> if (c == '-' || c in '0'..'9') number() else fail("expected a value, got ${show(c)}")
        }
    }

    private fun obj(depth: Int): Map<String, Any?> {
        val out = LinkedHashMap<String, Any?>()
        i++
        skipSpace()
        if (peek() == '}') { i++; return out }
        while (true) {
            skipSpace()
            if (peek() != '"') fail("expected a property name in double quotes")
            val key = string()
            skipSpace()
            expect(':')
            skipSpace()
            out[key] = value(depth + 1)
            skipSpace()
            when (peek()) {
                ',' -> i++
                '}' -> { i++; return out }
                else -> fail("expected ',' or '}' after an object member")
            }
        }
    }

    private fun array(depth: Int): List<Any?> {
        val out = ArrayList<Any?>()
        i++
        skipSpace()
        if (peek() == ']') { i++; return out }
        while (true) {
            skipSpace()
            out.add(value(depth + 1))
            skipSpace()
            when (peek()) {
                ',' -> i++
                ']' -> { i++; return out }
                else -> fail("expected ',' or ']' after an array element")
            }
        }
    }

    private fun string(): String {
        val start = i
        i++  // the opening quote
        val sb = StringBuilder()
        while (true) {
            if (i >= s.length) { i = start; fail("unterminated string") }
            val c = s[i]
            when {
                c == '"' -> { i++; return sb.toString() }
                c == '\\' -> {
                    if (i + 1 >= s.length) { i = start; fail("unterminated string") }
                    when (val e = s[i + 1]) {
                        '"', '\\', '/' -> sb.append(e)
                        'b' -> sb.append('\b')
                        'f' -> sb.append('\u000C')
                        'n' -> sb.append('\n')
                        'r' -> sb.append('\r')
                        't' -> sb.append('\t')
                        'u' -> {
                            val hex = if (i + 6 <= s.length) s.substring(i + 2, i + 6) else ""
                            if (hex.length != 4 || !hex.all { it in '0'..'9' || it in 'a'..'f' || it in 'A'..'F' }) {
                                fail("invalid \\u escape")
                            }
                            sb.append(hex.toInt(16).toChar())
                            i += 4
                        }
                        else -> fail("invalid escape \\${e}")
                    }
                    i += 2
                }
                c < ' ' -> fail("control character ${show(c)} inside a string (escape it)")
                else -> { sb.append(c); i++ }
            }
        }
    }

    private fun number(): Any {
        val start = i
        if (peek() == '-') i++
        if (peek() == '0') i++
        else if (peek() in '1'..'9') while (peek() in '0'..'9') i++
        else fail("expected a digit")
        var integer = true
        if (peek() == '.') {
            integer = false
            i++
            if (peek() !in '0'..'9') fail("expected a digit after the decimal point")
            while (peek() in '0'..'9') i++
        }
        if (peek() == 'e' || peek() == 'E') {
            integer = false
            i++
            if (peek() == '+' || peek() == '-') i++
            if (peek() !in '0'..'9') fail("expected a digit in the exponent")
            while (peek() in '0'..'9') i++
        }
        val text = s.substring(start, i)
        if (integer) {
            return text.toLongOrNull() ?: run { i = start; fail("integer $text does not fit 64 bits") }
        }
        val d = text.toDouble()
        if (d.isInfinite()) { i = start; fail("number $text is out of the double range") }
        return d
    }

    private fun literal(word: String, v: Any?): Any? {
        if (!s.startsWith(word, i)) fail("expected a value, got ${show(s[i])}")
        i += word.length
        return v
    }

    private fun expect(c: Char) {
        if (peek() != c) fail("expected '$c'")
        i++
    }

    private fun peek(): Char = if (i < s.length) s[i] else '\u0000'

    private fun skipSpace() {
        while (i < s.length && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++
    }

    private fun show(c: Char): String = if (c < ' ' || c.code == 0x7F) "U+%04X".format(c.code) else "'$c'"

    private fun fail(what: String): Nothing {
        val line = 1 + s.substring(0, minOf(i, s.length)).count { it == '\n' }
        val column = i - s.lastIndexOf('\n', i - 1)  // 1-based; -1 when on the first line
        throw CoreError("malformed JSON: $what at line $line column $column")
    }
}

private class Writer(private val out: StringBuilder, private val indent: Int) {
    fun value(v: Any?, level: Int) {
        when (v) {
            null -> out.append("null")
            is Boolean -> out.append(if (v) "true" else "false")
            is String -> string(v)
            is Int, is Long, is Short, is Byte -> out.append(v.toString())
            is Double -> out.append(pythonRepr(v))
            is Float -> out.append(pythonRepr(v.toDouble()))
            is Map<*, *> -> container('{', '}', v.entries.toList(), level) { e ->
                val key = e.key as? String ?: throw CoreError("JSON object keys must be strings, got ${e.key}")
                string(key)
                out.append(": ")
                value(e.value, level + 1)
            }
            is IntArray -> container('[', ']', v.toList(), level) { value(it, level + 1) }
            is LongArray -> container('[', ']', v.toList(), level) { value(it, level + 1) }
            is DoubleArray -> container('[', ']', v.toList(), level) { value(it, level + 1) }
            is FloatArray -> container('[', ']', v.toList(), level) { value(it, level + 1) }
            is Array<*> -> container('[', ']', v.toList(), level) { value(it, level + 1) }
            is Iterable<*> -> container('[', ']', v.toList(), level) { value(it, level + 1) }
            else -> throw CoreError("cannot write a ${v::class.simpleName} as JSON")
        }
    }

    private fun <T> container(open: Char, close: Char, items: List<T>, level: Int, item: (T) -> Unit) {
        out.append(open)
        if (items.isEmpty()) { out.append(close); return }
        items.forEachIndexed { k, it ->
            if (k > 0) out.append(',')
            if (indent >= 0) newline(level + 1) else if (k > 0) out.append(' ')
            item(it)
        }
        if (indent >= 0) newline(level)
        out.append(close)
    }

    private fun newline(level: Int) {
        out.append('\n')
        repeat(level * indent) { out.append(' ') }
    }

    private fun string(s: String) {
        out.append('"')
        for (c in s) {
            when (c) {
                '"' -> out.append("\\\"")
                '\\' -> out.append("\\\\")
                '\n' -> out.append("\\n")
                '\r' -> out.append("\\r")
                '\t' -> out.append("\\t")
                '\b' -> out.append("\\b")
                '\u000C' -> out.append("\\f")
                else -> if (c < ' ') out.append("\\u%04x".format(c.code)) else out.append(c)
            }
        }
        out.append('"')
    }
}

/**
 * Python's repr of a float: the shortest decimal that reads back as `x` (the nearer of the two
 * candidates at that length), in fixed notation for 1e-4 <= |x| < 1e16 and exponent notation outside.
 * Done with BigDecimal because Double.toString is not always shortest on JDK 17 (JDK-4511638).
 */
internal fun pythonRepr(x: Double): String {
    if (!x.isFinite()) throw CoreError("cannot write $x as JSON (only finite numbers)")
    if (x == 0.0) return if (1.0 / x < 0) "-0.0" else "0.0"
    val sign = if (x < 0) "-" else ""
    val exact = BigDecimal(Math.abs(x))
    var best: BigDecimal? = null
    for (p in 1..17) {
        val down = exact.round(MathContext(p, RoundingMode.FLOOR))
        val up = exact.round(MathContext(p, RoundingMode.CEILING))
        val downOk = down.toDouble() == Math.abs(x)
        val upOk = up.toDouble() == Math.abs(x)
        best = when {
            downOk && upOk -> if (exact.subtract(down) <= up.subtract(exact)) down else up
            downOk -> down
            upOk -> up
            else -> null
        }
        if (best != null) break
    }
    val decimal = (best ?: exact.round(MathContext(17, RoundingMode.HALF_EVEN))).stripTrailingZeros()
    val digits = decimal.unscaledValue().toString()
    val point = digits.length - decimal.scale()  // digits before the decimal point (dtoa's decpt)
    val body = when {
        point <= -4 || point > 16 -> {
            val exp = point - 1
            val mantissa = if (digits.length == 1) digits else digits[0] + "." + digits.substring(1)
            mantissa + "e" + (if (exp < 0) "-" else "+") + Math.abs(exp).toString().padStart(2, '0')
        }
        point <= 0 -> "0." + "0".repeat(-point) + digits
        point >= digits.length -> digits + "0".repeat(point - digits.length) + ".0"
        else -> digits.substring(0, point) + "." + digits.substring(point)
    }
    return sign + body
}
