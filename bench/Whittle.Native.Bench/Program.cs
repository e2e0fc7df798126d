using BenchmarkDotNet.Running;

// CPU benchmarks (BenchmarkDotNet). Run: dotnet run -c Release --project bench/Whittle.Native.Bench -- --filter '*'
if (args is ["tokenizer-quick"]) { TokenizerBench.Quick(); return; }
if (args is ["gemm-quick"]) { Whittle.Native.Bench.GemmBench.Quick(); return; }
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
