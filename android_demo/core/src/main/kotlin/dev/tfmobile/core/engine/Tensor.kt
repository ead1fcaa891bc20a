/*
 * Tensors as the signatures of an export exchange them: a fixed shape and a flat row-major buffer of
 * float32 or int32 (the only dtypes the translator contract uses: ids, positions and lengths are int32,
 * masks, cross keys/values, caches and logits float32).
 */
package dev.tfmobile.core.engine

import dev.tfmobile.core.CoreError

enum class DType(val numpyName: String) {
    FLOAT32("float32"), INT32("int32");

    companion object {
        /** The dtype of a numpy name as model_meta.json records it ("float32", "int32"). */
        fun of(name: String): DType =
            entries.firstOrNull { it.numpyName == name }
                ?: throw CoreError("dtype $name is not one the translator contract uses (float32, int32)")
    }
}

/** The shape and dtype of one signature input or output. */
class TensorSpec(shape: IntArray, val dtype: DType) {
    private val dims = shape.copyOf()
    val shape: IntArray get() = dims.copyOf()
    val rank: Int get() = dims.size
    /** Elements in a tensor of this spec. */
    val size: Int get() = dims.fold(1) { a, b -> a * b }

    fun dim(i: Int): Int = dims[if (i < 0) dims.size + i else i]

    override fun equals(other: Any?) = other is TensorSpec && other.dtype == dtype && other.dims.contentEquals(dims)
    override fun hashCode() = dims.contentHashCode() * 31 + dtype.hashCode()
    override fun toString() = "${dims.joinToString(", ", "[", "]")} ${dtype.numpyName}"
}

/** One tensor: exactly one of `floats` (FLOAT32) and `ints` (INT32), with as many elements as the shape has. */
class Tensor(shape: IntArray, val floats: FloatArray? = null, val ints: IntArray? = null) {
    val spec: TensorSpec = TensorSpec(shape, if (floats != null) DType.FLOAT32 else DType.INT32)
    val shape: IntArray get() = spec.shape
    val dtype: DType get() = spec.dtype
    val size: Int get() = spec.size

    init {
        if ((floats == null) == (ints == null)) throw CoreError("a tensor holds either floats or ints")
        val n = floats?.size ?: ints!!.size
        if (n != spec.size) throw CoreError("a tensor of shape ${shape.joinToString(", ", "[", "]")} needs ${spec.size} values, got $n")
    }

    /** The values as floats (ints widened), for argmax over logits whatever their dtype. */
    fun floatAt(i: Int): Float = floats?.get(i) ?: ints!![i].toFloat()

    companion object {
        fun ints(shape: IntArray, values: IntArray) = Tensor(shape, ints = values)
        fun floats(shape: IntArray, values: FloatArray) = Tensor(shape, floats = values)

        /** A tensor of zeros of this spec (the caches before the first decode_step). */
        fun zeros(spec: TensorSpec) = when (spec.dtype) {
            DType.FLOAT32 -> Tensor(spec.shape, floats = FloatArray(spec.size))
            DType.INT32 -> Tensor(spec.shape, ints = IntArray(spec.size))
        }

        /** A tensor of `spec` filled from int values (ids, token, position), in the spec's dtype. */
        fun ofInts(spec: TensorSpec, values: IntArray): Tensor {
            if (values.size != spec.size) throw CoreError("$spec needs ${spec.size} values, got ${values.size}")
            return when (spec.dtype) {
                DType.INT32 -> Tensor(spec.shape, ints = values.copyOf())
                DType.FLOAT32 -> Tensor(spec.shape, floats = FloatArray(values.size) { values[it].toFloat() })
            }
        }
    }
}
