using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using Whittle.Native.Tensors;
using Tensor = Whittle.Native.Tensors.Tensor;

namespace Whittle.Native.Distillation;

/// <summary>
/// Builds the top-k teacher summary that <see cref="IBackend.Distillation"/> accepts (<see cref="DistillTeacher.TopK"/>)
/// from full teacher logits on the host. Policy: log-probabilities at the loss's temperature τ computed in double;
/// the k largest by value, ties broken by the smaller id (so the summary is deterministic), found by a partial selection
/// (a k-entry heap, O(V log k) per row, not a sort of the vocabulary); the tail mass is summed over the ids left out,
/// not taken as 1 - Σ top (which would lose a small tail to rounding). Rows are independent and spread over threads.
/// </summary>
public static class TeacherTopK
{
    /// <summary>logits (N, V) f32 (any device; read to the host) → (log-probs (N, k) f32, ids (N, k) i32, tail (N) f32), all new CPU
    /// tensors.</summary>
    public static unsafe (Tensor LogProbs, Tensor Ids, Tensor Tail) FromLogits(Tensor logits, int k, float temperature)
    {
        var (n, v) = ArgCheck.Matrix(logits, nameof(logits));
        if (k <= 0 || k > v) throw new ArgumentOutOfRangeException(nameof(k), $"top-k: k must be in [1, {v}] (the vocabulary), got {k}");
        if (!(temperature > 0) || !float.IsFinite(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), $"temperature must be a positive finite number, got {temperature}");
        // A contiguous CPU tensor is read in place; anything else is first copied to a host array.
        bool inPlace = logits.Device == Device.Cpu && logits.IsContiguous;
        var copy = inPlace ? null : logits.ToFloatArray();
        var lp = new float[(long)n * k]; var ids = new int[(long)n * k]; var tail = new float[n];
        fixed (float* pCopy = copy)
        {
            nint all = inPlace ? logits.Pointer : (nint)pCopy;
            Parallel.For(0, n, () => new Row(v, k), (i, _, w) =>
            {
                w.Summarize((float*)all + (long)i * v, temperature, lp.AsSpan(i * k, k), ids.AsSpan(i * k, k), out tail[i]);
                return w;
            }, _ => { });
        }
        return (Tensor.FromArray(lp, n, k), Tensor.FromArray(ids, n, k), Tensor.FromArray(tail, n));
    }

    /// <summary>One worker's scratch: (V) log q and exp rows and a k-entry min-heap of ids (the worst kept id at the root).</summary>
    sealed unsafe class Row(int v, int k)
    {
        readonly double[] _logq = new double[v], _e = new double[v];
        readonly int[] _heap = new int[k];
        float* _row;

        /// <summary>A row of V logits → its k top log-probabilities, their ids and the tail mass.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Summarize(float* logits, float temperature, Span<float> lp, Span<int> ids, out float tail)
        {
            _row = logits;
            var row = new ReadOnlySpan<float>(logits, _logq.Length);
            var logq = _logq.AsSpan();
            HostVectors.WidenScaled(logits, 1.0 / temperature, logq);
            double max = TensorPrimitives.Max(logq);
            TensorPrimitives.Subtract(logq, max, _e);
            TensorPrimitives.Exp(_e, _e);                  // e^(x/τ − max): normalised by their sum, the teacher's probabilities
            double sum = TensorPrimitives.Sum(_e), lse = max + Math.Log(sum);

            // Scaling by 1/τ > 0 keeps the order of the f32 logits, so the selection compares the logits themselves.
            int k = _heap.Length, size = 0;
            float worst = float.NegativeInfinity;   // the root's logit once the heap is full: most ids fail this one compare
            for (int j = 0; j < row.Length; j++)
            {
                if (size < k) { _heap[size] = j; SiftUp(size++); if (size == k) worst = row[_heap[0]]; }
                else if (row[j] >= worst && Better(j, _heap[0])) { _heap[0] = j; SiftDown(0, k); worst = row[_heap[0]]; }
            }
            var top = _heap.AsSpan();
            top.Sort((a, b) => Better(a, b) ? -1 : Better(b, a) ? 1 : 0);

            for (int r = 0; r < k; r++) { ids[r] = top[r]; lp[r] = (float)(logq[top[r]] - lse); _e[top[r]] = 0; }
            tail = (float)(TensorPrimitives.Sum(_e) / sum);
        }

        /// <summary>a ranks above b: larger logit, or the same logit and the smaller id.</summary>
        bool Better(int a, int b)
        {
            float x = _row[a], y = _row[b];
            return x > y || (x == y && a < b);
        }

        void SiftUp(int i)
        {
            while (i > 0)
            {
                int parent = (i - 1) / 2;
                if (!Better(_heap[parent], _heap[i])) break;
                (_heap[parent], _heap[i]) = (_heap[i], _heap[parent]);
                i = parent;
            }
        }

        void SiftDown(int i, int size)
        {
            while (true)
            {
                int l = 2 * i + 1, r = l + 1, worst = i;
                if (l < size && Better(_heap[worst], _heap[l])) worst = l;
                if (r < size && Better(_heap[worst], _heap[r])) worst = r;
                if (worst == i) return;
                (_heap[worst], _heap[i]) = (_heap[i], _heap[worst]);
                i = worst;
            }
        }
    }
}
