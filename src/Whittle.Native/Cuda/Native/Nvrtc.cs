using System.Runtime.InteropServices;

namespace Whittle.Native.Cuda.Native;

/// <summary>
/// NVRTC, the runtime CUDA C++ compiler (libnvrtc.so.13/.12/.11.2). Same policy as <see cref="CuDriver"/>: blittable,
/// raw nvrtcResult codes, resolved by <see cref="CudaLibraries"/>. CUBIN entry points exist from 11.1 on.
/// </summary>
internal static unsafe partial class Nvrtc
{
    const string Lib = CudaLibraries.NvrtcName;
    static Nvrtc() => CudaLibraries.InstallResolver();

    public const int NVRTC_SUCCESS = 0;

    [LibraryImport(Lib)] public static partial nint nvrtcGetErrorString(int result);
    [LibraryImport(Lib)] public static partial int nvrtcVersion(out int major, out int minor);
    [LibraryImport(Lib)] public static partial int nvrtcGetNumSupportedArchs(out int count);
    [LibraryImport(Lib)] public static partial int nvrtcGetSupportedArchs(int* archs);
    [LibraryImport(Lib)]
    public static partial int nvrtcCreateProgram(
        out nint program, byte* source, byte* name, int headerCount, byte** headers, byte** includeNames);
    [LibraryImport(Lib)] public static partial int nvrtcDestroyProgram(ref nint program);
    [LibraryImport(Lib)] public static partial int nvrtcCompileProgram(nint program, int optionCount, byte** options);
    [LibraryImport(Lib)] public static partial int nvrtcGetProgramLogSize(nint program, out nuint size);
    [LibraryImport(Lib)] public static partial int nvrtcGetProgramLog(nint program, byte* log);
    [LibraryImport(Lib)] public static partial int nvrtcGetPTXSize(nint program, out nuint size);
    [LibraryImport(Lib)] public static partial int nvrtcGetPTX(nint program, byte* ptx);
    [LibraryImport(Lib)] public static partial int nvrtcGetCUBINSize(nint program, out nuint size);
    [LibraryImport(Lib)] public static partial int nvrtcGetCUBIN(nint program, byte* cubin);
}
