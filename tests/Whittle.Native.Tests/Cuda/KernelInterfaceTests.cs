using System.Reflection;
using System.Text.RegularExpressions;
using Whittle.Native.Cuda;
using Whittle.Native.Tensors;

namespace Whittle.Native.Tests.Cuda;

/// <summary>
/// The C# side of every kernel launch against the kernels' own source. The signatures of every <c>extern "C" __global__</c>
/// function in kernels/*.cu are parsed here (types, and the layout C gives the parameter block, structs included);
/// each launcher method (Cuda/Launchers, one class per .cu file, same name) is invoked with distinct sentinel values
/// through a recording <see cref="IKernelLauncher"/>, and the argument block it packs must have the kernel's count,
/// sizes and offsets, with the C# arguments in the kernel's order. Also: every kernel has a launcher, the launch
/// geometry stays within the device limits, and the kernel constants reach the software GPU's build unchanged.
/// </summary>
public partial class KernelInterfaceTests
{
    sealed record CParam(string Type, string Name, int Size, int Align, bool Pointer);
    sealed record CKernel(string File, string Name, IReadOnlyList<CParam> Params);

    [GeneratedRegex(@"extern\s+""C""\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+(\w+)\s*\(([^)]*)\)")]
    private static partial Regex KernelSignature();
    [GeneratedRegex(@"struct\s+(\w+)\s*\{([^}]*)\}")]
    private static partial Regex StructDefinition();

    static readonly Dictionary<string, (int Size, int Align)> Scalars = new()
    {
        ["int"] = (4, 4), ["unsigned int"] = (4, 4), ["unsigned"] = (4, 4), ["float"] = (4, 4), ["double"] = (8, 8),
        ["long long"] = (8, 8), ["unsigned long long"] = (8, 8), ["unsigned short"] = (2, 2), ["short"] = (2, 2),
    };

    /// <summary>C layout of the structs a kernel file defines (fields of scalar types, arrays of them).</summary>
    static Dictionary<string, (int Size, int Align)> Structs(string source)
    {
        var structs = new Dictionary<string, (int, int)>();
        foreach (Match m in StructDefinition().Matches(source))
        {
            int offset = 0, align = 1;
            foreach (var decl in m.Groups[2].Value.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                var type = Scalars.Keys.OrderByDescending(k => k.Length).First(k => decl.StartsWith(k + " ", StringComparison.Ordinal));
                var (size, a) = Scalars[type];
                foreach (var name in decl[type.Length..].Split(',', StringSplitOptions.TrimEntries))
                {
                    var arr = Regex.Match(name, @"\[(\d+)\]");
                    int count = arr.Success ? int.Parse(arr.Groups[1].Value) : 1;
                    offset = (offset + a - 1) / a * a + size * count;
                    align = Math.Max(align, a);
                }
            }
            structs[m.Groups[1].Value] = ((offset + align - 1) / align * align, align);
        }
        return structs;
    }

    static IReadOnlyList<CKernel> Kernels()
    {
        var list = new List<CKernel>();
        var headerStructs = KernelCompiler.KernelFiles.Append("common.cuh").SelectMany(
            f => Structs(KernelCompiler.ReadSource(f))).DistinctBy(kv => kv.Key)
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        foreach (var file in KernelCompiler.KernelFiles)
        {
            var source = KernelCompiler.ReadSource(file);
            foreach (Match m in KernelSignature().Matches(source))
            {
                var ps = new List<CParam>();
                foreach (var raw in m.Groups[2].Value.Split(',', StringSplitOptions.TrimEntries))
                {
                    var p = Regex.Replace(raw, @"\s+", " ").Replace("const ", "").Replace("__restrict__", "").Trim();
                    var pm = Regex.Match(p, @"^(.*?)(\**)\s*(\w+)$");
                    string type = pm.Groups[1].Value.Trim();
                    bool pointer = pm.Groups[2].Value.Length > 0 || type.EndsWith('*');
                    var (size, align) = pointer ? (8, 8) : Scalars.TryGetValue(type, out var s) ? s : headerStructs[type];
                    ps.Add(new CParam(type, pm.Groups[3].Value, size, align, pointer));
                }
                list.Add(new CKernel(file, m.Groups[1].Value, ps));
            }
        }
        return list;
    }

