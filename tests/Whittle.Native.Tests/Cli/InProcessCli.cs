using Whittle.Cli;

namespace Whittle.Native.Tests.Cli;

/// <summary>
/// Runs a `whittle` command inside the test process through <see cref="CliCommon.Run"/>: the same parser, handlers and
/// exception-to-exit-code mapping as the binary, at a few milliseconds a command instead of a process start. Console
/// output is captured; callers must be [NonParallelizable] (the console is process-wide).
/// </summary>
static class InProcessCli
{
    public static (int Exit, string Stdout, string Stderr) Run(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        Console.SetOut(stdout);
        Console.SetError(stderr);
        try { return (CliCommon.Run(WhittleCli.CreateRoot(), args), stdout.ToString(), stderr.ToString()); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); Warnings.Sink = _ => { }; }
    }

    /// <summary>The error contract: exit 1 with exactly one "error: ..." line on stderr (warnings aside), never exit 2.</summary>
    public static string UserError((int Exit, string Stdout, string Stderr) r)
    {
        var lines = ErrorLines(r.Stderr);
        Assert.That(r.Exit, Is.EqualTo(1), $"expected a user error (exit 1); stderr:\n{r.Stderr}");
        Assert.That(lines, Has.Count.EqualTo(1), $"expected one error line; stderr:\n{r.Stderr}");
        Assert.That(lines[0], Does.StartWith("error: "));
        return lines[0];
    }

    /// <summary>stderr without "warning: " lines (commands log progress to stdout unless --json): what is left must be the error.</summary>
    public static List<string> ErrorLines(string stderr) =>
        stderr.Split(
            '\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).Where(l => !l.StartsWith("warning: ")).ToList();
}
