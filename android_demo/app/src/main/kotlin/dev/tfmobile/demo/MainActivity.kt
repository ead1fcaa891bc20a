/*
 * The translate screen: an export and a delegate config, a sentence in, its translation out, with the
 * milliseconds text to text (SentencePiece, encode, greedy decode_step loop, detokenize; the model is
 * compiled once per export and config, before the clock starts). The loop is the core's Translator,
 * the same "steps" mode as the host's LiteTranslator, so it runs on the GPU as well.
 */
package dev.tfmobile.demo

import android.app.Activity
import android.content.Intent
import android.os.Bundle
import android.widget.Button
import android.widget.EditText
import android.widget.Spinner
import android.widget.TextView
import dev.tfmobile.core.CoreError
import dev.tfmobile.core.Translator
import dev.tfmobile.core.meta.ModelMeta
import java.io.File

class MainActivity : Activity() {
    private lateinit var pickers: ExportAndDelegate
    private lateinit var source: EditText
    private lateinit var target: TextView
    private lateinit var status: TextView
    private lateinit var translateButton: Button
    private val worker = liteRtWorker("tfmobile-translate")

    /** The compiled export, touched on the worker thread only. */
    private class Loaded(val key: String, val engine: LiteRtEngine, val translator: Translator)
    private var loaded: Loaded? = null

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        pickers = ExportAndDelegate(this, findViewById<Spinner>(R.id.export), findViewById<Spinner>(R.id.delegate))
        source = findViewById(R.id.source)
        target = findViewById(R.id.target)
        status = findViewById(R.id.status)
        translateButton = findViewById(R.id.translate)
        translateButton.setOnClickListener { translate() }
        findViewById<Button>(R.id.open_benchmark).setOnClickListener {
            startActivity(Intent(this, BenchmarkActivity::class.java))
        }
    }

    override fun onResume() {
        super.onResume()
        val any = pickers.refresh()
        translateButton.isEnabled = any
        if (!any) status.text = getString(R.string.no_exports, pickers.files.exports.path)
    }

    private fun translate() {
        val export = pickers.export ?: return
        val delegate = pickers.delegateName ?: return
        val text = source.text.toString()
        translateButton.isEnabled = false
        status.text = getString(R.string.loading, export.name, delegate)
        worker.execute {
            val message = try {
                val translator = translatorFor(export, delegate)
                runOnUiThread { status.text = getString(R.string.translating) }
                val result = translator.translate(text)
                runOnUiThread { target.text = result.text }
                getString(R.string.translated, result.ids.size, result.elapsedMs, delegate)
            } catch (e: Throwable) {
                getString(R.string.failed, HeadlessBenchActivity.oneLine(e))
            }
            runOnUiThread {
                status.text = message
                translateButton.isEnabled = true
            }
        }
    }

    /** On the worker: the translator of this export and config, compiling it when the choice changed. */
    private fun translatorFor(export: File, delegate: String): Translator {
        val key = "${export.path}|$delegate"
        loaded?.let { if (it.key == key) return it.translator }
        loaded?.engine?.close()
        loaded = null
        val meta = ModelMeta.read(export)
        val model = meta.modelPath ?: throw CoreError("$export has no model file")
        val engine = LiteRtEngine.open(model, pickers.files.delegate(delegate))
        val translator = try { Translator.open(meta, engine) } catch (e: Throwable) { engine.close(); throw e }
        loaded = Loaded(key, engine, translator)
        return translator
    }

    override fun onDestroy() {
        worker.execute {
            loaded?.engine?.close()
            loaded = null
        }
        worker.shutdown()
        super.onDestroy()
    }
}
