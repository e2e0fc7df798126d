// Policy: docs/cli.md is generated, never edited: every command's --help, rendered at a fixed width (so the file does
// not depend on the terminal that made it), in command-tree order. Cli/CliDocsTests fails when the committed file
// differs from what this renders, and names the command that regenerates it.
using System.CommandLine;
using System.CommandLine.Help;
using System.Text;
using Whittle.Native;

namespace Whittle.Cli;

/// <summary>`whittle docs [--out FILE]`: the command reference (docs/cli.md) from the commands' own help.</summary>
static class DocsCommand
{
    /// <summary>The file this command writes in the repository, and the command that regenerates it.</summary>
    public const string RepositoryPath = "docs/cli.md";
    public const string Regenerate = "dotnet run -c Release --project src/Whittle.Cli -- docs --out docs/cli.md";

    /// <summary>Help is wrapped at this width, the house limit for lines.</summary>
    const int Width = 120;

    public static Command Create()
    {
        var output = new Option<string?>("--out") { Description = "Write the reference to this file (atomically) instead of stdout." };
        var cmd = new Command("docs", $"Print the command reference ({RepositoryPath}): every command's --help, as markdown.") { output };
        cmd.SetAction(parse =>
        {
            string text = Render(WhittleCli.CreateRoot());
            if (parse.GetValue(output) is { } path) AtomicFile.WriteAllText(path, text);
            else Console.Out.Write(text);
        });
        return cmd;
    }

    /// <summary>Markdown: a heading and a text block with the --help output of the root and of every subcommand.</summary>
    public static string Render(RootCommand root)
    {
        var help = root.Options.OfType<HelpOption>().Single();
        help.Action = new HelpAction { MaxWidth = Width };
        var doc = new StringBuilder();
        doc.Append("# `whittle` command reference\n\n");
        doc.Append("Generated from each command's `--help`; do not edit. Regenerate with\n");
        doc.Append($"`{Regenerate}`\n(or `dotnet pwsh ./build.ps1 docs --out docs/cli.md`); ");
        doc.Append("a test fails while it differs from the help.\n");
        foreach (var path in CommandPaths(root, []))
        {
            var text = new StringWriter();
            root.Parse([.. path, "--help"]).Invoke(new InvocationConfiguration { Output = text });
            doc.Append($"\n## `{string.Join(' ', ["whittle", .. path])}`\n\n```text\n");
            foreach (var line in text.ToString().ReplaceLineEndings("\n").TrimEnd('\n').Split('\n'))
            {
                // Usage lines start with the root's name, which is the running executable's (a test host's, in tests).
                string usage = line.StartsWith($"  {root.Name} ") ? $"  whittle {line[(root.Name.Length + 3)..]}" : line;
                doc.Append(usage.TrimEnd()).Append('\n');
            }
            doc.Append("```\n");
        }
        return doc.ToString();
    }

    static IEnumerable<string[]> CommandPaths(Command command, string[] path)
    {
        yield return path;
        foreach (var sub in command.Subcommands.Where(c => !c.Hidden))
            foreach (var p in CommandPaths(sub, [.. path, sub.Name])) yield return p;
    }
}
