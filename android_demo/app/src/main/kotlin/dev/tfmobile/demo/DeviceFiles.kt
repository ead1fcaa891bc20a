/*
 * The app's folder on the phone, the one `tfmobile bench --adb` pushes to and pulls from:
 *
 *   DEV = /sdcard/Android/data/dev.tfmobile.demo/files/tfmobile   (Context.getExternalFilesDir + "tfmobile")
 *     exports/<name>/      a whole `tfmobile export` directory (model.tflite, model_meta.json, *.model)
 *     delegates/<cfg>.json delegate configs (TFLiteSettings JSON); the app also bundles the repository's
 *                          configs (the .json files of tfmobile/resources/delegates) as assets, and a pushed
 *                          file of the same name wins
 *     results/<id>.json    benchmark results (tfmobile-bench/1), written by rename so a reader never sees half
 *
 * The app reads and writes there without any permission, and adb reaches it. Nothing outside DEV is
 * ever read or written on behalf of an intent's extras.
 */
package dev.tfmobile.demo

import android.content.Context
import dev.tfmobile.core.CoreError
import dev.tfmobile.core.delegate.DelegateConfig
import dev.tfmobile.core.meta.ModelMeta
import java.io.File
import java.io.IOException

class DeviceFiles(private val context: Context) {
    val root: File = File(
        context.getExternalFilesDir(null) ?: throw CoreError("the phone's shared storage is not mounted: no app files folder"),
        "tfmobile",
    )
    val exports = File(root, "exports")
    val delegates = File(root, "delegates")
    val results = File(root, "results")

    /** Export directories under exports/ (those with a model_meta.json), by name. */
    fun listExports(): List<File> =
        exports.listFiles { f -> f.isDirectory && File(f, ModelMeta.FILE).isFile }?.sortedBy { it.name } ?: emptyList()

    /** Delegate config names: the bundled ones and the pushed ones, sorted. */
    fun listDelegates(): List<String> {
        val bundled = context.assets.list(ASSET_DIR)?.filter { it.endsWith(".json") } ?: emptyList()
        val pushed = delegates.listFiles { f -> f.isFile && f.name.endsWith(".json") }?.map { it.name } ?: emptyList()
        return (bundled + pushed).map { it.removeSuffix(".json") }.distinct().sorted()
    }

    /**
     * A delegate config by name (pushed file first, then the bundled asset) or by path (a .json file
     * inside DEV, as the headless protocol passes it).
     */
    fun delegate(nameOrPath: String): DelegateConfig {
        if (nameOrPath.contains('/')) return DelegateConfig.read(inside(File(nameOrPath), "delegate config"))
        val pushed = File(delegates, "$nameOrPath.json")
        if (pushed.isFile) return DelegateConfig.read(pushed)
        val text = try {
            context.assets.open("$ASSET_DIR/$nameOrPath.json").use { it.readBytes().toString(Charsets.UTF_8) }
        } catch (e: IOException) {
            throw CoreError("no delegate config $nameOrPath (bundled: ${listDelegates().joinToString(", ")}; or push one to $delegates)")
        }
        return DelegateConfig.parse(text, nameOrPath)
    }

    /** `file` itself, refused with one line unless it lies inside DEV. */
    fun inside(file: File, what: String): File {
        val path = file.canonicalFile
        if (!path.path.startsWith(root.canonicalPath + File.separator)) {
            throw CoreError("$what $file is outside the app's folder $root; push it there (see android_demo/README.md)")
        }
        return path
    }

    /** A fresh result file name under results/: UTC time, export and delegate. */
    fun newResult(export: String, delegate: String): File {
        val stamp = java.time.LocalDateTime.now(java.time.ZoneOffset.UTC)
            .format(java.time.format.DateTimeFormatter.ofPattern("uuuuMMdd-HHmmss"))
        return File(results, "$stamp-$export-$delegate.json")
    }

    companion object {
        /** Where the build puts the repository's delegate configs inside the APK (app/build.gradle.kts). */
        const val ASSET_DIR = "delegates"

        /** Write `text` to `<file>.tmp`, then rename it to `file`: a reader sees all of it or nothing. */
        fun writeAtomically(file: File, text: String) {
            val dir = file.absoluteFile.parentFile
            if (!dir.isDirectory && !dir.mkdirs()) throw CoreError("cannot create $dir")
            val tmp = File(dir, file.name + ".tmp")
            try {
                tmp.writeText(text, Charsets.UTF_8)
            } catch (e: IOException) {
                throw CoreError("cannot write $tmp: ${e.message}")
            }
            if (!tmp.renameTo(file)) {
                tmp.delete()
                throw CoreError("cannot rename $tmp to ${file.name}")
            }
        }
    }
}
