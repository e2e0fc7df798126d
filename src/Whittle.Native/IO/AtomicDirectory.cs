namespace Whittle.Native;

/// <summary>
/// A directory that appears complete or not at all: it is built under a temporary name beside the target and renamed
/// into place; an existing target is first moved aside and deleted only after the rename, so a crash at any moment
/// leaves either the old directory, the new one, or both under recognisable names, never a half-written target.
/// </summary>
public static class AtomicDirectory
{
    public static void Write(string dir, Action<string> fill)
    {
        var full = Path.GetFullPath(dir.TrimEnd('/', '\\'));
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var name = Path.GetFileName(full);
        var tmp = Path.Combine(parent, $".{name}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(tmp);
        try
        {
            fill(tmp);
            string? old = null;
            if (Directory.Exists(full))
            {
                old = Path.Combine(parent, $".{name}.old-{Guid.NewGuid():N}");
                Directory.Move(full, old);
            }
            Directory.Move(tmp, full);
            if (old is not null) Directory.Delete(old, recursive: true);
        }
        catch
        {
            try { if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true); } catch (IOException) { }
            throw;
        }
    }
}
