/*
 * What the two screens share: the export and delegate pickers, and the one thread that owns LiteRT.
 *
 * All LiteRT work of a screen runs on its single worker thread, never on the main thread (a compile
 * or a benchmark takes seconds) and never on two threads at once (the GPU accelerator's context
 * belongs to the thread that made it). Results come back to the main thread with runOnUiThread.
 */
package dev.tfmobile.demo

import android.app.Activity
import android.widget.ArrayAdapter
import android.widget.Spinner
import java.io.File
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/** A spinner of names that keeps the chosen one across refreshes (exports pushed while the app is open). */
class NamePicker(private val activity: Activity, private val spinner: Spinner) {
    private var names: List<String> = emptyList()

    val selected: String? get() = names.getOrNull(spinner.selectedItemPosition)

    fun show(newNames: List<String>, preferred: String? = null) {
        val keep = selected ?: preferred
        names = newNames
        val adapter = ArrayAdapter(activity, android.R.layout.simple_spinner_item, names)
        adapter.setDropDownViewResource(android.R.layout.simple_spinner_dropdown_item)
        spinner.adapter = adapter
        val at = names.indexOf(keep)
        if (at >= 0) spinner.setSelection(at)
    }
}

/** The export and delegate pickers of a screen, filled from the app's folder and the bundled configs. */
class ExportAndDelegate(activity: Activity, exportSpinner: Spinner, delegateSpinner: Spinner) {
    val files = DeviceFiles(activity)
    private val exports = NamePicker(activity, exportSpinner)
    private val delegates = NamePicker(activity, delegateSpinner)

    /** Re-read the folder; false when there is no export to choose. */
    fun refresh(): Boolean {
        exports.show(files.listExports().map { it.name })
        delegates.show(files.listDelegates(), preferred = DEFAULT_DELEGATE)
        return exports.selected != null
    }

    val export: File? get() = exports.selected?.let { File(files.exports, it) }
    val exportName: String? get() = exports.selected
    val delegateName: String? get() = delegates.selected

    companion object {
        /** The first choice on a new phone: XNNPACK on one thread, as the host's default. */
        const val DEFAULT_DELEGATE = "pixel8-cpu1"
    }
}

/** The single thread a screen runs LiteRT on. */
fun liteRtWorker(name: String): ExecutorService = Executors.newSingleThreadExecutor { Thread(it, name) }
