/*
 * The benchmark screen: an export, a delegate config (the repository's cpu1 / cpu4 / gpu-fp16 files,
 * or pushed ones), HAT's settings; then p50, p90 and mean of the encoder, one decode step, the HAT
 * measure and translate, as a table and a chart. Each run is also saved under DEV/results/ as the
 * same tfmobile-bench/1 JSON the headless entry point writes (adb pull it, or `tfmobile` reads it).
 */
package dev.tfmobile.demo

import android.app.Activity
import android.os.Bundle
import android.view.WindowManager
import android.widget.Button
import android.widget.EditText
import android.widget.Spinner
import android.widget.TextView
import dev.tfmobile.core.CoreError
import dev.tfmobile.core.bench.BenchResult
import dev.tfmobile.core.bench.BenchSettings
import dev.tfmobile.core.bench.Stats
import dev.tfmobile.core.json.Json

class BenchmarkActivity : Activity() {
    private lateinit var pickers: ExportAndDelegate
    private lateinit var status: TextView
    private lateinit var table: TextView
    private lateinit var chart: LatencyChartView
    private lateinit var runButton: Button
    private val worker = liteRtWorker("tfmobile-bench")

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_benchmark)
        pickers = ExportAndDelegate(this, findViewById<Spinner>(R.id.export), findViewById<Spinner>(R.id.delegate))
        status = findViewById(R.id.status)
        table = findViewById(R.id.table)
        chart = findViewById(R.id.chart)
        runButton = findViewById(R.id.run)
        runButton.setOnClickListener { benchmark() }
    }

    override fun onResume() {
        super.onResume()
        val any = pickers.refresh()
        runButton.isEnabled = any
        if (!any) status.text = getString(R.string.no_exports, pickers.files.exports.path)
    }

    private fun number(id: Int, what: String): String {
        val text = findViewById<EditText>(id).text.toString().trim()
        if (text.isEmpty()) throw CoreError("$what is empty")
        return text
    }

    private fun settings(): BenchSettings {
        fun int(id: Int, what: String) = number(id, what).toIntOrNull() ?: throw CoreError("$what must be an integer")
        return BenchSettings(
            sourceLen = int(R.id.source_len, getString(R.string.source_len_label)),
            decodeSteps = int(R.id.decode_steps, getString(R.string.decode_steps_label)),
            warmup = int(R.id.warmup, getString(R.string.warmup_label)),
            runs = int(R.id.runs, getString(R.string.runs_label)),
            trim = number(R.id.trim, getString(R.string.trim_label)).toDoubleOrNull()
                ?: throw CoreError("${getString(R.string.trim_label)} must be a number"),
        )
    }

    private fun benchmark() {
        val export = pickers.export ?: return
        val exportName = pickers.exportName ?: return
        val delegateName = pickers.delegateName ?: return
        val settings = try { settings() } catch (e: CoreError) {
            status.text = getString(R.string.failed, e.message)
            return
        }
        runButton.isEnabled = false
        window.addFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON)
        status.text = getString(R.string.benchmarking, settings.warmup, settings.runs)
        worker.execute {
            try {
                val outcome = PhoneBench.run(export, pickers.files.delegate(delegateName), settings, null) { phase, done, total ->
                    runOnUiThread { status.text = "$phase $done/$total" }
                }
                val saved = pickers.files.newResult(exportName, delegateName)
                DeviceFiles.writeAtomically(saved, Json.write(outcome.record) + "\n")
                runOnUiThread {
                    show(outcome.result, outcome.record)
                    status.text = getString(R.string.saved_to, saved.path)
                }
            } catch (e: Throwable) {
                runOnUiThread { status.text = getString(R.string.failed, HeadlessBenchActivity.oneLine(e)) }
            }
            runOnUiThread {
                runButton.isEnabled = true
                window.clearFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON)
            }
        }
    }

    private fun show(result: BenchResult, record: Map<String, Any?>) {
        val rows = listOf("encoder" to result.encoder, "decode_step" to result.decodeStep, "hat" to result.hat,
                          "translate" to result.translate)
        val text = StringBuilder("%-12s %10s %10s %10s\n".format("measure", "p50 ms", "p90 ms", "mean ms"))
        for ((name, stats) in rows) {
            if (stats == null) continue
            text.append("%-12s %10.3f %10.3f %10.3f\n".format(name, stats.p50Ms, stats.p90Ms, stats.meanMs))
        }
        result.targetLengthMean?.let { text.append("translate target length mean: $it\n") }
        result.translateSkipped?.let { text.append("translate $it\n") }
        (record["accelerators"] as? Map<*, *>)?.forEach { (signature, info) ->
            val m = info as? Map<*, *> ?: return@forEach
            text.append("\n$signature: ${m["requested"]}, fully accelerated: ${m["fully_accelerated"] ?: "not reported"}")
            m["note"]?.let { text.append(" ($it)") }
        }
        table.text = text.toString()
        chart.show(rows.mapNotNull { (name, stats: Stats?) ->
            stats?.let { LatencyChartView.Group(name, it.p50Ms, it.p90Ms, it.meanMs) }
        })
    }

    override fun onDestroy() {
        worker.shutdown()
        super.onDestroy()
    }
}
