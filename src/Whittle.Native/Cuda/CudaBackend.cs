using System.Runtime.InteropServices;
using System.Text;
using Whittle.Native.Verification;
using Whittle.Native.Cuda.Native;
using Whittle.Native.Tensors;

namespace Whittle.Native.Cuda;

/// <summary>
/// <see cref="IBackend"/> on one NVIDIA GPU: kernels from <c>kernels/*.cu</c> (compiled by NVRTC on first use, see
/// <see cref="KernelCompiler"/>) and cuBLAS for matmuls. Semantics are those of CpuBackend, to the parity tolerances.
/// Policy:
///  - one primary context, one non-blocking stream; every op is queued on it and nothing waits for the GPU except
///    <see cref="Synchronize"/>, host reads (ToCpu, Sum, SumOfSquares) and host writes through the pinned staging buffer;
///  - device memory comes from a <see cref="DeviceAllocator"/> (no driver allocation in a steady-state step);
///  - every driver, NVRTC and cuBLAS call is checked and a failure names the call and the op (<see cref="CudaException"/>);
///  - bad ids or targets found on the device are recorded in a device error word and reported (as a
///    <see cref="WhittleException"/>) at the next synchronisation point, since kernels cannot throw;
///  - matmuls use full-precision f32 (CUBLAS_COMPUTE_32F) unless <see cref="AllowTf32"/> is set (about 1e-3 relative,
///    see ParityHarness); the backend is used from one thread at a time.
/// </summary>
public sealed unsafe partial class CudaBackend : IBackend, IKernelLauncher
{
    const long PinnedChunk = 8L << 20;

    readonly int _device;
    readonly nint _context, _stream, _cublas;
    readonly KernelCompiler _compiler;
    readonly int _arch;
    readonly bool _cubin;
    readonly Dictionary<string, nint> _modules = new();
    readonly Dictionary<string, nint> _functions = new();
    readonly Dictionary<nint, int> _sharedLimit = new();
    readonly KernelArgs _args = new();
    nint _errorWord;       // device int[4], see common.cuh
    long _errorWordBlock;  // its allocator block size
    nint _pinned;          // PinnedChunk bytes of page-locked host memory
    long _pinnedBytes;
    string _op = "";
    bool _disposed;

    /// <param name="allocatorMode">How device memory is allocated (the CLI resolves WHITTLE_CUDA_ALLOCATOR into it).</param>
    public CudaBackend(int ordinal = 0, KernelCompiler? compiler = null, DeviceAllocatorMode allocatorMode = DeviceAllocatorMode.Caching)
    {
        _compiler = compiler ?? new KernelCompiler();
        int count = DeviceCount(out var problem);
        if (count == 0) throw new WhittleException($"no CUDA device: {problem}");
        if (ordinal < 0 || ordinal >= count) throw new WhittleException($"CUDA device {ordinal} does not exist ({count} found)");
        _op = "CudaBackend()";
        Check(CuDriver.cuDeviceGet(out _device, ordinal), "cuDeviceGet");
        Check(CuDriver.cuDevicePrimaryCtxRetain(out _context, _device), "cuDevicePrimaryCtxRetain");
        Check(CuDriver.cuCtxSetCurrent(_context), "cuCtxSetCurrent");
        Check(CuDriver.cuStreamCreate(out _stream, CuDriver.CU_STREAM_NON_BLOCKING), "cuStreamCreate");
        var info = DeviceInfo.Query(_device);
        _arch = info.ComputeCapability;
        DeviceName = info.Name;
        _cubin = SupportsCubin(_arch);
        Allocator = new DeviceAllocator(allocatorMode);
        (_errorWord, _errorWordBlock) = Allocator.Allocate(16);
        Check(CuDriver.cuMemsetD32Async(_errorWord, 0, 4, _stream), "cuMemsetD32Async");
        CudaException.CheckCublas(Cublas.cublasCreate(out _cublas), "cublasCreate_v2", _op);
        CudaException.CheckCublas(Cublas.cublasSetStream(_cublas, _stream), "cublasSetStream_v2", _op);
        _lt = CublasLtGemm.TryCreate(Allocator);
    }

    /// <summary>cuBLASLt, when its library loads: linear layers with a bias run as one GEMM with a fused bias epilogue.</summary>
    readonly CublasLtGemm? _lt;

    /// <summary>Distinct GEMM problems whose cuBLASLt algorithm is cached (0 without cuBLASLt), and the heuristic queries made.</summary>
    public int CublasLtAlgorithmsCached => _lt?.AlgorithmsCached ?? 0;
    public int CublasLtHeuristicQueries => _lt?.HeuristicQueries ?? 0;

    /// <summary>Whether kernels are loaded as CUBIN (NVRTC can target this real arch) rather than PTX for the driver to JIT.</summary>
    public static bool SupportsCubin(int arch)
    {
        try { return KernelCompiler.SupportedArchs().Contains(arch); }
        catch (CudaException) { return false; }
        catch (EntryPointNotFoundException) { return false; }
    }

