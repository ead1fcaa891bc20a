/*
 * The JSON reader and writer: value types and order, strings and numbers, Python's layout, and
 * malformed text refused with its line and column. Parity with Python's json on many documents is
 * tests/test_android_core.py.
 */
package dev.tfmobile.core.json

import dev.tfmobile.core.CoreError
import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

class JsonParseTest {
    @Test
    fun valuesHaveTheirKotlinTypes() {
        val v = Json.parse("""{"i": -12, "d": 1.5, "e": 2E3, "s": "x", "t": true, "f": false, "n": null, "a": [1, [2]], "o": {}}""")
        assertEquals(
            linkedMapOf("i" to -12L, "d" to 1.5, "e" to 2000.0, "s" to "x", "t" to true, "f" to false, "n" to null,
                        "a" to listOf(1L, listOf(2L)), "o" to emptyMap<String, Any?>()),
            v,
        )
    }

    @Test
    fun objectsKeepTheirOrderAndARepeatedKeyItsLastValue() {
        val v = Json.parse("""{"b": 1, "a": 2, "b": 3}""") as Map<*, *>
        assertEquals(listOf("b", "a"), v.keys.toList())
        assertEquals(3L, v["b"])
    }

    @Test
    fun escapesAndSurrogatePairsAreDecoded() {
        assertEquals("a\"\\/\b\u000C\n\r\t\u00e9\uD83D\uDE00", Json.parse("\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00E9\\ud83d\\ude00\""))
        assertEquals("ñ 😀", Json.parse("\"ñ 😀\""))
    }

    @Test
    fun bigIntegersAndExponentsAreNumbers() {
        assertEquals(Long.MAX_VALUE, Json.parse("9223372036854775807"))
        assertEquals(-0.0, Json.parse("-0.0"))
        assertEquals(1e-7, Json.parse("1e-7"))
    }

    private fun refused(text: String, phrase: String) {
        val e = assertFailsWith<CoreError> { Json.parse(text) }
        assertTrue(phrase in e.message!!, "'${e.message}' should say '$phrase'")
        assertTrue('\n' !in e.message!!)
    }

    @Test
    fun malformedTextNamesLineAndColumn() {
        refused("{\n  \"a\": 1,\n  \"b\" 2\n}", "expected ':' at line 3 column 7")
        refused("[1, 2,]", "expected a value, got ']' at line 1 column 7")
        refused("{\"a\": 1,}", "expected a property name in double quotes at line 1 column 9")
        refused("[1 2]", "expected ',' or ']' after an array element at line 1 column 4")
    }

    @Test
    fun onlyJsonIsAccepted() {
        refused("", "empty text")
        refused("   ", "empty text")
        refused("NaN", "expected a value")
        refused("[Infinity]", "expected a value")
        refused("01", "extra data")
        refused("1.", "expected a digit after the decimal point")
        refused("1e", "expected a digit in the exponent")
        refused("{'a': 1}", "property name in double quotes")
        refused("[1] x", "extra data after the JSON value at line 1 column 5")
        refused("// c\n1", "expected a value")
        refused("\uFEFF{}", "expected a value, got '\uFEFF'")
        refused("1e999", "out of the double range")
        refused("9223372036854775808", "does not fit 64 bits")
        refused("[" .repeat(600) + "]".repeat(600), "nesting deeper than 512")
    }

    @Test
    fun badStringsAreRefused() {
        refused("\"abc", "unterminated string at line 1 column 1")
        refused("\"a\\x\"", "invalid escape \\x")
        refused("\"\\u12G4\"", "invalid \\u escape")
        refused("\"tab\there\"", "control character U+0009 inside a string")
    }
}

class JsonWriteTest {
    @Test
    fun layoutIsPythonsIndentTwo() {
        val v = linkedMapOf("a" to listOf(1, 2), "b" to emptyMap<String, Any?>(), "c" to emptyList<Any?>(), "d" to linkedMapOf("e" to null))
        assertEquals("{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {},\n  \"c\": [],\n  \"d\": {\n    \"e\": null\n  }\n}", Json.write(v))
    }

    @Test
    fun aNegativeIndentWritesOneLine() {
        assertEquals("{\"a\": [1, true], \"b\": \"x\"}", Json.write(linkedMapOf("a" to listOf(1L, true), "b" to "x"), -1))
    }

    @Test
    fun integersHaveNoPointAndFloatsArePythonsRepr() {
        val cases = listOf(2L to "2", 2.0 to "2.0", 0.1 to "0.1", 1e-5 to "1e-05", 0.0001 to "0.0001", 1e16 to "1e+16",
                           9999999999999998.0 to "9999999999999998.0", 1.5e300 to "1.5e+300", -0.0 to "-0.0",
                           123456.789 to "123456.789", 2.0E-3 to "0.002", 5e-324 to "5e-324",
                           1.7976931348623157e308 to "1.7976931348623157e+308", 0.1f to "0.10000000149011612")
        for ((value, text) in cases) assertEquals(text, Json.write(value), "$value")
    }

    @Test
    fun stringsAreEscapedLikePythonWithEnsureAsciiOff() {
        assertEquals("\"q\\\" b\\\\ n\\n t\\t \\u0001 \\u001f \u007f é 😀\"", Json.write("q\" b\\ n\n t\t \u0001 \u001f \u007f é 😀"))
    }

    @Test
    fun arraysOfPrimitivesAreLists() {
        assertEquals("[1, 2]", Json.write(intArrayOf(1, 2), -1))
        assertEquals("[0.5, 1.0]", Json.write(doubleArrayOf(0.5, 1.0), -1))
    }

    @Test
    fun whatJsonCannotHoldIsRefused() {
        assertFailsWith<CoreError> { Json.write(Double.NaN) }
        assertFailsWith<CoreError> { Json.write(listOf(Double.POSITIVE_INFINITY)) }
        assertFailsWith<CoreError> { Json.write(mapOf(1 to "x")) }
        assertFailsWith<CoreError> { Json.write(Any()) }
    }

    @Test
    fun writeThenParseGivesTheValueBack() {
        val v = linkedMapOf("x" to listOf(1L, 2.25, "s\u2581", null, false), "y" to linkedMapOf("z" to -3L))
        assertEquals(v, Json.parse(Json.write(v)))
    }
}
