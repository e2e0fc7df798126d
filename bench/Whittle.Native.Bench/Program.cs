using BenchmarkDotNet.Running;

// CPU benchmarks (BenchmarkDotNet). Run: dotnet run -c Release --project bench/Whittle.Native.Bench -- --filter '*'
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