    public Device Device => Device.Cuda;
    public string DeviceName { get; }
    public string Name => $"cuda:{_device} {DeviceName} (sm_{_arch})";
    public int ComputeCapability => _arch;
    public DeviceAllocator Allocator { get; }
    /// <summary>Lets cuBLAS use TF32 tensor cores for f32 matmuls (faster, ~1e-3 relative error instead of ~1e-6).</summary>
    public bool AllowTf32 { get; set; }

    /// <summary>Number of CUDA devices; 0 with the reason when there is no driver or no device.</summary>
    public static int DeviceCount(out string? problem)
    {
        problem = null;
        if (!CudaLibraries.TryLoad(CudaLibraries.DriverName, out problem)) return 0;
        int r = CuDriver.cuInit(0);
        if (r != CuDriver.CUDA_SUCCESS) { problem = $"cuInit: {CudaException.DriverErrorName(r)}"; return 0; }
        r = CuDriver.cuDeviceGetCount(out int n);
        if (r != CuDriver.CUDA_SUCCESS) { problem = $"cuDeviceGetCount: {CudaException.DriverErrorName(r)}"; return 0; }
        if (n == 0) problem = "the driver reports no device";
        return n;
    }

    // ---------------------------------------------------------------- plumbing

    void Enter(string op)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _op = op;
        Check(CuDriver.cuCtxSetCurrent(_context), "cuCtxSetCurrent");
    }

    void Check(int result, string call) => CudaException.Check(result, call, _op);

    nint Function(string file, string kernel)
    {
        if (_functions.TryGetValue(kernel, out var f)) return f;
        if (!_modules.TryGetValue(file, out var module))
        {
            var compiled = _compiler.Compile(file, _arch, _cubin ? KernelBinary.Cubin : KernelBinary.Ptx);
            fixed (byte* image = compiled.Image) Check(CuDriver.cuModuleLoadData(out module, image), $"cuModuleLoadData(kernels/{file})");
            _modules[file] = module;
        }
        var name = Encoding.UTF8.GetBytes(kernel + "\0");
        fixed (byte* n = name) Check(CuDriver.cuModuleGetFunction(out f, module, n), $"cuModuleGetFunction({kernel})");
        _functions[kernel] = f;
        return f;
    }

    KernelArgs IKernelLauncher.Args() => _args.Reset();

    void IKernelLauncher.Launch(string file, string kernel, LaunchShape shape, KernelArgs args) =>
        Launch(file, kernel, shape.GridX, shape.GridY, shape.Block, shape.SharedBytes, args);

    void Launch(string file, string kernel, long gridX, int gridY, int block, int sharedBytes, KernelArgs args)
    {
        if (gridX == 0 || gridY == 0) return;
        if (gridX > int.MaxValue || gridY > 65535)
            throw new ArgumentException($"{_op}: launch grid ({gridX}, {gridY}) of {kernel} too large");
        var f = Function(file, kernel);
        if (sharedBytes > 48 * 1024 && (!_sharedLimit.TryGetValue(f, out var limit) || limit < sharedBytes))
        {
            Check(CuDriver.cuFuncSetAttribute(f, CuDriver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, sharedBytes),
                $"cuFuncSetAttribute({kernel})");
            _sharedLimit[f] = sharedBytes;
        }
        Check(CuDriver.cuLaunchKernel(f, (uint)gridX, (uint)gridY, 1, (uint)block, 1, 1, (uint)sharedBytes, _stream, args.Pointers, null),
            $"cuLaunchKernel({kernel})");
    }

    /// <summary>Reads and clears the device error word; throws if a kernel reported bad input.</summary>
    void CheckDeviceErrors()
    {
        int* word = stackalloc int[4];
        Check(CuDriver.cuMemcpyDtoHAsync((nint)word, _errorWord, 16, _stream), "cuMemcpyDtoHAsync");
        Check(CuDriver.cuStreamSynchronize(_stream), "cuStreamSynchronize");
        if (word[0] == 0) return;
        Check(CuDriver.cuMemsetD32Async(_errorWord, 0, 4, _stream), "cuMemsetD32Async");
        throw word[0] switch
        {
            KernelConstants.ErrorEmbeddingId =>
                new WhittleException($"token id {word[2]} at row {word[1]} is outside the embedding table (found on the GPU at {_op})"),
            KernelConstants.ErrorCrossEntropyTarget =>
                new WhittleException($"target {word[2]} at row {word[1]} is outside the vocabulary and is not the ignore index (found on " +
                $"the GPU at {_op})"),
            KernelConstants.ErrorTopKId =>
                new WhittleException($"top-k teacher id {word[2]} at row {word[1]} is outside the vocabulary or repeated (found on the " +
                $"GPU at {_op})"),
            _ => new WhittleException($"a CUDA kernel reported error code {word[0]} (row {word[1]}, value {word[2]})"),
        };
    }

    void EnsurePinned()
    {
        if (_pinned != 0) return;
        Check(CuDriver.cuMemAllocHost(out _pinned, (nuint)PinnedChunk), "cuMemAllocHost_v2");
        _pinnedBytes = PinnedChunk;
    }

    internal void CopyDeviceToHost(nint src, nint hostDst, long bytes)
    {
        Enter(_op.Length == 0 ? "copy to host" : _op);
        EnsurePinned();
        for (long done = 0; done < bytes; done += _pinnedBytes)
        {
            long n = Math.Min(_pinnedBytes, bytes - done);
            Check(CuDriver.cuMemcpyDtoHAsync(_pinned, src + (nint)done, (nuint)n, _stream), "cuMemcpyDtoHAsync_v2");
            Check(CuDriver.cuStreamSynchronize(_stream), "cuStreamSynchronize");
            Buffer.MemoryCopy((void*)_pinned, (void*)(hostDst + (nint)done), n, n);
        }
    }

    internal void CopyHostToDevice(nint hostSrc, nint dst, long bytes)
    {
        Enter(_op.Length == 0 ? "copy from host" : _op);
        EnsurePinned();
        for (long done = 0; done < bytes; done += _pinnedBytes)
        {
            long n = Math.Min(_pinnedBytes, bytes - done);
            // the staging buffer is reused, so the previous chunk's copy must have left it
            Check(CuDriver.cuStreamSynchronize(_stream), "cuStreamSynchronize");
            Buffer.MemoryCopy((void*)(hostSrc + (nint)done), (void*)_pinned, n, n);
            Check(CuDriver.cuMemcpyHtoDAsync(dst + (nint)done, _pinned, (nuint)n, _stream), "cuMemcpyHtoDAsync_v2");
        }
        Check(CuDriver.cuStreamSynchronize(_stream), "cuStreamSynchronize");
    }

    // ---------------------------------------------------------------- argument checks

    void OnDevice(Tensor t, string what)
    {
        if (t.Storage is not CudaStorage)
            throw new ArgumentException($"{_op}: {what} {t.Describe()} is on {t.Device}, not this CUDA device");
    }

    void F32(Tensor t, string what, int rank = -1)
    {
        OnDevice(t, what);
        if (t.DType != DType.F32) throw new ArgumentException($"{_op}: {what} {t.Describe()} must be f32");
        if (rank >= 0 && t.Rank != rank) throw new ArgumentException($"{_op}: {what} {t.Describe()} must have rank {rank}");
    }

    void Contiguous(Tensor t, string what)
    {
        if (!t.IsContiguous) throw new ArgumentException($"{_op}: {what} {t.Describe()} must be contiguous");
    }

    /// <summary>Leading dimension of a row-dense matrix view.</summary>
    long Ld(Tensor t, string what)
    {
        if (t.Rank != 2) throw new ArgumentException($"{_op}: {what} {t.Describe()} must be a matrix");
        if (!t.IsRowDense) throw new ArgumentException($"{_op}: {what} {t.Describe()} must have a unit last stride");
        long ld = t.Size(0) <= 1 ? Math.Max(1, t.Size(1)) : t.Stride(0);
        if (ld < t.Size(1)) throw new ArgumentException($"{_op}: {what} {t.Describe()} has overlapping rows (stride {ld})");
        return ld;
    }

    static void Shape(Tensor t, string what, string op, params int[] shape)
    {
        if (!t.Shape.SequenceEqual(shape))
            throw new ArgumentException($"{op}: {what} is {t.Describe()}, expected {Tensor.FormatShape(shape)}");
    }

    Bthd Bthd4(Tensor t, string what, int b, int tt, int h, int d)
    {
        F32(t, what, 4);
        Shape(t, what, _op, b, tt, h, d);
        if (t.Stride(3) != 1 && d > 1) throw new ArgumentException($"{_op}: {what} {t.Describe()} must have a unit head-dim stride");
        return new Bthd(t.Stride(0), t.Stride(1), t.Stride(2));
    }

    // ---------------------------------------------------------------- memory

    public Tensor Empty(DType dtype, params int[] shape)
    {
        Enter("Empty");
        long bytes = Tensor.Numel(shape) * dtype.SizeOf();
        return Tensor.FromStorage(new CudaStorage(this, bytes), dtype, shape);
    }

    public Tensor Zeros(DType dtype, params int[] shape)
    {
        var t = Empty(dtype, shape);
        long bytes = t.Count * dtype.SizeOf();
        if (bytes > 0) Check(CuDriver.cuMemsetD32Async(t.Pointer, 0, (nuint)((bytes + 3) / 4), _stream), "cuMemsetD32Async");
        return t;
    }

    public Tensor FromHost(Tensor host)
    {
        Enter("FromHost");
        if (host.Device != Device.Cpu) throw new ArgumentException($"FromHost: {host.Describe()} is not a CPU tensor");
        using var dense = host.IsContiguous ? null : host.Contiguous();
        var src = dense ?? host;
        var t = Empty(host.DType, host.ShapeArray);
        t.Name = host.Name;
        long bytes = t.Count * t.DType.SizeOf();
        if (bytes > 0) ((CudaStorage)t.Storage).CopyFromHost(src.Pointer, 0, bytes);
        return t;
    }

    public void Copy(Tensor src, Tensor dst)
    {
        Enter("Copy");
        OnDevice(src, "src"); OnDevice(dst, "dst");
        if (!src.SameShape(dst)) throw new ArgumentException($"Copy: {src.Describe()} and {dst.Describe()} differ in shape");
        int sType = TypeCode(src.DType), dType = TypeCode(dst.DType);
        bool convert = src.DType != dst.DType;
        if (convert && !((src.DType == DType.F32 && dst.DType == DType.BF16) || (src.DType == DType.BF16 && dst.DType == DType.F32)))
            throw new ArgumentException($"Copy: cannot convert {src.DType.Name()} to {dst.DType.Name()} (f32 <-> bf16 only)");
        if (src.Count == 0) return;
        if (!convert && src.IsContiguous && dst.IsContiguous)
        {
            Check(CuDriver.cuMemcpyDtoDAsync(dst.Pointer, src.Pointer, (nuint)(src.Count * src.DType.SizeOf()), _stream),
                "cuMemcpyDtoDAsync_v2");
            return;
        }
        if (src.Rank > 6) throw new ArgumentException($"Copy: rank {src.Rank} > 6");
        var layout = new StridedLayout { Rank = Math.Max(1, src.Rank) };
        if (src.Rank == 0) { layout.Shape[0] = 1; layout.SrcStride[0] = 1; layout.DstStride[0] = 1; }
        for (int i = 0; i < src.Rank; i++)
        {
            layout.Shape[i] = src.Size(i);
            layout.SrcStride[i] = src.Stride(i);
            layout.DstStride[i] = dst.Stride(i);
        }
        Launchers.Elementwise.CopyStrided(this, src.Pointer, dst.Pointer, layout, src.Count, sType, dType);
    }

    static int TypeCode(DType t) => t.SizeOf() == 4 ? 0 : 1;

    public void Fill(Tensor dst, float value)
    {
        Enter("Fill");
        OnDevice(dst, "dst");
        if (dst.Count == 0) return;
        if (!dst.IsContiguous)
        {
            using var tmp = Empty(dst.DType, dst.ShapeArray);
            Fill(tmp, value);
            Copy(tmp, dst);
            return;
        }
        switch (dst.DType)
        {
            case DType.F32: Check(
                CuDriver.cuMemsetD32Async(dst.Pointer, (uint)BitConverter.SingleToInt32Bits(value), (nuint)dst.Count, _stream),
                "cuMemsetD32Async"); break;
            case DType.I32: Check(
                CuDriver.cuMemsetD32Async(dst.Pointer, (uint)(int)value, (nuint)dst.Count, _stream), "cuMemsetD32Async"); break;
            case DType.BF16:
                Launchers.Elementwise.FillU16(this, dst.Pointer, Bf16.FromFloat(value), dst.Count); break;
            case DType.F16:
                Launchers.Elementwise.FillU16(this, dst.Pointer, BitConverter.HalfToUInt16Bits((Half)value), dst.Count); break;
        }
    }

    public void Synchronize()
    {
        Enter("Synchronize");
        Check(CuDriver.cuStreamSynchronize(_stream), "cuStreamSynchronize");
        CheckDeviceErrors();
    }

    // ---------------------------------------------------------------- embedding

    public void EmbeddingForward(Tensor ids, Tensor weight, Tensor output)
    {
        Enter("EmbeddingForward");
        var (n, v, c) = EmbeddingShapes(ids, weight, output, "output");
        Launchers.Embedding.Forward(
            this, ids.Pointer, weight.Pointer, output.Pointer, n, c, v, Ld(weight, "weight"), Ld(output, "output"), _errorWord);
    }

    public void EmbeddingBackward(Tensor ids, Tensor dOutput, Tensor dWeight)
    {
        Enter("EmbeddingBackward");
        var (n, v, c) = EmbeddingShapes(ids, dWeight, dOutput, "dOutput");
        Launchers.Embedding.Backward(
            this, ids.Pointer, dOutput.Pointer, dWeight.Pointer, n, c, v, Ld(dWeight, "dWeight"), Ld(dOutput, "dOutput"), _errorWord);
    }

    (int N, int V, int C) EmbeddingShapes(Tensor ids, Tensor table, Tensor rows, string rowsName)
    {
        OnDevice(ids, "ids");
        if (ids.DType != DType.I32 || ids.Rank != 1) throw new ArgumentException($"{_op}: ids {ids.Describe()} must be i32 (N)");
        Contiguous(ids, "ids");
        F32(table, "weight", 2); F32(rows, rowsName, 2);
        int n = ids.Size(0), v = table.Size(0), c = table.Size(1);
        Shape(rows, rowsName, _op, n, c);
        return (n, v, c);
    }

    // ---------------------------------------------------------------- layernorm

    public void LayerNormForward(Tensor x, Tensor weight, Tensor bias, float eps, Tensor y, Tensor mean, Tensor rstd)
    {
        Enter("LayerNormForward");
        F32(x, "x", 2);
        int n = x.Size(0), c = x.Size(1);
        Vector(weight, "weight", c); Vector(bias, "bias", c); Vector(mean, "mean", n); Vector(rstd, "rstd", n);
        F32(y, "y", 2); Shape(y, "y", _op, n, c);
        Launchers.Layernorm.Forward(
            this, x.Pointer, weight.Pointer, bias.Pointer, y.Pointer, mean.Pointer, rstd.Pointer, n, c, Ld(x, "x"), Ld(y, "y"), eps);
    }

    public void LayerNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor mean, Tensor rstd, Tensor dx, Tensor dWeight, Tensor dBias)
    {
        Enter("LayerNormBackward");
        F32(x, "x", 2);
        int n = x.Size(0), c = x.Size(1);
        F32(dy, "dy", 2); Shape(dy, "dy", _op, n, c);
        F32(dx, "dx", 2); Shape(dx, "dx", _op, n, c);
        Vector(weight, "weight", c); Vector(mean, "mean", n); Vector(rstd, "rstd", n); Vector(dWeight, "dWeight", c);
        Vector(dBias, "dBias", c);
        long lddy = Ld(dy, "dy"), ldx = Ld(x, "x");
        Launchers.Layernorm.BackwardInput(
            this, dy.Pointer, x.Pointer, weight.Pointer, mean.Pointer, rstd.Pointer, dx.Pointer, n, c, lddy, ldx, Ld(dx, "dx"));
        Launchers.Layernorm.BackwardParams(
            this, dy.Pointer, x.Pointer, mean.Pointer, rstd.Pointer, dWeight.Pointer, dBias.Pointer, n, c, lddy, ldx);
    }

    void Vector(Tensor t, string what, int length)
    {
        F32(t, what, 1);
        if (t.Size(0) != length) throw new ArgumentException($"{_op}: {what} is {t.Describe()}, expected ({length})");
        Contiguous(t, what);
    }

    // ---------------------------------------------------------------- matmul

    public void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, float alpha = 1f, float beta = 0f, Tensor? bias = null)
    {
        Enter("MatMul");
        OnDevice(a, "a"); OnDevice(b, "b"); F32(c, "c", 2);
        if (a.DType != b.DType || a.DType is not (DType.F32 or DType.BF16))
            throw new ArgumentException($"MatMul: a {a.Describe()} and b {b.Describe()} must both be f32 or both bf16");
        long lda = Ld(a, "a"), ldb = Ld(b, "b"), ldc = Ld(c, "c");
        int m = transA ? a.Size(1) : a.Size(0), k = transA ? a.Size(0) : a.Size(1);
        int kb = transB ? b.Size(1) : b.Size(0), n = transB ? b.Size(0) : b.Size(1);
        if (k != kb) throw new ArgumentException($"MatMul: inner dimensions differ: op(a) is ({m}, {k}), op(b) is ({kb}, {n})");
        Shape(c, "c", "MatMul", m, n);
        if (bias is not null) Vector(bias, "bias", n);
        if (m == 0 || n == 0) return;
        // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands, keep the transposes.
        int dataType = a.DType == DType.BF16 ? Cublas.CUDA_R_16BF : Cublas.CUDA_R_32F;
        int compute = a.DType == DType.F32 && AllowTf32 ? Cublas.CUBLAS_COMPUTE_32F_FAST_TF32 : Cublas.CUBLAS_COMPUTE_32F;
        float al = alpha, be = beta;
        if (bias is not null && _lt is not null && _lt.Run(
                new CublasLtGemm.Operand(b.Pointer, dataType, (ulong)(transB ? k : n), (ulong)(transB ? n : k), ldb, transB),
                new CublasLtGemm.Operand(a.Pointer, dataType, (ulong)(transA ? m : k), (ulong)(transA ? k : m), lda, transA),
                c.Pointer, (ulong)n, (ulong)m, ldc, al, be, compute, Cublas.CUBLASLT_EPILOGUE_BIAS, bias.Pointer, 1, 0, _stream, "MatMul"))
            return;
        CudaException.CheckCublas(
            Cublas.cublasGemmEx(_cublas, transB ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N, transA ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N,
            n, m, k, &al, b.Pointer, dataType, checked((int)ldb), a.Pointer, dataType, checked((int)lda), &be, c.Pointer, Cublas.CUDA_R_32F,
                checked((int)ldc),
            compute, Cublas.CUBLAS_GEMM_DEFAULT), "cublasGemmEx", "MatMul");
        if (bias is not null)
            Launchers.Elementwise.AddBiasRows(this, c.Pointer, bias.Pointer, m, n, ldc);
    }

    public void SumRows(Tensor dy, Tensor dBias)
    {
        Enter("SumRows");
        F32(dy, "dy", 2);
        int m = dy.Size(0), n = dy.Size(1);
        Vector(dBias, "dBias", n);
        Launchers.Reduce.ColumnSums(this, dy.Pointer, dBias.Pointer, m, n, Ld(dy, "dy"));
    }

    // ---------------------------------------------------------------- rotary

    public void RotaryForward(Tensor x, Tensor cos, Tensor sin) => Rotary("RotaryForward", x, cos, sin, 1f);
    public void RotaryBackward(Tensor dx, Tensor cos, Tensor sin) => Rotary("RotaryBackward", dx, cos, sin, -1f);

    void Rotary(string op, Tensor x, Tensor cos, Tensor sin, float sign)
    {
        Enter(op);
        F32(x, "x", 4);
        int b = x.Size(0), t = x.Size(1), h = x.Size(2), d = x.Size(3);
        var s = Bthd4(x, "x", b, t, h, d);
        F32(cos, "cos", 2); F32(sin, "sin", 2);
        int half = cos.Size(1);
        if (!sin.SameShape(cos)) throw new ArgumentException($"{op}: sin {sin.Describe()} and cos {cos.Describe()} differ in shape");
        if (2 * half > d) throw new ArgumentException($"{op}: rotary dims {2 * half} exceed head size {d}");
        if (cos.Size(0) < t) throw new ArgumentException($"{op}: cos {cos.Describe()} covers fewer than T = {t} positions");
        long ldt = Ld(cos, "cos");
        if (Ld(sin, "sin") != ldt) throw new ArgumentException($"{op}: cos and sin tables must share a row stride");
        Launchers.Rotary.Apply(this, x.Pointer, cos.Pointer, sin.Pointer, b, t, h, half, s.SB, s.ST, s.SH, ldt, sign);
    }

    // ---------------------------------------------------------------- attention

    /// <summary>
    /// <see cref="AttentionPrecision.Bf16"/> runs on bf16 tensor cores (attention_forward_mma_d64/d128: q, k, v and the
    /// probabilities rounded to bf16, f32 accumulation and statistics; ~1e-2 relative instead of ~1e-6) when the head
    /// size is 64 or 128; other head sizes take the f32 kernels. k and v may have fewer heads than q (grouped-query).
    /// </summary>
    public void AttentionForward(Tensor q, Tensor k, Tensor v, float scale, Tensor output, Tensor lse, AttentionPrecision precision)
    {
        Enter("AttentionForward");
        var (b, t, h, kv, d) = AttentionShape(q, k);
        var sq = Bthd4(q, "q", b, t, h, d); var sk = Bthd4(k, "k", b, t, kv, d); var sv = Bthd4(v, "v", b, t, kv, d);
        var so = Bthd4(output, "output", b, t, h, d);
        F32(lse, "lse", 3); Shape(lse, "lse", _op, b, h, t); Contiguous(lse, "lse");
        if (precision == AttentionPrecision.Bf16 && Launchers.AttentionMma.HasForward(d))
            Launchers.AttentionMma.Forward(this, Launchers.AttentionMma.ForwardKernel(d), q.Pointer, k.Pointer, v.Pointer, output.Pointer,
                lse.Pointer, b, t, h, kv, d, scale, sq, sk, sv, so);
        else
            Launchers.Attention.Forward(this, q.Pointer, k.Pointer, v.Pointer, output.Pointer, lse.Pointer, b, t, h, kv, d, scale,
                sq, sk, sv, so);
    }

    /// <summary>
    /// <see cref="AttentionPrecision.Bf16"/>: the tensor-core backward (attention_backward_*_mma_d64) for head size 64.
    /// dk and dv of a kv head sum its group's query heads inside one block (no atomics).
    /// </summary>
    public void AttentionBackward(Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse, float scale, Tensor dq, Tensor dk,
        Tensor dv, AttentionPrecision precision)
    {
        Enter("AttentionBackward");
        var (b, t, h, kv, d) = AttentionShape(q, k);
        var sq = Bthd4(q, "q", b, t, h, d); var sk = Bthd4(k, "k", b, t, kv, d); var sv = Bthd4(v, "v", b, t, kv, d);
        var so = Bthd4(output, "output", b, t, h, d); var sdo = Bthd4(dOut, "dOut", b, t, h, d);
        var sdq = Bthd4(dq, "dq", b, t, h, d); var sdk = Bthd4(dk, "dk", b, t, kv, d); var sdv = Bthd4(dv, "dv", b, t, kv, d);
        F32(lse, "lse", 3); Shape(lse, "lse", _op, b, h, t); Contiguous(lse, "lse");
        using var dt = Empty(DType.F32, b, h, t);  // (B, H, T) scratch: dOut . output per row
        Launchers.Attention.BackwardDot(this, dOut.Pointer, output.Pointer, dt.Pointer, b, t, h, d, sdo, so);
        if (precision == AttentionPrecision.Bf16 && Launchers.AttentionMma.HasBackward(d))
        {
            Launchers.AttentionMma.BackwardDq(this, dOut.Pointer, q.Pointer, k.Pointer, v.Pointer, lse.Pointer, dt.Pointer, dq.Pointer,
                b, t, h, kv, d, scale, sdo, sq, sk, sv, sdq);
            Launchers.AttentionMma.BackwardDkDv(this, dOut.Pointer, q.Pointer, k.Pointer, v.Pointer, lse.Pointer, dt.Pointer, dk.Pointer,
                dv.Pointer, b, t, h, kv, d, scale, sdo, sq, sk, sv, sdk, sdv);
            return;
        }
        Launchers.Attention.BackwardDq(this, dOut.Pointer, q.Pointer, k.Pointer, v.Pointer, lse.Pointer, dt.Pointer, dq.Pointer,
            b, t, h, kv, d, scale, sdo, sq, sk, sv, sdq);
        Launchers.Attention.BackwardDkDv(this, dOut.Pointer, q.Pointer, k.Pointer, v.Pointer, lse.Pointer, dt.Pointer, dk.Pointer,
            dv.Pointer, b, t, h, kv, d, scale, sdo, sq, sk, sv, sdk, sdv);
    }

    /// <summary>(B, T, H, KV, D) of q (B, T, H, D) and k (B, T, KV, D): same B, T, D; KV dividing H; D within the kernels' limit.</summary>
    (int B, int T, int H, int Kv, int D) AttentionShape(Tensor q, Tensor k)
    {
        F32(q, "q", 4); F32(k, "k", 4);
        int b = q.Size(0), t = q.Size(1), h = q.Size(2), d = q.Size(3), kv = k.Size(2);
        if (k.Size(0) != b || k.Size(1) != t || k.Size(3) != d || kv < 1 || h % kv != 0)
            throw new ArgumentException($"{_op}: k {k.Describe()} must be (B, T, KV, D) for q {q.Describe()}, with KV dividing H");
        CheckHeadSize(d);
        return (b, t, h, kv, d);
    }

    void CheckHeadSize(int d)
    {
        if (d < 1 || d > KernelConstants.AttentionMaxHeadSize)
            throw new ArgumentException($"{_op}: head size {d} is outside [1, {KernelConstants.AttentionMaxHeadSize}] (attention.cu " +
            $"keeps D/32 values per lane)");
    }

    // ---------------------------------------------------------------- gelu and elementwise

    public void GeluForward(Tensor x, Tensor y, bool tanhApproximation)
    {
        Enter("GeluForward");
        SameDense(x, "x", y, "y");
        Launchers.Gelu.Forward(this, x.Pointer, y.Pointer, x.Count, tanhApproximation);
    }

    public void GeluBackward(Tensor dy, Tensor x, Tensor dx, bool tanhApproximation)
    {
        Enter("GeluBackward");
        SameDense(x, "x", dy, "dy"); SameDense(x, "x", dx, "dx");
        Launchers.Gelu.Backward(this, dy.Pointer, x.Pointer, dx.Pointer, x.Count, tanhApproximation);
    }

    public void Add(Tensor a, Tensor b, Tensor y)
    {
        Enter("Add");
        SameDense(a, "a", b, "b"); SameDense(a, "a", y, "y");
        Launchers.Elementwise.Add(this, a.Pointer, b.Pointer, y.Pointer, a.Count);
    }

    public void Axpy(float alpha, Tensor x, Tensor y)
    {
        Enter("Axpy");
        if (!(x.IsContiguous && y.IsContiguous) && x.Rank == 2)
        {
            F32(x, "x", 2); F32(y, "y", 2);
            if (!x.SameShape(y)) throw new ArgumentException($"Axpy: x {x.Describe()} and y {y.Describe()} differ in shape");
            int m = x.Size(0), n = x.Size(1);
            Launchers.Elementwise.AxpyRows(this, alpha, x.Pointer, Ld(x, "x"), y.Pointer, Ld(y, "y"), m, n);
            return;
        }
        SameDense(x, "x", y, "y");
        Launchers.Elementwise.Axpy(this, alpha, x.Pointer, y.Pointer, x.Count);
    }

    public void Scale(Tensor x, float alpha)
    {
        Enter("Scale");
        SameDense(x, "x", x, "x");
        Launchers.Elementwise.Scale(this, x.Pointer, alpha, x.Count);
    }

    void SameDense(Tensor a, string an, Tensor b, string bn)
    {
        F32(a, an); F32(b, bn); Contiguous(a, an); Contiguous(b, bn);
        if (a.Count != b.Count) throw new ArgumentException($"{_op}: {an} {a.Describe()} and {bn} {b.Describe()} differ in size");
    }

    // ---------------------------------------------------------------- cross-entropy

    public void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor losses, Tensor? dLogits, float gradScale)
    {
        Enter("CrossEntropy");
        F32(logits, "logits", 2);
        int n = logits.Size(0), v = logits.Size(1);
        OnDevice(targets, "targets");
        if (targets.DType != DType.I32 || targets.Rank != 1 || targets.Size(0) != n)
            throw new ArgumentException($"CrossEntropy: targets {targets.Describe()} must be i32 ({n})");
        Contiguous(targets, "targets");
        Vector(losses, "losses", n);
        long ldd = 0;
        if (dLogits is not null) { F32(dLogits, "dLogits", 2); Shape(dLogits, "dLogits", _op, n, v); ldd = Ld(dLogits, "dLogits"); }
        Launchers.Crossentropy.CrossEntropy(
            this, logits.Pointer, targets.Pointer, losses.Pointer, dLogits?.Pointer ?? 0, n, v, Ld(logits, "logits"), ldd,
            ignoreIndex, gradScale, _errorWord);
    }

    // ---------------------------------------------------------------- optimizer and reductions

    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, long decayCount, in AdamWSettings settings, int step, float gradScale)
    {
        Enter("AdamW");
        SameDense(param, "param", grad, "grad"); SameDense(param, "param", m, "m"); SameDense(param, "param", v, "v");
        if (step < 1) throw new ArgumentException($"AdamW: step counts from 1, got {step}");
        if (decayCount < 0 || decayCount > param.Count)
            throw new ArgumentException($"AdamW: decayCount {decayCount} outside [0, {param.Count}]");
        float bc1 = (float)(1 - Math.Pow(settings.Beta1, step)), bc2 = (float)(1 - Math.Pow(settings.Beta2, step));
        Launchers.Adamw.Step(
            this, param.Pointer, grad.Pointer, m.Pointer, v.Pointer, param.Count, decayCount, settings.LearningRate, settings.Beta1,
            settings.Beta2, settings.Epsilon, settings.WeightDecay, bc1, bc2, gradScale);
    }

    public double SumOfSquares(Tensor x) => Reduce("SumOfSquares", x, squared: true);
    public double Sum(Tensor x) => Reduce("Sum", x, squared: false);

    double Reduce(string op, Tensor x, bool squared)
    {
        Enter(op);
        F32(x, "x"); Contiguous(x, "x");
        if (x.Count == 0) return 0;
        int blocks = Launchers.Reduce.PartialBlocks(x.Count);
        using var partials = Empty(DType.F32, 2 * blocks + 2);  // (blocks) doubles, then one double result
        nint result = partials.Pointer + blocks * sizeof(double);
        Launchers.Reduce.Partials(this, x.Pointer, x.Count, squared, partials.Pointer);
        Launchers.Reduce.Final(this, partials.Pointer, blocks, result);
        double value;
        Check(CuDriver.cuMemcpyDtoHAsync((nint)(&value), result, sizeof(double), _stream), "cuMemcpyDtoHAsync_v2");
        CheckDeviceErrors();  // synchronises, so value is ready
        return value;
    }

    // ---------------------------------------------------------------- lifetime

    public void Dispose()
    {
        if (_disposed) return;
        try
        {
            CuDriver.cuCtxSetCurrent(_context);
            CuDriver.cuStreamSynchronize(_stream);
            foreach (var module in _modules.Values) CuDriver.cuModuleUnload(module);
            if (_cublas != 0) Cublas.cublasDestroy(_cublas);
            _lt?.Dispose();
            Allocator.Free(_errorWord, _errorWordBlock);
            Allocator.Dispose();
            if (_pinned != 0) CuDriver.cuMemFreeHost(_pinned);
            CuDriver.cuStreamDestroy(_stream);
            CuDriver.cuDevicePrimaryCtxRelease(_device);
        }
        finally
        {
            _args.Dispose();
            _disposed = true;
        }
    }
}

