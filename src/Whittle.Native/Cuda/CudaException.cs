using System.Runtime.InteropServices;
using Whittle.Native.Cuda.Native;

namespace Whittle.Native.Cuda;

/// <summary>
/// A failed CUDA, NVRTC or cuBLAS call. Policy: every native call is checked; the message names the error
/// (CUDA_ERROR_..., NVRTC_ERROR_..., CUBLAS_STATUS_...), the call that returned it and the op or kernel that made the call,
/// so an asynchronous failure reported by a later call still points at the op being run. On the software GPU a failed
/// driver call also carries the emulator's diagnostic (kernel, block, thread, source line), which hardware cannot give.
/// </summary>
public sealed class CudaException : Exception
{
    public CudaException(string errorName, string call, string? op, string? detail = null)
        : base($"{errorName} from {call}{(op is null ? "" : $" in {op}")}{(detail is null ? "" : $": {detail}")}")
    { ErrorName = errorName; Call = call; Op = op; }

    public string ErrorName { get; }
    public string Call { get; }
    public string? Op { get; }

    /// <summary>Checks a CUresult.</summary>
    public static void Check(int result, string call, string? op = null)
    {
        if (result != CuDriver.CUDA_SUCCESS) throw new CudaException(DriverErrorName(result), call, op, SoftwareGpu.TakeDiagnostic());
    }

    public static void CheckNvrtc(int result, string call, string? op = null, string? log = null)
    {
        if (result != Nvrtc.NVRTC_SUCCESS) throw new CudaException(NvrtcErrorName(result), call, op, log);
    }

    public static void CheckCublas(int status, string call, string? op = null)
    {
        if (status != Cublas.CUBLAS_STATUS_SUCCESS)
            throw new CudaException(Cublas.StatusName(status), call, op, SoftwareGpu.TakeDiagnostic());
    }

    public static string DriverErrorName(int result)
    {
        try
        {
            if (CuDriver.cuGetErrorName(result, out var p) == 0 && p != 0) return Marshal.PtrToStringUTF8(p) ?? $"CUresult {result}";
        }
        catch (DllNotFoundException) { }
        return $"CUresult {result}";
    }

    public static string NvrtcErrorName(int result)
    {
        try
        {
            var p = Nvrtc.nvrtcGetErrorString(result);
            if (p != 0) return Marshal.PtrToStringUTF8(p) ?? $"nvrtcResult {result}";
        }
        catch (DllNotFoundException) { }
        return $"nvrtcResult {result}";
    }
}
