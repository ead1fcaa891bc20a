/*
 * model_meta.json, the metadata `tfmobile export` writes beside model.tflite (format tfmobile-litert/1):
 * the read and checks of tfmobile.deploy.runtime.read_meta, and the export's target-length rule.
 *
 * The rule (tfmobile.decoding.search.target_length_limit, recorded under translate_length_limit): a
 * translation of n source tokens (EOS included) may have min(floor(ratio * n) + extra, max_target_len,
 * model_max_target_len - 1) tokens, EOS included. The in-graph `translate` loop stops there, and so does
 * a loop stepping decode_step (LiteTranslator mode "steps", the app's Translator). model_max_target_len
 * is the model's position table; exports that lack it in the rule have it in source_config.model.
 */
package dev.tfmobile.core.meta

import dev.tfmobile.core.CoreError
import dev.tfmobile.core.json.Json
import java.io.File
import java.io.IOException

class ModelMeta(
    /** The model's file name inside the export directory (model.tflite). */
    val modelFile: String,
    /** "none", "float16", "dynamic" or "int8"; null in metadata that records none. */
    val quantization: String?,
    /** S: the fixed source length of encode (source tokens, EOS included, then PAD). */
    val maxSourceLen: Int,
    /** T: the fixed target length of translate and of the caches. */
    val maxTargetLen: Int,
    val bos: Int,
    val eos: Int,
    val pad: Int,
    /** SentencePiece file names: {"joint": ...} or {"source": ..., "target": ...}; empty when none was shipped. */
    val tokenizers: Map<String, String>,
    val lengthRatio: Double,
    val lengthExtra: Int,
    /** The model's position table (ModelConfig.max_target_len). */
    val modelMaxTargetLen: Int,
    /** The export directory the metadata was read from; null when parsed from text. */
    val exportDir: File? = null,
) {
    /** The SentencePiece file of the source side, null when the export shipped none. */
    val sourceTokenizer: String? get() = tokenizers["joint"] ?: tokenizers["source"]
    val targetTokenizer: String? get() = tokenizers["joint"] ?: tokenizers["target"]

    /** The model file, when read from an export directory. */
    val modelPath: File? get() = exportDir?.let { File(it, modelFile) }

    /** Tokens (EOS included) a translation of `nSource` source tokens (EOS included) may have. */
    fun targetLengthLimit(nSource: Int): Int {
        if (nSource < 1) throw CoreError("a source has at least one token (its EOS), got $nSource")
        // the export's ratio is a short fraction (3/2); the epsilon keeps e.g. 1.1 * 10 from flooring to 10
        val byRatio = Math.floor(lengthRatio * nSource + 1e-9).toInt() + lengthExtra
        return minOf(byRatio, maxTargetLen, modelMaxTargetLen - 1)
    }

    companion object {
        const val FORMAT = "tfmobile-litert/1"
        const val FILE = "model_meta.json"
        /** tfmobile.deploy.runtime.META_KEYS: what every export's metadata holds. */
        val KEYS = listOf("format", "model_file", "quantization", "max_source_len", "max_target_len", "special_ids",
                          "tokenizers", "translate_length_limit")

        /** The export directory of `path`: itself, or the folder of the model_meta.json or .tflite inside one. */
        fun exportDirOf(path: File): File =
            if (path.name.endsWith(".tflite") || path.name == FILE) path.absoluteFile.parentFile else path

        /** The metadata of an export: `path` is its directory, its model_meta.json or its .tflite. */
        fun read(path: File): ModelMeta {
            val dir = exportDirOf(path)
            val file = File(dir, FILE)
            if (!file.isFile) {
                throw CoreError("$dir is not an export directory (no $FILE); make one with `tfmobile export`")
            }
            val text = try { file.readText(Charsets.UTF_8) } catch (e: IOException) {
                throw CoreError("cannot read $file: ${e.message}")
            }
            return parse(text, file.path, dir)
        }

        /** The metadata in `text`; `where` names it in errors. */
        fun parse(text: String, where: String = FILE, exportDir: File? = null): ModelMeta {
            val meta = try { Json.parse(text) } catch (e: CoreError) {
                throw CoreError("$where is not valid JSON (${e.message}); export the model again")
            }
            if (meta !is Map<*, *> || meta["format"] != FORMAT) {
                throw CoreError("$where is not tfmobile export metadata (format $FORMAT); export the model again")
            }
            val missing = KEYS.filter { it !in meta }
            if (missing.isNotEmpty()) throw CoreError("$where lacks ${missing.joinToString(", ")}; export the model again")
            val fields = Fields(meta, where)
            val special = fields.obj("special_ids")
            val rule = fields.obj("translate_length_limit")
            val sourceModel = (meta["source_config"] as? Map<*, *>)?.get("model") as? Map<*, *>
            // as LiteTranslator.length_limit: the rule's own value, else the source config's
            val modelMax = Json.integerOrNull(rule["model_max_target_len"])?.takeIf { it != 0L }
                ?: Json.integerOrNull(sourceModel?.get("max_target_len"))
                ?: throw CoreError("$where records no model_max_target_len (in translate_length_limit or " +
                                   "source_config.model.max_target_len); export the model again")
            val tokenizers = fields.obj("tokenizers").entries.associate { (k, v) ->
                if (v !is String || v.isEmpty()) throw CoreError("$where: tokenizers.$k must be a file name, got ${Json.write(v, -1)}")
                k.toString() to v
            }
            if (tokenizers.isNotEmpty() && tokenizers.keys != setOf("joint") && tokenizers.keys != setOf("source", "target")) {
                throw CoreError("$where: tokenizers must be {joint} or {source, target}, got {${tokenizers.keys.joinToString(", ")}}")
            }
            val ratio = rule["ratio"]
            if (ratio !is Double && ratio !is Long || (ratio as Number).toDouble() <= 0.0) {
                throw CoreError("$where: translate_length_limit.ratio must be a positive number, got ${Json.write(ratio, -1)}")
            }
            val quantization = meta["quantization"]
            if (quantization != null && quantization !is String) {
                throw CoreError("$where: quantization must be a string or null, got ${Json.write(quantization, -1)}")
            }
            return ModelMeta(
                modelFile = fields.string("model_file"),
                quantization = quantization as String?,
                maxSourceLen = fields.positive(meta, "max_source_len"),
                maxTargetLen = fields.positive(meta, "max_target_len"),
                bos = fields.id(special, "special_ids.bos"),
                eos = fields.id(special, "special_ids.eos"),
                pad = fields.id(special, "special_ids.pad"),
                tokenizers = tokenizers,
                lengthRatio = (ratio as Number).toDouble(),
                lengthExtra = fields.integer(rule, "translate_length_limit.extra").toInt(),
                modelMaxTargetLen = modelMax.toInt().also {
                    if (it < 2) throw CoreError("$where: model_max_target_len must be at least 2, got $it")
                },
                exportDir = exportDir,
            )
        }
    }
}

/** Typed reads of metadata fields, each failure one line naming the field. */
private class Fields(private val meta: Map<*, *>, private val where: String) {
    fun obj(key: String): Map<*, *> =
        meta[key] as? Map<*, *> ?: throw CoreError("$where: $key must be an object, got ${Json.typeName(meta[key])}")

    fun string(key: String): String =
        (meta[key] as? String)?.takeIf { it.isNotEmpty() }
            ?: throw CoreError("$where: $key must be a non-empty string, got ${Json.write(meta[key], -1)}")

    fun integer(from: Map<*, *>, name: String): Long {
        val v = from[name.substringAfterLast('.')]
        return Json.integerOrNull(v) ?: throw CoreError("$where: $name must be an integer, got ${Json.write(v, -1)}")
    }

    fun positive(from: Map<*, *>, name: String): Int = integer(from, name).let {
        if (it < 1 || it > Int.MAX_VALUE) throw CoreError("$where: $name must be a positive integer, got $it")
        it.toInt()
    }

    fun id(from: Map<*, *>, name: String): Int = integer(from, name).let {
        if (it < 0 || it > Int.MAX_VALUE) throw CoreError("$where: $name must be a token id (>= 0), got $it")
        it.toInt()
    }
}
