using Whittle.Native.Cuda;
using Whittle.Native.Verification;

namespace Whittle.Cli;

/// <summary>
/// <c>whittle bench kernels</c>: the <see cref="KernelBench"/> results as JSON (the shape, the measured ceilings, one
/// object per op and case) or as a table. A rate that cannot be computed (no ceiling of that kind) is null.
/// </summary>
static class KernelsReport
{
    public static JsonObject Run(IBackend backend, GptNeoXConfig config, int batch, int seqLen, int repeats, int warmup)
    {
        var shape = KernelShape.Of(config, batch, seqLen);
        using var bench = new KernelBench(backend, repeats, warmup);
        // On the software GPU speed means nothing and an 8192³ GEMM takes hours: small ceilings keep `bench kernels`
        // there a check that every op runs at the shape (the GPU kit's first plan is tried end to end on it).
        var ceilings = SoftwareGpu.IsActive ? bench.MeasureCeilings(gemmSize: 128, copyBytes: 1 << 20) : bench.MeasureCeilings();
        var timings = bench.Run(shape);

        var ops = new JsonArray();
        double stepMs = 0;
        foreach (var t in timings)
        {
            stepMs += t.CallsPerTrainStep * t.Milliseconds;
            double fraction = t.FractionOf(ceilings);
            ops.Add((JsonNode)new JsonObject
            {
                ["op"] = t.Op,
                ["case"] = t.Case,
                ["ms"] = Sig(t.Milliseconds),
                ["bytes"] = t.Bytes > 0 ? t.Bytes : null,
                ["flops"] = t.Flops > 0 ? t.Flops : null,
                ["gb_per_s"] = t.Bytes > 0 ? Sig(t.GigabytesPerSecond) : null,
                ["tflop_per_s"] = t.Flops > 0 ? Sig(t.TeraflopsPerSecond) : null,
                ["ceiling"] = t.Ceiling,
                ["fraction_of_ceiling"] = double.IsFinite(fraction) ? Sig(fraction) : null,
                ["formula"] = t.Formula,
                ["calls_per_train_step"] = t.CallsPerTrainStep,
            });
        }
        var ceil = new JsonArray();
        foreach (var c in ceilings)
            ceil.Add((JsonNode)new JsonObject { ["name"] = c.Name, ["value"] = Sig(c.Value), ["unit"] = c.Unit, ["how"] = c.How });
        return new JsonObject
        {
            ["mode"] = "kernels",
            ["shape"] = new JsonObject
            {
                ["batch"] = shape.Batch, ["seq_len"] = shape.SeqLen, ["rows"] = shape.Rows, ["hidden"] = shape.Hidden,
                    ["heads"] = shape.Heads,
                ["head_size"] = shape.HeadSize, ["rotary_dims"] = shape.RotaryDims, ["intermediate"] = shape.Intermediate,
                    ["vocab"] = shape.Vocab,
                ["layers"] = shape.Layers, ["parameters"] = shape.Parameters,
            },
            ["ceilings"] = ceil,
            ["ops"] = ops,
            // Σ calls × median time: the kernel time of one training step if nothing else cost anything
            ["kernel_ms_per_train_step"] = Sig(stepMs),
        };
    }

    /// <summary>Four significant digits: enough for any rate here, at any size of op.</summary>
    static double Sig(double x) =>
        x == 0 || !double.IsFinite(x) ? x : Math.Round(x, Math.Clamp(3 - (int)Math.Floor(Math.Log10(Math.Abs(x))), 0, 15));

    public static void Print(JsonObject r)
    {
        Console.WriteLine($"device   {r["device"]}");
        Console.WriteLine($"shape    {r["config"]}: {r["shape"]!.ToJsonString()}");
        foreach (var c in r["ceilings"]!.AsArray())
            Console.WriteLine($"ceiling  {c!["name"],-10} {(double)c["value"]!,10:0.###} {c["unit"],-8} {c["how"]}");
        Console.WriteLine();
        Console.WriteLine($"{"op",-18} {"ms",10} {"GB/s",9} {"TFLOP/s",8} {"of ceil",8} {"/step",5}  case");
        foreach (var o in r["ops"]!.AsArray())
        {
            string Rate(string key) => o![key] is { } v ? ((double)v).ToString("G3") : "";
            string frac = o!["fraction_of_ceiling"] is { } f ? $"{(double)f:P0} " +
                $"{(o["ceiling"]!.ToString() == KernelBench.CopyCeiling ? "mem" : o["ceiling"]!.ToString().Replace("_gemm", ""))}" : "";
            Console.WriteLine($"{o["op"],-18} {(double)o["ms"]!,10:0.0000} {Rate("gb_per_s"),9} {Rate("tflop_per_s"),8} {frac,8} " +
                $"{o["calls_per_train_step"],5}  {o["case"]}");
        }
        Console.WriteLine($"kernel time of one training step (Σ calls × ms): {r["kernel_ms_per_train_step"]} ms");
    }
}
