using Whittle.Native.Cuda.Native;

namespace Whittle.Native.Cuda;

/// <summary>
/// Times work queued on a <see cref="CudaBackend"/>'s stream with a pair of CUDA events: the device time between the
/// event before and the event after, so host launch overhead counts only where it leaves the GPU idle. Used by
/// benchmarks; the events are created once and reused for every measurement.
/// </summary>
public sealed class CudaEventTimer : IDisposable
{
    readonly CudaBackend _backend;
    readonly nint _start, _end;
    bool _disposed;

    public CudaEventTimer(CudaBackend backend)
    {
        _backend = backend;
        backend.MakeCurrent("CudaEventTimer");
        CudaException.Check(CuDriver.cuEventCreate(out _start, CuDriver.CU_EVENT_DEFAULT), "cuEventCreate", "CudaEventTimer");
        CudaException.Check(CuDriver.cuEventCreate(out _end, CuDriver.CU_EVENT_DEFAULT), "cuEventCreate", "CudaEventTimer");
    }

    /// <summary>Milliseconds of device time taken by the work <paramref name="queue"/> puts on the backend's stream (waits for
    /// it).</summary>
    public double Milliseconds(Action queue)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _backend.MakeCurrent("CudaEventTimer");
        CudaException.Check(CuDriver.cuEventRecord(_start, _backend.Stream), "cuEventRecord", "CudaEventTimer");
        queue();
        _backend.MakeCurrent("CudaEventTimer");
        CudaException.Check(CuDriver.cuEventRecord(_end, _backend.Stream), "cuEventRecord", "CudaEventTimer");
        CudaException.Check(CuDriver.cuEventSynchronize(_end), "cuEventSynchronize", "CudaEventTimer");
        CudaException.Check(CuDriver.cuEventElapsedTime(out float ms, _start, _end), "cuEventElapsedTime", "CudaEventTimer");
        return ms;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        CuDriver.cuEventDestroy(_start);
        CuDriver.cuEventDestroy(_end);
    }
}

public sealed partial class CudaBackend
{
    /// <summary>The stream every op is queued on (for events that bracket ops).</summary>
    internal nint Stream => _stream;

    /// <summary>Makes this backend's context current on the calling thread, naming <paramref name="op"/> in errors.</summary>
    internal void MakeCurrent(string op) => Enter(op);
}
