using BenchmarkDotNet.Running;

// CPU benchmarks (BenchmarkDotNet). Run: dotnet run -c Release --project bench/Whittle.Native.Bench -- --filter '*'
if (args is ["attention-quick", .. var attentionArgs])
{
    Whittle.Native.Bench.AttentionBench.Quick(attentionArgs is [var r] ? int.Parse(r) : 7);
    return;
}
if (args is ["tokenizer-quick"]) { TokenizerBench.Quick(); return; }
if (args is ["search-speed", .. var searchArgs]) { Whittle.Native.Bench.SearchSpeedBench.Run(searchArgs); return; }
if (args is ["tokenizers-compare", .. var compareArgs]) { TokenizerCompare.Run(compareArgs); return; }
if (args is ["gemm-bf16-quick", .. var bf16Args])
{
    Whittle.Native.Bench.Bf16GemmBench.Quick(bf16Args is [var rounds] ? int.Parse(rounds) : 9);
    return;
}
if (args is ["gemm-quick", .. var rest])
{
    // gemm-quick [scalar|avx256|avx512]: pin our micro-kernel (one the machine runs) to see what a machine without it would get.
    if (rest is [var kernel]) Whittle.Native.Cpu.Gemm.ForceKernel = Enum.Parse<Whittle.Native.Cpu.Gemm.Kernel>(kernel, ignoreCase: true);
    Whittle.Native.Bench.GemmBench.Quick();
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