    sealed class Recorder : IKernelLauncher
    {
        readonly KernelArgs _args = new();
        public string? File, Kernel;
        public LaunchShape Shape;
        public KernelArgs Args() => _args.Reset();
        public void Launch(string file, string kernel, LaunchShape shape, KernelArgs args) { File = file; Kernel = kernel; Shape = shape; }
        public KernelArgs Packed => _args;
    }

    static IEnumerable<MethodInfo> LauncherMethods() => typeof(IKernelLauncher).Assembly.GetTypes()
        .Where(t => t.Namespace == "Whittle.Native.Cuda.Launchers")
        .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static))
        .Where(m => m.GetCustomAttribute<KernelsAttribute>() is not null);

    /// <summary>A value of <paramref name="type"/> that no other argument of the call has, and its bytes (null: not distinctive).</summary>
    static (object Value, byte[]? Bytes) Sentinel(Type type, int i) => type switch
    {
        _ when type == typeof(nint) => ((nint)(0x7f0000001000L + 16L * i), BitConverter.GetBytes(0x7f0000001000L + 16L * i)),
        _ when type == typeof(int) => (1000 + i, BitConverter.GetBytes(1000 + i)),
        _ when type == typeof(long) => (100000L + i, BitConverter.GetBytes(100000L + i)),
        _ when type == typeof(float) => (0.5f + i, BitConverter.GetBytes(0.5f + i)),
        _ when type == typeof(ushort) => ((ushort)(700 + i), BitConverter.GetBytes((ushort)(700 + i))),
        _ when type == typeof(bool) => (true, null),
        _ when type == typeof(Bthd) => (new Bthd(10L * i + 1, 10L * i + 2, 10L * i + 3), null),
        _ when type == typeof(StridedLayout) => (new StridedLayout { Rank = 5000 + i }, BitConverter.GetBytes(5000 + i)),
        _ => throw new AssertionException($"no sentinel for {type}"),
    };

    [Test]
    public void EveryLaunchPacksTheKernelsParameterListInOrder()
    {
        var kernels = Kernels().ToDictionary(k => k.Name);
        Assert.That(kernels, Has.Count.GreaterThan(25), "the signatures were parsed");
        var launched = new HashSet<string>();
        foreach (var method in LauncherMethods())
            foreach (var name in method.GetCustomAttribute<KernelsAttribute>()!.Names)
            {
                string where = $"{method.DeclaringType!.Name}.{method.Name} -> {name}";
                Assert.That(kernels.ContainsKey(name), Is.True, $"{where}: no such kernel in kernels/*.cu");
                var kernel = kernels[name];
                var recorder = new Recorder();
                var ps = method.GetParameters();
                var args = new object?[ps.Length];
                var sentinels = new List<(int Index, byte[]? Bytes)>();
                for (int i = 0; i < ps.Length; i++)
                {
                    var t = ps[i].ParameterType.IsByRef ? ps[i].ParameterType.GetElementType()! : ps[i].ParameterType;
                    if (t == typeof(IKernelLauncher)) args[i] = recorder;
                    else if (t == typeof(LaunchShape)) args[i] = new LaunchShape(1, 1, 32, 0);
                    else if (t == typeof(string)) args[i] = name;
                    else { var (v, bytes) = Sentinel(t, i); args[i] = v; sentinels.Add((i, bytes)); }
                }
                method.Invoke(null, args);
                Assert.That(recorder.Kernel, Is.EqualTo(name), $"{where}: launched {recorder.Kernel}");
                Assert.That(recorder.File, Is.EqualTo(kernel.File), $"{where}: the file");
                var packed = recorder.Packed;
                Assert.That(packed.Count, Is.EqualTo(kernel.Params.Count), $"{where}: argument count");
                int offset = 0, next = 0;
                for (int j = 0; j < kernel.Params.Count; j++)
                {
                    var p = kernel.Params[j];
                    offset = (offset + p.Align - 1) / p.Align * p.Align;
                    var (at, size, bytes) = packed.Argument(j);
                    Assert.That(size, Is.EqualTo(p.Size), $"{where}: parameter {j} ({p.Type}{(p.Pointer ? "*" : "")} {p.Name}) size");
                    Assert.That(at, Is.EqualTo(offset), $"{where}: parameter {j} ({p.Name}) offset");
                    offset += p.Size;
                    // the C# argument this one carries: the next sentinel in order whose bytes it holds (computed values are skipped)
                    int found = sentinels.FindIndex(
                        next, s => s.Bytes is { } b && bytes.AsSpan(0, Math.Min(b.Length, bytes.Length)).SequenceEqual(b));
                    if (found >= 0) next = found + 1;
                    Assert.That(
                        sentinels.FindIndex(s => s.Bytes is { } b && bytes.AsSpan(0, Math.Min(b.Length, bytes.Length)).SequenceEqual(b)),
                        Is.EqualTo(found), $"{where}: parameter {j} ({p.Name}) carries an earlier argument: arguments out of order");
                }
                Assert.That(sentinels.Where(s => s.Bytes is not null).All(s => Enumerable.Range(0, packed.Count)
                    .Any(j => packed.Argument(j).Bytes.AsSpan().StartsWith(s.Bytes))), Is.True,
                        $"{where}: every argument reaches the kernel");
                launched.Add(name);
            }
        Assert.That(kernels.Keys.Except(launched), Is.Empty, "kernels without a launcher");
    }

    [Test]
    public void EachKernelFileHasOneLauncherClassOfTheSameName()
    {
        var classes = LauncherMethods().Select(m => m.DeclaringType!).Distinct().ToList();
        foreach (var c in classes)
        {
            var file = (string)c.GetField("File")!.GetValue(null)!;
            Assert.That(KernelCompiler.KernelFiles, Does.Contain(file), c.Name);
            var pascal = string.Concat(file[..^3].Split('_').Select(w => char.ToUpperInvariant(w[0]) + w[1..]));
            Assert.That(c.Name, Is.EqualTo(pascal), $"{c.Name} launches {file}: name them alike");
        }
        Assert.That(classes.Select(c => (string)c.GetField("File")!.GetValue(null)!), Is.EquivalentTo(KernelCompiler.KernelFiles));
    }

    [Test]
    public void AttentionGeometryStaysWithinTheDeviceAndCoversEveryRow()
    {
        // sm_80/sm_90 opt-in dynamic shared memory per block (A100 163 KB is the tighter: checked for D <= 128)
        const int OptIn = 227 * 1024;
        foreach (int d in Enumerable.Range(1, KernelConstants.AttentionMaxHeadSize))
        {
            foreach (var s in new[] { Whittle.Native.Cuda.Launchers.Attention.ForwardShape(1, 77, 3, d),
                Whittle.Native.Cuda.Launchers.Attention.BackwardDqShape(1, 77, 3, d),
                Whittle.Native.Cuda.Launchers.Attention.BackwardDkDvShape(1, 77, 3, d) })
            {
                Assert.That(s.SharedBytes, Is.LessThanOrEqualTo(OptIn), $"D={d}");
                Assert.That(s.GridX * KernelConstants.AttentionRows, Is.GreaterThanOrEqualTo(77));
                Assert.That(s.GridY, Is.EqualTo(3));
                Assert.That(s.Block, Is.EqualTo(32 * KernelConstants.AttentionRows));
            }
            if (d <= 128)
                Assert.That(
                Whittle.Native.Cuda.Launchers.Attention.BackwardDkDvShape(1, 1, 1, d).SharedBytes, Is.LessThanOrEqualTo(163 * 1024),
                $"A100, D={d}");
        }
        foreach (int d in new[] { 64, 128 })
            Assert.That(
                Whittle.Native.Cuda.Launchers.AttentionMma.ForwardShape(2, 130, 3, d),
                Is.EqualTo(new LaunchShape(3, 6, 128, (2 * 64 * (d + 8) + d * 72) * 2)));
        Assert.That(
            Whittle.Native.Cuda.Launchers.AttentionMma.BackwardDkDvShape(1, 64, 1).SharedBytes, Is.LessThanOrEqualTo(48 * 1024 * 2));
    }

    [Test]
    public void TheSoftwareGpuBuildReadsTheSameKernelConstants()
    {
        // softgpu/build.sh reads KernelConstants.cs with this expression and passes the result to g++
        var path = Path.Combine(TestData.RepoRoot, "src", "Whittle.Native", "Tensors", "KernelConstants.cs");
        var read = Regex.Matches(File.ReadAllText(path), @"\[KernelDefine\(""(\w+)""\)\]\s*public const \w+ \w+ = ([-+.\w]+);")
            .Select(m => $"-D{m.Groups[1].Value}={m.Groups[2].Value}").ToArray();
        Assert.That(read, Is.EqualTo(KernelConstants.Defines));
        Assert.That(KernelConstants.Defines, Does.Contain("-DTAIL_FLOOR=1e-30f"));
    }
}
