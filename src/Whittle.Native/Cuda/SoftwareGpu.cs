using System.Runtime.InteropServices;

namespace Whittle.Native.Cuda;

/// <summary>
/// What the engine knows about the software GPU (softgpu/: the CUDA driver, cuBLAS and our kernels emulated on the CPU),
/// when the driver it loaded is that one. Policy: found only through symbols the software GPU exports besides the CUDA
/// API (a real driver has none of them), looked up once; nothing in the backend behaves differently on it — it is only
/// named (doctor) and its diagnostics are added to CUDA error messages, because they say which kernel, thread and source
/// line went wrong where a GPU gives only an error code.
/// </summary>
public static unsafe class SoftwareGpu
{
    static readonly Lazy<Exports?> Symbols = new(Find);

    /// <summary>The addresses of the software GPU's own exports (softgpu/options.cpp).</summary>
    sealed class Exports(nint driver)
    {
        public readonly delegate* unmanaged<int> Version = (delegate* unmanaged<int>)NativeLibrary.GetExport(driver, "softgpu_version");
        public readonly delegate* unmanaged<nint> LastDiagnostic = (delegate* unmanaged<nint>)NativeLibrary.GetExport(driver,
            "softgpu_last_diagnostic");
        public readonly delegate* unmanaged<void> ClearDiagnostic = (delegate* unmanaged<void>)NativeLibrary.GetExport(driver,
            "softgpu_clear_diagnostic");
        public readonly delegate* unmanaged<byte*, int, int> SetOption =
            (delegate* unmanaged<byte*, int, int>)NativeLibrary.GetExport(driver, "softgpu_set_option");
        public readonly delegate* unmanaged<byte*, int> GetOption = (delegate* unmanaged<byte*, int>)NativeLibrary.GetExport(driver,
            "softgpu_get_option");
    }

    static Exports? Find()
    {
        var driver = CudaLibraries.Driver.Handle;
        return driver != 0 && NativeLibrary.TryGetExport(driver, "softgpu_version", out _) ? new Exports(driver) : null;
    }

    /// <summary>True when the loaded CUDA driver is the software GPU.</summary>
    public static bool IsActive => Symbols.Value is not null;

    /// <summary>The software GPU's interface version, or null on a real driver.</summary>
    public static int? Version => Symbols.Value is { } s ? s.Version() : null;

    /// <summary>The software GPU's most recent diagnostic, cleared by reading it; null when none (or on a real driver).</summary>
    public static string? TakeDiagnostic()
    {
        if (Symbols.Value is not { } s) return null;
        var text = Marshal.PtrToStringUTF8(s.LastDiagnostic());
        s.ClearDiagnostic();
        return string.IsNullOrEmpty(text) ? null : text;
    }

    /// <summary>Sets one of the software GPU's knobs (softgpu/README.md); for tests. False on a real driver or an unknown knob.</summary>
    internal static bool SetOption(string name, int value)
    {
        if (Symbols.Value is not { } s) return false;
        var bytes = System.Text.Encoding.UTF8.GetBytes(name + "\0");
        fixed (byte* p = bytes) return s.SetOption(p, value) == 0;
    }

    /// <summary>A knob's current value; null on a real driver or for an unknown knob.</summary>
    internal static int? GetOption(string name)
    {
        if (Symbols.Value is not { } s) return null;
        var bytes = System.Text.Encoding.UTF8.GetBytes(name + "\0");
        int v;
        fixed (byte* p = bytes) v = s.GetOption(p);
        return v < 0 ? null : v;
    }
}