/// <summary>What the driver says about one device (for doctor and the backend's name).</summary>
public sealed record DeviceInfo(int Ordinal, string Name, int ComputeCapability, int Multiprocessors, long TotalMemory)
{
    internal static unsafe DeviceInfo Query(int device)
    {
        var name = stackalloc byte[256];
        CudaException.Check(CuDriver.cuDeviceGetName(name, 256, device), "cuDeviceGetName");
        CudaException.Check(
            CuDriver.cuDeviceGetAttribute(out int major, CuDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device),
            "cuDeviceGetAttribute");
        CudaException.Check(
            CuDriver.cuDeviceGetAttribute(out int minor, CuDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device),
            "cuDeviceGetAttribute");
        CudaException.Check(
            CuDriver.cuDeviceGetAttribute(out int sms, CuDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device), "cuDeviceGetAttribute");
        CudaException.Check(CuDriver.cuDeviceTotalMem(out var total, device), "cuDeviceTotalMem_v2");
        return new DeviceInfo(device, Marshal.PtrToStringUTF8((nint)name) ?? "?", major * 10 + minor, sms, (long)total);
    }

    /// <summary>Every device the driver sees (empty without a driver or device).</summary>
    public static IReadOnlyList<DeviceInfo> All()
    {
        int n = CudaBackend.DeviceCount(out _);
        var list = new List<DeviceInfo>();
        for (int i = 0; i < n; i++)
        {
            CudaException.Check(CuDriver.cuDeviceGet(out int dev, i), "cuDeviceGet");
            list.Add(Query(dev));
        }
        return list;
    }
}
