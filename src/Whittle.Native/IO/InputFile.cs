using System.Runtime.InteropServices;

namespace Whittle.Native;

/// <summary>
/// Policy: a model or data file must be a regular file (or a symlink to one). Opening a FIFO blocks until something
/// writes to it, and a device (/dev/zero, /dev/urandom) never ends, so both are refused by their type before they are
/// opened, with one line naming the path. The type comes from stat(2): .NET's FileInfo reports FIFOs and devices as
/// ordinary zero-length files. Where stat cannot be called (not Linux, an architecture whose struct stat layout is not
/// known here) the check is skipped and the readers' own size checks apply; a path that does not exist passes, so the
/// reader's "no such file" message stays the one the user sees.
/// </summary>
public static unsafe partial class InputFile
{
    /// <summary>Throws InvalidFileException when <paramref name="path"/> exists and is not a regular file.</summary>
    public static void RequireRegular(string path)
    {
        if (Kind(path) is { } kind && kind != "regular file")
            throw new InvalidFileException(path, $"is a {kind}, expected a regular file");
    }

    /// <summary>"regular file", "directory", "FIFO (named pipe)", "character device", …; null when unknown.</summary>
    public static string? Kind(string path)
    {
        if (!OperatingSystem.IsLinux()) return null;
        int modeOffset = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => 24,     // st_dev, st_ino, st_nlink (8 bytes each), then st_mode
            Architecture.Arm64 => 16,   // the generic layout: st_dev, st_ino, then st_mode
            _ => -1,
        };
        if (modeOffset < 0) return null;
        byte* buf = stackalloc byte[512];   // struct stat is 144 bytes on x86-64, 128 on arm64
        int rc;
        try { rc = Stat(path, buf); }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            // glibc before 2.33 exports stat only as __xstat(version, …): version 1 on x86-64, 0 on arm64.
            try { rc = XStat(RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 1 : 0, path, buf); }
            catch (Exception e2) when (e2 is EntryPointNotFoundException or DllNotFoundException) { return null; }
        }
        if (rc != 0) return null;
        uint mode = *(uint*)(buf + modeOffset);
        return (mode & 0xF000) switch
        {
            0x8000 => "regular file",
            0x4000 => "directory",
            0x1000 => "FIFO (named pipe)",
            0x2000 => "character device",
            0x6000 => "block device",
            0xC000 => "socket",
            _ => "special file",
        };
    }

    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Stat(string path, byte* buf);

    [LibraryImport("libc", EntryPoint = "__xstat", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int XStat(int version, string path, byte* buf);
}
