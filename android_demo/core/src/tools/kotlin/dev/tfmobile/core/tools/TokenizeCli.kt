/*
 * The JVM side of the tokenizer parity test (tests/test_android_core.py).
 *
 *   encode MODEL FILE   FILE holds one sentence per line, JSON-string escaped (so that any code
 *                       point, newline or NUL survives); prints one line of space-separated ids each.
 *   decode MODEL FILE   FILE holds one line of space-separated ids each; prints each text JSON-escaped.
 */
package dev.tfmobile.core.tools

import dev.tfmobile.core.tokenizer.SentencePieceTokenizer
import java.io.File

fun main(args: Array<String>) {
    require(args.size == 3 && args[0] in setOf("encode", "decode")) { "usage: encode|decode MODEL FILE" }
    val tokenizer = SentencePieceTokenizer.load(args[1])
    val out = StringBuilder()
    for (line in File(args[2]).readLines(Charsets.UTF_8)) {
        if (args[0] == "encode") {
            out.append(tokenizer.encode(unescape(line)).joinToString(" ")).append('\n')
        } else {
            val ids = line.trim().split(' ').filter { it.isNotEmpty() }.map { it.toInt() }.toIntArray()
            out.append(escape(tokenizer.decode(ids))).append('\n')
        }
    }
    System.out.write(out.toString().encodeToByteArray())
    System.out.flush()
}

/** A JSON string literal ("..." with \uXXXX and the short escapes) to its value. */
private fun unescape(literal: String): String {
    val s = literal.trim()
    require(s.length >= 2 && s.first() == '"' && s.last() == '"') { "not a JSON string: $s" }
    val sb = StringBuilder()
    var i = 1
    while (i < s.length - 1) {
        val c = s[i]
        if (c != '\\') { sb.append(c); i++; continue }
        when (val e = s[i + 1]) {
            'u' -> { sb.append(s.substring(i + 2, i + 6).toInt(16).toChar()); i += 6 }
            'n' -> { sb.append('\n'); i += 2 }
            't' -> { sb.append('\t'); i += 2 }
            'r' -> { sb.append('\r'); i += 2 }
            'b' -> { sb.append('\b'); i += 2 }
            'f' -> { sb.append('\u000C'); i += 2 }
            else -> { sb.append(e); i += 2 }
        }
    }
    return sb.toString()
}

private fun escape(text: String): String {
    val sb = StringBuilder("\"")
    for (c in text) {
        if (c == '"' || c == '\\') sb.append('\\').append(c)
        else if (c.code < 0x20 || c.code > 0x7E) sb.append("\\u%04x".format(c.code))
        else sb.append(c)
    }
    return sb.append('"').toString()
}
