using System.Collections.Concurrent;

namespace Whittle.Native;

/// <summary>
/// One writer per run directory. Policy:
///  - The lock is <c>DIR/.whittle.lock</c>, a file holding the holder's pid and command, locked with an OS record lock
///    (FileStream.Lock: fcntl on Unix, LockFileEx on Windows). The operating system drops the lock when the process
///    dies however it dies (kill -9 included), so a stale lock file never blocks a later run; only a live holder does.
///  - The file is opened shared (the lock is the record lock, not the sharing mode), so a refused process can still
///    read the holder's pid and name it in its one-line error.
///  - Within one process, locks are held until exit and re-entrant per directory: `demo` runs its stages in-process and
///    each stage takes its own directory's lock; a second, independent <see cref="Acquire"/> on a held directory in the
///    same process is refused like another process would be.
///  - Once held, leftovers of an interrupted save in the directory (hidden <c>.NAME.tmp-*</c> files and folders written
///    by AtomicFile/AtomicDirectory/SafeTensorsWriter, <c>NAME.tmp-*</c> of DatasetWriter) belong to a dead writer —
///    the lock proves there is no live one — and <see cref="RemoveInterruptedSaves"/> deletes them.
/// </summary>
public sealed class RunDirectoryLock : IDisposable
{
    public const string FileName = ".whittle.lock";

    static readonly ConcurrentDictionary<string, RunDirectoryLock> HeldByThisProcess = new(StringComparer.Ordinal);

    readonly FileStream _stream;
    readonly string _key;
    public string Directory { get; }

    RunDirectoryLock(FileStream stream, string directory, string key, string command) { _stream = stream; Directory = directory; _key = key;
    Command = command; }

    /// <summary>The command that holds the lock (for the refusal message).</summary>
    public string Command { get; }

    /// <summary>
    /// Takes the lock of <paramref name="dir"/> (created if missing) for <paramref name="command"/>, or throws a
    /// WhittleException naming the directory and the holder's pid. Released by Dispose or by the process ending.
    /// </summary>
    public static RunDirectoryLock Acquire(string dir, string command)
    {
        var full = Path.GetFullPath(dir.TrimEnd('/', '\\'));
        if (File.Exists(full)) throw new WhittleException($"{ErrorText.Clip(full)}: is a file, expected a run directory");
        System.IO.Directory.CreateDirectory(full);
        var path = Path.Combine(full, FileName);
        // Not by reading the lock file: with POSIX record locks, closing any descriptor of the file drops this process's lock.
        if (HeldByThisProcess.TryGetValue(full, out var mine))
            throw new WhittleException($"{ErrorText.Clip(full)}: run directory in use by process {Environment.ProcessId} (whittle " +
                $"{mine.Command}, this process); one writer per run directory");
        FileStream? stream = null;
        try
        {
            if (OperatingSystem.IsMacOS())
            {
                // No record locks in .NET on macOS: an exclusive open (flock) does the locking; the pid is then unreadable.
                stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
            }
            else
            {
                stream = new FileStream(
                    path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);
                // One byte far past any content, so reading the pid never touches a locked range (Windows enforces them).
                stream.Lock(LockOffset, 1);
            }
        }
        catch (IOException)
        {
            stream?.Dispose();
            throw new WhittleException($"{ErrorText.Clip(full)}: run directory in use by {Holder(path)}; one writer per run directory " +
                $"(wait for it, or stop it)");
        }
        var text = System.Text.Encoding.UTF8.GetBytes($"pid {Environment.ProcessId} {command}\n");
        stream.SetLength(0);
        stream.Write(text);
        stream.Flush(flushToDisk: true);
        var held = new RunDirectoryLock(stream, full, full, command);
        HeldByThisProcess[full] = held;
        return held;
    }

    /// <summary>The lock for the rest of this process (what commands call): re-entrant, never released before exit.</summary>
    public static RunDirectoryLock HoldForProcess(string dir, string command)
    {
        var full = Path.GetFullPath(dir.TrimEnd('/', '\\'));
        return HeldByThisProcess.TryGetValue(full, out var held) ? held : Acquire(full, command);
    }

    const long LockOffset = 1L << 40;

    /// <summary>What the lock file says about its holder ("process 1234 (whittle pretrain)"), for the refusal message.</summary>
    static string Holder(string path)
    {
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var buffer = new byte[256];
            int n = fs.Read(buffer);
            var line = System.Text.Encoding.UTF8.GetString(buffer, 0, n).Trim();
            var parts = line.Split(' ', 3);
            return parts is ["pid", var pid, ..] && int.TryParse(pid, out _)
                ? $"process {pid}{(parts.Length > 2 ? $" (whittle {ErrorText.Clip(parts[2], 40)})" : "")}"
                : "another process (its pid is not recorded yet)";
        }
        catch (IOException) { return "another process"; }
    }

    /// <summary>The temporary names whittle's writers use: "NAME.tmp-PID-HEX" (AtomicFile, AtomicDirectory and so
    /// SafeTensorsWriter, hidden with a leading dot; DatasetWriter, truncated hex). Nothing else is ever deleted.</summary>
    static readonly System.Text.RegularExpressions.Regex TemporaryName = new(@"\.tmp-[0-9]+-[0-9a-f]*$",
        System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    /// <summary>How deep leftovers can sit: RUN/, RUN/checkpoints/, and one level inside a checkpoint being built.</summary>
    const int MaxDepth = 3;

    /// <summary>
    /// Deletes what an interrupted save left in <paramref name="dir"/> and its subfolders (to <see cref="MaxDepth"/>):
    /// entries named as whittle's writers name their temporaries (<see cref="TemporaryName"/>), not descending into
    /// subfolders that are run directories of their own. Only call it holding the directory's lock. Returns the paths
    /// removed.
    /// </summary>
    public static IReadOnlyList<string> RemoveInterruptedSaves(string dir)
    {
        var removed = new List<string>();
        if (!System.IO.Directory.Exists(dir)) return removed;
        var pending = new Stack<(string Dir, int Depth)>([(dir, 1)]);
        while (pending.Count > 0)
        {
            var (current, depth) = pending.Pop();
            foreach (var entry in new DirectoryInfo(current).EnumerateFileSystemInfos())
            {
                bool leftover = TemporaryName.IsMatch(entry.Name);
                bool isDir = entry is DirectoryInfo && !entry.Attributes.HasFlag(FileAttributes.ReparsePoint);
                if (leftover)
                {
                    if (isDir) ((DirectoryInfo)entry).Delete(recursive: true); else entry.Delete();
                    removed.Add(entry.FullName);
                }
                // A subfolder with its own lock file is another run directory (a demo's stage): its own writer cleans it.
                else if (isDir && depth < MaxDepth && !File.Exists(Path.Combine(entry.FullName, FileName)))
                    pending.Push((entry.FullName, depth + 1));
            }
        }
        return removed;
    }

    public void Dispose()
    {
        if (HeldByThisProcess.TryRemove(new KeyValuePair<string, RunDirectoryLock>(_key, this)))
        {
            if (!OperatingSystem.IsMacOS()) try { _stream.Unlock(LockOffset, 1); } catch (IOException) { }
            _stream.Dispose();
        }
    }
}
