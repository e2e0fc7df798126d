namespace Whittle.Native.Cpu;

// Placeholder reference GEMM (replaced by the blocked SIMD version).
internal static unsafe class Gemm
{
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha, float* a, long lda, float* b, long ldb, float beta, float* c, long ldc)
    {
        Parallel.For(0, m, i =>
        {
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += (double)(transA ? a[p * lda + i] : a[i * lda + p]) * (transB ? b[j * ldb + p] : b[p * ldb + j]);
                float prev = beta == 0 ? 0 : beta * c[i * ldc + j];
                c[i * ldc + j] = alpha * (float)s + prev;
            }
        });
    }
}
