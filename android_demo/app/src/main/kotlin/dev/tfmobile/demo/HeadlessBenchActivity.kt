/*
 * The headless benchmark that the host's `tfmobile bench MODEL --adb --delegate CFG` starts:
 *
 *   adb shell am start -W -S -n dev.tfmobile.demo/.HeadlessBenchActivity \
 *     --es model DEV/exports/<name>/model.tflite --es delegate DEV/delegates/<cfg>.json \
 *     --es out DEV/results/<id>.json --ei runs N --ei warmup N --ei source_len N --ei decode_steps N \
 *     --ef trim F [--es device KEY]
 *
 * It benchmarks on a background thread, writes the tfmobile-bench/1 JSON to <out>.tmp and renames it to
 * <out>; on any failure it writes one line to <out>.error the same way. Then it finishes itself. The
 * host polls for <out> or <out>.error, pulls, validates against bench_result.schema.json and prints the
 * host's table. Paths must lie in the app's folder (DeviceFiles); `delegate` may also be the name of a
 * bundled config (pixel8-gpu-fp16).
 */
package dev.tfmobile.demo

import android.app.Activity
import android.os.Bundle
import android.util.Log
import android.view.WindowManager
import dev.tfmobile.core.CoreError
import dev.tfmobile.core.bench.BenchSettings
import dev.tfmobile.core.json.Json
import java.io.File

class HeadlessBenchActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        window.addFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON) // no sleep in the middle of a run
        val out = try {
            val files = DeviceFiles(this)
            files.inside(File(intent.getStringExtra("out") ?: throw CoreError("missing --es out DEV/results/<id>.json")), "out")
        } catch (e: CoreError) {
            // Without a valid <out> there is nowhere to report to; the host times out and says so.
            Log.e(TAG, e.message ?: "bad out")
            finish()
            return
        }
        val error = File(out.path + ".error")
        // A stale result of an earlier run under the same id would fool the host's poll.
        out.delete()
        error.delete()
        Thread({
            try {
                val record = benchmark()
                DeviceFiles.writeAtomically(out, Json.write(record) + "\n")
                Log.i(TAG, "wrote $out")
            } catch (e: Throwable) {
                val line = oneLine(e)
                Log.e(TAG, line, e)
                try { DeviceFiles.writeAtomically(error, line + "\n") } catch (w: CoreError) { Log.e(TAG, w.message ?: "") }
            }
            runOnUiThread { finish() }
        }, "tfmobile-bench").start()
    }

    private fun benchmark(): Map<String, Any?> {
        val files = DeviceFiles(this)
        val model = files.inside(File(intent.getStringExtra("model") ?: throw CoreError("missing --es model DEV/exports/<name>/model.tflite")),
                                 "model")
        val delegate = files.delegate(intent.getStringExtra("delegate") ?: throw CoreError("missing --es delegate DEV/delegates/<cfg>.json"))
        val defaults = BenchSettings()
        val settings = BenchSettings(
            sourceLen = intent.getIntExtra("source_len", defaults.sourceLen),
            decodeSteps = intent.getIntExtra("decode_steps", defaults.decodeSteps),
            warmup = intent.getIntExtra("warmup", defaults.warmup),
            runs = intent.getIntExtra("runs", defaults.runs),
            // --ef gives a float; its shortest decimal (0.1, not 0.10000000149) is what the host meant
            trim = if (intent.hasExtra("trim")) intent.getFloatExtra("trim", 0f).toString().toDouble() else defaults.trim,
        )
        return PhoneBench.run(model, delegate, settings, intent.getStringExtra("device")) { phase, done, total ->
            if (done == total || done % 10 == 0) Log.i(TAG, "$phase $done/$total")
        }.record
    }

    companion object {
        private const val TAG = "tfmobile"

        /** An error as the one line the host prints: CoreError's message as it is, anything else with its type. */
        fun oneLine(e: Throwable): String {
            val message = if (e is CoreError) e.message else "${e.javaClass.simpleName}: ${e.message}"
            return (message ?: e.javaClass.simpleName).lines().joinToString(" ") { it.trim() }.trim()
        }
    }
}
