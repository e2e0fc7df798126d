using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Whittle.Native.Cpu;

namespace Whittle.Native.Bench;

// Policy: times Gemm.Sgemm on the engine's hot linear-layer shapes against a naive-but-vectorised baseline
// (one TensorPrimitives.Dot per output element, rows spread over threads with Parallel.For like Sgemm), so the ratio
// measures packing, blocking and register tiling rather than threading. The baseline gets both operands already laid
// out with k contiguous (transposed once in setup, not timed), which favours it. A short monitoring job keeps a full
// run to a couple of minutes; a GFLOP/s column (2 m n k / mean time) is added to the summary.
//   dotnet run -c Release --project bench/Whittle.Native.Bench -- --filter '*GemmBench*'
[Config(typeof(GemmBenchConfig))]
public unsafe class GemmBench
{
    /// <summary>One GEMM shape: C (M, N) with reduction K; TransA/TransB as Sgemm takes them.</summary>
    public sealed record Shape(int M, int N, int K, bool TransA, bool TransB)
    {
        public double Flops => 2.0 * M * N * K;
        public override string ToString() => $"{M}x{N}x{K} {(TransA ? 'T' : 'N')}{(TransB ? 'T' : 'N')}";
    }

    public static IEnumerable<Shape> Shapes =>
    [
        new(2048, 768, 768, false, true),   // attention projection forward: x (2048, 768) @ W^T, W (768, 768)
        new(2048, 3072, 768, false, true),  // MLP up-projection forward: W (3072, 768)
        new(768, 768, 2048, true, false),   // weight gradient dW = dy^T @ x over 2048 tokens
    ];

    [ParamsSource(nameof(Shapes))]
    public Shape S { get; set; } = Shapes.First();

    float* _a, _b, _c, _aRows, _bRows;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(42);
        long aLen = (long)S.M * S.K, bLen = (long)S.K * S.N;
        _a = Alloc(aLen, rng); _b = Alloc(bLen, rng); _c = Alloc((long)S.M * S.N, rng);
        // Baseline operands: op(A) as (M, K) rows and op(B)^T as (N, K) rows, so each output is one contiguous dot.
        _aRows = Alloc(aLen, null); _bRows = Alloc(bLen, null);
        for (int i = 0; i < S.M; i++)
            for (int p = 0; p < S.K; p++)
                _aRows[(long)i * S.K + p] = S.TransA ? _a[(long)p * S.M + i] : _a[(long)i * S.K + p];
        for (int j = 0; j < S.N; j++)
            for (int p = 0; p < S.K; p++)
                _bRows[(long)j * S.K + p] = S.TransB ? _b[(long)j * S.K + p] : _b[(long)p * S.N + j];
    }

    static float* Alloc(long count, Random? rng)
    {
        var p = (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
        for (long i = 0; i < count; i++) p[i] = rng is null ? 0f : (float)(rng.NextDouble() * 2 - 1);
        return p;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var p in new[] { (nint)_a, (nint)_b, (nint)_c, (nint)_aRows, (nint)_bRows }) NativeMemory.AlignedFree((void*)p);
    }

    [Benchmark]
    public void Sgemm() =>
        Gemm.Sgemm(S.TransA, S.TransB, S.M, S.N, S.K, 1f, _a, S.TransA ? S.M : S.K, _b, S.TransB ? S.K : S.N, 0f, _c, S.N);

    [Benchmark(Baseline = true)]
    public void DotPerElement()
    {
        nint a = (nint)_aRows, b = (nint)_bRows, c = (nint)_c;
        int n = S.N, k = S.K;
        Parallel.For(0, S.M, i =>
        {
            var row = new ReadOnlySpan<float>((float*)a + (long)i * k, k);
            float* cRow = (float*)c + (long)i * n;
            for (int j = 0; j < n; j++) cRow[j] = TensorPrimitives.Dot(row, new ReadOnlySpan<float>((float*)b + (long)j * k, k));
        });
    }
}

/// <summary>Short monitoring job (no pilot stage, one call per iteration: each call is already 1-10 ms) plus GFLOP/s.</summary>
public sealed class GemmBenchConfig : ManualConfig
{
    public GemmBenchConfig()
    {
        AddJob(Job.Default.WithStrategy(RunStrategy.Throughput)
            .WithLaunchCount(1).WithWarmupCount(3).WithIterationCount(8).WithId("short"));
        AddColumn(new GflopsColumn());
    }
}

/// <summary>2 m n k / mean time, from the Shape parameter of each case.</summary>
public sealed class GflopsColumn() : RateColumn("GFLOP/s", "2*M*N*K / mean time, in 1e9 floating-point operations per second")
{
    protected override string? Rate(BenchmarkCase c, double meanNs) =>
        c.Parameters["S"] is GemmBench.Shape shape ? (shape.Flops / meanNs).ToString("F1") : null;   // flops per ns = GFLOP/s
}

/// <summary>A custom column derived from each case's mean time (GFLOP/s, tokens/s): the IColumn plumbing, once.</summary>
public abstract class RateColumn(string name, string legend) : IColumn
{
    public string Id => GetType().Name;
    public string ColumnName => name;
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => legend;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) =>
        summary[benchmarkCase]?.ResultStatistics is { } stats ? Rate(benchmarkCase, stats.Mean) ?? "-" : "-";
    /// <summary>The value from the mean time in nanoseconds, or null when the case has no shape to compute it from.</summary>
    protected abstract string? Rate(BenchmarkCase benchmarkCase, double meanNs);
}
