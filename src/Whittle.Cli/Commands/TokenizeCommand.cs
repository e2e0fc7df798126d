// Policy: `whittle tokenize`: text files → a token dataset directory (see DatasetWriter). A progress bar when stderr
// is a terminal, a plain line per 10% otherwise; the summary goes to stdout.
using Spectre.Console;

namespace Whittle.Cli;

static class TokenizeCommand
{
    public static Command Create()
    {
        var cmd = new Command("tokenize", "Tokenize text files into train/val token shards plus meta.json.");
        var tokOpt = new Option<string>("--tokenizer") { Description = "Tokenizer file.", Required = true };
        var input = new Option<string[]>("--input") { Description = "Text files (.gz allowed; .jsonl: one {\"text\"} document per line).",
            Required = true, AllowMultipleArgumentsPerToken = true };
        var output = new Option<string>("--out") { Description = "Output directory (must not exist or be empty).", Required = true };
        var valFrac = new Option<double>("--val-fraction") { Description = "Fraction of documents held out for validation.",
            DefaultValueFactory = _ => 0.05 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the train/val split.", DefaultValueFactory = _ => 0UL };
        var docStart = new Option<string?>("--doc-start") { Description = "Regex: a line matching it starts a new document (default: one " +
            "document per file or JSONL line)." };
        var replace = new Option<bool>("--replace-invalid") { Description = "Replace invalid UTF-8 with U+FFFD instead of failing." };
        foreach (var o in new Option[] { tokOpt, input, output, valFrac, seed, docStart, replace }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            var tok = Tokenizer.FromFile(parse.GetValue(tokOpt)!);
            var opts = new TokenizeOptions(parse.GetValue(input)!, parse.GetValue(output)!, parse.GetValue(valFrac), parse.GetValue(seed),
                parse.GetValue(docStart), parse.GetValue(replace));
            var sw = System.Diagnostics.Stopwatch.StartNew();
            DatasetMeta meta;
            if (!Console.IsErrorRedirected)
            {
                meta = null!;
                AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) }).Progress().Start(ctx =>
                {
                    var task = ctx.AddTask("tokenizing", maxValue: 1);
                    meta = DatasetWriter.Write(tok, opts, (done, total) => { task.MaxValue = Math.Max(1, total); task.Value = done; });
                });
            }
            else
            {
                int lastDecile = -1;
                meta = DatasetWriter.Write(tok, opts, (done, total) =>
                {
                    int decile = total == 0 ? 10 : (int)(done * 10 / total);
                    if (decile > lastDecile) { lastDecile = decile; Console.Error.WriteLine($"tokenize: {decile * 10}% of input read"); }
                });
            }
            Console.WriteLine($"{opts.OutDir}: train {meta.Train.Tokens:N0} tokens in {meta.Train.Documents} documents, val " +
                $"{meta.Val.Tokens:N0} tokens in {meta.Val.Documents} documents, {meta.DType}, {sw.Elapsed.TotalSeconds:F1} s");
            return 0;
        });
        return cmd;
    }
}
