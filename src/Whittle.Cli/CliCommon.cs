using System.Text.Json;

namespace Whittle.Cli;

/// <summary>Conventions every subcommand follows: errors as one line on stderr, exit codes, JSON output.</summary>
static class CliCommon
{
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "Print stack traces for errors.", Recursive = true };
    public static readonly Option<bool> Json = new("--json") { Description = "Print machine-readable JSON instead of text." };

    /// <summary>`--device cpu | cuda` (default cpu), one instance per command; Backends.Create resolves the name.</summary>
    public static Option<string> DeviceOption() => new("--device") { Description = "cpu | cuda.", DefaultValueFactory = _ => "cpu" };

    public static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    /// <summary>WHITTLE_ATTENTION=f32 keeps bf16 models on the f32 attention kernels; read once, here at the command line.</summary>
    static readonly Lazy<bool> AttentionOptOut = new(() => Environment.GetEnvironmentVariable("WHITTLE_ATTENTION") switch
    {
        null or "" or "auto" => false,
        "f32" => true,
        var v => throw new WhittleException($"WHITTLE_ATTENTION={ErrorText.Clip(v, 40)}: expected f32 or auto"),
    });

    /// <summary>Sets a model's precision, and its attention's (the same, unless WHITTLE_ATTENTION=f32 opts out).</summary>
    public static void SetPrecision(Whittle.Native.Model.LanguageModel model, Whittle.Native.Model.Precision precision)
    {
        model.Precision = precision;
        if (AttentionOptOut.Value) model.Attention = Whittle.Native.Tensors.AttentionPrecision.F32;
    }

    /// <summary>
    /// Exit 1 (the user's to fix) or 2 (a bug). Besides WhittleException, failures of the file system the user pointed
    /// us at are the user's: a full disk, a read-only or unwritable target, a path component that is a file, a name too
    /// long. .NET's messages for these name the path ("No space left on device : '/x'", "Access to the path '/x' is
    /// denied."), and every write goes through AtomicFile/AtomicDirectory, so nothing half-written is left behind.
    /// </summary>
    static bool IsUserError(Exception e) => e is WhittleException or IOException or UnauthorizedAccessException;

    /// <summary>
    /// Makes this process the one writer of a run directory (RunDirectoryLock: exit 1 naming the holder's pid when another
    /// process has it), then removes what an interrupted save left there.
    /// </summary>
    public static void TakeRunDirectory(string dir, string command)
    {
        RunDirectoryLock.HoldForProcess(dir, command);
        var removed = RunDirectoryLock.RemoveInterruptedSaves(dir);
        if (removed.Count > 0) Console.Error.WriteLine($"removed {removed.Count} leftover(s) of an interrupted save in {dir}");
    }

    public static int Run(RootCommand root, string[] args)
    {
        Warnings.Sink = message => Console.Error.WriteLine($"warning: {message}");
        var parse = root.Parse(args);
        // A command line that does not parse is a user error like any other: one line and exit 1 (System.CommandLine's
        // default prints the error followed by the whole help text). --help itself parses and prints the help.
        if (parse.Errors.Count > 0)
        {
            string command = string.Join(' ', new[] { "whittle" }.Concat(CommandPath(parse.CommandResult)));
            Console.Error.WriteLine($"error: {string.Join("; ", parse.Errors.Select(e => e.Message.ReplaceLineEndings(" ")))} (see " +
                $"`{command} --help`)");
            return 1;
        }
        var config = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
        try
        {
            return parse.Invoke(config);
        }
        catch (Exception e)
        {
            bool verbose = parse.GetValue(Verbose);
            var inner = e;
            while (inner is System.Reflection.TargetInvocationException or TypeInitializationException
                && inner.InnerException is { } ie) inner = ie;
            bool user = IsUserError(inner);
            if (verbose) Console.Error.WriteLine(inner.ToString());
            else Console.Error.WriteLine(
                ErrorText.OneLine(
                user ? $"error: {inner.Message}" : $"error: {inner.GetType().Name}: {inner.Message} (run with --verbose for details)"));
            return user ? 1 : 2;
        }
    }

    static IEnumerable<string> CommandPath(System.CommandLine.Parsing.CommandResult? r)
    {
        var names = new List<string>();
        for (; r is not null && r.Command is not RootCommand; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            names.Add(r.Command.Name);
        names.Reverse();
        return names;
    }
}
