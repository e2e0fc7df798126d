using System.CommandLine;
using System.Text.Json;
using Whittle.Native;

namespace Whittle.Cli;

/// <summary>Conventions every subcommand follows: errors as one line on stderr, exit codes, JSON output.</summary>
static class CliCommon
{
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "Print stack traces for errors.", Recursive = true };
    public static readonly Option<bool> Json = new("--json") { Description = "Print machine-readable JSON instead of text." };

    public static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    public static int Run(RootCommand root, string[] args)
    {
        Warnings.Sink = message => Console.Error.WriteLine($"warning: {message}");
        var parse = root.Parse(args);
        // A command line that does not parse is a user error like any other: one line and exit 1 (System.CommandLine's
        // default prints the error followed by the whole help text). --help itself parses and prints the help.
        if (parse.Errors.Count > 0)
        {
            string command = string.Join(' ', new[] { "whittle" }.Concat(CommandPath(parse.CommandResult)));
            Console.Error.WriteLine($"error: {string.Join("; ", parse.Errors.Select(e => e.Message.ReplaceLineEndings(" ")))} (see `{command} --help`)");
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
            var inner = e is System.Reflection.TargetInvocationException { InnerException: { } ie } ? ie : e;
            if (verbose) Console.Error.WriteLine(inner.ToString());
            else Console.Error.WriteLine(inner is WhittleException ? $"error: {inner.Message}" : $"error: {inner.GetType().Name}: {inner.Message} (run with --verbose for details)");
            return inner is WhittleException ? 1 : 2;
        }
    }

    static IEnumerable<string> CommandPath(System.CommandLine.Parsing.CommandResult? r)
    {
        var names = new List<string>();
        for (; r is not null && r.Command is not RootCommand; r = r.Parent as System.CommandLine.Parsing.CommandResult) names.Add(r.Command.Name);
        names.Reverse();
        return names;
    }
}
