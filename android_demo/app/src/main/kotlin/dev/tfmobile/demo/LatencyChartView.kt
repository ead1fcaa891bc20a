package dev.tfmobile.demo

import android.content.Context
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.util.AttributeSet
import android.view.View
import kotlin.math.max

/**
 * A small grouped bar chart of one benchmark: for each measure (encoder, decode step, HAT, translate)
 * three bars, p50, p90 and mean, in milliseconds on one linear axis starting at 0.
 *
 * The measures differ by orders of magnitude (one decode step vs. a whole HAT run), so each group
 * also prints its p50 above the bars: the chart shows proportions, the labels the numbers.
 */
class LatencyChartView @JvmOverloads constructor(
    context: Context,
    attrs: AttributeSet? = null,
) : View(context, attrs) {

    /** One group of bars: a measure's p50, p90 and mean in ms. */
    class Group(val label: String, val p50: Double, val p90: Double, val mean: Double)

    private var groups: List<Group> = emptyList()
    private val density = resources.displayMetrics.density
    private val seriesColors = intArrayOf(Color.rgb(33, 102, 172), Color.rgb(178, 24, 43), Color.rgb(90, 90, 90))
    private val seriesNames = arrayOf("p50", "p90", "mean")
    private val bar = Paint(Paint.ANTI_ALIAS_FLAG)
    private val axis = Paint(Paint.ANTI_ALIAS_FLAG).apply { color = Color.DKGRAY; strokeWidth = density }
    private val text = Paint(Paint.ANTI_ALIAS_FLAG).apply { color = Color.BLACK; textSize = 11 * density }

    fun show(newGroups: List<Group>) {
        groups = newGroups
        contentDescription = newGroups.joinToString("; ") { "${it.label} p50 ${"%.2f".format(it.p50)} ms" }
        invalidate()
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        if (groups.isEmpty()) return
        val pad = 8 * density
        val legendH = text.textSize + pad
        val labelH = text.textSize + pad
        val top = legendH + text.textSize + pad // room for the value labels above the tallest bar
        val bottom = height - labelH
        val left = pad
        val right = width - pad
        val maxMs = max(groups.maxOf { maxOf(it.p50, it.p90, it.mean) }, 1e-9)

        // Legend: one coloured square and name per series.
        var x = left
        for (s in seriesNames.indices) {
            bar.color = seriesColors[s]
            canvas.drawRect(x, pad, x + text.textSize, pad + text.textSize, bar)
            x += text.textSize + pad / 2
            canvas.drawText(seriesNames[s], x, pad + text.textSize * 0.9f, text)
            x += text.measureText(seriesNames[s]) + pad * 2
        }

        canvas.drawLine(left, bottom, right, bottom, axis)
        val groupW = (right - left) / groups.size
        val barW = groupW * 0.8f / 3
        for ((g, group) in groups.withIndex()) {
            val gx = left + g * groupW + groupW * 0.1f
            val values = doubleArrayOf(group.p50, group.p90, group.mean)
            for (s in values.indices) {
                bar.color = seriesColors[s]
                val h = ((bottom - top) * (values[s] / maxMs)).toFloat()
                canvas.drawRect(gx + s * barW, bottom - h, gx + (s + 1) * barW - density, bottom, bar)
            }
            val barTop = bottom - ((bottom - top) * (values.max() / maxMs)).toFloat()
            val value = "%.2f".format(group.p50)
            canvas.drawText(value, gx + (3 * barW - text.measureText(value)) / 2, barTop - pad / 2, text)
            val labelX = gx + (3 * barW - text.measureText(group.label)) / 2
            canvas.drawText(group.label, labelX, height - pad / 2, text)
        }
    }
}
